/**
 * Recovery-engine LOGIC with activities STUBBED by jest.fn (no PostgreSQL, Redis or MinIO is
 * touched here), on the run's real Temporal dev server: strict input, approval evaluated right
 * before the destructive phase, the restart branch, cleanup failures as warnings that never
 * replace the original error, independent lock release, one recovery per target however it is
 * started, and an undecodable payload failing the run instead of wedging it.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure, defaultPayloadConverter } from '@temporalio/common';
import type { Activities } from '../src/activities';
import { toolPaths } from '../src/stack/tools';
import { nightlyBackup, totalDatabaseLoss } from '../src/workflows';
import { approveSignal } from '../src/workflows/definitions';
import type { TotalDatabaseLossResult } from '../src/workflows/totalDatabaseLoss';
import { awaitApprovalRequest, failureType, testStack } from './harness/kohakku';
import { liveDatabasesExist, STUB_BACKUP, stubActivities } from './harness/stubs';
import { uniqueId, workflowSuite } from './harness/suite';

const suite = workflowSuite();
const run = promisify(execFile);

const BACKUP = STUB_BACKUP;

/** jest.fn over every stubbed activity, recording the order of calls; each test overrides what it needs. */
function stubs(overrides: Partial<Record<keyof Activities, jest.Mock>> = {}) {
  const calls: string[] = [];
  const base: Record<string, jest.Mock> = {
    ...Object.fromEntries(
      Object.entries(stubActivities as Record<string, (...args: never[]) => Promise<unknown>>).map(
        ([name, fn]) => [name, jest.fn(fn)],
      ),
    ),
    ...overrides,
  };
  const activities = Object.fromEntries(
    Object.entries(base).map(([name, fn]) => [
      name,
      (...args: unknown[]) => {
        calls.push(name);
        return (fn as (...a: unknown[]) => Promise<unknown>)(...args);
      },
    ]),
  ) as unknown as Partial<Activities>;
  return { activities, calls, mocks: base };
}

const nonRetryable = (type: string, message: string) =>
  ApplicationFailure.create({ type, message, nonRetryable: true });

test.each([
  ['null', null],
  ['a string', 'latest'],
  ['a number', 42],
  ['an array', []],
  ['an unknown field', { BackupId: '20261124T020000Z' }],
  ['a misspelled field', { confrim: true }],
  ['a bad incidentAt', { incidentAt: 'yesterday' }],
  ['a wrong type', { targets: 'controller' }],
  ['an out-of-range deadline', { reconnectDeadlineSeconds: -5 }],
])(
  'input %s is refused with InvalidInput before any activity runs, and the run ends',
  async (_what, input) => {
    const { activities, calls } = stubs();
    const { error, workflowId } = await suite.executeWorkflow(totalDatabaseLoss, {
      activities,
      args: [input as never],
    });
    expect(failureType(error)).toBe('InvalidInput');
    expect(calls).toEqual([]);
    const description = await suite.env.client.workflow.getHandle(workflowId).describe();
    expect(description.status.name).toBe('FAILED');
  },
);

test('a misspelled field names the field it probably meant', async () => {
  const { activities } = stubs();
  const { error } = await suite.executeWorkflow(totalDatabaseLoss, {
    activities,
    args: [{ BackupId: 'latest' } as never],
  });
  expect(String((error as WorkflowFailedError).cause?.message)).toMatch(
    /unknown field "BackupId" \(did you mean "backupId"\?\)/,
  );
});

test('approval is asked right before the swap, for what is live at that moment, and passed to the swap', async () => {
  // Nothing is live at the start; the controller database appears while the dumps restore.
  let controllerLive = false;
  const { activities, calls, mocks } = stubs({
    restoreIntoStaging: jest.fn(async ({ target }: { target: string }) => {
      controllerLive = true;
      return {
        target,
        database: `kohakku-${target}`,
        staging: 's',
        backupId: BACKUP.id,
        tablesVerified: 1,
        rowsVerified: 1,
        resumed: false,
      };
    }),
    liveDatabaseStates: jest.fn(async ({ targets }: { targets: string[] }) =>
      targets.map((t) => ({
        target: t,
        database: `kohakku-${t}`,
        exists: t === 'controller' && controllerLive,
        oid: 1,
        allowConnections: true,
      })),
    ),
  });
  const worker = await suite.createWorker(activities);
  await worker.runUntil(async () => {
    const handle = await suite.env.client.workflow.start(totalDatabaseLoss, {
      taskQueue: worker.options.taskQueue,
      workflowId: uniqueId('approval'),
      args: [{}],
    });
    const progress = await awaitApprovalRequest(handle);
    expect(progress.awaitingApproval).toEqual({
      step: 'swap databases in',
      replaces: ['live database kohakku-controller (moved aside, not dropped)'],
    });
    // Everything non-destructive already ran; the swap did not.
    expect(calls).toContain('restoreIntoStaging');
    expect(calls).not.toContain('swapInStaging');
    // The UI's current details say first what it waits for, with the approve command.
    const details = (await handle.query<{ currentDetails: string }>('__temporal_workflow_metadata'))
      .currentDetails;
    expect(details.split('\n\n').slice(0, 2)).toEqual([
      '**Total database loss** — running',
      expect.stringMatching(/^waiting for: approval to swap databases in, .* \(kohakku-dr approve /),
    ]);
    // The operator takes 1.5 s to decide: reported beside the RTO, not hidden in it.
    await new Promise((r) => setTimeout(r, 1500));
    await handle.signal(approveSignal, { by: 'test', note: 'go' });
    const result = (await handle.result()) as TotalDatabaseLossResult;
    const m = result.measurements;
    expect(m.approvalWaitSeconds).toBeGreaterThanOrEqual(1.4);
    // Each figure is rounded to tenths on its own.
    expect(
      Math.abs(m.rtoWithoutApprovalSeconds! - (m.rtoSeconds - m.approvalWaitSeconds!)),
    ).toBeLessThanOrEqual(0.15);
    expect(mocks.swapInStaging).toHaveBeenCalledWith(expect.objectContaining({ replace: ['controller'] }));
    expect(result.approvals).toEqual([
      expect.objectContaining({
        step: 'swap databases in',
        by: 'test',
        replaces: [expect.stringContaining('kohakku-controller')],
      }),
    ]);
  });
});

test('an approval sent before any step asks for one is ignored (and says so)', async () => {
  const { activities } = stubs({
    liveDatabaseStates: jest.fn(liveDatabasesExist),
  });
  const worker = await suite.createWorker(activities);
  await worker.runUntil(async () => {
    const handle = await suite.env.client.workflow.start(totalDatabaseLoss, {
      taskQueue: worker.options.taskQueue,
      workflowId: uniqueId('early'),
      args: [{}],
    });
    await handle.signal(approveSignal, { by: 'too-early' });
    const progress = await awaitApprovalRequest(handle);
    expect(progress.awaitingApproval?.step).toBe('swap databases in');
    expect(progress.warnings.join(' ')).toMatch(/approval by too-early arrived while no step was waiting/);
    await handle.cancel();
    await expect(handle.result()).rejects.toThrow();
  });
});

test('a service that never comes back is restarted once, then ServiceUnhealthy; the message says the databases were swapped', async () => {
  const { activities, calls } = stubs({
    waitForHealthy: jest.fn(async ({ service }: { service: string }) =>
      service === 'dispatcher'
        ? { service, healthy: false, checks: 3, waitedMs: 3000, lastError: 'HTTP 503' }
        : { service, healthy: true, checks: 1, waitedMs: 1 },
    ),
  });
  const { error } = await suite.executeWorkflow(totalDatabaseLoss, {
    activities,
    args: [{ reconnectDeadlineSeconds: 1, restartDeadlineSeconds: 1 }],
  });
  expect(failureType(error)).toBe('ServiceUnhealthy');
  expect(calls.filter((n) => n === 'restartService')).toHaveLength(1);
  expect(String((error as WorkflowFailedError).cause?.message)).toMatch(
    /live data was changed by earlier steps: swap databases in/,
  );
  // The cleanup, then the run's report of it all.
  expect(calls.slice(-4)).toEqual([
    'cleanupPostgresRestore',
    'cleanupPostgresGlobals',
    'unlockBackup',
    'writeReport',
  ]);
  expect(calls).not.toContain('waitForRegistrations');
});

test('a failed staging restore: the error keeps its type and says live data was untouched; no swap', async () => {
  const { activities, calls } = stubs({
    restoreIntoStaging: jest.fn(async ({ target }: { target: string }) => {
      if (target === 'dispatcher')
        throw nonRetryable('RestoreVerificationFailed', 'dispatcher_agent: checksum differs');
      return {
        target,
        database: `kohakku-${target}`,
        staging: 's',
        backupId: BACKUP.id,
        tablesVerified: 1,
        rowsVerified: 1,
        resumed: false,
      };
    }),
  });
  const { error } = await suite.executeWorkflow(totalDatabaseLoss, { activities, args: [{ confirm: true }] });
  expect(failureType(error)).toBe('RestoreVerificationFailed');
  expect(String((error as WorkflowFailedError).cause?.message)).toMatch(
    /checksum differs — live data untouched: no step that changes live data had started/,
  );
  expect(calls).not.toContain('swapInStaging');
  // Both targets' staging restores ended before the cleanup began.
  expect(calls.indexOf('cleanupPostgresRestore')).toBeGreaterThan(calls.lastIndexOf('restoreIntoStaging'));
});

test('a failing cleanup is a warning: it neither replaces the original error nor fails a success; the lock is still released', async () => {
  const cleanupFails = jest.fn(async () => {
    throw nonRetryable('CleanupBroken', 'cannot drop staging');
  });
  const failing = stubs({
    cleanupPostgresRestore: cleanupFails,
    restoreIntoStaging: jest.fn(async () => {
      throw nonRetryable('BackupCorrupt', 'dump is corrupt');
    }),
  });
  const failed = await suite.executeWorkflow(totalDatabaseLoss, {
    activities: failing.activities,
    args: [{ confirm: true }],
  });
  expect(failureType(failed.error)).toBe('BackupCorrupt');
  expect(failing.calls).toContain('unlockBackup');

  const succeeding = stubs({ cleanupPostgresRestore: cleanupFails });
  const ok = await suite.executeWorkflow(totalDatabaseLoss, {
    activities: succeeding.activities,
    args: [{ confirm: true }],
  });
  expect(ok.error).toBeUndefined();
  const result = ok.result as TotalDatabaseLossResult;
  expect(result.outcome).toBe('completed');
  expect(result.warnings.join(' ')).toMatch(
    /cleanup: drop this run’s staging databases.*cannot drop staging/,
  );
  expect(succeeding.calls).toContain('unlockBackup');
});

test('registrations incomplete: the Monitor is restarted, and a second shortfall fails with RegistrationIncomplete', async () => {
  const { activities, calls } = stubs({
    waitForRegistrations: jest.fn(async () => ({
      complete: false,
      expected: 10,
      registered: 7,
      missing: ['a', 'b', 'c'],
      extra: [],
      waitedMs: 1000,
    })),
  });
  const { error } = await suite.executeWorkflow(totalDatabaseLoss, {
    activities,
    args: [{ registrationDeadlineSeconds: 1 }],
  });
  expect(failureType(error)).toBe('RegistrationIncomplete');
  expect(calls.filter((n) => n === 'restartService')).toHaveLength(1);
  expect(calls.filter((n) => n === 'waitForRegistrations')).toHaveLength(2);
});

test('one recovery per target: a second one under another workflow id is refused by the target lock', async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const { activities } = stubs({ resolvePostgresBackup: jest.fn(async () => (await gate, BACKUP)) });
  const worker = await suite.createWorker(activities);
  await worker.runUntil(async () => {
    const first = await suite.env.client.workflow.start(totalDatabaseLoss, {
      taskQueue: worker.options.taskQueue,
      workflowId: uniqueId('first'),
      args: [{}],
    });
    await new Promise((r) => setTimeout(r, 1000)); // the first takes its lock
    const second = await suite.env.client.workflow
      .execute(totalDatabaseLoss, {
        taskQueue: worker.options.taskQueue,
        workflowId: uniqueId('second'),
        args: [{}],
      })
      .catch((e: unknown) => e);
    expect(failureType(second)).toBe('AlreadyRunning');
    expect(String((second as WorkflowFailedError).cause?.message)).toMatch(/kohakku-dr-lock-postgres/);
    release();
    await first.result();
    // Released at the end: the next recovery runs.
    const third = await suite.env.client.workflow.execute(totalDatabaseLoss, {
      taskQueue: worker.options.taskQueue,
      workflowId: uniqueId('third'),
      args: [{}],
    });
    expect((third as TotalDatabaseLossResult).outcome).toBe('completed');
  });
});

describe('from the temporal CLI', () => {
  const address = () => `127.0.0.1:${testStack().temporal.port}`;
  const temporal = (args: string[]) =>
    run(toolPaths().temporal, ['--address', address(), ...args]).then(
      (r) => ({ code: 0, out: r.stdout + r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
    );

  test('an undecodable input fails the run with InvalidInput instead of leaving it Running', async () => {
    const { activities, calls } = stubs();
    const worker = await suite.createWorker(activities);
    const workflowId = uniqueId('undecodable');
    await worker.runUntil(async () => {
      const started = await temporal([
        'workflow',
        'start',
        '--type',
        'totalDatabaseLoss',
        '--task-queue',
        worker.options.taskQueue,
        '--workflow-id',
        workflowId,
        '--input',
        '"x"',
        '--input-meta',
        'encoding=binary/unknown',
      ]);
      expect(started.code).toBe(0);
      const err = await suite.env.client.workflow
        .getHandle(workflowId)
        .result()
        .catch((e: unknown) => e);
      expect(failureType(err)).toBe('InvalidInput');
      expect(String((err as WorkflowFailedError).cause?.message)).toMatch(/could not be decoded/);
    });
    expect(calls).toEqual([]);
  });

  test('a second `temporal workflow start --fail-existing` of a running recovery is refused', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const { activities } = stubs({ resolvePostgresBackup: jest.fn(async () => (await gate, BACKUP)) });
    const worker = await suite.createWorker(activities);
    const workflowId = uniqueId('kohakku-dr-recover-postgres');
    await worker.runUntil(async () => {
      const start = () =>
        temporal([
          'workflow',
          'start',
          '--type',
          'totalDatabaseLoss',
          '--task-queue',
          worker.options.taskQueue,
          '--workflow-id',
          workflowId,
          '--input',
          '{}',
          '--fail-existing',
        ]);
      expect((await start()).code).toBe(0);
      const second = await start();
      expect(second.code).not.toBe(0);
      expect(second.out).toMatch(/already (started|running)/i);
      release();
      await suite.env.client.workflow.getHandle(workflowId).result();
    });
  });
});

test('every activity the recovery schedules carries a summary in words naming what it acts on', async () => {
  const { activities } = stubs();
  const { error, workflowId } = await suite.executeWorkflow(totalDatabaseLoss, {
    activities,
    args: [{ targets: ['controller'], confirm: true }],
  });
  expect(error).toBeUndefined();
  const history = await suite.env.client.workflow.getHandle(workflowId).fetchHistory();
  const summaries = (history.events ?? [])
    .filter((e) => e.activityTaskScheduledEventAttributes)
    .map((e) => ({
      type: e.activityTaskScheduledEventAttributes!.activityType!.name,
      summary: e.userMetadata?.summary
        ? defaultPayloadConverter.fromPayload<string>(e.userMetadata.summary)
        : undefined,
    }));
  expect(summaries.length).toBeGreaterThan(3);
  for (const s of summaries) expect(s.summary).toBeDefined();
  expect(summaries).toContainEqual({
    type: 'restoreIntoStaging',
    summary: expect.stringMatching(/^restore into staging — target controller, backup 20261124T020000Z/),
  });
});

test('a failed nightly backup hands a backup-failed notification to its own delivery workflow', async () => {
  const sent = jest.fn(async () => ({ sent: true }));
  const { activities } = stubs({
    backupPostgres: jest.fn(async () => {
      throw nonRetryable('ToolUnavailable', 'pg_dump 14 cannot dump a PostgreSQL 15 server');
    }),
    sendNotification: sent,
  });
  const worker = await suite.createWorker(activities);
  await worker.runUntil(async () => {
    const workflowId = uniqueId('nightly-notify');
    await expect(
      suite.env.client.workflow.execute(nightlyBackup, {
        taskQueue: worker.options.taskQueue,
        workflowId,
        args: [],
      }),
    ).rejects.toThrow();
    // Delivered beside the run, which has already failed.
    for (let i = 0; i < 100 && sent.mock.calls.length === 0; i++)
      await new Promise((r) => setTimeout(r, 100));
  });
  expect(sent).toHaveBeenCalledTimes(1);
  expect(sent.mock.calls[0]).toEqual([
    expect.objectContaining({
      event: 'backup-failed',
      title: expect.stringMatching(/^nightly backup \d{8}T\d{6}Z failed$/),
      lines: expect.arrayContaining([
        expect.stringContaining('pg_dump 14 cannot dump a PostgreSQL 15 server'),
      ]),
    }),
  ]);
});
