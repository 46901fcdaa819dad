/**
 * PostgreSQL backup and restore.
 *
 * Backup: pg_dump -Fc inside an exported snapshot, with the per-table row counts and checksums
 * taken in that same snapshot, so the manifest describes exactly what the dump holds.
 * Restore: verify the dump's sha256 and TOC → pg_restore into a staging database → compare the
 * staging copy with the manifest → swap it in with renames in one transaction. A live
 * database being replaced is moved aside, never dropped. Every stage is recorded in Postgres
 * itself (a COMMENT on the staging database), so a retry after a crash picks up where it was.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { Client } from 'pg';
import type { Config } from '../config';
import { ErrorType, fail } from '../domain/errors';
import { BACKUP_ID_PATTERN as BACKUP_ID } from '../domain/backupIds';
import { dumpKey, postgresManifestKey } from '../domain/layout';
import type { DatabaseBackup, PostgresManifest, TableStats } from '../domain/manifests';
import { POSTGRES_TARGETS, type PostgresTarget } from '../domain/targets';
import type { BackupStore } from '../infra/backupStore';
import { readSet } from '../infra/catalog';
import { withDatabase } from '../infra/database';
import { sha256File, shortTag } from '../infra/hashing';
import { CommandFailed, type CommandRunner } from '../infra/exec';
import { cancellationSignal, heartbeat, withHeartbeats } from './heartbeat';
import { parseToc, quoteIdent, selectTable } from './tocSelection';

export { dumpKey };
export type { DatabaseBackup, PostgresManifest, PostgresTarget, TableStats };

export interface PostgresBackupSummary {
  id: string;
  createdAt: string;
  databases: { target: PostgresTarget; database: string; size: number; tables: number; rows: number }[];
  /** The backup set's verification verdict, when the backup belongs to a verified set. */
  verified?: boolean;
}

export interface PreparedRestore {
  target: PostgresTarget;
  database: string;
  backupId: string;
  localPath: string;
  size: number;
  tocEntries: number;
}

export interface RestoreResult {
  target: PostgresTarget;
  database: string;
  backupId: string;
  tablesVerified: number;
  rowsVerified: number;
  movedAsideTo?: string;
  resumed: boolean;
}

export interface PostgresDeps {
  config: Config;
  exec: CommandRunner;
  store: BackupStore;
}

/** Postgres truncates identifiers at 63 bytes; keep room for our suffixes. */
const MAX_BASE = 40;

const tag = (recoveryId: string) => shortTag(recoveryId);

export function stagingName(database: string, recoveryId: string): string {
  return `${database.slice(0, MAX_BASE)}__dr_staging_${tag(recoveryId)}`;
}

export function asideName(database: string, recoveryId: string): string {
  return `${database.slice(0, MAX_BASE)}__dr_replaced_${tag(recoveryId)}`;
}

function marker(recoveryId: string, backupId: string): string {
  return `kohakku-dr restore ${tag(recoveryId)} of backup ${backupId}: verified`;
}

export function createPostgresActivities({ config, exec, store }: PostgresDeps) {
  const pg = config.postgres;
  const tool = (name: string) => (pg.binDir ? path.join(pg.binDir, name) : name);
  // Secrets reach the tools through the environment only.
  const toolEnv = { PGHOST: pg.host, PGPORT: String(pg.port), PGUSER: pg.user, PGPASSWORD: pg.password };
  const databaseOf = (target: PostgresTarget) => pg.databases[target];

  const withClient = <T>(database: string, fn: (client: Client) => Promise<T>) =>
    withDatabase(config, database, fn);

  const admin = <T>(fn: (client: Client) => Promise<T>) => withClient(pg.maintenanceDb, fn);

  async function databaseComment(client: Client, database: string): Promise<string | null | undefined> {
    const res = await client.query<{ comment: string | null }>(
      `SELECT shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE datname = $1`,
      [database],
    );
    return res.rowCount === 0 ? undefined : res.rows[0]!.comment;
  }

  async function dropDatabase(client: Client, database: string): Promise<void> {
    // FORCE also ends an orphaned pg_restore left running by a killed worker.
    await client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(database)} WITH (FORCE)`);
  }

  async function readManifest(backupId: string): Promise<PostgresManifest | undefined> {
    if (!BACKUP_ID.test(backupId)) {
      throw fail(
        ErrorType.InvalidInput,
        `"${backupId}" is not a backup id (expected YYYYMMDDTHHMMSSZ or "latest")`,
      );
    }
    return store.getJson<PostgresManifest>(postgresManifestKey(backupId));
  }

  /** A backup's summary, with its set's verification verdict. */
  async function summarize(m: PostgresManifest): Promise<PostgresBackupSummary> {
    const set = await readSet(store, m.id);
    return {
      id: m.id,
      createdAt: m.createdAt,
      verified: set?.verification?.ok ?? false,
      databases: m.databases.map((d) => ({
        target: d.target,
        database: d.database,
        size: d.size,
        tables: d.tables.length,
        rows: d.tables.reduce((n, t) => n + t.rows, 0),
      })),
    };
  }

  async function listPostgresBackups(): Promise<PostgresBackupSummary[]> {
    const objects = await store.list('postgres/');
    const ids = objects
      .filter((o) => o.key.endsWith('/manifest.json'))
      .map((o) => o.key.split('/')[1]!)
      .filter((id) => BACKUP_ID.test(id))
      .sort()
      .reverse();
    const summaries: PostgresBackupSummary[] = [];
    for (const id of ids) {
      const m = await readManifest(id);
      if (m) summaries.push(await summarize(m));
    }
    return summaries;
  }

  async function dumpOne(target: PostgresTarget, backupId: string, workDir: string): Promise<DatabaseBackup> {
    const database = databaseOf(target);
    const local = path.join(workDir, `${database}.dump`);
    return withClient(database, async (client) => {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      try {
        const snapshot = (await client.query<{ id: string }>('SELECT pg_export_snapshot() AS id')).rows[0]!
          .id;
        // Counting and hashing a large table takes a while: keep heartbeating meanwhile.
        const tables = await withHeartbeats(
          () => ({ stage: 'counting rows', database }),
          () => tableStats(client),
        );
        heartbeat({ stage: 'dumping', database });
        await withHeartbeats(
          () => ({ stage: 'dumping', database }),
          () =>
            exec(tool('pg_dump'), ['-Fc', '--snapshot', snapshot, '-f', local, '-d', database], {
              env: toolEnv,
              signal: cancellationSignal(),
            }),
        );
        const key = dumpKey(backupId, database);
        const size = (await fs.stat(local)).size;
        const sha256 = await sha256File(local);
        await withHeartbeats(
          () => ({ stage: 'uploading', database, size }),
          () => store.putFile(key, local),
        );
        return { target, database, key, size, sha256, tables };
      } finally {
        await client.query('COMMIT').catch(() => undefined);
      }
    });
  }

  /** pg_dump -Fc of every target into the backup store; the manifest is written last. */
  async function backupPostgres(input: {
    backupId: string;
    targets?: PostgresTarget[];
  }): Promise<PostgresManifest> {
    const existing = await readManifest(input.backupId);
    if (existing) return existing; // a retry after the manifest was written: already done
    await store.ensureReady();
    const workDir = path.join(config.workDir, 'backup', input.backupId);
    await fs.mkdir(workDir, { recursive: true });
    try {
      const serverVersion = await admin(
        async (c) => (await c.query<{ v: string }>('SHOW server_version')).rows[0]!.v,
      );
      const pgDumpVersion = (await exec(tool('pg_dump'), ['--version'])).stdout.trim();
      const databases: DatabaseBackup[] = [];
      for (const target of input.targets ?? POSTGRES_TARGETS)
        databases.push(await dumpOne(target, input.backupId, workDir));
      const manifest: PostgresManifest = {
        kind: 'postgres',
        formatVersion: 1,
        id: input.backupId,
        createdAt: new Date().toISOString(),
        serverVersion,
        pgDumpVersion,
        databases,
      };
      await store.putJson(postgresManifestKey(input.backupId), manifest);
      return manifest;
    } finally {
      await fs.rm(workDir, { recursive: true, force: true });
    }
  }

  /** Finds the backup to restore ("latest" or an id) and checks it covers the targets. */
  async function resolvePostgresBackup(input: {
    backupId?: string;
    targets: PostgresTarget[];
  }): Promise<PostgresBackupSummary> {
    for (const t of input.targets) {
      if (!(POSTGRES_TARGETS as readonly string[]).includes(t)) {
        throw fail(
          ErrorType.InvalidInput,
          `unknown target "${t}": expected one of ${POSTGRES_TARGETS.join(', ')}`,
        );
      }
    }
    const wanted = input.backupId ?? 'latest';
    let id = wanted;
    if (wanted === 'latest') {
      const all = await listPostgresBackups();
      if (all.length === 0) {
        throw fail(
          ErrorType.BackupNotFound,
          `no Postgres backup in ${store.location}: take one first (kohakku-dr backup postgres)`,
        );
      }
      // The newest backup whose set was verified restorable; the newest of all when none was verified.
      id = all.find((b) => b.verified)?.id ?? all[0]!.id;
    }
    const manifest = await readManifest(id);
    if (!manifest) {
      throw fail(
        ErrorType.BackupNotFound,
        `backup ${id} not found in ${store.location} (kohakku-dr backups lists them)`,
      );
    }
    for (const t of input.targets) {
      if (!manifest.databases.some((d) => d.target === t)) {
        throw fail(ErrorType.BackupNotFound, `backup ${id} has no dump of target ${t}`);
      }
    }
    return summarize(manifest);
  }

  /** Which target databases exist now (a restore over one replaces live data). */
  async function liveDatabases(input: { targets: PostgresTarget[] }): Promise<PostgresTarget[]> {
    return admin(async (client) => {
      const res = await client.query<{ datname: string }>('SELECT datname FROM pg_database');
      const names = new Set(res.rows.map((r) => r.datname));
      return input.targets.filter((t) => names.has(databaseOf(t)));
    });
  }

  function localDumpPath(recoveryId: string, database: string): string {
    return path.join(config.workDir, 'restore', tag(recoveryId), `${database}.dump`);
  }

  async function entryFor(backupId: string, target: PostgresTarget): Promise<DatabaseBackup> {
    const manifest = await readManifest(backupId);
    const entry = manifest?.databases.find((d) => d.target === target);
    if (!entry) throw fail(ErrorType.BackupNotFound, `backup ${backupId} has no dump of target ${target}`);
    return entry;
  }

  /** Downloads (unless a verified copy is already here) and checks size and sha256. */
  async function fetchVerifiedDump(entry: DatabaseBackup, local: string): Promise<void> {
    const matches = async () => {
      const st = await fs.stat(local).catch(() => undefined);
      return st?.size === entry.size && (await sha256File(local)) === entry.sha256;
    };
    if (await matches()) return;
    const stored = await store.stat(entry.key);
    if (!stored)
      throw fail(
        ErrorType.BackupNotFound,
        `dump ${entry.key} listed in the manifest is missing from ${store.location}`,
      );
    await withHeartbeats(
      () => ({ stage: 'downloading', key: entry.key, size: entry.size }),
      () => store.getFile(entry.key, local),
    );
    if (!(await matches())) {
      const actual = await sha256File(local);
      await fs.rm(local, { force: true });
      throw fail(
        ErrorType.BackupCorrupt,
        `dump ${entry.key} is corrupt: sha256 ${actual.slice(0, 12)}… size ${stored.size}, manifest says ${entry.sha256.slice(0, 12)}… size ${entry.size}. ` +
          'Nothing was restored; pick another backup (--backup ID).',
      );
    }
  }

  async function tocEntries(local: string, key: string): Promise<number> {
    try {
      const list = await exec(tool('pg_restore'), ['--list', local]);
      return list.stdout.split('\n').filter((l) => l.trim() && !l.startsWith(';')).length;
    } catch (err) {
      if (err instanceof CommandFailed && err.exitCode === undefined) {
        throw fail(ErrorType.ToolUnavailable, `pg_restore not found (set PG_BIN_DIR): ${err.message}`);
      }
      throw fail(ErrorType.BackupCorrupt, `pg_restore cannot read ${key}: ${(err as Error).message}`);
    }
  }

  /** Everything that can be checked without touching live data: the dump is there, whole and readable. */
  async function preparePostgresRestore(input: {
    backupId: string;
    target: PostgresTarget;
    recoveryId: string;
  }): Promise<PreparedRestore> {
    const entry = await entryFor(input.backupId, input.target);
    const local = localDumpPath(input.recoveryId, entry.database);
    await fetchVerifiedDump(entry, local);
    const toc = await tocEntries(local, entry.key);
    return {
      target: input.target,
      database: entry.database,
      backupId: input.backupId,
      localPath: local,
      size: entry.size,
      tocEntries: toc,
    };
  }

  async function swapIn(staging: string, live: string, aside: string): Promise<string | undefined> {
    return admin(async (client) => {
      const q = (n: string) => client.escapeIdentifier(n);
      const exists = async (n: string) =>
        ((await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [n])).rowCount ?? 0) > 0;
      const liveExists = await exists(live);
      if (liveExists && (await exists(aside))) {
        throw fail(
          ErrorType.LiveDataExists,
          `cannot move ${live} aside: ${aside} already exists; rename or drop it first`,
        );
      }
      if (liveExists) await client.query(`ALTER DATABASE ${q(live)} WITH ALLOW_CONNECTIONS false`);
      // Services reconnect quickly; retry the terminate+rename until no session slips in between.
      for (let attempt = 1; ; attempt++) {
        await client.query(
          'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ANY($1) AND pid <> pg_backend_pid()',
          [[live, staging]],
        );
        try {
          await client.query('BEGIN');
          if (liveExists) await client.query(`ALTER DATABASE ${q(live)} RENAME TO ${q(aside)}`);
          await client.query(`ALTER DATABASE ${q(staging)} RENAME TO ${q(live)}`);
          await client.query('COMMIT');
          break;
        } catch (err) {
          await client.query('ROLLBACK').catch(() => undefined);
          if (attempt >= 20 || !/being accessed by other users/.test((err as Error).message)) throw err;
          await new Promise((r) => setTimeout(r, 250));
        }
      }
      // The moved-aside copy keeps its data for the operator to inspect; services never look for its name.
      if (liveExists) await client.query(`ALTER DATABASE ${q(aside)} WITH ALLOW_CONNECTIONS true`);
      return liveExists ? aside : undefined;
    });
  }

  /** pg_restore into a new database `into` (dropped first if a killed attempt left it), then compare with the manifest. */
  async function restoreAndCompare(
    entry: DatabaseBackup,
    local: string,
    into: string,
    tocTotal: number,
  ): Promise<string[]> {
    await admin(async (c) => {
      await dropDatabase(c, into); // a half-restored copy from a killed attempt
      await c.query(`CREATE DATABASE ${c.escapeIdentifier(into)} TEMPLATE template0`);
    });
    let itemsDone = 0;
    await withHeartbeats(
      () => ({ stage: 'restoring', database: entry.database, into, itemsDone, itemsTotal: tocTotal }),
      () =>
        exec(tool('pg_restore'), ['--exit-on-error', '-v', '-j', String(pg.restoreJobs), '-d', into, local], {
          env: toolEnv,
          signal: cancellationSignal(),
          onStderrLine: (line) => {
            if (/^pg_restore: (creating|processing|executing)/.test(line)) itemsDone++;
          },
        }),
    );
    heartbeat({ stage: 'comparing', database: entry.database, into });
    const actual = await withHeartbeats(
      () => ({ stage: 'comparing', database: entry.database, into }),
      () => withClient(into, tableStats),
    );
    return compareTables(entry.tables, actual);
  }

  /**
   * Restores one database from a verified dump via a staging copy. Idempotent: a retry sees
   * from Postgres itself whether the swap already happened or a verified staging copy waits.
   */
  async function restorePostgresDatabase(input: {
    backupId: string;
    target: PostgresTarget;
    recoveryId: string;
    replaceExisting: boolean;
  }): Promise<RestoreResult> {
    const entry = await entryFor(input.backupId, input.target);
    const live = entry.database;
    const staging = stagingName(live, input.recoveryId);
    const aside = asideName(live, input.recoveryId);
    const done = marker(input.recoveryId, input.backupId);
    const rows = entry.tables.reduce((n, t) => n + t.rows, 0);
    const result = (resumed: boolean, movedAsideTo?: string): RestoreResult => ({
      target: input.target,
      database: live,
      backupId: input.backupId,
      tablesVerified: entry.tables.length,
      rowsVerified: rows,
      movedAsideTo,
      resumed,
    });

    const state = await admin(async (c) => ({
      live: await databaseComment(c, live),
      staging: await databaseComment(c, staging),
    }));
    if (state.live === done) {
      // Swapped by an earlier attempt; it moved the old live database aside if there was one.
      const asideExists = (await admin((c) => databaseComment(c, aside))) !== undefined;
      return result(true, asideExists ? aside : undefined);
    }
    if (state.live !== undefined && !input.replaceExisting) {
      throw fail(
        ErrorType.LiveDataExists,
        `database ${live} exists; set replaceExisting to move it aside as ${aside} and restore`,
      );
    }
    let resumed = false;
    if (state.staging === done) {
      resumed = true; // restored and verified by an earlier attempt; only the swap is left
    } else {
      const local = localDumpPath(input.recoveryId, live);
      await fetchVerifiedDump(entry, local);
      const total = await tocEntries(local, entry.key);
      resumed = state.staging !== undefined;
      const problems = await restoreAndCompare(entry, local, staging, total);
      if (problems.length > 0) {
        await admin((c) => dropDatabase(c, staging));
        throw fail(
          ErrorType.RestoreVerificationFailed,
          `restored copy of ${live} differs from backup ${input.backupId}: ${problems.slice(0, 5).join('; ')}. Live data untouched.`,
        );
      }
      await admin((c) =>
        c.query(`COMMENT ON DATABASE ${c.escapeIdentifier(staging)} IS ${c.escapeLiteral(done)}`),
      );
    }
    heartbeat({ stage: 'swapping', database: live, staging });
    const movedAsideTo = await swapIn(staging, live, aside);
    return result(resumed, movedAsideTo);
  }

  /** The always-run cleanup: drop this recovery's staging copies (never live or moved-aside ones) and local files. */
  async function cleanupPostgresRestore(input: {
    recoveryId: string;
    targets: PostgresTarget[];
  }): Promise<{ droppedStaging: string[] }> {
    const dropped: string[] = [];
    await admin(async (c) => {
      for (const t of input.targets.filter((x) => (POSTGRES_TARGETS as readonly string[]).includes(x))) {
        const staging = stagingName(databaseOf(t), input.recoveryId);
        if ((await databaseComment(c, staging)) !== undefined) {
          await dropDatabase(c, staging);
          dropped.push(staging);
        }
      }
    });
    await fs.rm(path.dirname(localDumpPath(input.recoveryId, 'x')), { recursive: true, force: true });
    return { droppedStaging: dropped };
  }

  const verifyTag = (verifyId: string) => tag(`verify:${verifyId}`);
  const scratchName = (database: string, verifyId: string) =>
    `${database.slice(0, MAX_BASE)}__dr_verify_${verifyTag(verifyId)}`;

  /**
   * Restores every dump of a backup into scratch databases and compares them with the
   * manifest. Problems are returned, not thrown: the verdict is recorded on the backup set.
   * Scratch databases are dropped here and, whatever happens, by cleanupPostgresVerification.
   */
  async function verifyPostgresBackup(input: {
    backupId: string;
    verifyId: string;
  }): Promise<{ ok: boolean; problems: string[]; databases: number }> {
    const manifest = await readManifest(input.backupId);
    if (!manifest) return { ok: false, problems: [`no Postgres backup ${input.backupId}`], databases: 0 };
    const dir = path.join(config.workDir, 'verify', `postgres-${verifyTag(input.verifyId)}`);
    const problems: string[] = [];
    try {
      for (const entry of manifest.databases) {
        const local = path.join(dir, `${entry.database}.dump`);
        const scratch = scratchName(entry.database, input.verifyId);
        try {
          await fetchVerifiedDump(entry, local);
          const differences = await restoreAndCompare(
            entry,
            local,
            scratch,
            await tocEntries(local, entry.key),
          );
          problems.push(...differences.map((d) => `${entry.database}: ${d}`));
        } catch (err) {
          const cause = err instanceof Error ? err.message : String(err);
          if ((err as { type?: string }).type || err instanceof CommandFailed)
            problems.push(`${entry.database}: ${cause}`);
          else throw err; // infrastructure trouble: retried by policy
        } finally {
          await admin((c) => dropDatabase(c, scratch));
          await fs.rm(local, { force: true });
        }
      }
      return { ok: problems.length === 0, problems, databases: manifest.databases.length };
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  }

  async function cleanupPostgresVerification(input: { verifyId: string }): Promise<{ dropped: string[] }> {
    const dropped: string[] = [];
    await admin(async (c) => {
      for (const t of POSTGRES_TARGETS) {
        const scratch = scratchName(databaseOf(t), input.verifyId);
        if ((await databaseComment(c, scratch)) !== undefined) {
          await dropDatabase(c, scratch);
          dropped.push(scratch);
        }
      }
    });
    await fs.rm(path.join(config.workDir, 'verify', `postgres-${verifyTag(input.verifyId)}`), {
      recursive: true,
      force: true,
    });
    return { dropped };
  }

  /** Which of these tables exist in the target's live database (a table restore replaces them). */
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

  return {
    backupPostgres,
    listPostgresBackups,
    resolvePostgresBackup,
    liveDatabases,
    preparePostgresRestore,
    restorePostgresDatabase,
    cleanupPostgresRestore,
    verifyPostgresBackup,
    cleanupPostgresVerification,
    liveTables,
    restorePostgresTables,
  };
}

/** Row count and order-independent checksum of every user table. */
export async function tableStats(client: Client): Promise<TableStats[]> {
  const tables = await client.query<{ name: string }>(
    `SELECT format('%I.%I', schemaname, tablename) AS name FROM pg_tables
      WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1`,
  );
  const stats: TableStats[] = [];
  for (const { name } of tables.rows) {
    // Order-independent: the md5 of the sorted row hashes.
    const res = await client.query<{ rows: string; checksum: string | null }>(
      `SELECT count(*) AS rows, md5(string_agg(h, '' ORDER BY h)) AS checksum
         FROM (SELECT md5(t::text) AS h FROM ${name} t) s`,
    );
    stats.push({ table: name, rows: Number(res.rows[0]!.rows), checksum: res.rows[0]!.checksum ?? 'empty' });
  }
  return stats;
}

/** "schema.table" or "table" (schema public). */
export function splitTable(name: string): [string, string] {
  const i = name.indexOf('.');
  return i < 0 ? ['public', name] : [name.slice(0, i), name.slice(i + 1)];
}

export function compareTables(expected: TableStats[], actual: TableStats[]): string[] {
  const problems: string[] = [];
  const byName = new Map(actual.map((t) => [t.table, t]));
  for (const e of expected) {
    const a = byName.get(e.table);
    if (!a) problems.push(`table ${e.table} missing`);
    else if (a.rows !== e.rows) problems.push(`${e.table}: ${a.rows} rows, backup has ${e.rows}`);
    else if (a.checksum !== e.checksum) problems.push(`${e.table}: checksum differs`);
    byName.delete(e.table);
  }
  for (const extra of byName.keys()) problems.push(`unexpected table ${extra}`);
  return problems;
}
