/**
 * Object-store backup and restore: an incremental mirror of Kohakku's bucket prefixes (briefs/,
 * skills/) in which an object is known by its content.
 *
 * An ETag is no content hash: the same bytes uploaded in one PUT and in parts have different
 * ETags, and a restore's upload need not split an object as the original did. So the mirror
 * hashes each object (sha256) while it streams it from the bucket, once, stores it as the blob
 * `objects/blobs/sha256-<hex>-<size>`, and each backup keeps an index (key → size, ETag, sha256,
 * blob). A live object is the indexed one when size and ETag match, differs when the sizes
 * differ, and is otherwise compared by content: the sha256 kohakku-dr records in the metadata of
 * every object it restores (one HEAD), or a download hashed. An object already mirrored (same key,
 * size and ETag as in the previous backup's index) is not read again; a mirror or a restore
 * killed half-way resumes, re-reading at most what was in flight. An object up to 1 MiB is read
 * into memory, hashed as it arrives and stored whole (BackupStore.putBytes); a bigger one streams
 * straight into the store while it is hashed (BackupStore.putContent: no local copy, no second
 * write), so memory stays bounded whatever the object sizes; how many run at once adapts to what the servers
 * sustain (infra/adaptive.ts). No blob is listed: the index says which exist. 0.1 indexes
 * (ETag-keyed blobs, no sha256) stay restorable.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import type * as Minio from 'minio';
import type { Config } from '../config';
import { BACKUP_ID_PATTERN } from '../domain/backupIds';
import {
  BLOB_PREFIX,
  contentBlobKey,
  objectIndexKey,
  objectPartitionKey,
  objectPartitionsPrefix,
  objectProgressPrefix,
  BLOB_GC_CANDIDATES_KEY,
  objectsManifestKey,
} from '../domain/layout';
import type { ObjectBackupManifest, ObjectIndexEntry } from '../domain/manifests';
import { ErrorType, fail } from '../domain/errors';
import { CONTENT_IN_MEMORY_BYTES, type BackupStore } from '../infra/backupStore';
import { queryController } from '../infra/database';
import { shortTag } from '../infra/hashing';
import {
  digesting,
  hashObject,
  responseSize,
  mapLimit,
  putHashed,
  recordedSha256,
  removeBucket,
  responseETag,
  SHA256_METADATA,
  type ContentDigest,
} from '../infra/s3';
import { mapAdaptive, memoryBudget, TRANSFER_MEMORY_BYTES, type MemoryBudget } from '../infra/adaptive';
import { forEachJsonArrayEntry, openJsonArray, putJsonArray, readJsonArray } from '../infra/jsonArrays';
import { uploadBounded, uploadMemory } from '../infra/s3Upload';
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

export interface ObjectStoreDeps {
  config: Config;
  store: BackupStore;
  s3: Minio.Client;
  /** The worker's transfer memory, shared with its other transfers (one of its own when not given). */
  transferMemory?: MemoryBudget;
}

export { BLOB_PREFIX, objectIndexKey };
export type { ObjectBackupManifest, ObjectIndexEntry };

/**
 * One of `of` consecutive ranges of a bucket's keys (in S3's order), mirrored by one activity:
 * the keys after `after` (from the first when absent) up to and including `through` (to the last
 * when absent). countObjectsToMirror chooses the bounds; each partition lists only its range.
 */
export interface MirrorPartition {
  index: number;
  of: number;
  after?: string;
  through?: string;
}

/** What a mirror (or one partition of it) found and stored. */
interface MirrorPart {
  entries: ObjectIndexEntry[];
  copied: number;
  alreadyMirrored: number;
  blobsWritten: number;
}

/**
 * A finished partition's file: its summary, its entries in a JSON array beside it (written
 * first: the summary marks the partition done). 0.3.2 kept the entries inline.
 */
type StoredPartition = MirrorPartSummary & ({ entriesKey: string } | { entries: ObjectIndexEntry[] });

/** How a mirror is split (countObjectsToMirror): `ranges` cover every key once, in order. */
export interface MirrorSplit {
  objects: number;
  partitions: number;
  ranges: MirrorPartition[];
}

export interface MirrorPartSummary {
  objects: number;
  bytes: number;
  copied: number;
  alreadyMirrored: number;
  blobsWritten: number;
}

function summaryOnly(s: MirrorPartSummary): MirrorPartSummary {
  const { objects, bytes, copied, alreadyMirrored, blobsWritten } = s;
  return { objects, bytes, copied, alreadyMirrored, blobsWritten };
}

function summaryOf(
  part: Pick<MirrorPart, 'entries' | 'copied' | 'alreadyMirrored' | 'blobsWritten'>,
): MirrorPartSummary {
  return {
    objects: part.entries.length,
    bytes: part.entries.reduce((n, e) => n + e.size, 0),
    copied: part.copied,
    alreadyMirrored: part.alreadyMirrored,
    blobsWritten: part.blobsWritten,
  };
}

/** S3's key order: by the keys' UTF-8 bytes. */
export function s3KeyOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** Whether a key lies in a partition's range. */
function inRange(key: string, p: MirrorPartition): boolean {
  return (
    (p.after === undefined || s3KeyOrder(key, p.after) > 0) &&
    (p.through === undefined || s3KeyOrder(key, p.through) <= 0)
  );
}

/** What a bucket listing says of an object. */
interface LiveObject {
  size: number;
  etag: string;
}

/** How a live object stands against an index entry. */
type Comparison =
  { state: 'absent' } | { state: 'same'; etag: string } | { state: 'differs'; live: LiveObject };

/** Transfers at once a mirror or restore starts with, before it adapts (src/infra/adaptive.ts). */
const INITIAL_TRANSFERS = 8;

/** A mirror is split into at most this many partitions (countObjectsToMirror). */
const MAX_MIRROR_PARTITIONS = 64;

/** A mirror writes its progress down at most this often, so a retry resumes from there. */
const CHECKPOINT_EVERY_MS = 5000;

const unquote = (etag: string | undefined) => (etag ?? '').replace(/"/g, '');

function isNotFound(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === 'NotFound' || code === 'NoSuchKey';
}

/** Whether bytes that went through `digest` are the content an index entry describes. */
function contentProblem(e: ObjectIndexEntry, digest: ContentDigest): string | undefined {
  if (digest.bytes !== e.size) return `${digest.bytes} bytes, the index says ${e.size}`;
  if (e.sha256)
    return digest.sha256 === e.sha256 ? undefined : `sha256 ${digest.sha256}, the index says ${e.sha256}`;
  // A 0.1 entry has no sha256: a single-part ETag is the content's md5; a multipart one proves nothing.
  if (!e.etag.includes('-') && digest.md5 !== e.etag)
    return `md5 ${digest.md5}, the index's ETag is ${e.etag}`;
  return undefined;
}

export function createObjectStoreActivities({ config, store, s3, transferMemory }: ObjectStoreDeps) {
  const bucket = config.kohakkuBucket;
  const budget = transferMemory ?? memoryBudget(TRANSFER_MEMORY_BYTES);

  /** The backed-up prefixes in S3's key order, so their listings one after another are in that order too. */
  const prefixesInOrder = [...config.backupPrefixes].sort(s3KeyOrder);

  /**
   * The bucket's objects under the backed-up prefixes, in S3's key order; with a partition, only
   * its range is listed (from `after` on, stopping past `through`).
   */
  async function listSource(partition?: MirrorPartition): Promise<({ key: string } & LiveObject)[]> {
    const out: ({ key: string } & LiveObject)[] = [];
    for (const prefix of prefixesInOrder) {
      // A prefix wholly before the range or wholly after it is not listed at all.
      if (partition?.through !== undefined && s3KeyOrder(prefix, partition.through) > 0) break;
      const startAfter =
        partition?.after !== undefined && s3KeyOrder(partition.after, prefix) >= 0 ? partition.after : '';
      for await (const item of s3.listObjectsV2(bucket, prefix, true, startAfter)) {
        const o = item as { name?: string; size?: number; etag?: string };
        if (!o.name) continue;
        if (partition && !inRange(o.name, partition)) {
          if (partition.through !== undefined && s3KeyOrder(o.name, partition.through) > 0) break;
          continue;
        }
        out.push({ key: o.name, size: o.size ?? 0, etag: unquote(o.etag) });
      }
    }
    return out.sort((a, b) => s3KeyOrder(a.key, b.key));
  }

  /**
   * The newest other backup's index entries that carry a sha256, by ETag and size — for a
   * partition only those in its range, so partitions on one worker do not each hold the whole index.
   */
  async function knownContent(
    backupId: string,
    backupIds: string[],
    partition?: MirrorPartition,
  ): Promise<Map<string, ObjectIndexEntry>> {
    const ids = backupIds
      .filter((id) => id !== backupId && BACKUP_ID_PATTERN.test(id))
      .sort()
      .reverse();
    for (const id of ids) {
      // Streamed: only the entries in range are held, not the whole index.
      const hashed = new Map<string, ObjectIndexEntry>();
      await forEachJsonArrayEntry<ObjectIndexEntry>(store, objectIndexKey(id), (e) => {
        if (e.sha256 && (!partition || inRange(e.key, partition))) hashed.set(`${e.etag}/${e.size}`, e);
      });
      if (hashed.size > 0) return hashed;
    }
    return new Map();
  }

  function requireBackupId(backupId: string): void {
    if (!BACKUP_ID_PATTERN.test(backupId))
      throw fail(ErrorType.InvalidInput, `"${backupId}" is not a backup id`);
  }

  /**
   * Mirrors the configured prefixes into the backup store, hashing each object as it streams
   * past. Idempotent per backup id; a retry resumes from the last checkpoint.
   */
  async function mirrorObjects(input: { backupId: string }): Promise<ObjectBackupManifest> {
    requireBackupId(input.backupId);
    const existing = await store.getJson<ObjectBackupManifest>(objectsManifestKey(input.backupId));
    if (existing) return existing;
    const part = await mirrorPart(input.backupId);
    return writeObjectManifest(input.backupId, part.entries, part);
  }

  /**
   * One partition of a mirror too big for one activity (objectStoreBackup fans them out, and any
   * worker on the task queue may take any of them): the objects in its key range, stored like
   * mirrorObjects stores them, their entries kept in a partition file until
   * finishObjectMirror merges the partitions into the backup's index. Idempotent; a retry
   * resumes from the partition's own checkpoints.
   */
  async function mirrorObjectPartition(input: {
    backupId: string;
    partition: MirrorPartition;
  }): Promise<MirrorPartSummary> {
    requireBackupId(input.backupId);
    const { index, of, after, through } = input.partition ?? {};
    if (
      !Number.isInteger(of) ||
      of! < 1 ||
      !Number.isInteger(index) ||
      index! < 0 ||
      index! >= of! ||
      (after !== undefined && typeof after !== 'string') ||
      (through !== undefined && typeof through !== 'string')
    )
      throw fail(
        ErrorType.InvalidInput,
        `partition must be {index, of, after?, through?} with 0 ≤ index < of, got ${JSON.stringify(input.partition)}`,
      );
    const key = objectPartitionKey(input.backupId, index!, of!);
    const done = await store.getJson<StoredPartition>(key);
    if (done) return 'entries' in done ? summaryOf(done) : summaryOnly(done);
    if (await store.getJson<ObjectBackupManifest>(objectsManifestKey(input.backupId)))
      throw fail(ErrorType.InvalidInput, `backup ${input.backupId}'s object mirror is already complete`);
    const part = await mirrorPart(input.backupId, input.partition);
    const entriesKey = key.replace(/\.json$/, '.entries.json');
    await putJsonArray(store, { key: entriesKey, workDir: path.join(config.workDir, 'index') }, part.entries);
    const summary = summaryOf(part);
    await store.putJson(key, { ...summary, entriesKey } satisfies StoredPartition);
    return summary;
  }

  /** Merges every partition's entries into the backup's index and writes its manifest. Idempotent. */
  async function finishObjectMirror(input: {
    backupId: string;
    partitions: number;
  }): Promise<ObjectBackupManifest> {
    requireBackupId(input.backupId);
    const existing = await store.getJson<ObjectBackupManifest>(objectsManifestKey(input.backupId));
    if (existing) return existing;
    // Partitions are consecutive key ranges, each sorted: one after another they are the index,
    // in order. One partition's entries are in memory at a time.
    const totals = { copied: 0, alreadyMirrored: 0, blobsWritten: 0 };
    async function* entriesOfPartitions(): AsyncGenerator<ObjectIndexEntry> {
      for (let index = 0; index < input.partitions; index++) {
        const missing = () =>
          fail(
            ErrorType.BackupCorrupt,
            `backup ${input.backupId}: partition ${index} of ${input.partitions} of the object mirror is missing`,
          );
        const part = await store.getJson<StoredPartition>(
          objectPartitionKey(input.backupId, index, input.partitions),
        );
        if (!part) throw missing();
        totals.copied += part.copied;
        totals.alreadyMirrored += part.alreadyMirrored;
        totals.blobsWritten += part.blobsWritten;
        if ('entries' in part) yield* part.entries;
        else {
          const entries = await openJsonArray<ObjectIndexEntry>(store, part.entriesKey);
          if (!entries) throw missing();
          yield* entries;
        }
      }
    }
    const manifest = await writeObjectManifest(input.backupId, entriesOfPartitions(), totals);
    await store.removePrefix(objectPartitionsPrefix(input.backupId));
    return manifest;
  }

  /**
   * How a mirror of the bucket is split: consecutive key ranges of OBJECT_MIRROR_PARTITION_OBJECTS
   * objects (at most 64 ranges, wider ones for a bigger bucket), so a big bucket is mirrored by
   * many activities, on as many workers as poll the task queue, each listing only its range.
   * Counts a listing, keeping every N-th key as a bound; reads no object.
   */
  async function countObjectsToMirror(input: { backupId: string }): Promise<MirrorSplit> {
    requireBackupId(input.backupId);
    const every = config.mirrorPartitionObjects;
    let objects = 0;
    const bounds: string[] = [];
    for (const prefix of prefixesInOrder)
      for await (const item of s3.listObjectsV2(bucket, prefix, true)) {
        const name = (item as { name?: string }).name;
        if (!name) continue;
        if (++objects % every === 0) bounds.push(name);
      }
    // The last bound would end the last range exactly at the last key: the last range is open.
    if (objects % every === 0) bounds.pop();
    // More than 64 ranges: every k-th bound, k ranges in one.
    const k = Math.ceil((bounds.length + 1) / MAX_MIRROR_PARTITIONS);
    const kept = bounds.filter((_, i) => (i + 1) % k === 0);
    const partitions = kept.length + 1;
    return {
      objects,
      partitions,
      ranges: Array.from({ length: partitions }, (_, index) => ({
        index,
        of: partitions,
        ...(index > 0 ? { after: kept[index - 1]! } : {}),
        ...(index < partitions - 1 ? { through: kept[index]! } : {}),
      })),
    };
  }

  /**
   * Writes the index from `entries` (in key order), then the manifest that makes the mirror
   * complete; `totals` are read once the entries are all written.
   */
  async function writeObjectManifest(
    backupId: string,
    entries: Iterable<ObjectIndexEntry> | AsyncIterable<ObjectIndexEntry>,
    totals: Pick<MirrorPart, 'copied' | 'alreadyMirrored' | 'blobsWritten'>,
  ): Promise<ObjectBackupManifest> {
    let bytes = 0;
    async function* counted() {
      for await (const e of entries) {
        bytes += e.size;
        yield e;
      }
    }
    const objects = await putJsonArray(
      store,
      { key: objectIndexKey(backupId), workDir: path.join(config.workDir, 'index') },
      counted(),
    );
    const manifest: ObjectBackupManifest = {
      kind: 'objects',
      formatVersion: 1,
      id: backupId,
      createdAt: new Date().toISOString(),
      bucket,
      prefixes: config.backupPrefixes,
      objects,
      bytes,
      copied: totals.copied,
      alreadyMirrored: totals.alreadyMirrored,
      blobsWritten: totals.blobsWritten,
      indexKey: objectIndexKey(backupId),
    };
    await store.putJson(objectsManifestKey(backupId), manifest);
    await store.removePrefix(objectProgressPrefix(backupId));
    return manifest;
  }

  /** The mirror itself, of the whole bucket or one partition: its entries, sorted by key. */
  async function mirrorPart(backupId: string, partition?: MirrorPartition): Promise<MirrorPart> {
    await store.ensureReady();
    const listing = await listSource(partition);
    // A blob retention has marked as unreferenced may be swept before this mirror's index names
    // it: such content is stored again (which restarts its grace) rather than reused. Any other
    // blob an index names is there: retention sweeps only blobs no kept index names, and only
    // after they stayed unreferenced for the grace period. So no blob is listed.
    const marked = (await store.getJson<Record<string, string>>(BLOB_GC_CANDIDATES_KEY)) ?? {};
    const reusable = (blob: string) => marked[blob] === undefined;
    const previous = await knownContent(backupId, await store.listChildren('objects/'), partition);
    // Entries this backup (this partition) already hashed and stored before a retry.
    const progressPrefix =
      objectProgressPrefix(backupId) + (partition ? `${partition.index}-of-${partition.of}/` : '');
    const checkpointed = new Map<string, ObjectIndexEntry>();
    const checkpoints = (await store.list(progressPrefix))
      .map((o) => o.key)
      .filter((k) => partition || !k.slice(progressPrefix.length).includes('/'))
      .sort();
    for (const key of checkpoints) {
      for (const e of (await store.getJson<ObjectIndexEntry[]>(key)) ?? []) checkpointed.set(e.key, e);
    }

    // Blobs known to be in the store: those the newest index and this backup's checkpoints name,
    // and what this mirror writes.
    const stored = new Set<string>([...previous.values(), ...checkpointed.values()].map((e) => e.blob));
    const done = new Map<string, ObjectIndexEntry>();
    const todo: ({ key: string } & LiveObject)[] = [];
    let alreadyMirrored = 0;
    for (const o of listing) {
      const mine = checkpointed.get(o.key);
      const known = previous.get(`${o.etag}/${o.size}`);
      if (mine && mine.etag === o.etag && mine.size === o.size && reusable(mine.blob)) done.set(o.key, mine);
      else if (known && reusable(known.blob)) {
        done.set(o.key, { key: o.key, size: o.size, etag: o.etag, sha256: known.sha256, blob: known.blob });
        alreadyMirrored++;
      } else todo.push(o);
    }

    const spoolDir = path.join(
      config.workDir,
      'mirror',
      shortTag(backupId) + (partition ? `-${partition.index}` : ''),
    );
    let copied = 0;
    let bytes = 0;
    let blobsWritten = 0;
    let concurrency = Math.min(INITIAL_TRANSFERS, config.transferConcurrency);
    let fresh: ObjectIndexEntry[] = [];
    let lastCheckpoint = Date.now();
    let checkpointing = false;
    let checkpointSeq = checkpoints.length;
    const checkpoint = async () => {
      if (checkpointing || fresh.length === 0) return;
      checkpointing = true;
      const batch = fresh;
      fresh = [];
      try {
        await store.putJson(`${progressPrefix}${String(checkpointSeq++).padStart(6, '0')}.json`, batch);
        lastCheckpoint = Date.now();
      } finally {
        checkpointing = false;
      }
    };

    /**
     * One read of the object, hashed as it streams straight into the store; the blob's name (its
     * content) is known once the last byte has passed. A small object is read into memory and
     * hashed as its chunks arrive, then stored whole (no stream per object: a mirror of many
     * small objects is bound by per-object work).
     */
    const transfer = async (o: { key: string } & LiveObject): Promise<ObjectIndexEntry | undefined> => {
      let source: Readable;
      try {
        source = await s3.getObject(bucket, o.key);
      } catch (err) {
        if (isNotFound(err)) return undefined; // deleted since the listing: not in the bucket any more
        throw err;
      }
      const etag = responseETag(source) ?? o.etag;
      if ((responseSize(source) ?? o.size) <= CONTENT_IN_MEMORY_BYTES) {
        const hash = createHash('sha256');
        const chunks: Buffer[] = [];
        let size = 0;
        for await (const chunk of source as AsyncIterable<Buffer>) {
          hash.update(chunk);
          chunks.push(chunk);
          size += chunk.length;
        }
        const sha256 = hash.digest('hex');
        const blob = contentBlobKey(sha256, size);
        if (!(stored.has(blob) && reusable(blob))) {
          await store.putBytes(blob, chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
          blobsWritten++;
        }
        stored.add(blob);
        return { key: o.key, size, etag, sha256, blob };
      }
      // The blob's name needs the sha256 only (an md5 is for checking 0.1 entries).
      const digest = digesting(source, { md5: false });
      const { key: blob, written } = await store.putContent({
        stream: digest,
        keyOf: () => contentBlobKey(digest.digest().sha256, digest.digest().bytes),
        alreadyStored: (key) => stored.has(key) && reusable(key),
        spoolDir,
      });
      stored.add(blob);
      if (written) blobsWritten++;
      const { sha256, bytes: size } = digest.digest();
      return { key: o.key, size, etag, sha256, blob };
    };

    try {
      const outcome = await withHeartbeats(
        () => ({ stage: 'mirroring', copied, toCopy: todo.length, bytes, alreadyMirrored, concurrency }),
        () =>
          mapAdaptive(
            todo,
            {
              start: concurrency,
              max: config.transferConcurrency,
              onChange: (n) => (concurrency = n),
            },
            async (o) => {
              const entry = await budget.within(uploadMemory(o.size), () => transfer(o));
              if (!entry) return 0;
              copied++;
              bytes += entry.size;
              done.set(entry.key, entry);
              fresh.push(entry);
              if (Date.now() - lastCheckpoint > CHECKPOINT_EVERY_MS) await checkpoint();
              return entry.size;
            },
          ),
      );
      concurrency = outcome.settledAt;
    } finally {
      await fs.rm(spoolDir, { recursive: true, force: true });
    }

    const entries = listing.map((o) => done.get(o.key)).filter((e): e is ObjectIndexEntry => !!e);
    return { entries, copied, alreadyMirrored, blobsWritten };
  }

  async function completedBriefs(): Promise<Set<string>> {
    const rows = await queryController<{ brief_key: string }>(config, config.model.completedBriefsSql);
    return new Set(rows.map((r) => r.brief_key));
  }

  /** The bucket's objects under the backed-up prefixes, by key (none when the bucket is gone). */
  async function currentObjects(): Promise<Map<string, LiveObject>> {
    if (!(await s3.bucketExists(bucket))) return new Map();
    return new Map((await listSource()).map((o) => [o.key, { size: o.size, etag: o.etag }]));
  }

  async function readIndex(backupId: string): Promise<ObjectIndexEntry[]> {
    if (!BACKUP_ID_PATTERN.test(backupId))
      throw fail(ErrorType.InvalidInput, `"${backupId}" is not a backup id`);
    const index = await readJsonArray<ObjectIndexEntry>(store, objectIndexKey(backupId));
    if (!index) throw fail(ErrorType.BackupNotFound, `backup ${backupId} has no object index`);
    return index;
  }

  /** sha256 of a 0.1 entry's blob (its index has none), hashed from the backup store once per blob. */
  const blobHashes = new Map<string, Promise<string>>();
  function expectedSha256(e: ObjectIndexEntry): Promise<string> {
    if (e.sha256) return Promise.resolve(e.sha256);
    let hash = blobHashes.get(e.blob);
    if (!hash) {
      hash = store.getStream(e.blob).then(async (stream) => {
        const digest = digesting(stream);
        digest.resume();
        await new Promise<void>((resolve, reject) => digest.once('end', resolve).once('error', reject));
        return digest.digest().sha256;
      });
      hash.catch(() => blobHashes.delete(e.blob));
      blobHashes.set(e.blob, hash);
    }
    return hash;
  }

  /**
   * Same size and ETag as at backup time: the same object. Another size: different. Otherwise by
   * content: the sha256 recorded on the object when kohakku-dr restored it, or a download hashed.
   */
  async function compare(e: ObjectIndexEntry, live: LiveObject | undefined): Promise<Comparison> {
    if (!live) return { state: 'absent' };
    if (live.size !== e.size) return { state: 'differs', live };
    if (live.etag === e.etag) return { state: 'same', etag: live.etag };
    try {
      const actual =
        (await recordedSha256(s3, bucket, e.key)) ?? (await hashObject(s3, bucket, e.key)).sha256;
      return actual === (await expectedSha256(e))
        ? { state: 'same', etag: live.etag }
        : { state: 'differs', live };
    } catch (err) {
      if (isNotFound(err)) return { state: 'absent' }; // deleted meanwhile
      throw err;
    }
  }

  async function compareAll(
    wanted: ObjectIndexEntry[],
    current: Map<string, LiveObject>,
    stage: string,
  ): Promise<Comparison[]> {
    let compared = 0;
    return withHeartbeats(
      () => ({ stage, compared, total: wanted.length }),
      () =>
        mapLimit(wanted, config.transferConcurrency, async (e) => {
          const c = await compare(e, current.get(e.key));
          compared++;
          return c;
        }),
    );
  }

  /** What restoring backup `backupId` into the bucket would do, changing nothing. */
  async function planObjectRestore(input: { backupId: string }): Promise<ObjectRestorePlan> {
    const index = await readIndex(input.backupId);
    // Planning may happen while Postgres is still lost (full cluster): then no brief is known to be
    // skippable and the counts are upper bounds.
    const skip = await completedBriefs().catch(() => new Set<string>());
    const current = await currentObjects();
    const wanted = index.filter((e) => !skip.has(e.key));
    const comparisons = await compareAll(wanted, current, 'comparing the bucket with the backup');
    const present = comparisons.filter((c) => c.state === 'same').length;
    const overwrite = wanted.filter((_, i) => comparisons[i]!.state === 'differs');
    return {
      bucket,
      bucketExists: await s3.bucketExists(bucket),
      inBackup: index.length,
      skippedCompletedBriefs: index.length - wanted.length,
      alreadyPresent: present,
      toCopy: wanted.length - present,
      wouldOverwrite: overwrite.map((e) => e.key).slice(0, 50),
      overwriteCount: overwrite.length,
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
    const index = await readIndex(input.backupId);
    const skip = await completedBriefs();
    const current = await currentObjects();
    const wanted = index.filter((e) => !skip.has(e.key));
    const comparisons = await compareAll(wanted, current, 'comparing the bucket with the backup');
    const differing = wanted.filter((_, i) => comparisons[i]!.state === 'differs');
    if (differing.length > maxOverwrites) {
      throw fail(
        ErrorType.LiveDataChanged,
        `${differing.length} object(s) in bucket ${bucket} differ from backup ${input.backupId} now, but ` +
          `${maxOverwrites} were approved to be replaced (e.g. ${differing
            .slice(0, 3)
            .map((e) => e.key)
            .join(
              ', ',
            )}): the bucket changed after the approval. Plan the restore again and approve what it shows.`,
        {
          differing: differing.length,
          approved: maxOverwrites,
          keys: differing.slice(0, 20).map((e) => e.key),
        },
      );
    }
    if (!(await s3.bucketExists(bucket))) await s3.makeBucket(bucket, config.s3.region);
    const todo = wanted.map((e, i) => ({ e, c: comparisons[i]! })).filter(({ c }) => c.state !== 'same');
    const asidePrefix = `kohakku-dr-aside/${shortTag(input.recoveryId)}/`;
    /** The ETag each key is expected to have now: what this restore wrote, or what was found the same. */
    const expectedETag = new Map<string, string>();
    wanted.forEach((e, i) => {
      const c = comparisons[i]!;
      if (c.state === 'same') expectedETag.set(e.key, c.etag);
    });
    let copied = 0;
    let movedAside = 0;
    let concurrency = Math.min(INITIAL_TRANSFERS, config.transferConcurrency);
    await withHeartbeats(
      () => ({
        stage: 'restoring objects',
        copied,
        toCopy: todo.length,
        alreadyPresent: wanted.length - todo.length,
        concurrency,
      }),
      () =>
        mapAdaptive(
          todo,
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
                expectedETag.set(e.key, sent.etag);
                copied++;
                return e.size;
              },
            ),
        ),
    );
    const after = await currentObjects();
    const problems: string[] = [];
    await mapLimit(wanted, config.transferConcurrency, async (e) => {
      const live = after.get(e.key);
      if (live && live.size === e.size && live.etag === expectedETag.get(e.key)) return;
      // Changed since it was written or compared: judged by content once more.
      if ((await compare(e, live)).state !== 'same') problems.push(e.key);
    });
    if (problems.length > 0) {
      throw fail(
        ErrorType.RestoreVerificationFailed,
        `${problems.length} object(s) differ from backup ${input.backupId} after restore, e.g. ${problems.slice(0, 3).join(', ')}: ` +
          'something else writes to the bucket; stop it and run the recovery again',
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
   * Restores the backup's objects into a scratch bucket, checking each blob's size and sha256
   * while it streams (a 0.1 entry without sha256: its single-part ETag, the md5), then that every
   * key is there with its size. The scratch bucket is always removed.
   */
  async function verifyObjectBackup(input: {
    backupId: string;
    verifyId: string;
  }): Promise<{ ok: boolean; problems: string[]; objects: number }> {
    const index = await readJsonArray<ObjectIndexEntry>(store, objectIndexKey(input.backupId));
    if (!index) return { ok: false, problems: [`no object backup ${input.backupId}`], objects: 0 };
    const scratch = scratchBucket(input.verifyId);
    const problems: string[] = [];
    await removeBucket(s3, scratch);
    await s3.makeBucket(scratch, config.s3.region);
    try {
      let done = 0;
      await withHeartbeats(
        () => ({ stage: 'verifying objects', done, total: index.length }),
        () =>
          mapLimit(index, config.transferConcurrency, async (e) =>
            budget.within(uploadMemory(e.size), async () => {
              try {
                const sent = await putHashed(
                  s3,
                  { bucket: scratch, key: e.key, size: e.size },
                  await store.getStream(e.blob),
                  { md5: !e.sha256 },
                );
                const problem = contentProblem(e, sent);
                if (problem) problems.push(`${e.key}: blob ${e.blob} is corrupt (${problem})`);
              } catch (err) {
                problems.push(`${e.key}: blob ${e.blob} unreadable (${(err as Error).message})`);
              }
              done++;
            }),
          ),
      );
      const restored = new Map<string, number>();
      for await (const item of s3.listObjectsV2(scratch, '', true)) {
        const o = item as { name: string; size: number };
        restored.set(o.name, o.size);
      }
      for (const e of index) {
        const size = restored.get(e.key);
        if (size === undefined) problems.push(`${e.key} missing after restore`);
        else if (size !== e.size)
          problems.push(`${e.key}: ${size} bytes after restore, backup says ${e.size}`);
      }
      return { ok: problems.length === 0, problems: problems.slice(0, 20), objects: index.length };
    } finally {
      await removeBucket(s3, scratch);
    }
  }

  async function cleanupObjectVerification(input: { verifyId: string }): Promise<{ removed: boolean }> {
    return { removed: (await removeBucket(s3, scratchBucket(input.verifyId))) !== undefined };
  }

  return {
    mirrorObjects,
    mirrorObjectPartition,
    finishObjectMirror,
    countObjectsToMirror,
    verifyObjectBackup,
    cleanupObjectVerification,
    planObjectRestore,
    restoreObjects,
  };
}
