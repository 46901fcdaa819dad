/**
 * Redis loss: is Redis answering, are its persistence files sound (redis-check-aof,
 * redis-check-rdb), move damaged files aside (never delete them), and re-dispatch tasks from
 * Postgres onto the queue — each exactly once, even when the activity is retried.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { Redis } from 'ioredis';
import type { Config } from '../config';
import { queryController, withControllerDb } from '../infra/database';
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

  async function pendingTaskIds(): Promise<string[]> {
    return (await queryController<{ id: string | number }>(config, config.model.pendingTasksSql)).map((row) =>
      String(row.id),
    );
  }

  /**
   * Puts every pending task from Postgres back on the queue — once, also while a Dispatcher
   * consumes it: the queue and the Dispatcher's processing list are snapshotted together (one
   * MULTI) *before* Postgres is read, so a task taken from the queue in between is either in the
   * snapshot or no longer pending in Postgres — a task is pushed only when it was neither queued
   * nor being dispatched and is still pending after that. A per-recovery marker set guards the
   * push itself, so a retry pushes nothing twice. Then sets the depth counter to the queue's length.
   */
  async function redispatchPendingTasks(input: { recoveryId: string }): Promise<RedispatchReport> {
    const m = config.model;
    return withRedis(async (redis) => {
      const snapshot =
        (await redis.multi().lrange(m.queueKey, 0, -1).lrange(m.processingKey, 0, -1).exec()) ?? [];
      const queued = new Set<string>();
      for (const [err, ids] of snapshot) {
        if (err) throw err;
        for (const id of ids as string[]) queued.add(id);
      }
      const pending = await pendingTaskIds();
      const missing = pending.filter((id) => !queued.has(id));
      const marker = `${m.redisPrefix}dr:redispatched:${shortTag(input.recoveryId)}`;
      let pushed = 0;
      for (let i = 0; i < missing.length; i += 1000) {
        pushed += Number(
          await redis.eval(
            PUSH_ONCE,
            3,
            m.queueKey,
            marker,
            `${m.redisPrefix}task:`,
            ...missing.slice(i, i + 1000),
          ),
        );
        heartbeat({
          stage: 're-dispatching',
          done: Math.min(i + 1000, missing.length),
          total: missing.length,
        });
      }
      const depth = await redis.llen(m.queueKey);
      await redis.set(m.queueDepthKey, String(depth));
      return { pending: pending.length, alreadyQueued: pending.length - missing.length, pushed, depth };
    });
  }

  /**
   * After the agents' grace period: every in-flight task whose agent has not checked back
   * (no `<agent prefix><container>` key in Redis) is put back to pending in Postgres with the
   * configured set-based statement, 100,000 at a time, which changes nothing on a retry (or the
   * per-task statement of before 0.3.1, when still configured). Queueing it is left to
   * redispatchPendingTasks, which runs next and queues each pending task exactly once.
   * Tasks whose agents checked back are left alone.
   */
  async function requeueLostTasks(): Promise<{
    inFlight: number;
    checkedBack: number;
    requeued: number;
    requeuedIds: string[];
  }> {
    const m = config.model;
    return withControllerDb(config, async (client) => {
      const inFlight = (await client.query<{ id: string | number; container: string }>(m.inFlightTasksSql))
        .rows;
      const alive = await withRedis(async (redis) => {
        const out = new Set<string>();
        for (let i = 0; i < inFlight.length; i += 1000) {
          const batch = inFlight.slice(i, i + 1000);
          const pipe = redis.pipeline();
          for (const t of batch) pipe.exists(`${m.agentKeyPrefix}${t.container}`);
          const res = (await pipe.exec()) ?? [];
          batch.forEach((t, j) => {
            if (res[j]?.[1] === 1) out.add(String(t.id));
          });
        }
        return out;
      });
      const lost = inFlight.filter((t) => !alive.has(String(t.id)));
      const requeuedIds: string[] = [];
      if (m.requeueTaskSql) {
        for (const t of lost) {
          const r = await client.query(m.requeueTaskSql, [t.id, t.container]);
          if ((r.rowCount ?? 0) > 0) requeuedIds.push(String(t.id));
          if (requeuedIds.length % 500 === 0)
            heartbeat({ stage: 'requeueing', done: requeuedIds.length, lost: lost.length });
        }
      } else {
        for (let i = 0; i < lost.length; i += REQUEUE_BATCH) {
          const batch = lost.slice(i, i + REQUEUE_BATCH);
          const r = await client.query<{ id: string | number }>(m.requeueTasksSql, [
            batch.map((t) => String(t.id)),
            batch.map((t) => t.container),
          ]);
          for (const row of r.rows) requeuedIds.push(String(row.id));
          heartbeat({
            stage: 'requeueing',
            done: Math.min(i + REQUEUE_BATCH, lost.length),
            lost: lost.length,
          });
        }
      }
      return {
        inFlight: inFlight.length,
        checkedBack: alive.size,
        requeued: requeuedIds.length,
        requeuedIds: requeuedIds.slice(0, 50),
      };
    });
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
