/**
 * createActivities(deps): plain async functions closed over the worker's clients. Workflows
 * see only their types; the worker registers the values.
 *
 * Two backup stores: every activity is built once per store, and a call goes to the store its
 * input names (`from: 'replica'`; the primary otherwise). So a recovery reads its whole backup
 * from the store it resolved it in, with no activity having to know there are two. Backups are
 * always written to the primary (the backup workflows never name a store); the replica is
 * written only by the replication activity. Resolving "which backup" without a `from` looks
 * at both stores (backupSources).
 */
import type { Redis } from 'ioredis';
import type * as Minio from 'minio';
import type { Config } from '../config';
import type { FromStore, StoreName } from '../domain/stores';
import type { BackupStore } from '../infra/backupStore';
import { memoryBudget, TRANSFER_MEMORY_BYTES, type MemoryBudget } from '../infra/adaptive';
import type { CommandRunner } from '../infra/exec';
import type { ObjectReader } from '../infra/s3Reads';
import type { BackupStores } from '../infra/stores';
import { createBackupSetActivities } from './backupSets';
import { resolveAcrossStores, storeNotConfigured } from './backupSources';
import { heartbeatingThroughout } from './heartbeat';
import { createObjectRewindActivities } from './objectRewind';
import { createObjectStoreActivities } from './objectStore';
import { createPitrActivities } from './pitr';
import { createNotificationActivities } from './notifications';
import { createPreflightActivities } from './preflight';
import { createReportActivities } from './reports';
import { createPostgresActivities } from './postgres';
import { createRedisBackupActivities } from './redisBackup';
import { createRedisRecoveryActivities } from './redisRecovery';
import { createRedisActivities } from './redis';
import { createReplicaActivities } from './replica';
import { createServiceActivities } from './services';

export interface ActivityDeps {
  config: Config;
  exec: CommandRunner;
  /** The store this set of activities reads and writes. */
  store: BackupStore;
  /** Both stores (the replica when configured). */
  stores: BackupStores;
  redis: Redis;
  /** Kohakku's object store (bucket KOHAKKU_BUCKET). */
  s3: Minio.Client;
  /** Downloads from it for the mirror (undici: see infra/s3Reads.ts). */
  objectReader?: ObjectReader;
  /** The memory all of this worker's object transfers share (TRANSFER_MEMORY_BYTES). */
  transferMemory?: MemoryBudget;
}

/**
 * Every activity heartbeats from its first moment to its last (heartbeatingThroughout), so any
 * of them can run with a heartbeat timeout, whatever phase it is in and however big the data.
 */
function everyOneHeartbeating<T extends object>(activities: T): T {
  const out: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(activities))
    out[name] =
      typeof fn === 'function'
        ? (...args: unknown[]) =>
            heartbeatingThroughout(name, () => (fn as (...a: unknown[]) => Promise<unknown>)(...args))
        : fn;
  return out as T;
}

function activitiesOn(deps: ActivityDeps) {
  return everyOneHeartbeating({
    ...createPostgresActivities(deps),
    ...createServiceActivities(deps),
    ...createRedisActivities(deps),
    ...createRedisBackupActivities(deps),
    ...createRedisRecoveryActivities(deps),
    ...createObjectStoreActivities(deps),
    ...createObjectRewindActivities(deps),
    ...createBackupSetActivities(deps),
    ...createReplicaActivities(deps),
    ...createPitrActivities(deps),
  });
}

type OnOneStore = ReturnType<typeof activitiesOn>;

/** Each activity, also taking `from` in its (object) input. */
type Routed<T> = {
  [K in keyof T]: T[K] extends (...args: infer A) => infer R
    ? A extends []
      ? (input?: FromStore) => R
      : A extends [infer I, ...infer Rest]
        ? (input: I & FromStore, ...rest: Rest) => R
        : T[K]
    : T[K];
};

export function createActivities(input: Omit<ActivityDeps, 'store' | 'stores'> & { stores: BackupStores }) {
  // One budget for the worker: its mirrors, restores, verifications and replica copies together.
  const deps = { ...input, transferMemory: input.transferMemory ?? memoryBudget(TRANSFER_MEMORY_BYTES) };
  const on: Partial<Record<StoreName, OnOneStore>> = {
    primary: activitiesOn({ ...deps, store: deps.stores.primary }),
    ...(deps.stores.replica ? { replica: activitiesOn({ ...deps, store: deps.stores.replica }) } : {}),
  };
  const pick = (from: unknown): OnOneStore => {
    const name = (from ?? 'primary') as StoreName;
    const chosen = on[name];
    if (chosen) return chosen;
    throw storeNotConfigured(from);
  };
  const routed = {} as Record<string, (...args: unknown[]) => unknown>;
  for (const name of Object.keys(on.primary!) as (keyof OnOneStore)[]) {
    routed[name] = (...args: unknown[]) => {
      const input = args[0] as FromStore | undefined;
      const fn = pick(input && typeof input === 'object' ? input.from : undefined)[name] as (
        ...a: unknown[]
      ) => unknown;
      return fn(...args);
    };
  }
  const activities = routed as unknown as Routed<OnOneStore>;
  // The preflight looks at every store itself (any answering one will do without a `from`).
  // They heartbeat too: every activity option has a heartbeat timeout (workflows/options.ts).
  const acrossStores = everyOneHeartbeating({
    ...createPreflightActivities(deps),
    ...createNotificationActivities(deps),
    ...createReportActivities(deps),
  });
  // Without a `from`, "which backup" is the first store holding a verified copy.
  return {
    ...activities,
    ...acrossStores,
    resolvePostgresBackup: (input: Parameters<OnOneStore['resolvePostgresBackup']>[0] & FromStore) =>
      resolveAcrossStores(input.from, on, (a) => a.resolvePostgresBackup(input), deps.stores),
    resolveBackupSet: (input: Parameters<OnOneStore['resolveBackupSet']>[0] & FromStore) =>
      resolveAcrossStores(input.from, on, (a) => a.resolveBackupSet(input), deps.stores),
  };
}

export type Activities = ReturnType<typeof createActivities>;
