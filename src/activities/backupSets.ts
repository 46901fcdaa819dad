/**
 * Backup sets: one nightly run's Postgres dumps, Redis RDB and object index under one id, with
 * one manifest (`sets/<id>/manifest.json`) that also carries the verification verdict.
 * Retention prunes whole sets by age, but never the newest verified set and never one that a
 * running restore holds a lock on (`locks/<id>/…`).
 */
import type { Config } from '../config';
import { ErrorType, fail } from '../domain/errors';
import { backupTime, BACKUP_ID_PATTERN } from '../domain/backupIds';
import {
  BLOB_PREFIX,
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
import { allBackupIds, listBackupSets as listSets, readSet } from '../infra/catalog';

export interface PruneReport {
  asOf: string;
  retentionDays: number;
  pruned: string[];
  kept: { id: string; reason: string }[];
  blobsRemoved: number;
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

  /** A restore holds a lock on the backup it uses, so retention leaves that backup alone. */
  async function lockBackup(input: { backupId: string; holder: string }): Promise<void> {
    await store.putJson(lockKey(input.backupId, input.holder), {
      holder: input.holder,
      at: new Date().toISOString(),
    });
  }

  async function unlockBackup(input: { backupId: string; holder: string }): Promise<void> {
    await store.removeKeys([lockKey(input.backupId, input.holder)]);
  }

  /**
   * Prunes backups older than `retentionDays` as of `asOf` (the workflow's time). Keeps the
   * newest verified set whatever its age, and every backup a restore has locked; then removes
   * mirrored blobs no remaining backup's index refers to.
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
    const locked = new Set((await store.list('locks/')).map((o) => o.key.split('/')[1]!));
    const report: PruneReport = { asOf: input.asOf, retentionDays, pruned: [], kept: [], blobsRemoved: 0 };
    for (const id of ids) {
      if (backupTime(id) >= cutoff) report.kept.push({ id, reason: 'within retention' });
      else if (id === newestVerified) report.kept.push({ id, reason: 'newest verified set' });
      else if (locked.has(id)) report.kept.push({ id, reason: 'in use by a restore' });
      else {
        // The set manifest goes first: a half-pruned backup is never mistaken for a complete set.
        await store.removePrefix(`sets/${id}/`);
        for (const part of ['postgres', 'redis', 'objects']) await store.removePrefix(`${part}/${id}/`);
        report.pruned.push(id);
      }
    }
    if (report.pruned.length > 0) {
      const referenced = new Set<string>();
      for (const { id } of report.kept) {
        for (const e of (await store.getJson<ObjectIndexEntry[]>(objectIndexKey(id))) ?? [])
          referenced.add(e.blob);
      }
      const unreferenced = (await store.list(BLOB_PREFIX))
        .map((b) => b.key)
        .filter((k) => !referenced.has(k));
      await store.removeKeys(unreferenced);
      report.blobsRemoved = unreferenced.length;
    }
    return report;
  }

  /** The set to restore from: a named one, or the newest verified set (the newest set if none is verified). */
  async function resolveBackupSet(input: {
    backupId?: string;
  }): Promise<{ id: string; createdAt: string; verified: boolean }> {
    const sets = await listBackupSets();
    const wanted = input.backupId && input.backupId !== 'latest' ? input.backupId : undefined;
    if (wanted && !BACKUP_ID_PATTERN.test(wanted))
      throw fail(ErrorType.InvalidInput, `"${wanted}" is not a backup id (YYYYMMDDTHHMMSSZ or latest)`);
    const set = wanted
      ? sets.find((s) => s.id === wanted)
      : (sets.find((s) => s.verification?.ok) ?? sets[0]);
    if (!set) {
      throw fail(
        ErrorType.BackupNotFound,
        wanted
          ? `backup set ${wanted} not found (kohakku-dr backups lists them)`
          : 'no backup set at all: run the nightly backup first',
      );
    }
    return { id: set.id, createdAt: set.createdAt, verified: set.verification?.ok ?? false };
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
