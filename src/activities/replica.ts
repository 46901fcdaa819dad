/**
 * The second copy (3-2-1): a verified backup set copied from the primary store to the replica,
 * incrementally — a key the replica already holds with the same size is not copied again; the
 * mirror's blobs are content-addressed (`sha256-<hex>-<size>`), so same key and size is the same
 * content — and then checked against the set's own manifests (every dump's and the RDB's sha256,
 * every blob copied now hashed back from the replica). The replica's set manifest is written
 * last, so a half-copied set is never taken for a complete one; a retry after a crash copies only
 * what is still missing. The object index is read a batch of blobs at a time, so a copy holds
 * one batch whatever the number of objects.
 */
import { ErrorType, fail } from '../domain/errors';
import {
  BLOB_GC_CANDIDATES_KEY,
  MANIFEST,
  objectIndexKey,
  objectProgressPrefix,
  objectsManifestKey,
  postgresManifestKey,
  redisManifestKey,
  setManifestKey,
} from '../domain/layout';
import type {
  BackupSetManifest,
  ObjectBackupManifest,
  ObjectIndexEntry,
  PostgresManifest,
  RedisBackupManifest,
} from '../domain/manifests';
import type { BackupStore, StoredObject } from '../infra/backupStore';
import { memoryBudget, TRANSFER_MEMORY_BYTES, type MemoryBudget } from '../infra/adaptive';
import { openJsonArray } from '../infra/jsonArrays';
import { digesting, hashStream, mapLimit, unlessStreamFails } from '../infra/s3';
import { uploadMemory } from '../infra/s3Upload';
import type { BackupStores } from '../infra/stores';
import { meter } from '../domain/meter';
import { withHeartbeats } from './heartbeat';

export interface ReplicaReport {
  backupId: string;
  /** Why nothing was copied (no replica configured), when so. */
  skipped?: string;
  replica?: string;
  /** Keys copied now, and the bytes. */
  copied: number;
  bytesCopied: number;
  /** Keys the replica already had (blobs of earlier sets, or an earlier attempt's copies). */
  alreadyPresent: number;
  /** Of those, the mirror's blobs: copied now, and already there from earlier sets. */
  blobsCopied: number;
  blobsAlreadyPresent: number;
  /** What the check against the manifests covered. */
  checked: { dumps: number; rdb: number; blobsHashed: number; blobsSized: number };
}

/** The replica's record of where its copy came from, beside the set's own fields. */
export interface ReplicaRecord {
  copiedFrom: string;
  copiedAt: string;
  checked: ReplicaReport['checked'];
}

/** Blobs copied and checked per batch of the index (what a replica copy holds in memory at a time). */
const REPLICA_BATCH_BLOBS = 10_000;

const blobSha256 = (key: string) => /^objects\/blobs\/sha256-([0-9a-f]{64})-\d+$/.exec(key)?.[1];

export function createReplicaActivities({
  stores,
  config,
  transferMemory,
}: {
  stores: BackupStores;
  config: { transferConcurrency: number };
  /** The worker's transfer memory, shared with its other transfers (one of its own when not given). */
  transferMemory?: MemoryBudget;
}) {
  const budget = transferMemory ?? memoryBudget(TRANSFER_MEMORY_BYTES);
  /** Copies one key unless the replica has it at that size (or `always`); returns whether it copied. */
  async function copyKey(
    from: BackupStore,
    to: BackupStore,
    object: StoredObject,
    always = false,
  ): Promise<boolean> {
    const present = always ? undefined : await to.stat(object.key);
    if (present && present.size === object.size) return false;
    const source = await from.getStream(object.key);
    const digest = digesting(source);
    await unlessStreamFails(digest, to.putStream(object.key, digest, object.size));
    const sent = digest.digest();
    if (sent.bytes !== object.size)
      throw new Error(
        `${object.key}: read ${sent.bytes} bytes from ${from.location}, expected ${object.size}`,
      );
    return true;
  }

  /**
   * Copies a verified set to the replica and checks the copy. Returns `skipped` when no replica
   * is configured. Idempotent: a second call copies nothing and checks again.
   */
  async function replicateBackupSet(input: { backupId: string }): Promise<ReplicaReport> {
    const report: ReplicaReport = {
      backupId: input.backupId,
      copied: 0,
      bytesCopied: 0,
      alreadyPresent: 0,
      blobsCopied: 0,
      blobsAlreadyPresent: 0,
      checked: { dumps: 0, rdb: 0, blobsHashed: 0, blobsSized: 0 },
    };
    const { primary, replica } = stores;
    if (!replica) return { ...report, skipped: 'no replica store is configured (BACKUP_REPLICA=none)' };
    report.replica = replica.location;
    const set = await primary.getJson<BackupSetManifest>(setManifestKey(input.backupId));
    if (!set)
      throw fail(ErrorType.BackupNotFound, `backup set ${input.backupId} not found in ${primary.location}`);
    if (!set.verification?.ok)
      throw fail(
        ErrorType.VerificationFailed,
        `backup set ${input.backupId} is not verified: only verified sets are copied to the replica`,
      );
    const pg = await primary.getJson<PostgresManifest>(postgresManifestKey(input.backupId));
    const redis = await primary.getJson<RedisBackupManifest>(redisManifestKey(input.backupId));
    const index = await openJsonArray<ObjectIndexEntry>(primary, objectIndexKey(input.backupId));
    if (!pg || !redis || !index)
      throw fail(
        ErrorType.BackupCorrupt,
        `backup set ${input.backupId} in ${primary.location} lacks a part manifest`,
      );
    const entriesInIndex = (
      await primary.getJson<ObjectBackupManifest>(objectsManifestKey(input.backupId)).catch(() => undefined)
    )?.objects;

    await replica.ensureReady();
    // The set's own files (manifests last within each part), then the blobs its index names.
    const own: StoredObject[] = [];
    for (const part of ['postgres', 'redis', 'objects']) {
      const files = (await primary.list(`${part}/${input.backupId}/`)).filter(
        (o) => !o.key.startsWith(objectProgressPrefix(input.backupId)),
      );
      own.push(
        ...files.filter((o) => !o.key.endsWith(`/${MANIFEST}`)),
        ...files.filter((o) => o.key.endsWith(`/${MANIFEST}`)),
      );
    }
    // Blobs the replica's retention has marked as unreferenced may be swept before this copy's
    // index names them: copied again (which restarts their grace), never counted as present.
    const marked = (await replica.getJson<Record<string, string>>(BLOB_GC_CANDIDATES_KEY)) ?? {};
    let entriesRead = 0;
    const progress = () => ({
      phase: 'copying to the replica',
      ...report,
      entriesRead,
      entriesInIndex,
      ownFiles: own.length,
      meter: meter(`copying ${input.backupId} to the replica`, 'objects', entriesRead, entriesInIndex),
    });
    const mismatch: string[] = [];
    const bad: string[] = [];
    /** The copy's bytes read back from the replica against what the manifests say. */
    const expect = async (key: string, size: number, sha256: string | undefined) => {
      const got = await hashStream(await replica.getStream(key));
      if (got.bytes !== size || (sha256 && got.sha256 !== sha256)) {
        bad.push(key);
        mismatch.push(
          `${key}: ${got.bytes} B sha256 ${got.sha256.slice(0, 12)}…, manifest ${size} B ${sha256?.slice(0, 12) ?? ''}…`,
        );
      }
    };
    /** The bad copies go, so that the retry this error causes copies them again. */
    const failOnMismatch = async () => {
      if (mismatch.length === 0) return;
      await replica.removeKeys(bad);
      throw new Error(
        `the replica copy of ${input.backupId} in ${replica.location} differs from its manifest: ${mismatch.slice(0, 3).join('; ')}${mismatch.length > 3 ? ` (+${mismatch.length - 3})` : ''}`,
      );
    };

    /**
     * One batch of the index's blobs: copied (streamed store to store; an S3 replica holds up to a
     * part per copy, infra/s3Upload.ts), then checked — a blob copied now hashed back, one already
     * there by its size (it was hashed when it was copied).
     */
    const replicateBlobs = async (blobs: StoredObject[]) => {
      const copiedBlobs = new Set<string>();
      await mapLimit(blobs, config.transferConcurrency, async (blob) => {
        const copied = await budget.within(uploadMemory(blob.size), () =>
          copyKey(primary, replica, blob, marked[blob.key] !== undefined),
        );
        if (copied) {
          copiedBlobs.add(blob.key);
          report.copied++;
          report.blobsCopied++;
          report.bytesCopied += blob.size;
        } else {
          report.alreadyPresent++;
          report.blobsAlreadyPresent++;
        }
      });
      await mapLimit(blobs, config.transferConcurrency, async (blob) => {
        if (copiedBlobs.has(blob.key)) {
          await expect(blob.key, blob.size, blobSha256(blob.key));
          report.checked.blobsHashed++;
        } else {
          const stat = await replica.stat(blob.key);
          if (stat?.size !== blob.size) {
            bad.push(blob.key);
            mismatch.push(`${blob.key}: ${stat ? `${stat.size} B` : 'missing'}`);
          }
          report.checked.blobsSized++;
        }
      });
      await failOnMismatch();
    };

    await withHeartbeats(progress, async () => {
      // The index is read a batch at a time (its blobs, each once per batch), so memory stays
      // bounded whatever the number of objects. A blob two batches name (the same content under
      // keys far apart) is copied once and found present, by size, the second time.
      let batch = new Map<string, StoredObject>();
      for await (const e of index) {
        entriesRead++;
        batch.set(e.blob, { key: e.blob, size: e.size });
        if (batch.size >= REPLICA_BATCH_BLOBS) {
          await replicateBlobs([...batch.values()]);
          batch = new Map();
        }
      }
      if (batch.size > 0) await replicateBlobs([...batch.values()]);

      for (const object of own) {
        if (await copyKey(primary, replica, object)) {
          report.copied++;
          report.bytesCopied += object.size;
        } else report.alreadyPresent++;
      }
      // The set's own dumps and RDB, read back against the manifests.
      for (const d of pg.databases) {
        await expect(d.key, d.size, d.sha256);
        report.checked.dumps++;
      }
      await expect(redis.key, redis.size, redis.sha256);
      report.checked.rdb++;
      await failOnMismatch();
    });
    const record: ReplicaRecord = {
      copiedFrom: primary.location,
      copiedAt: new Date().toISOString(),
      checked: report.checked,
    };
    await replica.putJson(setManifestKey(input.backupId), { ...set, replica: record });
    return report;
  }

  return { replicateBackupSet };
}
