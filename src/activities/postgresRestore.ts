/**
 * PostgreSQL restore: verify the dump's sha256 and TOC → pg_restore into a staging database →
 * compare the staging copy with the manifest → swap it in with renames in one transaction. A
 * live database being replaced is moved aside, never dropped. Every stage is recorded in
 * Postgres itself (a COMMENT on the staging database), so a retry after a crash picks up where
 * it was.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { ErrorType, fail } from '../domain/errors';
import { POSTGRES_TARGETS, type PostgresTarget } from '../domain/targets';
import { heartbeat } from './heartbeat';
import {
  asideName,
  marker,
  stagingName,
  type PostgresKit,
  type PreparedRestore,
  type RestoreResult,
} from './postgresKit';

export function createPostgresRestoreActivities(kit: PostgresKit) {
  const { admin, databaseComment, dropDatabase, databaseOf, localDumpPath, entryFor } = kit;
  const { fetchVerifiedDump, tocEntries, restoreAndCompare } = kit;
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

  return { preparePostgresRestore, restorePostgresDatabase, cleanupPostgresRestore };
}
