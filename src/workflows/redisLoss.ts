/**
 * Redis loss — the runbook, in order:
 *   1. restart Redis (it recovers from its AOF/RDB)
 *   2. if the AOF is corrupt: move the damaged files aside (never deleted) and start empty
 *   3. the Monitor re-registers active containers from Postgres
 *   4. the queue depth reset: re-dispatch pending tasks from Postgres, each exactly once
 */
import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { RedispatchReport } from '../activities/redisRecovery';
import type { RegistrationReport } from '../activities/redis';
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
import { monitorRegistersContainers } from './services';

export interface RedisLossInput extends RecoveryCommonInput {
  /** How long Redis gets to come up (and load its files) after a restart. */
  startDeadlineSeconds?: number;
  registrationDeadlineSeconds?: number;
  restartDeadlineSeconds?: number;
}

export interface RedisLossResult {
  procedure: 'redis-loss';
  recoveredFrom: RedisBack['recoveredFrom'];
  movedAside?: RedisBack['movedAside'];
  registrations: RegistrationReport & { monitorRestarted: boolean };
  redispatch: RedispatchReport;
  steps: StepProgress[];
  measurements: Measurements;
}

const STEPS = [
  'check redis',
  'restart redis',
  'start empty if its files are damaged',
  'monitor re-registers containers',
  're-dispatch pending tasks',
] as const;

const { redisStatus, checkRedisPersistence } = proxyActivities<Activities>(quick);
const { redispatchPendingTasks } = proxyActivities<Activities>(long);

export async function redisLoss(input: RedisLossInput = {}): Promise<RedisLossResult | RecoveryPlan> {
  const { procedure, approve, recoveryId, started } = startRecovery(
    'Redis loss',
    STEPS,
    input.confirm === true,
  );
  const startDeadline = input.startDeadlineSeconds ?? 60;
  return procedure.run(async () => {
    const before = await procedure.step(
      'check redis',
      'PING',
      () => redisStatus(),
      (s) => (s.up ? `up, ${s.keys} keys` : `down: ${s.detail}`),
    );
    if (input.plan) {
      const files = before.up ? undefined : await checkRedisPersistence().catch(() => undefined);
      return {
        procedure: 'redis-loss',
        plan: true,
        steps: [
          {
            step: 'restart redis',
            action: before.up
              ? 'none: Redis answers'
              : 'restart through the service adapter; it loads its AOF/RDB',
            touches: ['redis'],
            destructive: false,
          },
          {
            step: 'start empty if its files are damaged',
            action: files
              ? `files: AOF ${files.aof}, RDB ${files.rdb}; if Redis will not start, move them into ${files.dataDir}/kohakku-dr-aside-* (needs approval) and start empty`
              : 'only if Redis will not start',
            touches: ['redis data directory'],
            destructive: true,
          },
          {
            step: 'monitor re-registers containers',
            action: 'wait for the Monitor; restart it if needed',
            touches: ['monitor', 'redis registrations'],
            destructive: false,
          },
          {
            step: 're-dispatch pending tasks',
            action: 'push every pending task from Postgres not yet queued, once',
            touches: ['redis queue'],
            destructive: false,
          },
        ],
      } satisfies RecoveryPlan;
    }

    const { recoveredFrom, movedAside } = await bringRedisBack(
      procedure,
      { restart: 'restart redis', startEmpty: 'start empty if its files are damaged' },
      approve,
      recoveryId,
      startDeadline,
      before,
    );
    const registrations = await monitorRegistersContainers(
      procedure,
      'monitor re-registers containers',
      input.registrationDeadlineSeconds ?? 60,
      input.restartDeadlineSeconds ?? 120,
    );
    const redispatch = await procedure.step(
      're-dispatch pending tasks',
      'pushing pending tasks from Postgres onto the queue',
      () => redispatchPendingTasks({ recoveryId }),
      (r) => `${r.pushed} pushed, ${r.alreadyQueued} already queued; depth ${r.depth}`,
    );
    return {
      procedure: 'redis-loss' as const,
      recoveredFrom,
      movedAside,
      registrations,
      redispatch,
      steps: procedure.progress.steps,
      measurements: measure(started, input.incidentAt, undefined),
    };
  });
}
