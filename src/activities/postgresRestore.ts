/**
 * PostgreSQL restore in the phases the recovery engine runs in order, so a failure in one never
 * leaves the databases from different times:
 *
 * 1. restoreIntoStaging (per target): download and check the dump, pg_restore into a staging
 *    database, compare with the manifest, mark the staging copy verified. Never touches live.
 * 2. liveDatabaseStates / checkSwapBlockers: read-only snapshots of what is live and of what
 *    would block the swap (prepared transactions, sessions the worker cannot end, privileges).
 * 3. swapInStaging (all targets at once): every approved live database moved aside and every
 *    staging copy renamed in, in ONE transaction.
 * 4. cleanupPostgresRestore (always): undo what a killed swap left, drop staging copies.
 *
 * State lives in Postgres itself, in the comment of each staging database: the verified marker,
 * and while a swap runs, a record of every ALLOW_CONNECTIONS change it made (by OID, since the
 * names change). The record survives a SIGKILLed worker; the next swap attempt and the cleanup
 * read it and put every database back, so a live database is never left refusing connections.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { Client } from 'pg';
import { ErrorType, fail } from '../domain/errors';
import { POSTGRES_TARGETS, type PostgresTarget } from '../domain/targets';
import { cancellationSignal, heartbeat, sleep, withHeartbeats } from './heartbeat';
import { asideName, marker, stagingName, type PostgresKit, type PreparedRestore } from './postgresKit';

export interface StagedRestore {
  target: PostgresTarget;
  database: string;
  staging: string;
  backupId: string;
  tablesVerified: number;
  rowsVerified: number;
  /** An earlier attempt of this recovery had started on this database (a worker died, say). */
  resumed: boolean;
}

export interface LiveDatabaseState {
  target: PostgresTarget;
  database: string;
  exists: boolean;
  oid?: number;
  allowConnections?: boolean;
  comment?: string | null;
}

export interface SwapResult {
  target: PostgresTarget;
  database: string;
  movedAsideTo?: string;
  resumed: boolean;
}

/**
 * What a swap changes besides the renames, written (after the verified marker) on each staging
 * database's comment before the change, and rewritten in the same transaction as the renames.
 */
interface SwapRecord {
  /** Databases set to ALLOW_CONNECTIONS false, by OID, with their value before. Empty once committed. */
  allowConnections: { oid: number; database: string; original: boolean }[];
  /** The restored database's comment once the recovery is cleaned up: the backup's own. */
  finalComment: string | null;
}

interface DatabaseRow {
  oid: number;
  datname: string;
  datallowconn: boolean;
  comment: string | null;
}

interface SessionRow {
  pid: number;
  datname: string;
  usename: string | null;
  application_name: string | null;
  client_addr: string | null;
}

/** How long the swap keeps ending sessions that come back before it gives up. */
const SESSIONS_DEADLINE_MS = 60_000;
const RETRY_PAUSE_MS = 250;
/** Errors ALTER DATABASE RENAME gives while others are connected or hold a lock on the database. */
const OBJECT_IN_USE = '55006';
const LOCK_NOT_AVAILABLE = '55P03';

/** This recovery's marker at the start of a comment, and the swap record after it, if any. */
function readOurComment(
  comment: string | null | undefined,
  recoveryId: string,
): { marker: string; record?: SwapRecord } | undefined {
  if (!comment) return undefined;
  const newline = comment.indexOf('\n');
  const first = newline < 0 ? comment : comment.slice(0, newline);
  const backupId = / of backup (\S+): verified$/.exec(first)?.[1];
  if (!backupId || marker(recoveryId, backupId) !== first) return undefined;
  if (newline < 0) return { marker: first };
  try {
    return { marker: first, record: JSON.parse(comment.slice(newline + 1)) as SwapRecord };
  } catch {
    return { marker: first };
  }
}

const withRecord = (done: string, record: SwapRecord) => `${done}\n${JSON.stringify(record)}`;

function describeSession(s: SessionRow): string {
  return `pid ${s.pid} (user ${s.usename ?? '?'}, application "${s.application_name ?? ''}", from ${s.client_addr ?? 'local socket'}, database ${s.datname})`;
}

function validateTargets(targets: unknown, what = 'targets'): PostgresTarget[] {
  if (!Array.isArray(targets) || targets.some((t) => !(POSTGRES_TARGETS as readonly unknown[]).includes(t))) {
    throw fail(
      ErrorType.InvalidInput,
      `${what} must list only ${POSTGRES_TARGETS.join(', ')}; got ${JSON.stringify(targets)}`,
    );
  }
  return [...new Set(targets as PostgresTarget[])];
}

export function createPostgresRestoreActivities(kit: PostgresKit) {
  const { admin, databaseComment, dropDatabase, databaseOf, localDumpPath, entryFor } = kit;
  const { fetchVerifiedDump, tocEntries, restoreAndCompare, readManifest, checkRestorableHere } = kit;

  async function preparePostgresRestore(input: {
    backupId: string;
    target: PostgresTarget;
    recoveryId: string;
  }): Promise<PreparedRestore> {
    const entry = await entryFor(input.backupId, input.target);
    await checkRestorableHere((await readManifest(input.backupId))!); // before the download
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

  const q = (c: Client, name: string) => c.escapeIdentifier(name);

  async function databaseRows(c: Client): Promise<Map<string, DatabaseRow>> {
    const res = await c.query<DatabaseRow>(
      `SELECT oid::int AS oid, datname, datallowconn, shobj_description(oid, 'pg_database') AS comment
         FROM pg_database`,
    );
    return new Map(res.rows.map((r) => [r.datname, r]));
  }

  function namesOf(target: PostgresTarget, recoveryId: string) {
    const live = databaseOf(target);
    return { target, live, staging: stagingName(live, recoveryId), aside: asideName(live, recoveryId) };
  }

  /**
   * Restores one target's dump into its staging database and verifies it against the manifest.
   * Idempotent: a verified staging copy of this recovery (or a live database this recovery
   * already swapped in) is kept; a half-restored one is dropped and restored again. Either way the
   * result says `resumed`: an earlier attempt of this recovery had started on this database.
   */
  async function restoreIntoStaging(input: {
    backupId: string;
    target: PostgresTarget;
    recoveryId: string;
  }): Promise<StagedRestore> {
    const [target] = validateTargets([input.target], 'target');
    const entry = await entryFor(input.backupId, target!);
    const { live, staging } = namesOf(target!, input.recoveryId);
    const done = marker(input.recoveryId, input.backupId);
    const result = (resumed: boolean): StagedRestore => ({
      target: target!,
      database: live,
      staging,
      backupId: input.backupId,
      tablesVerified: entry.tables.length,
      rowsVerified: entry.tables.reduce((n, t) => n + t.rows, 0),
      resumed,
    });
    const state = await admin(async (c) => ({
      live: await databaseComment(c, live),
      staging: await databaseComment(c, staging),
    }));
    if (readOurComment(state.staging, input.recoveryId)?.marker === done) return result(true);
    if (readOurComment(state.live, input.recoveryId)?.marker === done) return result(true); // swapped in already

    const local = localDumpPath(input.recoveryId, live);
    await fetchVerifiedDump(entry, local);
    const total = await tocEntries(local, entry.key);
    // restoreAndCompare drops a half-restored staging copy left by a killed attempt first.
    const problems = await restoreAndCompare(entry, local, staging, total);
    if (problems.length > 0) {
      await admin((c) => dropDatabase(c, staging));
      throw fail(
        ErrorType.RestoreVerificationFailed,
        `the restored copy of ${live} does not match backup ${input.backupId}: ${problems.slice(0, 5).join('; ')}` +
          `${problems.length > 5 ? ` (and ${problems.length - 5} more)` : ''}. The staging copy was dropped; ` +
          'restore from another backup (--backup ID) or check the backup store for tampering.',
        { database: live, problems },
      );
    }
    await admin((c) => c.query(`COMMENT ON DATABASE ${q(c, staging)} IS ${c.escapeLiteral(done)}`));
    return result(state.staging !== undefined);
  }

  /** What is live now for each target (read-only): the engine compares it before and after a swap. */
  async function liveDatabaseStates(input: { targets: PostgresTarget[] }): Promise<LiveDatabaseState[]> {
    const targets = validateTargets(input.targets);
    const rows = await admin(databaseRows);
    return targets.map((target) => statesOf(target, rows));
  }

  function statesOf(target: PostgresTarget, rows: Map<string, DatabaseRow>): LiveDatabaseState {
    const database = databaseOf(target);
    const row = rows.get(database);
    return row
      ? {
          target,
          database,
          exists: true,
          oid: row.oid,
          allowConnections: row.datallowconn,
          comment: row.comment,
        }
      : { target, database, exists: false };
  }

  /**
   * Sessions connected to these databases other than ours. Processes without a role are left
   * out: autovacuum workers, which the rename ends by itself (and which a role that is not
   * superuser cannot even tell apart: it sees no backend_type on others' rows).
   */
  async function sessionsIn(c: Client, databases: string[]): Promise<SessionRow[]> {
    const res = await c.query<SessionRow>(
      `SELECT pid, datname, usename, application_name, client_addr::text AS client_addr
         FROM pg_stat_activity
        WHERE datname = ANY($1) AND pid <> pg_backend_pid() AND usesysid IS NOT NULL
        ORDER BY pid`,
      [databases],
    );
    return res.rows;
  }

  /** Other sessions holding a lock on these databases (the renames need an exclusive one). */
  async function lockHoldersOf(c: Client, oids: number[]): Promise<SessionRow[]> {
    const res = await c.query<SessionRow>(
      `SELECT DISTINCT a.pid, a.datname, a.usename, a.application_name, a.client_addr::text AS client_addr
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'object' AND l.classid = 'pg_database'::regclass AND l.objid = ANY($1::oid[])
          AND l.granted AND l.pid <> pg_backend_pid()`,
      [oids],
    );
    return res.rows;
  }

  /**
   * Everything that would make the renames wait or fail, as messages naming each blocker and
   * what the operator can do. Read-only.
   */
  async function findBlockers(c: Client, databases: string[]): Promise<string[]> {
    const problems: string[] = [];
    const prepared = await c.query<{ gid: string; owner: string; prepared: Date; database: string }>(
      `SELECT gid, owner, prepared, database FROM pg_prepared_xacts WHERE database = ANY($1) ORDER BY prepared`,
      [databases],
    );
    for (const p of prepared.rows) {
      const gid = c.escapeLiteral(p.gid);
      problems.push(
        `prepared transaction ${gid} (owner ${p.owner}, prepared at ${p.prepared.toISOString()}) holds database ${p.database}: ` +
          `an operator must decide whether to COMMIT PREPARED ${gid} or ROLLBACK PREPARED ${gid} (connected to ${p.database}), then retry`,
      );
    }
    const me = (
      await c.query<{
        name: string;
        superuser: boolean;
        createdb: boolean;
        signal: boolean;
        current: string;
      }>(
        `SELECT rolname AS name, rolsuper AS superuser, rolcreatedb AS createdb,
                pg_has_role('pg_signal_backend', 'USAGE') AS signal, current_database() AS current
           FROM pg_roles WHERE rolname = current_user`,
      )
    ).rows[0]!;
    if (databases.includes(me.current)) {
      problems.push(
        `the worker's maintenance database (POSTGRES_DB=${me.current}) is one of the databases to rename; configure another one (e.g. postgres)`,
      );
    }
    if (!me.superuser) {
      if (!me.createdb) {
        problems.push(
          `the worker's role ${me.name} lacks CREATEDB, which renaming a database needs: ALTER ROLE ${c.escapeIdentifier(me.name)} CREATEDB, or run the worker as a superuser`,
        );
      }
      const owners = await c.query<{ datname: string; owner: string; owns: boolean }>(
        `SELECT datname, pg_get_userbyid(datdba) AS owner, pg_has_role(datdba, 'USAGE') AS owns
           FROM pg_database WHERE datname = ANY($1) ORDER BY datname`,
        [databases],
      );
      for (const d of owners.rows.filter((r) => !r.owns)) {
        problems.push(
          `the worker's role ${me.name} does not own database ${d.datname} (owner ${d.owner}), which renaming it needs: ` +
            `GRANT ${c.escapeIdentifier(d.owner)} TO ${c.escapeIdentifier(me.name)}, or run the worker as a superuser`,
        );
      }
      // pg_terminate_backend: superuser-owned and role-less backends need a superuser; others
      // need membership in their role or in pg_signal_backend.
      const sessions = await c.query<SessionRow & { terminable: boolean }>(
        `SELECT a.pid, a.datname, a.usename, a.application_name, a.client_addr::text AS client_addr,
                (NOT coalesce(r.rolsuper, true) AND (pg_has_role(a.usesysid, 'USAGE') OR $2)) AS terminable
           FROM pg_stat_activity a LEFT JOIN pg_roles r ON r.oid = a.usesysid
          WHERE a.datname = ANY($1) AND a.pid <> pg_backend_pid() AND a.usesysid IS NOT NULL
          ORDER BY a.pid`,
        [databases, me.signal],
      );
      for (const s of sessions.rows.filter((r) => !r.terminable)) {
        problems.push(
          `session ${describeSession(s)} cannot be ended by the worker's role ${me.name}: end it as a superuser ` +
            `(SELECT pg_terminate_backend(${s.pid})), or grant ${me.name} the session's role or pg_signal_backend`,
        );
      }
    }
    return problems;
  }

  function asideTaken(names: ReturnType<typeof namesOf>[], rows: Map<string, DatabaseRow>): string[] {
    return names
      .filter((n) => rows.has(n.live) && rows.has(n.aside))
      .map(
        (n) =>
          `${n.live} cannot be moved aside: ${n.aside} already exists; rename or drop it after checking its contents`,
      );
  }

  const swapBlocked = (problems: string[]) =>
    fail(ErrorType.SwapBlocked, `the restored databases cannot be swapped in: ${problems.join('; ')}`, {
      blockers: problems,
    });

  /** Read-only: throws SwapBlocked naming every blocker; otherwise returns what is live. */
  async function checkSwapBlockers(input: {
    targets: PostgresTarget[];
    recoveryId: string;
  }): Promise<LiveDatabaseState[]> {
    const targets = validateTargets(input.targets);
    const names = targets.map((t) => namesOf(t, input.recoveryId));
    return admin(async (c) => {
      const rows = await databaseRows(c);
      const problems = [
        ...(await findBlockers(
          c,
          names.flatMap((n) => [n.live, n.staging]),
        )),
        ...asideTaken(names, rows),
      ];
      if (problems.length > 0) throw swapBlocked(problems);
      return targets.map((t) => statesOf(t, rows));
    });
  }

  /**
   * Puts back every ALLOW_CONNECTIONS change a swap of this recovery recorded and did not
   * commit (a killed worker, an error); each record is cleared in the same transaction as its
   * undo. `carriers` limits it to the records on these databases (a swap undoes only its own
   * targets'). Returns the databases whose setting was changed back.
   */
  async function undoRecordedChanges(c: Client, recoveryId: string, carriers?: string[]): Promise<string[]> {
    const rows = await databaseRows(c);
    const byOid = new Map([...rows.values()].map((r) => [r.oid, r]));
    const restored: string[] = [];
    for (const row of rows.values()) {
      if (carriers && !carriers.includes(row.datname)) continue;
      const ours = readOurComment(row.comment, recoveryId);
      if (!ours?.record || ours.record.allowConnections.length === 0) continue;
      await c.query('BEGIN');
      try {
        for (const change of ours.record.allowConnections) {
          const now = byOid.get(change.oid);
          if (!now || now.datallowconn === change.original) continue;
          await c.query(`ALTER DATABASE ${q(c, now.datname)} WITH ALLOW_CONNECTIONS ${change.original}`);
          restored.push(now.datname);
        }
        await c.query(`COMMENT ON DATABASE ${q(c, row.datname)} IS ${c.escapeLiteral(ours.marker)}`);
        await c.query('COMMIT');
      } catch (err) {
        await c.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
    }
    return restored;
  }

  /**
   * Swaps every target's verified staging copy in, in one transaction: each live database (only
   * those in `replace`) is renamed to its aside name and each staging copy to the live name.
   * Either all targets are swapped or none.
   */
  async function swapInStaging(input: {
    backupId: string;
    targets: PostgresTarget[];
    recoveryId: string;
    replace: PostgresTarget[];
  }): Promise<SwapResult[]> {
    const targets = validateTargets(input.targets);
    const replace = validateTargets(input.replace, 'replace');
    if (targets.length === 0) throw fail(ErrorType.InvalidInput, 'swapInStaging needs at least one target');
    const done = marker(input.recoveryId, input.backupId);
    const names = targets.map((t) => namesOf(t, input.recoveryId));
    const involved = names.flatMap((n) => [n.live, n.staging]);

    return admin(async (c) => {
      // Bounded waits: a lock held elsewhere fails the attempt instead of hanging it.
      await c.query(`SET lock_timeout = '5s'`);
      await c.query(`SET statement_timeout = '30s'`);
      // A killed earlier attempt may have left databases closed: its record says which.
      await undoRecordedChanges(c, input.recoveryId, involved);
      const rows = await databaseRows(c);
      const swappedIn = (n: (typeof names)[number]) =>
        readOurComment(rows.get(n.live)?.comment, input.recoveryId)?.marker === done;

      if (names.every(swappedIn)) {
        return names.map((n) => ({
          target: n.target,
          database: n.live,
          movedAsideTo: rows.has(n.aside) ? n.aside : undefined,
          resumed: true,
        }));
      }
      // The two invariants below cannot heal on a retry: final, so they are not retried in vain.
      if (names.some(swappedIn)) {
        throw fail(
          ErrorType.SwapBlocked,
          `swapInStaging: ${names
            .filter(swappedIn)
            .map((n) => n.live)
            .join(', ')} already swapped in by recovery ${input.recoveryId} but not the others; ` +
            'a recovery must swap all its targets in one call',
        );
      }
      const unapproved = names.filter((n) => rows.has(n.live) && !replace.includes(n.target));
      if (unapproved.length > 0) {
        throw fail(
          ErrorType.LiveDataChanged,
          `live database(s) ${unapproved.map((n) => n.live).join(', ')} exist now but were not approved to be moved aside ` +
            `(approved: ${replace.length ? replace.join(', ') : 'none'}); the swap was refused. ` +
            'Review what is live now and approve again to replace it.',
        );
      }
      const unverified = names.filter(
        (n) => readOurComment(rows.get(n.staging)?.comment, input.recoveryId)?.marker !== done,
      );
      if (unverified.length > 0) {
        throw fail(
          ErrorType.SwapBlocked,
          `swapInStaging: no verified staging copy ${unverified.map((n) => n.staging).join(', ')} of backup ${input.backupId}; ` +
            'restoreIntoStaging must succeed for every target before the swap',
        );
      }
      const problems = [...(await findBlockers(c, involved)), ...asideTaken(names, rows)];
      if (problems.length > 0) throw swapBlocked(problems);

      const finalComments = new Map<string, string | null>();
      for (const n of names) {
        finalComments.set(n.live, (await entryFor(input.backupId, n.target)).properties?.comment ?? null);
      }
      return swapRecorded(c, { recoveryId: input.recoveryId, names, rows, done, finalComments, involved });
    });
  }

  async function swapRecorded(
    c: Client,
    plan: {
      recoveryId: string;
      names: ReturnType<typeof namesOf>[];
      rows: Map<string, DatabaseRow>;
      done: string;
      finalComments: Map<string, string | null>;
      involved: string[];
    },
  ): Promise<SwapResult[]> {
    const { recoveryId, names, rows, done, finalComments, involved } = plan;
    const changesOf = (n: (typeof names)[number]) =>
      [rows.get(n.live), rows.get(n.staging)]
        .filter((r): r is DatabaseRow => r !== undefined && r.datallowconn)
        .map((r) => ({ oid: r.oid, database: r.datname, original: r.datallowconn }));
    const recordOf = (n: (typeof names)[number], allowConnections = changesOf(n)): SwapRecord => ({
      allowConnections,
      finalComment: finalComments.get(n.live) ?? null,
    });

    // 1. Record durably what is about to change, before changing it.
    await c.query('BEGIN');
    for (const n of names)
      await c.query(
        `COMMENT ON DATABASE ${q(c, n.staging)} IS ${c.escapeLiteral(withRecord(done, recordOf(n)))}`,
      );
    await c.query('COMMIT');

    let committed = false;
    let failure: unknown;
    try {
      // 2. Keep reconnecting services out between pg_terminate_backend and the renames.
      await c.query('BEGIN');
      for (const n of names)
        for (const change of changesOf(n))
          await c.query(`ALTER DATABASE ${q(c, change.database)} WITH ALLOW_CONNECTIONS false`);
      await c.query('COMMIT');

      // 3. End the sessions, rename all in one transaction; retry while sessions come back.
      const signal = cancellationSignal();
      const started = Date.now();
      // Sessions found after the first round of terminations came back: those are named on giving up.
      const reconnecting = new Map<number, SessionRow>();
      const lockHolders = new Map<number, SessionRow>();
      const oids = [...rows.values()].filter((r) => involved.includes(r.datname)).map((r) => r.oid);
      let lastError = '';
      for (let attempt = 1; ; attempt++) {
        signal?.throwIfAborted();
        const progress = { stage: 'swapping', attempt, databases: names.map((n) => n.live) };
        heartbeat(progress);
        const problems = await findBlockers(c, involved);
        if (problems.length > 0) throw swapBlocked(problems);
        const sessions = await sessionsIn(c, involved);
        if (sessions.length > 0) {
          if (attempt > 1) for (const s of sessions) reconnecting.set(s.pid, s);
          await withHeartbeats(
            () => progress,
            () =>
              c.query('SELECT pg_terminate_backend(pid, 1000) FROM unnest($1::int[]) AS pid', [
                sessions.map((s) => s.pid),
              ]),
          );
        }
        try {
          await withHeartbeats(
            () => progress,
            () => renameAll(c, names, rows, done, recordOf),
          );
          committed = true;
          break;
        } catch (err) {
          await c.query('ROLLBACK').catch(() => undefined);
          const code = (err as { code?: string }).code;
          if (code !== OBJECT_IN_USE && code !== LOCK_NOT_AVAILABLE) throw err;
          lastError = (err as Error).message;
          if (code === LOCK_NOT_AVAILABLE)
            for (const s of await lockHoldersOf(c, oids)) lockHolders.set(s.pid, s);
          if (Date.now() - started > SESSIONS_DEADLINE_MS) {
            const list = (m: Map<number, SessionRow>) =>
              [...m.values()].slice(0, 10).map(describeSession).join(', ');
            throw swapBlocked([
              `gave up after ${Math.round((Date.now() - started) / 1000)} s and ${attempt} attempts (last error: ${lastError})` +
                (reconnecting.size ? `; sessions kept coming back: ${list(reconnecting)}` : '') +
                (lockHolders.size ? `; sessions holding a lock on the databases: ${list(lockHolders)}` : '') +
                '; stop what reconnects or holds the locks (or make it wait), then retry',
            ]);
          }
          await sleep(RETRY_PAUSE_MS, signal);
        }
      }
    } catch (err) {
      failure = err;
      // An aborted transaction keeps its locks on pg_database rows until it is rolled back.
      await c.query('ROLLBACK').catch(() => undefined);
    }
    if (!committed) {
      // Not swapped (error, timeout, cancellation): put ALLOW_CONNECTIONS back, from the record,
      // in a fresh session since this one may be broken.
      try {
        await admin((fresh) => undoRecordedChanges(fresh, recoveryId, involved));
      } catch (undoErr) {
        const cause = failure instanceof Error ? failure.message : String(failure);
        // Retryable on purpose: the next attempt undoes it first (so does the cleanup).
        throw new Error(
          `${cause}; and putting ALLOW_CONNECTIONS back failed (${(undoErr as Error).message}): the next attempt or cleanupPostgresRestore will`,
        );
      }
      throw failure;
    }
    return names.map((n) => ({
      target: n.target,
      database: n.live,
      movedAsideTo: rows.has(n.live) ? n.aside : undefined,
      resumed: false,
    }));
  }

  /**
   * The one transaction of the swap: live → aside, staging → live for every target; the aside
   * gets its ALLOW_CONNECTIONS back, the new live one allows connections, and its comment keeps
   * the marker (the resume check) with a record that has nothing left to undo.
   */
  async function renameAll(
    c: Client,
    names: ReturnType<typeof namesOf>[],
    rows: Map<string, DatabaseRow>,
    done: string,
    recordOf: (n: ReturnType<typeof namesOf>, allowConnections: SwapRecord['allowConnections']) => SwapRecord,
  ): Promise<void> {
    await c.query('BEGIN');
    for (const n of names.filter((x) => rows.has(x.live)))
      await c.query(`ALTER DATABASE ${q(c, n.live)} RENAME TO ${q(c, n.aside)}`);
    for (const n of names) await c.query(`ALTER DATABASE ${q(c, n.staging)} RENAME TO ${q(c, n.live)}`);
    for (const n of names) {
      const before = rows.get(n.live);
      if (before)
        await c.query(`ALTER DATABASE ${q(c, n.aside)} WITH ALLOW_CONNECTIONS ${before.datallowconn}`);
      await c.query(`ALTER DATABASE ${q(c, n.live)} WITH ALLOW_CONNECTIONS true`);
      await c.query(
        `COMMENT ON DATABASE ${q(c, n.live)} IS ${c.escapeLiteral(withRecord(done, recordOf(n, [])))}`,
      );
    }
    await c.query('COMMIT');
  }

  /**
   * The always-run cleanup, safe any number of times and after a crash at any point: undo the
   * ALLOW_CONNECTIONS changes this recovery recorded, give each database it swapped in the
   * backup's comment instead of the marker, drop its staging copies (never a live or moved-aside
   * database: only the names it created for staging), and remove its local dump copies.
   */
  async function cleanupPostgresRestore(input: {
    recoveryId: string;
    targets: PostgresTarget[];
  }): Promise<{ droppedStaging: string[]; allowConnectionsRestored: string[] }> {
    const targets = validateTargets(input.targets);
    const dropped: string[] = [];
    const localCopies = path.dirname(localDumpPath(input.recoveryId, 'x'));
    const restored = await admin(async (c) => {
      const undone = await undoRecordedChanges(c, input.recoveryId);
      const stagingNames = new Set(
        [...new Set([...targets, ...POSTGRES_TARGETS])].map((t) => namesOf(t, input.recoveryId).staging),
      );
      for (const row of (await databaseRows(c)).values()) {
        if (stagingNames.has(row.datname)) {
          await dropDatabase(c, row.datname);
          dropped.push(row.datname);
          continue;
        }
        const ours = readOurComment(row.comment, input.recoveryId);
        if (!ours) continue;
        // Swapped in by this recovery: the marker served the swap's resume check; no longer needed.
        const comment = ours.record?.finalComment ?? null;
        await c.query(
          `COMMENT ON DATABASE ${q(c, row.datname)} IS ${comment === null ? 'NULL' : c.escapeLiteral(comment)}`,
        );
      }
      return undone;
    }).finally(() => fs.rm(localCopies, { recursive: true, force: true })); // also when PostgreSQL is down
    return { droppedStaging: dropped, allowConnectionsRestored: restored };
  }

  return {
    preparePostgresRestore,
    restoreIntoStaging,
    liveDatabaseStates,
    checkSwapBlockers,
    swapInStaging,
    cleanupPostgresRestore,
  };
}
