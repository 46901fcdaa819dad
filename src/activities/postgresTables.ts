/**
 * Manual restore of whole tables (the runbook's `pg_restore -t`, but complete), in one
 * transaction through psql, verified against the manifest before COMMIT.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { ErrorType, fail } from '../domain/errors';
import type { PostgresTarget } from '../domain/targets';
import { shortTag } from '../infra/hashing';
import { cancellationSignal, withHeartbeats } from './heartbeat';
import { splitTable, type PostgresKit } from './postgresKit';
import { parseToc, quoteIdent, selectTable } from './tocSelection';

const tag = (recoveryId: string) => shortTag(recoveryId);

export function createPostgresTableActivities(kit: PostgresKit) {
  const { exec, tool, toolEnv, databaseOf, withClient, entryFor, localDumpPath, fetchVerifiedDump } = kit;
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

  /**
   * Restores whole tables (the runbook's `pg_restore -t`, but complete: indexes, constraints,
   * triggers, owned sequences and their values, and the foreign keys that point at them).
   * One transaction through psql: a live table is moved into the schema
   * `kohakku_dr_replaced_<tag>` (with its indexes and sequences), the archive's entries are
   * replayed, and the restored rows are compared with the manifest before COMMIT — so the
   * table is either back whole and verified, or nothing changed. The aside schema doubles as
   * the marker that makes a retry a no-op.
   */
  async function restorePostgresTables(input: {
    backupId: string;
    target: PostgresTarget;
    tables: string[];
    recoveryId: string;
  }): Promise<{
    database: string;
    tables: { table: string; rows: number; entries: number }[];
    movedAsideTo: string;
    resumed: boolean;
  }> {
    const entry = await entryFor(input.backupId, input.target);
    const database = databaseOf(input.target);
    const asideSchema = `kohakku_dr_replaced_${tag(input.recoveryId)}`;
    const wanted = input.tables.map((t) => {
      const [schema, table] = splitTable(t);
      const stats = entry.tables.find(
        (x) => x.table === `${schema}.${table}` || x.table === `${quoteIdent(schema)}.${quoteIdent(table)}`,
      );
      if (!stats)
        throw fail(
          ErrorType.InvalidInput,
          `backup ${input.backupId} of ${database} has no table ${schema}.${table}`,
        );
      return { schema, table, stats };
    });
    const done = await withClient(
      database,
      async (c) =>
        ((await c.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [asideSchema])).rowCount ?? 0) > 0,
    );
    const summary = (resumed: boolean, counts: number[]) => ({
      database,
      tables: wanted.map((w, i) => ({
        table: `${w.schema}.${w.table}`,
        rows: w.stats.rows,
        entries: counts[i] ?? 0,
      })),
      movedAsideTo: asideSchema,
      resumed,
    });
    if (done) return summary(true, []);

    const local = localDumpPath(input.recoveryId, database);
    await fetchVerifiedDump(entry, local);
    const dir = path.dirname(local);
    const toc = parseToc(
      (await exec(tool('pg_restore'), ['-l', local])).stdout,
      (await exec(tool('pg_restore'), ['--schema-only', '-f', '-', local])).stdout,
    );
    const selections = wanted.map((w) => selectTable(toc, w.schema, w.table));
    const listFile = path.join(dir, 'tables.list');
    const ids = new Set(selections.flatMap((sel) => sel.entries.map((e) => e.id)));
    await fs.writeFile(
      listFile,
      toc
        .filter((e) => ids.has(e.id))
        .map((e) => e.line)
        .join('\n') + '\n',
    );
    const script = path.join(dir, 'tables.sql');
    await exec(tool('pg_restore'), ['-L', listFile, '-f', script, local]);

    const prologue = [
      `CREATE SCHEMA ${quoteIdent(asideSchema)};`,
      ...wanted.map(
        (w) =>
          `ALTER TABLE IF EXISTS ${quoteIdent(w.schema)}.${quoteIdent(w.table)} SET SCHEMA ${quoteIdent(asideSchema)};`,
      ),
      // Foreign keys elsewhere that point at a moved table: dropped here, recreated from the backup.
      ...selections.flatMap((sel, i) =>
        sel.referencingForeignKeys.map(
          (fk) =>
            `ALTER TABLE IF EXISTS ${quoteIdent(wanted[i]!.schema)}.${quoteIdent(fk.table)} DROP CONSTRAINT IF EXISTS ${quoteIdent(fk.constraint)};`,
        ),
      ),
    ].join('\n');
    const epilogue = wanted
      .map((w) => {
        const q = `${quoteIdent(w.schema)}.${quoteIdent(w.table)}`;
        const expected = w.stats.checksum === 'empty' ? 'NULL' : `'${w.stats.checksum}'`;
        return `DO $check$ BEGIN
  IF (SELECT count(*) FROM ${q}) <> ${w.stats.rows}
     OR (SELECT md5(string_agg(h, '' ORDER BY h)) FROM (SELECT md5(t::text) AS h FROM ${q} t) s) IS DISTINCT FROM ${expected} THEN
    RAISE EXCEPTION 'kohakku-dr: restored ${q} differs from backup ${input.backupId}; rolled back, nothing changed';
  END IF;
END $check$;`;
      })
      .join('\n');
    await fs.writeFile(path.join(dir, 'prologue.sql'), prologue + '\n');
    await fs.writeFile(path.join(dir, 'epilogue.sql'), epilogue + '\n');
    await withHeartbeats(
      () => ({ stage: 'restoring tables', database, tables: input.tables }),
      () =>
        exec(
          tool('psql'),
          [
            '-X',
            '-q',
            '-v',
            'ON_ERROR_STOP=1',
            '--single-transaction',
            '-d',
            database,
            '-f',
            path.join(dir, 'prologue.sql'),
            '-f',
            script,
            '-f',
            path.join(dir, 'epilogue.sql'),
          ],
          { env: toolEnv, signal: cancellationSignal() },
        ),
    ).catch((err: Error) => {
      if (/differs from backup/.test(err.message))
        throw fail(ErrorType.RestoreVerificationFailed, err.message);
      throw err;
    });
    return summary(
      false,
      selections.map((sel) => sel.entries.length),
    );
  }

  return { liveTables, restorePostgresTables };
}
