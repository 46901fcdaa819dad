/**
 * A verification cancelled half-way — while pg_restore fills a scratch database — leaves no
 * scratch database, Redis or bucket behind.
 */
import { CancelledFailure } from '@temporalio/common';
import { WorkflowFailedError } from '@temporalio/client';
import { existsSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { nightlyBackup, verifyBackupSet } from '../src/workflows';
import {
  databases,
  freshKohakku,
  minioClient,
  sql,
  startWorker,
  stopKohakku,
  temporalClient,
  type TestKohakku,
  type WorkerProcess,
} from './harness/kohakku';

let k: TestKohakku;
let worker: WorkerProcess;

beforeAll(async () => {
  k = await freshKohakku('cancel', { tasks: 300000, briefs: 20 }, { agents: false });
  worker = await startWorker(k.workerEnv);
});

afterAll(async () => {
  await worker?.stop();
  if (k) await stopKohakku(k);
});

test('cancelling a verification mid-restore removes every scratch copy', async () => {
  const client = await temporalClient(k.stack);
  const taskQueue = k.workerEnv.KOHAKKU_DR_TASK_QUEUE!;
  const nightly = await client.workflow.execute(nightlyBackup, {
    taskQueue,
    workflowId: 'test-cancel-nightly',
  });
  const backupId = nightly.set.id;

  const handle = await client.workflow.start(verifyBackupSet, {
    taskQueue,
    workflowId: 'test-cancel-verify',
    args: [{ backupId }],
  });
  const deadline = Date.now() + 120000;
  for (;;) {
    const restoring = await sql(
      k.stack,
      'postgres',
      `SELECT 1 FROM pg_stat_activity WHERE application_name = 'pg_restore' AND datname LIKE '%__dr_verify_%'`,
    );
    if (restoring.length > 0) break;
    if (Date.now() > deadline) throw new Error('verification never started restoring');
    await new Promise((r) => setTimeout(r, 50));
  }
  await handle.cancel();
  const err = await handle.result().catch((e: unknown) => e);
  expect(err).toBeInstanceOf(WorkflowFailedError);
  expect((err as WorkflowFailedError).cause).toBeInstanceOf(CancelledFailure);

  expect((await databases(k.stack)).filter((d) => d.includes('__dr_verify_'))).toEqual([]);
  expect(
    (await minioClient(k.stack).listBuckets())
      .map((b) => b.name)
      .filter((b) => b.startsWith('kohakku-dr-verify-')),
  ).toEqual([]);
  const verifyDir = path.join(k.workerEnv.KOHAKKU_DR_WORK_DIR!, 'verify');
  expect(existsSync(verifyDir) ? readdirSync(verifyDir) : []).toEqual([]);
  const progress = await handle.query<{ steps: { name: string; status: string }[] }>('progress');
  expect(progress.steps.find((s) => s.name === 'remove scratch copies')?.status).toBe('done');
});
