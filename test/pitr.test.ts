/**
 * Point-in-time recovery, for real: the stack's PostgreSQL archiving through pgBackRest into the
 * backup bucket on the TLS backup server (VersityGW), set up by the pitrSetup workflow; a full
 * base backup, proven by the nightly's scratch recovery of the window; writes go on; a "bad deploy" deletes tasks and drops a dispatcher table. Then:
 *   - recovery to an instant T before the bad deploy: every row committed before T there, the
 *     deleted rows and the dropped table back, nothing committed after T, the old data directory
 *     moved aside intact, the services healthy;
 *   - the worker SIGKILLed during `pgbackrest restore`, and during WAL replay: a new worker
 *     completes to the same instant;
 *   - with objects: the versioned bucket rewound to T with the databases (versions kept); without
 *     versioning, the nearest object backup set before T restored (keys created since left);
 *   - to a named restore point, and to `latest` (the end of the archive); to a quiet instant (no
 *     transaction archived after it): the end of the archive, proven replayed to its last segment;
 *   - a target outside the recoverable window, and a WAL segment missing from the repository:
 *     refused with a typed error before anything is touched (same server process, same data
 *     directory, nothing moved aside);
 *   - a restore that fails half-way: the original data directory is put back and PostgreSQL and
 *     the services started again — the data exactly as before — and the error says so;
 *   - retention by pgBackRest's expire, chosen by kohakku-dr: the newest verified point's base
 *     backup and WAL kept whatever their age; `latest` prefers the verified base backup.
 */
import { existsSync, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { WorkflowFailedError } from '@temporalio/client';
import { MockActivityEnvironment } from '@temporalio/testing';
import { switchAndAwaitArchive } from '../src/infra/database';
import { processesMatching } from '../src/infra/processes';
import { hashObject } from '../src/infra/s3';
import { controlPostgres } from '../src/stack/stack';
import { loadConfig } from '../src/config';
import { createBackupStore } from '../src/infra/stores';
import { createPitrActivities } from '../src/activities/pitr';
import { createCommandRunner } from '../src/infra/exec';
import { walPosition } from '../src/infra/pgbackrest';
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

/** Starts a point-in-time recovery, approved, with short deadlines (the test Kohakku is small). */
async function startRecovery(workflowId: string, input: PointInTimeRecoveryInput) {
  const client = await temporalClient(k.stack);
  return client.workflow.start(pointInTimeRecovery, {
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
  });
}

async function recover(workflowId: string, input: PointInTimeRecoveryInput) {
  return (await startRecovery(workflowId, input)).result().then(
    (r) => ({ result: r as PointInTimeRecoveryResult, error: undefined }),
    (error: unknown) => ({ result: undefined, error }),
  );
}

/** SIGKILLs the worker as soon as a process whose arguments hold every one of `parts` runs; starts a new one. */
async function killWorkerDuring(parts: string[], what: string): Promise<void> {
  const deadline = Date.now() + 180000;
  while ((await processesMatching(parts)).length === 0) {
    if (Date.now() > deadline) throw new Error(`${what} never started: ${worker.output()}`);
    await pause(20);
  }
  await worker.kill();
  worker = await startWorker(k.workerEnv);
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
  const handle = await startRecovery('test-pitr-killed', { target: T });
  const config = k.workerEnv.PITR_PGBACKREST_CONFIG!;
  await killWorkerDuring([`--config=${config}`, 'restore'], 'pgbackrest restore');
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

test('objects without versioning: the nearest object backup set before T comes back with the databases, keys created since are left, and the result says so', async () => {
  const s3 = minioClient(k.stack);
  const content = async (key: string) => (await hashObject(s3, 'kohakku', key)).sha256;
  // The nightly above wrote a backup set (objects included) before T4.
  await s3.setBucketVersioning('kohakku', { Status: 'Suspended' });
  try {
    const atSet = await content('skills/skill-1.tar');
    await pause(1200);
    const T4 = await serverNow();
    await pause(1200);
    await s3.putObject('kohakku', 'skills/skill-1.tar', Buffer.from('overwritten after T4'));
    await s3.putObject('kohakku', 'skills/created-after-T4.tar', Buffer.from('new after T4'));
    await archived();

    const { result, error } = await recover('test-pitr-objects-unversioned', { target: T4, objects: true });
    expect(error && (error as WorkflowFailedError).cause?.message).toBeUndefined();
    expect(result!.objects).toBeUndefined();
    expect(result!.objectSet).toMatchObject({
      verified: true,
      note: expect.stringMatching(
        /keeps no versions: .*nearest before the target; keys created after it are left in place/,
      ),
    });
    expect(Date.parse(result!.objectSet!.createdAt)).toBeLessThanOrEqual(Date.parse(T4));
    expect(result!.objectSet!.restored.movedAside).toBeGreaterThanOrEqual(1);
    expect(result!.steps.find((st) => st.name === 'objects as of the target')?.detail).toMatch(
      /NO VERSIONING on the bucket: objects from backup set/,
    );
    expect(await content('skills/skill-1.tar')).toBe(atSet);
    // Left in place (nothing deleted); the overwritten content kept aside.
    expect(await content('skills/created-after-T4.tar')).toBeDefined();
    const aside = `${result!.objectSet!.restored.asidePrefix}skills/skill-1.tar`;
    const chunks: Buffer[] = [];
    for await (const chunk of await s3.getObject('kohakku', aside)) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe('overwritten after T4');
  } finally {
    await s3.setBucketVersioning('kohakku', { Status: 'Enabled' });
  }
});

test('an instant with no transaction archived after it (a quiet database): PostgreSQL cannot stop there, so the end of the archive is recovered and proven replayed to its last segment; nothing after the instant', async () => {
  // Nothing else commits meanwhile: no agents, the services write only when asked, no autovacuum.
  await sql(k.stack, 'postgres', `ALTER SYSTEM SET autovacuum = off`);
  await sql(k.stack, 'postgres', `SELECT pg_reload_conf()`);
  try {
    const expected = await skills();
    await pause(1200);
    const T5 = await serverNow();
    // The window ends when the newest segment reached the repository: one more is archived, with
    // a WAL record that commits nothing (a switch alone writes no segment when WAL is idle).
    await pause(1200);
    await sql(k.stack, 'postgres', `SELECT pg_logical_emit_message(false, 'kohakku-dr-test', 'quiet')`);
    await archived();
    const { result, error } = await recover('test-pitr-quiet', { target: T5 });
    expect(error && (error as WorkflowFailedError).cause?.message).toBeUndefined();
    expect(result!.endOfArchive).toMatchObject({ endedAt: expect.stringMatching(/on timeline \d+/) });
    expect(result!.steps.find((st) => st.name === 'start postgres and replay to the target')?.detail).toMatch(
      /no transaction after the target was archived, so PostgreSQL was recovered to the end of the archive instead and replayed all of it/,
    );
    expect(Date.parse(result!.lastCommit!)).toBeLessThanOrEqual(Date.parse(T5));
    expect(await skills()).toEqual(expected);
  } finally {
    await sql(k.stack, 'postgres', `ALTER SYSTEM RESET autovacuum`);
    await sql(k.stack, 'postgres', `SELECT pg_reload_conf()`);
  }
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

test('the worker SIGKILLed during WAL replay: a new worker waits out the replay and completes to the same instant', async () => {
  // WAL enough that the replay lasts a while: a million rows, committed before the target.
  await sql(k.stack, CONTROLLER, `CREATE TABLE pitr_bulk (id int PRIMARY KEY, pad text)`);
  await sql(
    k.stack,
    CONTROLLER,
    `INSERT INTO pitr_bulk SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 1000000) g`,
  );
  await sql(
    k.stack,
    CONTROLLER,
    `INSERT INTO tasks_skill (name, object_key, created_at) VALUES ('pitr-6-before-replay', 'skills/r', now())`,
  );
  await pause(1200);
  const T3 = await serverNow();
  await pause(1200);
  await sql(
    k.stack,
    CONTROLLER,
    `INSERT INTO tasks_skill (name, object_key, created_at) VALUES ('pitr-7-after-replay', 'skills/s', now())`,
  );
  await archived();
  const expected = [...(await skills()).filter((n) => n !== 'pitr-7-after-replay')];

  const handle = await startRecovery('test-pitr-killed-replaying', {
    target: T3,
    replayDeadlineSeconds: 600,
  });
  // PostgreSQL's startup process is replaying (its title names the segment): the worker dies then.
  await killWorkerDuring(['startup recovering'], 'WAL replay');
  const result = (await handle.result()) as PointInTimeRecoveryResult;
  expect(result.targetTime).toBe(T3);
  expect(Date.parse(result.lastCommit!)).toBeLessThanOrEqual(Date.parse(T3));
  expect(await skills()).toEqual(expected);
  expect(await sql(k.stack, CONTROLLER, 'SELECT count(*)::int AS n FROM pitr_bulk')).toEqual([
    { n: 1000000 },
  ]);
  for (const service of ['controller', 'dispatcher'] as const)
    expect(await health(k.model.ports[service])).toBe(200);
  // Later recoveries would replay it all again: it goes (its WAL stays in the archive).
  await sql(k.stack, CONTROLLER, 'DROP TABLE pitr_bulk');
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

test('retention expires base backups past BACKUP_RETENTION_DAYS with pgBackRest, never the newest verified recovery point: its base backup and its WAL stay until a newer point is verified', async () => {
  // Real activities on the worker's settings (no workflow: `asOf` is moved 40 days on).
  const config = loadConfig(k.workerEnv);
  const pitr = createPitrActivities({
    config,
    exec: createCommandRunner(),
    store: createBackupStore(config),
  });
  const verifiedFirst = (await pitr.pitrWindow()).backups;
  expect(verifiedFirst).toHaveLength(1);
  expect(verifiedFirst[0]!.verdict).toMatchObject({ ok: true });
  const first = verifiedFirst[0]!.label;
  // Two more full backups, neither verified; within retention nothing goes.
  const second = await run(pitrBackup, 'test-pitr-full-2', [{ type: 'full' }]);
  expect(second.retention).toMatchObject({ expire: [], newestVerified: first });
  const thirdScheduled = Date.now();
  const third = await run(pitrBackup, 'test-pitr-full-3', [{ type: 'full' }]);
  const labels = async () => (await pitr.pitrWindow()).backups.map((b) => b.label);
  expect(await labels()).toEqual([first, second.backup.label, third.backup.label]);
  // The activity retried after its attempt had finished (a worker lost before the result was
  // recorded): it returns that backup, and takes no fourth.
  const retried = await new MockActivityEnvironment({ attempt: 2, scheduledTimestampMs: thirdScheduled }).run(
    pitr.pgbackrestBackup,
    { type: 'full' as const },
  );
  expect(retried).toMatchObject({ label: third.backup.label, resumed: true });
  expect(await labels()).toEqual([first, second.backup.label, third.backup.label]);

  // latest prefers the verified base backup, and names the newer ones it passed over.
  const plan = await pitr.planPointInTimeRecovery({ target: 'latest', recoveryId: 'test-pitr-plan-latest' });
  expect(plan.backup.label).toBe(first);
  expect(plan.choice).toMatch(/newest verified base backup; newer passed over: .*not verified yet/);

  const in40Days = new Date(Date.now() + 40 * 86400_000).toISOString();
  const expiry = await pitr.expireBaseBackups({ asOf: in40Days, retentionDays: 7 });
  expect(expiry.expire).toEqual([second.backup.label]);
  expect(expiry.kept).toEqual(
    expect.arrayContaining([
      { full: first, reason: expect.stringMatching(/newest verified recovery point/) },
      { full: third.backup.label, reason: 'newest full backup' },
    ]),
  );
  expect(await labels()).toEqual([first, third.backup.label]);
  // The verified point's WAL is all there still: an instant right after it plans without a gap.
  const fromFirst = await pitr.planPointInTimeRecovery({ target: T, recoveryId: 'test-pitr-plan-T' });
  expect(fromFirst.backup.label).toBe(first);

  // Once the newest base backup is verified, the first chain and the WAL only it needed go.
  const verdict = await pitr.verifyRecoveryWindow({ verifyId: 'test-pitr-verify-third' });
  expect(verdict).toMatchObject({ ok: true, baseBackup: third.backup.label });
  const again = await pitr.expireBaseBackups({ asOf: in40Days, retentionDays: 7 });
  expect(again).toMatchObject({ expire: [first], newestVerified: third.backup.label });
  expect(await labels()).toEqual([third.backup.label]);
  const window = await pitr.pitrWindow();
  expect(walPosition(window.wal.min!)!.segment).toBeGreaterThan(walPosition(fromFirst.walFrom)!.segment);
  const outside = await pitr
    .planPointInTimeRecovery({ target: T, recoveryId: 'test-pitr-plan-T-again' })
    .catch((err: unknown) => err);
  expect(failureType(outside)).toBe('TargetOutsideWindow');
});
