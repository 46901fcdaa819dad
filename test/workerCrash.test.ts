/**
 * The worker is SIGKILLed while pg_restore runs. A new worker finishes the same workflow: the
 * data is identical to the backup and no staging database is left behind.
 */
import { postgresBackup, totalDatabaseLoss } from '../src/workflows';
import type { TotalDatabaseLossResult } from '../src/workflows/totalDatabaseLoss';
import {
  databases,
  dropDatabase,
  freshKohakku,
  sql,
  startWorker,
  stopKohakku,
  tableFingerprints,
  temporalClient,
  type TestKohakku,
} from './harness/kohakku';

let k: TestKohakku;

beforeAll(async () => {
  // Large enough that pg_restore runs for a few seconds on this machine.
  k = await freshKohakku('crash', { tasks: 400000, briefs: 10 }, { agents: false });
});

afterAll(async () => {
  if (k) await stopKohakku(k);
});

test('SIGKILL of the worker during pg_restore: a new worker completes the recovery, data identical', async () => {
  const client = await temporalClient(k.stack);
  const taskQueue = k.workerEnv.KOHAKKU_DR_TASK_QUEUE!;
  let worker = await startWorker(k.workerEnv);
  const before = await tableFingerprints(k.stack, 'kohakku-controller');
  const beforeDispatcher = await tableFingerprints(k.stack, 'kohakku-dispatcher');
  await client.workflow.execute(postgresBackup, {
    taskQueue,
    workflowId: 'test-crash-backup',
    args: [{}],
  });
  await dropDatabase(k.stack, 'kohakku-controller');
  await dropDatabase(k.stack, 'kohakku-dispatcher');

  const handle = await client.workflow.start(totalDatabaseLoss, {
    taskQueue,
    workflowId: 'test-crash-recovery',
    args: [{ reconnectDeadlineSeconds: 10 }],
  });
  // Wait until pg_restore is writing into a staging database, then kill the worker outright.
  const deadline = Date.now() + 120000;
  for (;;) {
    const rows = await sql<{ datname: string }>(
      k.stack,
      'postgres',
      `SELECT datname FROM pg_stat_activity WHERE application_name = 'pg_restore' AND datname LIKE 'kohakku-controller__dr_staging_%'`,
    );
    if (rows.length > 0) break;
    if (Date.now() > deadline) throw new Error(`pg_restore never started: ${worker.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  await worker.kill();
  expect((await databases(k.stack)).some((d) => d.startsWith('kohakku-controller__dr_staging_'))).toBe(true);
  expect(await databases(k.stack)).not.toContain('kohakku-controller');

  worker = await startWorker(k.workerEnv);
  try {
    const result = (await handle.result()) as TotalDatabaseLossResult;
    expect(result.restored.find((r) => r.target === 'controller')?.resumed).toBe(true);
  } finally {
    await worker.stop();
  }
  expect(await tableFingerprints(k.stack, 'kohakku-controller')).toEqual(before);
  expect(await tableFingerprints(k.stack, 'kohakku-dispatcher')).toEqual(beforeDispatcher);
  expect((await databases(k.stack)).filter((d) => d.includes('__dr_'))).toEqual([]);
  const history = await handle.fetchHistory();
  const retried = history.events?.some(
    (e) => e.activityTaskStartedEventAttributes?.attempt && e.activityTaskStartedEventAttributes.attempt > 1,
  );
  expect(retried).toBe(true);
});
