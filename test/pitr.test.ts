/**
 * Point-in-time recovery, for real: the stack's PostgreSQL archiving through pgBackRest into the
 * backup bucket on the TLS backup server (VersityGW), set up by the pitrSetup workflow; a full
 * base backup, proven by the nightly's scratch recovery of the window; writes go on; a "bad deploy" deletes tasks and drops a dispatcher table. Then:
 *   - recovery to an instant T before the bad deploy: every row committed before T there, the
 *     deleted rows and the dropped table back, nothing committed after T, the old data directory
 *     moved aside intact, the services healthy;
 *   - the worker SIGKILLed during `pgbackrest restore`: a new worker completes to the same instant;
 *   - with objects: the versioned bucket rewound to T with the databases (versions kept);
 *   - to a named restore point, and to `latest` (the end of the archive);
 *   - a target outside the recoverable window, and a WAL segment missing from the repository:
 *     refused with a typed error before anything is touched (same server process, same data
 *     directory, nothing moved aside);
 *   - a restore that fails half-way: the original data directory is put back and PostgreSQL and
 *     the services started again — the data exactly as before — and the error says so.
 */
import { existsSync, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { WorkflowFailedError } from '@temporalio/client';
import { switchAndAwaitArchive } from '../src/infra/database';
import { processesMatching } from '../src/infra/processes';
import { hashObject } from '../src/infra/s3';
import { controlPostgres } from '../src/stack/stack';
import { loadConfig } from '../src/config';
import { createBackupStore } from '../src/infra/stores';
import {
  markRestorePoint,
  nightlyBackup,
  pitrBackup,
  pitrSetup,
  pointInTimeRecovery,
} from '../src/workflows';
import type {
  PointInTimeRecoveryInput,
  PointInTimeRecoveryResult,
} from '../src/workflows/pointInTimeRecovery';
import {
  failureType,
  freshKohakku,
  health,
  minioClient,
  pgClient,
  sql,
  startWorker,
  stopKohakku,
  tableFingerprints,
  temporalClient,
  testStack,
  type TestKohakku,
  type WorkerProcess,
} from './harness/kohakku';

const CONTROLLER = 'kohakku-controller';
const DISPATCHER = 'kohakku-dispatcher';

let k: TestKohakku;
let worker: WorkerProcess;

beforeAll(async () => {
  // Versioning on Kohakku's bucket, so objects can be rewound with the databases.
  k = await freshKohakku('pitr', { tasks: 2000, briefs: 5, versioning: true }, { agents: false });
  worker = await startWorker(k.workerEnv);
});

afterAll(async () => {
  await worker?.stop();
  if (k) await stopKohakku(k);
  // Later test files run without archiving.
  const stack = testStack();
  for (const name of ['archive_mode', 'archive_command', 'archive_timeout', 'track_commit_timestamp'])
    await sql(stack, 'postgres', `ALTER SYSTEM RESET ${name}`).catch(() => undefined);
  controlPostgres(stack, 'restart');
});

const run = async <W extends typeof pitrSetup | typeof pitrBackup | typeof markRestorePoint>(
  workflow: W,
  workflowId: string,
  args: Parameters<W>,
) => {
  const client = await temporalClient(k.stack);
  return (await client.workflow.execute(workflow, {
    taskQueue: k.workerEnv.KOHAKKU_DR_TASK_QUEUE!,
    workflowId,
    args,
  } as never)) as Awaited<ReturnType<W>>;
};

async function recover(workflowId: string, input: PointInTimeRecoveryInput) {
  const client = await temporalClient(k.stack);
  return client.workflow
    .execute(pointInTimeRecovery, {
      taskQueue: k.workerEnv.KOHAKKU_DR_TASK_QUEUE!,
      workflowId,
      args: [
        {
          confirm: true,
          checkInGraceSeconds: 1,
          startDeadlineSeconds: 60,
          registrationDeadlineSeconds: 10,
          replayDeadlineSeconds: 300,
          ...input,
        },
      ],
    })
    .then(
      (r) => ({ result: r as PointInTimeRecoveryResult, error: undefined }),
      (error: unknown) => ({ result: undefined, error }),
    );
}

const serverNow = async () =>
  (await sql<{ t: Date }>(k.stack, 'postgres', 'SELECT clock_timestamp() AS t'))[0]!.t.toISOString();
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits until everything written so far is in the repository (a segment switch, archived). */
async function archived(): Promise<void> {
  const c = pgClient(k.stack, 'postgres');
  await c.connect();
  try {
    await switchAndAwaitArchive(c);
  } finally {
    await c.end();
  }
}

async function skills(): Promise<string[]> {
  return (
    await sql<{ name: string }>(
      k.stack,
      CONTROLLER,
      `SELECT name FROM tasks_skill WHERE name LIKE 'pitr-%' ORDER BY name`,
    )
  ).map((r) => r.name);
}

/** The postmaster's pid: a recovery that touched nothing leaves the same server process running. */
const serverPid = async () =>
  (await fs.readFile(path.join(k.stack.postgres.dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0];
const asideDirs = async () =>
  (await fs.readdir(path.dirname(k.stack.postgres.dataDir))).filter((f) => f.includes('.kohakku-dr-'));

let T: string;
let tasksAtT: number;

test('pitr setup switches archiving on (PostgreSQL restarted through the adapter), idempotently; a full base backup opens the window', async () => {
  const setup = await run(pitrSetup, 'test-pitr-setup', []);
  expect(setup.settingsChanged).toEqual(
    expect.arrayContaining(['archive_mode', 'archive_command', 'archive_timeout', 'track_commit_timestamp']),
  );
  expect(setup.restarted).toBe(true);
  expect(setup.checked).toMatch(/successfully archived/);
  const config = await fs.stat(k.workerEnv.PITR_PGBACKREST_CONFIG!);
  expect(config.mode & 0o777).toBe(0o600);
  const again = await run(pitrSetup, 'test-pitr-setup-again', []);
  expect(again).toMatchObject({ settingsChanged: [], restarted: false });

  const backup = await run(pitrBackup, 'test-pitr-full', [{ type: 'full' }]);
  expect(backup.backup).toMatchObject({ type: 'full' });
  expect(backup.window.backups.map((b) => b.label)).toEqual([backup.backup.label]);
  expect(Date.parse(backup.window.earliest!)).toBeLessThanOrEqual(Date.parse(backup.window.latest!));
});

test('the nightly backup proves the recovery window: the newest base backup plus the archived WAL restored into a scratch server, checked, removed', async () => {
  await sql(
    k.stack,
    CONTROLLER,
    `INSERT INTO tasks_skill (name, object_key, created_at) VALUES ('pitr-0-window', 'skills/w', now())`,
  );
  const [{ committed }] = await sql<{ committed: Date }>(k.stack, CONTROLLER, `SELECT now() AS committed`);
  await archived();
  const client = await temporalClient(k.stack);
  const nightly = await client.workflow.execute(nightlyBackup, {
    taskQueue: k.workerEnv.KOHAKKU_DR_TASK_QUEUE!,
    workflowId: 'test-pitr-nightly',
  });
  const window = nightly.recoveryWindow!;
  expect(window).toMatchObject({ ok: true, problems: [] });
  expect(window.skipped).toBeUndefined();
  // The scratch recovery replayed up to (at least) the commit archived above.
  expect(Date.parse(window.reachedLastCommit!)).toBeGreaterThanOrEqual(committed!.getTime() - 1000);
  const workDir = k.workerEnv.PITR_WORK_DIR!;
  expect((await fs.readdir(workDir)).filter((d) => d.startsWith('verify-'))).toEqual([]);
  const recorded = await createBackupStore(loadConfig(k.workerEnv)).getJson<{ ok: boolean }>(
    'pitr/verification.json',
  );
  expect(recorded).toMatchObject({ ok: true, baseBackup: window.baseBackup });
  await sql(k.stack, CONTROLLER, `DELETE FROM tasks_skill WHERE name = 'pitr-0-window'`);
});

test('to an instant before a bad deploy: rows committed before T back, the deleted rows and the dropped table too, nothing after T; the old data directory aside', async () => {
  await sql(
    k.stack,
    CONTROLLER,
    `INSERT INTO tasks_skill (name, object_key, created_at) VALUES ('pitr-1-before', 'skills/a', now())`,
  );
  await sql(k.stack, DISPATCHER, `INSERT INTO dispatcher_agent VALUES ('pitr-agent', 'host-p', now())`);
  await pause(1200);
  T = await serverNow();
  tasksAtT = Number(
    (await sql<{ n: string }>(k.stack, CONTROLLER, 'SELECT count(*) AS n FROM tasks_task'))[0]!.n,
  );
  await pause(1200);
  // The bad deploy.
  await sql(
    k.stack,
    CONTROLLER,
    `INSERT INTO tasks_skill (name, object_key, created_at) VALUES ('pitr-2-after', 'skills/b', now())`,
  );
  await sql(k.stack, CONTROLLER, `DELETE FROM tasks_task WHERE id <= 100`);
  await sql(k.stack, DISPATCHER, `DROP TABLE dispatcher_dispatch`);
  await archived();
  const pidBefore = await serverPid();

  const { result, error } = await recover('test-pitr-instant', { target: T });
  expect(error).toBeUndefined();
  expect(result!.targetTime).toBe(T);
  expect(Date.parse(result!.lastCommit!)).toBeLessThanOrEqual(Date.parse(T));
  expect(await skills()).toEqual(['pitr-1-before']);
  expect(
    Number((await sql<{ n: string }>(k.stack, CONTROLLER, 'SELECT count(*) AS n FROM tasks_task'))[0]!.n),
  ).toBe(tasksAtT);
  expect(await sql(k.stack, CONTROLLER, 'SELECT id FROM tasks_task WHERE id = 1')).toHaveLength(1);
  expect(
    await sql(k.stack, DISPATCHER, `SELECT to_regclass('dispatcher_dispatch') IS NOT NULL AS back`),
  ).toEqual([{ back: true }]);
  expect(
    await sql(k.stack, DISPATCHER, `SELECT container FROM dispatcher_agent WHERE container = 'pitr-agent'`),
  ).toHaveLength(1);
  expect(await serverPid()).not.toBe(pidBefore);
  // The data directory as it was is aside, whole.
  expect(existsSync(path.join(result!.movedAsideTo, 'PG_VERSION'))).toBe(true);
  expect(existsSync(path.join(result!.movedAsideTo, 'global', 'pg_control'))).toBe(true);
  for (const service of ['controller', 'dispatcher'] as const)
    expect(await health(k.model.ports[service])).toBe(200);
  expect(result!.registrations.complete).toBe(true);
  expect(result!.steps.find((s) => s.name === 'cleanup')?.status).toBe('done');
});

test('the worker SIGKILLed during pgbackrest restore: a new worker ends the orphaned restore, resumes it (--delta) and completes to the same instant', async () => {
  const client = await temporalClient(k.stack);
  const handle = await client.workflow.start(pointInTimeRecovery, {
    taskQueue: k.workerEnv.KOHAKKU_DR_TASK_QUEUE!,
    workflowId: 'test-pitr-killed',
    args: [
      {
        target: T,
        confirm: true,
        checkInGraceSeconds: 1,
        startDeadlineSeconds: 60,
        registrationDeadlineSeconds: 10,
      },
    ],
  });
  const config = k.workerEnv.PITR_PGBACKREST_CONFIG!;
  const deadline = Date.now() + 120000;
  while ((await processesMatching([`--config=${config}`, 'restore'])).length === 0) {
    if (Date.now() > deadline) throw new Error(`pgbackrest restore never started: ${worker.output()}`);
    await pause(20);
  }
  await worker.kill();
  worker = await startWorker(k.workerEnv);
  const result = (await handle.result()) as PointInTimeRecoveryResult;
  expect(result.steps.find((s) => s.name === 'pgbackrest restore')?.detail).toMatch(/resumed with --delta/);
  expect(await skills()).toEqual(['pitr-1-before']);
  expect(
    Number((await sql<{ n: string }>(k.stack, CONTROLLER, 'SELECT count(*) AS n FROM tasks_task'))[0]!.n),
  ).toBe(tasksAtT);
  expect(
    await sql(k.stack, DISPATCHER, `SELECT to_regclass('dispatcher_dispatch') IS NOT NULL AS back`),
  ).toEqual([{ back: true }]);
  expect(await processesMatching([`--config=${config}`, 'restore'])).toEqual([]);
  for (const service of ['controller', 'dispatcher'] as const)
    expect(await health(k.model.ports[service])).toBe(200);
});

test('with objects: both databases and the versioned bucket back to T — changed and deleted objects as they were, one created later hidden, every version kept', async () => {
  const s3 = minioClient(k.stack);
  const content = async (key: string) => (await hashObject(s3, 'kohakku', key)).sha256;
  const before = { one: await content('briefs/task-1.md'), two: await content('briefs/task-2.md') };
  await pause(1200);
  const T2 = await serverNow();
  await pause(1200);
  await s3.putObject('kohakku', 'briefs/task-1.md', Buffer.from('overwritten after T2'));
  await s3.removeObject('kohakku', 'briefs/task-2.md');
  await s3.putObject('kohakku', 'briefs/created-after.md', Buffer.from('new after T2'));
  await sql(
    k.stack,
    CONTROLLER,
    `INSERT INTO tasks_skill (name, object_key, created_at) VALUES ('pitr-objects-after', 'skills/o', now())`,
  );
  await archived();

  const { result, error } = await recover('test-pitr-objects', { target: T2, objects: true });
  expect(error).toBeUndefined();
  expect(result!.objects).toMatchObject({ versioned: true, rewound: 2, hidden: 1 });
  expect(await content('briefs/task-1.md')).toBe(before.one);
  expect(await content('briefs/task-2.md')).toBe(before.two);
  await expect(s3.statObject('kohakku', 'briefs/created-after.md')).rejects.toMatchObject({
    code: 'NotFound',
  });
  // Nothing deleted: the later versions are all there, under the new ones.
  const versions: { name: string; isDeleteMarker: boolean }[] = [];
  for await (const v of s3.listObjects('kohakku', 'briefs/', true, { IncludeVersion: true }))
    versions.push(v as never);
  expect(
    versions
      .filter((v) => v.name === 'briefs/created-after.md')
      .map((v) => v.isDeleteMarker)
      .sort(),
  ).toEqual([false, true]);
  expect(versions.filter((v) => v.name === 'briefs/task-1.md').length).toBe(3); // seeded, overwritten, given back
  expect(await skills()).toEqual(['pitr-1-before']);
});

test('to a named restore point, and to latest', async () => {
  await sql(
    k.stack,
    CONTROLLER,
    `INSERT INTO tasks_skill (name, object_key, created_at) VALUES ('pitr-3-before-mark', 'skills/c', now())`,
  );
  const point = await run(markRestorePoint, 'test-pitr-mark', [{ name: 'before deploy 43' }]);
  expect(point.name).toBe('before deploy 43');
  await sql(
    k.stack,
    CONTROLLER,
    `INSERT INTO tasks_skill (name, object_key, created_at) VALUES ('pitr-4-after-mark', 'skills/d', now())`,
  );
  await archived();

  const named = await recover('test-pitr-named', { restorePoint: 'before deploy 43' });
  expect(named.error).toBeUndefined();
  expect(named.result!.target).toContain('before deploy 43');
  expect(await skills()).toEqual(['pitr-1-before', 'pitr-3-before-mark']);

  await sql(
    k.stack,
    CONTROLLER,
    `INSERT INTO tasks_skill (name, object_key, created_at) VALUES ('pitr-5-last', 'skills/e', now())`,
  );
  await archived();
  const latest = await recover('test-pitr-latest', { target: 'latest' });
  expect(latest.error).toBeUndefined();
  expect(await skills()).toEqual(['pitr-1-before', 'pitr-3-before-mark', 'pitr-5-last']);
});

test('a target outside the window and a WAL segment missing from the repository: refused before anything is touched', async () => {
  for (let i = 0; i < 2; i++) {
    await sql(
      k.stack,
      CONTROLLER,
      `INSERT INTO tasks_skill (name, object_key, created_at) VALUES ('pitr-x-${i}', 'skills/x', now())`,
    );
    await archived();
  }
  const pidBefore = await serverPid();
  const asideBefore = await asideDirs();
  const skillsBefore = await skills();

  const outside = await recover('test-pitr-outside', { target: '2001-01-01T00:00:00Z' });
  expect(outside.error).toBeInstanceOf(WorkflowFailedError);
  expect(failureType(outside.error)).toBe('TargetOutsideWindow');
  expect((outside.error as WorkflowFailedError).cause?.message).toMatch(
    /outside the recoverable window .* live data untouched/,
  );

  // A segment the recovery would need, removed from the repository (kept, to put back): the first
  // one of the newest timeline, which has at least two (not the newest: its end is the archive's).
  const archiveRoot = path.join(
    k.stack.backupS3.dataDir,
    'kohakku-backups',
    'pgbackrest',
    'archive',
    'kohakku',
  );
  const segments: string[] = [];
  const walk = async (dir: string) => {
    for (const e of await fs.readdir(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else if (/^[0-9A-F]{24}-[0-9a-f]{40}/.test(e.name)) segments.push(p);
    }
  };
  await walk(archiveRoot);
  segments.sort((a, b) => path.basename(a).localeCompare(path.basename(b)));
  const newestTimeline = path.basename(segments[segments.length - 1]!).slice(0, 8);
  const onNewest = segments.filter((f) => path.basename(f).startsWith(newestTimeline));
  expect(onNewest.length).toBeGreaterThanOrEqual(2);
  const victim = onNewest[0]!;
  const kept = `${k.stack.dir}/${path.basename(victim)}`;
  await fs.rename(victim, kept);
  try {
    const missing = await recover('test-pitr-missing-wal', { target: 'latest' });
    expect(failureType(missing.error)).toBe('BackupCorrupt');
    expect((missing.error as WorkflowFailedError).cause?.message).toContain(
      `WAL segment ${path.basename(victim).slice(0, 24)} is missing`,
    );
  } finally {
    await fs.rename(kept, victim);
  }
  expect(await serverPid()).toBe(pidBefore);
  expect(await asideDirs()).toEqual(asideBefore);
  expect(await skills()).toEqual(skillsBefore);
  for (const service of ['controller', 'dispatcher'] as const)
    expect(await health(k.model.ports[service])).toBe(200);
});

test('a restore that fails half-way (a base backup file gone from the repository): the original data directory back, PostgreSQL and the services running, data exactly as before, and the error says so', async () => {
  const before = {
    controller: await tableFingerprints(k.stack, CONTROLLER),
    dispatcher: await tableFingerprints(k.stack, DISPATCHER),
  };
  const backupRoot = path.join(
    k.stack.backupS3.dataDir,
    'kohakku-backups',
    'pgbackrest',
    'backup',
    'kohakku',
  );
  const label = (await fs.readdir(backupRoot))
    .filter((d) => /^\d{8}-\d{6}F$/.test(d))
    .sort()
    .pop()!;
  // The restore stops at the first file it cannot find: take PG_VERSION of the base backup away.
  const victim = (await fs.readdir(path.join(backupRoot, label, 'pg_data'))).find((f) =>
    f.startsWith('PG_VERSION'),
  )!;
  const victimPath = path.join(backupRoot, label, 'pg_data', victim);
  const kept = path.join(k.stack.dir, `kept-${victim}`);
  await fs.rename(victimPath, kept);
  let failed: Awaited<ReturnType<typeof recover>>;
  try {
    failed = await recover('test-pitr-restore-fails', { target: 'latest' });
  } finally {
    await fs.rename(kept, victimPath);
  }
  expect(failureType(failed.error)).toBe('BackupCorrupt');
  const message = (failed.error as WorkflowFailedError).cause?.message ?? '';
  expect(message).toMatch(/missing file/);
  expect(message).toMatch(/which the cleanup takes back/);
  expect(message).toMatch(/cleanup: original data directory back/);
  // Production as it was found: the same data, served, the services healthy.
  expect(await tableFingerprints(k.stack, CONTROLLER)).toEqual(before.controller);
  expect(await tableFingerprints(k.stack, DISPATCHER)).toEqual(before.dispatcher);
  expect(existsSync(path.join(k.stack.postgres.dataDir, 'PG_VERSION'))).toBe(true);
  for (const service of ['controller', 'dispatcher'] as const)
    expect(await health(k.model.ports[service])).toBe(200);
  // The half-restored directory is kept for a look, named as such.
  expect((await asideDirs()).some((d) => d.includes('.kohakku-dr-failed-'))).toBe(true);
});
