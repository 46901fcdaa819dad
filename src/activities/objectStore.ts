/**
 * Object-store backup: an incremental mirror of Kohakku's bucket prefixes (briefs/, skills/).
 *
 * Objects are stored content-addressed as `objects/blobs/<etag>-<size>`, and each backup keeps
 * an index (key → blob) of the bucket at that time. An object already mirrored is never copied
 * again, older backups stay restorable when an object is later overwritten, and a mirror killed
 * half-way resumes by skipping the blobs already there. Transfers run concurrently, each
 * streamed, so memory stays bounded whatever the object sizes.
 */
import type * as Minio from 'minio';
import type { Config } from '../config';
import { BLOB_PREFIX, objectIndexKey, objectsManifestKey } from '../domain/layout';
import type { ObjectBackupManifest, ObjectIndexEntry } from '../domain/manifests';
import { ErrorType, fail } from '../domain/errors';
import type { BackupStore } from '../infra/backupStore';
import { queryController } from '../infra/database';
import { shortTag } from '../infra/hashing';
import { heartbeat } from './heartbeat';
import { mapLimit, removeBucket } from '../infra/s3';

export interface ObjectRestorePlan {
  bucket: string;
  bucketExists: boolean;
  inBackup: number;
  skippedCompletedBriefs: number;
  alreadyPresent: number;
  toCopy: number;
  overwriteCount: number;
  wouldOverwrite: string[];
}

export interface ObjectRestoreReport {
  bucket: string;
  restoredAndVerified: number;
  copied: number;
  alreadyPresent: number;
  skippedCompletedBriefs: number;
  movedAside: number;
  asidePrefix?: string;
}

export interface ObjectStoreDeps {
  config: Config;
  store: BackupStore;
  s3: Minio.Client;
}

export { BLOB_PREFIX, objectIndexKey };
export type { ObjectBackupManifest, ObjectIndexEntry };
const manifestKey = objectsManifestKey;

export function blobKey(etag: string, size: number): string {
  return `${BLOB_PREFIX}${etag.replace(/"/g, '')}-${size}`;
}

export function createObjectStoreActivities({ config, store, s3 }: ObjectStoreDeps) {
  const bucket = config.kohakkuBucket;

  async function listSource(): Promise<ObjectIndexEntry[]> {
    const out: ObjectIndexEntry[] = [];
    for (const prefix of config.backupPrefixes) {
      for await (const item of s3.listObjectsV2(bucket, prefix, true)) {
        const o = item as { name?: string; size?: number; etag?: string };
        if (!o.name) continue;
        const etag = (o.etag ?? '').replace(/"/g, '');
        out.push({ key: o.name, size: o.size ?? 0, etag, blob: blobKey(etag, o.size ?? 0) });
      }
    }
    return out.sort((a, b) => a.key.localeCompare(b.key));
  }

  /** Mirrors the configured prefixes into the backup store. Idempotent per backup id; resumable. */
  async function mirrorObjects(input: { backupId: string }): Promise<ObjectBackupManifest> {
    const existing = await store.getJson<ObjectBackupManifest>(manifestKey(input.backupId));
    if (existing) return existing;
    await store.ensureReady();
    const entries = await listSource();
    const mirrored = new Set((await store.list(BLOB_PREFIX)).map((o) => o.key));
    const todo = entries.filter((e) => !mirrored.has(e.blob));
    const uniqueTodo = [...new Map(todo.map((e) => [e.blob, e])).values()];
    let done = 0;
    let bytes = 0;
    const progress = () => ({
      stage: 'mirroring',
      copied: done,
      toCopy: uniqueTodo.length,
      bytes,
      alreadyMirrored: entries.length - todo.length,
    });
    const timer = setInterval(() => heartbeat(progress()), 2000);
    heartbeat(progress());
    try {
      await mapLimit(uniqueTodo, config.transferConcurrency, async (e) => {
        await store.putStream(e.blob, await s3.getObject(bucket, e.key), e.size);
        done++;
        bytes += e.size;
      });
    } finally {
      clearInterval(timer);
    }
    await store.putJson(objectIndexKey(input.backupId), entries);
    const manifest: ObjectBackupManifest = {
      kind: 'objects',
      formatVersion: 1,
      id: input.backupId,
      createdAt: new Date().toISOString(),
      bucket,
      prefixes: config.backupPrefixes,
      objects: entries.length,
      bytes: entries.reduce((n, e) => n + e.size, 0),
      copied: uniqueTodo.length,
      alreadyMirrored: entries.length - todo.length,
      indexKey: objectIndexKey(input.backupId),
    };
    await store.putJson(manifestKey(input.backupId), manifest);
    return manifest;
  }

  async function completedBriefs(): Promise<Set<string>> {
    const rows = await queryController<{ brief_key: string }>(config, config.model.completedBriefsSql);
    return new Set(rows.map((r) => r.brief_key));
  }

  /** The bucket's objects under the backed-up prefixes, by key (none when the bucket is gone). */
  async function currentObjects(): Promise<Map<string, { size: number; etag: string }>> {
    if (!(await s3.bucketExists(bucket))) return new Map();
    return new Map((await listSource()).map((e) => [e.key, { size: e.size, etag: e.etag }]));
  }

  const same = (a: { size: number; etag: string } | undefined, e: ObjectIndexEntry) =>
    !!a && a.size === e.size && (e.etag.includes('-') || a.etag === e.etag);

  /** What restoring backup `backupId` into the bucket would do, changing nothing. */
  async function planObjectRestore(input: { backupId: string }): Promise<ObjectRestorePlan> {
    const index = await store.getJson<ObjectIndexEntry[]>(objectIndexKey(input.backupId));
    if (!index) throw fail(ErrorType.BackupNotFound, `backup ${input.backupId} has no object index`);
    // Planning may happen while Postgres is still lost (full cluster): then no brief is known to be
    // skippable and the counts are upper bounds.
    const skip = await completedBriefs().catch(() => new Set<string>());
    const current = await currentObjects();
    const wanted = index.filter((e) => !skip.has(e.key));
    const present = wanted.filter((e) => same(current.get(e.key), e));
    const overwrite = wanted.filter((e) => current.has(e.key) && !same(current.get(e.key), e));
    return {
      bucket,
      bucketExists: await s3.bucketExists(bucket),
      inBackup: index.length,
      skippedCompletedBriefs: index.length - wanted.length,
      alreadyPresent: present.length,
      toCopy: wanted.length - present.length,
      wouldOverwrite: overwrite.map((e) => e.key).slice(0, 50),
      overwriteCount: overwrite.length,
    };
  }

  /**
   * Restores the bucket from a backup's index: skips briefs of completed tasks (Postgres says
   * which) and objects already there unchanged (so a killed restore resumes, re-sending at most
   * what was in flight); an object that differs is first copied aside under
   * `kohakku-dr-aside/<tag>/`; then every restored key is checked for size and ETag.
   */
  async function restoreObjects(input: {
    backupId: string;
    recoveryId: string;
  }): Promise<ObjectRestoreReport> {
    const index = await store.getJson<ObjectIndexEntry[]>(objectIndexKey(input.backupId));
    if (!index) throw fail(ErrorType.BackupNotFound, `backup ${input.backupId} has no object index`);
    if (!(await s3.bucketExists(bucket))) await s3.makeBucket(bucket, config.s3.region);
    const skip = await completedBriefs();
    const current = await currentObjects();
    const wanted = index.filter((e) => !skip.has(e.key));
    const todo = wanted.filter((e) => !same(current.get(e.key), e));
    const asidePrefix = `kohakku-dr-aside/${shortTag(input.recoveryId)}/`;
    let copied = 0;
    let movedAside = 0;
    const progress = () => ({
      stage: 'restoring objects',
      copied,
      toCopy: todo.length,
      alreadyPresent: wanted.length - todo.length,
    });
    const timer = setInterval(() => heartbeat(progress()), 1000);
    heartbeat(progress());
    try {
      await mapLimit(todo, config.transferConcurrency, async (e) => {
        const existing = current.get(e.key);
        if (existing) {
          await s3.putObject(bucket, asidePrefix + e.key, await s3.getObject(bucket, e.key), existing.size);
          movedAside++;
        }
        await s3.putObject(bucket, e.key, await store.getStream(e.blob), e.size);
        copied++;
      });
    } finally {
      clearInterval(timer);
    }
    const after = await currentObjects();
    const problems = wanted.filter((e) => !same(after.get(e.key), e)).map((e) => e.key);
    if (problems.length > 0) {
      throw fail(
        ErrorType.RestoreVerificationFailed,
        `${problems.length} object(s) differ from backup ${input.backupId} after restore, e.g. ${problems.slice(0, 3).join(', ')}`,
      );
    }
    return {
      bucket,
      restoredAndVerified: wanted.length,
      copied,
      alreadyPresent: wanted.length - todo.length,
      skippedCompletedBriefs: index.length - wanted.length,
      movedAside,
      asidePrefix: movedAside ? asidePrefix : undefined,
    };
  }

  function scratchBucket(verifyId: string): string {
    return `kohakku-dr-verify-${shortTag(verifyId, 12)}`;
  }

  /**
   * Restores the backup's objects into a scratch bucket and compares keys, sizes and ETags with
   * the index. The scratch bucket is always removed.
   */
  async function verifyObjectBackup(input: {
    backupId: string;
    verifyId: string;
  }): Promise<{ ok: boolean; problems: string[]; objects: number }> {
    const index = await store.getJson<ObjectIndexEntry[]>(objectIndexKey(input.backupId));
    if (!index) return { ok: false, problems: [`no object backup ${input.backupId}`], objects: 0 };
    const scratch = scratchBucket(input.verifyId);
    const problems: string[] = [];
    await removeBucket(s3, scratch);
    await s3.makeBucket(scratch, config.s3.region);
    try {
      let done = 0;
      await mapLimit(index, config.transferConcurrency, async (e) => {
        try {
          await s3.putObject(scratch, e.key, await store.getStream(e.blob), e.size);
        } catch (err) {
          problems.push(`${e.key}: blob ${e.blob} unreadable (${(err as Error).message})`);
        }
        if (++done % 100 === 0) heartbeat({ stage: 'verifying objects', done, total: index.length });
      });
      const restored = new Map<string, { size: number; etag: string }>();
      for await (const item of s3.listObjectsV2(scratch, '', true)) {
        const o = item as { name: string; size: number; etag?: string };
        restored.set(o.name, { size: o.size, etag: (o.etag ?? '').replace(/"/g, '') });
      }
      for (const e of index) {
        const r = restored.get(e.key);
        if (!r) problems.push(`${e.key} missing after restore`);
        else if (r.size !== e.size) problems.push(`${e.key}: ${r.size} bytes, backup says ${e.size}`);
        // A multipart ETag (with a dash) depends on part sizes, not only content: compare single-part ones.
        else if (!e.etag.includes('-') && r.etag !== e.etag)
          problems.push(`${e.key}: ETag ${r.etag}, backup says ${e.etag}`);
      }
      return { ok: problems.length === 0, problems: problems.slice(0, 20), objects: index.length };
    } finally {
      await removeBucket(s3, scratch);
    }
  }

  async function cleanupObjectVerification(input: { verifyId: string }): Promise<{ removed: boolean }> {
    return { removed: (await removeBucket(s3, scratchBucket(input.verifyId))) !== undefined };
  }

  return { mirrorObjects, verifyObjectBackup, cleanupObjectVerification, planObjectRestore, restoreObjects };
}
