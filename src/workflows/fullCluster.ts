/**
 * Full cluster — the runbook, in order:
 *   1. Postgres first (source of truth)                } in parallel: Redis does not need
 *   2. Redis (its AOF, or fresh)                       } Postgres to start
 *   3. the object store from the backup (needs Postgres: completed-task briefs are skipped)
 *   4. start Controller, Dispatcher, Kohakku's Temporal — in that order, each gated on health;
 *      then the Monitor re-registers the containers Postgres says are active
 *   5. running agents time out or check back: a durable wait for the check-in grace period
 *   6. re-dispatch the in-progress tasks whose agents did not check back (exactly once), and
 *      every pending task the fresh queue lost
 * and a cleanup phase that always runs.
 */
import { proxyActivities, sleep } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { ObjectRestoreReport } from '../activities/objectStore';
import type { RestoreResult } from '../activities/postgres';
import type { PostgresTarget } from '../domain/targets';
import type { RedispatchReport } from '../activities/redisRecovery';
import type { HealthReport } from '../activities/services';
import { ErrorType, fail } from '../domain/errors';
import { long, quick } from './options';
import type { StepProgress } from './procedure';
import {
  startRecovery,
  measure,
  type Measurements,
  type RecoveryCommonInput,
  type RecoveryPlan,
} from './recovery';
import { bringRedisBack, type RedisBack } from './redisSteps';
import { monitorRegistersContainers, reconnectOrRestart } from './services';

export interface FullClusterInput extends RecoveryCommonInput {
  /** Backup set id, or latest (the newest verified set; the newest if none is verified). */
  backupId?: string;
  /** How long running agents get to check back before their tasks are re-dispatched. */
  checkInGraceSeconds?: number;
  /** Per service: how long it gets to come up after being started. */
  startDeadlineSeconds?: number;
  registrationDeadlineSeconds?: number;
}

export interface FullClusterResult {
  procedure: 'full-cluster';
  backupId: string;
  backupVerified: boolean;
  postgres: RestoreResult[];
  redis: RedisBack;
  objects: ObjectRestoreReport;
  services: (HealthReport & { restarted: boolean })[];
  lostTasks: { inFlight: number; checkedBack: number; requeued: number };
  redispatch: RedispatchReport;
  steps: StepProgress[];
  measurements: Measurements;
}

const STEPS = [
  'resolve backup set',
  'restore postgres',
  'restart redis',
  'start redis empty if its files are damaged',
  'restore object store',
  'start controller',
  'start dispatcher',
  'start kohakku temporal',
  'monitor re-registers containers',
  "agents' check-in grace period",
  're-dispatch lost tasks',
  'cleanup',
] as const;

const TARGETS: PostgresTarget[] = ['controller', 'dispatcher'];

const {
  resolveBackupSet,
  liveDatabases,
  lockBackup,
  unlockBackup,
  cleanupPostgresRestore,
  planObjectRestore,
} = proxyActivities<Activities>(quick);
const {
  preparePostgresRestore,
  restorePostgresDatabase,
  restoreObjects,
  requeueLostTasks,
  redispatchPendingTasks,
} = proxyActivities<Activities>(long);

export async function fullCluster(input: FullClusterInput = {}): Promise<FullClusterResult | RecoveryPlan> {
  const { procedure, approve, recoveryId, started } = startRecovery(
    'Full cluster',
    STEPS,
    input.confirm === true,
  );
  const grace = input.checkInGraceSeconds ?? 300;
  const startDeadline = input.startDeadlineSeconds ?? 120;
  if (
    ![grace, startDeadline, input.registrationDeadlineSeconds ?? 60].every(
      (n) => typeof n === 'number' && n > 0 && n <= 86400,
    )
  ) {
    throw fail(
      ErrorType.InvalidInput,
      'checkInGraceSeconds, startDeadlineSeconds and registrationDeadlineSeconds must be 1..86400 seconds',
    );
  }
  let locked: string | undefined;
  return procedure.run(
    async () => {
      const { set, live, objects } = await procedure.step(
        'resolve backup set',
        'finding the backup set and what is left of the cluster',
        async () => {
          const set = await resolveBackupSet({ backupId: input.backupId });
          return {
            set,
            live: await liveDatabases({ targets: TARGETS }),
            objects: await planObjectRestore({ backupId: set.id }),
          };
        },
        ({ set, live }) =>
          `${set.id} (${set.verified ? 'verified' : 'NOT verified'}); live databases: ${live.join(', ') || 'none'}`,
      );
      if (input.plan) return planOf(set, live, objects.toCopy, objects.overwriteCount, grace);
      await lockBackup({ backupId: set.id, holder: recoveryId });
      locked = set.id;
      if (live.length > 0 || objects.overwriteCount > 0) {
        await approve(
          `replace live data: ${[...live.map((t) => `the ${t} database (moved aside)`), ...(objects.overwriteCount ? [`${objects.overwriteCount} differing object(s) (copied aside)`] : [])].join(', ')}`,
        );
      }

      // 1 + 2: Postgres and Redis side by side.
      const [postgres, redis] = await Promise.all([
        procedure.step(
          'restore postgres',
          'verifying dumps, restoring into staging databases, swapping in',
          async () => {
            await Promise.all(
              TARGETS.map((target) => preparePostgresRestore({ backupId: set.id, target, recoveryId })),
            );
            return Promise.all(
              TARGETS.map((target) =>
                restorePostgresDatabase({ backupId: set.id, target, recoveryId, replaceExisting: true }),
              ),
            );
          },
          (r) => r.map((x) => `${x.database}: ${x.rowsVerified} rows verified`).join('; '),
        ),
        bringRedisBack(
          procedure,
          { restart: 'restart redis', startEmpty: 'start redis empty if its files are damaged' },
          approve,
          recoveryId,
          startDeadline,
        ),
      ]);

      // 3: needs Postgres (which briefs belong to completed tasks).
      const objectsRestored = await procedure.step(
        'restore object store',
        'copying objects from the backup mirror',
        () => restoreObjects({ backupId: set.id, recoveryId }),
        (r) =>
          `${r.copied} copied, ${r.alreadyPresent} already there, ${r.skippedCompletedBriefs} completed-task briefs skipped`,
      );

      // 4: services in order, each gated on health.
      const services: FullClusterResult['services'] = [];
      for (const [step, service] of [
        ['start controller', 'controller'],
        ['start dispatcher', 'dispatcher'],
        ['start kohakku temporal', 'temporal'],
      ] as const) {
        services.push(
          await procedure.step(
            step,
            `${service} healthy`,
            () => reconnectOrRestart(service, 2, startDeadline),
            (h) => `${h.restarted ? 'started' : 'already running'}, healthy`,
          ),
        );
      }
      await monitorRegistersContainers(
        procedure,
        'monitor re-registers containers',
        input.registrationDeadlineSeconds ?? 60,
        startDeadline,
      );

      // 5: a durable timer: a worker or server restart during the wait does not shorten or restart it.
      await procedure.step(
        "agents' check-in grace period",
        `${grace} s for running agents to check back`,
        () => sleep(grace * 1000),
      );

      // 6
      const { lost, redispatch } = await procedure.step(
        're-dispatch lost tasks',
        'putting tasks whose agents did not check back, and pending tasks, on the queue',
        async () => ({
          lost: await requeueLostTasks(),
          redispatch: await redispatchPendingTasks({ recoveryId }),
        }),
        ({ lost, redispatch }) =>
          `${lost.requeued} lost task(s) requeued, ${lost.checkedBack} agents checked back; ${redispatch.pushed} pushed, depth ${redispatch.depth}`,
      );
      return {
        procedure: 'full-cluster' as const,
        backupId: set.id,
        backupVerified: set.verified,
        postgres,
        redis,
        objects: objectsRestored,
        services,
        lostTasks: { inFlight: lost.inFlight, checkedBack: lost.checkedBack, requeued: lost.requeued },
        redispatch,
        steps: procedure.progress.steps,
        measurements: measure(started, input.incidentAt, set.createdAt),
      };
    },
    () =>
      procedure.step(
        'cleanup',
        'dropping staging databases, local copies, the hold on the backup',
        async () => {
          await cleanupPostgresRestore({ recoveryId, targets: TARGETS });
          if (locked) await unlockBackup({ backupId: locked, holder: recoveryId });
        },
      ),
  );
}

function planOf(
  set: { id: string; createdAt: string; verified: boolean },
  live: PostgresTarget[],
  toCopy: number,
  overwrite: number,
  grace: number,
): RecoveryPlan {
  const step = (name: string, action: string, touches: string[], destructive = false) => ({
    step: name,
    action,
    touches,
    destructive,
  });
  return {
    procedure: 'full-cluster',
    plan: true,
    backupId: set.id,
    backupCreatedAt: set.createdAt,
    backupVerified: set.verified,
    steps: [
      step(
        'restore postgres',
        `restore both databases from ${set.id}${live.length ? `; live ${live.join(', ')} moved aside (needs approval)` : ''}`,
        ['postgres'],
        live.length > 0,
      ),
      step(
        'restart redis',
        'restart Redis (AOF/RDB); if its files are damaged, move them aside (needs approval) and start empty',
        ['redis'],
      ),
      step(
        'restore object store',
        `copy ${toCopy} object(s) from the mirror${overwrite ? `; ${overwrite} differing copied aside and replaced (needs approval)` : ''}`,
        ['object store'],
        overwrite > 0,
      ),
      step(
        'start services',
        'controller, dispatcher, Kohakku’s Temporal in order, each gated on health; the Monitor re-registers containers',
        ['controller', 'dispatcher', 'temporal', 'monitor'],
      ),
      step("agents' check-in grace period", `wait ${grace} s`, []),
      step(
        're-dispatch lost tasks',
        'in-flight tasks whose agents did not check back → pending, queued once; pending tasks queued once',
        ['postgres tasks', 'redis queue'],
      ),
    ],
  };
}
