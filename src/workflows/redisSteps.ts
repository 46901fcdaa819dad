/**
 * Bringing Redis back, shared by Redis loss and full cluster: restart it so it loads its
 * AOF/RDB; if it will not start and its files are damaged, move them aside (after approval)
 * and start it empty.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { RedisStatus } from '../activities/redisRecovery';
import { ErrorType, fail } from '../domain/errors';
import { quick, waitUpTo } from './options';
import type { Procedure } from './procedure';

const { redisStatus, restartService, checkRedisPersistence, moveRedisFilesAside } =
  proxyActivities<Activities>(quick);

export interface RedisBack {
  recoveredFrom: 'already running' | 'its own AOF/RDB' | 'empty (damaged files moved aside)';
  movedAside?: { movedTo: string; moved: string[] };
  keys?: number;
}

export async function bringRedisBack(
  procedure: Procedure,
  steps: { restart: string; startEmpty: string },
  approve: (what: string) => Promise<unknown>,
  recoveryId: string,
  startDeadline: number,
  /** Redis's status when the caller has just asked for it (no need to ask twice). */
  known?: RedisStatus,
): Promise<RedisBack> {
  const { waitForRedis } = proxyActivities<Activities>(waitUpTo(startDeadline));
  const before = known ?? (await redisStatus());
  if (before.up) {
    procedure.skip(steps.restart, `already running, ${before.keys} keys`);
    procedure.skip(steps.startEmpty, 'not needed');
    return { recoveredFrom: 'already running', keys: before.keys };
  }
  const restarted = await procedure.step(
    steps.restart,
    `Redis to come back and load its files (up to ${startDeadline} s)`,
    async () => {
      await restartService({ service: 'redis' });
      return waitForRedis({ deadlineSeconds: startDeadline });
    },
    (s) => (s.up ? `up, ${s.keys} keys loaded` : `did not come up: ${s.detail}`),
  );
  if (restarted.up) {
    procedure.skip(steps.startEmpty, 'not needed: Redis loaded its own files');
    return { recoveredFrom: 'its own AOF/RDB', keys: restarted.keys };
  }
  const movedAside = await procedure.step(
    steps.startEmpty,
    'checking the AOF and RDB',
    async () => {
      const check = await checkRedisPersistence();
      if (check.aof !== 'corrupt' && check.rdb !== 'corrupt') {
        throw fail(
          ErrorType.ServiceUnhealthy,
          `Redis does not start and its files check out (${check.detail}); see the Redis log`,
        );
      }
      await approve(`move Redis's damaged files (${check.detail}) aside and start Redis empty`);
      const moved = await moveRedisFilesAside({ recoveryId });
      await restartService({ service: 'redis' });
      const empty = await waitForRedis({ deadlineSeconds: startDeadline });
      if (!empty.up)
        throw fail(
          ErrorType.ServiceUnhealthy,
          `Redis does not start even without its files: ${empty.detail}`,
        );
      return moved;
    },
    (m) => `moved ${m.moved.join(', ')} to ${m.movedTo}; started empty`,
  );
  return { recoveredFrom: 'empty (damaged files moved aside)', movedAside, keys: 0 };
}
