/**
 * Bad backups and bad input fail with a typed, non-retryable error before anything live is
 * touched: the live databases keep every row they had.
 */
import type { postgresBackup, totalDatabaseLoss } from '../src/workflows';
import { dumpKey } from '../src/activities/postgres';
import {
  databases,
  failureType,
  freshKohakku,
  minioClient,
  startWorker,
  stopKohakku,
  tableFingerprints,
  temporalClient,
  type TestKohakku,
  type WorkerProcess,
} from './harness/kohakku';

let k: TestKohakku;
let worker: WorkerProcess;
let backupId: string;

beforeAll(async () => {
  k = await freshKohakku('safety', { tasks: 2000, briefs: 10 }, { agents: { agentIntervalSeconds: 300 } });
  worker = await startWorker(k.workerEnv);
  const client = await temporalClient(k.stack);
  backupId = (
    await client.workflow.execute<typeof postgresBackup>('postgresBackup', {
      taskQueue: k.workerEnv.KOHAKKU_DR_TASK_QUEUE!,
      workflowId: 'test-safety-backup',
      args: [{}],
    })
  ).id;
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
  const s3 = minioClient(k.stack);
  const key = dumpKey(backupId, 'kohakku-dispatcher');
  const chunks: Buffer[] = [];
  for await (const c of await s3.getObject('kohakku-backups', key)) chunks.push(c as Buffer);
  const dump = Buffer.concat(chunks);
  dump[Math.floor(dump.length / 2)] ^= 0xff; // one flipped byte, same size
  await s3.putObject('kohakku-backups', key, dump, dump.length);

  const before = await liveState();
  const err = await recover('test-safety-corrupt', { backupId, replaceExisting: true });
  expect(failureType(err)).toBe('BackupCorrupt');
  expect((err as Error & { cause?: Error }).cause?.message).toMatch(/corrupt: sha256/);
  expect(await liveState()).toEqual(before);
  expect((await databases(k.stack)).filter((d) => d.includes('__dr_'))).toEqual([]);
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

test('live databases are not replaced unless the input says so', async () => {
  const before = await liveState();
  const err = await recover('test-safety-live', {});
  expect(failureType(err)).toBe('LiveDataExists');
  expect(await liveState()).toEqual(before);
});
