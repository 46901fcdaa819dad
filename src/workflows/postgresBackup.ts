/**
 * Postgres backup (the runbook's daily 02:00 pg_dump): `pg_dump -Fc` of each database into
 * the backup store, with a manifest of sizes, sha256, row counts and checksums.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { PostgresManifest } from '../domain/manifests';
import type { PostgresTarget } from '../domain/targets';
import { long } from './options';
import { backupIdOfThisRun, postgresBackupInput } from './backupRun';
import { parseInput } from './engine/input';
import { Procedure } from './engine/progress';

const { backupPostgres } = proxyActivities<Activities>(long);

export interface PostgresBackupInput {
  targets?: PostgresTarget[];
  /** Set by the nightly backup so every part of a set shares its id; this run's start time otherwise. */
  backupId?: string;
}

export async function postgresBackup(rawInput?: PostgresBackupInput): Promise<PostgresManifest> {
  const procedure = new Procedure('Postgres backup', ['dump databases']);
  const input = parseInput(postgresBackupInput, rawInput, 'postgresBackup');
  const backupId = input.backupId ?? backupIdOfThisRun();
  return procedure.run(() =>
    procedure.step(
      'dump databases',
      `pg_dump -Fc of ${input.targets?.join(', ') ?? 'controller, dispatcher'} into backup ${backupId}`,
      () => backupPostgres({ backupId, targets: input.targets }),
      (m) => `backup ${m.id}: ${m.databases.map((d) => `${d.database} ${d.size} B`).join(', ')}`,
    ),
  );
}
