/**
 * Point-in-time recovery's I/O, on pgBackRest: set up continuous archiving (configuration file,
 * archive_command, archive_timeout, commit timestamps, the stanza), take base backups, read the
 * recoverable window, mark named restore points, and the recovery's own steps — plan a target
 * (inside the window, its WAL all there), move the data directory aside, restore, wait for the
 * promotion, verify, and put the original back when the recovery fails.
 *
 * The worker runs where the data directory is (the database host, or with it mounted): it moves
 * the directory and runs `pgbackrest restore` into it as its owner. Each step records what it
 * did in a small file beside the data directory (`<data>.kohakku-dr-pitr-<tag>.json`), so a
 * retry after a crash knows whether the directory was moved and the restore started.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { Config, PitrConfig } from '../config';
import { ErrorType, fail } from '../domain/errors';
import {
  PITR_BACKUP_TYPES,
  PITR_RESTORE_POINTS_KEY,
  PITR_VERIFICATION_KEY,
  type PitrBackupType,
  type RestorePointRecord,
} from '../domain/pitr';
import type { BackupStore } from '../infra/backupStore';
import { withDatabase } from '../infra/database';
import type { CommandRunner } from '../infra/exec';
import { shortTag } from '../infra/hashing';
import { freePort, isAlive, processesMatching, stopDaemon } from '../infra/processes';
import {
  archiveCommand,
  pgbackrest,
  typedPgbackrestFailure,
  walToReplay,
  writePgbackrestConfig,
  type StanzaInfo,
} from '../infra/pgbackrest';
import { cancellationSignal, heartbeat, sleep, withHeartbeats } from './heartbeat';

export interface PitrWindow {
  stanza: string;
  /** The earliest instant one can restore to: the end of the oldest base backup. */
  earliest?: string;
  /** The latest: when the newest WAL segment reached the repository. */
  latest?: string;
  backups: { label: string; type: string; start: string; stop: string; size: number; repoSize: number }[];
  wal: { min?: string; max?: string };
  restorePoints: RestorePointRecord[];
  status: string;
}

export interface PitrPlan {
  /** What the recovery stops at, in words and as pgBackRest options. */
  target: string;
  targetTime: string;
  restoreArgs: string[];
  backup: { label: string; type: string; stop: string };
  walFrom: string;
  walTo: string;
  dataDir: string;
  asideDir: string;
  window: { earliest: string; latest: string };
}

export interface PitrVerification {
  skipped?: string;
  ok: boolean;
  problems: string[];
  verifiedAt: string;
  baseBackup?: string;
  /** The last commit the scratch recovery replayed to: how recent the proven point is. */
  reachedLastCommit?: string;
  seconds?: number;
}

interface PitrRecord {
  recoveryId: string;
  dataDir: string;
  asideDir: string;
  movedAt?: string;
  restoreStartedAt?: string;
  restoredAt?: string;
}

const iso = (seconds: number) => new Date(seconds * 1000).toISOString();

export function createPitrActivities({
  config,
  exec,
  store,
}: {
  config: Config;
  exec: CommandRunner;
  store: BackupStore;
}) {
  const pitrConfig = (): PitrConfig => {
    if (!config.pitr)
      throw fail(
        ErrorType.InvalidInput,
        'point-in-time recovery is not configured on this worker (PITR=off): set PITR=pgbackrest and PG_DATA_DIR, then run `kohakku-dr pitr setup`',
      );
    return config.pitr;
  };
  const tool = () => pgbackrest(config, pitrConfig(), exec);
  const asideOf = (pitr: PitrConfig, recoveryId: string) =>
    `${pitr.dataDir}.kohakku-dr-aside-${shortTag(recoveryId)}`;
  const recordFile = (pitr: PitrConfig, recoveryId: string) =>
    `${pitr.dataDir}.kohakku-dr-pitr-${shortTag(recoveryId)}.json`;
  const readRecord = async (pitr: PitrConfig, recoveryId: string): Promise<PitrRecord | undefined> =>
    JSON.parse(await fs.readFile(recordFile(pitr, recoveryId), 'utf8').catch(() => 'null')) ?? undefined;
  const writeRecord = (pitr: PitrConfig, record: PitrRecord) =>
    fs.writeFile(recordFile(pitr, record.recoveryId), JSON.stringify(record, null, 2));

  /**
   * Continuous archiving, idempotently: pgBackRest's configuration file (0600, owned by the data
   * directory's owner), archive_mode/archive_command/archive_timeout and track_commit_timestamp
   * by ALTER SYSTEM. Says whether PostgreSQL must be restarted for them to apply.
   */
  async function configureArchiving(): Promise<{
    configFile: string;
    configChanged: boolean;
    settingsChanged: string[];
    restartNeeded: boolean;
  }> {
    const pitr = pitrConfig();
    const owner = await fs.stat(pitr.dataDir).catch((err: NodeJS.ErrnoException) => {
      throw fail(
        ErrorType.InvalidInput,
        `PG_DATA_DIR ${pitr.dataDir} cannot be read by the worker (${err.code}): the worker must run where the data directory is`,
      );
    });
    const configChanged = await writePgbackrestConfig(config, pitr, owner);
    const wanted: Record<string, string> = {
      archive_mode: 'on',
      archive_command: archiveCommand(pitr),
      archive_timeout: `${pitr.archiveTimeoutSeconds}s`,
      track_commit_timestamp: 'on',
    };
    return withDatabase(config, config.postgres.maintenanceDb, async (c) => {
      const current = await c.query<{ name: string; setting: string; unit: string | null }>(
        `SELECT name, setting, unit FROM pg_settings WHERE name = ANY($1)`,
        [Object.keys(wanted)],
      );
      const changed: string[] = [];
      for (const [name, value] of Object.entries(wanted)) {
        const row = current.rows.find((r) => r.name === name);
        const shown = row ? `${row.setting}${row.unit === 's' ? 's' : ''}` : undefined;
        if (shown === value) continue;
        await c.query(`ALTER SYSTEM SET ${name} = ${c.escapeLiteral(value)}`);
        changed.push(name);
      }
      await c.query('SELECT pg_reload_conf()');
      await new Promise((r) => setTimeout(r, 300));
      const pending = await c.query<{ name: string }>(
        `SELECT name FROM pg_settings WHERE pending_restart AND name = ANY($1)`,
        [Object.keys(wanted)],
      );
      const level = await c.query<{ wal_level: string }>('SHOW wal_level');
      if (level.rows[0]!.wal_level === 'minimal') {
        await c.query(`ALTER SYSTEM SET wal_level = 'replica'`);
        changed.push('wal_level');
      }
      return {
        configFile: pitr.configFile,
        configChanged,
        settingsChanged: changed,
        restartNeeded: pending.rows.length > 0 || level.rows[0]!.wal_level === 'minimal',
      };
    });
  }

  /** stanza-create (idempotent) and `check`: a WAL segment is switched and must reach the repository. */
  async function createStanza(): Promise<{ stanza: string; checked: string }> {
    const pg = tool();
    // pgBackRest does not create the bucket (or directory) its repository lives in.
    await store.ensureReady();
    await pg.run(['stanza-create'], { signal: cancellationSignal() });
    const out = await pg.run(['check'], { signal: cancellationSignal() });
    return {
      stanza: pitrConfig().stanza,
      checked:
        out
          .split('\n')
          .find((l) => l.includes('successfully archived'))
          ?.replace(/^.*INFO: /, '') ?? 'ok',
    };
  }

  /** A base backup (full, differential or incremental); its progress from pgBackRest's log lines. */
  async function pgbackrestBackup(input: { type: PitrBackupType }): Promise<{
    label: string;
    type: string;
    size: number;
    repoSize: number;
    start: string;
    stop: string;
  }> {
    if (!(PITR_BACKUP_TYPES as readonly string[]).includes(input.type))
      throw fail(ErrorType.InvalidInput, `backup type must be full, diff or incr, got ${String(input.type)}`);
    const pg = tool();
    let progress = 'starting';
    await withHeartbeats(
      () => ({ backup: input.type, progress }),
      () =>
        pg.run([`--type=${input.type}`, '--log-level-console=detail', 'backup'], {
          signal: cancellationSignal(),
          onStdoutLine: (line) => {
            const m = /\((\d+(?:\.\d+)?)%\)/.exec(line);
            if (m) progress = `${m[1]}%`;
          },
        }),
    );
    const info = await pg.info();
    const newest = info.backup[info.backup.length - 1];
    if (!newest) throw new Error('pgbackrest backup completed but info lists no backup');
    return {
      label: newest.label,
      type: newest.type,
      size: newest.info.size,
      repoSize: newest.info.repository.size,
      start: iso(newest.timestamp.start),
      stop: iso(newest.timestamp.stop),
    };
  }

  async function readRestorePoints(): Promise<RestorePointRecord[]> {
    return (await store.getJson<RestorePointRecord[]>(PITR_RESTORE_POINTS_KEY)) ?? [];
  }

  function windowOf(info: StanzaInfo, latestWal: number | undefined): Omit<PitrWindow, 'restorePoints'> {
    const backups = info.backup.filter((b) => !b.error);
    return {
      stanza: info.name,
      earliest: backups.length ? iso(backups[0]!.timestamp.stop) : undefined,
      latest:
        backups.length && latestWal
          ? iso(Math.max(latestWal, backups[backups.length - 1]!.timestamp.stop))
          : undefined,
      backups: backups.map((b) => ({
        label: b.label,
        type: b.type,
        start: iso(b.timestamp.start),
        stop: iso(b.timestamp.stop),
        size: b.info.size,
        repoSize: b.info.repository.size,
      })),
      wal: {
        min: info.archive[0]?.min ?? undefined,
        max: info.archive[info.archive.length - 1]?.max ?? undefined,
      },
      status: info.status.message,
    };
  }

  /** The recoverable window: earliest and latest instant, the base backups, the named points. */
  async function pitrWindow(): Promise<PitrWindow> {
    const pg = tool();
    const info = await pg.info();
    const files = await pg.archiveFiles();
    const latestWal = files
      .filter((f) => /^[0-9A-F]{24}-/.test(f.name))
      .reduce((m, f) => Math.max(m, f.time), 0);
    return { ...windowOf(info, latestWal || undefined), restorePoints: await readRestorePoints() };
  }

  /** pg_create_restore_point, archived at once (pg_switch_wal), and recorded in the backup store. */
  async function markRestorePoint(input: { name: string }): Promise<RestorePointRecord> {
    pitrConfig();
    const name = input.name?.trim();
    if (!name || name.length > 60 || !/^[\p{L}\p{N} _.:#@+/-]+$/u.test(name))
      throw fail(
        ErrorType.InvalidInput,
        'a restore point name is 1 to 60 letters, digits, spaces and _ . : # @ + / - (e.g. "before deploy 42")',
      );
    const points = await readRestorePoints();
    const existing = points.find((p) => p.name === name);
    if (existing) return existing;
    const record = await withDatabase(config, config.postgres.maintenanceDb, async (c) => {
      const r = await c.query<{ lsn: string; at: Date }>(
        'SELECT pg_create_restore_point($1)::text AS lsn, clock_timestamp() AS at',
        [name],
      );
      await c.query('SELECT pg_switch_wal()');
      return { name, lsn: r.rows[0]!.lsn, at: r.rows[0]!.at.toISOString() };
    });
    await store.ensureReady();
    await store.putJson(PITR_RESTORE_POINTS_KEY, [...points, record]);
    return record;
  }

  /**
   * What a recovery to `target` would use, checked before anything is touched: the target lies
   * in the window (TargetOutsideWindow otherwise), the base backup it starts from, and every WAL
   * segment from that backup to the newest is in the repository (BackupCorrupt naming the first
   * missing one otherwise).
   */
  async function planPointInTimeRecovery(input: {
    target?: string;
    restorePoint?: string;
    recoveryId: string;
  }): Promise<PitrPlan> {
    const pitr = pitrConfig();
    const window = await pitrWindow();
    if (!window.earliest || !window.latest)
      throw fail(
        ErrorType.BackupNotFound,
        `no base backup in the pgBackRest repository (stanza ${pitr.stanza}): run \`kohakku-dr pitr backup --type full\` first`,
      );
    let targetTime: string;
    let target: string;
    let restoreArgs: string[];
    if (input.restorePoint !== undefined) {
      const point = window.restorePoints.find((p) => p.name === input.restorePoint);
      if (!point)
        throw fail(
          ErrorType.BackupNotFound,
          `no restore point "${input.restorePoint}" (known: ${window.restorePoints.map((p) => p.name).join(', ') || 'none'}; \`kohakku-dr mark NAME\` makes one)`,
        );
      targetTime = point.at;
      target = `restore point "${point.name}" (${point.at}, LSN ${point.lsn})`;
      restoreArgs = ['--type=name', `--target=${point.name}`];
    } else if (input.target === 'latest' || input.target === undefined) {
      targetTime = window.latest;
      target = `the end of the archived WAL (about ${window.latest})`;
      restoreArgs = ['--type=default'];
    } else {
      targetTime = new Date(input.target).toISOString();
      target = `the instant ${targetTime}`;
      restoreArgs = ['--type=time', `--target=${targetTime.replace('T', ' ').replace('Z', '+00')}`];
    }
    const t = Date.parse(targetTime);
    if (t < Date.parse(window.earliest) || t > Date.parse(window.latest))
      throw fail(
        ErrorType.TargetOutsideWindow,
        `${target} is outside the recoverable window ${window.earliest} … ${window.latest}: choose an instant inside it (kohakku-dr backups shows it)`,
      );
    const info = await tool().info();
    const backups = info.backup.filter((b) => !b.error && b.timestamp.stop * 1000 <= t);
    const chosen = backups[backups.length - 1];
    if (!chosen) throw fail(ErrorType.TargetOutsideWindow, `no base backup ended before ${targetTime}`);
    const files = await tool().archiveFiles();
    const { to: walTo, missing } = walToReplay(
      files,
      await tool().newestHistory(files),
      chosen.archive.start,
    );
    if (missing.length)
      throw fail(
        ErrorType.BackupCorrupt,
        `WAL segment ${missing[0]} is missing from the pgBackRest repository (${missing.length} missing between ${chosen.archive.start} and ${walTo}): the recovery could not replay past it. Nothing was changed`,
      );
    restoreArgs.push(`--set=${chosen.label}`);
    if (input.restorePoint !== undefined || input.target !== 'latest')
      restoreArgs.push('--target-action=promote');
    return {
      target,
      targetTime,
      restoreArgs,
      backup: { label: chosen.label, type: chosen.type, stop: iso(chosen.timestamp.stop) },
      walFrom: chosen.archive.start,
      walTo,
      dataDir: pitr.dataDir,
      asideDir: asideOf(pitr, input.recoveryId),
      window: { earliest: window.earliest, latest: window.latest },
    };
  }

  /** PostgreSQL's postmaster pid, when one runs on the data directory. */
  async function runningPostmaster(dataDir: string): Promise<number | undefined> {
    const pidFile = await fs.readFile(path.join(dataDir, 'postmaster.pid'), 'utf8').catch(() => undefined);
    const pid = pidFile ? Number(pidFile.split('\n')[0]) : NaN;
    return Number.isInteger(pid) && isAlive(pid) ? pid : undefined;
  }

  /** Moves the (stopped) data directory aside and leaves an empty one with its owner and mode. Idempotent. */
  async function moveDataDirectoryAside(input: {
    recoveryId: string;
  }): Promise<{ asideDir: string; resumed: boolean }> {
    const pitr = pitrConfig();
    const asideDir = asideOf(pitr, input.recoveryId);
    const record = await readRecord(pitr, input.recoveryId);
    if (record?.movedAt) return { asideDir, resumed: true };
    const deadline = Date.now() + 60000;
    for (;;) {
      const pid = await runningPostmaster(pitr.dataDir);
      if (!pid) break;
      if (Date.now() > deadline)
        throw fail(
          ErrorType.SwapBlocked,
          `PostgreSQL (pid ${pid}) still runs on ${pitr.dataDir} a minute after it was stopped: nothing was moved`,
        );
      heartbeat({ waitingFor: `PostgreSQL pid ${pid} to exit` });
      await sleep(1000, cancellationSignal());
    }
    const movedBefore =
      record &&
      (await fs.stat(asideDir).then(
        () => true,
        () => false,
      ));
    const st = await fs.stat(movedBefore ? asideDir : pitr.dataDir);
    await writeRecord(pitr, { recoveryId: input.recoveryId, dataDir: pitr.dataDir, asideDir });
    // A retry after a crash between the rename and the mkdir finds the directory aside already.
    if (!movedBefore) await fs.rename(pitr.dataDir, asideDir);
    await fs.mkdir(pitr.dataDir, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
    await fs.chown(pitr.dataDir, st.uid, st.gid);
    await writeRecord(pitr, {
      recoveryId: input.recoveryId,
      dataDir: pitr.dataDir,
      asideDir,
      movedAt: new Date().toISOString(),
    });
    return { asideDir, resumed: false };
  }

  /** `pgbackrest restore` of the plan's backup and target into the empty data directory (--delta on a retry). */
  async function restoreToTarget(input: {
    recoveryId: string;
    restoreArgs: string[];
  }): Promise<{ resumed: boolean; seconds: number }> {
    const pitr = pitrConfig();
    const record = await readRecord(pitr, input.recoveryId);
    if (!record?.movedAt) throw new Error('the data directory was not moved aside yet');
    if (record.restoredAt) return { resumed: true, seconds: 0 };
    const resumed = !!record.restoreStartedAt;
    if (resumed) {
      // A worker SIGKILLed mid-restore leaves its pgbackrest running: end it before restoring
      // again, so two restores never write the same directory.
      const orphans = await processesMatching([pitr.bin, `--config=${pitr.configFile}`, 'restore']);
      for (const pid of orphans) await stopDaemon(pid, 10000);
    }
    await writeRecord(pitr, {
      ...record,
      restoreStartedAt: record.restoreStartedAt ?? new Date().toISOString(),
    });
    const started = Date.now();
    let progress = 'starting';
    await withHeartbeats(
      () => ({ restore: input.restoreArgs.join(' '), progress }),
      () =>
        tool().run(
          [...input.restoreArgs, ...(resumed ? ['--delta'] : []), '--log-level-console=detail', 'restore'],
          {
            signal: cancellationSignal(),
            onStdoutLine: (line) => {
              const m = /\((\d+(?:\.\d+)?)%\)/.exec(line);
              if (m) progress = `${m[1]}%`;
            },
          },
        ),
    ).catch((err: unknown) => {
      throw typedPgbackrestFailure(err, 'pgbackrest restore');
    });
    await writeRecord(pitr, {
      ...record,
      restoreStartedAt: record.restoreStartedAt ?? new Date(started).toISOString(),
      restoredAt: new Date().toISOString(),
    });
    return { resumed, seconds: Math.round((Date.now() - started) / 100) / 10 };
  }

  /** Waits until PostgreSQL accepts connections and has left recovery (reached the target and was promoted). */
  async function waitForPromotion(input: {
    deadlineSeconds: number;
  }): Promise<{ waitedMs: number; timeline: number }> {
    const started = Date.now();
    let last = 'not tried yet';
    for (;;) {
      try {
        const r = await withDatabase(
          config,
          config.postgres.maintenanceDb,
          async (c) =>
            (
              await c.query<{ recovering: boolean; timeline: number }>(
                `SELECT pg_is_in_recovery() AS recovering, (SELECT timeline_id FROM pg_control_checkpoint()) AS timeline`,
              )
            ).rows[0]!,
        );
        if (!r.recovering) return { waitedMs: Date.now() - started, timeline: r.timeline };
        last = 'still replaying WAL';
      } catch (err) {
        last = (err as Error).message;
      }
      heartbeat({ waitingFor: 'promotion', last });
      if (Date.now() - started > input.deadlineSeconds * 1000)
        throw fail(
          ErrorType.ServiceUnhealthy,
          `PostgreSQL did not finish recovery within ${input.deadlineSeconds} s (${last}); see its log`,
        );
      await sleep(1000, cancellationSignal());
    }
  }

  /**
   * The recovered point: both databases connect, their tables are there, and the last committed
   * transaction is not after the target (commit timestamps are on since `pitr setup`).
   */
  async function verifyRecoveredPoint(input: { targetTime: string }): Promise<{
    lastCommit?: string;
    databases: { database: string; tables: number }[];
  }> {
    const databases: { database: string; tables: number }[] = [];
    for (const database of Object.values(config.postgres.databases)) {
      const tables = await withDatabase(config, database, async (c) =>
        Number(
          (
            await c.query<{ n: string }>(
              `SELECT count(*) AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r','p') AND n.nspname NOT IN ('pg_catalog','information_schema')`,
            )
          ).rows[0]!.n,
        ),
      ).catch((err: Error) => {
        throw fail(
          ErrorType.RestoreVerificationFailed,
          `database ${database} after the recovery: ${err.message}`,
        );
      });
      if (tables === 0)
        throw fail(
          ErrorType.RestoreVerificationFailed,
          `database ${database} has no tables after the recovery`,
        );
      databases.push({ database, tables });
    }
    const lastCommit = await withDatabase(config, config.postgres.maintenanceDb, async (c) => {
      const r = await c.query<{ at: Date | null }>('SELECT (pg_last_committed_xact()).timestamp AS at');
      return r.rows[0]?.at?.toISOString();
    });
    if (lastCommit && Date.parse(lastCommit) > Date.parse(input.targetTime) + 1000)
      throw fail(
        ErrorType.RestoreVerificationFailed,
        `the last committed transaction (${lastCommit}) is after the target ${input.targetTime}`,
      );
    return { lastCommit, databases };
  }

  /**
   * After a failed recovery: the restored directory goes aside as `<data>.kohakku-dr-failed-<tag>`
   * and the original comes back (PostgreSQL must be stopped). Idempotent; a no-op when nothing
   * was moved.
   */
  async function putOriginalDataDirectoryBack(input: {
    recoveryId: string;
  }): Promise<{ restored: boolean; failedCopy?: string }> {
    const pitr = pitrConfig();
    const record = await readRecord(pitr, input.recoveryId);
    const exists = (p: string) =>
      fs.stat(p).then(
        () => true,
        () => false,
      );
    if (!record || !(await exists(record.asideDir))) return { restored: false };
    const pid = await runningPostmaster(pitr.dataDir);
    if (pid) throw new Error(`PostgreSQL (pid ${pid}) runs on the restored directory: stop it first`);
    const failedCopy = `${pitr.dataDir}.kohakku-dr-failed-${shortTag(input.recoveryId)}`;
    if (await exists(pitr.dataDir)) await fs.rename(pitr.dataDir, failedCopy);
    await fs.rename(record.asideDir, pitr.dataDir);
    await fs.rm(recordFile(pitr, input.recoveryId), { force: true });
    return { restored: true, failedCopy };
  }

  /**
   * The recovery window proven, as the nightly verification does for the logical backups: the
   * newest base backup plus every archived WAL segment restored into a scratch directory, started
   * on a scratch port with archiving off, replayed to the end of the archive and promoted; both
   * databases must connect and have their tables. The scratch server and directory are always
   * removed; the verdict is recorded in the backup store (`pitr/verification.json`).
   */
  async function verifyRecoveryWindow(input: { verifyId: string }): Promise<PitrVerification> {
    if (!config.pitr)
      return { skipped: 'PITR=off', ok: true, problems: [], verifiedAt: new Date().toISOString() };
    const pitr = config.pitr;
    const pg = tool();
    const skipped = (why: string): PitrVerification => ({
      skipped: why,
      ok: true,
      problems: [],
      verifiedAt: new Date().toISOString(),
    });
    if (
      !(await fs.stat(pitr.configFile).then(
        () => true,
        () => false,
      ))
    )
      return skipped(`not set up yet: no ${pitr.configFile} (run \`kohakku-dr pitr setup\`)`);
    const info = await pg.info();
    const newest = info.backup.filter((b) => !b.error).pop();
    if (!newest)
      return skipped(`no base backup in stanza ${pitr.stanza} yet (run \`kohakku-dr pitr backup\`)`);
    const scratch = path.join(pitr.workDir, `verify-${shortTag(input.verifyId)}`);
    const pgCtl = config.postgres.binDir ? path.join(config.postgres.binDir, 'pg_ctl') : 'pg_ctl';
    const owner = await fs.stat(pitr.configFile);
    const asOwner = process.getuid?.() === 0 && owner.uid !== 0 ? { uid: owner.uid, gid: owner.gid } : {};
    const problems: string[] = [];
    let lastCommit: string | undefined;
    const started = Date.now();
    await removeScratch(scratch, pgCtl, asOwner);
    try {
      await fs.mkdir(scratch, { mode: 0o700 });
      await fs.chown(scratch, owner.uid, owner.gid);
      await withHeartbeats(
        () => ({ verifying: newest.label, phase: 'restore into a scratch directory' }),
        () =>
          pg.run(
            [
              `--pg1-path=${scratch}`,
              `--set=${newest.label}`,
              '--type=default',
              '--archive-mode=off',
              'restore',
            ],
            {
              signal: cancellationSignal(),
            },
          ),
      ).catch((err: unknown) => {
        throw typedPgbackrestFailure(err, 'verifying the recovery window: pgbackrest restore');
      });
      const port = await freePort();
      await exec(
        pgCtl,
        [
          'start',
          '-W',
          '-D',
          scratch,
          '-l',
          path.join(scratch, 'kohakku-dr-verify.log'),
          '-o',
          // hot_standby off: no connections until promoted, and none of the standby checks of
          // settings (max_connections…) against the live server's.
          `-p ${port} -k ${scratch} -c listen_addresses='' -c archive_mode=off -c hot_standby=off`,
        ],
        { ...asOwner, isolatedEnv: true, env: { PATH: process.env.PATH } },
      );
      const scratchConfig = { ...config, postgres: { ...config.postgres, host: scratch, port } };
      await withHeartbeats(
        () => ({ verifying: newest.label, phase: 'replaying WAL in the scratch server' }),
        async () => {
          for (const deadline = Date.now() + 30 * 60000; ;) {
            const promoted = await withDatabase(
              scratchConfig,
              config.postgres.maintenanceDb,
              async (c) =>
                (await c.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0]!.r === false,
            ).catch(() => false);
            if (promoted) return;
            if (Date.now() > deadline)
              throw new Error('the scratch server did not finish recovery within 30 minutes');
            await sleep(500, cancellationSignal());
          }
        },
      );
      for (const database of Object.values(config.postgres.databases)) {
        const tables = await withDatabase(scratchConfig, database, async (c) =>
          Number(
            (
              await c.query<{ n: string }>(
                `SELECT count(*) AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r','p') AND n.nspname NOT IN ('pg_catalog','information_schema')`,
              )
            ).rows[0]!.n,
          ),
        ).catch((err: Error) => {
          problems.push(`${database}: ${err.message}`);
          return -1;
        });
        if (tables === 0) problems.push(`${database}: no tables`);
      }
      lastCommit = await withDatabase(scratchConfig, config.postgres.maintenanceDb, async (c) =>
        (
          await c.query<{ at: Date | null }>('SELECT (pg_last_committed_xact()).timestamp AS at')
        ).rows[0]?.at?.toISOString(),
      ).catch(() => undefined);
    } finally {
      await removeScratch(scratch, pgCtl, asOwner);
    }
    const verdict: PitrVerification = {
      ok: problems.length === 0,
      problems,
      verifiedAt: new Date().toISOString(),
      baseBackup: newest.label,
      reachedLastCommit: lastCommit,
      seconds: Math.round((Date.now() - started) / 100) / 10,
    };
    await store.ensureReady();
    await store.putJson(PITR_VERIFICATION_KEY, verdict);
    if (!verdict.ok)
      throw fail(
        ErrorType.VerificationFailed,
        `the recovery window did not verify: ${problems.join('; ')}`,
        verdict,
      );
    return verdict;
  }

  /** Stops a scratch server (immediate) and removes its directory; nothing if neither is there. */
  async function removeScratch(scratch: string, pgCtl: string, asOwner: { uid?: number; gid?: number }) {
    if (await runningPostmaster(scratch))
      await exec(pgCtl, ['stop', '-m', 'immediate', '-w', '-D', scratch], {
        ...asOwner,
        isolatedEnv: true,
        env: { PATH: process.env.PATH },
      }).catch(() => undefined);
    await fs.rm(scratch, { recursive: true, force: true });
  }

  return {
    configureArchiving,
    createStanza,
    pgbackrestBackup,
    pitrWindow,
    markRestorePoint,
    planPointInTimeRecovery,
    moveDataDirectoryAside,
    restoreToTarget,
    waitForPromotion,
    verifyRecoveredPoint,
    putOriginalDataDirectoryBack,
    verifyRecoveryWindow,
  };
}
