/**
 * The CLI as a script uses it: spawned as its own process, stdout, stderr and exit codes read —
 * every documented exit code reached, `--json` parsed as one document, no stack trace on a
 * failure, Ctrl-C leaving the workflow running. The recoveries it starts run on the real dev
 * server with their activities STUBBED (test/harness/stubs.ts: nothing live is touched), since
 * what is tested here is the CLI; `backups` reads real (missing, empty) stores.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Context } from '@temporalio/activity';
import { ApplicationFailure, defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { meter } from '../src/domain/meter';
import type { Activities } from '../src/activities';
import { EXIT_CODES, exitCodesMarkdown } from '../src/client/exitCodes';
import { WORKFLOW_IDS } from '../src/client/temporal';
import { totalDatabaseLoss } from '../src/workflows';
import { runCli, stackTraceLine, type CliOptions, type CliRun } from './harness/cli';
import { liveDatabasesExist, stubActivities } from './harness/stubs';
import { uniqueId, workflowSuite } from './harness/suite';

const suite = workflowSuite();
const taskQueue = uniqueId('cli');
/** Whether the stubbed restore fails (a recovery that fails: exit 1). */
let restoreFails = false;
/** Whether the stubbed restore fails as a lost connection would: retried by the server. */
let restoreRetries = false;
/** While set, the stubbed restore heartbeats a download's growing meter until it is unset. */
let restoreDownloads = false;
/** The size of the stubbed download, and how much of it the stub says is done each second. */
const DOWNLOAD = { size: 100 * 1048576, perSecond: 4 * 1048576 };

const activities = {
  ...stubActivities,
  // The controller's database is live: the swap needs an approval.
  liveDatabaseStates: liveDatabasesExist,
  restoreIntoStaging: async (input: { target: string }) => {
    if (restoreRetries) throw new Error('connect ECONNREFUSED 127.0.0.1:9 (the backup store)');
    for (let done = 0; restoreDownloads; done = Math.min(DOWNLOAD.size, done + DOWNLOAD.perSecond)) {
      Context.current().heartbeat({
        stage: 'downloading',
        meter: meter('downloading kohakku-controller.dump', 'bytes', done, DOWNLOAD.size),
      });
      await Context.current().sleep(1000);
    }
    if (restoreFails)
      throw ApplicationFailure.create({
        type: 'RestoreVerificationFailed',
        message: 'kohakku-controller: tasks_task has 9 rows, the manifest says 10',
        nonRetryable: true,
      });
    return stubActivities.restoreIntoStaging(input);
  },
} as unknown as Partial<Activities>;

/** Runs `work` while a worker with the stubbed activities polls the CLI's task queue. */
async function withWorker(work: () => Promise<void>): Promise<void> {
  const worker = await suite.createWorker(activities, taskQueue);
  try {
    await worker.runUntil(work);
  } finally {
    // Nothing a test started is left running on the shared server, even when it failed.
    const handle = suite.env.client.workflow.getHandle(WORKFLOW_IDS.postgresRecovery);
    if ((await handle.describe().catch(() => undefined))?.status.name === 'RUNNING')
      await handle.terminate('cli.test cleanup');
  }
}

/** `kohakku-dr args…` on this file's task queue. */
const cli = (args: string[], options: Omit<CliOptions, 'taskQueue'> = {}) =>
  runCli(args, { taskQueue, ...options });

/** A recovery of the (live) controller database that stops at the approval. */
const START_WAITING = ['recover', 'total-database-loss', '--target', 'controller', '--no-wait', '--json'];
const json = (run: CliRun) => JSON.parse(run.stdout) as Record<string, unknown>;
const code = (name: string) => EXIT_CODES.find((e) => e.name === name)!.code;
/** A failure is one line of ours, never a Node stack trace. */
const noStackTrace = (run: CliRun) => expect(run.stderr).not.toMatch(stackTraceLine);

test('--help ends with the exit codes, which the README documents', async () => {
  const run = await cli(['--help']);
  expect(run.code).toBe(0);
  for (const e of EXIT_CODES) expect(run.stdout).toContain(e.meaning);
  expect(readFileSync(path.resolve(__dirname, '../README.md'), 'utf8')).toContain(exitCodesMarkdown());
});

test('bad arguments exit 2 with one line; --json gives {error, exit}', async () => {
  const run = await cli(['recover', 'full-cluster', '--grace', 'soon', '--json']);
  expect(run.code).toBe(code('bad-input'));
  expect(run.stderr).toContain("option '--grace <s>' argument 'soon' is invalid");
  expect(json(run)).toMatchObject({ exit: 2 });
  noStackTrace(run);
});

test('an unreachable Temporal server is named within seconds: exit 5', async () => {
  const run = await cli(['status', 'anything', '--json'], { env: { TEMPORAL_ADDRESS: '127.0.0.1:1' } });
  expect(run.code).toBe(code('unreachable'));
  expect(run.stderr).toContain('cannot reach the Temporal server at 127.0.0.1:1 (TEMPORAL_ADDRESS)');
  expect(json(run)).toMatchObject({ exit: 5 });
  expect(run.ms).toBeLessThan(30_000);
  noStackTrace(run);
});

test('a recovery waiting for approval: --no-wait exits 4, a second start 3, status 4, Ctrl-C 130, approve 0, then done', async () => {
  await withWorker(async () => {
    const started = await cli(START_WAITING);
    expect(started.code).toBe(code('awaiting-approval'));
    const doc = json(started);
    expect(doc).toMatchObject({
      workflowId: WORKFLOW_IDS.postgresRecovery,
      status: 'awaiting-approval',
      awaitingApproval: { step: 'swap databases in' },
      approveCommand: `kohakku-dr approve ${WORKFLOW_IDS.postgresRecovery}`,
    });
    expect(started.stderr).toContain('started totalDatabaseLoss');
    // The Temporal UI's summary and details tell this run from the others under the same id.
    const described = await suite.env.client.workflow.getHandle(WORKFLOW_IDS.postgresRecovery).describe();
    expect(await described.staticSummary()).toMatch(/^totalDatabaseLoss: targets controller — by \S+@\S+$/);
    // Its search attributes, which the suite's server has registered as the embedded stack does.
    expect(
      described.typedSearchAttributes.get(
        defineSearchAttributeKey('KohakkuDrProcedure', SearchAttributeType.KEYWORD),
      ),
    ).toBe('totalDatabaseLoss');
    expect(
      described.typedSearchAttributes.get(
        defineSearchAttributeKey('KohakkuDrTarget', SearchAttributeType.KEYWORD),
      ),
    ).toBe('controller');
    expect(
      described.typedSearchAttributes.get(
        defineSearchAttributeKey('KohakkuDrBackupId', SearchAttributeType.KEYWORD),
      ),
    ).toBe('latest');
    expect(await described.staticDetails()).toContain(
      `approve: \`kohakku-dr approve ${WORKFLOW_IDS.postgresRecovery}\``,
    );

    const again = await cli(START_WAITING);
    expect(again.code).toBe(code('refused'));
    expect(again.stderr).toContain(`a run of ${WORKFLOW_IDS.postgresRecovery} is already in progress`);
    noStackTrace(again);

    const status = await cli(['status', WORKFLOW_IDS.postgresRecovery, '--json']);
    expect(status.code).toBe(code('awaiting-approval'));
    expect(json(status)).toMatchObject({ status: 'awaiting-approval', workflowType: 'totalDatabaseLoss' });

    // Ctrl-C while watching: the CLI says the workflow goes on — and it does.
    const watched = await cli(['watch', WORKFLOW_IDS.postgresRecovery], { interruptAfter: 'waiting for:' });
    expect(watched.code).toBe(code('interrupted'));
    expect(watched.stderr).toContain(`${WORKFLOW_IDS.postgresRecovery} keeps running on the worker`);
    expect(watched.stderr).toContain(`kohakku-dr cancel ${WORKFLOW_IDS.postgresRecovery}`);
    const handle = suite.env.client.workflow.getHandle(WORKFLOW_IDS.postgresRecovery);
    expect((await handle.describe()).status.name).toBe('RUNNING');

    const approved = await cli(['approve', WORKFLOW_IDS.postgresRecovery, '--by', 'oncall', '--json']);
    expect(approved.code).toBe(0);
    expect(json(approved)).toMatchObject({ approved: true, step: 'swap databases in', by: 'oncall' });
    await handle.result();

    const done = await cli(['status', WORKFLOW_IDS.postgresRecovery, '--json']);
    expect(done.code).toBe(0);
    expect(json(done)).toMatchObject({ status: 'completed' });
    const late = await cli(['approve', WORKFLOW_IDS.postgresRecovery, '--json']);
    expect(late.code).toBe(code('refused'));
    expect(json(late)).toMatchObject({ approved: false, exit: 3 });
  });
});

test('cancel ends a waiting recovery; watch on it then exits 1 without a stack trace', async () => {
  await withWorker(async () => {
    const started = await cli(['recover', 'total-database-loss', '--target', 'controller', '--no-wait']);
    expect(started.code).toBe(code('awaiting-approval'));
    const cancelled = await cli(['cancel', WORKFLOW_IDS.postgresRecovery, '--json']);
    expect(cancelled.code).toBe(0);
    expect(json(cancelled)).toMatchObject({ status: 'cancelled' });
    const again = await cli(['cancel', WORKFLOW_IDS.postgresRecovery]);
    expect(again.code).toBe(code('refused'));

    const watched = await cli(['watch', WORKFLOW_IDS.postgresRecovery, '--json']);
    expect(watched.code).toBe(code('failed'));
    expect(watched.stderr).toContain(`${WORKFLOW_IDS.postgresRecovery} was cancelled`);
    expect(json(watched)).toMatchObject({ status: 'cancelled', exit: 1 });
    noStackTrace(watched);
  });
});

test('a failed recovery exits 1 naming the failure; input the workflow refuses exits 2', async () => {
  await withWorker(async () => {
    restoreFails = true;
    try {
      const failed = await cli([
        'recover',
        'total-database-loss',
        '--target',
        'controller',
        '--confirm',
        '--json',
      ]);
      expect(failed.code).toBe(code('failed'));
      expect(json(failed)).toMatchObject({ status: 'failed', type: 'RestoreVerificationFailed', exit: 1 });
      expect(failed.stderr).toContain('tasks_task has 9 rows, the manifest says 10');
      noStackTrace(failed);
    } finally {
      restoreFails = false;
    }
    const refused = await cli(['recover', 'total-database-loss', '--backup', 'last-tuesday', '--json']);
    expect(refused.code).toBe(code('bad-input'));
    expect(json(refused)).toMatchObject({ type: 'InvalidInput', exit: 2 });
    noStackTrace(refused);
  });
});

test('status names an activity the server is retrying, its attempt and its last failure', async () => {
  await withWorker(async () => {
    restoreRetries = true;
    try {
      await suite.env.client.workflow.start(totalDatabaseLoss, {
        taskQueue,
        workflowId: WORKFLOW_IDS.postgresRecovery,
        args: [{ targets: ['controller'] }],
      });
      // The first attempt fails at once; the second starts 2 s later (the retry policy).
      let status: CliRun | undefined;
      for (let i = 0; i < 30; i++) {
        status = await cli(['status', WORKFLOW_IDS.postgresRecovery, '--json']);
        if ((json(status).retrying as unknown[]).length > 0) break;
        await new Promise((r) => setTimeout(r, 1000));
      }
      expect(json(status!).retrying).toEqual([
        expect.objectContaining({
          activity: 'restoreIntoStaging',
          attempt: expect.any(Number),
          maximumAttempts: 10,
          lastFailure: expect.stringContaining('ECONNREFUSED 127.0.0.1:9'),
        }),
      ]);
      const words = await cli(['status', WORKFLOW_IDS.postgresRecovery]);
      expect(words.stdout + words.stderr).toMatch(
        /↻ restoreIntoStaging: attempt \d+ of 10 — last failure: connect ECONNREFUSED 127\.0\.0\.1:9/,
      );
    } finally {
      restoreRetries = false;
    }
  });
});

test("status and watch show a long activity's heartbeated meter: amount, percentage, time left", async () => {
  await withWorker(async () => {
    restoreDownloads = true;
    try {
      await suite.env.client.workflow.start(totalDatabaseLoss, {
        taskQueue,
        workflowId: WORKFLOW_IDS.postgresRecovery,
        args: [{ targets: ['controller'], confirm: true }],
      });
      let status: CliRun | undefined;
      for (let i = 0; i < 30; i++) {
        status = await cli(['status', WORKFLOW_IDS.postgresRecovery, '--json']);
        if ((json(status).meters as unknown[]).length > 0) break;
        await new Promise((r) => setTimeout(r, 500));
      }
      expect(json(status!).meters).toEqual([
        {
          activityId: expect.any(String),
          activityType: 'restoreIntoStaging',
          meter: {
            what: 'downloading kohakku-controller.dump',
            unit: 'bytes',
            done: expect.any(Number),
            total: DOWNLOAD.size,
          },
        },
      ]);
      // Not a terminal: a plain line when the meter shows, then at most every 15 s, with the time
      // left once a second reading (heartbeats reach the server every 5 s) has moved: watched
      // until it comes, then interrupted.
      const watched = await cli(['watch', WORKFLOW_IDS.postgresRecovery], { interruptAfter: ' left' });
      expect(watched.code).toBe(code('interrupted'));
      const lines = watched.stdout.split('\n').filter((l) => l.includes('… downloading'));
      expect(lines[0]).toMatch(
        /^ {4}… downloading kohakku-controller\.dump: [\d.]+ (B|KiB|MiB) of 100\.0 MiB \(\d+ %\)/,
      );
      expect(lines.at(-1)).toMatch(/of 100\.0 MiB \(\d+ %\), about \d+ (s|min \d+ s) left$/);
      noStackTrace(watched);
    } finally {
      restoreDownloads = false;
    }
  });
});

test('backups says when a store is missing or empty, in words and as JSON', async () => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'cli-backups-'));
  const settings = { S3_ACCESS_KEY: 'x', S3_SECRET_KEY: 'y', BACKUP_STORE: 'dir' };
  const missing = await cli(['backups', '--json'], {
    env: { ...settings, BACKUP_DIR: path.join(root, 'nowhere') },
  });
  expect(missing.code).toBe(0);
  expect(json(missing)).toMatchObject({ stores: [{ store: 'primary', state: 'missing' }], sets: [] });
  const empty = await cli(['backups'], { env: { ...settings, BACKUP_DIR: root } });
  expect(empty.code).toBe(0);
  expect(empty.stdout).toContain(`primary: no backups in ${root}`);
  const bad = await cli(['backups', '--json'], { env: { S3_ACCESS_KEY: 'x' } });
  expect(bad.code).toBe(code('bad-input'));
  expect(bad.stderr).toContain('S3_SECRET_KEY');
  noStackTrace(bad);
});

test('schedules list gives the cron back, in words; pause says "paused"', async () => {
  const settings = {
    S3_ACCESS_KEY: 'x',
    S3_SECRET_KEY: 'y',
    BACKUP_STORE: 'dir',
    BACKUP_DIR: os.tmpdir(),
    BACKUP_SCHEDULE_CRON: '30 2 * * 1-5',
    BACKUP_SCHEDULE_TIMEZONE: 'Asia/Tokyo',
  };
  const applied = await cli(['schedules', 'apply'], { env: settings });
  expect(applied.code).toBe(0);
  const list = await cli(['schedules', 'list', '--json'], { env: settings });
  expect(list.code).toBe(0);
  const nightly = (
    JSON.parse(list.stdout) as { id: string; crons: { cron: string; inWords: string }[]; timezone: string }[]
  ).find((s) => s.id === 'kohakku-dr-nightly-backup');
  expect(nightly).toMatchObject({ crons: [{ cron: '30 2 * * 1-5' }], timezone: 'Asia/Tokyo' });
  expect(nightly!.crons[0]!.inWords).toMatch(/02:30.*Monday through Friday/);
  const human = await cli(['schedules', 'list'], { env: settings });
  expect(human.stdout).toMatch(
    /kohakku-dr-nightly-backup: active\n\s+At 02:30.*\(Asia\/Tokyo\) — cron "30 2 \* \* 1-5"/,
  );
  const paused = await cli(['schedules', 'pause', '--note', 'cli test'], { env: settings });
  expect(paused.stdout).toContain('paused kohakku-dr-nightly-backup');
  await suite.env.client.schedule.getHandle('kohakku-dr-nightly-backup').delete();
});
