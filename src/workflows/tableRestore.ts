/**
 * Manual restore of chosen tables (the runbook's `pg_restore --clean -t tasks_task`), but
 * complete: each table comes back with its indexes, constraints, triggers, sequence values and
 * the foreign keys that point at it, verified against the manifest in the same transaction.
 * A live table being replaced is moved aside into a schema, never dropped.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { PostgresTarget } from '../domain/targets';
import { ErrorType, fail } from '../domain/errors';
import { long, quick } from './options';
import type { StepProgress } from './procedure';
import {
  startRecovery,
  measure,
  type Measurements,
  type RecoveryCommonInput,
  type RecoveryPlan,
} from './recovery';

export interface TableRestoreInput extends RecoveryCommonInput {
  /** Backup id or "latest" (the newest verified set; the newest backup if none is verified). */
  backupId?: string;
  target: PostgresTarget;
  /** "tasks_task" or "schema.table". */
  tables: string[];
}

export interface TableRestoreResult {
  procedure: 'table-restore';
  backupId: string;
  backupVerified: boolean;
  database: string;
  tables: { table: string; rows: number; entries: number }[];
  movedAsideTo: string;
  steps: StepProgress[];
  measurements: Measurements;
}

const { resolvePostgresBackup, liveTables, lockBackup, unlockBackup, cleanupPostgresRestore } =
  proxyActivities<Activities>(quick);
const { preparePostgresRestore, restorePostgresTables } = proxyActivities<Activities>(long);

const STEPS = ['resolve backup', 'verify backup file', 'restore tables', 'cleanup'] as const;

export async function tableRestore(input: TableRestoreInput): Promise<TableRestoreResult | RecoveryPlan> {
  const { procedure, approve, recoveryId, started } = startRecovery(
    'Table restore',
    STEPS,
    input?.confirm === true,
  );
  let locked: string | undefined;
  const valid = /^[A-Za-z_][A-Za-z0-9_$-]*(\.[A-Za-z_][A-Za-z0-9_$-]*)?$/;
  return procedure.run(
    async () => {
      if (!input || !['controller', 'dispatcher'].includes(input.target)) {
        throw fail(ErrorType.InvalidInput, 'target must be controller or dispatcher');
      }
      if (
        !Array.isArray(input.tables) ||
        input.tables.length === 0 ||
        !input.tables.every((t) => typeof t === 'string' && valid.test(t))
      ) {
        throw fail(
          ErrorType.InvalidInput,
          `tables must be a non-empty list of table names ("tasks_task" or "schema.table"), got ${JSON.stringify(input.tables)}`,
        );
      }
      const { summary, live } = await procedure.step(
        'resolve backup',
        `finding backup "${input.backupId ?? 'latest'}"`,
        async () => {
          const summary = await resolvePostgresBackup({ backupId: input.backupId, targets: [input.target] });
          const live = await liveTables({ target: input.target, tables: input.tables });
          if (!input.plan) {
            await lockBackup({ backupId: summary.id, holder: recoveryId });
            locked = summary.id;
          }
          return { summary, live };
        },
        ({ summary, live }) =>
          `backup ${summary.id} (${summary.verified ? 'verified' : 'NOT verified'}); live: ${live.join(', ') || 'none'}`,
      );
      if (input.plan) {
        return {
          procedure: 'table-restore',
          plan: true,
          backupId: summary.id,
          backupCreatedAt: summary.createdAt,
          backupVerified: summary.verified ?? false,
          steps: [
            {
              step: 'verify backup file',
              action: `download and sha256-check the ${input.target} dump`,
              touches: ['backup store (read)'],
              destructive: false,
            },
            {
              step: 'restore tables',
              action: `in one transaction: ${live.length ? `move ${live.join(', ')} into a kohakku_dr_replaced_* schema, ` : ''}replay ${input.tables.join(', ')} with indexes, constraints, triggers, sequences and referencing foreign keys, verify rows against the manifest`,
              touches: input.tables.map((t) => `${input.target}: ${t}`),
              destructive: live.length > 0,
            },
          ],
        } satisfies RecoveryPlan;
      }
      await procedure.step('verify backup file', 'downloading and checking the dump', () =>
        preparePostgresRestore({ backupId: summary.id, target: input.target, recoveryId }),
      );
      if (live.length > 0)
        await approve(`replace the live table(s) ${live.join(', ')} (they are moved aside into a schema)`);
      const restored = await procedure.step(
        'restore tables',
        `restoring ${input.tables.join(', ')}`,
        () =>
          restorePostgresTables({
            backupId: summary.id,
            target: input.target,
            tables: input.tables,
            recoveryId,
          }),
        (r) => r.tables.map((t) => `${t.table}: ${t.rows} rows, ${t.entries} archive entries`).join('; '),
      );
      return {
        procedure: 'table-restore' as const,
        backupId: summary.id,
        backupVerified: summary.verified ?? false,
        ...restored,
        steps: procedure.progress.steps,
        measurements: measure(started, input.incidentAt, summary.createdAt),
      };
    },
    () =>
      procedure.step('cleanup', 'removing local dump copies and the hold on the backup', async () => {
        await cleanupPostgresRestore({ recoveryId, targets: [] });
        if (locked) await unlockBackup({ backupId: locked, holder: recoveryId });
      }),
  );
}
