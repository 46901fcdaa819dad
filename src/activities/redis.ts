/**
 * Kohakku's Redis as seen from Postgres: which active containers the Monitor has registered.
 */
import type { Redis } from 'ioredis';
import type { Config } from '../config';
import { queryController } from '../infra/database';
import { cancellationSignal, heartbeat, sleep } from './heartbeat';

export interface RegistrationReport {
  complete: boolean;
  expected: number;
  registered: number;
  missing: string[];
  /** Registered but not active in Postgres: stale entries, reported, left to the Monitor. */
  extra: string[];
  waitedMs: number;
}

export function createRedisActivities({ config, redis }: { config: Config; redis: Redis }) {
  async function activeContainers(): Promise<string[]> {
    return (await queryController<{ container: string }>(config, config.model.activeContainersSql)).map(
      (r) => r.container,
    );
  }

  async function compare(started: number): Promise<RegistrationReport> {
    const expected = await activeContainers();
    const registered = new Set(await redis.smembers(config.model.redisContainersKey));
    const expectedSet = new Set(expected);
    const missing = expected.filter((c) => !registered.has(c));
    const extra = [...registered].filter((c) => !expectedSet.has(c));
    return {
      complete: missing.length === 0,
      expected: expected.length,
      registered: registered.size,
      missing: missing.slice(0, 20),
      extra: extra.slice(0, 20),
      waitedMs: Date.now() - started,
    };
  }

  /** Waits until every active container in Postgres is registered in Redis, or no progress for the deadline. */
  async function waitForRegistrations(input: {
    deadlineSeconds: number;
    pollMs?: number;
  }): Promise<RegistrationReport> {
    // The deadline counts time without progress: a Monitor registering 300,000 containers may
    // need longer than the deadline in all, but is not stuck while the count keeps growing.
    const started = Date.now();
    let best = -1;
    let lastProgress = started;
    for (;;) {
      const report = await compare(started);
      if (report.registered > best) {
        best = report.registered;
        lastProgress = Date.now();
      }
      if (report.complete || Date.now() - lastProgress >= input.deadlineSeconds * 1000) return report;
      heartbeat({ expected: report.expected, registered: report.registered, missing: report.missing.length });
      await sleep(input.pollMs ?? 1000, cancellationSignal());
    }
  }

  return { waitForRegistrations };
}
