/**
 * Object-store loss — the runbook, in order:
 *   1. restore bucket `kohakku` from the backup mirror
 *   2. briefs of completed tasks are not needed (Postgres says which): skipped
 *   3. skills come back with everything else from the mirror
 *   4. agents that already have their brief are unaffected (nothing to do)
 * Every restored object is checked against the backup by size and content hash.
 */
import { proxyActivities } from '@temporalio/workflow';
import { z } from 'zod';
import type { Activities } from '../activities';
import type { ObjectRestorePlan, ObjectRestoreReport } from '../activities/objectStore';
import type { BackupChoice, RecoveryEnvelope, RecoveryPlan } from './definitions';
import { backupIdField, recoveryCommonFields } from './engine/input';
import { runRecovery, type Phase, type RecoveryDefinition } from './engine/recovery';
import { long, quick } from './options';

const { resolveBackupSet, planObjectRestore } = proxyActivities<Activities>(quick);
const { restoreObjects } = proxyActivities<Activities>(long);

export const objectStoreLossInput = z.strictObject({
  ...recoveryCommonFields,
  /** Backup set id, or "latest" (the newest verified set; the result says which and why). */
  backupId: backupIdField.optional(),
});
export type ObjectStoreLossInput = z.input<typeof objectStoreLossInput>;

export interface ObjectRestoreState {
  set?: BackupChoice;
  objectPlan?: ObjectRestorePlan;
  objects?: ObjectRestoreReport;
}

export interface ObjectStoreLossDetails {
  backupId: string;
  backupVerified: boolean;
  plan: ObjectRestorePlan;
  restored: ObjectRestoreReport;
}
export type ObjectStoreLossResult = RecoveryEnvelope & ObjectStoreLossDetails;

export function resolveSetPhase<I extends { backupId?: string }, S extends ObjectRestoreState>(): Phase<
  I,
  S
> {
  return {
    name: 'resolve backup set',
    effect: 'read',
    waitingFor: ({ input }) => `finding backup set "${input.backupId ?? 'latest'}"`,
    async run(ctx) {
      ctx.state.set = await resolveBackupSet({ backupId: ctx.input.backupId });
    },
    describe: ({ state }) =>
      `${state.set!.id} (${state.set!.verified ? 'verified' : 'NOT verified'})${state.set!.choice ? `: ${state.set!.choice}` : ''}`,
    plan: () => ({ action: 'find the backup set', touches: ['backup store (read)'] }),
  };
}

/** Copying the mirror back; differing live objects are copied aside first, after approval against what differs now. */
export function restoreObjectsPhase<I, S extends ObjectRestoreState>(name: string): Phase<I, S> {
  return {
    name,
    effect: 'live',
    waitingFor: () => 'copying objects from the backup mirror',
    async destroys({ state }) {
      const plan = await planObjectRestore({ backupId: state.set!.id });
      state.objectPlan = plan;
      return plan.overwriteCount > 0
        ? [
            {
              id: String(plan.overwriteCount),
              description: `${plan.overwriteCount} live object(s) that differ from the backup, copied aside under kohakku-dr-aside/ first (e.g. ${plan.wouldOverwrite.slice(0, 3).join(', ')})`,
            },
          ]
        : [];
    },
    async run(ctx, approved) {
      ctx.state.objects = await restoreObjects({
        backupId: ctx.state.set!.id,
        recoveryId: ctx.recoveryId,
        maxOverwrites: approved.length ? Number(approved[0]) : 0,
      });
    },
    describe: ({ state }) =>
      `${state.objects!.copied} copied, ${state.objects!.alreadyPresent} already there, ${state.objects!.skippedCompletedBriefs} completed-task briefs skipped, ${state.objects!.restoredAndVerified} verified`,
    plan: ({ state }) => ({
      action: state.objectPlan
        ? `copy ${state.objectPlan.toCopy} object(s) from the mirror into ${state.objectPlan.bucket}${state.objectPlan.bucketExists ? '' : ' (created)'}; skip ${state.objectPlan.skippedCompletedBriefs} briefs of completed tasks and ${state.objectPlan.alreadyPresent} unchanged objects`
        : 'copy the objects of the backup mirror back into the bucket, minus briefs of completed tasks',
      touches: [`bucket ${state.objectPlan?.bucket ?? '(Kohakku bucket)'}`],
    }),
  };
}

export const objectStoreLossDefinition: RecoveryDefinition<
  typeof objectStoreLossInput,
  ObjectRestoreState,
  ObjectStoreLossDetails
> = {
  procedure: 'object-store-loss',
  title: 'Object-store loss',
  input: objectStoreLossInput,
  locks: () => ['objects'],
  initialState: () => ({}),
  phases: [
    resolveSetPhase(),
    {
      name: 'compare bucket with backup',
      effect: 'read',
      waitingFor: () => 'listing the bucket and the backup index',
      async run(ctx) {
        ctx.state.objectPlan = await planObjectRestore({ backupId: ctx.state.set!.id });
      },
      describe: ({ state }) =>
        `${state.objectPlan!.toCopy} to copy, ${state.objectPlan!.alreadyPresent} already there, ${state.objectPlan!.skippedCompletedBriefs} completed-task briefs skipped, ${state.objectPlan!.overwriteCount} differ`,
      plan: () => ({ action: 'compare the bucket with the backup index', touches: [] }),
    },
    restoreObjectsPhase('restore objects'),
  ],
  cleanup: [],
  backup: (state) => state.set,
  result: ({ state }) => ({
    backupId: state.set!.id,
    backupVerified: state.set!.verified,
    plan: state.objectPlan!,
    restored: state.objects!,
  }),
};

export async function objectStoreLoss(
  input?: ObjectStoreLossInput,
): Promise<ObjectStoreLossResult | RecoveryPlan> {
  return runRecovery(objectStoreLossDefinition, input);
}
