/**
 * The staged Postgres restore on real services, activities called directly: a verification
 * failure in one target never swaps the other; a prepared transaction blocks the swap within
 * seconds and names itself; a live database created after approval refuses the swap; a worker
 * SIGKILLed mid-swap never leaves a live database refusing connections; a retried swap after a
 * committed one changes nothing. Every check reads the live catalog and row fingerprints.
 */
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { Client } from 'pg';
import { createBackupStore } from '../src/infra/stores';
import { createPostgresActivities } from '../src/activities/postgres';
import { asideName, stagingName } from '../src/activities/postgresKit';
import type { SwapResult } from '../src/activities/postgresRestore';
import { loadConfig } from '../src/config';
import { postgresManifestKey } from '../src/domain/layout';
import type { PostgresManifest } from '../src/domain/manifests';
import type { PostgresTarget } from '../src/domain/targets';
import type { BackupStore } from '../src/infra/backupStore';
import { createCommandRunner } from '../src/infra/exec';
import {
  DIST,
  databases,
  dropDatabase,
  freshKohakku,
  health,
  pgClient,
  leavePreparedTransaction,
  rollbackPreparedTransactions,
  setPreparedTransactions,
  sql,
  stopKohakku,
  tableFingerprints,
  type TestKohakku,
} from './harness/kohakku';

const BACKUP_ID = '20261125T010203Z';
const CONTROLLER = 'kohakku-controller';
const DISPATCHER = 'kohakku-dispatcher';
const BOTH: PostgresTarget[] = ['controller', 'dispatcher'];
const GID = 'kohakku-swap-test-2pc';

let k: TestKohakku;
let pg: ReturnType<typeof createPostgresActivities>;
let store: BackupStore;
let atBackup: Record<string, Record<string, string>>;

beforeAll(async () => {
  await setPreparedTransactions(10);
  k = await freshKohakku('swap', { tasks: 2000, briefs: 5 }, { agents: false });
  const config = loadConfig({ ...k.workerEnv });
  store = createBackupStore(config);
  pg = createPostgresActivities({ config, exec: createCommandRunner(), store });
  atBackup = { controller: await fingerprints(CONTROLLER), dispatcher: await fingerprints(DISPATCHER) };
  await pg.backupPostgres({ backupId: BACKUP_ID });
  // Live data moves on after the backup, so a swap is visible in the rows.
  await sql(k.stack, CONTROLLER, `UPDATE tasks_task SET title = title || ' (after backup)' WHERE id <= 3`);
  await sql(k.stack, DISPATCHER, `INSERT INTO dispatcher_agent VALUES ('after-backup', 'host-9', now())`);
});

afterAll(async () => {
  if (k) await stopKohakku(k);
  await rollbackPreparedTransactions();
  await setPreparedTransactions('default');
});

const fingerprints = (database: string) => tableFingerprints(k.stack, database);

interface CatalogRow {
  oid: number;
  datallowconn: boolean;
  comment: string | null;
}

async function catalog(): Promise<Record<string, CatalogRow>> {
  const rows = await sql<CatalogRow & { datname: string }>(
    k.stack,
    'postgres',
    `SELECT datname, oid::int AS oid, datallowconn, shobj_description(oid, 'pg_database') AS comment FROM pg_database`,
  );
  return Object.fromEntries(rows.map(({ datname, ...r }) => [datname, r]));
}

/** What is live: catalog entries of both databases and their rows. */
async function liveSnapshot() {
  const all = await catalog();
  const names = await databases(k.stack);
  return {
    controller: all[CONTROLLER],
    dispatcher: all[DISPATCHER],
    controllerRows: names.includes(CONTROLLER) ? await fingerprints(CONTROLLER) : undefined,
    dispatcherRows: names.includes(DISPATCHER) ? await fingerprints(DISPATCHER) : undefined,
    drDatabases: names.filter((d) => d.includes('__dr_')),
  };
}

const stateOf = (row: CatalogRow) => ({
  oid: row.oid,
  allowConnections: row.datallowconn,
  comment: row.comment,
});

async function failureOf(work: Promise<unknown>): Promise<ApplicationFailure | Error> {
  const outcome = await work.then(
    () => undefined,
    (err: unknown) => err as Error,
  );
  if (!outcome) throw new Error('expected the activity to fail, it succeeded');
  return outcome;
}

const typeOf = (err: Error) => (err instanceof ApplicationFailure ? err.type : undefined);

async function expectHealthy(port: number): Promise<void> {
  const deadline = Date.now() + 10000;
  let status = await health(port);
  while (status !== 200 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 250));
    status = await health(port);
  }
  expect(status).toBe(200);
}

test('a target failing verification leaves every live database as it was, and cleanup leaves no staging copy', async () => {
  const recoveryId = 'swap-verification';
  const manifest = (await store.getJson<PostgresManifest>(postgresManifestKey(BACKUP_ID)))!;
  const tampered = structuredClone(manifest);
  const table = tampered.databases.find((d) => d.target === 'dispatcher')!.tables[0]!;
  table.checksum = '0'.repeat(32); // the backup store now disagrees with the dump
  await store.putJson(postgresManifestKey(BACKUP_ID), tampered);
  const before = await liveSnapshot();
  try {
    const staged = await pg.restoreIntoStaging({ backupId: BACKUP_ID, target: 'controller', recoveryId });
    expect(staged).toMatchObject({ staging: stagingName(CONTROLLER, recoveryId), resumed: false });
    const err = await failureOf(
      pg.restoreIntoStaging({ backupId: BACKUP_ID, target: 'dispatcher', recoveryId }),
    );
    expect(typeOf(err)).toBe('RestoreVerificationFailed');
    expect(err.message).toContain(`${table.table}: checksum differs`);
  } finally {
    await store.putJson(postgresManifestKey(BACKUP_ID), manifest);
  }
  const after = await liveSnapshot();
  expect(after.drDatabases).toEqual([stagingName(CONTROLLER, recoveryId)]); // the verified copy only
  expect({ ...after, drDatabases: [] }).toEqual({ ...before, drDatabases: [] });
  expect(await pg.liveDatabaseStates({ targets: BOTH })).toEqual([
    { target: 'controller', database: CONTROLLER, exists: true, ...stateOf(before.controller!) },
    { target: 'dispatcher', database: DISPATCHER, exists: true, ...stateOf(before.dispatcher!) },
  ]);

  expect(await pg.cleanupPostgresRestore({ recoveryId, targets: BOTH })).toEqual({
    droppedStaging: [stagingName(CONTROLLER, recoveryId)],
    allowConnectionsRestored: [],
  });
  expect(await pg.cleanupPostgresRestore({ recoveryId, targets: BOTH })).toEqual({
    droppedStaging: [],
    allowConnectionsRestored: [],
  });
  expect(await liveSnapshot()).toEqual(before);
});

test('a prepared transaction blocks the swap within seconds and is named; once rolled back both targets swap at once', async () => {
  const recoveryId = 'swap-prepared';
  for (const target of BOTH) await pg.restoreIntoStaging({ backupId: BACKUP_ID, target, recoveryId });
  await leavePreparedTransaction(CONTROLLER, GID);
  const before = await liveSnapshot();
  const stagingOids = await catalog();

  let started = Date.now();
  const checked = await failureOf(pg.checkSwapBlockers({ targets: BOTH, recoveryId }));
  expect(Date.now() - started).toBeLessThan(15000);
  expect(typeOf(checked)).toBe('SwapBlocked');
  expect(checked.message).toMatch(new RegExp(`'${GID}'.*database ${CONTROLLER}.*ROLLBACK PREPARED '${GID}'`));

  started = Date.now();
  const swap = { backupId: BACKUP_ID, targets: BOTH, recoveryId, replace: BOTH };
  const blocked = await failureOf(pg.swapInStaging(swap));
  expect(Date.now() - started).toBeLessThan(15000);
  expect(typeOf(blocked)).toBe('SwapBlocked');
  expect(blocked.message).toContain(`'${GID}'`);
  expect(await liveSnapshot()).toEqual(before);
  expect(before.controller?.datallowconn && before.dispatcher?.datallowconn).toBe(true);
  await expectHealthy(k.model.ports.controller);

  await sql(k.stack, CONTROLLER, `ROLLBACK PREPARED '${GID}'`);
  expect(await pg.checkSwapBlockers({ targets: BOTH, recoveryId })).toHaveLength(2);
  const results = await pg.swapInStaging(swap);
  expect(results).toEqual<SwapResult[]>([
    {
      target: 'controller',
      database: CONTROLLER,
      movedAsideTo: asideName(CONTROLLER, recoveryId),
      resumed: false,
    },
    {
      target: 'dispatcher',
      database: DISPATCHER,
      movedAsideTo: asideName(DISPATCHER, recoveryId),
      resumed: false,
    },
  ]);
  const now = await catalog();
  for (const db of [CONTROLLER, DISPATCHER]) {
    // The staging copy is live now; the old live database is aside with its data, both open.
    expect(now[db]).toMatchObject({ oid: stagingOids[stagingName(db, recoveryId)]!.oid, datallowconn: true });
    expect(now[asideName(db, recoveryId)]).toMatchObject({ oid: stagingOids[db]!.oid, datallowconn: true });
  }
  expect(await fingerprints(CONTROLLER)).toEqual(atBackup.controller);
  expect(await fingerprints(DISPATCHER)).toEqual(atBackup.dispatcher);
  expect(await fingerprints(asideName(CONTROLLER, recoveryId))).toEqual(before.controllerRows);
  expect(await fingerprints(asideName(DISPATCHER, recoveryId))).toEqual(before.dispatcherRows);
  await expectHealthy(k.model.ports.controller);
  await expectHealthy(k.model.ports.dispatcher);

  // Cleanup gives the new live databases the backup's comment (none) instead of the marker.
  expect(now[CONTROLLER]!.comment).toMatch(/verified/);
  expect(await pg.cleanupPostgresRestore({ recoveryId, targets: BOTH })).toEqual({
    droppedStaging: [],
    allowConnectionsRestored: [],
  });
  const cleaned = await catalog();
  expect([cleaned[CONTROLLER]!.comment, cleaned[DISPATCHER]!.comment]).toEqual([null, null]);
  expect(cleaned[asideName(CONTROLLER, recoveryId)]).toEqual(now[asideName(CONTROLLER, recoveryId)]);
});

const R3 = 'swap-after-approval';

test('a live database created after approval refuses the swap with LiveDataChanged, changing nothing', async () => {
  await dropDatabase(k.stack, DISPATCHER); // the disaster the approval was about
  const states = await pg.liveDatabaseStates({ targets: BOTH });
  const replace = states.filter((s) => s.exists).map((s) => s.target);
  expect(replace).toEqual(['controller']);
  for (const target of BOTH) await pg.restoreIntoStaging({ backupId: BACKUP_ID, target, recoveryId: R3 });
  // Meanwhile someone recreates the dispatcher's database and writes to it.
  await sql(k.stack, 'postgres', `CREATE DATABASE "${DISPATCHER}"`);
  await sql(
    k.stack,
    DISPATCHER,
    `CREATE TABLE notes (note text); INSERT INTO notes VALUES ('created after approval')`,
  );
  const before = await liveSnapshot();

  const err = await failureOf(
    pg.swapInStaging({ backupId: BACKUP_ID, targets: BOTH, recoveryId: R3, replace }),
  );
  expect(typeOf(err)).toBe('LiveDataChanged');
  expect(err.message).toContain(DISPATCHER);
  expect(await liveSnapshot()).toEqual(before);
  expect(before.drDatabases).not.toContain(asideName(CONTROLLER, R3));
});

/** Runs swapInStaging in a worker-like child process (the built dist/) so it can be SIGKILLed. */
function swapInChild(input: { targets: PostgresTarget[]; recoveryId: string; replace: PostgresTarget[] }) {
  const script = `
    const { loadConfig } = require(${JSON.stringify(path.join(DIST, 'config.js'))});
    const { createPostgresActivities } = require(${JSON.stringify(path.join(DIST, 'activities/postgres.js'))});
    const { createBackupStore } = require(${JSON.stringify(path.join(DIST, 'infra/stores.js'))});
    const { createCommandRunner } = require(${JSON.stringify(path.join(DIST, 'infra/exec.js'))});
    const config = loadConfig(process.env);
    const pg = createPostgresActivities({ config, exec: createCommandRunner(), store: createBackupStore(config) });
    pg.swapInStaging(JSON.parse(process.argv[1])).then(
      () => process.exit(0),
      (err) => { console.error(err.message); process.exit(1); },
    );`;
  const child = spawn(process.execPath, ['-e', script, JSON.stringify({ backupId: BACKUP_ID, ...input })], {
    env: { ...process.env, ...k.workerEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, exited, output: () => output };
}

/**
 * A real crash mid-swap: a session holds a lock on the live controller database (an uncommitted
 * COMMENT), so the child's rename waits; once the child has closed the live databases to new
 * connections it is SIGKILLed. Returns the lock holder, to release when the test says so.
 */
async function crashMidSwap(input: {
  targets: PostgresTarget[];
  recoveryId: string;
  replace: PostgresTarget[];
}): Promise<Client> {
  const holder = pgClient(k.stack, 'postgres');
  await holder.connect();
  await holder.query('BEGIN');
  await holder.query(`COMMENT ON DATABASE "${CONTROLLER}" IS 'held by the test'`);
  const run = swapInChild(input);
  const deadline = Date.now() + 30000;
  while ((await catalog())[CONTROLLER]!.datallowconn) {
    if (run.child.exitCode !== null) throw new Error(`the swap ended before the crash: ${run.output()}`);
    if (Date.now() > deadline) throw new Error(`the swap never closed ${CONTROLLER}: ${run.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  run.child.kill('SIGKILL');
  await run.exited;
  return holder;
}

test('a worker SIGKILLed mid-swap: the retried swap restores ALLOW_CONNECTIONS from the record and completes', async () => {
  const before = { controller: await fingerprints(CONTROLLER), dispatcher: await fingerprints(DISPATCHER) };
  const holder = await crashMidSwap({ targets: BOTH, recoveryId: R3, replace: BOTH });
  const crashed = await catalog();
  // What the crash left: live databases refusing connections, and the record of it.
  expect([crashed[CONTROLLER]!.datallowconn, crashed[DISPATCHER]!.datallowconn]).toEqual([false, false]);
  expect(crashed[stagingName(CONTROLLER, R3)]!.comment).toMatch(/allowConnections/);
  await holder.query('ROLLBACK');
  await holder.end();

  const results = await pg.swapInStaging({
    backupId: BACKUP_ID,
    targets: BOTH,
    recoveryId: R3,
    replace: BOTH,
  });
  expect(results.map((r) => [r.movedAsideTo, r.resumed])).toEqual([
    [asideName(CONTROLLER, R3), false],
    [asideName(DISPATCHER, R3), false],
  ]);
  const now = await catalog();
  // Every database open again; the moved-aside ones got their value from before the crash.
  for (const db of [CONTROLLER, DISPATCHER, asideName(CONTROLLER, R3), asideName(DISPATCHER, R3)])
    expect([db, now[db]!.datallowconn]).toEqual([db, true]);
  expect(now[asideName(CONTROLLER, R3)]!.oid).toBe(crashed[CONTROLLER]!.oid);
  expect(await fingerprints(asideName(DISPATCHER, R3))).toEqual(before.dispatcher); // the note written after approval
  expect(await fingerprints(DISPATCHER)).toEqual(atBackup.dispatcher);
  expect(await fingerprints(CONTROLLER)).toEqual(atBackup.controller);
  await expectHealthy(k.model.ports.controller);
});

test('a retried swap after a committed one returns resumed and changes nothing', async () => {
  const before = { catalog: await catalog(), live: await liveSnapshot() };
  const results = await pg.swapInStaging({
    backupId: BACKUP_ID,
    targets: BOTH,
    recoveryId: R3,
    replace: BOTH,
  });
  expect(results).toEqual<SwapResult[]>([
    { target: 'controller', database: CONTROLLER, movedAsideTo: asideName(CONTROLLER, R3), resumed: true },
    { target: 'dispatcher', database: DISPATCHER, movedAsideTo: asideName(DISPATCHER, R3), resumed: true },
  ]);
  expect({ catalog: await catalog(), live: await liveSnapshot() }).toEqual(before);
  expect(await pg.cleanupPostgresRestore({ recoveryId: R3, targets: BOTH })).toEqual({
    droppedStaging: [],
    allowConnectionsRestored: [],
  });
});

test('a worker SIGKILLed mid-swap: the cleanup restores ALLOW_CONNECTIONS and drops the staging copy', async () => {
  const recoveryId = 'swap-crash-cleanup';
  await pg.restoreIntoStaging({ backupId: BACKUP_ID, target: 'controller', recoveryId });
  const before = await liveSnapshot();
  const holder = await crashMidSwap({ targets: ['controller'], recoveryId, replace: ['controller'] });
  expect((await catalog())[CONTROLLER]!.datallowconn).toBe(false);
  await holder.query('ROLLBACK');
  await holder.end();

  const cleaned = await pg.cleanupPostgresRestore({ recoveryId, targets: BOTH });
  expect(cleaned.allowConnectionsRestored.sort()).toEqual(
    [CONTROLLER, stagingName(CONTROLLER, recoveryId)].sort(),
  );
  expect(cleaned.droppedStaging).toEqual([stagingName(CONTROLLER, recoveryId)]);
  const after = await liveSnapshot();
  expect(after).toEqual({ ...before, drDatabases: before.drDatabases.filter((d) => !d.includes('staging')) });
  expect(after.drDatabases.filter((d) => d.includes('__dr_staging_'))).toEqual([]);
  await expectHealthy(k.model.ports.controller);
});

/** A session on the maintenance database holding a lock on the live controller database (an uncommitted COMMENT). */
async function lockController(applicationName: string): Promise<{ holder: Client; pid: number }> {
  const holder = pgClient(k.stack, 'postgres');
  await holder.connect();
  await holder.query(`SET application_name = '${applicationName}'`);
  const pid = (await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
  await holder.query('BEGIN');
  await holder.query(`COMMENT ON DATABASE "${CONTROLLER}" IS 'held by the test'`);
  return { holder, pid };
}

const controllerSwap = (recoveryId: string): Parameters<typeof pg.swapInStaging>[0] => ({
  backupId: BACKUP_ID,
  targets: ['controller'],
  recoveryId,
  replace: ['controller'],
});

test('a cancelled swap puts ALLOW_CONNECTIONS back before it ends', async () => {
  const recoveryId = 'swap-cancelled';
  await pg.restoreIntoStaging({ backupId: BACKUP_ID, target: 'controller', recoveryId });
  const before = await liveSnapshot();
  const { holder } = await lockController('swap-test-cancel');
  const env = new MockActivityEnvironment();
  const swap = failureOf(env.run(pg.swapInStaging, controllerSwap(recoveryId)));
  const deadline = Date.now() + 20000;
  while ((await catalog())[CONTROLLER]!.datallowconn && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 50));
  expect((await catalog())[CONTROLLER]!.datallowconn).toBe(false); // mid-swap
  env.cancel();
  const err = await swap;
  await holder.query('ROLLBACK');
  await holder.end();
  expect(err.name).toMatch(/Cancel/);
  expect(await liveSnapshot()).toEqual(before);
  expect((await catalog())[stagingName(CONTROLLER, recoveryId)]).toMatchObject({
    datallowconn: true,
    comment: expect.not.stringMatching(/allowConnections/),
  });
  await pg.cleanupPostgresRestore({ recoveryId, targets: BOTH });
});

test('a swap that cannot take its locks gives up after about a minute, heartbeating, names the session and undoes everything', async () => {
  const recoveryId = 'swap-bounded';
  await pg.restoreIntoStaging({ backupId: BACKUP_ID, target: 'controller', recoveryId });
  const before = await liveSnapshot();
  const { holder, pid } = await lockController('swap-test-lock-holder');
  const env = new MockActivityEnvironment();
  const beats: number[] = [];
  env.on('heartbeat', () => beats.push(Date.now()));
  const started = Date.now();
  let err: Error;
  try {
    err = await failureOf(env.run(pg.swapInStaging, controllerSwap(recoveryId)));
  } finally {
    await holder.query('ROLLBACK');
    await holder.end();
  }
  const elapsed = Date.now() - started;
  expect(elapsed).toBeGreaterThan(55000);
  expect(elapsed).toBeLessThan(90000);
  expect(typeOf(err)).toBe('SwapBlocked');
  expect(err.message).toContain(`pid ${pid} (user postgres, application "swap-test-lock-holder"`);
  // Never 20 s (the heartbeat timeout) without a heartbeat.
  const gaps = [started, ...beats, Date.now()]
    .slice(1)
    .map((t, i, all) => t - (i === 0 ? started : all[i - 1]!));
  expect(Math.max(...gaps)).toBeLessThan(10000);
  expect(await liveSnapshot()).toEqual(before);
  expect((await catalog())[CONTROLLER]!.datallowconn).toBe(true);
  expect(await pg.cleanupPostgresRestore({ recoveryId, targets: BOTH })).toEqual({
    droppedStaging: [stagingName(CONTROLLER, recoveryId)],
    allowConnectionsRestored: [],
  });
}, 120000);

test('checkSwapBlockers names every blocker for a worker role that is not superuser', async () => {
  const role = 'kohakku_dr_limited';
  await sql(k.stack, 'postgres', `CREATE ROLE ${role} LOGIN`);
  const superuser = pgClient(k.stack, CONTROLLER);
  await superuser.connect();
  try {
    await superuser.query(`SET application_name = 'swap-test-superuser'`);
    const pid = (await superuser.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    const limited = createPostgresActivities({
      config: loadConfig({ ...k.workerEnv, POSTGRES_USER: role }),
      exec: createCommandRunner(),
      store,
    });
    const err = await failureOf(
      limited.checkSwapBlockers({ targets: ['controller'], recoveryId: 'swap-limited' }),
    );
    expect(typeOf(err)).toBe('SwapBlocked');
    expect(err.message).toContain(`${role} lacks CREATEDB`);
    expect(err.message).toContain(`${role} does not own database ${CONTROLLER} (owner postgres)`);
    expect(err.message).toMatch(
      new RegExp(`session pid ${pid} \\(user postgres, application "swap-test-superuser".*cannot be ended`),
    );
  } finally {
    await superuser.end();
    await sql(k.stack, 'postgres', `DROP ROLE ${role}`);
  }
});
