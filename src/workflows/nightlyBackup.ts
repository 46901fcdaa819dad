/**
 * The nightly backup (started by the Temporal Schedule): Postgres, Redis and the object store
 * backed up side by side under one backup id, one manifest for the set, then verify it, then
 * prune sets past retention. A failure fails the run, so a paused-on-failure schedule shows it.
 */
import { executeChild, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { PruneReport } from '../activities/backupSets';
import type { BackupSetManifest } from '../domain/manifests';
import { objectStoreBackup } from './objectStoreBackup';
import { quick } from './options';
import { postgresBackup } from './postgresBackup';
import { backupIdOfThisRun, noInput } from './backupRun';
import { parseInput } from './engine/input';
import { Procedure } from './engine/progress';
import { redisBackup } from './redisBackup';
import { verifyBackupSet, type VerifyBackupSetResult } from './verifyBackupSet';

const { writeBackupSet, pruneBackups } = proxyActivities<Activities>(quick);

export interface NightlyBackupResult {
  set: BackupSetManifest;
  verification: VerifyBackupSetResult;
  retention: PruneReport;
}

const STEPS = [
  'back up postgres, redis and objects',
  'write set manifest',
  'verify',
  'prune past retention',
] as const;

export async function nightlyBackup(rawInput?: Record<string, never>): Promise<NightlyBackupResult> {
  const procedure = new Procedure('Nightly backup', STEPS);
  parseInput(noInput, rawInput, 'nightlyBackup');
  const backupId = backupIdOfThisRun();
  const startedAt = workflowInfo().runStartTime.toISOString();
  const child = (name: string) => `${workflowInfo().workflowId}/${name}`;
  return procedure.run(async () => {
    await procedure.step('back up postgres, redis and objects', `backups into set ${backupId}`, () =>
      Promise.all([
        executeChild(postgresBackup, { workflowId: child('postgres'), args: [{ backupId }] }),
        executeChild(redisBackup, { workflowId: child('redis'), args: [{ backupId }] }),
        executeChild(objectStoreBackup, { workflowId: child('objects'), args: [{ backupId }] }),
      ]),
    );
    const set = await procedure.step('write set manifest', 'writing the set manifest', () =>
      writeBackupSet({ backupId, startedAt }),
    );
    const verification = await procedure.step(
      'verify',
      'restoring the set into scratch copies',
      () => executeChild(verifyBackupSet, { workflowId: child('verify'), args: [{ backupId }] }),
      (v) => (v.ok ? 'verified' : 'FAILED'),
    );
    const retention = await procedure.step(
      'prune past retention',
      'pruning backup sets past retention',
      () => pruneBackups({ asOf: new Date(Date.now()).toISOString() }),
      (r) => `pruned ${r.pruned.length}, kept ${r.kept.length}, ${r.blobsRemoved} unreferenced blobs removed`,
    );
    return { set, verification, retention };
  });
}
