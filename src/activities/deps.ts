/** Builds the activities' dependencies from validated configuration (the worker's only wiring). */
import { Redis } from 'ioredis';
import type { Config } from '../config';
import { createCommandRunner } from '../infra/exec';
import { s3Client } from '../infra/s3';
import { objectReader } from '../infra/s3Reads';
import { createBackupStores } from '../infra/stores';
import type { ActivityDeps } from './index';

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
  const stores = createBackupStores(config);
  const reader = objectReader(config.s3);
  return {
    config,
    exec: createCommandRunner(),
    store: stores.primary,
    stores,
    redis,
    s3: s3Client(config.s3),
    objectReader: reader,
    async close() {
      redis.disconnect();
      await reader.close();
    },
  };
}
