/**
 * Phases the recoveries share, declared once: a service reconnects or is restarted through the
 * adapter; the Monitor re-registers every active container (restarted once if it does not);
 * Redis is restarted to load its AOF/RDB, or — its files damaged — started empty with the
 * files moved aside (a destructive step: approved against what is on disk at that moment).
 */
import { proxyActivities, sleep } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { RegistrationReport } from '../activities/redis';
import type { RedisStatus, RedispatchReport } from '../activities/redisRecovery';
import type { HealthReport } from '../activities/services';
import { ErrorType, fail } from '../domain/errors';
import type { KohakkuService } from '../domain/targets';
import type { Phase } from './engine/recovery';
import { long, quick, waitUpTo } from './options';

const { restartService, redisStatus, checkRedisPersistence, moveRedisFilesAside } =
  proxyActivities<Activities>(quick);

export type ServiceReport = HealthReport & { restarted: boolean };

/** Waits for a service to be healthy; restarts it through the adapter if it does not reconnect in time. */
export async function reconnectOrRestart(
  service: KohakkuService,
  reconnectSeconds: number,
  restartSeconds: number,
): Promise<ServiceReport> {
  const { waitForHealthy } = proxyActivities<Activities>(
    waitUpTo(Math.max(reconnectSeconds, restartSeconds)),
  );
  // Nothing listening (refused): it is gone, not reconnecting: started at once.
  const first = await waitForHealthy({ service, deadlineSeconds: reconnectSeconds, endWhenRefused: true });
  if (first.healthy) return { ...first, restarted: false };
  await restartService({ service });
  const second = await waitForHealthy({ service, deadlineSeconds: restartSeconds });
  if (!second.healthy) {
    throw fail(
      ErrorType.ServiceUnhealthy,
      `${service} is still unhealthy ${restartSeconds} s after a restart (${second.lastError}); check its logs, then run this recovery again`,
    );
  }
  return { ...second, restarted: true };
}

export type Registrations = RegistrationReport & { monitorRestarted: boolean };

/** The phase in which the Monitor registers every active container in Redis (restarted once if needed). */
export function monitorRegistersContainersPhase<I, S extends { registrations?: Registrations }>(options: {
  name: string;
  deadlines: (input: I) => { registrationSeconds: number; restartSeconds: number };
}): Phase<I, S> {
  return {
    name: options.name,
    effect: 'live',
    waitingFor: () => 'the Monitor registering every active container in Redis',
    async run(ctx) {
      const { registrationSeconds, restartSeconds } = options.deadlines(ctx.input);
      const { waitForRegistrations } = proxyActivities<Activities>(waitUpTo(registrationSeconds));
      // A Monitor that is down cannot register anything: bring it up first.
      const monitor = await reconnectOrRestart('monitor', 2, restartSeconds);
      const first = await waitForRegistrations({ deadlineSeconds: registrationSeconds });
      if (first.complete) {
        ctx.state.registrations = { ...first, monitorRestarted: monitor.restarted };
        return;
      }
      ctx.note(`${first.missing.length}+ missing after ${registrationSeconds} s: restarting the Monitor`);
      await restartService({ service: 'monitor' });
      const { waitForHealthy } = proxyActivities<Activities>(waitUpTo(restartSeconds));
      const health = await waitForHealthy({ service: 'monitor', deadlineSeconds: restartSeconds });
      if (!health.healthy)
        throw fail(
          ErrorType.ServiceUnhealthy,
          `the Monitor is unhealthy after a restart: ${health.lastError}`,
        );
      const second = await waitForRegistrations({ deadlineSeconds: registrationSeconds });
      if (!second.complete) {
        throw fail(
          ErrorType.RegistrationIncomplete,
          `${second.expected - second.registered} active container(s) still unregistered after a Monitor restart (e.g. ${second.missing.slice(0, 3).join(', ')})`,
          second,
        );
      }
      ctx.state.registrations = { ...second, monitorRestarted: true };
    },
    describe: ({ state }) =>
      `${state.registrations!.registered}/${state.registrations!.expected} containers registered${state.registrations!.monitorRestarted ? ' after a Monitor restart' : ''}`,
    plan: () => ({
      action:
        'start the Monitor if it is down, wait until it has registered every active container; restart it once if not',
      touches: ['monitor', 'redis registrations'],
    }),
  };
}

export interface RedisBack {
  recoveredFrom: 'already running' | 'its own AOF/RDB' | 'empty (damaged files moved aside)';
  movedAside?: { movedTo: string; moved: string[] };
  keys?: number;
}

export interface RedisState {
  redisBefore?: RedisStatus;
  redisRestarted?: RedisStatus;
  redis?: RedisBack;
}

/** Two phases: restart Redis (it loads its files); if it will not start and its files are damaged, move them aside and start empty. */
export function bringRedisBackPhases<I, S extends RedisState>(options: {
  restart: string;
  startEmpty: string;
  startDeadlineSeconds: (input: I) => number;
}): [Phase<I, S>, Phase<I, S>] {
  const restart: Phase<I, S> = {
    name: options.restart,
    effect: 'live',
    waitingFor: (ctx) =>
      `Redis to come back and load its files (up to ${options.startDeadlineSeconds(ctx.input)} s)`,
    async run(ctx) {
      const before = ctx.state.redisBefore ?? (await redisStatus());
      ctx.state.redisBefore = before;
      if (before.up) {
        ctx.state.redis = { recoveredFrom: 'already running', keys: before.keys };
        return;
      }
      const seconds = options.startDeadlineSeconds(ctx.input);
      const { waitForRedis } = proxyActivities<Activities>(waitUpTo(seconds));
      await restartService({ service: 'redis' });
      const after = await waitForRedis({ deadlineSeconds: seconds });
      ctx.state.redisRestarted = after;
      if (after.up) ctx.state.redis = { recoveredFrom: 'its own AOF/RDB', keys: after.keys };
    },
    changed: ({ state }) => state.redis?.recoveredFrom !== 'already running', // a running Redis is left alone
    describe: ({ state }) =>
      state.redis?.recoveredFrom === 'already running'
        ? `already running, ${state.redis.keys} keys`
        : state.redisRestarted?.up
          ? `up, ${state.redisRestarted.keys} keys loaded`
          : `did not come up: ${state.redisRestarted?.detail}`,
    plan: ({ state }) => ({
      action: state.redisBefore?.up
        ? 'none: Redis answers'
        : 'restart Redis through the service adapter; it loads its AOF/RDB',
      touches: ['redis'],
    }),
  };
  const startEmpty: Phase<I, S> = {
    name: options.startEmpty,
    effect: 'live',
    skip: ({ state, planMode }) =>
      planMode
        ? undefined
        : state.redis
          ? `not needed: Redis is up (${state.redis.recoveredFrom})`
          : undefined,
    waitingFor: () => 'checking the AOF and RDB, moving damaged files aside, starting Redis empty',
    async destroys({ state, planMode }) {
      if (planMode && state.redisBefore?.up) return [];
      const check = await checkRedisPersistence();
      if (check.aof !== 'corrupt' && check.rdb !== 'corrupt') {
        if (planMode) return [];
        throw fail(
          ErrorType.ServiceUnhealthy,
          `Redis does not start and its files check out (${check.detail}); see the Redis log`,
        );
      }
      return [
        {
          id: 'redis-files',
          description: `Redis's damaged files (${check.detail}) in ${check.dataDir}, moved aside into kohakku-dr-aside-*; Redis starts empty`,
        },
      ];
    },
    async run(ctx) {
      const seconds = options.startDeadlineSeconds(ctx.input);
      const { waitForRedis } = proxyActivities<Activities>(waitUpTo(seconds));
      const moved = await moveRedisFilesAside({ recoveryId: ctx.recoveryId });
      await restartService({ service: 'redis' });
      const empty = await waitForRedis({ deadlineSeconds: seconds });
      if (!empty.up)
        throw fail(
          ErrorType.ServiceUnhealthy,
          `Redis does not start even without its files: ${empty.detail}`,
        );
      ctx.state.redis = { recoveredFrom: 'empty (damaged files moved aside)', movedAside: moved, keys: 0 };
    },
    describe: ({ state }) =>
      `moved ${state.redis!.movedAside!.moved.join(', ')} to ${state.redis!.movedAside!.movedTo}; started empty`,
    plan: () => ({
      action: 'only if Redis will not start and its files are damaged: move them aside and start Redis empty',
      touches: ['redis data directory'],
    }),
  };
  return [restart, startEmpty];
}

export interface LostTasks {
  inFlight: number;
  checkedBack: number;
  requeued: number;
}

/** Running agents time out or check back: a durable timer of `checkInGraceSeconds` (300 by default). */
export function checkInGracePhase<I extends { checkInGraceSeconds?: number }, S>(): Phase<I, S> {
  return {
    name: "agents' check-in grace period",
    effect: 'read',
    runsInPlan: false,
    waitingFor: ({ input }) => `${input.checkInGraceSeconds ?? 300} s for running agents to check back`,
    run: ({ input }) => sleep((input.checkInGraceSeconds ?? 300) * 1000),
    plan: ({ input }) => ({ action: `wait ${input.checkInGraceSeconds ?? 300} s`, touches: [] }),
  };
}

/** In-flight tasks whose agents did not check back → pending, and every pending task queued once. */
export function redispatchLostTasksPhase<I, S extends { lost?: LostTasks; redispatch?: RedispatchReport }>(
  name: string,
): Phase<I, S> {
  const { requeueLostTasks, redispatchPendingTasks } = proxyActivities<Activities>(long);
  return {
    name,
    effect: 'live',
    waitingFor: () => 'putting tasks whose agents did not check back, and pending tasks, on the queue',
    async run(ctx) {
      const lost = await requeueLostTasks();
      ctx.state.lost = { inFlight: lost.inFlight, checkedBack: lost.checkedBack, requeued: lost.requeued };
      ctx.state.redispatch = await redispatchPendingTasks({ recoveryId: ctx.recoveryId });
    },
    describe: ({ state }) =>
      `${state.lost!.requeued} lost task(s) requeued, ${state.lost!.checkedBack} agents checked back; ${state.redispatch!.pushed} pushed, depth ${state.redispatch!.depth}`,
    plan: () => ({
      action:
        'in-flight tasks whose agents did not check back → pending, queued once; pending tasks queued once',
      touches: ['postgres tasks', 'redis queue'],
    }),
  };
}
