/**
 * Point-in-time recovery's upkeep, each a short procedure the CLI starts (and the Schedules, for
 * base backups):
 *   - `pitrSetup`: pgBackRest's configuration, continuous archiving (archive_command,
 *     archive_timeout, commit timestamps), PostgreSQL restarted through the service adapter when
 *     a setting needs it, the stanza created and checked — idempotent, run it again any time;
 *   - `pitrBackup`: a full, differential or incremental base backup, base backups past retention
 *     expired (never the newest verified point's, nor one a recovery holds), then the window;
 *   - `markRestorePoint`: a named restore point (`kohakku-dr mark "before deploy 42"`).
 */
import { patched, proxyActivities } from '@temporalio/workflow';
import { z } from 'zod';
import type { Activities } from '../activities';
import type { BaseBackupExpiry, PitrWindow } from '../activities/pitr';
import { PITR_BACKUP_TYPES, type PitrBackupType, type RestorePointRecord } from '../domain/pitr';
import { parseInput } from './engine/input';
import { Procedure } from './engine/progress';
import { long, quick, scan, waitUpTo } from './options';

const {
  configureArchiving,
  restartService,
  pitrWindow,
  markRestorePoint: mark,
} = proxyActivities<Activities>(quick);
const { createStanza, pgbackrestBackup } = proxyActivities<Activities>(long);
const { expireBaseBackups } = proxyActivities<Activities>(scan);
const { waitForHealthy } = proxyActivities<Activities>(waitUpTo(120));

export interface PitrSetupResult {
  configFile: string;
  settingsChanged: string[];
  restarted: boolean;
  stanza: string;
  checked: string;
}

export async function pitrSetup(rawInput?: Record<string, never>): Promise<PitrSetupResult> {
  const procedure = new Procedure('Point-in-time recovery setup', [
    'configure archiving',
    'restart postgres if needed',
    'create and check the stanza',
  ]);
  parseInput(z.strictObject({}), rawInput, 'pitrSetup');
  return procedure.run(async () => {
    const configured = await procedure.step(
      'configure archiving',
      "writing pgBackRest's configuration and PostgreSQL's archive settings",
      () => configureArchiving(),
      (c) =>
        `${c.configFile}${c.configChanged ? ' written' : ' unchanged'}; ${c.settingsChanged.length ? `set ${c.settingsChanged.join(', ')}` : 'settings already in place'}`,
    );
    let restarted = false;
    if (configured.restartNeeded) {
      await procedure.step(
        'restart postgres if needed',
        'restarting PostgreSQL through the service adapter (archive_mode and commit timestamps need it)',
        async () => {
          await restartService({ service: 'postgres' });
          const health = await waitForHealthy({ service: 'postgres', deadlineSeconds: 120 });
          if (!health.healthy)
            throw new Error(`PostgreSQL did not come back after the restart: ${health.lastError}`);
          restarted = true;
        },
        () => 'restarted',
      );
    } else procedure.skip('restart postgres if needed', 'no setting needs a restart');
    const stanza = await procedure.step(
      'create and check the stanza',
      'pgbackrest stanza-create, then check (a WAL segment must reach the repository)',
      () => createStanza(),
      (s) => `stanza ${s.stanza}: ${s.checked}`,
    );
    return {
      configFile: configured.configFile,
      settingsChanged: configured.settingsChanged,
      restarted,
      stanza: stanza.stanza,
      checked: stanza.checked,
    };
  });
}

export const pitrBackupInput = z.strictObject({
  /** full (default), diff (since the last full) or incr (since the last backup). */
  type: z.enum(PITR_BACKUP_TYPES).optional(),
});

export interface PitrBackupResult {
  backup: Awaited<ReturnType<Activities['pgbackrestBackup']>>;
  /** What retention expired and kept (absent in runs from before 0.3.1). */
  retention?: BaseBackupExpiry;
  window: PitrWindow;
}

export async function pitrBackup(rawInput?: { type?: PitrBackupType }): Promise<PitrBackupResult> {
  const procedure = new Procedure('Base backup', [
    'pgbackrest backup',
    'expire past retention',
    'recoverable window',
  ]);
  const input = parseInput(pitrBackupInput, rawInput, 'pitrBackup');
  const type = input.type ?? 'full';
  return procedure.run(async () => {
    const backup = await procedure.step(
      'pgbackrest backup',
      `a ${type} base backup with pgBackRest`,
      () => pgbackrestBackup({ type }),
      (b) => `${b.label}: ${b.size} B (${b.repoSize} B in the repository), ${b.start} … ${b.stop}`,
    );
    // 0.3.1: retention is kohakku-dr's, so it keeps the newest verified point and leased backups.
    let retention: BaseBackupExpiry | undefined;
    if (patched('pitr-base-backup-retention'))
      retention = await procedure.step(
        'expire past retention',
        'expiring base backups past retention (keeping the newest verified point and those in use)',
        () => expireBaseBackups({ asOf: new Date().toISOString() }),
        (r) =>
          `${r.expire.length ? `expired ${r.expire.join(', ')}` : 'nothing expired'}; kept ${r.kept.map((k) => `${k.full} (${k.reason})`).join(', ')}`,
      );
    else procedure.skip('expire past retention', 'added by a later kohakku-dr; this run started before it');
    const window = await procedure.step(
      'recoverable window',
      'reading the recoverable window',
      () => pitrWindow(),
      (w) => `${w.earliest} … ${w.latest}, ${w.backups.length} base backup(s)`,
    );
    return { backup, ...(retention ? { retention } : {}), window };
  });
}

export async function markRestorePoint(rawInput?: { name: string }): Promise<RestorePointRecord> {
  const procedure = new Procedure('Restore point', ['mark']);
  const input = parseInput(z.strictObject({ name: z.string().min(1).max(60) }), rawInput, 'markRestorePoint');
  return procedure.run(() =>
    procedure.step(
      'mark',
      `pg_create_restore_point('${input.name}')`,
      () => mark({ name: input.name }),
      (p) => `${p.name} at ${p.at} (LSN ${p.lsn})`,
    ),
  );
}

/** The recoverable window, base backups and restore points as pgBackRest sees them now (for `kohakku-dr backups`). */
export async function pitrStatus(rawInput?: Record<string, never>): Promise<PitrWindow> {
  parseInput(z.strictObject({}), rawInput, 'pitrStatus');
  return pitrWindow();
}
