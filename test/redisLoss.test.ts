/**
 * Redis loss, for real: FLUSHALL, SIGKILL redis-server, delete its files → Redis back,
 * registrations and the queue rebuilt from Postgres. Then with a corrupt AOF: the damaged files
 * are moved aside (kept), Redis starts empty, state rebuilt. Pending tasks are queued exactly once.
 */
import { existsSync, promises as fs, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { Redis } from 'ioredis';
import { redisLoss } from '../src/workflows';
import type { RedisLossResult } from '../src/workflows/redisLoss';
import {
  freshKohakku,
  killStackRedis,
  sql,
  startWorker,
  stopKohakku,
  temporalClient,
  testStack,
  type TestKohakku,
  type WorkerProcess,
} from './harness/kohakku';

let k: TestKohakku;
let worker: WorkerProcess;

beforeAll(async () => {
  k = await freshKohakku(
    'redisloss',
    { tasks: 4000, briefs: 5 },
    { monitor: { monitorIntervalSeconds: 0 }, agents: false },
  );
  worker = await startWorker(k.workerEnv);
});

afterAll(async () => {
  await worker?.stop();
  if (k) await stopKohakku(k);
});

function redis(): Redis {
  const r = new Redis({ port: testStack().redis.port, lazyConnect: true, maxRetriesPerRequest: 1 });
  r.on('error', () => undefined);
  return r;
}

async function recover(
  workflowId: string,
  input: Parameters<typeof redisLoss>[0] = {},
): Promise<RedisLossResult> {
  const client = await temporalClient(k.stack);
  return (await client.workflow.execute(redisLoss, {
    taskQueue: k.workerEnv.KOHAKKU_DR_TASK_QUEUE!,
    workflowId,
    args: [{ registrationDeadlineSeconds: 3, startDeadlineSeconds: 10, ...input }],
  })) as RedisLossResult;
}

async function expectStateRebuilt(): Promise<void> {
  const r = redis();
  await r.connect();
  const active = (
    await sql<{ container: string }>(
      k.stack,
      'kohakku-controller',
      `SELECT container FROM tasks_task WHERE status = 'running'`,
    )
  )
    .map((x) => x.container)
    .sort();
  expect((await r.smembers('kohakku:containers')).sort()).toEqual(active);
  const pending = (
    await sql<{ id: string }>(
      k.stack,
      'kohakku-controller',
      `SELECT id FROM tasks_task WHERE status = 'pending' ORDER BY id`,
    )
  ).map((x) => x.id);
  const queue = await r.lrange('kohakku:queue:pending', 0, -1);
  expect([...queue].sort()).toEqual([...pending].sort()); // every pending task, each exactly once
  expect(new Set(queue).size).toBe(queue.length);
  expect(await r.get('kohakku:queue:depth')).toBe(String(pending.length));
  r.disconnect();
}

test('FLUSHALL, SIGKILL, files deleted → Redis restarted, registrations and queue rebuilt from Postgres', async () => {
  const r = redis();
  await r.connect();
  await r.flushall();
  r.disconnect();
  await killStackRedis({ deleteFiles: true });

  const result = await recover('test-redis-lost');
  expect(result.recoveredFrom).toBe('its own AOF/RDB');
  expect(result.registrations.monitorRestarted).toBe(true);
  expect(result.redispatch).toMatchObject({ pending: 1200, pushed: 1200, alreadyQueued: 0, depth: 1200 });
  await expectStateRebuilt();

  // A second run (or a retry) queues nothing twice.
  const again = await recover('test-redis-lost-again');
  expect(again.recoveredFrom).toBe('already running');
  expect(again.redispatch).toMatchObject({ pushed: 0, alreadyQueued: 1200, depth: 1200 });
  await expectStateRebuilt();
});

test('a corrupt AOF: files moved aside (kept), Redis starts empty, state rebuilt', async () => {
  const r = redis();
  await r.connect();
  for (let i = 0; i < 200; i++) await r.set(`filler:${i}`, 'x'.repeat(100));
  await r.call('BGREWRITEAOF');
  await new Promise((res) => setTimeout(res, 1000));
  for (let i = 0; i < 200; i++) await r.set(`after-rewrite:${i}`, 'y'.repeat(100));
  await new Promise((res) => setTimeout(res, 1500)); // appendfsync everysec
  r.disconnect();
  await killStackRedis({ deleteFiles: false });
  const aofDir = path.join(testStack().redis.dir, 'appendonlydir');
  const incr = readdirSync(aofDir).find((f) => f.endsWith('.incr.aof'))!;
  const file = path.join(aofDir, incr);
  const bytes = await fs.readFile(file);
  bytes.fill(0x21, Math.floor(bytes.length / 3), Math.floor(bytes.length / 3) + 64); // garbage mid-file
  await fs.writeFile(file, bytes);

  const result = await recover('test-redis-corrupt-aof', { confirm: true });
  expect(result.recoveredFrom).toBe('empty (damaged files moved aside)');
  expect(result.movedAside!.moved).toContain('appendonlydir');
  expect(existsSync(path.join(result.movedAside!.movedTo, 'appendonlydir', incr))).toBe(true);
  expect(await fs.readFile(path.join(result.movedAside!.movedTo, 'appendonlydir', incr))).toEqual(bytes);
  await expectStateRebuilt();
  const check = redis();
  await check.connect();
  expect(await check.exists('filler:1')).toBe(0); // started empty
  check.disconnect();
});
