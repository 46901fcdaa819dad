/**
 * Continuous archiving and base backups: pgBackRest's configuration and PostgreSQL's archive
 * settings (idempotent), the stanza, full/differential/incremental backups with their progress,
 * the recoverable window, and named restore points recorded in the backup store.
 */
import { promises as fs } from 'node:fs';
import { ErrorType, fail } from '../domain/errors';
import {
  PITR_BACKUP_TYPES,
  PITR_RESTORE_POINTS_KEY,
  type PitrBackupType,
  type RestorePointRecord,
} from '../domain/pitr';
import { withDatabase } from '../infra/database';
import { archiveCommand, writePgbackrestConfig } from '../infra/pgbackrest';
import { attemptInfo, cancellationSignal, withHeartbeats } from './heartbeat';
import { iso, type PitrKit } from './pitrKit';

export function createPitrArchiveActivities(kit: PitrKit) {
  const { config, store, pitrConfig, tool, readRestorePoints, pitrWindow } = kit;
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
    /** The configuration file was out of date with the settings and was written again first. */
    configRefreshed?: boolean;
    /** A retry found the backup an earlier attempt of this activity finished, and took no other. */
    resumed?: boolean;
  }> {
    if (!(PITR_BACKUP_TYPES as readonly string[]).includes(input.type))
      throw fail(ErrorType.InvalidInput, `backup type must be full, diff or incr, got ${String(input.type)}`);
    const pitr = pitrConfig();
    const pg = tool();
    // The configuration follows the settings: one written by an older kohakku-dr (or edited by
    // hand) is written again before pgBackRest's own expire runs at the end of the backup.
    const owner = await fs.stat(pitr.configFile).catch(() => {
      throw fail(
        ErrorType.InvalidInput,
        `no pgBackRest configuration at ${pitr.configFile}: run \`kohakku-dr pitr setup\` first`,
      );
    });
    const configRefreshed = await writePgbackrestConfig(config, pitr, owner);
    const summary = (b: Awaited<ReturnType<typeof pg.info>>['backup'][number], resumed?: boolean) => ({
      label: b.label,
      type: b.type,
      size: b.info.size,
      repoSize: b.info.repository.size,
      start: iso(b.timestamp.start),
      stop: iso(b.timestamp.stop),
      ...(configRefreshed ? { configRefreshed } : {}),
      ...(resumed ? { resumed } : {}),
    });
    // Run once: a retry after an attempt that finished (its worker lost before the result was
    // recorded) returns that backup — one of this type started since the activity was first
    // scheduled — instead of taking another.
    const { attempt, firstScheduledMs } = attemptInfo();
    if (attempt > 1) {
      const done = (await pg.info()).backup
        .filter((b) => b.type === input.type && b.timestamp.start * 1000 >= firstScheduledMs - 1000)
        .pop();
      if (done) return summary(done, true);
    }
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
    return summary(newest);
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

  return { configureArchiving, createStanza, pgbackrestBackup, pitrWindow, markRestorePoint };
}
