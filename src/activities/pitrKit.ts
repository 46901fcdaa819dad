/**
 * What the point-in-time activities share: the PITR settings (a typed refusal when PITR=off),
 * pgBackRest's runner, the recoverable window, the named restore points, and the small record
 * each recovery keeps beside the data directory (`<data>.kohakku-dr-pitr-<tag>.json`) so a retry
 * after a crash knows whether the directory was moved and the restore started. Archiving and
 * backups, the recovery's steps and the window's verification are each in a file of their own.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { Config, PitrConfig } from '../config';
import { ErrorType, fail } from '../domain/errors';
import {
  PITR_RESTORE_POINTS_KEY,
  PITR_VERDICTS_KEY,
  type BaseBackupVerdict,
  type BaseBackupVerdicts,
  type RestorePointRecord,
} from '../domain/pitr';
import type { BackupStore } from '../infra/backupStore';
import { withDatabase } from '../infra/database';
import type { CommandRunner } from '../infra/exec';
import { shortTag } from '../infra/hashing';
import { isAlive } from '../infra/processes';
import { pgbackrest, type ArchiveFile, type StanzaInfo } from '../infra/pgbackrest';

export interface PitrWindow {
  stanza: string;
  /** The earliest instant one can restore to: the end of the oldest base backup. */
  earliest?: string;
  /** The latest: when the newest WAL segment reached the repository. */
  latest?: string;
  backups: {
    label: string;
    type: string;
    start: string;
    stop: string;
    size: number;
    repoSize: number;
    /** Its last verification (the nightly's scratch recovery), when it had one. */
    verdict?: BaseBackupVerdict;
  }[];
  wal: { min?: string; max?: string };
  restorePoints: RestorePointRecord[];
  status: string;
}

export interface PitrRecord {
  recoveryId: string;
  dataDir: string;
  asideDir: string;
  movedAt?: string;
  restoreStartedAt?: string;
  restoredAt?: string;
  /** The second restore, to the end of the archive, after the target was not reached. */
  endOfArchiveStartedAt?: string;
  endOfArchiveRestoredAt?: string;
}

export const iso = (seconds: number) => new Date(seconds * 1000).toISOString();
export type PitrKit = ReturnType<typeof pitrKit>;

/** How many user tables `database` has on the server `config` points at (a recovered cluster's check). */
export function userTableCount(config: Config, database: string): Promise<number> {
  return withDatabase(config, database, async (c) =>
    Number(
      (
        await c.query<{ n: string }>(
          `SELECT count(*) AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r','p') AND n.nspname NOT IN ('pg_catalog','information_schema')`,
        )
      ).rows[0]!.n,
    ),
  );
}

/** The commit time of the last transaction the server committed or replayed (commit timestamps are on). */
export function lastCommitTime(config: Config): Promise<string | undefined> {
  return withDatabase(config, config.postgres.maintenanceDb, async (c) =>
    (
      await c.query<{ at: Date | null }>('SELECT (pg_last_committed_xact()).timestamp AS at')
    ).rows[0]?.at?.toISOString(),
  );
}

export function pitrKit({
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

  async function readRestorePoints(): Promise<RestorePointRecord[]> {
    return (await store.getJson<RestorePointRecord[]>(PITR_RESTORE_POINTS_KEY)) ?? [];
  }

  /** Each base backup's last verdict, by label. */
  async function readVerdicts(): Promise<BaseBackupVerdicts> {
    return (await store.getJson<BaseBackupVerdicts>(PITR_VERDICTS_KEY)) ?? {};
  }

  /** Records `label`'s verdict; drops the verdicts of labels no longer in the repository (`keep`). */
  async function writeVerdicts(change: { set?: [string, BaseBackupVerdict]; keep?: Set<string> }) {
    const verdicts = await readVerdicts();
    if (change.set) verdicts[change.set[0]] = change.set[1];
    if (change.keep)
      for (const label of Object.keys(verdicts)) if (!change.keep.has(label)) delete verdicts[label];
    await store.ensureReady();
    await store.putJson(PITR_VERDICTS_KEY, verdicts);
  }

  function windowOf(
    info: StanzaInfo,
    latestWal: number | undefined,
    verdicts: BaseBackupVerdicts,
  ): Omit<PitrWindow, 'restorePoints'> {
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
        ...(verdicts[b.label] ? { verdict: verdicts[b.label] } : {}),
      })),
      wal: {
        min: info.archive[0]?.min ?? undefined,
        max: info.archive[info.archive.length - 1]?.max ?? undefined,
      },
      status: info.status.message,
    };
  }

  /** The window, with what it was read from (pgBackRest's info, the archive's files), for a plan that needs both. */
  async function readWindow(): Promise<{
    window: PitrWindow;
    info: StanzaInfo;
    files: ArchiveFile[];
    verdicts: BaseBackupVerdicts;
  }> {
    const pg = tool();
    const info = await pg.info();
    const files = await pg.archiveFiles();
    const latestWal = files
      .filter((f) => /^[0-9A-F]{24}-/.test(f.name))
      .reduce((m, f) => Math.max(m, f.time), 0);
    const verdicts = await readVerdicts();
    return {
      window: {
        ...windowOf(info, latestWal || undefined, verdicts),
        restorePoints: await readRestorePoints(),
      },
      info,
      files,
      verdicts,
    };
  }

  /** The recoverable window: earliest and latest instant, the base backups, the named points. */
  async function pitrWindow(): Promise<PitrWindow> {
    return (await readWindow()).window;
  }

  /** PostgreSQL's postmaster pid, when one runs on the data directory. */
  async function runningPostmaster(dataDir: string): Promise<number | undefined> {
    const pidFile = await fs.readFile(path.join(dataDir, 'postmaster.pid'), 'utf8').catch(() => undefined);
    const pid = pidFile ? Number(pidFile.split('\n')[0]) : NaN;
    return Number.isInteger(pid) && isAlive(pid) ? pid : undefined;
  }

  return {
    config,
    exec,
    store,
    pitrConfig,
    tool,
    asideOf,
    recordFile,
    readRecord,
    writeRecord,
    readRestorePoints,
    readVerdicts,
    writeVerdicts,
    pitrWindow,
    readWindow,
    runningPostmaster,
  };
}
