/**
 * Postgres backup (the runbook's daily 02:00 pg_dump): `pg_dump -Fc` of each database into
 * the backup store, with a manifest of sizes, sha256, row counts and checksums.
 */
import { proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { PostgresManifest, PostgresTarget } from '../activities/postgres';
import { long } from './options';
import { Procedure, surfaceFailure } from './procedure';

const { backupPostgres } = proxyActivities<Activities>(long);

export interface PostgresBackupInput {
  targets?: PostgresTarget[];
}

/** The backup id is the run's start time, so a retried activity writes the same backup. */
function backupIdOf(date: Date): string {
  return date
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}Z$/, 'Z');
}

export async function postgresBackup(input: PostgresBackupInput = {}): Promise<PostgresManifest> {
  const procedure = new Procedure('Postgres backup', ['dump databases']);
  const backupId = backupIdOf(workflowInfo().runStartTime);
  try {
    const manifest = await procedure.step(
      'dump databases',
      `pg_dump -Fc of ${input.targets?.join(', ') ?? 'controller, dispatcher'} into backup ${backupId}`,
      () => backupPostgres({ backupId, targets: input.targets }),
      (m) => `backup ${m.id}: ${m.databases.map((d) => `${d.database} ${d.size} B`).join(', ')}`,
    );
    procedure.finish('completed');
    return manifest;
  } catch (err) {
    const failure = surfaceFailure(err);
    procedure.finish('failed', (failure as Error).message);
    throw failure;
  }
}
