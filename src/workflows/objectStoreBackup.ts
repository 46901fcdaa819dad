/**
 * Object-store backup (the runbook's `mc mirror` of briefs/ and skills/): an incremental,
 * content-addressed mirror into the backup store, with an index of the bucket at this time.
 *
 * A big bucket is mirrored in partitions (consecutive key ranges of OBJECT_MIRROR_PARTITION_OBJECTS
 * objects each): one activity per partition, each listing only its range, all scheduled at once, so every worker polling the
 * task queue takes some and the mirror runs as wide as the workers are many; then one activity
 * merges their entries into the index. The history grows by a few events per partition (at most
 * 64), so no continue-as-new is needed. Runs started before 0.3.2 mirror in one activity.
 */
import { patched, proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { ObjectBackupManifest } from '../domain/manifests';
import { long, scan } from './options';
import { backupIdOfThisRun, partBackupInput } from './backupRun';
import { parseInput } from './engine/input';
import { Procedure } from './engine/progress';

const { mirrorObjects, mirrorObjectPartition } = proxyActivities<Activities>(long);
const { countObjectsToMirror, finishObjectMirror } = proxyActivities<Activities>(scan);

export async function objectStoreBackup(rawInput?: { backupId?: string }): Promise<ObjectBackupManifest> {
  const procedure = new Procedure('Object-store backup', ['mirror objects']);
  const input = parseInput(partBackupInput, rawInput, 'objectStoreBackup');
  const backupId = input.backupId ?? backupIdOfThisRun();
  return procedure.run(() =>
    procedure.step(
      'mirror objects',
      `mirroring briefs and skills into backup ${backupId}`,
      async () => {
        if (!patched('object-mirror-partitions')) return mirrorObjects({ backupId });
        const { partitions, ranges } = await countObjectsToMirror({ backupId });
        if (partitions === 1) return mirrorObjects({ backupId });
        await Promise.all(ranges.map((partition) => mirrorObjectPartition({ backupId, partition })));
        return finishObjectMirror({ backupId, partitions });
      },
      (m) => `${m.objects} objects (${m.bytes} B): ${m.copied} copied, ${m.alreadyMirrored} already mirrored`,
    ),
  );
}
