/**
 * What the Postgres activities share: the tools and their environment, short sessions on the
 * server, the backup's manifest, the downloaded and checked dump, and a restore into a fresh
 * database compared with the manifest. Backup, restore, table restore and verification are
 * each in a file of their own and build on this kit.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { Client } from 'pg';
import type { Config } from '../config';
import type { StoreName } from '../domain/stores';
import { BACKUP_ID_PATTERN as BACKUP_ID } from '../domain/backupIds';
import { ErrorType, fail } from '../domain/errors';
import { postgresManifestKey } from '../domain/layout';
import {
  postgresMajor,
  postgresManifestProblem,
  type DatabaseBackup,
  type PostgresManifest,
  type TableStats,
} from '../domain/manifests';
import type { PostgresTarget } from '../domain/targets';
import type { BackupStore } from '../infra/backupStore';
import { readSet } from '../infra/catalog';
import { withDatabase } from '../infra/database';
import { CommandFailed, type CommandRunner } from '../infra/exec';
import { asNoSpace, ensureRoomFor } from '../infra/files';
import { shortTag } from '../infra/hashing';
import { meter } from '../domain/meter';
import {
  heartbeat,
  cancellationSignal,
  sha256WithHeartbeats,
  transferWithHeartbeats,
  withHeartbeats,
} from './heartbeat';
import { CHECKSUM_VERSION, pinChecksumSettingsSql } from '../domain/checksums';
import {
  applyDatabaseProperties,
  createDatabaseFor,
  missingRoles,
  requireRoles,
  rolesNamedBy,
  serverVersionNum,
} from './postgresGlobals';

export interface PostgresBackupSummary {
  id: string;
  createdAt: string;
  databases: { target: PostgresTarget; database: string; size: number; tables: number; rows: number }[];
  /** The backup set's verification verdict, when the backup belongs to a verified set. */
  verified?: boolean;
  /** When resolved for a restore: which backup was chosen and why, in words. */
  choice?: string;
  /** When resolved for a restore: every newer backup passed over, with its reason. */
  skipped?: { id: string; reason: string }[];
  /** When resolved for a restore: the store it is read from, and that store for people. */
  source?: StoreName;
  sourceLocation?: string;
}

export interface PreparedRestore {
  target: PostgresTarget;
  database: string;
  backupId: string;
  localPath: string;
  size: number;
  tocEntries: number;
}

export interface PostgresDeps {
  config: Config;
  exec: CommandRunner;
  store: BackupStore;
}

/** Postgres truncates identifiers at 63 bytes; keep room for our suffixes. */
export const MAX_BASE = 40;

const tag = (recoveryId: string) => shortTag(recoveryId);

export function stagingName(database: string, recoveryId: string): string {
  return `${database.slice(0, MAX_BASE)}__dr_staging_${tag(recoveryId)}`;
}

export function asideName(database: string, recoveryId: string): string {
  return `${database.slice(0, MAX_BASE)}__dr_replaced_${tag(recoveryId)}`;
}

export function marker(recoveryId: string, backupId: string): string {
  return `kohakku-dr restore ${tag(recoveryId)} of backup ${backupId}: verified`;
}

export type PostgresKit = ReturnType<typeof postgresKit>;

export function postgresKit({ config, exec, store }: PostgresDeps) {
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
    const manifest = await store.getJson<PostgresManifest>(postgresManifestKey(backupId));
    const problem = manifest === undefined ? undefined : postgresManifestProblem(manifest, backupId);
    if (problem) {
      throw fail(
        ErrorType.BackupCorrupt,
        `${postgresManifestKey(backupId)} in ${store.location} is damaged or was altered: ${problem}. ` +
          'Nothing was restored from it; pick another backup (kohakku-dr backups lists them).',
      );
    }
    for (const entry of manifest?.databases ?? []) rememberChecksumVersion(entry, manifest!.checksumVersion);
    return manifest;
  }

  /**
   * Refuses, before anything is fetched, a backup this machine cannot restore: a dump from a
   * newer PostgreSQL major than the live server (PostgreSQL restores dumps only forwards) or a
   * pg_dump newer than this worker's pg_restore (its archive format would not be readable).
   */
  async function checkRestorableHere(m: PostgresManifest): Promise<void> {
    const backupServer = m.serverVersion === undefined ? undefined : postgresMajor(m.serverVersion);
    const backupDump = postgresMajor(m.pgDumpVersion ?? '');
    const liveServer = Math.floor((await admin(serverVersionNum)) / 10000);
    const restoreTool = postgresMajor(
      (
        await exec(tool('pg_restore'), ['--version']).catch((err: unknown) => {
          if (err instanceof CommandFailed && err.exitCode === undefined)
            throw fail(ErrorType.ToolUnavailable, `pg_restore not found (set PG_BIN_DIR): ${err.message}`);
          throw err;
        })
      ).stdout,
    );
    if (backupServer !== undefined && backupServer > liveServer) {
      throw fail(
        ErrorType.BackupIncompatible,
        `backup ${m.id} was taken from PostgreSQL ${m.serverVersion}, newer than the live server (${liveServer}): ` +
          `a dump restores only into the same or a newer major. Restore onto PostgreSQL ${backupServer} or newer, or pick an older backup.`,
      );
    }
    if (backupDump !== undefined && restoreTool !== undefined && backupDump > restoreTool) {
      throw fail(
        ErrorType.BackupIncompatible,
        `backup ${m.id} was written by ${m.pgDumpVersion}; this worker's pg_restore is ${restoreTool}, which cannot read it. ` +
          `Point PG_BIN_DIR at PostgreSQL ${backupDump}'s tools, or pick an older backup.`,
      );
    }
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
      return st?.size === entry.size && (await sha256WithHeartbeats(local)) === entry.sha256;
    };
    if (await matches()) return;
    const stored = await store.stat(entry.key);
    if (!stored)
      throw fail(
        ErrorType.BackupNotFound,
        `dump ${entry.key} listed in the manifest is missing from ${store.location}`,
      );
    const dir = path.dirname(local);
    const what = `the dump ${path.basename(entry.key)}`;
    const replaced = (await fs.stat(local).catch(() => undefined))?.size ?? 0; // an earlier attempt's copy
    await ensureRoomFor(dir, entry.size - replaced, what);
    await transferWithHeartbeats({
      details: { stage: 'downloading', key: entry.key, size: entry.size },
      what: `downloading ${path.basename(entry.key)}`,
      size: entry.size,
      transfer: (onBytes) => store.getFile(entry.key, local, onBytes),
    }).catch(async (err: unknown) => {
      const named = asNoSpace(err, dir, what);
      if (named !== err) await fs.rm(local, { force: true }); // the disk is not left full
      throw named;
    });
    if (!(await matches())) {
      const actual = await sha256WithHeartbeats(local);
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

  /**
   * pg_restore into a new database `into` (dropped first if a killed attempt left it), the
   * backup's database properties applied, then compared with the manifest — the checksums
   * computed the way the manifest's were (pinned settings, or a 0.1 manifest's unpinned way).
   */
  async function restoreAndCompare(
    entry: DatabaseBackup,
    local: string,
    into: string,
    tocTotal: number,
  ): Promise<string[]> {
    const checksums = checksumOptionsFor(entry);
    await admin(async (c) => {
      // The roles the database needs must exist before pg_restore assigns owners and grants.
      if (entry.properties) await requireRoles(c, entry.database, rolesNamedBy(entry.properties));
      await dropDatabase(c, into); // a half-restored copy from a killed attempt
      await createDatabaseFor(c, into, entry);
    });
    let itemsDone = 0;
    await withHeartbeats(
      () => ({
        stage: 'restoring',
        database: entry.database,
        into,
        itemsDone,
        itemsTotal: tocTotal,
        meter: meter(`pg_restore into ${into}`, 'items', itemsDone, tocTotal),
      }),
      () =>
        exec(tool('pg_restore'), ['--exit-on-error', '-v', '-j', String(pg.restoreJobs), '-d', into, local], {
          env: toolEnv,
          signal: cancellationSignal(),
          onStderrLine: (line) => {
            if (/^pg_restore: (creating|processing|executing)/.test(line)) itemsDone++;
          },
        }),
    ).catch((err: unknown) => {
      // An object owned by (or granted to) a role this server lacks.
      const role = /role "((?:[^"]|"")+)" does not exist/.exec((err as Error).message ?? '');
      if (role) throw missingRoles(entry.database, [role[1]!.replace(/""/g, '"')]);
      throw err;
    });
    // After pg_restore, so settings like default_transaction_read_only never reach its sessions.
    await admin((c) => applyDatabaseProperties(c, into, entry));
    heartbeat({ stage: 'comparing', database: entry.database, into });
    const actual = await withHeartbeats(
      () => ({ stage: 'comparing', database: entry.database, into }),
      // A fresh copy nobody writes to: its tables hashed on as many sessions as pg_restore used.
      () => tableStatsInParallel((fn) => withClient(into, fn), checksums, pg.restoreJobs),
    );
    return compareTables(entry.tables, actual);
  }

  return {
    config,
    exec,
    store,
    pg,
    tool,
    toolEnv,
    databaseOf,
    withClient,
    admin,
    databaseComment,
    dropDatabase,
    readManifest,
    checkRestorableHere,
    summarize,
    localDumpPath,
    entryFor,
    fetchVerifiedDump,
    tocEntries,
    restoreAndCompare,
  };
}

/**
 * The checksum version of each manifest entry the kit has read, so a comparison computes its
 * checksums the way the backup did without every caller passing the version along.
 */
const checksumVersions = new WeakMap<DatabaseBackup, number | undefined>();

function rememberChecksumVersion(entry: DatabaseBackup, version: number | undefined): void {
  checksumVersions.set(entry, version);
}

export interface TableStatsOptions {
  /**
   * true only to check a manifest written before 0.2 (no checksumVersion): its checksums were
   * taken with whatever settings the backup's session had, so they are compared the same way.
   */
  unpinned?: boolean;
  /**
   * The checksums a comparison will be made against (a manifest's tables): each table is hashed
   * by the method its expected checksum was computed with. Without it (a backup), each table gets
   * the fastest method its column types allow.
   */
  expected?: TableStats[];
}

/** How to compute checksums comparable with `entry`'s (read through the kit; unknown entries: pinned). */
export function checksumOptionsFor(entry: DatabaseBackup): TableStatsOptions {
  const version = checksumVersions.has(entry) ? checksumVersions.get(entry) : CHECKSUM_VERSION;
  return { ...checksumOptions(version), expected: entry.tables };
}

/** Options for a manifest's `checksumVersion`. */
export function checksumOptions(version: number | undefined): TableStatsOptions {
  if (version === undefined) return { unpinned: true };
  if (version > CHECKSUM_VERSION) {
    throw fail(
      ErrorType.ToolUnavailable,
      `the backup's checksums were computed by a newer kohakku-dr (checksum version ${version}, this worker knows ${CHECKSUM_VERSION}): upgrade the worker`,
    );
  }
  return {};
}

/**
 * Row count and order-independent checksum of every user table. Pins the session settings a
 * row's text depends on first (src/domain/checksums.ts), so the result is the same whatever
 * PGOPTIONS, ALTER DATABASE/ROLE SET or the server's defaults say; session-level SET, so it
 * also holds inside the backup's snapshot transaction.
 */
export async function tableStats(client: Client, options: TableStatsOptions = {}): Promise<TableStats[]> {
  await prepareChecksumSession(client, options);
  const stats: TableStats[] = [];
  for (const name of await userTables(client))
    stats.push(await tableChecksum(client, name, await methodFor(client, name, options)));
  return stats;
}

/**
 * tableStats over `parallel` sessions at once, the biggest tables first — for a database nobody
 * else writes to (a restored copy), where no common snapshot is needed. Sessions come from
 * `session` (one per worker), each set up as tableStats's is.
 */
export async function tableStatsInParallel(
  session: <T>(fn: (client: Client) => Promise<T>) => Promise<T>,
  options: TableStatsOptions,
  parallel: number,
): Promise<TableStats[]> {
  // Pinned first: settings such as quote_all_identifiers change the names format() gives.
  const queue = await session(async (c) => {
    await prepareChecksumSession(c, options);
    return userTables(c, { biggestFirst: true });
  });
  const stats: TableStats[] = [];
  await Promise.all(
    Array.from({ length: Math.max(1, Math.min(parallel, queue.length)) }, () =>
      session(async (c) => {
        await prepareChecksumSession(c, options);
        for (let name = queue.shift(); name !== undefined; name = queue.shift())
          stats.push(await tableChecksum(c, name, await methodFor(c, name, options)));
      }),
    ),
  );
  return stats.sort((a, b) => (a.table < b.table ? -1 : a.table > b.table ? 1 : 0));
}

/** The session settings every checksum is computed under (see tableStats). */
async function prepareChecksumSession(client: Client, options: TableStatsOptions): Promise<void> {
  if (!options.unpinned) await client.query(pinChecksumSettingsSql());
  // Not about the text: a database's statement_timeout must not cut the hashing of a big table short.
  await client.query('SET statement_timeout = 0');
}

/** Every user table, qualified: by name, or the biggest first. */
async function userTables(client: Client, order: { biggestFirst?: boolean } = {}): Promise<string[]> {
  const tables = await client.query<{ name: string }>(
    `SELECT format('%I.%I', schemaname, tablename) AS name FROM pg_catalog.pg_tables
      WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
      ORDER BY ${order.biggestFirst ? `pg_catalog.pg_relation_size(format('%I.%I', schemaname, tablename)::regclass) DESC, ` : ''}1`,
  );
  return tables.rows.map((r) => r.name);
}

/**
 * The two ways a table's checksum is computed (checksum version 3):
 * - `row-hash`: the sum of `hash_record_extended(row, 0)` — PostgreSQL's own 64-bit hash of each
 *   row's binary values, the one hash partitioning relies on staying stable across releases.
 *   No text is printed, so no setting changes it; about 7× cheaper than `row-text`. Needs
 *   PostgreSQL 14 and a hash function for every column's type.
 * - `row-text`: the md5 of the sorted md5s of each row's text (`t::text`) — for tables with a
 *   column type PostgreSQL cannot hash (json, point, xml, a composite holding one…), servers
 *   before 14, and every checksum written before version 3.
 * A checksum says which: `rowhash:<sum>`, or 32 hex digits.
 */
export type TableChecksumMethod = 'row-hash' | 'row-text';

const ROW_HASH_PREFIX = 'rowhash:';

/** The method an expected checksum was computed with ('empty' matches both). */
export function checksumMethodOf(checksum: string): TableChecksumMethod {
  return checksum.startsWith(ROW_HASH_PREFIX) ? 'row-hash' : 'row-text';
}

async function methodFor(
  client: Client,
  qualifiedTable: string,
  options: TableStatsOptions,
): Promise<TableChecksumMethod> {
  // A checksum to compare with says how it was computed (before version 3: always by text).
  const expected = options.expected?.find((t) => t.table === qualifiedTable);
  if (expected && expected.checksum !== 'empty') return checksumMethodOf(expected.checksum);
  if (options.expected && !expected) return 'row-text'; // not in the backup: reported as unexpected anyway
  if (options.unpinned) return 'row-text'; // computing what a pre-0.2 backup would have recorded
  return (await rowHashable(client, qualifiedTable)) ? 'row-hash' : 'row-text';
}

/**
 * Whether `hash_record_extended` can hash this table's rows: it looks up every column's hash
 * function before it looks at the values, so one row of NULLs tells. Inside a transaction (the
 * backup's snapshot) the probe runs under a savepoint, so its error aborts nothing.
 */
async function rowHashable(client: Client, qualifiedTable: string): Promise<boolean> {
  if ((await serverVersionNum(client)) < 140000) return false;
  let inTransaction = true;
  try {
    await client.query('SAVEPOINT kohakku_dr_row_hash_probe');
  } catch (err) {
    if ((err as { code?: string }).code !== '25P01') throw err; // no_active_sql_transaction
    inTransaction = false;
  }
  try {
    await client.query(
      `SELECT pg_catalog.hash_record_extended(x, 0) FROM (SELECT (NULL::${qualifiedTable}).*) x`,
    );
    return true;
  } catch (err) {
    if ((err as { code?: string }).code !== '42883') throw err; // undefined_function: a column type without a hash
    if (inTransaction) await client.query('ROLLBACK TO SAVEPOINT kohakku_dr_row_hash_probe');
    return false;
  } finally {
    if (inTransaction) await client.query('RELEASE SAVEPOINT kohakku_dr_row_hash_probe');
  }
}

/**
 * The one definition of a table's checksum (see TableChecksumMethod): its row count and an
 * order-independent checksum, as columns `rows` and `checksum` (NULL for an empty table).
 * Backups, verification, restores and the table-restore transaction all use this query.
 */
export function tableChecksumSql(qualifiedTable: string, method: TableChecksumMethod): string {
  if (method === 'row-hash')
    return `SELECT pg_catalog.count(*) AS rows,
      '${ROW_HASH_PREFIX}' OPERATOR(pg_catalog.||) pg_catalog.sum(pg_catalog.hash_record_extended(t, 0)::pg_catalog.numeric)::pg_catalog.text AS checksum
    FROM ${qualifiedTable} t`;
  return `SELECT pg_catalog.count(*) AS rows, pg_catalog.md5(pg_catalog.string_agg(s.h, '' ORDER BY s.h)) AS checksum
    FROM (SELECT pg_catalog.md5(t::pg_catalog.text) AS h FROM ${qualifiedTable} t) s`;
}

/** One table's stats in this session, with whatever settings the session has (see tableStats). */
export async function tableChecksum(
  client: Client,
  qualifiedTable: string,
  method: TableChecksumMethod,
): Promise<TableStats> {
  const res = await client.query<{ rows: string; checksum: string | null }>(
    tableChecksumSql(qualifiedTable, method),
  );
  return {
    table: qualifiedTable,
    rows: Number(res.rows[0]!.rows),
    checksum: res.rows[0]!.checksum ?? 'empty',
  };
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
