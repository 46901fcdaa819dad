/**
 * The configured backup stores: the primary (a bucket on its own S3 server, or a directory) and
 * the optional replica. Every backup is written to the primary; the replica holds a checked copy
 * of each verified set; a recovery reads from either.
 */
import type { Config, StoreConfig } from '../config';
import type { StoreName } from '../domain/stores';
import { dirBackupStore, s3BackupStore, type BackupStore } from './backupStore';
import { s3Client } from './s3';

export type BackupStores = { primary: BackupStore } & Partial<
  Record<Exclude<StoreName, 'primary'>, BackupStore>
>;

export function createStore(place: StoreConfig): BackupStore {
  return place.kind === 's3'
    ? s3BackupStore(s3Client(place.s3), place.bucket, place.s3.region, place.s3.url)
    : dirBackupStore(place.dir);
}

/** The primary store (where backups are written). */
export function createBackupStore(config: Pick<Config, 'backupStore'>): BackupStore {
  return createStore(config.backupStore);
}

export function createBackupStores(config: Pick<Config, 'backupStore' | 'replicaStore'>): BackupStores {
  return {
    primary: createStore(config.backupStore),
    ...(config.replicaStore ? { replica: createStore(config.replicaStore) } : {}),
  };
}
