/**
 * PostgreSQL backup: pg_dump -Fc inside an exported snapshot, with the per-table row counts and
 * checksums taken in that same snapshot, so the manifest describes exactly what the dump holds.
 * Also: listing and resolving backups, and verification into scratch databases.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { BACKUP_ID_PATTERN as BACKUP_ID } from '../domain/backupIds';
import { ErrorType, fail } from '../domain/errors';
import { dumpKey, postgresManifestKey } from '../domain/layout';
import type { DatabaseBackup, PostgresManifest } from '../domain/manifests';
import { POSTGRES_TARGETS, type PostgresTarget } from '../domain/targets';
import { chooseBackup, readCatalog } from '../infra/catalog';
import { CommandFailed } from '../infra/exec';
import { shortTag } from '../infra/hashing';
import {
  cancellationSignal,
  heartbeat,
  sha256WithHeartbeats,
  transferWithHeartbeats,
  withHeartbeats,
} from './heartbeat';
import { CHECKSUM_VERSION } from '../domain/checksums';
import { readDatabaseProperties, readGlobals } from './postgresGlobals';
import { MAX_BASE, tableStats, type PostgresBackupSummary, type PostgresKit } from './postgresKit';

const tag = (recoveryId: string) => shortTag(recoveryId);

export function createPostgresBackupActivities(kit: PostgresKit) {
  const { config, exec, store, tool, toolEnv, databaseOf, withClient, admin, databaseComment, dropDatabase } =
    kit;
  const { readManifest, summarize, fetchVerifiedDump, restoreAndCompare, tocEntries } = kit;
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
        // Counting and hashing a large table takes a while: keep heartbeating meanwhile. Pinned
        // settings (session-level SET inside this transaction): see src/domain/checksums.ts.
        const tables = await withHeartbeats(
          () => ({ stage: 'counting rows', database }),
          () => tableStats(client),
        );
        const properties = await readDatabaseProperties(client, database);
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
        const sha256 = await sha256WithHeartbeats(local);
        await transferWithHeartbeats({
          details: { stage: 'uploading', database, size },
          what: `uploading ${path.basename(key)}`,
          size,
          transfer: (onBytes) => store.putFile(key, local, onBytes),
        });
        return { target, database, key, size, sha256, tables, properties };
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
      const { serverVersion, globals } = await admin(async (c) => ({
        // (SHOW names its column server_version: manifests of 0.3.6 and earlier lack serverVersion)
        serverVersion: (await c.query<{ v: string }>(`SELECT current_setting('server_version') AS v`))
          .rows[0]!.v,
        // Roles and memberships: what a restore onto a fresh server needs (never passwords).
        globals: await readGlobals(c),
      }));
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
        checksumVersion: CHECKSUM_VERSION,
        globals,
      };
      await store.putJson(postgresManifestKey(input.backupId), manifest);
      return manifest;
    } finally {
      await fs.rm(workDir, { recursive: true, force: true });
    }
  }

  /**
   * Finds the backup to restore ("latest" or an id) and checks it covers the targets. "latest" is
   * the newest backup whose set passed verification (chooseBackup); `choice` and `skipped` say
   * which was chosen and why every newer one was passed over.
   */
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
    const chosen = chooseBackup(await readCatalog(store), { backupId: input.backupId, needs: 'postgres' });
    const manifest = await readManifest(chosen.id);
    if (!manifest) {
      throw fail(
        ErrorType.BackupNotFound,
        `backup ${chosen.id} not found in ${store.location} (kohakku-dr backups lists them)`,
      );
    }
    for (const t of input.targets) {
      if (!manifest.databases.some((d) => d.target === t)) {
        throw fail(ErrorType.BackupNotFound, `backup ${chosen.id} has no dump of target ${t}`);
      }
    }
    return { ...(await summarize(manifest)), choice: chosen.choice, skipped: chosen.skipped };
  }

  /** Which target databases exist now (a restore over one replaces live data). */
  async function liveDatabases(input: { targets: PostgresTarget[] }): Promise<PostgresTarget[]> {
    return admin(async (client) => {
      const res = await client.query<{ datname: string }>('SELECT datname FROM pg_database');
      const names = new Set(res.rows.map((r) => r.datname));
      return input.targets.filter((t) => names.has(databaseOf(t)));
    });
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
  return {
    backupPostgres,
    listPostgresBackups,
    resolvePostgresBackup,
    liveDatabases,
    verifyPostgresBackup,
    cleanupPostgresVerification,
  };
}
