/**
 * The point-in-time recovery's own steps: plan a target (inside the window, its WAL all in the
 * repository — before anything is touched), move the stopped data directory aside, restore into
 * the empty one (ending a SIGKILLed worker's orphaned restore, then --delta), wait for the
 * promotion, verify the recovered point, and put the original back when the recovery fails.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { ErrorType, fail } from '../domain/errors';
import {
  PITR_LEASE_SECONDS,
  PITR_LEASES_PREFIX,
  type BaseBackupLease,
  type BaseBackupVerdict,
} from '../domain/pitr';
import { withDatabase } from '../infra/database';
import { shortTag } from '../infra/hashing';
import { processesMatching, stopDaemon } from '../infra/processes';
import {
  lsnSegment,
  parseHistory,
  typedPgbackrestFailure,
  walPosition,
  walToReplay,
} from '../infra/pgbackrest';
import { cancellationSignal, heartbeat, sleep, withHeartbeats } from './heartbeat';
import { iso, lastCommitTime, userTableCount, type PitrKit } from './pitrKit';
import { pathExists } from '../infra/files';

export interface PitrPlan {
  /** What the recovery stops at, in words and as pgBackRest options. */
  target: string;
  targetTime: string;
  restoreArgs: string[];
  backup: { label: string; type: string; stop: string; verification?: string };
  /** Why this base backup (verified ones are preferred; newer ones passed over are named). */
  choice?: string;
  walFrom: string;
  walTo: string;
  dataDir: string;
  asideDir: string;
  window: { earliest: string; latest: string };
}

const verificationOf = (v: BaseBackupVerdict | undefined) =>
  !v
    ? 'not verified yet'
    : v.ok
      ? `verified ${v.verifiedAt}`
      : `FAILED verification ${v.verifiedAt}: ${v.problems.join('; ')}`;

/**
 * The base backup a recovery starts from, among those ended before the target (oldest first),
 * each with its verdict and the WAL it would replay: the newest verified one whose WAL is all in
 * the repository; else the newest not known bad; else the newest complete one. None complete:
 * BackupCorrupt naming the first missing segment — nothing has been touched.
 */
export function chooseBaseBackup<B extends { label: string; archive: { start: string } }>(
  candidates: { backup: B; verdict?: BaseBackupVerdict; wal: { to: string; missing: string[] } }[],
): { chosen: B; walTo: string; choice: string } {
  const newestFirst = [...candidates].reverse();
  const complete = newestFirst.filter((c) => c.wal.missing.length === 0);
  const pick =
    complete.find((c) => c.verdict?.ok) ?? complete.find((c) => c.verdict?.ok !== false) ?? complete[0];
  if (!pick) {
    const newest = newestFirst[0]!;
    throw fail(
      ErrorType.BackupCorrupt,
      `WAL segment ${newest.wal.missing[0]} is missing from the pgBackRest repository (${newest.wal.missing.length} missing between ${newest.backup.archive.start} and ${newest.wal.to}): the recovery could not replay past it. Nothing was changed`,
    );
  }
  const passedOver = newestFirst
    .slice(0, newestFirst.indexOf(pick))
    .map((c) =>
      c.wal.missing.length
        ? `${c.backup.label} (WAL ${c.wal.missing[0]} missing)`
        : `${c.backup.label} (${verificationOf(c.verdict)})`,
    );
  const why = pick.verdict?.ok
    ? 'the newest verified base backup'
    : pick.verdict?.ok === false
      ? 'NO base backup before the target passed verification: the newest with its WAL complete, which FAILED its last verification'
      : 'NO verified base backup before the target: the newest with its WAL complete, not verified yet';
  return {
    chosen: pick.backup,
    walTo: pick.wal.to,
    choice: `${pick.backup.label}: ${why}${passedOver.length ? `; newer passed over: ${passedOver.join(', ')}` : ''}`,
  };
}

export function createPitrRestoreActivities(kit: PitrKit) {
  const {
    config,
    store,
    pitrConfig,
    tool,
    asideOf,
    recordFile,
    readRecord,
    writeRecord,
    readWindow,
    runningPostmaster,
  } = kit;
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
    const { window, info, files, verdicts } = await readWindow();
    if (!window.earliest || !window.latest)
      throw fail(
        ErrorType.BackupNotFound,
        `no base backup in the pgBackRest repository (stanza ${pitr.stanza}): run \`kohakku-dr pitr backup --type full\` first`,
      );
    let targetTime: string;
    let target: string;
    let restoreArgs: string[];
    const point =
      input.restorePoint !== undefined
        ? window.restorePoints.find((p) => p.name === input.restorePoint)
        : undefined;
    if (input.restorePoint !== undefined) {
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
    // A restore point is in the window when its WAL is archived (the newest archived segment is
    // complete); an instant, when it lies between the oldest backup's end and the newest WAL's
    // arrival, which the repository knows to the second only (rounded down: never promises more).
    const pointArchived =
      point !== undefined &&
      window.wal.max !== undefined &&
      lsnSegment(point.lsn) <= walPosition(window.wal.max)!.segment;
    const inWindow =
      t >= Date.parse(window.earliest) &&
      (input.restorePoint !== undefined ? pointArchived : t <= Date.parse(window.latest));
    if (!inWindow)
      throw fail(
        ErrorType.TargetOutsideWindow,
        `${target} is outside the recoverable window ${window.earliest} … ${window.latest}: choose an instant inside it (kohakku-dr backups shows it)`,
      );
    const candidates = info.backup.filter((b) => !b.error && b.timestamp.stop * 1000 <= t);
    if (!candidates.length)
      throw fail(ErrorType.TargetOutsideWindow, `no base backup ended before ${targetTime}`);
    const history = await tool().newestHistory(files);
    const { chosen, walTo, choice } = chooseBaseBackup(
      candidates.map((b) => ({
        backup: b,
        verdict: verdicts[b.label],
        wal: walToReplay(files, history, b.archive.start),
      })),
    );
    restoreArgs.push(`--set=${chosen.label}`);
    if (input.restorePoint !== undefined || input.target !== 'latest')
      restoreArgs.push('--target-action=promote');
    // Held against retention while the recovery runs (a scheduled base backup may expire sets).
    await store.ensureReady();
    await store.putJson(`${PITR_LEASES_PREFIX}${chosen.label}/${shortTag(input.recoveryId)}.json`, {
      holder: input.recoveryId,
      expiresAt: new Date(Date.now() + PITR_LEASE_SECONDS * 1000).toISOString(),
    } satisfies BaseBackupLease);
    return {
      target,
      targetTime,
      restoreArgs,
      backup: {
        label: chosen.label,
        type: chosen.type,
        stop: iso(chosen.timestamp.stop),
        verification: verificationOf(verdicts[chosen.label]),
      },
      choice,
      walFrom: chosen.archive.start,
      walTo,
      dataDir: pitr.dataDir,
      asideDir: asideOf(pitr, input.recoveryId),
      window: { earliest: window.earliest, latest: window.latest },
    };
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
    const movedBefore = record && (await pathExists(asideDir));
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

  /**
   * `pgbackrest restore` of the plan's backup and target into the empty data directory (--delta
   * on a retry). `endOfArchive`: the second restore, over the first, after PostgreSQL replayed
   * all the WAL it could read without reaching the target (always --delta).
   */
  /** What pgbackrest --delta needs to recognise a directory it restored: PG_VERSION or its manifest. */
  async function looksLikePgData(dir: string): Promise<boolean> {
    for (const marker of ['PG_VERSION', 'backup.manifest'])
      if (
        await fs.stat(path.join(dir, marker)).then(
          () => true,
          () => false,
        )
      )
        return true;
    return false;
  }

  async function restoreToTarget(input: {
    recoveryId: string;
    restoreArgs: string[];
    endOfArchive?: boolean;
  }): Promise<{ resumed: boolean; seconds: number }> {
    const pitr = pitrConfig();
    const record = await readRecord(pitr, input.recoveryId);
    if (!record?.movedAt) throw new Error('the data directory was not moved aside yet');
    const [startedField, doneField] = input.endOfArchive
      ? (['endOfArchiveStartedAt', 'endOfArchiveRestoredAt'] as const)
      : (['restoreStartedAt', 'restoredAt'] as const);
    if (record[doneField]) return { resumed: true, seconds: 0 };
    const resumed = !!record[startedField];
    if (resumed) {
      // A worker SIGKILLed mid-restore leaves its pgbackrest running: end it before restoring
      // again, so two restores never write the same directory.
      const orphans = await processesMatching([pitr.bin, `--config=${pitr.configFile}`, 'restore']);
      for (const pid of orphans) await stopDaemon(pid, 10000);
    }
    let delta = resumed || !!input.endOfArchive;
    if (resumed && !(await looksLikePgData(pitr.dataDir))) {
      // Killed before pgbackrest wrote PG_VERSION or its manifest: what is there is the start of
      // this recovery's own restore (the live directory has been aside since movedAt), and
      // pgbackrest refuses to --delta over a directory it cannot recognise. Emptied, the restore
      // starts over.
      for (const entry of await fs.readdir(pitr.dataDir))
        await fs.rm(path.join(pitr.dataDir, entry), { recursive: true, force: true });
      delta = false;
    }
    await writeRecord(pitr, { ...record, [startedField]: record[startedField] ?? new Date().toISOString() });
    const started = Date.now();
    let progress = 'starting';
    await withHeartbeats(
      () => ({ restore: input.restoreArgs.join(' '), progress }),
      () =>
        tool().run(
          [...input.restoreArgs, ...(delta ? ['--delta'] : []), '--log-level-console=detail', 'restore'],
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
      [startedField]: record[startedField] ?? new Date(started).toISOString(),
      [doneField]: new Date().toISOString(),
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
      // A startup process that gave up ends the server: say so at once, not at the deadline.
      // (postmaster.pid gone: a server that shut down removes it; its pid may not be ours to see.)
      if (
        Date.now() - started > 10000 &&
        !(await pathExists(path.join(pitrConfig().dataDir, 'postmaster.pid')))
      )
        throw fail(
          ErrorType.RecoveryTargetNotReached,
          `PostgreSQL stopped during recovery (${last}): it ends so ("recovery ended before configured recovery target was reached" in its log) when the WAL it could read holds no transaction after the target`,
        );
      if (Date.now() - started > input.deadlineSeconds * 1000)
        throw fail(
          ErrorType.ServiceUnhealthy,
          `PostgreSQL did not finish recovery within ${input.deadlineSeconds} s (${last}); see its log`,
        );
      await sleep(1000, cancellationSignal());
    }
  }

  /**
   * After a recovery to the end of the archive (the target not reached): proof that PostgreSQL
   * replayed all of it — the timeline it was promoted from ended in the newest segment the
   * repository holds on that timeline — so the recovered state is the state at the target (no
   * transaction after it was archived). Ending earlier means WAL it could not read: BackupCorrupt.
   */
  async function proveEndOfArchiveReached(): Promise<{ endedAt: string; archiveEnd: string }> {
    const pitr = pitrConfig();
    const walDir = path.join(pitr.dataDir, 'pg_wal');
    const histories = (await fs.readdir(walDir)).filter((f) => /^[0-9A-F]{8}\.history$/.test(f)).sort();
    const newest = histories[histories.length - 1];
    const switched = newest
      ? parseHistory(await fs.readFile(path.join(walDir, newest), 'utf8')).pop()
      : undefined;
    if (!switched) throw new Error(`no timeline history in ${walDir}: PostgreSQL was not promoted`);
    const onThatTimeline = (await tool().archiveFiles())
      .map((f) => walPosition(f.name))
      .filter((p): p is NonNullable<typeof p> => p !== undefined && p.timeline === switched.timeline);
    const lastSegment = Math.max(...onThatTimeline.map((p) => p.segment));
    const archiveEnd = `timeline ${switched.timeline}, segment ${lastSegment.toString(16).toUpperCase()}`;
    if (lsnSegment(switched.switchLsn) < lastSegment)
      throw fail(
        ErrorType.BackupCorrupt,
        `PostgreSQL ended its recovery at ${switched.switchLsn} on timeline ${switched.timeline}, before the end of the archive (${archiveEnd}): WAL it could not read lies between. The target is not proven reached`,
      );
    return { endedAt: `${switched.switchLsn} on timeline ${switched.timeline}`, archiveEnd };
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
      const tables = await userTableCount(config, database).catch((err: Error) => {
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
    const lastCommit = await lastCommitTime(config);
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
    if (!record || !(await pathExists(record.asideDir))) return { restored: false };
    const pid = await runningPostmaster(pitr.dataDir);
    if (pid) throw new Error(`PostgreSQL (pid ${pid}) runs on the restored directory: stop it first`);
    const failedCopy = `${pitr.dataDir}.kohakku-dr-failed-${shortTag(input.recoveryId)}`;
    if (await pathExists(pitr.dataDir)) await fs.rename(pitr.dataDir, failedCopy);
    await fs.rename(record.asideDir, pitr.dataDir);
    await fs.rm(recordFile(pitr, input.recoveryId), { force: true });
    return { restored: true, failedCopy };
  }

  return {
    planPointInTimeRecovery,
    moveDataDirectoryAside,
    restoreToTarget,
    waitForPromotion,
    proveEndOfArchiveReached,
    verifyRecoveredPoint,
    putOriginalDataDirectoryBack,
  };
}
