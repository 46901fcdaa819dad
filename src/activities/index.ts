/**
 * createActivities(deps): plain async functions closed over the worker's clients. Workflows
 * see only their types; the worker registers the values.
 */
import type { Redis } from 'ioredis';
import type { Config } from '../config';
import type { BackupStore } from './backupStore';
import type { CommandRunner } from './exec';
import { createPostgresActivities } from './postgres';
import { createRedisActivities } from './redis';
import { createServiceActivities } from './services';

export interface ActivityDeps {
  config: Config;
  exec: CommandRunner;
  store: BackupStore;
  redis: Redis;
}

export function createActivities(deps: ActivityDeps) {
  return {
    ...createPostgresActivities(deps),
    ...createServiceActivities(deps),
    ...createRedisActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
