/**
 * Redis backup (the runbook's BGSAVE + copy): BGSAVE, wait until that save finished and
 * succeeded, copy the RDB to the backup store — or pull it with `redis-cli --rdb`.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { RedisBackupManifest } from '../domain/manifests';
import { long } from './options';
import { backupIdOfThisRun, partBackupInput } from './backupRun';
import { parseInput } from './engine/input';
import { Procedure } from './engine/progress';

const { backupRedis } = proxyActivities<Activities>(long);

export async function redisBackup(rawInput?: { backupId?: string }): Promise<RedisBackupManifest> {
  const procedure = new Procedure('Redis backup', ['save and copy the RDB']);
  const input = parseInput(partBackupInput, rawInput, 'redisBackup');
  const backupId = input.backupId ?? backupIdOfThisRun();
  return procedure.run(() =>
    procedure.step(
      'save and copy the RDB',
      `BGSAVE and copy of the RDB into backup ${backupId}`,
      () => backupRedis({ backupId }),
      (m) => `${m.method}: ${m.size} B, ${m.keys} keys`,
    ),
  );
}
