/**
 * Re-dispatch at scale, for real (the stack's PostgreSQL and Redis, the activities called
 * directly on the worker's settings): lost in-flight tasks go back to pending with one set-based
 * statement per batch, and a retry changes nothing; then every pending task is queued exactly
 * once while a Dispatcher consumes the queue at full speed in the test (LMOVE into its processing
 * list, the task marked running in Postgres, LREM) — no task is ever taken twice, and every one
 * is taken. Part of the queue is lost first, so the re-dispatch has tasks to push. The pending
 * tasks (about 14,000) span more than one cursor page (10,000 rows), so paging is exercised.
 */
import { Redis } from 'ioredis';
import { createRedisRecoveryActivities } from '../src/activities/redisRecovery';
import { loadConfig } from '../src/config';
import { createCommandRunner } from '../src/infra/exec';
import { freshKohakku, pgClient, sql, stopKohakku, testStack, type TestKohakku } from './harness/kohakku';

const CONTROLLER = 'kohakku-controller';
let k: TestKohakku;

beforeAll(async () => {
  // No agents: every running task's agent is gone, so every one is lost.
  k = await freshKohakku('redispatch', { tasks: 20000, briefs: 5 }, { agents: false, monitor: false });
});

afterAll(async () => {
  if (k) await stopKohakku(k);
});

function redis(): Redis {
  const r = new Redis({ port: testStack().redis.port, lazyConnect: true, maxRetriesPerRequest: 1 });
  r.on('error', () => undefined);
  return r;
}

const count = async (status: string) =>
  Number(
    (
      await sql<{ n: string }>(
        k.stack,
        CONTROLLER,
        `SELECT count(*) AS n FROM tasks_task WHERE status = $1`,
        [status],
      )
    )[0]!.n,
  );

/** A Dispatcher as the setting describes it: LMOVE queue → processing, Postgres says running, LREM. */
function startConsumer(queueKey: string, processingKey: string) {
  const taken: string[] = [];
  let stop = false;
  const done = (async () => {
    const r = redis();
    await r.connect();
    const db = pgClient(k.stack, CONTROLLER);
    await db.connect();
    try {
      while (!stop) {
        const id = await r.lmove(queueKey, processingKey, 'LEFT', 'RIGHT');
        if (id === null) {
          await new Promise((res) => setTimeout(res, 5));
          continue;
        }
        taken.push(id);
        await db.query(
          `UPDATE tasks_task SET status = 'running', container = 'consumer-' || id WHERE id = $1 AND status = 'pending'`,
          [id],
        );
        await r.lrem(processingKey, 1, id);
      }
    } finally {
      r.disconnect();
      await db.end();
    }
  })();
  return {
    taken,
    async stop() {
      stop = true;
      await done;
    },
  };
}

test('lost tasks requeued set-based (a retry changes nothing), then every pending task queued exactly once while a Dispatcher consumes the queue', async () => {
  const config = loadConfig(k.workerEnv);
  const { queueKey, processingKey } = config.model;
  const activities = createRedisRecoveryActivities({ config, exec: createCommandRunner() });
  const r = redis();
  await r.connect();
  try {
    const running = await count('running');
    expect(running).toBeGreaterThan(1000);
    const lost = await activities.requeueLostTasks();
    expect(lost).toMatchObject({ inFlight: running, checkedBack: 0, requeued: running });
    expect(await count('running')).toBe(0);
    expect((await activities.requeueLostTasks()).requeued).toBe(0);

    // A third of the queue lost with Redis; the rest is still queued.
    const queued = await r.lrange(queueKey, 0, -1);
    const kept = queued.filter((_, i) => i % 3 !== 0);
    await r.del(queueKey);
    for (let i = 0; i < kept.length; i += 1000) await r.rpush(queueKey, ...kept.slice(i, i + 1000));
    const pendingBefore = (
      await sql<{ id: string }>(
        k.stack,
        CONTROLLER,
        `SELECT id::text AS id FROM tasks_task WHERE status = 'pending'`,
      )
    ).map((row) => row.id);

    const consumer = startConsumer(queueKey, processingKey);
    await new Promise((res) => setTimeout(res, 50));
    const report = await activities.redispatchPendingTasks({ recoveryId: 'test-redispatch' });
    const deadline = Date.now() + 120000;
    while ((await r.llen(queueKey)) + (await r.llen(processingKey)) > 0) {
      if (Date.now() > deadline) throw new Error('the consumer did not drain the queue');
      await new Promise((res) => setTimeout(res, 50));
    }
    await consumer.stop();

    // Taken once each, and every pending task taken.
    const twice = consumer.taken.filter((id, i) => consumer.taken.indexOf(id) !== i);
    expect(twice).toEqual([]);
    expect(new Set(consumer.taken)).toEqual(new Set(pendingBefore));
    expect(await count('pending')).toBe(0);
    expect(report.pushed).toBeGreaterThan(0);
    expect(report.pushed).toBeLessThanOrEqual(pendingBefore.length - kept.length);
    // A retry of the same recovery pushes nothing.
    expect((await activities.redispatchPendingTasks({ recoveryId: 'test-redispatch' })).pushed).toBe(0);
    // The snapshot (copied lists and their member set, read page by page) is gone again.
    expect(await r.keys('*dr:snapshot:*')).toEqual([]);
  } finally {
    r.disconnect();
  }
});
