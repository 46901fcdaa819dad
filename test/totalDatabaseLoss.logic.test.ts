/**
 * Workflow LOGIC with activities STUBBED (no PostgreSQL, Redis or MinIO is touched here), on
 * the run's real Temporal dev server: the restart branch, the always-run cleanup, explicit
 * destruction, and one recovery per target.
 */
import { WorkflowFailedError } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import {
  bundleWorkflowCode,
  DefaultLogger,
  Runtime,
  Worker,
  type WorkflowBundleWithSourceMap,
} from '@temporalio/worker';
import type { Activities } from '../src/activities';
import type { PostgresTarget } from '../src/activities/postgres';
import { AlreadyRunning, startUnique } from '../src/client/temporal';
import type { totalDatabaseLoss } from '../src/workflows';
import { failureType, testStack } from './harness/kohakku';

let env: TestWorkflowEnvironment;
let bundle: WorkflowBundleWithSourceMap;

beforeAll(async () => {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  env = await TestWorkflowEnvironment.createFromExistingServer({
    address: `127.0.0.1:${testStack().temporal.port}`,
  });
  bundle = await bundleWorkflowCode({
    workflowsPath: require.resolve('../src/workflows'),
    logger: {
      log: () => undefined,
      info: () => undefined,
      warn: () => undefined,
      error: () => undefined,
      debug: () => undefined,
      trace: () => undefined,
    },
  });
});

afterAll(async () => {
  await env?.teardown();
});

interface Calls {
  names: string[];
}

/** Stubs that record their calls; each test overrides what it needs. */
function stubs(calls: Calls, overrides: Partial<Activities> = {}): Partial<Activities> {
  const record =
    <A extends unknown[], R>(name: string, fn: (...args: A) => Promise<R>) =>
    (...args: A) => {
      calls.names.push(name);
      return fn(...args);
    };
  const base: Partial<Activities> = {
    resolvePostgresBackup: async () => ({
      id: '20261124T020000Z',
      createdAt: '2026-11-24T02:00:00Z',
      databases: [],
    }),
    liveDatabases: async () => [],
    preparePostgresRestore: async ({ target }) => ({
      target,
      database: target,
      backupId: 'x',
      localPath: '/x',
      size: 1,
      tocEntries: 1,
    }),
    restorePostgresDatabase: async ({ target }: { target: PostgresTarget }) => ({
      target,
      database: target,
      backupId: 'x',
      tablesVerified: 1,
      rowsVerified: 1,
      resumed: false,
    }),
    waitForHealthy: async ({ service }) => ({ service, healthy: true, checks: 1, waitedMs: 1 }),
    restartService: async ({ service }) => ({ service, command: ['true'] }),
    waitForRegistrations: async () => ({
      complete: true,
      expected: 1,
      registered: 1,
      missing: [],
      extra: [],
      waitedMs: 1,
    }),
    cleanupPostgresRestore: async () => ({ droppedStaging: [] }),
    lockBackup: async () => undefined,
    unlockBackup: async () => undefined,
  };
  const merged = { ...base, ...overrides } as Record<string, (...args: unknown[]) => Promise<unknown>>;
  return Object.fromEntries(
    Object.entries(merged).map(([name, fn]) => [name, record(name, fn)]),
  ) as Partial<Activities>;
}

async function runWith(
  taskQueue: string,
  activities: Partial<Activities>,
  input: Parameters<typeof totalDatabaseLoss>[0],
) {
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowBundle: bundle,
    activities,
  });
  return worker.runUntil(
    env.client.workflow
      .execute<typeof totalDatabaseLoss>('totalDatabaseLoss', {
        taskQueue,
        workflowId: `${taskQueue}-${Date.now()}`,
        args: [input],
      })
      .then(
        (r) => ({ result: r, error: undefined }),
        (error: unknown) => ({ result: undefined, error }),
      ),
  );
}

test('a service that never comes back is restarted once, then ServiceUnhealthy; cleanup still runs', async () => {
  const calls: Calls = { names: [] };
  const { error } = await runWith(
    'logic-unhealthy',
    stubs(calls, {
      waitForHealthy: async ({ service }) =>
        service === 'dispatcher'
          ? { service, healthy: false, checks: 3, waitedMs: 3000, lastError: 'HTTP 503' }
          : { service, healthy: true, checks: 1, waitedMs: 1 },
    }),
    { reconnectDeadlineSeconds: 1, restartDeadlineSeconds: 1 },
  );
  expect(error).toBeInstanceOf(WorkflowFailedError);
  expect(failureType(error)).toBe('ServiceUnhealthy');
  expect(calls.names.filter((n) => n === 'restartService')).toHaveLength(1);
  // The cleanup phase ran last: staging dropped, and the hold on the backup released.
  expect(calls.names.slice(-2)).toEqual(['cleanupPostgresRestore', 'unlockBackup']);
  expect(calls.names).toContain('lockBackup');
  expect(calls.names).not.toContain('waitForRegistrations');
});

test('existing databases without confirmation: nothing is downloaded or restored until the approve signal', async () => {
  const calls: Calls = { names: [] };
  const taskQueue = 'logic-live';
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowBundle: bundle,
    activities: stubs(calls, { liveDatabases: async () => ['controller'] }),
  });
  await worker.runUntil(async () => {
    const handle = await env.client.workflow.start<typeof totalDatabaseLoss>('totalDatabaseLoss', {
      taskQueue,
      workflowId: `${taskQueue}-${Date.now()}`,
      args: [{}],
    });
    for (let i = 0; i < 100; i++) {
      const p = await handle.query<{ waitingFor?: string }>('progress');
      if (p.waitingFor?.startsWith('approval')) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect((await handle.query<{ waitingFor?: string }>('progress')).waitingFor).toMatch(
      /^approval to move aside/,
    );
    expect(calls.names).not.toContain('preparePostgresRestore');
    await handle.signal('approve', { by: 'test' });
    await handle.result();
    expect(calls.names).toContain('restorePostgresDatabase');
  });
});

test('registrations incomplete: the Monitor is restarted, and a second shortfall fails with RegistrationIncomplete', async () => {
  const calls: Calls = { names: [] };
  const { error } = await runWith(
    'logic-registrations',
    stubs(calls, {
      waitForRegistrations: async () => ({
        complete: false,
        expected: 10,
        registered: 7,
        missing: ['a', 'b', 'c'],
        extra: [],
        waitedMs: 1000,
      }),
    }),
    { registrationDeadlineSeconds: 1 },
  );
  expect(failureType(error)).toBe('RegistrationIncomplete');
  expect(calls.names.filter((n) => n === 'restartService')).toHaveLength(1);
  expect(calls.names.filter((n) => n === 'waitForRegistrations')).toHaveLength(2);
});

test('bad input is refused before any activity runs', async () => {
  const calls: Calls = { names: [] };
  const { error } = await runWith('logic-input', stubs(calls), { reconnectDeadlineSeconds: -5 });
  expect(failureType(error)).toBe('InvalidInput');
  expect(calls.names).toEqual(['cleanupPostgresRestore']);
});

test('one recovery per target: a second start while the first runs is refused, naming the running one', async () => {
  const taskQueue = 'logic-unique';
  const workflowId = 'kohakku-dr-recover-postgres-logic';
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowBundle: bundle,
    activities: stubs(
      { names: [] },
      {
        resolvePostgresBackup: async () => (
          await gate,
          { id: '20261124T020000Z', createdAt: 'x', databases: [] }
        ),
      },
    ),
  });
  await worker.runUntil(async () => {
    const start = () =>
      env.client.workflow.start<typeof totalDatabaseLoss>('totalDatabaseLoss', {
        taskQueue,
        workflowId,
        args: [{}],
      });
    const first = await startUnique(env.client, workflowId, start);
    const second = await startUnique(env.client, workflowId, start).catch((err: unknown) => err);
    expect(second).toBeInstanceOf(AlreadyRunning);
    expect((second as Error).message).toContain(workflowId);
    expect((second as Error).message).toContain(first.firstExecutionRunId);
    release();
    await first.result();
  });
});
