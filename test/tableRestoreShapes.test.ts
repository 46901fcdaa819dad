/**
 * Table restore over the shapes a real schema has, activities called directly on real
 * PostgreSQL: an identity column, a STORED generated column, a view, a materialized view and a
 * rule built on a table, a view over tasks_task, and a foreign key from another schema
 * (audit.task_notes → public.tasks_task). Each test makes the fault for real and checks the live
 * end state (row fingerprints, catalog), never a log line.
 */
import { ApplicationFailure } from '@temporalio/common';
import { createPostgresActivities } from '../src/activities/postgres';
import { tableChecksum } from '../src/activities/postgresKit';
import { loadConfig } from '../src/config';
import { backupIdAt } from '../src/domain/backupIds';
import { CHECKSUM_VERSION } from '../src/domain/checksums';
import { ErrorType } from '../src/domain/errors';
import { postgresManifestKey } from '../src/domain/layout';
import type { PostgresManifest } from '../src/domain/manifests';
import { withDatabase } from '../src/infra/database';
import { createCommandRunner } from '../src/infra/exec';
import { createBackupStore } from '../src/infra/stores';
import { freshKohakku, sql, stopKohakku, tableFingerprints, type TestKohakku } from './harness/kohakku';

const DB = 'kohakku-controller';
let k: TestKohakku;
let pg: ReturnType<typeof createPostgresActivities>;
let backupId: string;
let legacyTaskChecksum: string;

const q = <T extends object = Record<string, unknown>>(text: string, params: unknown[] = []) =>
  sql<T>(k.stack, DB, text, params);

beforeAll(async () => {
  k = await freshKohakku('shapes', { tasks: 2000, briefs: 5 }, { agents: false });
  await q(`ALTER DATABASE "${DB}" SET timezone = 'UTC'`);
  await q(`
    CREATE TABLE task_events (
      id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      task_id bigint NOT NULL,
      kind    text NOT NULL,
      weight  int NOT NULL,
      doubled int GENERATED ALWAYS AS (weight * 2) STORED,
      at      timestamptz NOT NULL
    );
    INSERT INTO task_events (task_id, kind, weight, at)
      SELECT g, (ARRAY['start', 'progress', 'done'])[1 + g % 3], g % 17, timestamptz '2024-05-01 00:00:00+00' + g * interval '37 minutes'
        FROM generate_series(1, 300) g;
    CREATE VIEW task_event_totals AS SELECT task_id, sum(doubled) AS total FROM task_events GROUP BY task_id;
    CREATE VIEW task_event_big AS SELECT * FROM task_event_totals WHERE total > 20;
    CREATE MATERIALIZED VIEW task_event_kinds AS SELECT kind, count(*) AS n FROM task_events GROUP BY kind;
    CREATE TABLE task_event_log (kind text NOT NULL);
    CREATE RULE task_events_log AS ON INSERT TO task_events DO ALSO INSERT INTO task_event_log (kind) VALUES (NEW.kind);
    CREATE VIEW task_titles AS SELECT id, title FROM tasks_task;
    CREATE SCHEMA audit;
    CREATE TABLE audit.task_notes (
      id      bigserial PRIMARY KEY,
      task_id bigint NOT NULL REFERENCES public.tasks_task (id),
      note    text NOT NULL
    );
    INSERT INTO audit.task_notes (task_id, note) SELECT g, 'note ' || g FROM generate_series(1, 50) g;
  `);
  const config = loadConfig({ ...k.workerEnv });
  pg = createPostgresActivities({ config, exec: createCommandRunner(), store: createBackupStore(config) });
  backupId = backupIdAt(new Date());
  await pg.backupPostgres({ backupId, targets: ['controller'] });
  // What a 0.1 backup would have recorded for tasks_task at the same moment: the md5 of its rows'
  // text in this UTC session, settings unpinned.
  legacyTaskChecksum = await withDatabase(loadConfig({ ...k.workerEnv }), DB, async (c) => {
    await c.query('BEGIN READ ONLY');
    try {
      return (await tableChecksum(c, 'public.tasks_task', 'row-text')).checksum;
    } finally {
      await c.query('COMMIT');
    }
  });
});

/** The recovery ids these tests give the activities (called directly: no workflow runs their cleanup). */
const RECOVERY_IDS = [
  'shapes-identity',
  'shapes-retry',
  'shapes-unapproved',
  'shapes-live',
  'shapes-newer',
  'shapes-tokyo-unpinned',
  'shapes-tokyo-pinned',
  'shapes-parent-gone',
];

afterAll(async () => {
  // What each workflow's cleanup phase does: the dump copies and scripts go, on the shared stack.
  if (pg) for (const recoveryId of RECOVERY_IDS) await pg.cleanupPostgresRestore({ recoveryId, targets: [] });
  if (k) await stopKohakku(k);
});

/** Row fingerprints of every public table, plus audit.task_notes and the identity's position. */
async function fingerprints(): Promise<Record<string, string>> {
  const out = await tableFingerprints(k.stack, DB);
  const notes = await q<{ n: string; h: string }>(
    `SELECT count(*) AS n, md5(string_agg(x::text, '|' ORDER BY x::text)) AS h FROM audit.task_notes x`,
  );
  out['audit.task_notes'] = `${notes[0]!.n}:${notes[0]!.h}`;
  const seq = await q<{ v: string }>(
    `SELECT last_value::text AS v FROM pg_sequences WHERE sequencename = 'task_events_id_seq'`,
  );
  out['sequence task_events_id_seq'] = seq[0]?.v ?? 'missing';
  return out;
}

/** The catalog around the restored tables: what pg_restore -t alone would lose. */
async function shape() {
  const rows = async (text: string) => (await q<{ d: string }>(text)).map((r) => r.d);
  return {
    identity: await rows(
      `SELECT attname || ' ' || attidentity::text || ' ' || attgenerated::text AS d FROM pg_attribute
        WHERE attrelid = 'public.task_events'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
    ),
    constraints: await rows(
      `SELECT conname || ' ' || conrelid::regclass || ' ' || pg_get_constraintdef(oid) || ' ' || convalidated AS d
         FROM pg_constraint WHERE conrelid = ANY ('{public.tasks_task, public.task_events, audit.task_notes, public.tasks_task_skills}'::regclass[])
           OR confrelid = 'public.tasks_task'::regclass ORDER BY 1`,
    ),
    indexes: await rows(
      `SELECT indexdef AS d FROM pg_indexes WHERE schemaname = 'public' AND tablename IN ('tasks_task', 'task_events') ORDER BY 1`,
    ),
    views: await rows(
      `SELECT c.oid::regclass || ' ' || c.relkind::text || ' ' || pg_get_viewdef(c.oid) AS d FROM pg_class c
        WHERE c.relkind IN ('v', 'm') AND c.relnamespace = 'public'::regnamespace ORDER BY 1`,
    ),
    rules: await rows(
      `SELECT rulename || ' ' || pg_get_ruledef(oid) AS d FROM pg_rewrite WHERE rulename <> '_RETURN' AND ev_class::regclass::text NOT LIKE 'pg_%' ORDER BY 1`,
    ),
    triggers: await rows(
      `SELECT pg_get_triggerdef(oid) AS d FROM pg_trigger WHERE tgrelid = 'public.tasks_task'::regclass AND NOT tgisinternal`,
    ),
    serial: await rows(`SELECT pg_get_serial_sequence('public.tasks_task', 'id') AS d`),
  };
}

async function asideSchemas(): Promise<string[]> {
  return (
    await q<{ n: string }>(
      `SELECT nspname AS n FROM pg_namespace WHERE nspname LIKE 'kohakku_dr_replaced_%' ORDER BY 1`,
    )
  ).map((r) => r.n);
}

async function failureOf(p: Promise<unknown>): Promise<ApplicationFailure> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof ApplicationFailure)) throw err;
  return err as ApplicationFailure;
}

test('identity table dropped with CASCADE: comes back as an identity at its position, with its generated column, views, materialized view and rule', async () => {
  const before = await fingerprints();
  const shapeBefore = await shape();
  const totals = await q(`SELECT * FROM task_event_big ORDER BY task_id`);
  expect(shapeBefore.identity).toEqual(['id a ', 'task_id  ', 'kind  ', 'weight  ', 'doubled  s', 'at  ']);

  await q('DROP TABLE task_events CASCADE');
  expect((await q(`SELECT to_regclass('task_event_totals') AS v`))[0]).toEqual({ v: null });

  const result = await pg.restorePostgresTables({
    backupId,
    target: 'controller',
    tables: ['task_events'],
    recoveryId: 'shapes-identity',
    replace: [],
  });
  expect(result).toMatchObject({
    tables: [{ table: 'public.task_events', rows: 300, entries: expect.any(Number) }],
    resumed: false,
    referencingRowsMovedAside: [],
  });
  expect(result.movedAsideTo).toBeUndefined();
  expect([...result.dependentsRecreated].sort()).toEqual([
    'materialized view public.task_event_kinds',
    'rule task_events_log on public.task_events',
    'view public.task_event_big',
    'view public.task_event_totals',
  ]);
  expect(await shape()).toEqual(shapeBefore);
  expect(await fingerprints()).toEqual(before);
  expect(await q(`SELECT * FROM task_event_big ORDER BY task_id`)).toEqual(totals);
  expect(await q(`SELECT kind, n::int FROM task_event_kinds ORDER BY kind`)).toEqual([
    { kind: 'done', n: 100 },
    { kind: 'progress', n: 100 },
    { kind: 'start', n: 100 },
  ]);
  expect(await asideSchemas()).toEqual([]);

  // The identity works again: the next id is max + 1, generated, and the rule fires.
  const inserted = await q(
    `INSERT INTO task_events (task_id, kind, weight, at) VALUES (7, 'retry', 21, now()) RETURNING id::int, doubled`,
  );
  expect(inserted).toEqual([{ id: 301, doubled: 42 }]);
  expect(await q(`SELECT count(*)::int AS n FROM task_event_log WHERE kind = 'retry'`)).toEqual([{ n: 1 }]);
  await expect(
    q(`INSERT INTO task_events (id, task_id, kind, weight, at) VALUES (5, 1, 'x', 1, now())`),
  ).rejects.toThrow(/non-DEFAULT value into column "id"/);
  await q(`DELETE FROM task_events WHERE id = 301; DELETE FROM task_event_log WHERE kind = 'retry'`);
});

test('a dropped table with nothing live leaves no aside schema, and a retry of the same call is a no-op', async () => {
  await q('DROP TABLE task_event_log CASCADE'); // takes the rule on task_events with it
  const input = {
    backupId,
    target: 'controller' as const,
    tables: ['public.task_event_log'],
    recoveryId: 'shapes-retry',
    replace: [],
  };
  const first = await pg.restorePostgresTables(input);
  expect(first).toMatchObject({
    resumed: false,
    dependentsRecreated: ['rule task_events_log on public.task_events'],
  });
  expect(first.movedAsideTo).toBeUndefined();
  expect(await asideSchemas()).toEqual([]);
  const after = await fingerprints();
  const shapeAfter = await shape();

  const retry = await pg.restorePostgresTables(input);
  expect(retry).toMatchObject({ resumed: true, tables: first.tables });
  expect(retry.movedAsideTo).toBeUndefined();
  expect(await fingerprints()).toEqual(after);
  expect(await shape()).toEqual(shapeAfter);
  expect(await asideSchemas()).toEqual([]);
});

test('a live table not approved for replacement is refused, nothing changed', async () => {
  await q(`UPDATE tasks_task SET title = 'edited' WHERE id <= 10`);
  const before = await fingerprints();
  const shapeBefore = await shape();
  const err = await failureOf(
    pg.restorePostgresTables({
      backupId,
      target: 'controller',
      tables: ['tasks_task'],
      recoveryId: 'shapes-unapproved',
      replace: ['public.task_events'],
    }),
  );
  expect(err.type).toBe(ErrorType.LiveDataChanged);
  expect(err.nonRetryable).toBe(true);
  expect(err.message).toMatch(/public\.tasks_task exists live in kohakku-controller but was not approved/);
  expect(await fingerprints()).toEqual(before);
  expect(await shape()).toEqual(shapeBefore);
  expect(await asideSchemas()).toEqual([]);
});

test('over an approved live table: it moves aside with its view; the foreign key from another schema is enforced again', async () => {
  await q(`UPDATE tasks_task SET title = 'edited' WHERE id <= 100`);
  const shapeBefore = await shape();
  const result = await pg.restorePostgresTables({
    backupId,
    target: 'controller',
    tables: ['tasks_task'],
    recoveryId: 'shapes-live',
    replace: ['public.tasks_task'],
  });
  const aside = result.movedAsideTo!;
  expect(aside).toMatch(/^kohakku_dr_replaced_/);
  expect(result.resumed).toBe(false);
  expect(result.dependentsRecreated).toEqual(['view public.task_titles']);
  expect(await q(`SELECT count(*)::int AS n FROM tasks_task WHERE title = 'edited'`)).toEqual([{ n: 0 }]);
  expect(await q(`SELECT count(*)::int AS n FROM ${aside}.tasks_task WHERE title = 'edited'`)).toEqual([
    { n: 100 },
  ]);
  // The live view moved aside with the live table (still over it); the backup's is over the restored one.
  expect(await q(`SELECT count(*)::int AS n FROM ${aside}.task_titles WHERE title = 'edited'`)).toEqual([
    { n: 100 },
  ]);
  expect(await q(`SELECT count(*)::int AS n FROM public.task_titles WHERE title = 'edited'`)).toEqual([
    { n: 0 },
  ]);
  expect(await shape()).toEqual(shapeBefore);
  await expect(q(`INSERT INTO audit.task_notes (task_id, note) VALUES (999999, 'orphan')`)).rejects.toThrow(
    /violates foreign key constraint "task_notes_task_id_fkey"/,
  );
  await expect(q(`INSERT INTO tasks_task_skills (task_id, skill_id) VALUES (999999, 1)`)).rejects.toThrow(
    /foreign key/,
  );
});

test('live rows referencing tasks newer than the backup: refused with counts and nothing changed; then moved aside on request', async () => {
  const skill = (await q<{ id: string }>(`SELECT id FROM tasks_skill ORDER BY id LIMIT 1`))[0]!.id;
  const fresh = await q<{ id: string }>(
    `INSERT INTO tasks_task (title, status, brief_key, created_at, updated_at)
     SELECT 'new ' || g, 'pending', 'briefs/new-' || g, now(), now() FROM generate_series(1, 3) g RETURNING id`,
  );
  const ids = fresh.map((r) => r.id);
  await q(
    `INSERT INTO audit.task_notes (task_id, note) SELECT unnest($1::bigint[])::bigint, 'newer' LIMIT 2`,
    [ids],
  );
  await q(`INSERT INTO tasks_task_skills (task_id, skill_id) SELECT unnest($1::bigint[]), $2`, [ids, skill]);
  const before = await fingerprints();
  const shapeBefore = await shape();
  const asideBefore = await asideSchemas();
  const input = {
    backupId,
    target: 'controller' as const,
    tables: ['tasks_task'],
    recoveryId: 'shapes-newer',
    replace: ['public.tasks_task'],
  };

  const err = await failureOf(pg.restorePostgresTables({ ...input, referencingRows: 'refuse' }));
  expect(err.type).toBe(ErrorType.NewerReferencingRows);
  expect(err.nonRetryable).toBe(true);
  expect(err.message).toMatch(/2 in audit\.task_notes \(task_notes_task_id_fkey/);
  expect(err.message).toMatch(/3 in public\.tasks_task_skills \(tasks_task_skills_task_id_fkey/);
  expect(err.message).toMatch(/add audit\.task_notes, public\.tasks_task_skills to tables/);
  expect(err.message).toMatch(/referencingRows: 'move-aside'/);
  expect(err.details?.[0]).toMatchObject({
    counts: [
      { table: 'audit.task_notes', constraint: 'task_notes_task_id_fkey', rows: 2 },
      { table: 'public.tasks_task_skills', constraint: 'tasks_task_skills_task_id_fkey', rows: 3 },
    ],
  });
  expect(await fingerprints()).toEqual(before);
  expect(await shape()).toEqual(shapeBefore);
  expect(await asideSchemas()).toEqual(asideBefore);

  const moved = await pg.restorePostgresTables({ ...input, referencingRows: 'move-aside' });
  expect(moved.referencingRowsMovedAside).toEqual([
    { table: 'audit.task_notes', constraint: 'task_notes_task_id_fkey', rows: 2 },
    { table: 'public.tasks_task_skills', constraint: 'tasks_task_skills_task_id_fkey', rows: 3 },
  ]);
  const aside = moved.movedAsideTo!;
  expect(
    await q(`SELECT count(*)::int AS n FROM ${aside}.audit__task_notes__orphans WHERE note = 'newer'`),
  ).toEqual([{ n: 2 }]);
  expect(
    await q(
      `SELECT count(*)::int AS n FROM ${aside}.public__tasks_task_skills__orphans WHERE task_id = ANY ($1)`,
      [ids],
    ),
  ).toEqual([{ n: 3 }]);
  expect(await q(`SELECT count(*)::int AS n FROM audit.task_notes WHERE note = 'newer'`)).toEqual([{ n: 0 }]);
  expect(await q(`SELECT count(*)::int AS n FROM ${aside}.tasks_task WHERE id = ANY ($1)`, [ids])).toEqual([
    { n: 3 },
  ]);
  expect(await shape()).toEqual(shapeBefore); // every foreign key back and validated
  // A retry after the commit reports the same and changes nothing.
  const after = await fingerprints();
  const retry = await pg.restorePostgresTables({ ...input, referencingRows: 'move-aside' });
  expect(retry).toMatchObject({ resumed: true, referencingRowsMovedAside: moved.referencingRowsMovedAside });
  expect(await fingerprints()).toEqual(after);
});

test('a database switched to Asia/Tokyo after a UTC backup still verifies when the manifest says its checksums are pinned', async () => {
  await q(`ALTER DATABASE "${DB}" SET timezone = 'Asia/Tokyo'`);
  try {
    await q(`UPDATE tasks_task SET title = 'tokyo' WHERE id <= 5`);
    const before = await fingerprints();
    // The same backup under a 0.1-style manifest (no checksumVersion): checked the old, unpinned
    // way, the timestamps print in Tokyo time and the restore is (rightly) refused.
    const store = createBackupStore(loadConfig({ ...k.workerEnv }));
    const manifest = (await store.getJson<PostgresManifest>(postgresManifestKey(backupId)))!;
    expect(manifest.checksumVersion).toBe(CHECKSUM_VERSION);
    const oldId = backupIdAt(new Date(Date.parse(manifest.createdAt) + 1000));
    const unversioned: Partial<PostgresManifest> = {
      ...manifest,
      databases: manifest.databases.map((d) => ({
        ...d,
        tables: d.tables.map((t) =>
          t.table === 'public.tasks_task' ? { ...t, checksum: legacyTaskChecksum } : t,
        ),
      })),
    };
    delete unversioned.checksumVersion;
    await store.putJson(postgresManifestKey(oldId), { ...unversioned, id: oldId });
    const old = await failureOf(
      pg.restorePostgresTables({
        backupId: oldId,
        target: 'controller',
        tables: ['tasks_task'],
        recoveryId: 'shapes-tokyo-unpinned',
        replace: ['public.tasks_task'],
      }),
    );
    expect(old.type).toBe(ErrorType.RestoreVerificationFailed);
    expect(await fingerprints()).toEqual(before);

    // The backup itself carries checksumVersion 3: tasks_task is checked by PostgreSQL's row hash,
    // which no setting changes (text checksums are reproduced by the pinned settings).
    const result = await pg.restorePostgresTables({
      backupId,
      target: 'controller',
      tables: ['tasks_task'],
      recoveryId: 'shapes-tokyo-pinned',
      replace: ['public.tasks_task'],
    });
    expect(result.resumed).toBe(false);
    expect(await q(`SELECT count(*)::int AS n FROM tasks_task WHERE title = 'tokyo'`)).toEqual([{ n: 0 }]);
  } finally {
    await q(`ALTER DATABASE "${DB}" SET timezone = 'UTC'`);
  }
});

test('restored rows whose parent is gone from the live database: refused (restore the parent too), nothing changed', async () => {
  const skill = (
    await q<{ id: string }>(`SELECT skill_id::text AS id FROM tasks_task_skills ORDER BY 1 LIMIT 1`)
  )[0]!.id;
  await q(`DELETE FROM tasks_task_skills WHERE skill_id = $1`, [skill]);
  await q(`DELETE FROM tasks_skill WHERE id = $1`, [skill]);
  const before = await fingerprints();
  const shapeBefore = await shape();
  const asideBefore = await asideSchemas();
  const err = await failureOf(
    pg.restorePostgresTables({
      backupId,
      target: 'controller',
      tables: ['tasks_task_skills'],
      recoveryId: 'shapes-parent-gone',
      replace: ['public.tasks_task_skills'],
    }),
  );
  expect(err.type).toBe(ErrorType.InvalidInput);
  expect(err.message).toMatch(
    /in public\.tasks_task_skills \(tasks_task_skills_skill_id_fkey → public\.tasks_skill\)/,
  );
  expect(err.message).toMatch(/add public\.tasks_skill to tables/);
  expect(await fingerprints()).toEqual(before);
  expect(await shape()).toEqual(shapeBefore);
  expect(await asideSchemas()).toEqual(asideBefore);
});
