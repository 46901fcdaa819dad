/**
 * Object-store loss — the runbook, in order:
 *   0. Kohakku's S3 server answers — or, lost with its disk, is started again (empty)
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
import type { StoreName } from '../domain/stores';
import { backupIdField, fromField, recoveryCommonFields, secondsField } from './engine/input';
import { runRecovery, type Phase, type RecoveryDefinition } from './engine/recovery';
import { long, quick, scan } from './options';
import { reconnectOrRestart, type ServiceReport } from './services';

const { resolveBackupSet } = proxyActivities<Activities>(quick);
const { planObjectRestore } = proxyActivities<Activities>(scan);
const { restoreObjects } = proxyActivities<Activities>(long);

export const objectStoreLossInput = z.strictObject({
  ...recoveryCommonFields,
  /** Backup set id, or "latest" (the newest verified set; the result says which and why). */
  backupId: backupIdField.optional(),
  /** Which backup store to read it from; by default the first that has a verified copy (the result says which). */
  from: fromField.optional(),
  /** How long Kohakku's S3 server gets to come back after being started through the service adapter (120). */
  startDeadlineSeconds: secondsField.optional(),
});
export type ObjectStoreLossInput = z.input<typeof objectStoreLossInput>;

export interface ObjectRestoreState {
  /** Kohakku's S3 server: answering, or started again (empty) through the service adapter. */
  objectStoreServer?: ServiceReport;
  set?: BackupChoice;
  objectPlan?: ObjectRestorePlan;
  objects?: ObjectRestoreReport;
}

export interface ObjectStoreLossDetails {
  /** Kohakku's S3 server: whether it had to be started again (absent in runs from before 0.3). */
  server?: ServiceReport;
  backupId: string;
  backupVerified: boolean;
  plan: ObjectRestorePlan;
  restored: ObjectRestoreReport;
}
export type ObjectStoreLossResult = RecoveryEnvelope & ObjectStoreLossDetails;

/**
 * Kohakku's S3 server itself may be what was lost (process gone, disk gone): when it does not
 * answer within a few seconds it is started through the service adapter — empty, its data comes
 * back from the mirror next — and must answer within the deadline (ServiceUnhealthy otherwise).
 */
export function objectStoreServerPhase<
  I extends { startDeadlineSeconds?: number },
  S extends ObjectRestoreState,
>(name: string): Phase<I, S> {
  return {
    name,
    effect: 'live',
    patch: 'object-store-server',
    waitingFor: ({ input }) =>
      `Kohakku's S3 server answering (started through the service adapter if it does not within 5 s; then up to ${input.startDeadlineSeconds ?? 120} s)`,
    async run(ctx) {
      ctx.state.objectStoreServer = await reconnectOrRestart(
        'objectstore',
        5,
        ctx.input.startDeadlineSeconds ?? 120,
      );
    },
    changed: ({ state }) => state.objectStoreServer!.restarted, // an answering server is left alone
    describe: ({ state }) =>
      state.objectStoreServer!.restarted
        ? 'it did not answer: started again through the service adapter (empty until the restore)'
        : 'answering',
    plan: () => ({
      action: "check that Kohakku's S3 server answers; start it through the service adapter if it does not",
      touches: ['objectstore'],
    }),
  };
}

export function resolveSetPhase<
  I extends { backupId?: string; from?: StoreName },
  S extends ObjectRestoreState,
>(): Phase<I, S> {
  return {
    name: 'resolve backup set',
    effect: 'read',
    waitingFor: ({ input }) => `finding backup set "${input.backupId ?? 'latest'}"`,
    async run(ctx) {
      ctx.state.set = await resolveBackupSet({ backupId: ctx.input.backupId, from: ctx.input.from });
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
      const plan = await planObjectRestore({ backupId: state.set!.id, from: state.set!.source });
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
        from: ctx.state.set!.source,
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
  // Kohakku's S3 server is what it brings back; PostgreSQL says which briefs to skip.
  endpoints: () => ['postgres', 'backup-store', 'service-adapter'],
  initialState: () => ({}),
  phases: [
    objectStoreServerPhase("kohakku's s3 server back"),
    resolveSetPhase(),
    {
      name: 'compare bucket with backup',
      effect: 'read',
      waitingFor: () => 'listing the bucket and the backup index',
      async run(ctx) {
        ctx.state.objectPlan = await planObjectRestore({
          backupId: ctx.state.set!.id,
          from: ctx.state.set!.source,
        });
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
    server: state.objectStoreServer,
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
