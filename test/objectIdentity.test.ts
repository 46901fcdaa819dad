/**
 * An object is known by its content, not its ETag: a 100 MiB object uploaded in one PUT (plain
 * MD5 ETag) comes back from the mirror in parts (a `-N` ETag) and is still the same object — for
 * the mirror, the verification, the restore, the check after it and a second restore, which
 * copies nothing. A 0.1 backup (ETag-keyed blobs, no sha256) restores the same way. A live object
 * changed after the operator approved the restore is refused unless the approval covers it, and
 * then it is moved aside, not lost. Real MinIO and Postgres; activities called directly.
 */
import { createHash } from 'node:crypto';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import * as Minio from 'minio';
import { createObjectStoreActivities, s3KeyOrder } from '../src/activities/objectStore';
import { loadConfig } from '../src/config';
import { objectIndexKey, objectsManifestKey } from '../src/domain/layout';
import type { ObjectBackupManifest, ObjectIndexEntry } from '../src/domain/manifests';
import { seededStatus } from '../src/reference/model';
import { createBackupStore } from '../src/infra/stores';
import { s3Client } from '../src/infra/s3';
import { withStackDb } from '../src/stack/stack';
import { deleteBucket, freshKohakku, minioClient, stopKohakku, type TestKohakku } from './harness/kohakku';

const BUCKET = 'kohakku';
const BACKUP_ID = '20261125T010203Z';
const LEGACY_ID = '20261124T010203Z';
const MiB = 1024 * 1024;
const SINGLE = 'skills/big-single-put.bin';
const MULTI = 'skills/big-multipart.bin';
const SMALL = 'skills/small-1.txt';

let k: TestKohakku;

interface Snapshot {
  size: number;
  etag: string;
  sha256: string;
}

/** Every object of the bucket with its sha256, computed here by downloading it. */
async function snapshot(prefix = ''): Promise<Map<string, Snapshot>> {
  const s3 = minioClient(k.stack);
  const out = new Map<string, Snapshot>();
  if (!(await s3.bucketExists(BUCKET))) return out;
  const listed: { name: string; size: number; etag: string }[] = [];
  for await (const o of s3.listObjectsV2(BUCKET, prefix, true)) listed.push(o as (typeof listed)[number]);
  for (const o of listed) {
    const hash = createHash('sha256');
    for await (const chunk of await s3.getObject(BUCKET, o.name)) hash.update(chunk as Buffer);
    out.set(o.name, { size: o.size, etag: o.etag.replace(/"/g, ''), sha256: hash.digest('hex') });
  }
  return out;
}

const contentOnly = (m: Map<string, Snapshot>) =>
  new Map([...m].map(([key, s]) => [key, { size: s.size, sha256: s.sha256 }]));

/** What a restore brings back: everything under briefs/ and skills/ but completed tasks' briefs. */
function restorable(m: Map<string, Snapshot>): Map<string, Snapshot> {
  return new Map(
    [...m].filter(([key]) => {
      const brief = /^briefs\/task-(\d+)\.md$/.exec(key);
      if (brief) return seededStatus(Number(brief[1])) !== 'completed';
      return key.startsWith('briefs/') || key.startsWith('skills/');
    }),
  );
}

function activities() {
  const config = loadConfig({ ...k.workerEnv });
  return {
    config,
    store: createBackupStore(config),
    objects: createObjectStoreActivities({
      config,
      store: createBackupStore(config),
      s3: s3Client(config.s3),
    }),
  };
}

function failureOf(err: unknown): { type?: string; message: string } {
  return { type: (err as { type?: string }).type, message: (err as Error).message };
}

let original: Map<string, Snapshot>;

beforeAll(async () => {
  k = await freshKohakku('objid', { tasks: 200, briefs: 20 }, { agents: false });
  const s3 = minioClient(k.stack);
  // minio-js uploads in parts above its partSize (64 MiB): a client with a larger one sends 100 MiB in ONE PUT.
  const singlePut = new Minio.Client({
    endPoint: '127.0.0.1',
    port: k.stack.minio.port,
    useSSL: false,
    accessKey: k.stack.minio.accessKey,
    secretKey: k.stack.minio.secretKey,
    partSize: 128 * MiB,
  });
  await singlePut.putObject(BUCKET, SINGLE, randomBytes(100 * MiB));
  // A stream (a Buffer would go up as one part): 64 MiB + 6 MiB parts.
  const multi = randomBytes(70 * MiB);
  const chunks = Array.from({ length: 70 }, (_, i) => multi.subarray(i * MiB, (i + 1) * MiB));
  await s3.putObject(BUCKET, MULTI, Readable.from(chunks), multi.length);
  for (let i = 1; i <= 3; i++) {
    const body = Buffer.from(`skill ${i}: ${'x'.repeat(100 * i)}\n`);
    await s3.putObject(BUCKET, `skills/small-${i}.txt`, body, body.length);
  }
  await s3.putObject(BUCKET, 'skills/empty.txt', Buffer.alloc(0), 0);
  original = await snapshot();
});

afterAll(async () => {
  if (k) await stopKohakku(k);
});

test('a 100 MiB single-PUT object and a multipart one: mirrored with sha256, verified, restored after the bucket is deleted, identical by content; a second restore copies nothing', async () => {
  expect(original.get(SINGLE)!.etag).not.toContain('-');
  expect(original.get(SINGLE)!.size).toBe(100 * MiB);
  expect(original.get(MULTI)!.etag).toMatch(/-2$/);
  const { objects, store } = activities();

  const manifest = await objects.mirrorObjects({ backupId: BACKUP_ID });
  expect(manifest).toMatchObject({ objects: original.size, copied: original.size });
  const index = (await store.getJson<ObjectIndexEntry[]>(objectIndexKey(BACKUP_ID)))!;
  // The index's sha256 of every object is the one computed here from the bucket.
  expect(new Map(index.map((e) => [e.key, { size: e.size, sha256: e.sha256 }]))).toEqual(
    contentOnly(original),
  );
  expect(await objects.mirrorObjects({ backupId: BACKUP_ID })).toEqual(manifest); // idempotent

  expect(await objects.verifyObjectBackup({ backupId: BACKUP_ID, verifyId: 'objid-verify-1' })).toEqual({
    ok: true,
    problems: [],
    objects: original.size,
  });

  await deleteBucket(minioClient(k.stack), BUCKET);
  const restored = await objects.restoreObjects({
    backupId: BACKUP_ID,
    recoveryId: 'objid-r1',
    maxOverwrites: 0,
  });
  const expected = restorable(original);
  expect(restored).toMatchObject({ copied: expected.size, alreadyPresent: 0, movedAside: 0 });
  const after = await snapshot();
  expect(contentOnly(after)).toEqual(contentOnly(expected));
  // The restore uploaded the 100 MiB object in parts: another ETag, the same content, its sha256 recorded.
  expect(after.get(SINGLE)!.etag).toMatch(/-\d+$/);
  const stat = await minioClient(k.stack).statObject(BUCKET, SINGLE);
  expect(stat.metaData['kohakku-dr-sha256']).toBe(original.get(SINGLE)!.sha256);

  // Over the restored bucket: everything is already there, nothing is sent again.
  expect(await objects.planObjectRestore({ backupId: BACKUP_ID })).toMatchObject({
    toCopy: 0,
    overwriteCount: 0,
    alreadyPresent: expected.size,
  });
  expect(
    await objects.restoreObjects({ backupId: BACKUP_ID, recoveryId: 'objid-r2', maxOverwrites: 0 }),
  ).toMatchObject({
    copied: 0,
    alreadyPresent: expected.size,
    restoredAndVerified: expected.size,
    movedAside: 0,
  });
  expect(await snapshot()).toEqual(after);

  // The next mirror knows the restored objects by content: it reads them once more (new ETags)
  // but writes no new blob.
  const next = await objects.mirrorObjects({ backupId: '20261125T020000Z' });
  expect(next.blobsWritten).toBe(0);
});

test('a 0.1 backup (ETag-keyed blobs, no sha256) with the 100 MiB single-PUT object verifies and restores', async () => {
  const { objects, store } = activities();
  const index = (await store.getJson<ObjectIndexEntry[]>(objectIndexKey(BACKUP_ID)))!;
  // Fabricated as 0.1 wrote it (the test's setup): blob `<etag>-<size>`, entries without sha256.
  const legacy: ObjectIndexEntry[] = [];
  for (const e of index.filter((x) => x.key.startsWith('skills/'))) {
    const etag = original.get(e.key)!.etag;
    const blob = `objects/blobs/${etag}-${e.size}`;
    await store.putStream(blob, await store.getStream(e.blob), e.size);
    legacy.push({ key: e.key, size: e.size, etag, blob });
  }
  await store.putJson(objectIndexKey(LEGACY_ID), legacy);
  const manifest = (await store.getJson<ObjectBackupManifest>(objectsManifestKey(BACKUP_ID)))!;
  await store.putJson(objectsManifestKey(LEGACY_ID), { ...manifest, id: LEGACY_ID, blobsWritten: undefined });

  expect(
    await objects.verifyObjectBackup({ backupId: LEGACY_ID, verifyId: 'objid-verify-legacy' }),
  ).toMatchObject({
    ok: true,
  });
  await deleteBucket(minioClient(k.stack), BUCKET);
  const restored = await objects.restoreObjects({
    backupId: LEGACY_ID,
    recoveryId: 'objid-legacy',
    maxOverwrites: 0,
  });
  expect(restored).toMatchObject({ copied: legacy.length, restoredAndVerified: legacy.length });
  const skills = (m: Map<string, Snapshot>) =>
    new Map([...contentOnly(m)].filter(([key]) => key.startsWith('skills/')));
  expect(contentOnly(await snapshot())).toEqual(skills(original));

  // Bring the bucket back to the 0.2 backup for the next test.
  await objects.restoreObjects({ backupId: BACKUP_ID, recoveryId: 'objid-back', maxOverwrites: 0 });
  expect(contentOnly(await snapshot())).toEqual(contentOnly(restorable(original)));
});

test('a live object changed after approval: refused with 0 approved overwrites (bucket unchanged), moved aside and replaced with 1', async () => {
  const { objects } = activities();
  const s3 = minioClient(k.stack);
  expect(await objects.planObjectRestore({ backupId: BACKUP_ID })).toMatchObject({ overwriteCount: 0 });
  // The operator approved that plan (nothing to replace); then someone rewrites an object with
  // other bytes of the same size, so only its content tells.
  const before = original.get(SMALL)!;
  const changed = Buffer.alloc(before.size, 'z');
  await s3.putObject(BUCKET, SMALL, changed, changed.length);
  const changedState = await snapshot();
  expect(changedState.get(SMALL)!.sha256).not.toBe(before.sha256);

  const refused = await objects
    .restoreObjects({ backupId: BACKUP_ID, recoveryId: 'objid-changed', maxOverwrites: 0 })
    .then(
      () => undefined,
      (err: unknown) => failureOf(err),
    );
  expect(refused?.type).toBe('LiveDataChanged');
  expect(refused?.message).toContain(SMALL);
  expect(await snapshot()).toEqual(changedState); // nothing written, nothing moved aside

  const replaced = await objects.restoreObjects({
    backupId: BACKUP_ID,
    recoveryId: 'objid-changed',
    maxOverwrites: 1,
  });
  expect(replaced).toMatchObject({ copied: 1, movedAside: 1 });
  const now = await snapshot();
  expect(now.get(SMALL)).toMatchObject({ size: before.size, sha256: before.sha256 });
  const aside = [...now].filter(([key]) => key.startsWith('kohakku-dr-aside/'));
  expect(aside.map(([key]) => key)).toEqual([`${replaced.asidePrefix}${SMALL}`]);
  expect(aside[0]![1].sha256).toBe(changedState.get(SMALL)!.sha256);
  expect(contentOnly(new Map([...now].filter(([key]) => !key.startsWith('kohakku-dr-aside/'))))).toEqual(
    contentOnly(restorable(original)),
  );
});

test("keys in S3's order (UTF-8 bytes), not JavaScript's: the restore walks index, listing and completed briefs side by side; a completed task's brief with such a key is skipped", async () => {
  const { objects, config } = activities();
  const s3 = minioClient(k.stack);
  // JavaScript's < puts the emoji (its UTF-16 surrogates) before U+FFFD; S3 lists it after.
  const keys = ['briefs/\uFFFD-open.md', 'briefs/😀-done.md', 'skills/\uFFFD.txt', 'skills/😀.txt'];
  for (const key of keys) {
    const body = Buffer.from(`content of ${key}\n`);
    await s3.putObject(BUCKET, key, body, body.length);
  }
  // A completed task's brief is the emoji one.
  const completedId = Array.from({ length: 200 }, (_, i) => i + 1).find(
    (n) => seededStatus(n) === 'completed',
  )!;
  await withStackDb(k.stack, config.postgres.databases.controller, (c) =>
    c.query('UPDATE tasks_task SET brief_key = $1 WHERE id = $2', ['briefs/😀-done.md', completedId]),
  );
  const state = await snapshot();
  const backupId = '20261125T030000Z';
  await objects.mirrorObjects({ backupId });
  const { store } = activities();
  const indexed = (await store.getJson<ObjectIndexEntry[]>(objectIndexKey(backupId)))!.map((e) => e.key);
  expect(indexed).toEqual([...indexed].sort(s3KeyOrder));
  expect(indexed).not.toEqual([...indexed].sort());

  await deleteBucket(s3, BUCKET);
  const wanted = new Map(
    [...restorable(state)].filter(
      ([key]) => key !== 'briefs/😀-done.md' && !key.startsWith('kohakku-dr-aside/'),
    ),
  );
  const plan = await objects.planObjectRestore({ backupId });
  expect(plan).toMatchObject({ toCopy: wanted.size, overwriteCount: 0, alreadyPresent: 0 });
  const restored = await objects.restoreObjects({ backupId, recoveryId: 'objid-utf8', maxOverwrites: 0 });
  expect(restored).toMatchObject({
    copied: wanted.size,
    restoredAndVerified: wanted.size,
    skippedCompletedBriefs: plan.skippedCompletedBriefs,
  });
  const after = await snapshot();
  expect(after.has('briefs/😀-done.md')).toBe(false);
  expect(after.get('briefs/\uFFFD-open.md')).toBeDefined();
  expect(contentOnly(after)).toEqual(contentOnly(wanted));
});
