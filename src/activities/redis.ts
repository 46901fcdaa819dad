/**
 * Kohakku's Redis as seen from Postgres: which active containers the Monitor has registered.
 */
import type { Redis } from 'ioredis';
import type { Config } from '../config';
import { forEachPage, withControllerDb } from '../infra/database';
import { cancellationSignal, heartbeat, sleep } from './heartbeat';

export interface RegistrationReport {
  complete: boolean;
  expected: number;
  registered: number;
  missing: string[];
  /** Registered but not active in Postgres (a sample of up to 20): stale entries, reported, left to the Monitor. */
  extra: string[];
  waitedMs: number;
}

/** Registered members sampled for stale entries (`extra`) per comparison: a few SSCAN pages. */
const EXTRA_SAMPLE_PAGES = 5;

export function createRedisActivities({ config, redis }: { config: Config; redis: Redis }) {
  const key = config.model.redisContainersKey;

  /**
   * Active containers (a Postgres cursor, page by page) against the registered set (SMISMEMBER
   * per page, SCARD for the count): the worker holds one page, whatever the number of containers.
   */
  async function compare(started: number): Promise<RegistrationReport> {
    let expected = 0;
    let present = 0;
    const missing: string[] = [];
    await withControllerDb(config, (c) =>
      forEachPage<{ container: string }>(c, config.model.activeContainersSql, async (rows) => {
        const ids = rows.map((r) => r.container);
        const flags = await redis.smismember(key, ...ids);
        expected += ids.length;
        ids.forEach((id, i) => {
          if (flags[i] === 1) present++;
          else if (missing.length < 20) missing.push(id);
        });
      }),
    );
    const registered = await redis.scard(key);
    return {
      complete: present === expected,
      expected,
      registered,
      missing,
      extra: registered > present ? await staleSample() : [],
      waitedMs: Date.now() - started,
    };
  }

  /** Up to 20 registered containers Postgres does not have as active, from a few SSCAN pages. */
  async function staleSample(): Promise<string[]> {
    const out: string[] = [];
    let cursor = '0';
    for (let page = 0; page < EXTRA_SAMPLE_PAGES && out.length < 20; page++) {
      const [next, members] = await redis.sscan(key, cursor, 'COUNT', 1000);
      cursor = next;
      if (members.length > 0) {
        const stale = await withControllerDb(config, (c) =>
          c.query<{ container: string }>(
            `SELECT x AS container FROM pg_catalog.unnest($1::text[]) x
              WHERE NOT EXISTS (SELECT 1 FROM (${config.model.activeContainersSql.trim().replace(/;+$/, '')}) a WHERE a.container = x)
              LIMIT ${20 - out.length}`,
            [members],
          ),
        );
        out.push(...stale.rows.map((r) => r.container));
      }
      if (cursor === '0') break;
    }
    return out;
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
