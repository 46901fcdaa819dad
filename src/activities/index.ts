/**
 * createActivities(deps): plain async functions closed over the worker's clients. Workflows
 * see only their types; the worker registers the values.
 */
import type { Redis } from 'ioredis';
import type * as Minio from 'minio';
import type { Config } from '../config';
import { createBackupSetActivities } from './backupSets';
import type { BackupStore } from '../infra/backupStore';
import type { CommandRunner } from '../infra/exec';
import { createObjectStoreActivities } from './objectStore';
import { createPostgresActivities } from './postgres';
import { createRedisBackupActivities } from './redisBackup';
import { createRedisRecoveryActivities } from './redisRecovery';
import { createRedisActivities } from './redis';
import { createServiceActivities } from './services';

export interface ActivityDeps {
  config: Config;
  exec: CommandRunner;
  store: BackupStore;
  redis: Redis;
  /** Kohakku's object store (bucket KOHAKKU_BUCKET). */
  s3: Minio.Client;
}

export function createActivities(deps: ActivityDeps) {
  return {
    ...createPostgresActivities(deps),
    ...createServiceActivities(deps),
    ...createRedisActivities(deps),
    ...createRedisBackupActivities(deps),
    ...createRedisRecoveryActivities(deps),
    ...createObjectStoreActivities(deps),
    ...createBackupSetActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
