/**
 * Point-in-time recovery's activities, on pgBackRest: archiving and base backups (pitrArchive),
 * the recovery's steps (pitrRestore), the window's verification (pitrVerify) and base backup
 * retention (pitrRetention), over one kit.
 * The worker runs where the data directory is (the database host, or with it mounted): it moves
 * the directory and runs `pgbackrest restore` into it as its owner.
 */
import type { Config } from '../config';
import type { BackupStore } from '../infra/backupStore';
import type { CommandRunner } from '../infra/exec';
import { createPitrArchiveActivities } from './pitrArchive';
import { pitrKit } from './pitrKit';
import { createPitrRestoreActivities } from './pitrRestore';
import { createPitrRetentionActivities } from './pitrRetention';
import { createPitrVerifyActivities } from './pitrVerify';

export type { PitrWindow } from './pitrKit';
export type { PitrPlan } from './pitrRestore';
export type { PitrVerification } from './pitrVerify';
export type { BaseBackupExpiry } from './pitrRetention';

export function createPitrActivities(deps: { config: Config; exec: CommandRunner; store: BackupStore }) {
  const kit = pitrKit(deps);
  return {
    ...createPitrArchiveActivities(kit),
    ...createPitrRestoreActivities(kit),
    ...createPitrVerifyActivities(kit),
    ...createPitrRetentionActivities(kit),
  };
}
