/**
 * Backup sets: one nightly run's Postgres dumps, Redis RDB and object index under one id, with
 * one manifest (`sets/<id>/manifest.json`) that also carries the verification verdict.
 * Retention prunes whole sets by age, but never the newest verified set and never one that a
 * running restore holds a lock on (`locks/<id>/…`) while the lock's lease lasts: a recovery that
 * was terminated without unlocking protects its backup only until its lease runs out. Content
 * blobs no kept backup refers to are removed only after BLOB_GC_GRACE_HOURS unreferenced.
 */
import type { Config } from '../config';
import { ErrorType, fail } from '../domain/errors';
import { backupTime, BACKUP_ID_PATTERN } from '../domain/backupIds';
import {
  BLOB_GC_CANDIDATES_KEY,
  BLOB_GC_GRACE_HOURS,
  BLOB_PREFIX,
  LOCK_PREFIX,
  lockKey,
  objectIndexKey,
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
  Verification,
} from '../domain/manifests';
import type { BackupStore } from '../infra/backupStore';
import { forEachJsonArrayEntry } from '../infra/jsonArrays';
import {
  allBackupIds,
  chooseBackup,
  listBackupSets as listSets,
  readCatalog,
  readSet,
  type BackupChoice,
} from '../infra/catalog';

export interface PruneReport {
  asOf: string;
  retentionDays: number;
  pruned: string[];
  kept: { id: string; reason: string }[];
  blobsRemoved: number;
  /**
   * Blobs no kept backup refers to, left for now: removed by a later prune once unreferenced
   * for BLOB_GC_GRACE_HOURS (a mirror still running may be about to index them).
   */
  blobsInGrace?: number;
  /** Locks whose lease had run out as of `asOf`: ignored (the backup was not kept for them). */
  expiredLocks: { id: string; holder: string; expiredAt: string }[];
  /** Lock files that could not be read: honoured as live locks; remove them once no restore uses the backup. */
  unreadableLocks?: string[];
}

/** A restore's hold on a backup (`locks/<id>/<holder>.json`). */
export interface BackupLock {
  holder: string;
  /** When it was taken or last renewed. */
  at: string;
  /** When the lease runs out; absent in 0.1 locks, which count as expiring LEGACY_LOCK_DAYS after `at`. */
  expiresAt?: string;
}

/** How long a 0.1 lock (no expiresAt) protects its backup. */
export const LEGACY_LOCK_DAYS = 7;
/** The lease when the caller names none. */
export const DEFAULT_LOCK_LEASE_SECONDS = 24 * 3600;
const MAX_LOCK_LEASE_SECONDS = 30 * 86400;

/** When a lock stops protecting its backup (ms since the epoch); NaN when the lock is unreadable. */
export function lockExpiry(lock: Partial<BackupLock> | undefined): number {
  if (lock?.expiresAt !== undefined) return Date.parse(lock.expiresAt);
  return lock?.at ? Date.parse(lock.at) + LEGACY_LOCK_DAYS * 86400_000 : NaN;
}

export function createBackupSetActivities({
  store,
  config,
}: {
  store: BackupStore;
  config: Pick<Config, 'retentionDays'>;
}) {
  /** Writes the set manifest from its three parts' manifests (idempotent). */
  async function writeBackupSet(input: { backupId: string; startedAt: string }): Promise<BackupSetManifest> {
    const existing = await readSet(store, input.backupId);
    if (existing) return existing;
    const pg = await store.getJson<PostgresManifest>(postgresManifestKey(input.backupId));
    const redis = await store.getJson<RedisBackupManifest>(redisManifestKey(input.backupId));
    const objects = await store.getJson<ObjectBackupManifest>(objectsManifestKey(input.backupId));
    if (!pg || !redis || !objects) {
      throw new Error(
        `backup ${input.backupId} is incomplete: postgres ${!!pg}, redis ${!!redis}, objects ${!!objects}`,
      );
    }
    const manifest: BackupSetManifest = {
      kind: 'backup-set',
      formatVersion: 1,
      id: input.backupId,
      createdAt: input.startedAt,
      completedAt: new Date().toISOString(),
      postgres: {
        databases: pg.databases.map((d) => ({
          database: d.database,
          size: d.size,
          sha256: d.sha256,
          tables: d.tables.length,
          rows: d.tables.reduce((n, t) => n + t.rows, 0),
        })),
      },
      redis: { size: redis.size, sha256: redis.sha256, keys: redis.keys, method: redis.method },
      objects: { objects: objects.objects, bytes: objects.bytes, copied: objects.copied },
    };
    await store.putJson(setManifestKey(input.backupId), manifest);
    return manifest;
  }

  async function recordVerification(input: {
    backupId: string;
    verification: Verification;
  }): Promise<BackupSetManifest> {
    const manifest = await readSet(store, input.backupId);
    if (!manifest) throw new Error(`no backup set ${input.backupId}`);
    const updated = { ...manifest, verification: input.verification };
    await store.putJson(setManifestKey(input.backupId), updated);
    return updated;
  }

  const listBackupSets = (): Promise<BackupSetManifest[]> => listSets(store);

  /**
   * A restore holds a lock on the backup it uses, so retention leaves that backup alone until
   * the lease runs out; calling it again renews the lease.
   */
  async function lockBackup(input: {
    backupId: string;
    holder: string;
    leaseSeconds?: number;
  }): Promise<void> {
    const leaseSeconds = input.leaseSeconds ?? DEFAULT_LOCK_LEASE_SECONDS;
    if (!BACKUP_ID_PATTERN.test(input.backupId))
      throw fail(ErrorType.InvalidInput, `"${input.backupId}" is not a backup id`);
    if (!input.holder) throw fail(ErrorType.InvalidInput, 'a lock needs a holder (the recovery id)');
    if (!Number.isInteger(leaseSeconds) || leaseSeconds < 1 || leaseSeconds > MAX_LOCK_LEASE_SECONDS) {
      throw fail(
        ErrorType.InvalidInput,
        `leaseSeconds must be a whole number from 1 to ${MAX_LOCK_LEASE_SECONDS} (30 days), got ${leaseSeconds}`,
      );
    }
    const now = Date.now();
    const lock: BackupLock = {
      holder: input.holder,
      at: new Date(now).toISOString(),
      expiresAt: new Date(now + leaseSeconds * 1000).toISOString(),
    };
    await store.putJson(lockKey(input.backupId, input.holder), lock);
  }

  async function unlockBackup(input: { backupId: string; holder: string }): Promise<void> {
    await store.removeKeys([lockKey(input.backupId, input.holder)]);
  }

  /**
   * Prunes backups older than `retentionDays` as of `asOf` (the workflow's time). Keeps the
   * newest verified set whatever its age, and every backup a restore holds a lock on whose lease
   * runs past `asOf`; then removes mirrored blobs no remaining backup's index refers to. Expired
   * locks are reported, and removed with the backup they no longer protect.
   */
  async function pruneBackups(input: { asOf: string; retentionDays?: number }): Promise<PruneReport> {
    const retentionDays = input.retentionDays ?? config.retentionDays;
    if (!Number.isInteger(retentionDays) || retentionDays < 7 || retentionDays > 30) {
      throw fail(ErrorType.InvalidInput, `retention must be 7 to 30 days, got ${retentionDays}`);
    }
    const asOf = Date.parse(input.asOf);
    const cutoff = asOf - retentionDays * 86400_000;
    const ids = await allBackupIds(store);
    const sets = new Map<string, BackupSetManifest>();
    for (const id of ids) {
      const set = await readSet(store, id);
      if (set) sets.set(id, set);
    }
    const newestVerified = ids.find((id) => sets.get(id)?.verification?.ok);
    const locked = new Set<string>();
    const report: PruneReport = {
      asOf: input.asOf,
      retentionDays,
      pruned: [],
      kept: [],
      blobsRemoved: 0,
      expiredLocks: [],
    };
    for (const { key } of await store.list(LOCK_PREFIX)) {
      const id = key.split('/')[1]!;
      const lock = await store.getJson<Partial<BackupLock>>(key).catch(() => undefined);
      const expiry = lockExpiry(lock);
      if (Number.isNaN(expiry)) {
        locked.add(id);
        (report.unreadableLocks ??= []).push(key);
      } else if (expiry > asOf) locked.add(id);
      else
        report.expiredLocks.push({
          id,
          holder: lock!.holder ?? key,
          expiredAt: new Date(expiry).toISOString(),
        });
    }
    for (const id of ids) {
      if (backupTime(id) >= cutoff) report.kept.push({ id, reason: 'within retention' });
      else if (id === newestVerified) report.kept.push({ id, reason: 'newest verified set' });
      else if (locked.has(id)) report.kept.push({ id, reason: 'in use by a restore' });
      else {
        // The set manifest goes first: a half-pruned backup is never mistaken for a complete set.
        await store.removePrefix(`sets/${id}/`);
        for (const part of ['postgres', 'redis', 'objects', 'locks'])
          await store.removePrefix(`${part}/${id}/`);
        report.pruned.push(id);
      }
    }
    // Unreferenced blobs: marked now, swept once unreferenced for the grace period (a mirror that
    // is still running has stored blobs its index does not name yet).
    const referenced = new Set<string>();
    for (const { id } of report.kept) {
      await forEachJsonArrayEntry<ObjectIndexEntry>(store, objectIndexKey(id), (e) => {
        referenced.add(e.blob);
      });
    }
    const since = (await store.getJson<Record<string, string>>(BLOB_GC_CANDIDATES_KEY)) ?? {};
    const candidates: Record<string, string> = {};
    const sweep: string[] = [];
    for (const { key, lastModified } of await store.list(BLOB_PREFIX)) {
      if (referenced.has(key)) continue;
      // Written again since it was marked (a mirror stored that content anew): marked afresh.
      const rewritten = since[key] !== undefined && (lastModified ?? 0) > Date.parse(since[key]!);
      const first = since[key] !== undefined && !rewritten ? since[key]! : input.asOf;
      if (asOf - Date.parse(first) >= BLOB_GC_GRACE_HOURS * 3600_000) sweep.push(key);
      else candidates[key] = first;
    }
    await store.removeKeys(sweep);
    await store.putJson(BLOB_GC_CANDIDATES_KEY, candidates);
    report.blobsRemoved = sweep.length;
    report.blobsInGrace = Object.keys(candidates).length;
    return report;
  }

  /**
   * The set to restore from: a named one, or the newest set whose verification passed, with
   * every newer id it passed over and why (a fallback to an unverified set says so in `choice`);
   * with `before`, the newest complete by then.
   */
  async function resolveBackupSet(input: { backupId?: string; before?: string }): Promise<BackupChoice> {
    return chooseBackup(await readCatalog(store), { backupId: input.backupId, before: input.before });
  }

  return {
    writeBackupSet,
    recordVerification,
    listBackupSets,
    lockBackup,
    unlockBackup,
    pruneBackups,
    resolveBackupSet,
  };
}
