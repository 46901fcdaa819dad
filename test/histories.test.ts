/**
 * Upgrade safety: recorded histories of every recovery — completed runs, a failed one and runs
 * caught waiting for approval — replay against the current workflow code with
 * Worker.runReplayHistories. A change to a workflow's command sequence that would break a
 * recovery in flight fails here; use `patched()` (see README, "Upgrading").
 *
 * Activities are STUBBED (jest.fn-style) to record the histories; replay runs no activity.
 * `RECORD_HISTORIES=1` records the scenarios that have no file yet (a new scenario or workflow);
 * `RECORD_HISTORIES=all` records every one again (only after a versioned change made on purpose).
 * Otherwise the committed files are replayed.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { temporal } from '@temporalio/proto';
import { DIST } from './harness/kohakku';
import type { Workflow } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import {
  fullCluster,
  markRestorePoint,
  nightlyBackup,
  objectStoreBackup,
  objectStoreLoss,
  pitrBackup,
  pitrSetup,
  pitrStatus,
  pointInTimeRecovery,
  redisLoss,
  tableRestore,
  totalDatabaseLoss,
} from '../src/workflows';
import { awaitApprovalRequest } from './harness/kohakku';
import { liveDatabasesExist, stubActivities } from './harness/stubs';
import { workflowSuite } from './harness/suite';

const suite = workflowSuite();
const DIR = path.join(__dirname, 'histories');
/** `1` records the scenarios that have no file yet; `all` records every scenario again. */
const RECORD = process.env.RECORD_HISTORIES;

const activities = {
  ...stubActivities,
  // Live databases exist, so the recorded runs ask for approval.
  liveDatabaseStates: liveDatabasesExist,
};

/** A worker with a notification webhook: its preflight says so. */
const NOTIFYING: Partial<typeof activities> = {
  checkEndpoints: async () => ({ checks: [], warnings: [], notifications: true }),
};

interface Scenario {
  name: string;
  workflow: Workflow;
  args: unknown[];
  /** Record the history while the run waits for approval (then cancel it). */
  untilApproval?: boolean;
  failWith?: Partial<typeof activities>;
  /** Also save the histories of the child workflows (`<name>-<child>`). */
  children?: boolean;
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
  {
    name: 'fullCluster-completed',
    workflow: fullCluster,
    args: [{ confirm: true, checkInGraceSeconds: 1 }],
  },
  {
    name: 'fullCluster-waiting-for-approval',
    workflow: fullCluster,
    args: [{ checkInGraceSeconds: 1 }],
    untilApproval: true,
  },
  // The scheduled backup: a run in flight during an upgrade must finish too. The children
  // (postgres, redis, objects, verify) are saved as their own histories.
  { name: 'nightlyBackup-completed', workflow: nightlyBackup, args: [], children: true },
  // 0.3 (patches replica-copy, object-store-server): the copy to the replica and the pruning of
  // it; Kohakku's S3 server checked (and started again when lost) before the object restore.
  { name: 'nightlyBackup-0.3-completed', workflow: nightlyBackup, args: [], children: true },
  // 0.3, patch pitr-window-verify: the nightly also proves the recovery window.
  { name: 'nightlyBackup-window-completed', workflow: nightlyBackup, args: [], children: true },
  { name: 'objectStoreLoss-0.3-completed', workflow: objectStoreLoss, args: [{ confirm: true }] },
  {
    name: 'objectStoreLoss-0.3-waiting-for-approval',
    workflow: objectStoreLoss,
    args: [{}],
    untilApproval: true,
  },
  {
    name: 'fullCluster-0.3-waiting-for-approval',
    workflow: fullCluster,
    args: [{ checkInGraceSeconds: 1 }],
    untilApproval: true,
  },
  {
    name: 'fullCluster-0.3-completed',
    workflow: fullCluster,
    args: [{ confirm: true, checkInGraceSeconds: 1 }],
  },
  // 0.3: point-in-time recovery and its upkeep.
  { name: 'pitrSetup-completed', workflow: pitrSetup, args: [] },
  { name: 'pitrBackup-completed', workflow: pitrBackup, args: [{ type: 'full' }] },
  { name: 'markRestorePoint-completed', workflow: markRestorePoint, args: [{ name: 'before deploy 42' }] },
  { name: 'pitrStatus-completed', workflow: pitrStatus, args: [] },
  {
    name: 'pointInTimeRecovery-completed',
    workflow: pointInTimeRecovery,
    args: [{ target: '2026-11-25T01:30:00Z', confirm: true, checkInGraceSeconds: 1 }],
  },
  {
    name: 'pointInTimeRecovery-waiting-for-approval',
    workflow: pointInTimeRecovery,
    args: [{ target: '2026-11-25T01:30:00Z', checkInGraceSeconds: 1 }],
    untilApproval: true,
  },
  {
    name: 'pointInTimeRecovery-failed-restore',
    workflow: pointInTimeRecovery,
    args: [{ target: '2026-11-25T01:30:00Z', confirm: true, checkInGraceSeconds: 1 }],
    failWith: {
      restoreToTarget: async () => {
        throw ApplicationFailure.nonRetryable(
          'the pgBackRest repository is damaged (missing file)',
          'BackupCorrupt',
        );
      },
    },
  },
  // 0.3.1: base backup retention; objects from a backup set without versioning; a quiet target.
  { name: 'pitrBackup-0.3.1-completed', workflow: pitrBackup, args: [{ type: 'full' }] },
  {
    name: 'pointInTimeRecovery-0.3.1-objects-versioned',
    workflow: pointInTimeRecovery,
    args: [{ target: '2026-11-25T01:30:00Z', objects: true, confirm: true, checkInGraceSeconds: 1 }],
  },
  {
    name: 'pointInTimeRecovery-0.3.1-objects-unversioned',
    workflow: pointInTimeRecovery,
    args: [{ target: '2026-11-25T01:30:00Z', objects: true, confirm: true, checkInGraceSeconds: 1 }],
    failWith: { bucketVersioning: async () => ({ bucket: 'kohakku', exists: true, versioned: false }) },
  },
  {
    name: 'pointInTimeRecovery-0.3.1-end-of-archive',
    workflow: pointInTimeRecovery,
    args: [{ target: '2026-11-25T01:30:00Z', confirm: true, checkInGraceSeconds: 1 }],
    failWith: (() => {
      let calls = 0;
      return {
        waitForPromotion: async () => {
          if (calls++ === 0)
            throw ApplicationFailure.nonRetryable(
              'PostgreSQL stopped during recovery',
              'RecoveryTargetNotReached',
            );
          return { waitedMs: 10, timeline: 3 };
        },
      };
    })(),
  },
  // 0.3.5, patch kohakku-dr-preflight: every recovery checks its endpoints first.
  { name: 'totalDatabaseLoss-0.3.5-completed', workflow: totalDatabaseLoss, args: [{ confirm: true }] },
  {
    name: 'totalDatabaseLoss-0.3.5-waiting-for-approval',
    workflow: totalDatabaseLoss,
    args: [{}],
    untilApproval: true,
  },
  {
    name: 'tableRestore-0.3.5-completed',
    workflow: tableRestore,
    args: [{ target: 'controller', tables: ['tasks_task'], confirm: true }],
  },
  { name: 'redisLoss-0.3.5-completed', workflow: redisLoss, args: [{}] },
  { name: 'objectStoreLoss-0.3.5-completed', workflow: objectStoreLoss, args: [{ confirm: true }] },
  {
    name: 'fullCluster-0.3.5-completed',
    workflow: fullCluster,
    args: [{ confirm: true, checkInGraceSeconds: 1 }],
  },
  {
    name: 'fullCluster-0.3.5-waiting-for-approval',
    workflow: fullCluster,
    args: [{ checkInGraceSeconds: 1 }],
    untilApproval: true,
  },
  {
    name: 'pointInTimeRecovery-0.3.5-objects-versioned',
    workflow: pointInTimeRecovery,
    args: [{ target: '2026-11-25T01:30:00Z', objects: true, confirm: true, checkInGraceSeconds: 1 }],
  },
  {
    name: 'totalDatabaseLoss-0.3.5-unreachable-endpoint',
    workflow: totalDatabaseLoss,
    args: [{ confirm: true }],
    failWith: {
      checkEndpoints: async () => {
        throw ApplicationFailure.create({
          type: 'EndpointUnreachable',
          message: 'preflight: PostgreSQL at 127.0.0.1:5432: unreachable — ECONNREFUSED',
          nonRetryable: true,
        });
      },
    },
  },
  // 0.3.6: with a notification webhook (the preflight says so), recoveries start a
  // deliverNotification child when they wait for approval, complete and fail; a failed nightly
  // backup does too (patch kohakku-dr-notify).
  {
    name: 'totalDatabaseLoss-0.3.6-notified-completed',
    workflow: totalDatabaseLoss,
    args: [{ confirm: true }],
    failWith: NOTIFYING,
  },
  {
    name: 'totalDatabaseLoss-0.3.6-notified-waiting-for-approval',
    workflow: totalDatabaseLoss,
    args: [{}],
    untilApproval: true,
    failWith: NOTIFYING,
  },
  {
    name: 'fullCluster-0.3.6-notified-failed',
    workflow: fullCluster,
    args: [{ confirm: true, checkInGraceSeconds: 1 }],
    failWith: {
      ...NOTIFYING,
      restoreIntoStaging: async () => {
        throw ApplicationFailure.create({
          type: 'RestoreVerificationFailed',
          message: 'differs',
          nonRetryable: true,
        });
      },
    },
  },
  // 0.3.6, patch kohakku-dr-report: recoveries and verifications write a report at their end.
  { name: 'nightlyBackup-0.3.6-completed', workflow: nightlyBackup, args: [], children: true },
  {
    name: 'nightlyBackup-0.3.6-failed',
    workflow: nightlyBackup,
    args: [],
    failWith: {
      backupPostgres: async () => {
        throw ApplicationFailure.create({
          type: 'ToolUnavailable',
          message: 'no pg_dump',
          nonRetryable: true,
        });
      },
    },
  },
  // 0.3.2: the object mirror counts the bucket first, and fans out in partitions when it is big.
  { name: 'nightlyBackup-0.3.2-completed', workflow: nightlyBackup, args: [], children: true },
  {
    name: 'objectStoreBackup-0.3.2-partitioned',
    workflow: objectStoreBackup,
    args: [{ backupId: '20261125T020000Z' }],
    failWith: {
      countObjectsToMirror: async () => ({
        objects: 300000,
        partitions: 3,
        ranges: [
          { index: 0, of: 3, through: 'briefs/task-190000.md' },
          { index: 1, of: 3, after: 'briefs/task-190000.md', through: 'briefs/task-99999.md' },
          { index: 2, of: 3, after: 'briefs/task-99999.md' },
        ],
      }),
    },
  },
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
      // The replayer names each run after its file, and the nightly backup derives its
      // children's ids from its own: record under that name.
      workflowId: s.name,
      args: s.args,
    } as never);
    if (s.untilApproval) {
      await awaitApprovalRequest(handle);
      await save(s.name, handle);
      await handle.terminate('recorded while waiting for approval');
      return;
    }
    await handle.result().catch(() => undefined);
    await save(s.name, handle);
    if (!s.children) return;
    for (const child of ['postgres', 'redis', 'objects', 'verify'])
      await save(`${s.name}-${child}`, suite.env.client.workflow.getHandle(`${handle.workflowId}/${child}`));
  });
}

(RECORD ? test : test.skip)('record the histories', async () => {
  const present = new Set(await fs.readdir(DIR));
  for (const s of SCENARIOS) if (RECORD === 'all' || !present.has(`${s.name}.history.pb`)) await record(s);
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
