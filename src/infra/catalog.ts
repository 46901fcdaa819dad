/**
 * Reading the backup store's catalog: which backup ids exist, their set manifests and Postgres
 * manifests. Used by the activities, the CLI's listings and the drill alike, so none of them
 * reaches into another's code to find a backup.
 */
import { BACKUP_ID_PATTERN } from '../domain/backupIds';
import { BACKUP_PARTS, postgresManifestKey, setManifestKey } from '../domain/layout';
import type { BackupSetManifest, PostgresManifest } from '../domain/manifests';
import type { BackupStore } from './backupStore';

export async function readSet(store: BackupStore, id: string): Promise<BackupSetManifest | undefined> {
  return store.getJson<BackupSetManifest>(setManifestKey(id));
}

export async function readPostgresManifest(
  store: BackupStore,
  id: string,
): Promise<PostgresManifest | undefined> {
  return store.getJson<PostgresManifest>(postgresManifestKey(id));
}

/** Every backup id present in the store under any part, newest first. */
export async function allBackupIds(store: BackupStore): Promise<string[]> {
  const ids = new Set<string>();
  for (const part of BACKUP_PARTS) {
    for (const o of await store.list(part)) {
      const id = o.key.split('/')[1];
      if (id && BACKUP_ID_PATTERN.test(id)) ids.add(id);
    }
  }
  return [...ids].sort().reverse();
}

/** Every complete backup set (one with a set manifest), newest first. */
export async function listBackupSets(store: BackupStore): Promise<BackupSetManifest[]> {
  const out: BackupSetManifest[] = [];
  for (const id of await allBackupIds(store)) {
    const set = await readSet(store, id);
    if (set) out.push(set);
  }
  return out;
}
