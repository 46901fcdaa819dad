/**
 * What the backup workflows share: their strict inputs and the backup id of a run (the run's
 * start time, so a retried step writes the same backup, and a nightly run's parts share it).
 */
import { workflowInfo } from '@temporalio/workflow';
import { z } from 'zod';
import { BACKUP_ID_FORMAT, BACKUP_ID_PATTERN, backupIdAt } from '../domain/backupIds';
import { STORE_NAMES } from '../domain/stores';
import { POSTGRES_TARGETS } from '../domain/targets';

/** A backup id is the run's start time (UTC, to the second): a retried activity writes the same backup. */
export function backupIdOfThisRun(): string {
  return backupIdAt(workflowInfo().runStartTime);
}

const backupId = z
  .string()
  .regex(BACKUP_ID_PATTERN, { message: `expected a backup id (${BACKUP_ID_FORMAT})` });

/** Set by the nightly backup so every part of a set shares its id; this run's start time otherwise. */
export const partBackupInput = z.strictObject({ backupId: backupId.optional() });

export const postgresBackupInput = z.strictObject({
  backupId: backupId.optional(),
  targets: z.array(z.enum(POSTGRES_TARGETS)).min(1).optional(),
});

export const verifyBackupSetInput = z.strictObject({
  /** The set to verify; the newest set by default. */
  backupId: backupId.optional(),
  /** The store whose copy is verified (primary by default). */
  from: z.enum(STORE_NAMES).optional(),
});

export const noInput = z.strictObject({});
