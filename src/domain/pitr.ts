/**
 * Point-in-time recovery's shared constants and types: where named restore points are recorded
 * (PostgreSQL can stop at a named point but cannot list them), and what a target may be.
 */
export const PITR_RESTORE_POINTS_KEY = 'pitr/restore-points.json';
/** The last verification of the recovery window (the nightly's scratch recovery). */
export const PITR_VERIFICATION_KEY = 'pitr/verification.json';

/** A named restore point made by `kohakku-dr mark`. */
export interface RestorePointRecord {
  name: string;
  /** Its WAL position (pg_create_restore_point's result). */
  lsn: string;
  /** When it was made (the server's clock). */
  at: string;
}

export const PITR_BACKUP_TYPES = ['full', 'diff', 'incr'] as const;
export type PitrBackupType = (typeof PITR_BACKUP_TYPES)[number];

/**
 * Each base backup's last verdict from the nightly's scratch recovery, by pgBackRest label: what
 * `latest`-style choices prefer, and what retention keeps (the newest verified point's chain).
 */
export const PITR_VERDICTS_KEY = 'pitr/verdicts.json';
/** A running point-in-time recovery's hold on its base backup: `pitr/leases/<label>/<tag>.json`. */
export const PITR_LEASES_PREFIX = 'pitr/leases/';
/** How long a recovery holds its base backup against retention (it renews nothing: a day is ample). */
export const PITR_LEASE_SECONDS = 24 * 3600;

export interface BaseBackupVerdict {
  ok: boolean;
  verifiedAt: string;
  /** The last commit the scratch recovery replayed to. */
  reachedLastCommit?: string;
  problems: string[];
}
export type BaseBackupVerdicts = Record<string, BaseBackupVerdict>;

export interface BaseBackupLease {
  holder: string;
  expiresAt: string;
}
