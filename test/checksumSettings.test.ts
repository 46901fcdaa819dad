/**
 * Table checksums do not depend on the session: a backup taken in UTC verifies, and a restore
 * compares equal, while the worker's sessions run in Asia/Tokyo (ALTER ROLE/DATABASE SET), in
 * America/Los_Angeles (PGOPTIONS in the worker's environment), with other DateStyle,
 * IntervalStyle, extra_float_digits, bytea_output and quote_all_identifiers. The same backup
 * checked the 0.1 way (unpinned) fails under the same conditions, so the pinning is what
 * makes it pass; and a 0.1 manifest still verifies where nothing changed.
 */
import { createDeps } from '../src/activities/deps';
import { compareTables, createPostgresActivities, tableStats } from '../src/activities/postgres';
import { postgresKit } from '../src/activities/postgresKit';
import { loadConfig, type Config } from '../src/config';
import { CHECKSUM_VERSION } from '../src/domain/checksums';
import { postgresManifestKey } from '../src/domain/layout';
import type { PostgresManifest } from '../src/domain/manifests';
import { withDatabase } from '../src/infra/database';
import { createCommandRunner } from '../src/infra/exec';
import { databases, freshKohakku, sql, stopKohakku, type TestKohakku } from './harness/kohakku';

let k: TestKohakku;
let config: Config;
let deps: ReturnType<typeof createDeps>;
const BACKUP = '20260301T000000Z';
const LEGACY = '20260301T000001Z';
const CONTROLLER = 'kohakku-controller';

const activities = () => createPostgresActivities({ config, exec: createCommandRunner(), store: deps.store });
const kit = () => postgresKit({ config, exec: createCommandRunner(), store: deps.store });

/** Hostile session settings for every new session of the worker's role and on the live databases. */
const TOKYO = [`TimeZone = 'Asia/Tokyo'`];
const EVERYTHING_ELSE = [
  `DateStyle = 'SQL, DMY'`,
  `IntervalStyle = 'sql_standard'`,
  `extra_float_digits = 0`,
  `bytea_output = 'escape'`,
  `quote_all_identifiers = on`,
];

async function setEverywhere(settings: string[]): Promise<void> {
  for (const s of settings) {
    await sql(k.stack, 'postgres', `ALTER ROLE postgres SET ${s}`);
    for (const db of [CONTROLLER, 'kohakku-dispatcher'])
      await sql(k.stack, 'postgres', `ALTER DATABASE "${db}" SET ${s}`);
  }
}

async function resetEverywhere(): Promise<void> {
  delete process.env.PGOPTIONS;
  await sql(k.stack, 'postgres', 'ALTER ROLE postgres RESET ALL');
  for (const db of [CONTROLLER, 'kohakku-dispatcher'])
    await sql(k.stack, 'postgres', `ALTER DATABASE "${db}" RESET ALL`);
}

beforeAll(async () => {
  k = await freshKohakku('tz', { tasks: 2000, briefs: 5 }, { agents: false });
  config = loadConfig({ ...k.workerEnv });
  deps = createDeps(config);
  // The reference schema has timestamptz but no bytea, float, interval, money, regclass or xml.
  await sql(
    k.stack,
    CONTROLLER,
    `CREATE TABLE dr_checksum_probe (
       id int PRIMARY KEY, at timestamptz, day date, span interval, ratio float8, blob bytea,
       price money, rel regclass, doc xml);
     INSERT INTO dr_checksum_probe
     SELECT i, timestamptz '2026-01-01 00:00:00+00' + i * interval '7 hours 13 minutes',
            date '2026-01-01' + i, i * interval '1 day 3 hours 4 minutes', i::float8 / 7,
            decode(md5(i::text), 'hex') || '\\x00ff0a'::bytea, (i * 1.25)::money,
            'tasks_task'::regclass, xmlelement(name probe, i)
       FROM generate_series(1, 200) i`,
  );
});

afterAll(async () => {
  if (!k) return;
  await resetEverywhere().catch(() => undefined);
  for (const db of await databases(k.stack))
    if (db.includes('__tz_')) await sql(k.stack, 'postgres', `DROP DATABASE "${db}" WITH (FORCE)`);
  await deps?.close();
  await stopKohakku(k);
});

/** What 0.1 would have recorded: the same dumps, checksums taken unpinned in a plain UTC session. */
async function writeLegacyManifest(manifest: PostgresManifest): Promise<void> {
  const legacy: PostgresManifest = { ...manifest, id: LEGACY, databases: [] };
  delete legacy.checksumVersion;
  delete legacy.globals;
  const kt = kit();
  for (const entry of (await kt.readManifest(BACKUP))!.databases) {
    const local = kt.localDumpPath('tz-legacy', entry.database);
    await kt.fetchVerifiedDump(entry, local);
    const into = `${entry.database}__tz_legacy`;
    expect(await kt.restoreAndCompare(entry, local, into, await kt.tocEntries(local, entry.key))).toEqual([]);
    const tables = await withDatabase(config, into, (c) => tableStats(c, { unpinned: true }));
    await sql(k.stack, 'postgres', `DROP DATABASE "${into}" WITH (FORCE)`);
    const old = { ...entry, tables };
    delete old.properties; // 0.1 recorded none
    legacy.databases.push(old);
  }
  await deps.store.putJson(postgresManifestKey(LEGACY), legacy);
}

/** The pinned backup verifies and restores equal; the 0.1 way on the same dumps does not. */
async function expectPinnedHoldsAndUnpinnedBreaks(label: string, unpinnedProblem: RegExp): Promise<void> {
  const pinned = await activities().verifyPostgresBackup({ backupId: BACKUP, verifyId: `tz-${label}` });
  expect(pinned).toEqual({ ok: true, problems: [], databases: 2 });

  const kt = kit();
  const entry = (await kt.readManifest(BACKUP))!.databases.find((d) => d.database === CONTROLLER)!;
  const local = kt.localDumpPath(`tz-${label}`, CONTROLLER);
  await kt.fetchVerifiedDump(entry, local);
  const into = `${CONTROLLER}__tz_compare`;
  expect(await kt.restoreAndCompare(entry, local, into, await kt.tocEntries(local, entry.key))).toEqual([]);
  // The same restored copy checked unpinned, as 0.1 did, in this environment: differs.
  const unpinned = await withDatabase(config, into, (c) => tableStats(c, { unpinned: true }));
  expect(compareTables(entry.tables, unpinned).join('; ')).toMatch(unpinnedProblem);
  await sql(k.stack, 'postgres', `DROP DATABASE "${into}" WITH (FORCE)`);

  const legacy = await activities().verifyPostgresBackup({
    backupId: LEGACY,
    verifyId: `tz-legacy-${label}`,
  });
  expect(legacy.ok).toBe(false);
  expect(legacy.problems.join('; ')).toMatch(unpinnedProblem);
}

test('a backup taken in UTC verifies and restores equal whatever the sessions are set to; the unpinned way fails', async () => {
  const manifest = await activities().backupPostgres({ backupId: BACKUP });
  expect(manifest.checksumVersion).toBe(CHECKSUM_VERSION);
  const controller = manifest.databases.find((d) => d.database === CONTROLLER)!;
  expect(controller.tables.map((t) => t.table)).toContain('public.dr_checksum_probe');
  // Checksum version 3: the probe's xml has no hash function, so its rows are checked by their
  // text (what the pinned settings are for); tasks_task's types all hash, so by the row hash.
  const method = (table: string) => controller.tables.find((t) => t.table === table)!.checksum.split(':')[0];
  expect(method('public.dr_checksum_probe')).toMatch(/^[0-9a-f]{32}$/);
  expect(method('public.tasks_task')).toBe('rowhash');
  await writeLegacyManifest(manifest);
  // Where nothing changed, the 0.1 manifest still verifies (compared the unpinned way).
  expect(await activities().verifyPostgresBackup({ backupId: LEGACY, verifyId: 'tz-legacy-plain' })).toEqual({
    ok: true,
    problems: [],
    databases: 2,
  });

  // A 0.1 manifest has no roles recorded: nothing to create, no error.
  expect(await activities().ensurePostgresGlobals({ backupId: LEGACY, recoveryId: 'tz-legacy' })).toEqual({
    createdRoles: [],
    existingRoles: [],
    membershipsAdded: [],
    skipped: [],
    rolesWithoutPassword: [],
  });

  // 1. Asia/Tokyo from ALTER ROLE (every new database, scratch ones too) and ALTER DATABASE.
  await setEverywhere(TOKYO);
  expect((await sql<{ TimeZone: string }>(k.stack, 'postgres', 'SHOW TimeZone'))[0]!.TimeZone).toBe(
    'Asia/Tokyo',
  );
  await expectPinnedHoldsAndUnpinnedBreaks('tokyo', /public\.tasks_task: checksum differs/);

  // 2. PGOPTIONS in the worker's environment (node-postgres and libpq both read it) beats ALTER ROLE.
  process.env.PGOPTIONS = '-c timezone=America/Los_Angeles';
  expect((await sql<{ TimeZone: string }>(k.stack, 'postgres', 'SHOW TimeZone'))[0]!.TimeZone).toBe(
    'America/Los_Angeles',
  );
  await expectPinnedHoldsAndUnpinnedBreaks('pgoptions', /public\.tasks_task: checksum differs/);

  // 3. Timezone back to UTC, every other output setting changed: only the probe table's types notice.
  await resetEverywhere();
  await setEverywhere(EVERYTHING_ELSE.filter((s) => !s.startsWith('quote_all')));
  await expectPinnedHoldsAndUnpinnedBreaks('styles', /public\.dr_checksum_probe: checksum differs/);

  // 4. All of it at once, quote_all_identifiers too (it renames every table in the unpinned list).
  await setEverywhere([...TOKYO, ...EVERYTHING_ELSE]);
  process.env.PGOPTIONS = '-c timezone=America/Los_Angeles -c extra_float_digits=-2';
  await expectPinnedHoldsAndUnpinnedBreaks('everything', /table public\.tasks_task missing/);
  await resetEverywhere();
});
