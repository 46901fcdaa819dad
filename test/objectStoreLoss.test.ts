/**
 * Object-store loss, for real: Kohakku's S3 server SIGKILLed and its data directory deleted →
 * the recovery starts a fresh one through the service adapter and restores the bucket from the
 * backup mirror (on the backup store's own server) minus the briefs of completed tasks, identical
 * by key, size and sha256; then the bucket alone deleted and the worker killed half-way through
 * the restore: the resumed restore re-sends at most what was in flight.
 */
import { nightlyBackup, objectStoreLoss } from '../src/workflows';
import type { ObjectStoreLossResult } from '../src/workflows/objectStoreLoss';
import { hashObject } from '../src/infra/s3';
import { seededStatus } from '../src/reference/model';
import { loseS3Server } from '../src/stack/stack';
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

/** sha256 of every object in the bucket, computed here from the bytes. */
async function contentHashes(keys: Iterable<string>): Promise<Map<string, string>> {
  const s3 = minioClient(k.stack);
  const out = new Map<string, string>();
  for (const key of keys) out.set(key, (await hashObject(s3, 'kohakku', key)).sha256);
  return out;
}

test("Kohakku's S3 server lost with its disk → started again through the adapter, bucket restored minus completed-task briefs: keys, sizes, ETags and sha256 identical", async () => {
  const hashesBefore = await contentHashes(expected().keys());
  await loseS3Server(k.stack.dir, 'minio');
  const worker = await startWorker(k.workerEnv);
  try {
    const client = await temporalClient(k.stack);
    const result = (await client.workflow.execute(objectStoreLoss, {
      taskQueue: k.workerEnv.KOHAKKU_DR_TASK_QUEUE!,
      workflowId: 'test-objects-restore',
      args: [{}],
    })) as ObjectStoreLossResult;
    expect(result.server).toMatchObject({ service: 'objectstore', restarted: true, healthy: true });
    expect(result.restored.skippedCompletedBriefs).toBe(1000);
    expect(result.backupVerified).toBe(true);
    expect(result.backup?.source).toBe('primary');
  } finally {
    await worker.stop();
  }
  expect(await listing()).toEqual(expected());
  expect(await contentHashes(expected().keys())).toEqual(hashesBefore);
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
