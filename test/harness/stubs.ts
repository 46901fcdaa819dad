/**
 * Stubbed activities for workflow-LOGIC tests and for recording histories: plain async functions
 * returning fixed, plausible results, so no PostgreSQL, Redis or MinIO is touched. By default
 * nothing is live (no approval is needed); tests override what they exercise.
 */
export const STUB_BACKUP = {
  id: '20261124T020000Z',
  createdAt: '2026-11-24T02:00:00Z',
  databases: [],
  verified: true,
  choice: 'newest verified backup',
  skipped: [],
};
const ok = async () => undefined;
/** The id of the last set `writeBackupSet` wrote (the nightly backup's own). */
let lastSetWritten: string | undefined;

export const stubActivities = {
  resolvePostgresBackup: async () => STUB_BACKUP,
  resolveBackupSet: async () => ({
    id: STUB_BACKUP.id,
    createdAt: STUB_BACKUP.createdAt,
    verified: true,
    choice: 'newest verified set',
    skipped: [],
  }),
  lockBackup: ok,
  unlockBackup: ok,
  ensurePostgresGlobals: async () => ({
    createdRoles: [],
    existingRoles: ['postgres'],
    membershipsAdded: [],
    skipped: [],
    rolesWithoutPassword: [],
  }),
  preparePostgresRestore: async ({ target }: { target: string }) => ({
    target,
    database: target,
    backupId: STUB_BACKUP.id,
    localPath: '/x',
    size: 1,
    tocEntries: 1,
  }),
  restoreIntoStaging: async ({ target }: { target: string }) => ({
    target,
    database: `kohakku-${target}`,
    staging: 's',
    backupId: STUB_BACKUP.id,
    tablesVerified: 3,
    rowsVerified: 10,
    resumed: false,
  }),
  checkSwapBlockers: async () => [],
  liveDatabaseStates: async ({ targets }: { targets: string[] }) =>
    targets.map((t) => ({
      target: t,
      database: `kohakku-${t}`,
      exists: false,
      oid: 1,
      allowConnections: true,
    })),
  swapInStaging: async ({ targets }: { targets: string[] }) =>
    targets.map((t) => ({
      target: t,
      database: `kohakku-${t}`,
      movedAsideTo: `kohakku-${t}__dr_replaced_x`,
      resumed: false,
    })),
  waitForHealthy: async ({ service }: { service: string }) => ({
    service,
    healthy: true,
    checks: 1,
    waitedMs: 1,
  }),
  restartService: async ({ service }: { service: string }) => ({ service, command: ['true'] }),
  waitForRegistrations: async () => ({
    complete: true,
    expected: 1,
    registered: 1,
    missing: [],
    extra: [],
    waitedMs: 1,
  }),
  cleanupPostgresRestore: async () => ({ droppedStaging: [], allowConnectionsRestored: [] }),
  cleanupPostgresGlobals: async () => ({ droppedRoles: [], kept: [] }),
  liveTables: async () => ['public.tasks_task'],
  restorePostgresTables: async () => ({
    database: 'kohakku-controller',
    tables: [{ table: 'public.tasks_task', rows: 10, entries: 7 }],
    movedAsideTo: 'kohakku_dr_replaced_x',
    resumed: false,
    dependentsRecreated: [],
    referencingRowsMovedAside: [],
  }),
  redisStatus: async () => ({ up: false, detail: 'ECONNREFUSED' }),
  waitForRedis: async () => ({ up: true, detail: 'PONG', keys: 5, waitedMs: 10 }),
  checkRedisPersistence: async () => ({
    dataDir: '/x',
    files: [],
    aof: 'ok',
    rdb: 'ok',
    detail: 'files check out',
  }),
  moveRedisFilesAside: async () => ({ movedTo: '/x/aside', moved: [] }),
  redispatchPendingTasks: async () => ({ pending: 3, alreadyQueued: 0, pushed: 3, depth: 3 }),
  planObjectRestore: async () => ({
    bucket: 'kohakku',
    bucketExists: true,
    inBackup: 5,
    skippedCompletedBriefs: 1,
    alreadyPresent: 2,
    toCopy: 2,
    overwriteCount: 1,
    wouldOverwrite: ['briefs/a.md'],
  }),
  restoreObjects: async () => ({
    bucket: 'kohakku',
    restoredAndVerified: 4,
    copied: 2,
    alreadyPresent: 2,
    skippedCompletedBriefs: 1,
    movedAside: 1,
    asidePrefix: 'kohakku-dr-aside/x/',
  }),
  requeueLostTasks: async () => ({ inFlight: 4, checkedBack: 3, requeued: 1, requeuedIds: ['7'] }),
  // The backup workflows (nightly: Postgres, Redis, objects, set manifest, verification, retention).
  backupPostgres: async ({ backupId }: { backupId: string }) => ({
    id: backupId,
    createdAt: STUB_BACKUP.createdAt,
    databases: [],
  }),
  backupRedis: async ({ backupId }: { backupId: string }) => ({
    id: backupId,
    createdAt: STUB_BACKUP.createdAt,
    key: 'redis/x.rdb',
    size: 1,
    sha256: 'x',
    keys: 5,
  }),
  mirrorObjects: async ({ backupId }: { backupId: string }) => ({
    id: backupId,
    createdAt: STUB_BACKUP.createdAt,
    buckets: [],
  }),
  writeBackupSet: async ({ backupId }: { backupId: string }) => ({
    id: (lastSetWritten = backupId),
    createdAt: STUB_BACKUP.createdAt,
    parts: {},
  }),
  // The set the nightly backup just wrote is there for its verification to find.
  listBackupSets: async () => [{ id: lastSetWritten ?? STUB_BACKUP.id, createdAt: STUB_BACKUP.createdAt }],
  verifyPostgresBackup: async () => ({ ok: true, problems: [] }),
  verifyRedisBackup: async () => ({ ok: true, problems: [] }),
  verifyObjectBackup: async () => ({ ok: true, problems: [] }),
  recordVerification: ok,
  cleanupPostgresVerification: ok,
  cleanupRedisVerification: ok,
  cleanupObjectVerification: ok,
  pruneBackups: async () => ({ pruned: [], kept: [STUB_BACKUP.id], blobsRemoved: 0 }),
  replicateBackupSet: async ({ backupId }: { backupId: string }) => ({
    backupId,
    replica: '/replica',
    copied: 4,
    bytesCopied: 100,
    alreadyPresent: 0,
    blobsCopied: 1,
    blobsAlreadyPresent: 0,
    checked: { dumps: 2, rdb: 1, blobsHashed: 1, blobsSized: 0 },
  }),
};
