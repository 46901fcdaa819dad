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
