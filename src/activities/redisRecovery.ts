/**
 * Redis loss: is Redis answering, are its persistence files sound (redis-check-aof,
 * redis-check-rdb), move damaged files aside (never delete them), and re-dispatch tasks from
 * Postgres onto the queue — each exactly once, even when the activity is retried.
 */
import { meter } from '../domain/meter';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { Redis } from 'ioredis';
import type { Config } from '../config';
import { forEachPage, PAGE_ROWS, withControllerDb } from '../infra/database';
import { ErrorType, fail } from '../domain/errors';
import { CommandFailed, siblingTool, type CommandRunner } from '../infra/exec';
import { shortTag } from '../infra/hashing';
import { cancellationSignal, heartbeat, sleep } from './heartbeat';

export interface RedisStatus {
  up: boolean;
  detail: string;
  keys?: number;
}

export interface PersistenceCheck {
  dataDir: string;
  files: string[];
  aof: 'ok' | 'corrupt' | 'absent';
  rdb: 'ok' | 'corrupt' | 'absent';
  detail: string;
}

export interface RedispatchReport {
  pending: number;
  alreadyQueued: number;
  pushed: number;
  depth: number;
}

// Pushes each id not yet marked for this recovery; the marker set makes a retry push nothing twice.
const PUSH_ONCE = `
local pushed = 0
for i, id in ipairs(ARGV) do
  if redis.call('SADD', KEYS[2], id) == 1 then
    redis.call('RPUSH', KEYS[1], id)
    redis.call('HSET', KEYS[3] .. id, 'status', 'pending')
    pushed = pushed + 1
  end
end
redis.call('EXPIRE', KEYS[2], 604800)
return pushed`;

/**
 * Lost tasks per set-based requeue statement. Each statement may hash every running task (the
 * planner cannot size an array parameter), so few large batches: at 300,000 lost tasks, 10,000
 * per statement cost 2× one statement for all; a batch still takes only seconds.
 */
const REQUEUE_BATCH = 100_000;

/** A queue snapshot left by a killed worker expires on its own. */
const SNAPSHOT_TTL_SECONDS = 3600;

interface QueueSnapshot {
  /** For each id: whether it was in the queue or the processing list at the snapshot's instant. */
  has(ids: string[]): Promise<boolean[]>;
  release(): Promise<void>;
}

/** Whether the server's redis_version is at least `want` ([major, minor]). */
async function atLeastRedis(redis: Redis, want: [number, number]): Promise<boolean> {
  const info = await redis.info('server');
  const [major = 0, minor = 0] = (/redis_version:(\d+)\.(\d+)/.exec(info) ?? []).slice(1).map(Number);
  return major > want[0] || (major === want[0] && minor >= want[1]);
}

export function createRedisRecoveryActivities({ config, exec }: { config: Config; exec: CommandRunner }) {
  const r = config.redis;
  const connect = () =>
    new Redis({
      host: r.host,
      port: r.port,
      password: r.password,
      db: r.db,
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      connectTimeout: 2000,
    });

  async function withRedis<T>(fn: (redis: Redis) => Promise<T>): Promise<T> {
    const redis = connect();
    redis.on('error', () => undefined);
    try {
      await redis.connect();
      return await fn(redis);
    } finally {
      redis.disconnect();
    }
  }

  async function redisStatus(): Promise<RedisStatus> {
    try {
      return await withRedis(async (redis) => ({
        up: (await redis.ping()) === 'PONG',
        detail: 'PONG',
        keys: await redis.dbsize(),
      }));
    } catch (err) {
      return { up: false, detail: (err as Error).message };
    }
  }

  /** Waits until Redis answers PING (not LOADING) or the deadline passes; never throws on "down". */
  async function waitForRedis(input: {
    deadlineSeconds: number;
  }): Promise<RedisStatus & { waitedMs: number }> {
    const started = Date.now();
    for (;;) {
      const status = await redisStatus();
      const waitedMs = Date.now() - started;
      if (status.up || waitedMs > input.deadlineSeconds * 1000) return { ...status, waitedMs };
      heartbeat({ waiting: 'redis', detail: status.detail });
      await sleep(500, cancellationSignal());
    }
  }

  function dataDir(): string {
    if (!r.dataDir) {
      throw fail(
        ErrorType.InvalidInput,
        "REDIS_DATA_DIR is not set: the worker cannot check or move Redis files; set it to Redis's data directory",
      );
    }
    return r.dataDir;
  }

  async function listPersistence(
    dir: string,
  ): Promise<{ aofManifest?: string; aofFile?: string; rdb?: string; all: string[] }> {
    const all: string[] = [];
    const names = await fs.readdir(dir).catch(() => [] as string[]);
    let aofManifest: string | undefined;
    let aofFile: string | undefined;
    let rdb: string | undefined;
    for (const name of names) {
      const full = path.join(dir, name);
      if (name === 'appendonlydir') {
        all.push(full);
        const inner = await fs.readdir(full).catch(() => [] as string[]);
        const manifest = inner.find((f) => f.endsWith('.manifest'));
        if (manifest) aofManifest = path.join(full, manifest);
      } else if (name.endsWith('.aof')) {
        all.push(full);
        aofFile = full;
      } else if (name.endsWith('.rdb')) {
        all.push(full);
        rdb = full;
      }
    }
    return { aofManifest, aofFile, rdb, all };
  }

  /** redis-check-aof / redis-check-rdb over the persistence files, changing nothing. */
  async function checkRedisPersistence(): Promise<PersistenceCheck> {
    const dir = dataDir();
    const files = await listPersistence(dir);
    const details: string[] = [];
    let aof: PersistenceCheck['aof'] = 'absent';
    const aofTarget = files.aofManifest ?? files.aofFile;
    if (aofTarget) {
      try {
        await exec(r.checkAofBin, [aofTarget]);
        aof = 'ok';
      } catch (err) {
        if (err instanceof CommandFailed && err.exitCode === undefined)
          throw fail(ErrorType.ToolUnavailable, err.message);
        aof = 'corrupt';
        details.push(`AOF: ${(err as Error).message.slice(0, 300)}`);
      }
    }
    let rdb: PersistenceCheck['rdb'] = 'absent';
    if (files.rdb) {
      try {
        const checkRdb = siblingTool(r.checkAofBin, 'redis-check-rdb');
        await exec(checkRdb, [files.rdb]);
        rdb = 'ok';
      } catch (err) {
        rdb = 'corrupt';
        details.push(`RDB: ${(err as Error).message.slice(0, 300)}`);
      }
    }
    return { dataDir: dir, files: files.all, aof, rdb, detail: details.join('; ') || 'files check out' };
  }

  /** Moves AOF and RDB files into `<dataDir>/kohakku-dr-aside-<tag>/` (same filesystem: a rename). Idempotent. */
  async function moveRedisFilesAside(input: {
    recoveryId: string;
  }): Promise<{ movedTo: string; moved: string[] }> {
    const dir = dataDir();
    const aside = path.join(dir, `kohakku-dr-aside-${shortTag(input.recoveryId)}`);
    await fs.mkdir(aside, { recursive: true });
    const { all } = await listPersistence(dir);
    const moved: string[] = [];
    for (const file of all) {
      await fs.rename(file, path.join(aside, path.basename(file)));
      moved.push(path.basename(file));
    }
    return { movedTo: aside, moved };
  }

  /**
   * Which of the ids are in the queue or the Dispatcher's processing list *as they were at one
   * instant*. Redis 6.2 and later: both lists are copied server-side in one MULTI, then loaded
   * page by page into a set of the snapshot (server memory, never the worker's whole list) and
   * asked with SMISMEMBER. Older servers: the lists are read whole in one MULTI.
   */
  async function queueSnapshot(redis: Redis, recoveryId: string): Promise<QueueSnapshot> {
    const m = config.model;
    const base = `${m.redisPrefix}dr:snapshot:${shortTag(recoveryId)}`;
    const lists = [`${base}:queue`, `${base}:processing`];
    const members = `${base}:members`;
    if (!(await atLeastRedis(redis, [6, 2]))) {
      const snapshot =
        (await redis.multi().lrange(m.queueKey, 0, -1).lrange(m.processingKey, 0, -1).exec()) ?? [];
      const queued = new Set<string>();
      for (const [err, ids] of snapshot) {
        if (err) throw err;
        for (const id of ids as string[]) queued.add(id);
      }
      return { has: async (ids) => ids.map((id) => queued.has(id)), release: async () => undefined };
    }
    const copied =
      (await redis
        .multi()
        .copy(m.queueKey, lists[0]!, 'REPLACE')
        .copy(m.processingKey, lists[1]!, 'REPLACE')
        .exec()) ?? [];
    for (const [err] of copied) if (err) throw err;
    await redis.del(members);
    for (const list of lists) {
      await redis.expire(list, SNAPSHOT_TTL_SECONDS);
      for (let start = 0; ; start += PAGE_ROWS) {
        const ids = await redis.lrange(list, start, start + PAGE_ROWS - 1);
        if (ids.length === 0) break;
        await redis.sadd(members, ...ids);
        await redis.expire(members, SNAPSHOT_TTL_SECONDS);
        heartbeat({ stage: 'reading the queue', read: start + ids.length });
        if (ids.length < PAGE_ROWS) break;
      }
    }
    return {
      has: async (ids) =>
        ids.length === 0 ? [] : (await redis.smismember(members, ...ids)).map((x) => x === 1),
      release: async () => void (await redis.del(...lists, members)),
    };
  }

  /**
   * Puts every pending task from Postgres back on the queue — once, also while a Dispatcher
   * consumes it: the queue and the Dispatcher's processing list are snapshotted together (one
   * MULTI) *before* Postgres is read, so a task taken from the queue in between is either in the
   * snapshot or no longer pending in Postgres — a task is pushed only when it was neither queued
   * nor being dispatched and is still pending after that. A per-recovery marker set guards the
   * push itself, so a retry pushes nothing twice. Then sets the depth counter to the queue's length.
   * Pending tasks are read through a cursor and the snapshot is asked page by page, so the worker
   * holds one page whatever the queue's or the backlog's size.
   */
  async function redispatchPendingTasks(input: { recoveryId: string }): Promise<RedispatchReport> {
    const m = config.model;
    return withRedis(async (redis) => {
      const snapshot = await queueSnapshot(redis, input.recoveryId);
      try {
        const marker = `${m.redisPrefix}dr:redispatched:${shortTag(input.recoveryId)}`;
        let pending = 0;
        let missing = 0;
        let pushed = 0;
        await withControllerDb(config, (client) =>
          forEachPage<{ id: string | number }>(client, m.pendingTasksSql, async (rows) => {
            const ids = rows.map((r) => String(r.id));
            const queued = await snapshot.has(ids);
            const absent = ids.filter((_, i) => !queued[i]);
            pending += ids.length;
            missing += absent.length;
            for (let i = 0; i < absent.length; i += 1000) {
              pushed += Number(
                await redis.eval(
                  PUSH_ONCE,
                  3,
                  m.queueKey,
                  marker,
                  `${m.redisPrefix}task:`,
                  ...absent.slice(i, i + 1000),
                ),
              );
            }
            heartbeat({ stage: 're-dispatching', pendingRead: pending, pushed });
          }),
        );
        const depth = await redis.llen(m.queueKey);
        await redis.set(m.queueDepthKey, String(depth));
        return { pending, alreadyQueued: pending - missing, pushed, depth };
      } finally {
        await snapshot.release().catch(() => undefined);
      }
    });
  }

  /**
   * After the agents' grace period: every in-flight task whose agent has not checked back
   * (no `<agent prefix><container>` key in Redis) is put back to pending in Postgres with the
   * configured set-based statement, 100,000 at a time, which changes nothing on a retry (or the
   * per-task statement of before 0.3.1, when still configured). Queueing it is left to
   * redispatchPendingTasks, which runs next and queues each pending task exactly once.
   * Tasks whose agents checked back are left alone. In-flight tasks are read through a cursor on
   * one session while another requeues, so the worker holds at most one batch of lost tasks.
   */
  async function requeueLostTasks(): Promise<{
    inFlight: number;
    checkedBack: number;
    requeued: number;
    requeuedIds: string[];
  }> {
    const m = config.model;
    let inFlight = 0;
    let checkedBack = 0;
    let requeued = 0;
    let lostSeen = 0;
    const requeuedIds: string[] = [];
    let lost: { id: string; container: string }[] = [];
    const noteRequeued = (id: string) => {
      requeued++;
      if (requeuedIds.length < 50) requeuedIds.push(id);
    };
    await withRedis((redis) =>
      withControllerDb(config, (writer) => {
        const requeue = async () => {
          const batch = lost;
          lost = [];
          if (batch.length === 0) return;
          if (m.requeueTaskSql) {
            for (const t of batch) {
              const r = await writer.query(m.requeueTaskSql, [t.id, t.container]);
              if ((r.rowCount ?? 0) > 0) noteRequeued(t.id);
              if (requeued % 500 === 0) heartbeat({ stage: 'requeueing', requeued, lostSeen });
            }
          } else {
            const r = await writer.query<{ id: string | number }>(m.requeueTasksSql, [
              batch.map((t) => t.id),
              batch.map((t) => t.container),
            ]);
            for (const row of r.rows) noteRequeued(String(row.id));
          }
          heartbeat({
            stage: 'requeueing',
            requeued,
            lostSeen,
            inFlightRead: inFlight,
            meter: meter('requeueing lost tasks', 'tasks', requeued, lostSeen),
          });
        };
        return withControllerDb(config, async (reader) => {
          await forEachPage<{ id: string | number; container: string }>(
            reader,
            m.inFlightTasksSql,
            async (rows) => {
              inFlight += rows.length;
              const pipe = redis.pipeline();
              for (const t of rows) pipe.exists(`${m.agentKeyPrefix}${t.container}`);
              const res = (await pipe.exec()) ?? [];
              rows.forEach((t, j) => {
                if (res[j]?.[1] === 1) checkedBack++;
                else lost.push({ id: String(t.id), container: t.container });
              });
              lostSeen = inFlight - checkedBack;
              if (lost.length >= REQUEUE_BATCH) await requeue();
              else
                heartbeat({
                  stage: 'reading in-flight tasks',
                  inFlightRead: inFlight,
                  lostSeen,
                  meter: meter('reading in-flight tasks', 'tasks', inFlight),
                });
            },
          );
          await requeue();
        });
      }),
    );
    return { inFlight, checkedBack, requeued, requeuedIds };
  }

  return {
    redisStatus,
    waitForRedis,
    checkRedisPersistence,
    moveRedisFilesAside,
    redispatchPendingTasks,
    requeueLostTasks,
  };
}
