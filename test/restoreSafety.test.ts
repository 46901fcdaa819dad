/**
 * Bad backups and bad input fail with a typed, non-retryable error before anything live is
 * touched: the live databases keep every row they had.
 */
import { WorkflowFailedError } from '@temporalio/client';
import { CancelledFailure } from '@temporalio/common';
import { totalDatabaseLoss } from '../src/workflows';
import type { RecoveryPlan } from '../src/workflows/definitions';
import type { TotalDatabaseLossResult } from '../src/workflows/totalDatabaseLoss';
import { dumpKey } from '../src/activities/postgres';
import {
  awaitApprovalRequest,
  databases,
  failureType,
  freshKohakku,
  backupS3Client,
  sql,
  startWorker,
  stopKohakku,
  tableFingerprints,
  temporalClient,
  type TestKohakku,
  type WorkerProcess,
  backUpPostgres,
} from './harness/kohakku';

let k: TestKohakku;
let worker: WorkerProcess;
let backupId: string;

beforeAll(async () => {
  k = await freshKohakku('safety', { tasks: 2000, briefs: 10 }, { agents: { agentIntervalSeconds: 300 } });
  worker = await startWorker(k.workerEnv);
  backupId = (await backUpPostgres(k, 'test-safety-backup')).id;
});

afterAll(async () => {
  await worker?.stop();
  if (k) await stopKohakku(k);
});

async function recover(workflowId: string, input: Parameters<typeof totalDatabaseLoss>[0]): Promise<unknown> {
  const client = await temporalClient(k.stack);
  return client.workflow
    .execute<typeof totalDatabaseLoss>('totalDatabaseLoss', {
      taskQueue: k.workerEnv.KOHAKKU_DR_TASK_QUEUE!,
      workflowId,
      args: [input],
    })
    .then(
      () => 'completed',
      (err: unknown) => err,
    );
}

async function liveState() {
  return {
    controller: await tableFingerprints(k.stack, 'kohakku-controller'),
    dispatcher: await tableFingerprints(k.stack, 'kohakku-dispatcher'),
  };
}

test('a corrupt dump fails with BackupCorrupt and leaves the live databases as they were', async () => {
  const s3 = backupS3Client(k.stack);
  const key = dumpKey(backupId, 'kohakku-dispatcher');
  const chunks: Buffer[] = [];
  for await (const c of await s3.getObject('kohakku-backups', key)) chunks.push(c as Buffer);
  const original = Buffer.concat(chunks);
  const dump = Buffer.from(original);
  dump[Math.floor(dump.length / 2)] ^= 0xff; // one flipped byte, same size
  await s3.putObject('kohakku-backups', key, dump, dump.length);

  const before = await liveState();
  const err = await recover('test-safety-corrupt', { backupId, replaceExisting: true });
  expect(failureType(err)).toBe('BackupCorrupt');
  expect((err as Error & { cause?: Error }).cause?.message).toMatch(/corrupt: sha256/);
  expect(await liveState()).toEqual(before);
  expect((await databases(k.stack)).filter((d) => d.includes('__dr_'))).toEqual([]);
  await s3.putObject('kohakku-backups', key, original, original.length); // the later tests restore from it
});

test('a missing backup fails with BackupNotFound; a malformed id with InvalidInput', async () => {
  const before = await liveState();
  expect(
    failureType(
      await recover('test-safety-missing', { backupId: '20200101T000000Z', replaceExisting: true }),
    ),
  ).toBe('BackupNotFound');
  expect(
    failureType(await recover('test-safety-malformed', { backupId: 'yesterday', replaceExisting: true })),
  ).toBe('InvalidInput');
  expect(failureType(await recover('test-safety-target', { targets: ['billing' as 'controller'] }))).toBe(
    'InvalidInput',
  );
  expect(await liveState()).toEqual(before);
});

test('plan mode shows each step and the backup it would use, and changes nothing', async () => {
  const before = await liveState();
  const client = await temporalClient(k.stack);
  const plan = (await client.workflow.execute(totalDatabaseLoss, {
    taskQueue: k.workerEnv.KOHAKKU_DR_TASK_QUEUE!,
    workflowId: 'test-safety-plan',
    args: [{ plan: true }],
  })) as RecoveryPlan;
  expect(plan).toMatchObject({ plan: true, backupId });
  expect(plan.steps.find((s) => s.step === 'swap databases in')).toMatchObject({ destructive: true });
  expect(plan.steps.find((s) => s.step === 'swap databases in')?.action).toMatch(
    /replaces \(needs approval\): live database kohakku-controller \(moved aside, not dropped\)/,
  );
  expect(await liveState()).toEqual(before);
  expect((await databases(k.stack)).filter((d) => d.includes('__dr_'))).toEqual([]);
});

test('without confirmation the recovery waits for approval, and a cancel leaves live data untouched', async () => {
  const before = await liveState();
  const client = await temporalClient(k.stack);
  const handle = await client.workflow.start(totalDatabaseLoss, {
    taskQueue: k.workerEnv.KOHAKKU_DR_TASK_QUEUE!,
    workflowId: 'test-safety-approval-cancel',
    args: [{}],
  });
  await awaitApprovalRequest(handle);
  await handle.cancel();
  const err = await handle.result().catch((e: unknown) => e);
  expect((err as WorkflowFailedError).cause).toBeInstanceOf(CancelledFailure);
  expect(await liveState()).toEqual(before);
  expect((await databases(k.stack)).filter((d) => d.includes('__dr_'))).toEqual([]);
});

test('approved by signal, the recovery moves the live databases aside (not dropped) and restores', async () => {
  const client = await temporalClient(k.stack);
  // Live data diverges from the backup, so the restore visibly replaces it.
  await sql(
    k.stack,
    'kohakku-controller',
    `UPDATE tasks_task SET title = 'changed after backup' WHERE id <= 10`,
  );
  const changed = await liveState();
  const handle = await client.workflow.start(totalDatabaseLoss, {
    taskQueue: k.workerEnv.KOHAKKU_DR_TASK_QUEUE!,
    workflowId: 'test-safety-approval-signal',
    args: [{ backupId }],
  });
  await awaitApprovalRequest(handle);
  await handle.signal('approve', { by: 'test', note: 'restore over changed data' });
  const result = (await handle.result()) as TotalDatabaseLossResult;
  expect(result.restored.every((r) => r.movedAsideTo?.includes('__dr_replaced_'))).toBe(true);
  const aside = result.restored.find((r) => r.target === 'controller')!.movedAsideTo!;
  expect(await tableFingerprints(k.stack, aside)).toEqual(changed.controller);
  expect((await tableFingerprints(k.stack, 'kohakku-controller'))['public.tasks_task']).not.toEqual(
    changed.controller['public.tasks_task'],
  );
  expect(result.measurements.rtoSeconds).toBeGreaterThan(0);
  expect(result.measurements.rpoSeconds).toBeGreaterThan(0);
});
