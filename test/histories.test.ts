/**
 * Upgrade safety: recorded histories of every recovery — completed runs, a failed one and runs
 * caught waiting for approval — replay against the current workflow code with
 * Worker.runReplayHistories. A change to a workflow's command sequence that would break a
 * recovery in flight fails here; use `patched()` (see README, "Upgrading").
 *
 * Activities are STUBBED (jest.fn-style) to record the histories; replay runs no activity.
 * `RECORD_HISTORIES=1` re-records the files in test/histories/ (only when a versioned change was
 * made on purpose); otherwise the committed files are replayed.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { temporal } from '@temporalio/proto';
import { DIST } from './harness/kohakku';
import type { Workflow } from '@temporalio/client';
import { objectStoreLoss, redisLoss, tableRestore, totalDatabaseLoss } from '../src/workflows';
import { progressQuery } from '../src/workflows/definitions';
import { uniqueId, workflowSuite } from './harness/suite';

const suite = workflowSuite();
const DIR = path.join(__dirname, 'histories');
const RECORD = process.env.RECORD_HISTORIES === '1';

const BACKUP = {
  id: '20261124T020000Z',
  createdAt: '2026-11-24T02:00:00Z',
  databases: [],
  verified: true,
  choice: 'newest verified backup',
  skipped: [],
};
const ok = async () => undefined;
const activities = {
  resolvePostgresBackup: async () => BACKUP,
  resolveBackupSet: async () => ({
    id: BACKUP.id,
    createdAt: BACKUP.createdAt,
    verified: true,
    choice: 'newest verified set',
    skipped: [],
  }),
  lockBackup: ok,
  unlockBackup: ok,
  ensurePostgresGlobals: async () => ({
    createdRoles: ['kohakku_app'],
    existingRoles: [],
    membershipsAdded: [],
    skipped: [],
    rolesWithoutPassword: ['kohakku_app'],
  }),
  preparePostgresRestore: async ({ target }: { target: string }) => ({
    target,
    database: target,
    backupId: BACKUP.id,
    localPath: '/x',
    size: 1,
    tocEntries: 1,
  }),
  restoreIntoStaging: async ({ target }: { target: string }) => ({
    target,
    database: `kohakku-${target}`,
    staging: 's',
    backupId: BACKUP.id,
    tablesVerified: 3,
    rowsVerified: 10,
    resumed: false,
  }),
  checkSwapBlockers: async () => [],
  liveDatabaseStates: async ({ targets }: { targets: string[] }) =>
    targets.map((t) => ({
      target: t,
      database: `kohakku-${t}`,
      exists: true,
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
};

interface Scenario {
  name: string;
  workflow: Workflow;
  args: unknown[];
  /** Record the history while the run waits for approval (then cancel it). */
  untilApproval?: boolean;
  failWith?: Partial<typeof activities>;
}

const SCENARIOS: Scenario[] = [
  { name: 'totalDatabaseLoss-completed', workflow: totalDatabaseLoss, args: [{ confirm: true }] },
  {
    name: 'totalDatabaseLoss-waiting-for-approval',
    workflow: totalDatabaseLoss,
    args: [{}],
    untilApproval: true,
  },
  {
    name: 'totalDatabaseLoss-failed-verification',
    workflow: totalDatabaseLoss,
    args: [{ confirm: true }],
    failWith: {
      restoreIntoStaging: async () => {
        throw ApplicationFailure.create({
          type: 'RestoreVerificationFailed',
          message: 'differs',
          nonRetryable: true,
        });
      },
    },
  },
  {
    name: 'tableRestore-completed',
    workflow: tableRestore,
    args: [{ target: 'controller', tables: ['tasks_task'], confirm: true }],
  },
  {
    name: 'tableRestore-waiting-for-approval',
    workflow: tableRestore,
    args: [{ target: 'controller', tables: ['tasks_task'] }],
    untilApproval: true,
  },
  { name: 'redisLoss-completed', workflow: redisLoss, args: [{}] },
  {
    name: 'objectStoreLoss-waiting-for-approval',
    workflow: objectStoreLoss,
    args: [{}],
    untilApproval: true,
  },
  { name: 'objectStoreLoss-completed', workflow: objectStoreLoss, args: [{ confirm: true }] },
];

/** Saves a run's history as binary protobuf (temporal.api.history.v1.History). */
async function save(name: string, handle: { fetchHistory(): Promise<unknown> }): Promise<void> {
  const history = (await handle.fetchHistory()) as temporal.api.history.v1.IHistory;
  await fs.writeFile(
    path.join(DIR, `${name}.history.pb`),
    temporal.api.history.v1.History.encode(history).finish(),
  );
}

async function record(s: Scenario): Promise<void> {
  const worker = await suite.createWorker({ ...activities, ...s.failWith } as never);
  await worker.runUntil(async () => {
    const handle = await suite.env.client.workflow.start(s.workflow, {
      taskQueue: worker.options.taskQueue,
      workflowId: uniqueId(s.name),
      args: s.args,
    } as never);
    if (s.untilApproval) {
      for (let i = 0; i < 200 && !(await handle.query(progressQuery)).awaitingApproval; i++)
        await new Promise((r) => setTimeout(r, 50));
      await save(s.name, handle);
      await handle.terminate('recorded while waiting for approval');
      return;
    }
    await handle.result().catch(() => undefined);
    await save(s.name, handle);
  });
}

(RECORD ? test : test.skip)('record the histories', async () => {
  for (const s of SCENARIOS) await record(s);
});

test('every recorded history replays against the current workflow code', async () => {
  const files = (await fs.readdir(DIR)).filter((f) => f.endsWith('.history.pb'));
  expect(files.length).toBeGreaterThanOrEqual(SCENARIOS.length);
  const replay = await promisify(execFile)(process.execPath, [
    path.join(DIST, 'client', 'replayHistories.js'),
    DIR,
  ]).then(
    (r) => ({ code: 0, out: r.stdout }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
  );
  expect(replay.out).toContain(`replayed ${files.length} histories, 0 failed`);
  expect(replay.code).toBe(0);
});
