/**
 * Object-store loss, for real: delete the bucket, restore it from the backup mirror minus the
 * briefs of completed tasks; then kill the worker half-way through a restore and check that the
 * resumed restore re-sends at most what was in flight.
 */
import { nightlyBackup, objectStoreLoss } from '../src/workflows';
import type { ObjectStoreLossResult } from '../src/workflows/objectStoreLoss';
import { seededStatus } from '../src/reference/model';
import {
  deleteBucket,
  freshKohakku,
  minioClient,
  startWorker,
  stopKohakku,
  temporalClient,
  type TestKohakku,
} from './harness/kohakku';

let k: TestKohakku;
let before: Map<string, { size: number; etag: string }>;

beforeAll(async () => {
  k = await freshKohakku('objects', { tasks: 4000, briefs: 2500 }, { agents: false });
  // Two transfers at a time, so a restore lasts long enough to be killed half-way.
  k.workerEnv.OBJECT_TRANSFER_CONCURRENCY = '2';
  before = await listing();
  const worker = await startWorker(k.workerEnv);
  try {
    const client = await temporalClient(k.stack);
    await client.workflow.execute(nightlyBackup, {
      taskQueue: k.workerEnv.KOHAKKU_DR_TASK_QUEUE!,
      workflowId: 'test-objects-nightly',
    });
  } finally {
    await worker.stop();
  }
});

afterAll(async () => {
  if (k) await stopKohakku(k);
});

async function listing(): Promise<Map<string, { size: number; etag: string }>> {
  const s3 = minioClient(k.stack);
  const out = new Map<string, { size: number; etag: string }>();
  if (!(await s3.bucketExists('kohakku'))) return out;
  for await (const o of s3.listObjectsV2('kohakku', '', true)) {
    const x = o as { name: string; size: number; etag: string };
    out.set(x.name, { size: x.size, etag: x.etag.replace(/"/g, '') });
  }
  return out;
}

const deleteKohakkuBucket = () => deleteBucket(minioClient(k.stack), 'kohakku');

/** What must come back: everything but the briefs of completed tasks. */
function expected(): Map<string, { size: number; etag: string }> {
  return new Map(
    [...before].filter(([key]) => {
      const m = /^briefs\/task-(\d+)\.md$/.exec(key);
      return !m || seededStatus(Number(m[1])) !== 'completed';
    }),
  );
}

test('bucket deleted → restored from the mirror, minus completed-task briefs, sizes and ETags identical', async () => {
  await deleteKohakkuBucket();
  const worker = await startWorker(k.workerEnv);
  try {
    const client = await temporalClient(k.stack);
    const result = (await client.workflow.execute(objectStoreLoss, {
      taskQueue: k.workerEnv.KOHAKKU_DR_TASK_QUEUE!,
      workflowId: 'test-objects-restore',
      args: [{}],
    })) as ObjectStoreLossResult;
    expect(result.restored.skippedCompletedBriefs).toBe(1000);
    expect(result.backupVerified).toBe(true);
  } finally {
    await worker.stop();
  }
  expect(await listing()).toEqual(expected());
});

test('a restore killed half-way resumes and re-sends at most the objects that were in flight', async () => {
  await deleteKohakkuBucket();
  const total = expected().size;
  let worker = await startWorker(k.workerEnv);
  const client = await temporalClient(k.stack);
  const handle = await client.workflow.start(objectStoreLoss, {
    taskQueue: k.workerEnv.KOHAKKU_DR_TASK_QUEUE!,
    workflowId: 'test-objects-killed',
    args: [{}],
  });
  const deadline = Date.now() + 60000;
  while ((await listing()).size < 300) {
    if (Date.now() > deadline) throw new Error('restore never got going');
    await new Promise((r) => setTimeout(r, 50));
  }
  await worker.kill();
  await new Promise((r) => setTimeout(r, 500)); // anything already sent in full lands now
  const present = (await listing()).size;
  expect(present).toBeLessThan(total);

  worker = await startWorker(k.workerEnv);
  try {
    const result = (await handle.result()) as ObjectStoreLossResult;
    expect(result.restored.alreadyPresent).toBe(present);
    expect(result.restored.copied).toBe(total - present);
    expect(result.restored.copied + result.restored.alreadyPresent).toBe(total);
  } finally {
    await worker.stop();
  }
  expect(await listing()).toEqual(expected());
});
