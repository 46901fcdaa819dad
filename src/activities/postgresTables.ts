/**
 * Manual restore of whole tables (the runbook's `pg_restore -t`, but complete), in ONE psql
 * transaction, verified against the manifest before COMMIT: the tables come back with their
 * rows, indexes, constraints, triggers, comments, grants, serial and identity sequences (with
 * their positions), the foreign keys that point at them from any schema, and the views,
 * materialized views and rules built on them — or nothing changed.
 *
 * The transaction, in order (each file below is one psql -f):
 *  1. prologue: refuse a live table that was not approved; lock and move the approved live
 *     tables into `kohakku_dr_replaced_<tag>` (their indexes, owned sequences, triggers and
 *     rules go with them), move the live views/materialized views built on them there too, drop
 *     the foreign keys and rules elsewhere that point at them (remembering the ones the backup
 *     does not have, to re-add them), and check every name the restore creates is free.
 *  2. main: the archive's entries rendered by `pg_restore -L`.
 *  3. foreign keys: re-created NOT VALID; live rows referencing keys the restored table does
 *     not have are counted (refused, or moved aside with referencingRows 'move-aside'); then
 *     VALIDATE, so a constraint is never silently left unenforced.
 *  4. epilogue: row count and checksum of each restored table against the manifest, with the
 *     pinned session settings when the manifest says its checksums were taken with them.
 * Decisions that belong to the operator end in a typed, non-retryable error (`kohakku-dr
 * <Type>: …` raised in SQL, mapped here); psql failing for any other reason stays retryable.
 *
 * Not handled (left as they are): functions whose signature uses a restored table's row type
 * (they follow the moved-aside table), inheritance children and partitions of a restored table.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { Client } from 'pg';
import { pinChecksumSettingsSql } from '../domain/checksums';
import { ErrorType, fail, type ErrorTypeName } from '../domain/errors';
import type { TableStats } from '../domain/manifests';
import type { PostgresTarget } from '../domain/targets';
import { CommandFailed } from '../infra/exec';
import { shortTag } from '../infra/hashing';
import { cancellationSignal, heartbeat, withHeartbeats } from './heartbeat';
import {
  checksumMethodOf,
  splitTable,
  tableChecksum,
  tableChecksumSql,
  type PostgresKit,
} from './postgresKit';
import { parseToc, quoteIdent, selectTables, type RestoreSelection, type TocEntry } from './tocSelection';

const tag = (recoveryId: string) => shortTag(recoveryId);

/** The schema live tables (and what hangs off them) are moved into; created only when something is. */
export function tableAsideSchema(recoveryId: string): string {
  return `kohakku_dr_replaced_${tag(recoveryId)}`;
}

/** An identifier for generated SQL: always quoted, so keywords and odd names are safe. */
const ident = (name: string) => `"${name.replace(/"/g, '""')}"`;
const qualified = (schema: string, name: string) => `${ident(schema)}.${ident(name)}`;
const literal = (text: string) => `'${text.replace(/'/g, "''")}'`;

export type ReferencingRowsPolicy = 'refuse' | 'move-aside';

export interface TableRestoreInput {
  backupId: string;
  target: PostgresTarget;
  tables: string[];
  recoveryId: string;
  /**
   * Qualified names ("public.tasks_task") of live tables the operator approved to move aside.
   * Optional only for the transitional workflow (src/workflows/tableRestore.ts), which asks for
   * approval itself: absent = every live table approved.
   */
  // required once the engine workflow lands
  replace?: string[];
  /** What to do with live rows in other tables that reference rows the backup does not have. */
  // required once the engine workflow lands (defaults to 'refuse')
  referencingRows?: ReferencingRowsPolicy;
}

export interface TableRestoreOutcome {
  database: string;
  tables: { table: string; rows: number; entries: number }[];
  /** Only when something was moved aside. */
  movedAsideTo?: string;
  resumed: boolean;
  /** Views, materialized views and rules re-created from the backup because they depend on a restored table. */
  dependentsRecreated: string[];
  /** With referencingRows 'move-aside': child rows moved into the aside schema. */
  referencingRowsMovedAside: { table: string; constraint: string; rows: number }[];
}

interface WantedTable {
  schema: string;
  table: string;
  name: string;
  stats: TableStats;
  approved: boolean;
}

interface OrphanCount {
  table: string;
  constraint: string;
  rows: number;
  references?: string;
}

const ORPHANS_COMMENT = 'kohakku-dr orphans ';

export function createPostgresTableActivities(kit: PostgresKit) {
  const { exec, tool, toolEnv, databaseOf, withClient, readManifest, localDumpPath, fetchVerifiedDump } = kit;

  async function liveTables(input: { target: PostgresTarget; tables: string[] }): Promise<string[]> {
    return withClient(databaseOf(input.target), async (c) => {
      const out: string[] = [];
      for (const t of input.tables) {
        const [schema, table] = splitTable(t);
        const r = await c.query('SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = $2', [
          schema,
          table,
        ]);
        if (r.rowCount) out.push(t);
      }
      return out;
    });
  }

  /** Row count and checksum of a live table, computed as the backup computed them. */
  async function liveStats(c: Client, w: WantedTable, pinned: boolean): Promise<TableStats> {
    await c.query('BEGIN READ ONLY');
    try {
      if (pinned) await c.query(pinChecksumSettingsSql(true));
      return {
        ...(await tableChecksum(c, qualified(w.schema, w.table), checksumMethodOf(w.stats.checksum))),
        table: w.name,
      };
    } finally {
      await c.query('COMMIT').catch(() => undefined);
    }
  }

  /**
   * Restores whole tables from a pg_dump archive in one verified transaction (see the module
   * comment). Idempotent: the aside schema exists only if a transaction that moved something
   * committed; when nothing was moved, tables that are all present and exactly match the
   * manifest are what an earlier attempt committed (or already the backup) — either way
   * `resumed: true` and nothing is done again.
   */
  async function restorePostgresTables(
    input: TableRestoreInput & { replace: string[] },
  ): Promise<TableRestoreOutcome> {
    const policy = input.referencingRows ?? 'refuse';
    if (policy !== 'refuse' && policy !== 'move-aside')
      throw fail(
        ErrorType.InvalidInput,
        `referencingRows must be 'refuse' or 'move-aside', got ${JSON.stringify(input.referencingRows)}`,
      );
    if (!Array.isArray(input.tables) || input.tables.length === 0)
      throw fail(
        ErrorType.InvalidInput,
        'tables must name at least one table ("tasks_task" or "schema.table")',
      );
    const manifest = await readManifest(input.backupId);
    const entry = manifest?.databases.find((d) => d.target === input.target);
    if (!manifest || !entry)
      throw fail(ErrorType.BackupNotFound, `backup ${input.backupId} has no dump of target ${input.target}`);
    const database = databaseOf(input.target);
    // Version 2 and later: taken with the pinned settings (3 also hashes rows where types allow).
    const pinned = (manifest.checksumVersion ?? 0) >= 2;
    const aside = tableAsideSchema(input.recoveryId);
    const normalize = (t: string) => splitTable(t).join('.');
    const approved = input.replace === undefined ? undefined : new Set(input.replace.map(normalize));
    const wanted: WantedTable[] = [...new Set(input.tables.map(normalize))].map((name) => {
      const [schema, table] = splitTable(name);
      const stats = entry.tables.find((x) =>
        [name, `${quoteIdent(schema)}.${quoteIdent(table)}`, qualified(schema, table)].includes(x.table),
      );
      if (!stats)
        throw fail(
          ErrorType.InvalidInput,
          `backup ${input.backupId} of ${database} has no table ${name} (it has ${entry.tables.length} tables; check the name and schema)`,
        );
      return { schema, table, name, stats, approved: approved?.has(name) ?? true };
    });

    // A psql an earlier attempt left running (its worker was killed) would still hold the tables.
    const appName = `kohakku-dr tables ${tag(input.recoveryId)}`;
    await endEarlierAttempt(database, appName);

    const state = await withClient(database, async (c) => {
      const asideExists =
        ((await c.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [aside])).rowCount ?? 0) > 0;
      if (asideExists) return 'committed' as const;
      const live = await liveTables({ target: input.target, tables: wanted.map((w) => w.name) });
      // Every table present, none approved for replacement: an earlier attempt committed (or
      // they already are the backup) exactly when they match the manifest. A table explicitly
      // approved for replacement is always replaced (its aside schema is the marker).
      const explicitlyApproved = input.replace !== undefined && wanted.some((w) => w.approved);
      if (live.length === wanted.length && !explicitlyApproved) {
        let same = true;
        for (const w of wanted) {
          const now = await liveStats(c, w, pinned);
          if (now.rows !== w.stats.rows || now.checksum !== w.stats.checksum) {
            same = false;
            break;
          }
        }
        if (same) return 'committed' as const;
      }
      const unapproved = wanted.filter((w) => !w.approved && live.includes(w.name));
      if (unapproved.length > 0)
        throw fail(
          ErrorType.LiveDataChanged,
          `${unapproved.map((w) => w.name).join(', ')} exist${unapproved.length === 1 ? 's' : ''} live in ${database} but ${unapproved.length === 1 ? 'was' : 'were'} not approved for replacement ` +
            `(approved: ${input.replace?.join(', ') || 'none'}); the restore did not start. Plan the restore again and approve replacing ` +
            `${unapproved.length === 1 ? 'it' : 'them'} (the live table is moved into schema ${aside}, not dropped).`,
        );
      return 'to do' as const;
    });

    const local = localDumpPath(input.recoveryId, database);
    await fetchVerifiedDump(entry, local);
    const dir = path.dirname(local);
    const toc = parseToc(
      (await exec(tool('pg_restore'), ['-l', '-v', local])).stdout,
      (await exec(tool('pg_restore'), ['--schema-only', '-f', '-', local])).stdout,
    );
    const selection = selectTables(
      toc,
      wanted.map((w) => ({ schema: w.schema, table: w.table })),
    );

    if (state === 'to do') {
      const scripts = await writeScripts({
        dir,
        local,
        toc,
        selection,
        wanted,
        aside,
        pinned,
        policy,
        input,
      });
      heartbeat({ stage: 'restoring tables', database, tables: input.tables });
      await withHeartbeats(
        () => ({ stage: 'restoring tables', database, tables: input.tables }),
        () =>
          exec(
            tool('psql'),
            ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '--single-transaction', '-d', database].concat(
              scripts.flatMap((s) => ['-f', s]),
            ),
            { env: { ...toolEnv, PGAPPNAME: appName }, signal: cancellationSignal() },
          ),
      ).catch((err: unknown) => {
        throw typedFailure(err, { input, aside, database }) ?? err;
      });
    }

    const movedAside = await withClient(database, async (c) => {
      const exists =
        ((await c.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [aside])).rowCount ?? 0) > 0;
      if (!exists) return { exists, orphans: [] as OrphanCount[] };
      const comments = await c.query<{ comment: string }>(
        `SELECT obj_description(c.oid, 'pg_class') AS comment FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = $1 AND obj_description(c.oid, 'pg_class') LIKE $2 ORDER BY c.relname`,
        [aside, `${ORPHANS_COMMENT}%`],
      );
      return {
        exists,
        orphans: comments.rows.flatMap(
          (r) => JSON.parse(r.comment.slice(ORPHANS_COMMENT.length)) as OrphanCount[],
        ),
      };
    });
    return {
      database,
      tables: wanted.map((w, i) => ({
        table: w.name,
        rows: w.stats.rows,
        entries: selection.entriesPerTable[i] ?? 0,
      })),
      ...(movedAside.exists
        ? { movedAsideTo: aside }
        : input.replace === undefined
          ? { movedAsideTo: '' } // transitional caller only; see the overloads
          : {}),
      resumed: state === 'committed',
      dependentsRecreated: selection.dependents.map((d) => `${d.kind} ${d.name}`),
      referencingRowsMovedAside: movedAside.orphans.map((o) => ({
        table: o.table,
        constraint: o.constraint,
        rows: o.rows,
      })),
    };
  }

  /** Ends the sessions of an earlier attempt's psql (same recovery), and waits until they are gone. */
  async function endEarlierAttempt(database: string, appName: string): Promise<void> {
    await withClient(database, async (c) => {
      for (let i = 0; i < 100; i++) {
        const r = await c.query<{ pid: number }>(
          `SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE application_name = $1 AND datname = $2 AND pid <> pg_backend_pid()`,
          [appName, database],
        );
        if (r.rowCount === 0) return;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    });
  }

  async function writeScripts(args: {
    dir: string;
    local: string;
    toc: TocEntry[];
    selection: RestoreSelection;
    wanted: WantedTable[];
    aside: string;
    pinned: boolean;
    policy: ReferencingRowsPolicy;
    input: TableRestoreInput;
  }): Promise<string[]> {
    const { dir, local, selection, wanted, aside, pinned, policy, input } = args;
    const render = async (name: string, entries: TocEntry[]): Promise<string | undefined> => {
      if (entries.length === 0) return undefined;
      const list = path.join(dir, `${name}.list`);
      await fs.writeFile(list, entries.map((e) => e.line).join('\n') + '\n');
      const script = path.join(dir, `${name}.sql`);
      await exec(tool('pg_restore'), ['-L', list, '-f', script, local]);
      return script;
    };
    const write = async (name: string, sql: string) => {
      const file = path.join(dir, `${name}.sql`);
      await fs.writeFile(file, sql + '\n');
      return file;
    };
    const config = {
      aside,
      tables: wanted.map((w) => ({ schema: w.schema, table: w.table, approved: w.approved })),
      archiveForeignKeys: selection.foreignKeys.map(
        (f) => `${f.child.schema}.${f.child.name} ${f.constraint}`,
      ),
      archiveRelations: selection.relations.map((r) => `${r.schema}.${r.name}`),
      archiveRules: args.toc
        .filter((e) => e.type === 'RULE' && selection.main.includes(e))
        .map((e) => `${e.schema}.${e.name}`),
      relations: selection.relations,
      foreignKeyTables: [
        ...new Set(
          selection.foreignKeys
            .map((f) => `${f.child.schema}.${f.child.name}`)
            .filter((t) => !wanted.some((w) => w.name === t)),
        ),
      ].map((t) => ({ schema: splitTable(t)[0], table: splitTable(t)[1] })),
      schemas: [...new Set(selection.main.map((e) => e.schema))],
      policy,
    };
    const files: (string | undefined)[] = [
      await write('prologue', prologueSql(config)),
      await render('main', selection.main),
      await write(
        'foreign-keys',
        [
          ...selection.foreignKeys.flatMap((f) => [
            f.statement,
            ...(f.validate
              ? [
                  `INSERT INTO pg_temp.kohakku_dr_fk_check VALUES (${literal(qualified(f.child.schema, f.child.name))}, ${literal(f.constraint)});`,
                ]
              : []),
          ]),
          readdSql(),
          orphansSql(config),
        ].join('\n'),
      ),
      await render('after-foreign-keys', selection.afterForeignKeys),
      await write('epilogue', epilogueSql({ wanted, pinned, backupId: input.backupId })),
    ];
    return files.filter((f): f is string => f !== undefined);
  }

  return { liveTables, restorePostgresTables };
}

/** `kohakku-dr <Type>: …` raised in SQL → the typed failure; anything else stays retryable. */
function typedFailure(
  err: unknown,
  ctx: { input: TableRestoreInput; aside: string; database: string },
): Error | undefined {
  const stderr = err instanceof CommandFailed ? err.stderr : String((err as Error)?.message ?? err);
  const m = /ERROR:\s+kohakku-dr (\w+): (.*)$/m.exec(stderr);
  if (!m) return undefined;
  const [, kind, message] = m as unknown as [string, string, string];
  if (kind === 'NewerReferencingRows') {
    const counts = JSON.parse(message) as OrphanCount[];
    const total = counts.reduce((n, c) => n + c.rows, 0);
    return fail(
      ErrorType.NewerReferencingRows,
      `${total} live row${total === 1 ? '' : 's'} in other tables reference rows that backup ${ctx.input.backupId} of ` +
        `${ctx.input.tables.join(', ')} does not have (newer than the backup): ` +
        counts.map((c) => `${c.rows} in ${c.table} (${c.constraint} → ${c.references})`).join('; ') +
        `. The transaction was rolled back. To go on, either restore those tables too (add ${[
          ...new Set(counts.map((c) => c.table)),
        ].join(
          ', ',
        )} to tables), or set referencingRows: 'move-aside' to move those rows into schema ${ctx.aside} ` +
        '(tables named <schema>__<table>__orphans) and delete them from their tables in the same transaction.',
      { counts },
    );
  }
  if (kind === 'RestoredRowsWithoutParents') {
    const counts = JSON.parse(message) as OrphanCount[];
    return fail(
      ErrorType.InvalidInput,
      `restored rows reference rows the live database no longer has: ` +
        counts.map((c) => `${c.rows} in ${c.table} (${c.constraint} → ${c.references})`).join('; ') +
        `. The transaction was rolled back. Restore the referenced tables too (add ${[
          ...new Set(counts.map((c) => c.references)),
        ].join(', ')} to tables).`,
      { counts },
    );
  }
  const types: Record<string, ErrorTypeName> = {
    LiveDataChanged: ErrorType.LiveDataChanged,
    RestoreVerificationFailed: ErrorType.RestoreVerificationFailed,
    InvalidInput: ErrorType.InvalidInput,
  };
  const type = types[kind];
  return type ? fail(type, `${message} (database ${ctx.database})`) : undefined;
}

interface ScriptConfig {
  aside: string;
  tables: { schema: string; table: string; approved: boolean }[];
  archiveForeignKeys: string[];
  archiveRelations: string[];
  archiveRules: string[];
  relations: { schema: string; name: string }[];
  /** Tables outside the restore that the backup's foreign keys are on: they must exist live. */
  foreignKeyTables: { schema: string; table: string }[];
  schemas: string[];
  policy: ReferencingRowsPolicy;
}

const cfgLiteral = (config: ScriptConfig) => `${literal(JSON.stringify(config))}::jsonb`;

/**
 * Approvals, moves, dropped links and free names, all under the tables' ACCESS EXCLUSIVE locks
 * inside the transaction, so what is checked is what is changed.
 */
function prologueSql(config: ScriptConfig): string {
  return `SET LOCAL lock_timeout = '60s';
CREATE TEMP TABLE kohakku_dr_readd (stage int, depth int, ord serial, stmt text, fk_child text, fk_name text) ON COMMIT DROP;
CREATE TEMP TABLE kohakku_dr_fk_check (child text, conname text) ON COMMIT DROP;
DO $kohakku_dr$
DECLARE
  cfg jsonb := ${cfgLiteral(config)};
  aside text := cfg->>'aside';
  saved_path text := current_setting('search_path');
  t jsonb;
  live oid[] := '{}';
  rel oid;
  r record;
  done oid[] := '{}';
  kind text;
BEGIN
  PERFORM set_config('search_path', 'pg_catalog', true);
  FOR t IN SELECT * FROM jsonb_array_elements(cfg->'tables') LOOP
    SELECT c.oid INTO rel FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = t->>'schema' AND c.relname = t->>'table' AND c.relkind IN ('r', 'p');
    IF rel IS NULL THEN CONTINUE; END IF;
    IF NOT (t->>'approved')::boolean THEN
      RAISE EXCEPTION 'kohakku-dr LiveDataChanged: %', format('%I.%I exists live but was not approved for replacement (it appeared after the restore was planned); the transaction was rolled back. Plan the restore again and approve replacing it.', t->>'schema', t->>'table');
    END IF;
    EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', rel::regclass);
    live := live || rel;
  END LOOP;

  IF cardinality(live) > 0 THEN
    -- Foreign keys on other tables that point at a live table follow it when it moves: drop them
    -- (the backup's are re-created; ones the backup does not have are re-added as they are now).
    FOR r IN SELECT c.conname, c.conrelid::regclass::text AS child, n.nspname, cl.relname,
                    pg_get_constraintdef(c.oid) AS def
               FROM pg_constraint c JOIN pg_class cl ON cl.oid = c.conrelid
               JOIN pg_namespace n ON n.oid = cl.relnamespace
              WHERE c.contype = 'f' AND c.conparentid = 0 AND c.confrelid = ANY (live)
                AND NOT c.conrelid = ANY (live)
    LOOP
      IF NOT (cfg->'archiveForeignKeys') ? (r.nspname || '.' || r.relname || ' ' || r.conname) THEN
        INSERT INTO pg_temp.kohakku_dr_readd (stage, depth, stmt, fk_child, fk_name)
        VALUES (3, 0, format('ALTER TABLE %s ADD CONSTRAINT %I %s', r.child, r.conname, r.def)
                      || CASE WHEN r.def LIKE '% NOT VALID' THEN '' ELSE ' NOT VALID' END,
                r.child, CASE WHEN r.def LIKE '% NOT VALID' THEN NULL ELSE r.conname END);
      END IF;
      EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', r.child, r.conname);
    END LOOP;

    -- Views and materialized views built on a live table (transitively) move aside with it;
    -- rules on other tables that use it are dropped. The backup's are re-created from the
    -- archive; ones it does not have are re-created as they are now, over the restored table.
    FOR r IN
      WITH RECURSIVE dep (rule_oid, rel, depth) AS (
        SELECT rw.oid, rw.ev_class, 1
          FROM pg_depend d JOIN pg_rewrite rw ON d.classid = 'pg_rewrite'::regclass AND d.objid = rw.oid
         WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = ANY (live) AND NOT rw.ev_class = ANY (live)
        UNION
        SELECT rw.oid, rw.ev_class, dep.depth + 1
          FROM dep JOIN pg_class v ON v.oid = dep.rel AND v.relkind IN ('v', 'm')
          JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = dep.rel
          JOIN pg_rewrite rw ON d.classid = 'pg_rewrite'::regclass AND d.objid = rw.oid
         WHERE rw.ev_class <> dep.rel
      )
      SELECT dep.rule_oid, dep.rel, max(dep.depth) AS depth, c.relkind, n.nspname, c.relname, rw.rulename
        FROM dep JOIN pg_class c ON c.oid = dep.rel JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_rewrite rw ON rw.oid = dep.rule_oid
       GROUP BY dep.rule_oid, dep.rel, c.relkind, n.nspname, c.relname, rw.rulename
       ORDER BY max(dep.depth)
    LOOP
      IF r.relkind IN ('v', 'm') THEN
        IF r.rel = ANY (done) THEN CONTINUE; END IF;
        done := done || r.rel;
        kind := CASE r.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END;
        IF NOT (cfg->'archiveRelations') ? (r.nspname || '.' || r.relname) THEN
          INSERT INTO pg_temp.kohakku_dr_readd (stage, depth, stmt)
          VALUES (1, r.depth, format('CREATE %s %I.%I AS %s', kind, r.nspname, r.relname,
                                     rtrim(pg_get_viewdef(r.rel), ';')));
        END IF;
        EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I', aside);
        EXECUTE format('ALTER %s %I.%I SET SCHEMA %I', kind, r.nspname, r.relname, aside);
      ELSE
        IF NOT (cfg->'archiveRules') ? (r.nspname || '.' || r.relname || ' ' || r.rulename) THEN
          INSERT INTO pg_temp.kohakku_dr_readd (stage, depth, stmt)
          VALUES (2, 0, rtrim(pg_get_ruledef(r.rule_oid), ';'));
        END IF;
        EXECUTE format('DROP RULE %I ON %I.%I', r.rulename, r.nspname, r.relname);
      END IF;
    END LOOP;

    EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I', aside);
    FOREACH rel IN ARRAY live LOOP
      EXECUTE format('ALTER TABLE %s SET SCHEMA %I', rel::regclass, aside);
    END LOOP;
  END IF;

  FOR t IN SELECT * FROM jsonb_array_elements(cfg->'schemas') LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = t #>> '{}') THEN
      RAISE EXCEPTION 'kohakku-dr InvalidInput: %', format('schema %I does not exist live; create it (or restore the whole database) first. The transaction was rolled back.', t #>> '{}');
    END IF;
  END LOOP;
  FOR t IN SELECT * FROM jsonb_array_elements(cfg->'foreignKeyTables') LOOP
    IF to_regclass(format('%I.%I', t->>'schema', t->>'table')) IS NULL THEN
      RAISE EXCEPTION 'kohakku-dr InvalidInput: %', format('the backup has a foreign key on %I.%I referencing a restored table, but %I.%I does not exist live; restore it too (add it to tables). The transaction was rolled back.', t->>'schema', t->>'table', t->>'schema', t->>'table');
    END IF;
  END LOOP;
  FOR t IN SELECT * FROM jsonb_array_elements(cfg->'relations') LOOP
    IF to_regclass(format('%I.%I', t->>'schema', t->>'name')) IS NOT NULL THEN
      RAISE EXCEPTION 'kohakku-dr LiveDataChanged: %', format('%I.%I exists live, is not part of the approved replacement, and the restore needs its name; rename or drop it, then retry. The transaction was rolled back.', t->>'schema', t->>'name');
    END IF;
  END LOOP;
  PERFORM set_config('search_path', saved_path, true);
END $kohakku_dr$;`;
}

/** Re-adds what the prologue took away and the backup does not have: views, rules, foreign keys. */
function readdSql(): string {
  return `DO $kohakku_dr$
DECLARE
  r record;
  saved_path text := current_setting('search_path');
BEGIN
  PERFORM set_config('search_path', 'pg_catalog', true);
  FOR r IN SELECT * FROM pg_temp.kohakku_dr_readd ORDER BY stage, depth, ord LOOP
    EXECUTE r.stmt;
    IF r.fk_name IS NOT NULL THEN
      INSERT INTO pg_temp.kohakku_dr_fk_check VALUES (r.fk_child, r.fk_name);
    END IF;
  END LOOP;
  PERFORM set_config('search_path', saved_path, true);
END $kohakku_dr$;`;
}

/**
 * Every re-created foreign key is NOT VALID until here. Rows that would break it are counted:
 * restored rows without their parent → refused; live rows referencing keys the restored table
 * lacks → refused, or with 'move-aside' copied into the aside schema and deleted. Then VALIDATE.
 */
function orphansSql(config: ScriptConfig): string {
  return `DO $kohakku_dr$
DECLARE
  cfg jsonb := ${cfgLiteral(config)};
  aside text := cfg->>'aside';
  saved_path text := current_setting('search_path');
  restored oid[];
  r record;
  cond text;
  n bigint;
  orphan_table text;
  newer jsonb := '[]';
  without_parent jsonb := '[]';
  moved jsonb := '{}';
  k text;
BEGIN
  PERFORM set_config('search_path', 'pg_catalog', true);
  SELECT coalesce(array_agg(to_regclass(format('%I.%I', t->>'schema', t->>'table'))::oid), '{}') INTO restored
    FROM jsonb_array_elements(cfg->'tables') t;
  FOR r IN SELECT c.oid, c.conname, c.conrelid, c.confrelid, c.conkey, c.confkey, n.nspname, cl.relname,
                  c.conrelid::regclass::text AS child, c.confrelid::regclass::text AS parent
             FROM pg_temp.kohakku_dr_fk_check k
             JOIN pg_constraint c ON c.conrelid = k.child::regclass AND c.conname = k.conname AND c.contype = 'f'
             JOIN pg_class cl ON cl.oid = c.conrelid JOIN pg_namespace n ON n.oid = cl.relnamespace
            ORDER BY n.nspname, cl.relname, c.conname
  LOOP
    SELECT string_agg(format('c.%I IS NOT NULL', a.attname), ' AND ' ORDER BY i),
           string_agg(format('p.%I = c.%I', pa.attname, a.attname), ' AND ' ORDER BY i)
      INTO STRICT cond, k
      FROM unnest(r.conkey, r.confkey) WITH ORDINALITY AS x (ck, pk, i)
      JOIN pg_attribute a ON a.attrelid = r.conrelid AND a.attnum = x.ck
      JOIN pg_attribute pa ON pa.attrelid = r.confrelid AND pa.attnum = x.pk;
    cond := format('%s AND NOT EXISTS (SELECT 1 FROM %s p WHERE %s)', cond, r.parent, k);
    EXECUTE format('SELECT count(*) FROM %s c WHERE %s', r.child, cond) INTO n;
    CONTINUE WHEN n = 0;
    IF r.conrelid = ANY (restored) THEN
      without_parent := without_parent || jsonb_build_object('table', r.nspname || '.' || r.relname,
        'constraint', r.conname, 'rows', n, 'references', r.parent);
    ELSIF cfg->>'policy' = 'move-aside' THEN
      orphan_table := format('%I.%I', aside, left(r.nspname || '__' || r.relname, 50) || '__orphans');
      EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I', aside);
      IF to_regclass(orphan_table) IS NULL THEN
        EXECUTE format('CREATE TABLE %s AS SELECT * FROM %s WHERE false', orphan_table, r.child);
      END IF;
      EXECUTE format('WITH gone AS (DELETE FROM %s c WHERE %s RETURNING c.*) INSERT INTO %s SELECT * FROM gone',
                     r.child, cond, orphan_table);
      moved := jsonb_set(moved, ARRAY[orphan_table], coalesce(moved->orphan_table, '[]') ||
        jsonb_build_object('table', r.nspname || '.' || r.relname, 'constraint', r.conname, 'rows', n,
                           'references', r.parent));
    ELSE
      newer := newer || jsonb_build_object('table', r.nspname || '.' || r.relname,
        'constraint', r.conname, 'rows', n, 'references', r.parent);
    END IF;
  END LOOP;
  IF jsonb_array_length(without_parent) > 0 THEN
    RAISE EXCEPTION 'kohakku-dr RestoredRowsWithoutParents: %', without_parent::text;
  END IF;
  IF jsonb_array_length(newer) > 0 THEN
    RAISE EXCEPTION 'kohakku-dr NewerReferencingRows: %', newer::text;
  END IF;
  FOR k IN SELECT * FROM jsonb_object_keys(moved) LOOP
    EXECUTE format('COMMENT ON TABLE %s IS %L', k, ${literal(ORPHANS_COMMENT)} || (moved->k)::text);
  END LOOP;
  FOR r IN SELECT child, conname FROM pg_temp.kohakku_dr_fk_check LOOP
    EXECUTE format('ALTER TABLE %s VALIDATE CONSTRAINT %I', r.child::regclass, r.conname);
  END LOOP;
  PERFORM set_config('search_path', saved_path, true);
END $kohakku_dr$;`;
}

/** Row count and checksum of every restored table against the manifest, before COMMIT. */
function epilogueSql(args: { wanted: WantedTable[]; pinned: boolean; backupId: string }): string {
  const checks = args.wanted.map((w) => {
    const q = qualified(w.schema, w.table);
    const expected = w.stats.checksum === 'empty' ? 'NULL' : literal(w.stats.checksum);
    return `DO $kohakku_dr$
DECLARE n bigint; h text;
BEGIN
  SELECT x.rows, x.checksum INTO n, h FROM (${tableChecksumSql(q, checksumMethodOf(w.stats.checksum))}) x;
  IF n <> ${w.stats.rows} OR h IS DISTINCT FROM ${expected} THEN
    RAISE EXCEPTION 'kohakku-dr RestoreVerificationFailed: %', format('restored %s differs from backup %s: %s rows (backup has %s)%s; the transaction was rolled back',
      ${literal(w.name)}, ${literal(args.backupId)}, n, ${w.stats.rows}, CASE WHEN n = ${w.stats.rows} THEN ', checksum differs' ELSE '' END);
  END IF;
END $kohakku_dr$;`;
  });
  // Pinned for backups whose checksums were taken with pinned settings; the old way otherwise.
  return [...(args.pinned ? [pinChecksumSettingsSql(true)] : []), ...checks].join('\n');
}
