/**
 * The Postgres activities, one closure per concern (backup, restore, table restore, roles and
 * other cluster globals) over the shared kit.
 */
import { createPostgresBackupActivities } from './postgresBackup';
import { createPostgresGlobalsActivities } from './postgresGlobals';
import { postgresKit, type PostgresDeps } from './postgresKit';
import { createPostgresRestoreActivities } from './postgresRestore';
import { createPostgresTableActivities } from './postgresTables';

export { dumpKey } from '../domain/layout';
export type { DatabaseBackup, PostgresManifest, TableStats } from '../domain/manifests';
export type { PostgresTarget } from '../domain/targets';
export type { GlobalsReport } from './postgresGlobals';
export {
  asideName,
  checksumOptions,
  compareTables,
  splitTable,
  stagingName,
  tableStats,
  type PostgresBackupSummary,
  type PostgresDeps,
  type PreparedRestore,
  type TableStatsOptions,
} from './postgresKit';

export function createPostgresActivities(deps: PostgresDeps) {
  const kit = postgresKit(deps);
  return {
    ...createPostgresBackupActivities(kit),
    ...createPostgresRestoreActivities(kit),
    ...createPostgresTableActivities(kit),
    ...createPostgresGlobalsActivities(kit),
  };
}
