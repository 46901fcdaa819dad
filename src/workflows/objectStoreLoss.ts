/**
 * Object-store loss — the runbook, in order:
 *   1. restore bucket `kohakku` from the backup mirror
 *   2. briefs of completed tasks are not needed (Postgres says which): skipped
 *   3. skills come back with everything else from the mirror
 *   4. agents that already have their brief are unaffected (nothing to do)
 * Every restored key is checked for size and ETag against the backup.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { ObjectRestorePlan, ObjectRestoreReport } from '../activities/objectStore';
import { long, quick } from './options';
import type { StepProgress } from './procedure';
import {
  startRecovery,
  measure,
  type Measurements,
  type RecoveryCommonInput,
  type RecoveryPlan,
} from './recovery';

export interface ObjectStoreLossInput extends RecoveryCommonInput {
  /** Backup set id, or latest (the newest verified set; the newest if none is verified). */
  backupId?: string;
}

export interface ObjectStoreLossResult {
  procedure: 'object-store-loss';
  backupId: string;
  backupVerified: boolean;
  plan: ObjectRestorePlan;
  restored: ObjectRestoreReport;
  steps: StepProgress[];
  measurements: Measurements;
}

const STEPS = ['resolve backup set', 'compare bucket with backup', 'restore objects', 'cleanup'] as const;

const { resolveBackupSet, planObjectRestore, lockBackup, unlockBackup } = proxyActivities<Activities>(quick);
const { restoreObjects } = proxyActivities<Activities>(long);

export async function objectStoreLoss(
  input: ObjectStoreLossInput = {},
): Promise<ObjectStoreLossResult | RecoveryPlan> {
  const { procedure, approve, recoveryId, started } = startRecovery(
    'Object-store loss',
    STEPS,
    input.confirm === true,
  );
  let locked: string | undefined;
  return procedure.run(
    async () => {
      const set = await procedure.step(
        'resolve backup set',
        'finding the backup set',
        () => resolveBackupSet({ backupId: input.backupId }),
        (s) => `${s.id} (${s.verified ? 'verified' : 'NOT verified'})`,
      );
      const diff = await procedure.step(
        'compare bucket with backup',
        'listing the bucket and the backup index',
        () => planObjectRestore({ backupId: set.id }),
        (p) =>
          `${p.toCopy} to copy, ${p.alreadyPresent} already there, ${p.skippedCompletedBriefs} completed-task briefs skipped, ${p.overwriteCount} differ`,
      );
      if (input.plan) {
        return {
          procedure: 'object-store-loss',
          plan: true,
          backupId: set.id,
          backupCreatedAt: set.createdAt,
          backupVerified: set.verified,
          steps: [
            {
              step: 'restore objects',
              action: `copy ${diff.toCopy} object(s) from the mirror into ${diff.bucket}${diff.bucketExists ? '' : ' (created)'}; skip ${diff.skippedCompletedBriefs} briefs of completed tasks and ${diff.alreadyPresent} unchanged objects${diff.overwriteCount ? `; ${diff.overwriteCount} differing object(s) copied aside then replaced (needs approval): ${diff.wouldOverwrite.slice(0, 5).join(', ')}` : ''}`,
              touches: [`bucket ${diff.bucket}`],
              destructive: diff.overwriteCount > 0,
            },
          ],
        } satisfies RecoveryPlan;
      }
      await lockBackup({ backupId: set.id, holder: recoveryId });
      locked = set.id;
      if (diff.overwriteCount > 0)
        await approve(
          `replace ${diff.overwriteCount} object(s) that differ from the backup (copied aside first)`,
        );
      const restored = await procedure.step(
        'restore objects',
        `copying ${diff.toCopy} object(s) from the mirror`,
        () => restoreObjects({ backupId: set.id, recoveryId }),
        (r) => `${r.copied} copied, ${r.alreadyPresent} already there, ${r.restoredAndVerified} verified`,
      );
      return {
        procedure: 'object-store-loss' as const,
        backupId: set.id,
        backupVerified: set.verified,
        plan: diff,
        restored,
        steps: procedure.progress.steps,
        measurements: measure(started, input.incidentAt, set.createdAt),
      };
    },
    () =>
      procedure.step('cleanup', 'releasing the hold on the backup', async () => {
        if (locked) await unlockBackup({ backupId: locked, holder: recoveryId });
      }),
  );
}
