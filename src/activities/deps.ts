/** Builds the activities' dependencies from validated configuration (the worker's only wiring). */
import { Redis } from 'ioredis';
import * as Minio from 'minio';
import type { Config } from '../config';
import { dirBackupStore, s3BackupStore, type BackupStore } from '../infra/backupStore';
import { createCommandRunner } from '../infra/exec';
import type { ActivityDeps } from './index';

export function s3Client(config: Config): Minio.Client {
  return new Minio.Client({ ...config.s3 });
}

export function createBackupStore(config: Config): BackupStore {
  return config.backupStore.kind === 's3'
    ? s3BackupStore(s3Client(config), config.backupStore.bucket, config.s3.region)
    : dirBackupStore(config.backupStore.dir);
}

export function createDeps(config: Config): ActivityDeps & { close(): Promise<void> } {
  const redis = new Redis({
    host: config.redis.host,
    port: config.redis.port,
    password: config.redis.password,
    db: config.redis.db,
    lazyConnect: true,
    // Redis may be the thing that is down: fail commands fast, the activity retry policy waits.
    maxRetriesPerRequest: 2,
  });
  redis.on('error', () => undefined);
  return {
    config,
    exec: createCommandRunner(),
    store: createBackupStore(config),
    redis,
    s3: s3Client(config),
    async close() {
      redis.disconnect();
    },
  };
}
