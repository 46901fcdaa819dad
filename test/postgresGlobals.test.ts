/**
 * Total database loss onto a FRESH PostgreSQL server: the backup carries the application's
 * roles, memberships and each database's owner, encoding, settings, grants and comment;
 * ensurePostgresGlobals puts the roles back (never touching an existing one), the restore puts
 * the rest back, and the data matches the source. A failed recovery's cleanup drops exactly
 * the roles it created; a non-superuser worker creates roles without superuser-only attributes.
 */
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client } from 'pg';
import { createDeps } from '../src/activities/deps';
import { createPostgresActivities } from '../src/activities/postgres';
import { loadConfig, type Config } from '../src/config';
import type { PostgresTarget } from '../src/domain/targets';
import { createCommandRunner } from '../src/infra/exec';
import { freePort } from '../src/infra/processes';
import { freshKohakku, sql, stopKohakku, tableFingerprints, type TestKohakku } from './harness/kohakku';

const PG_BIN = '/usr/lib/postgresql/15/bin';
const BACKUP = '20260302T000000Z';
const CONTROLLER = 'kohakku-controller';
const DISPATCHER = 'kohakku-dispatcher';
const APP_ROLES = ['kohakku_app', 'kohakku_repl', 'kohakku_ro'];

let k: TestKohakku;
let deps: ReturnType<typeof createDeps>;
const clusters: FreshCluster[] = [];

interface FreshCluster {
  port: number;
  dir: string;
  query<T extends object = Record<string, unknown>>(
    database: string,
    text: string,
    params?: unknown[],
  ): Promise<T[]>;
  stop(): Promise<void>;
}

/** A brand-new PostgreSQL cluster (initdb + pg_ctl) on a free port, run as the `postgres` user when we are root. */
async function startFreshCluster(options: { encoding: string; locale: string }): Promise<FreshCluster> {
  const asRoot = process.getuid?.() === 0;
  const runAs: { uid?: number; gid?: number } = asRoot
    ? {
        uid: Number(execFileSync('id', ['-u', 'postgres']).toString().trim()),
        gid: Number(execFileSync('id', ['-g', 'postgres']).toString().trim()),
      }
    : {};
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kohakku-dr-fresh-pg-'));
  await fs.chmod(dir, 0o755);
  if (runAs.uid !== undefined && runAs.gid !== undefined) await fs.chown(dir, runAs.uid, runAs.gid);
  const data = path.join(dir, 'data');
  const port = await freePort();
  execFileSync(
    path.join(PG_BIN, 'initdb'),
    [
      '-D',
      data,
      '-U',
      'postgres',
      '--auth=trust',
      '-E',
      options.encoding,
      `--locale=${options.locale}`,
      '--no-sync',
    ],
    { ...runAs, stdio: 'pipe' },
  );
  execFileSync(
    path.join(PG_BIN, 'pg_ctl'),
    [
      'start',
      '-w',
      '-t',
      '60',
      '-D',
      data,
      '-l',
      path.join(dir, 'postgres.log'),
      '-o',
      `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`,
    ],
    { ...runAs, stdio: 'pipe' },
  );
  const cluster: FreshCluster = {
    port,
    dir,
    async query<T extends object>(database: string, text: string, params: unknown[] = []) {
      const c = new Client({ host: '127.0.0.1', port, user: 'postgres', database });
      await c.connect();
      try {
        return (await c.query<T>(text, params)).rows;
      } finally {
        await c.end();
      }
    },
    async stop() {
      execFileSync(path.join(PG_BIN, 'pg_ctl'), ['stop', '-m', 'immediate', '-D', data], {
        ...runAs,
        stdio: 'pipe',
      });
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
  clusters.push(cluster);
  return cluster;
}

function configOn(cluster: FreshCluster, user = 'postgres'): Config {
  return loadConfig({ ...k.workerEnv, POSTGRES_PORT: String(cluster.port), POSTGRES_USER: user });
}

function activitiesOn(cluster: FreshCluster, user = 'postgres') {
  return createPostgresActivities({
    config: configOn(cluster, user),
    exec: createCommandRunner(),
    store: deps.store,
  });
}

/**
 * The total-database-loss workflow's Postgres phases after the roles, in its order and with its
 * inputs (nothing is live, so nothing is approved for replacement), called directly against the
 * fresh server: the worker's POSTGRES_* settings would point every phase of the workflow at it,
 * but its service phases need the reference services, which run against the stack's own server.
 */
async function restoreBoth(cluster: FreshCluster, recoveryId: string): Promise<void> {
  const a = activitiesOn(cluster);
  const targets: PostgresTarget[] = ['controller', 'dispatcher'];
  for (const target of targets) await a.preparePostgresRestore({ backupId: BACKUP, target, recoveryId });
  for (const target of targets) await a.restoreIntoStaging({ backupId: BACKUP, target, recoveryId });
  expect((await a.checkSwapBlockers({ targets, recoveryId })).every((l) => !l.exists)).toBe(true);
  await a.swapInStaging({ backupId: BACKUP, targets, recoveryId, replace: [] });
  await a.cleanupPostgresRestore({ recoveryId, targets });
}

let sourceFingerprints: Record<string, Record<string, string>>;

beforeAll(async () => {
  k = await freshKohakku(
    'globals',
    { tasks: 1500, briefs: 5 },
    { agents: false, controller: false, dispatcher: false, monitor: false },
  );
  deps = createDeps(loadConfig({ ...k.workerEnv }));
  const s = (db: string, text: string) => sql(k.stack, db, text);
  await s(
    'postgres',
    `DROP ROLE IF EXISTS kohakku_app; DROP ROLE IF EXISTS kohakku_ro; DROP ROLE IF EXISTS kohakku_repl;
     CREATE ROLE kohakku_app LOGIN CONNECTION LIMIT 20 PASSWORD 'app-secret-do-not-store';
     CREATE ROLE kohakku_ro NOLOGIN;
     CREATE ROLE kohakku_repl LOGIN REPLICATION;
     COMMENT ON ROLE kohakku_ro IS 'read-only reporting';
     ALTER ROLE kohakku_app SET lock_timeout = '3s';
     ALTER ROLE kohakku_app SET search_path = "$user", public;
     GRANT kohakku_ro TO kohakku_app;`,
  );
  for (const db of [CONTROLLER, DISPATCHER]) {
    await s(
      'postgres',
      `ALTER DATABASE "${db}" OWNER TO kohakku_app;
       ALTER DATABASE "${db}" SET statement_timeout = '5s';
       REVOKE CONNECT ON DATABASE "${db}" FROM PUBLIC;
       GRANT CONNECT ON DATABASE "${db}" TO kohakku_app;`,
    );
    await s(
      db,
      `DO $$ DECLARE r record; BEGIN
         FOR r IN SELECT format('%I.%I', schemaname, tablename) AS t FROM pg_tables WHERE schemaname = 'public' LOOP
           EXECUTE 'ALTER TABLE ' || r.t || ' OWNER TO kohakku_app';
         END LOOP;
         FOR r IN SELECT p.oid::regprocedure AS f FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public' LOOP
           EXECUTE 'ALTER FUNCTION ' || r.f || ' OWNER TO kohakku_app';
         END LOOP;
       END $$;`,
    );
  }
  await s(
    'postgres',
    `ALTER ROLE kohakku_app IN DATABASE "${CONTROLLER}" SET work_mem = '8MB';
     COMMENT ON DATABASE "${CONTROLLER}" IS 'Kohakku Controller: tasks and skills';
     GRANT CONNECT, TEMPORARY ON DATABASE "${CONTROLLER}" TO kohakku_ro WITH GRANT OPTION;`,
  );
  await s(CONTROLLER, 'GRANT SELECT ON tasks_task TO kohakku_ro');
  sourceFingerprints = {
    [CONTROLLER]: await tableFingerprints(k.stack, CONTROLLER),
    [DISPATCHER]: await tableFingerprints(k.stack, DISPATCHER),
  };
  const manifest = await createPostgresActivities({
    config: loadConfig({ ...k.workerEnv }),
    exec: createCommandRunner(),
    store: deps.store,
  }).backupPostgres({ backupId: BACKUP });
  const text = JSON.stringify(manifest);
  expect(text).not.toMatch(/app-secret|SCRAM-SHA-256/); // never a password or its hash
  expect(manifest.globals?.roles.map((r) => r.name)).toEqual(expect.arrayContaining(APP_ROLES));
  expect(manifest.globals?.roles.some((r) => r.name.startsWith('pg_'))).toBe(false);
});

afterAll(async () => {
  for (const c of clusters) await c.stop().catch(() => undefined);
  await deps?.close();
  if (!k) return;
  for (const db of [CONTROLLER, DISPATCHER])
    await sql(k.stack, 'postgres', `DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`);
  for (const r of APP_ROLES)
    await sql(k.stack, 'postgres', `DROP ROLE IF EXISTS ${r}`).catch(() => undefined);
  await stopKohakku(k);
});

test('total loss onto a fresh server: roles, owners, encoding, settings, grants, comment and data come back', async () => {
  // The fresh server's default encoding (SQL_ASCII) differs from the backup's (UTF8).
  const fresh = await startFreshCluster({ encoding: 'SQL_ASCII', locale: 'C' });
  const a = activitiesOn(fresh);
  const recoveryId = 'fresh-server-1';

  const report = await a.ensurePostgresGlobals({ backupId: BACKUP, recoveryId });
  expect(report.createdRoles.sort()).toEqual(APP_ROLES);
  expect(report.existingRoles).toEqual(['postgres']);
  expect(report.membershipsAdded).toEqual(['kohakku_app in kohakku_ro']);
  expect(report.skipped).toEqual([]);
  expect(report.rolesWithoutPassword.sort()).toEqual(['kohakku_app', 'kohakku_repl']);

  // A retry (same recovery) finds its own roles whole and creates nothing new.
  const oids = await fresh.query('postgres', `SELECT rolname, oid::text FROM pg_roles ORDER BY 1`);
  expect(await a.ensurePostgresGlobals({ backupId: BACKUP, recoveryId })).toEqual({
    ...report,
    membershipsAdded: [],
  });
  expect(await fresh.query('postgres', `SELECT rolname, oid::text FROM pg_roles ORDER BY 1`)).toEqual(oids);

  await restoreBoth(fresh, recoveryId);

  // Roles: attributes, settings, membership; no password.
  const roles = await fresh.query<Record<string, unknown>>(
    'postgres',
    `SELECT r.rolname, r.rolcanlogin, r.rolreplication, r.rolsuper, r.rolconnlimit, r.rolconfig,
            a.rolpassword IS NULL AS nopassword
       FROM pg_roles r JOIN pg_authid a ON a.oid = r.oid WHERE r.rolname LIKE 'kohakku%' ORDER BY 1`,
  );
  expect(roles).toEqual([
    {
      rolname: 'kohakku_app',
      rolcanlogin: true,
      rolreplication: false,
      rolsuper: false,
      rolconnlimit: 20,
      rolconfig: ['lock_timeout=3s', 'search_path="$user", public'],
      nopassword: true,
    },
    {
      rolname: 'kohakku_repl',
      rolcanlogin: true,
      rolreplication: true,
      rolsuper: false,
      rolconnlimit: -1,
      rolconfig: null,
      nopassword: true,
    },
    {
      rolname: 'kohakku_ro',
      rolcanlogin: false,
      rolreplication: false,
      rolsuper: false,
      rolconnlimit: -1,
      rolconfig: null,
      nopassword: true,
    },
  ]);
  expect(
    await fresh.query('postgres', `SELECT pg_has_role('kohakku_app', 'kohakku_ro', 'MEMBER') AS member`),
  ).toEqual([{ member: true }]);

  for (const db of [CONTROLLER, DISPATCHER]) {
    const [props] = await fresh.query<Record<string, unknown>>(
      'postgres',
      `SELECT pg_get_userbyid(datdba) AS owner, pg_encoding_to_char(encoding) AS encoding, datcollate,
              has_database_privilege('kohakku_app', datname, 'CONNECT') AS app_connect,
              has_database_privilege('kohakku_repl', datname, 'CONNECT') AS public_connect
         FROM pg_database WHERE datname = $1`,
      [db],
    );
    expect(props).toEqual({
      owner: 'kohakku_app',
      encoding: 'UTF8',
      datcollate: 'C',
      app_connect: true,
      public_connect: false,
    });
    const owners = await fresh.query<{ owner: string }>(
      db,
      `SELECT DISTINCT tableowner AS owner FROM pg_tables WHERE schemaname = 'public'`,
    );
    expect(owners).toEqual([{ owner: 'kohakku_app' }]);
    expect(
      await tableFingerprints({ ...k.stack, postgres: { ...k.stack.postgres, port: fresh.port } }, db),
    ).toEqual(sourceFingerprints[db]);
  }
  const settings = await fresh.query(
    'postgres',
    `SELECT coalesce(r.rolname, '-') AS role, s.setconfig FROM pg_db_role_setting s
       JOIN pg_database d ON d.oid = s.setdatabase LEFT JOIN pg_roles r ON r.oid = s.setrole
      WHERE d.datname = $1 ORDER BY 1`,
    [CONTROLLER],
  );
  expect(settings).toEqual([
    { role: '-', setconfig: ['statement_timeout=5s'] },
    { role: 'kohakku_app', setconfig: ['work_mem=8MB'] },
  ]);
  expect(
    await fresh.query(
      'postgres',
      `SELECT has_database_privilege('kohakku_ro', $1, 'TEMPORARY WITH GRANT OPTION') AS temp,
              has_database_privilege('kohakku_ro', $1, 'CREATE') AS create_`,
      [CONTROLLER],
    ),
  ).toEqual([{ temp: true, create_: false }]);
  expect(
    await fresh.query(CONTROLLER, `SELECT has_table_privilege('kohakku_ro', 'tasks_task', 'SELECT') AS sel`),
  ).toEqual([{ sel: true }]);
  // The database comment: the backup's, once the cleanup has replaced the swap's marker.
  expect(
    await fresh.query(
      'postgres',
      `SELECT datname, shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE datname LIKE 'kohakku%' ORDER BY 1`,
    ),
  ).toEqual([
    { datname: CONTROLLER, comment: 'Kohakku Controller: tasks and skills' },
    { datname: DISPATCHER, comment: null },
  ]);

  // Completed: the marks become the backup's comments; a later recovery finds every role existing.
  expect(await a.cleanupPostgresGlobals({ recoveryId, backupId: BACKUP, outcome: 'completed' })).toEqual({
    droppedRoles: [],
    kept: [],
  });
  expect(
    await fresh.query(
      'postgres',
      `SELECT rolname, shobj_description(oid, 'pg_authid') AS comment FROM pg_roles WHERE rolname LIKE 'kohakku%' ORDER BY 1`,
    ),
  ).toEqual([
    { rolname: 'kohakku_app', comment: null },
    { rolname: 'kohakku_repl', comment: null },
    { rolname: 'kohakku_ro', comment: 'read-only reporting' },
  ]);
  const again = await a.ensurePostgresGlobals({ backupId: BACKUP, recoveryId: 'fresh-server-2' });
  expect(again).toEqual({
    createdRoles: [],
    existingRoles: ['kohakku_app', 'kohakku_repl', 'kohakku_ro', 'postgres'],
    membershipsAdded: [],
    skipped: [],
    rolesWithoutPassword: [],
  });
  expect(await fresh.query('postgres', `SELECT rolname, oid::text FROM pg_roles ORDER BY 1`)).toEqual(oids);
});

test('a failed recovery drops exactly the roles it created; a non-superuser worker leaves superuser-only attributes out; missing roles stop a restore first', async () => {
  const fresh = await startFreshCluster({ encoding: 'UTF8', locale: 'C' });
  // The worker may create roles but is no superuser; kohakku_ro exists already, set up differently.
  await fresh.query(
    'postgres',
    `CREATE ROLE dr_worker LOGIN CREATEROLE CREATEDB;
     CREATE ROLE kohakku_ro NOLOGIN CONNECTION LIMIT 3;
     COMMENT ON ROLE kohakku_ro IS 'the local DBA made this';`,
  );
  const a = activitiesOn(fresh, 'dr_worker');
  const recoveryId = 'fresh-server-failing';

  // Before the roles exist a restore refuses, naming the role and the step that creates it.
  const refused = await a.restoreIntoStaging({ backupId: BACKUP, target: 'controller', recoveryId }).then(
    () => undefined,
    (e: unknown) => e as { type?: string; message: string },
  );
  expect(refused?.type).toBe('InvalidInput');
  expect(refused?.message).toMatch(/"kohakku_app".*ensurePostgresGlobals/);
  expect(
    await fresh.query('postgres', `SELECT datname FROM pg_database WHERE datname LIKE 'kohakku%'`),
  ).toEqual([]);

  const before = await fresh.query<{ rolname: string; oid: string; comment: string | null }>(
    'postgres',
    `SELECT rolname, oid::text, shobj_description(oid, 'pg_authid') AS comment, rolconnlimit FROM pg_roles ORDER BY 1`,
  );
  const report = await a.ensurePostgresGlobals({ backupId: BACKUP, recoveryId });
  expect(report.createdRoles.sort()).toEqual(['kohakku_app', 'kohakku_repl']);
  expect(report.existingRoles.sort()).toEqual(['kohakku_ro', 'postgres']);
  expect(report.membershipsAdded).toEqual(['kohakku_app in kohakku_ro']);
  expect(report.skipped).toEqual([
    { role: 'kohakku_repl', reason: expect.stringMatching(/created without REPLICATION/) as unknown },
  ]);
  expect(
    await fresh.query(
      'postgres',
      `SELECT rolname, rolreplication, rolcanlogin FROM pg_roles WHERE rolname IN ('kohakku_app', 'kohakku_repl') ORDER BY 1`,
    ),
  ).toEqual([
    { rolname: 'kohakku_app', rolreplication: false, rolcanlogin: true },
    { rolname: 'kohakku_repl', rolreplication: false, rolcanlogin: true },
  ]);

  // Something outside the recovery comes to depend on one created role.
  await fresh.query('postgres', `CREATE DATABASE kohakku_other OWNER kohakku_repl`);
  const first = await a.cleanupPostgresGlobals({ recoveryId, backupId: BACKUP, outcome: 'failed' });
  expect(first.droppedRoles).toEqual(['kohakku_app']);
  expect(first.kept).toEqual([
    { role: 'kohakku_repl', reason: expect.stringMatching(/kohakku_other/) as unknown },
  ]);
  // Existing roles untouched: same oids, comments and limits as before, except the kept one.
  const after = await fresh.query(
    'postgres',
    `SELECT rolname, oid::text, shobj_description(oid, 'pg_authid') AS comment, rolconnlimit FROM pg_roles WHERE rolname <> 'kohakku_repl' ORDER BY 1`,
  );
  expect(after).toEqual(before);

  await fresh.query('postgres', `DROP DATABASE kohakku_other`);
  expect(await a.cleanupPostgresGlobals({ recoveryId, backupId: BACKUP, outcome: 'failed' })).toEqual({
    droppedRoles: ['kohakku_repl'],
    kept: [],
  });
  expect(
    await fresh.query(
      'postgres',
      `SELECT rolname, oid::text, shobj_description(oid, 'pg_authid') AS comment, rolconnlimit FROM pg_roles ORDER BY 1`,
    ),
  ).toEqual(before);
  // Safe to repeat.
  expect(await a.cleanupPostgresGlobals({ recoveryId, backupId: BACKUP, outcome: 'failed' })).toEqual({
    droppedRoles: [],
    kept: [],
  });
});
