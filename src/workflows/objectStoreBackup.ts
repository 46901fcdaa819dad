/**
 * Object-store backup (the runbook's `mc mirror` of briefs/ and skills/): an incremental,
 * content-addressed mirror into the backup store, with an index of the bucket at this time.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { ObjectBackupManifest } from '../domain/manifests';
import { long } from './options';
import { backupIdOfThisRun, partBackupInput } from './backupRun';
import { parseInput } from './engine/input';
import { Procedure } from './engine/progress';

const { mirrorObjects } = proxyActivities<Activities>(long);

export async function objectStoreBackup(rawInput?: { backupId?: string }): Promise<ObjectBackupManifest> {
  const procedure = new Procedure('Object-store backup', ['mirror objects']);
  const input = parseInput(partBackupInput, rawInput, 'objectStoreBackup');
  const backupId = input.backupId ?? backupIdOfThisRun();
  return procedure.run(() =>
    procedure.step(
      'mirror objects',
      `mirroring briefs and skills into backup ${backupId}`,
      () => mirrorObjects({ backupId }),
      (m) => `${m.objects} objects (${m.bytes} B): ${m.copied} copied, ${m.alreadyMirrored} already mirrored`,
    ),
  );
}
