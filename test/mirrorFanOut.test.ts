/**
 * Beyond one worker, for real: two kohakku-dr worker processes poll one task queue, each allowed
 * two activities at once, and share one object mirror split into partitions (a low
 * OBJECT_MIRROR_PARTITION_OBJECTS makes 3,000 briefs several partitions). The history shows both
 * workers mirroring partitions, and the merged index is exactly what one activity mirroring the
 * whole bucket records (every key, with the same content hash and blob). And a mirror an upgrade
 * interrupts: a partition finished by 0.3.2 (entries inline in its file) merges with partitions
 * finished since (entries in a JSON array beside it).
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createObjectStoreActivities, s3KeyOrder } from '../src/activities/objectStore';
import { loadConfig } from '../src/config';
import { objectIndexKey, objectPartitionKey, objectPartitionsPrefix } from '../src/domain/layout';
import type { ObjectIndexEntry } from '../src/domain/manifests';
import { dirBackupStore } from '../src/infra/backupStore';
import { s3Client } from '../src/infra/s3';
import { createBackupStore } from '../src/infra/stores';
import { objectStoreBackup } from '../src/workflows';
import {
  freshKohakku,
  minioClient,
  startWorker,
  stopKohakku,
  temporalClient,
  type TestKohakku,
  type WorkerProcess,
} from './harness/kohakku';

let k: TestKohakku;
const workers: WorkerProcess[] = [];

beforeAll(async () => {
  k = await freshKohakku('fanout', { tasks: 3000, briefs: 3000 }, { agents: false, monitor: false });
  k.workerEnv = {
    ...k.workerEnv,
    OBJECT_MIRROR_PARTITION_OBJECTS: '500',
    WORKER_MAX_CONCURRENT_ACTIVITIES: '2',
  };
});

afterAll(async () => {
  for (const w of workers) await w.stop();
  if (k) await stopKohakku(k);
});

test('two worker processes share one partitioned mirror, both mirror partitions, and the index equals a one-activity mirror', async () => {
  workers.push(await startWorker(k.workerEnv), await startWorker(k.workerEnv));
  const client = await temporalClient(k.stack);
  const backupId = '20261201T020000Z';
  const handle = await client.workflow.start(objectStoreBackup, {
    taskQueue: k.workerEnv.KOHAKKU_DR_TASK_QUEUE!,
    workflowId: 'test-fanout-mirror',
    args: [{ backupId }],
  });
  const manifest = await handle.result();

  let objects = 0;
  for await (const item of minioClient(k.stack).listObjectsV2(k.model.s3.bucket, '', true))
    if (item) objects++;
  expect(manifest.objects).toBe(objects);
  expect(manifest.copied).toBe(objects);

  // Which worker started each partition's activity, from the history.
  const { events } = await handle.fetchHistory();
  const typeOf = new Map<string, string>();
  const startedBy = new Map<string, Set<string>>();
  for (const e of events ?? []) {
    const scheduled = e.activityTaskScheduledEventAttributes;
    if (scheduled) typeOf.set(String(e.eventId), scheduled.activityType?.name ?? '');
    const started = e.activityTaskStartedEventAttributes;
    if (started) {
      const type = typeOf.get(String(started.scheduledEventId)) ?? '';
      startedBy.set(type, (startedBy.get(type) ?? new Set()).add(started.identity ?? ''));
    }
  }
  const partitions = [...typeOf.values()].filter((t) => t === 'mirrorObjectPartition').length;
  expect(partitions).toBeGreaterThanOrEqual(6);
  expect(startedBy.get('mirrorObjectPartition')?.size).toBe(2);
  expect(startedBy.get('finishObjectMirror')?.size).toBe(1);

  // The same bucket mirrored by one activity, in this process, into a store of its own (so it
  // knows no content from the fan-out and reads every object itself).
  const config = loadConfig(k.workerEnv);
  const store = createBackupStore(config);
  const own = dirBackupStore(await fs.mkdtemp(path.join(os.tmpdir(), 'kohakku-dr-fanout-')));
  const single = await createObjectStoreActivities({
    config,
    store: own,
    s3: s3Client(config.s3),
  }).mirrorObjects({ backupId });
  expect(single).toMatchObject({ objects, copied: objects, alreadyMirrored: 0 });
  const byKey = async (from: typeof store) =>
    new Map(
      ((await from.getJson<ObjectIndexEntry[]>(objectIndexKey(backupId))) ?? []).map((e) => [
        e.key,
        `${e.size}/${e.sha256}/${e.blob}`,
      ]),
    );
  const shared = await byKey(store);
  expect(shared.size).toBe(objects);
  expect(shared).toEqual(await byKey(own));
  expect((await store.list(`objects/${backupId}/`)).map((o) => o.key).sort()).toEqual([
    `objects/${backupId}/index.json`,
    `objects/${backupId}/manifest.json`,
  ]);
});

test('an upgrade mid-mirror: a partition 0.3.2 finished (entries inline) merges with partitions finished now', async () => {
  const config = { ...loadConfig(k.workerEnv), mirrorPartitionObjects: 1000 };
  const store = dirBackupStore(await fs.mkdtemp(path.join(os.tmpdir(), 'kohakku-dr-upgrade-')));
  const activities = createObjectStoreActivities({ config, store, s3: s3Client(config.s3) });
  const backupId = '20261201T030000Z';
  const split = await activities.countObjectsToMirror({ backupId });
  expect(split.partitions).toBeGreaterThanOrEqual(3);
  for (const partition of split.ranges) await activities.mirrorObjectPartition({ backupId, partition });
  // Partition 0 as 0.3.2 left it: one file with its entries inline.
  const key = objectPartitionKey(backupId, 0, split.partitions);
  const stored = (await store.getJson<{ entriesKey: string; copied: number }>(key))!;
  const entries = (await store.getJson<ObjectIndexEntry[]>(stored.entriesKey))!;
  await store.removeKeys([stored.entriesKey]);
  await store.putJson(key, {
    entries,
    copied: stored.copied,
    alreadyMirrored: 0,
    blobsWritten: stored.copied,
  });
  // Done already: the same summary again, nothing mirrored twice.
  expect(await activities.mirrorObjectPartition({ backupId, partition: split.ranges[0]! })).toMatchObject({
    objects: entries.length,
    copied: stored.copied,
  });

  const manifest = await activities.finishObjectMirror({ backupId, partitions: split.partitions });
  expect(manifest.objects).toBe(split.objects);
  const index = (await store.getJson<ObjectIndexEntry[]>(objectIndexKey(backupId)))!;
  expect(index.map((e) => e.key)).toEqual([...index.map((e) => e.key)].sort(s3KeyOrder));
  expect(index.slice(0, entries.length)).toEqual(entries);
  expect(new Set(index.map((e) => e.key)).size).toBe(split.objects);
  expect(await store.list(objectPartitionsPrefix(backupId))).toEqual([]);
});
