/** The configured backup store: a bucket on the S3 endpoint, or a directory. */
import type { Config } from '../config';
import { dirBackupStore, s3BackupStore, type BackupStore } from './backupStore';
import { s3Client } from './s3';

export function createBackupStore(config: Config): BackupStore {
  return config.backupStore.kind === 's3'
    ? s3BackupStore(s3Client(config), config.backupStore.bucket, config.s3.region)
    : dirBackupStore(config.backupStore.dir);
}
