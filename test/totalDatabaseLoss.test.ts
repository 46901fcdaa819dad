/**
 * Total database loss, for real: back up, drop both databases, scramble the Monitor's Redis
 * registrations, run the workflow on a real worker process, and compare every table with
 * what was there at backup time.
 */
import { Redis } from 'ioredis';
import { postgresBackup, totalDatabaseLoss } from '../src/workflows';
import type { TotalDatabaseLossResult } from '../src/workflows/totalDatabaseLoss';
import {
  databases,
  dropDatabase,
  freshKohakku,
  health,
  sql,
  startWorker,
  stopKohakku,
  tableFingerprints,
  temporalClient,
  type TestKohakku,
  type WorkerProcess,
} from './harness/kohakku';

let k: TestKohakku;
let worker: WorkerProcess;

beforeAll(async () => {
  k = await freshKohakku(
    'tdl',
    { tasks: 5000, briefs: 20 },
    {
      controller: { noReconnect: true }, // loses its connection for good: must be restarted
      dispatcher: {}, // reconnects on its own
      monitor: { monitorIntervalSeconds: 0 }, // registers only when it starts: must be restarted
      agents: { agentIntervalSeconds: 300 },
    },
  );
  worker = await startWorker(k.workerEnv);
});

afterAll(async () => {
  await worker?.stop();
  if (k) await stopKohakku(k);
});

test('back up, drop both databases, recover: data identical, services healthy, registrations rebuilt', async () => {
  const client = await temporalClient(k.stack);
  const taskQueue = k.workerEnv.KOHAKKU_DR_TASK_QUEUE!;
  const before = {
    controller: await tableFingerprints(k.stack, 'kohakku-controller'),
    dispatcher: await tableFingerprints(k.stack, 'kohakku-dispatcher'),
  };
  const manifest = await client.workflow.execute(postgresBackup, {
    taskQueue,
    workflowId: 'test-tdl-backup',
    args: [{}],
  });
  expect(manifest.databases.map((d) => d.database)).toEqual(['kohakku-controller', 'kohakku-dispatcher']);
  expect(manifest.databases[0]!.tables.find((t) => t.table === 'public.tasks_task')?.rows).toBe(5000);

  // The disaster.
  await dropDatabase(k.stack, 'kohakku-controller');
  await dropDatabase(k.stack, 'kohakku-dispatcher');
  const redis = new Redis({ port: k.stack.redis.port });
  await redis.del('kohakku:containers');
  await redis.sadd('kohakku:containers', 'agent-stale');
  expect(await databases(k.stack)).not.toContain('kohakku-controller');
  expect(await health(k.model.ports.controller)).toBe(503);

  const handle = await client.workflow.start(totalDatabaseLoss, {
    taskQueue,
    workflowId: 'test-tdl-recovery',
    args: [{ reconnectDeadlineSeconds: 5, restartDeadlineSeconds: 30, registrationDeadlineSeconds: 5 }],
  });
  const result = (await handle.result()) as TotalDatabaseLossResult;

  expect(result.backupId).toBe(manifest.id);
  expect(await tableFingerprints(k.stack, 'kohakku-controller')).toEqual(before.controller);
  expect(await tableFingerprints(k.stack, 'kohakku-dispatcher')).toEqual(before.dispatcher);
  expect(result.restored.map((r) => r.rowsVerified)).toEqual(
    manifest.databases.map((d) => d.tables.reduce((n, t) => n + t.rows, 0)),
  );

  // Services: the controller needed the restart adapter, the dispatcher reconnected by itself.
  expect(await health(k.model.ports.controller)).toBe(200);
  expect(await health(k.model.ports.dispatcher)).toBe(200);
  expect(result.services.find((s) => s.service === 'controller')?.restarted).toBe(true);
  expect(result.services.find((s) => s.service === 'dispatcher')?.restarted).toBe(false);

  // Redis registrations match Postgres exactly (the Monitor was restarted and removed the stale one).
  const active = (
    await sql<{ container: string }>(
      k.stack,
      'kohakku-controller',
      `SELECT container FROM tasks_task WHERE status = 'running'`,
    )
  )
    .map((r) => r.container)
    .sort();
  expect(active.length).toBe(1500);
  await waitFor(async () => (await redis.smembers('kohakku:containers')).length === active.length);
  expect((await redis.smembers('kohakku:containers')).sort()).toEqual(active);
  expect(result.registrations.monitorRestarted).toBe(true);
  redis.disconnect();

  // Nothing left behind; every step timed; progress query answers.
  expect((await databases(k.stack)).filter((d) => d.includes('__dr_'))).toEqual([]);
  expect(result.steps.every((s) => s.status === 'done' && typeof s.durationMs === 'number')).toBe(true);
  const progress = await handle.query<{ status: string; steps: { name: string }[] }>('progress');
  expect(progress.status).toBe('completed');
  expect(progress.steps.map((s) => s.name)).toContain('swap databases in');
});

async function waitFor(check: () => Promise<boolean>, timeoutMs = 10000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 200));
  }
}
