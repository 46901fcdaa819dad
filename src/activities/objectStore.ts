/**
 * Object-store backup: an incremental mirror of Kohakku's bucket prefixes (briefs/, skills/) in
 * which an object is known by its content (the way back, plan, restore and verification, is
 * objectRestore.ts; createObjectStoreActivities gives both).
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
import { CONTENT_IN_MEMORY_BYTES } from '../infra/backupStore';
import { shortTag } from '../infra/hashing';
import { digesting } from '../infra/s3';
import { objectReader, type ObjectDownload, type ObjectReader } from '../infra/s3Reads';
import { mapAdaptive, memoryBudget, TRANSFER_MEMORY_BYTES } from '../infra/adaptive';
import { forEachJsonArrayEntry, openJsonArray, putJsonArray } from '../infra/jsonArrays';
import { uploadMemory } from '../infra/s3Upload';
import { meter } from '../domain/meter';
import { withHeartbeats } from './heartbeat';
import {
  INITIAL_TRANSFERS,
  isNotFound,
  listingPrefixes,
  s3KeyOrder,
  unquote,
  type LiveObject,
  type ObjectStoreDeps,
} from './objectKit';
import {
  createObjectRestoreActivities,
  type ObjectRestorePlan,
  type ObjectRestoreReport,
} from './objectRestore';

export { BLOB_PREFIX, objectIndexKey, s3KeyOrder };
export type {
  ObjectBackupManifest,
  ObjectIndexEntry,
  ObjectRestorePlan,
  ObjectRestoreReport,
  ObjectStoreDeps,
};

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

/** Whether a key lies in a partition's range. */
function inRange(key: string, p: MirrorPartition): boolean {
  return (
    (p.after === undefined || s3KeyOrder(key, p.after) > 0) &&
    (p.through === undefined || s3KeyOrder(key, p.through) <= 0)
  );
}

/** A mirror is split into at most this many partitions (countObjectsToMirror). */
const MAX_MIRROR_PARTITIONS = 64;

/** A mirror writes its progress down at most this often, so a retry resumes from there. */
const CHECKPOINT_EVERY_MS = 5000;

export function createObjectStoreActivities({
  config,
  store,
  s3,
  objectReader: reader,
  transferMemory,
}: ObjectStoreDeps) {
  const bucket = config.kohakkuBucket;
  const budget = transferMemory ?? memoryBudget(TRANSFER_MEMORY_BYTES);
  /** The mirror's downloads (made when first needed: most activity sets built in tests never mirror). */
  let ownReader: ObjectReader | undefined;
  const downloads = () => reader ?? (ownReader ??= objectReader(config.s3));

  /** The backed-up prefixes in S3's key order, so their listings one after another are in that order too. */
  const prefixesInOrder = listingPrefixes(config.backupPrefixes);

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
      let download: ObjectDownload;
      try {
        download = await downloads().get(bucket, o.key, { size: o.size });
      } catch (err) {
        if (isNotFound(err)) return undefined; // deleted since the listing: not in the bucket any more
        throw err;
      }
      const source = download.body;
      const etag = download.etag ?? o.etag;
      if ((download.size ?? o.size) <= CONTENT_IN_MEMORY_BYTES) {
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
      const { key: blob, written } = await store
        .putContent({
          stream: digest,
          keyOf: () => contentBlobKey(digest.digest().sha256, digest.digest().bytes),
          alreadyStored: (key) => stored.has(key) && reusable(key),
          spoolDir,
        })
        .catch((err: unknown) => {
          source.destroy(); // the store failed: the download's connection is not left waiting
          throw err;
        });
      stored.add(blob);
      if (written) blobsWritten++;
      const { sha256, bytes: size } = digest.digest();
      return { key: o.key, size, etag, sha256, blob };
    };

    try {
      const outcome = await withHeartbeats(
        () => ({
          stage: 'mirroring',
          copied,
          toCopy: todo.length,
          bytes,
          alreadyMirrored,
          concurrency,
          meter: meter(`mirroring ${bucket}`, 'objects', copied, todo.length),
        }),
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

  return {
    mirrorObjects,
    mirrorObjectPartition,
    finishObjectMirror,
    countObjectsToMirror,
    ...createObjectRestoreActivities({ config, store, s3, transferMemory: budget }),
  };
}
