/**
 * Redis loss — the runbook, in order:
 *   1. restart Redis (it recovers from its AOF/RDB)
 *   2. if the AOF is corrupt: move the damaged files aside (never deleted) and start empty
 *   3. the Monitor re-registers active containers from Postgres
 *   4. the queue depth reset: re-dispatch pending tasks from Postgres, each exactly once
 */
import { proxyActivities } from '@temporalio/workflow';
import { z } from 'zod';
import type { Activities } from '../activities';
import type { RedispatchReport } from '../activities/redisRecovery';
import type { RecoveryEnvelope, RecoveryPlan } from './definitions';
import { recoveryCommonFields, secondsField } from './engine/input';
import { runRecovery, type RecoveryDefinition } from './engine/recovery';
import { long, quick } from './options';
import {
  bringRedisBackPhases,
  monitorRegistersContainersPhase,
  type RedisBack,
  type RedisState,
  type Registrations,
} from './services';

const { redisStatus } = proxyActivities<Activities>(quick);
const { redispatchPendingTasks } = proxyActivities<Activities>(long);

export const redisLossInput = z.strictObject({
  ...recoveryCommonFields,
  /** How long Redis gets to come up (and load its files) after a restart (60). */
  startDeadlineSeconds: secondsField.optional(),
  registrationDeadlineSeconds: secondsField.optional(),
  restartDeadlineSeconds: secondsField.optional(),
});
export type RedisLossInput = z.input<typeof redisLossInput>;

interface State extends RedisState {
  registrations?: Registrations;
  redispatch?: RedispatchReport;
}

export interface RedisLossDetails {
  recoveredFrom: RedisBack['recoveredFrom'];
  movedAside?: RedisBack['movedAside'];
  registrations: Registrations;
  redispatch: RedispatchReport;
}
export type RedisLossResult = RecoveryEnvelope & RedisLossDetails;

export const redisLossDefinition: RecoveryDefinition<typeof redisLossInput, State, RedisLossDetails> = {
  procedure: 'redis-loss',
  title: 'Redis loss',
  input: redisLossInput,
  locks: () => ['redis'],
  // Redis is what it brings back; the pending tasks come from PostgreSQL.
  endpoints: () => ['postgres', 'service-adapter'],
  initialState: () => ({}),
  phases: [
    {
      name: 'check redis',
      effect: 'read',
      waitingFor: () => 'PING',
      async run(ctx) {
        ctx.state.redisBefore = await redisStatus();
      },
      describe: ({ state }) =>
        state.redisBefore!.up ? `up, ${state.redisBefore!.keys} keys` : `down: ${state.redisBefore!.detail}`,
      plan: () => ({ action: 'PING', touches: [] }),
    },
    ...bringRedisBackPhases<z.infer<typeof redisLossInput>, State>({
      restart: 'restart redis',
      startEmpty: 'start empty if its files are damaged',
      startDeadlineSeconds: (input) => input.startDeadlineSeconds ?? 60,
    }),
    monitorRegistersContainersPhase({
      name: 'monitor re-registers containers',
      deadlines: (input) => ({
        registrationSeconds: input.registrationDeadlineSeconds ?? 60,
        restartSeconds: input.restartDeadlineSeconds ?? 120,
      }),
    }),
    {
      name: 're-dispatch pending tasks',
      effect: 'live',
      waitingFor: () => 'pushing pending tasks from Postgres onto the queue',
      async run(ctx) {
        ctx.state.redispatch = await redispatchPendingTasks({ recoveryId: ctx.recoveryId });
      },
      describe: ({ state }) =>
        `${state.redispatch!.pushed} pushed, ${state.redispatch!.alreadyQueued} already queued; depth ${state.redispatch!.depth}`,
      plan: () => ({
        action: 'push every pending task from Postgres not yet queued, once',
        touches: ['redis queue'],
      }),
    },
  ],
  cleanup: [],
  backup: () => undefined,
  result: ({ state }) => ({
    recoveredFrom: state.redis!.recoveredFrom,
    movedAside: state.redis!.movedAside,
    registrations: state.registrations!,
    redispatch: state.redispatch!,
  }),
};

export async function redisLoss(input?: RedisLossInput): Promise<RedisLossResult | RecoveryPlan> {
  return runRecovery(redisLossDefinition, input);
}
