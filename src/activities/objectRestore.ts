/**
 * The way back from an object backup: planning a restore into Kohakku's bucket, the restore
 * itself (replacing only what was approved, each replaced object first copied aside), and the
 * verification of a backup into a scratch bucket.
 *
 * Each walks the backup's index beside a listing of the bucket, both in S3's key order
 * (objectKit.ts): a merge, a page at a time, so memory does not grow with the number of objects.
 * A restore compares everything before it writes anything (it must refuse, untouched, when more
 * objects differ than were approved); what it decided is spooled to the worker's disk and read
 * back for the copy, then the bucket is listed once more and every key checked.
 */
import * as path from 'node:path';
import { ErrorType, fail } from '../domain/errors';
import { BACKUP_ID_PATTERN } from '../domain/backupIds';
import { objectIndexKey, objectsManifestKey } from '../domain/layout';
import type { ObjectBackupManifest, ObjectIndexEntry } from '../domain/manifests';
import { mapAdaptive, memoryBudget, TRANSFER_MEMORY_BYTES } from '../infra/adaptive';
import { controllerRows } from '../infra/database';
import { shortTag } from '../infra/hashing';
import {
  hashObject,
  hashStream,
  putHashed,
  recordedSha256,
  removeBucket,
  SHA256_METADATA,
} from '../infra/s3';
import { uploadBounded, uploadMemory } from '../infra/s3Upload';
import { createSpool } from '../infra/spool';
import {
  bucketInKeyOrder,
  contentProblem,
  forEachInOrder,
  indexInKeyOrder,
  INITIAL_TRANSFERS,
  isNotFound,
  joinWithBucket,
  inKeyOrder,
  matchInKeyOrder,
  type Comparison,
  type LiveObject,
  type ObjectStoreDeps,
} from './objectKit';
import { meter } from '../domain/meter';
import { withHeartbeats } from './heartbeat';

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

/** An object the restore will write: its entry, and how the live one stood against it. */
interface PlannedCopy {
  e: ObjectIndexEntry;
  c: Exclude<Comparison, { state: 'same' }>;
}

/**
 * At most this many keys whose ETag after the restore is not the index's are remembered (a
 * multipart object sent in other parts, one found the same by content): past it, such a key's
 * final check compares by content (one HEAD) instead.
 */
const REMEMBERED_ETAGS = 100_000;

export function createObjectRestoreActivities({ config, store, s3, transferMemory }: ObjectStoreDeps) {
  const bucket = config.kohakkuBucket;
  const budget = transferMemory ?? memoryBudget(TRANSFER_MEMORY_BYTES);
  const live = () => bucketInKeyOrder(s3, bucket, config.backupPrefixes);

  /** How many entries the backup's index has, from its manifest (for progress; the index is not counted). */
  async function indexSize(backupId: string): Promise<number | undefined> {
    return (await store.getJson<ObjectBackupManifest>(objectsManifestKey(backupId)).catch(() => undefined))
      ?.objects;
  }

  async function indexOf(backupId: string): Promise<AsyncIterable<ObjectIndexEntry>> {
    if (!BACKUP_ID_PATTERN.test(backupId))
      throw fail(ErrorType.InvalidInput, `"${backupId}" is not a backup id`);
    const index = await indexInKeyOrder(store, objectIndexKey(backupId));
    if (!index) throw fail(ErrorType.BackupNotFound, `backup ${backupId} has no object index`);
    return index;
  }

  /**
   * The brief keys of completed tasks (KOHAKKU_COMPLETED_BRIEFS_SQL), streamed in S3's key order:
   * the query ordered by its keys' bytes (COLLATE "C": UTF-8 bytes in a UTF8 database). With
   * `unlessLost`, a Controller database that cannot be reached gives none (a plan made while
   * Postgres is still lost: its counts are then upper bounds).
   */
  async function* completedBriefs(options: { unlessLost?: boolean } = {}): AsyncGenerator<string> {
    const sql =
      `SELECT brief_key FROM (${config.model.completedBriefsSql.trim().replace(/;+$/, '')}) AS completed ` +
      'WHERE brief_key IS NOT NULL ORDER BY brief_key COLLATE "C"';
    async function* keys(): AsyncGenerator<string> {
      for await (const { brief_key: key } of controllerRows<{ brief_key: string }>(config, sql)) yield key;
    }
    // Two completed tasks may share a brief: a key may repeat.
    const inOrder = inKeyOrder(keys(), {
      keyOf: (key) => key,
      repeats: true,
      outOfOrder: (key, previous) =>
        fail(
          ErrorType.InvalidInput,
          `KOHAKKU_COMPLETED_BRIEFS_SQL gave ${key} after ${previous}, not in UTF-8 byte order ` +
            '(ORDER BY ... COLLATE "C"): is the Controller\'s database not encoded in UTF8?',
        ),
    });
    let first: IteratorResult<string>;
    try {
      first = await inOrder.next();
    } catch (err) {
      if (options.unlessLost) return;
      throw err;
    }
    if (first.done) return;
    yield first.value;
    yield* inOrder;
  }

  /**
   * The entries of `index` a restore wants, in key order: not the briefs of completed tasks (a
   * merge with their sorted keys). Counts both.
   */
  function wanted(index: AsyncIterable<ObjectIndexEntry>, completed: AsyncIterable<string>) {
    const counts = { inBackup: 0, wanted: 0 };
    const entries = (async function* () {
      for await (const { item, match } of matchInKeyOrder(index, completed, {
        of: (e) => e.key,
        ofOther: (k) => k,
      })) {
        counts.inBackup++;
        if (match !== undefined) continue;
        counts.wanted++;
        yield item;
      }
    })();
    return { entries, counts };
  }

  /** sha256 of a 0.1 entry's blob (its index has none), hashed from the backup store once per blob. */
  const blobHashes = new Map<string, Promise<string>>();
  function expectedSha256(e: ObjectIndexEntry): Promise<string> {
    if (e.sha256) return Promise.resolve(e.sha256);
    let hash = blobHashes.get(e.blob);
    if (!hash) {
      hash = store.getStream(e.blob).then(async (stream) => (await hashStream(stream)).sha256);
      hash.catch(() => blobHashes.delete(e.blob));
      blobHashes.set(e.blob, hash);
    }
    return hash;
  }

  /**
   * Same size and ETag as at backup time: the same object. Another size: different. Otherwise by
   * content: the sha256 recorded on the object when kohakku-dr restored it, or a download hashed.
   */
  async function compare(e: ObjectIndexEntry, liveObject: LiveObject | undefined): Promise<Comparison> {
    if (!liveObject) return { state: 'absent' };
    if (liveObject.size !== e.size) return { state: 'differs', live: liveObject };
    if (liveObject.etag === e.etag) return { state: 'same', etag: liveObject.etag };
    try {
      const actual =
        (await recordedSha256(s3, bucket, e.key)) ?? (await hashObject(s3, bucket, e.key)).sha256;
      return actual === (await expectedSha256(e))
        ? { state: 'same', etag: liveObject.etag }
        : { state: 'differs', live: liveObject };
    } catch (err) {
      if (isNotFound(err)) return { state: 'absent' }; // deleted meanwhile
      throw err;
    }
  }

  /**
   * Every entry of `entries` compared with the bucket as it is now, handed to `each` in key order
   * (comparisons by content run OBJECT_TRANSFER_CONCURRENCY at once), heartbeating the count.
   */
  async function compareWithBucket(
    entries: AsyncIterable<ObjectIndexEntry>,
    progress: { stage: string; inBackup?: number },
    each: (e: ObjectIndexEntry, c: Comparison) => void | Promise<void>,
  ): Promise<void> {
    let compared = 0;
    await withHeartbeats(
      () => ({ ...progress, compared, meter: meter(progress.stage, 'objects', compared, progress.inBackup) }),
      () =>
        forEachInOrder(
          joinWithBucket(entries, live()),
          { concurrency: config.transferConcurrency },
          ({ entry, live: liveObject }) => compare(entry, liveObject),
          ({ entry }, c) => {
            compared++;
            return each(entry, c);
          },
        ),
    );
  }

  /** What restoring backup `backupId` into the bucket would do, changing nothing. */
  async function planObjectRestore(input: { backupId: string }): Promise<ObjectRestorePlan> {
    const index = await indexOf(input.backupId);
    // Planning may happen while Postgres is still lost (full cluster): then no brief is known to be
    // skippable and the counts are upper bounds.
    const { entries, counts } = wanted(index, completedBriefs({ unlessLost: true }));
    let present = 0;
    let overwriteCount = 0;
    const wouldOverwrite: string[] = [];
    const progress = {
      stage: 'comparing the bucket with the backup',
      inBackup: await indexSize(input.backupId),
    };
    await compareWithBucket(entries, progress, (e, c) => {
      if (c.state === 'same') present++;
      else if (c.state === 'differs') {
        overwriteCount++;
        if (wouldOverwrite.length < 50) wouldOverwrite.push(e.key);
      }
    });
    return {
      bucket,
      bucketExists: await s3.bucketExists(bucket),
      inBackup: counts.inBackup,
      skippedCompletedBriefs: counts.inBackup - counts.wanted,
      alreadyPresent: present,
      toCopy: counts.wanted - present,
      wouldOverwrite,
      overwriteCount,
    };
  }

  /**
   * Restores the bucket from a backup's index: skips briefs of completed tasks (Postgres says
   * which) and objects already there unchanged (so a killed restore resumes, re-sending at most
   * what was in flight). At most `maxOverwrites` differing live objects are replaced (what the
   * operator approved): more, and it refuses with LiveDataChanged before writing anything. A
   * replaced object is first copied aside under `kohakku-dr-aside/<tag>/`. Each restored object
   * is hashed as it is sent and carries its sha256 in its metadata; then every key is checked.
   */
  async function restoreObjects(input: {
    backupId: string;
    recoveryId: string;
    maxOverwrites?: number;
  }): Promise<ObjectRestoreReport> {
    const maxOverwrites = input.maxOverwrites ?? 0;
    if (!Number.isInteger(maxOverwrites) || maxOverwrites < 0)
      throw fail(ErrorType.InvalidInput, `maxOverwrites must be a whole number ≥ 0, got ${maxOverwrites}`);
    if (!input.recoveryId) throw fail(ErrorType.InvalidInput, 'a restore needs a recoveryId');
    const plan = await createSpool<PlannedCopy>(
      path.join(config.workDir, 'restore'),
      shortTag(input.recoveryId),
    );
    try {
      // First every key is compared; nothing is written before the count of differing ones is known.
      const { entries, counts } = wanted(await indexOf(input.backupId), completedBriefs());
      /** Keys whose ETag now is not the index's (see REMEMBERED_ETAGS): what it is expected to be. */
      const expectedETag = new Map<string, string>();
      const remember = (key: string, etag: string) => {
        if (expectedETag.size < REMEMBERED_ETAGS) expectedETag.set(key, etag);
      };
      let toCopy = 0;
      let differing = 0;
      const differingKeys: string[] = [];
      const inBackup = await indexSize(input.backupId);
      const progress = { stage: 'comparing the bucket with the backup', inBackup };
      await compareWithBucket(entries, progress, async (e, c) => {
        if (c.state === 'same') {
          if (c.etag !== e.etag) remember(e.key, c.etag);
          return;
        }
        if (c.state === 'differs') {
          differing++;
          if (differingKeys.length < 20) differingKeys.push(e.key);
        }
        toCopy++;
        await plan.write({ e, c });
      });
      await plan.close();
      if (differing > maxOverwrites) {
        throw fail(
          ErrorType.LiveDataChanged,
          `${differing} object(s) in bucket ${bucket} differ from backup ${input.backupId} now, but ` +
            `${maxOverwrites} were approved to be replaced (e.g. ${differingKeys.slice(0, 3).join(', ')}): ` +
            'the bucket changed after the approval. Plan the restore again and approve what it shows.',
          { differing, approved: maxOverwrites, keys: differingKeys },
        );
      }
      if (!(await s3.bucketExists(bucket))) await s3.makeBucket(bucket, config.s3.region);
      const asidePrefix = `kohakku-dr-aside/${shortTag(input.recoveryId)}/`;
      let copied = 0;
      let movedAside = 0;
      let concurrency = Math.min(INITIAL_TRANSFERS, config.transferConcurrency);
      await withHeartbeats(
        () => ({
          stage: 'restoring objects',
          copied,
          toCopy,
          alreadyPresent: counts.wanted - toCopy,
          concurrency,
          meter: meter(`restoring objects into ${bucket}`, 'objects', copied, toCopy),
        }),
        () =>
          mapAdaptive(
            plan.read(),
            { start: concurrency, max: config.transferConcurrency, onChange: (n) => (concurrency = n) },
            ({ e, c }) =>
              budget.within(
                uploadMemory(Math.max(e.size, c.state === 'differs' ? c.live.size : 0)),
                async () => {
                  if (c.state === 'differs') {
                    await uploadBounded(
                      s3,
                      { bucket, key: asidePrefix + e.key, size: c.live.size },
                      await s3.getObject(bucket, e.key),
                    );
                    movedAside++;
                  }
                  const sent = await putHashed(
                    s3,
                    {
                      bucket,
                      key: e.key,
                      size: e.size,
                      metadata: e.sha256 ? { [SHA256_METADATA]: e.sha256 } : {},
                    },
                    await store.getStream(e.blob),
                    { md5: !e.sha256 }, // a 0.1 entry is checked by its single-part ETag, the md5
                  );
                  const problem = contentProblem(e, sent);
                  if (problem) {
                    // What was there before comes back (from its copy aside); a key that was absent is emptied again.
                    if (c.state === 'differs')
                      await uploadBounded(
                        s3,
                        { bucket, key: e.key, size: c.live.size },
                        await s3.getObject(bucket, asidePrefix + e.key),
                      );
                    else await s3.removeObject(bucket, e.key);
                    throw fail(
                      ErrorType.BackupCorrupt,
                      `backup ${input.backupId}: blob ${e.blob} of ${e.key} is corrupt (${problem}); ` +
                        `verify the set (kohakku-dr verify ${input.backupId}) and restore from another one`,
                    );
                  }
                  if (sent.etag !== e.etag) remember(e.key, sent.etag);
                  copied++;
                  return e.size;
                },
              ),
          ),
      );

      // Then every key once more, against a new listing.
      const again = wanted(await indexOf(input.backupId), completedBriefs()).entries;
      let problemCount = 0;
      const problems: string[] = [];
      let checked = 0;
      await withHeartbeats(
        () => ({
          stage: 'checking the restored bucket',
          checked,
          inBackup,
          meter: meter(`checking ${bucket}`, 'objects', checked, inBackup),
        }),
        () =>
          forEachInOrder(
            joinWithBucket(again, live()),
            { concurrency: config.transferConcurrency },
            async ({ entry: e, live: after }) =>
              (after && after.size === e.size && after.etag === (expectedETag.get(e.key) ?? e.etag)) ||
              // Changed since it was written or compared: judged by content once more.
              (await compare(e, after)).state === 'same',
            ({ entry: e }, ok) => {
              checked++;
              if (ok) return;
              problemCount++;
              if (problems.length < 3) problems.push(e.key);
            },
          ),
      );
      if (problemCount > 0) {
        throw fail(
          ErrorType.RestoreVerificationFailed,
          `${problemCount} object(s) differ from backup ${input.backupId} after restore, e.g. ${problems.join(', ')}: ` +
            'something else writes to the bucket; stop it and run the recovery again',
        );
      }
      return {
        bucket,
        restoredAndVerified: counts.wanted,
        copied,
        alreadyPresent: counts.wanted - toCopy,
        skippedCompletedBriefs: counts.inBackup - counts.wanted,
        movedAside,
        asidePrefix: movedAside ? asidePrefix : undefined,
      };
    } finally {
      await plan.remove();
    }
  }

  function scratchBucket(verifyId: string): string {
    return `kohakku-dr-verify-${shortTag(verifyId, 12)}`;
  }

  /**
   * Restores the backup's objects into a scratch bucket, checking each blob's size and sha256
   * while it streams (a 0.1 entry without sha256: its single-part ETag, the md5), then that every
   * key is there with its size. The scratch bucket is always removed.
   */
  async function verifyObjectBackup(input: {
    backupId: string;
    verifyId: string;
  }): Promise<{ ok: boolean; problems: string[]; objects: number }> {
    const indexKey = objectIndexKey(input.backupId);
    const index = await indexInKeyOrder(store, indexKey);
    if (!index) return { ok: false, problems: [`no object backup ${input.backupId}`], objects: 0 };
    const scratch = scratchBucket(input.verifyId);
    let problemCount = 0;
    const problems: string[] = [];
    const problem = (text: string) => {
      problemCount++;
      if (problems.length < 20) problems.push(text);
    };
    await removeBucket(s3, scratch);
    await s3.makeBucket(scratch, config.s3.region);
    try {
      let done = 0;
      const total = await indexSize(input.backupId);
      await withHeartbeats(
        () => ({
          stage: 'verifying objects',
          done,
          total,
          meter: meter('verifying objects', 'objects', done, total),
        }),
        () =>
          mapAdaptive(
            index,
            { start: config.transferConcurrency, max: config.transferConcurrency },
            async (e) =>
              budget.within(uploadMemory(e.size), async () => {
                try {
                  const sent = await putHashed(
                    s3,
                    { bucket: scratch, key: e.key, size: e.size },
                    await store.getStream(e.blob),
                    { md5: !e.sha256 },
                  );
                  const corrupt = contentProblem(e, sent);
                  if (corrupt) problem(`${e.key}: blob ${e.blob} is corrupt (${corrupt})`);
                } catch (err) {
                  problem(`${e.key}: blob ${e.blob} unreadable (${(err as Error).message})`);
                }
                done++;
                return e.size;
              }),
          ),
      );
      // Every key there with its size: the index read again beside the scratch bucket's listing.
      let objects = 0;
      const again = await indexInKeyOrder(store, indexKey);
      if (!again) throw fail(ErrorType.BackupNotFound, `backup ${input.backupId}'s object index has gone`);
      for await (const { entry: e, live: restored } of joinWithBucket(
        again,
        bucketInKeyOrder(s3, scratch, ['']),
      )) {
        objects++;
        if (!restored) problem(`${e.key} missing after restore`);
        else if (restored.size !== e.size)
          problem(`${e.key}: ${restored.size} bytes after restore, backup says ${e.size}`);
      }
      return { ok: problemCount === 0, problems, objects };
    } finally {
      await removeBucket(s3, scratch);
    }
  }

  async function cleanupObjectVerification(input: { verifyId: string }): Promise<{ removed: boolean }> {
    return { removed: (await removeBucket(s3, scratchBucket(input.verifyId))) !== undefined };
  }

  return { planObjectRestore, restoreObjects, verifyObjectBackup, cleanupObjectVerification };
}
