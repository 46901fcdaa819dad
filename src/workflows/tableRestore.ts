/**
 * Manual restore of chosen tables (the runbook's `pg_restore --clean -t tasks_task`), but
 * complete: each table comes back with its indexes, constraints, triggers, identity and owned
 * sequences, dependent views and rules, and the foreign keys that point at it, verified against
 * the manifest in the same transaction. A live table being replaced is moved aside into a
 * schema, never dropped; live rows elsewhere that reference rows the backup lacks are refused
 * (or, when asked, moved aside too).
 */
import { proxyActivities } from '@temporalio/workflow';
import { z } from 'zod';
import type { Activities } from '../activities';
import type { PostgresBackupSummary } from '../activities/postgresKit';
import { POSTGRES_TARGETS } from '../domain/targets';
import type { RecoveryEnvelope, RecoveryPlan } from './definitions';
import { backupIdField, fromField, recoveryCommonFields } from './engine/input';
import { runRecovery, type RecoveryDefinition } from './engine/recovery';
import { long, quick } from './options';

const { resolvePostgresBackup, liveTables, cleanupPostgresRestore } = proxyActivities<Activities>(quick);
const { preparePostgresRestore, restorePostgresTables } = proxyActivities<Activities>(long);

const tableName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_$-]*(\.[A-Za-z_][A-Za-z0-9_$-]*)?$/, {
  message: 'expected a table name such as "tasks_task" or "schema.table"',
});

export const tableRestoreInput = z.strictObject({
  ...recoveryCommonFields,
  /** Backup id or "latest" (the newest verified backup; the result says which and why). */
  backupId: backupIdField.optional(),
  /** Which backup store to read it from; by default the first that has a verified copy (the result says which). */
  from: fromField.optional(),
  target: z.enum(POSTGRES_TARGETS),
  /** "tasks_task" or "schema.table". */
  tables: z.array(tableName).min(1),
  /**
   * Live rows in other tables that reference rows the backup does not have: `refuse` (default:
   * nothing changes, the error counts them) or `move-aside` (copied into the aside schema, then
   * removed from their table, in the same transaction).
   */
  referencingRows: z.enum(['refuse', 'move-aside']).optional(),
});
export type TableRestoreInput = z.input<typeof tableRestoreInput>;

type Restored = Awaited<ReturnType<Activities['restorePostgresTables']>>;

interface State {
  backup?: PostgresBackupSummary;
  restored?: Restored;
}

export type TableRestoreDetails = Restored & { backupId: string; backupVerified: boolean };
export type TableRestoreResult = RecoveryEnvelope & TableRestoreDetails;

const qualified = (t: string) => (t.includes('.') ? t : `public.${t}`);

export const tableRestoreDefinition: RecoveryDefinition<
  typeof tableRestoreInput,
  State,
  TableRestoreDetails
> = {
  procedure: 'table-restore',
  title: 'Table restore',
  input: tableRestoreInput,
  locks: () => ['postgres'],
  endpoints: () => ['postgres', 'backup-store'],
  initialState: () => ({}),
  phases: [
    {
      name: 'resolve backup',
      effect: 'read',
      waitingFor: ({ input }) => `finding backup "${input.backupId ?? 'latest'}"`,
      async run(ctx) {
        ctx.state.backup = await resolvePostgresBackup({
          backupId: ctx.input.backupId,
          targets: [ctx.input.target],
          from: ctx.input.from,
        });
      },
      describe: ({ state }) =>
        `backup ${state.backup!.id} (${state.backup!.verified ? 'verified' : 'NOT verified'})${state.backup!.choice ? `: ${state.backup!.choice}` : ''}`,
      plan: () => ({ action: 'find the backup', touches: ['backup store (read)'] }),
    },
    {
      name: 'verify backup file',
      effect: 'own-copies',
      waitingFor: ({ input }) => `downloading and checking the ${input.target} dump`,
      async run(ctx) {
        await preparePostgresRestore({
          backupId: ctx.state.backup!.id,
          target: ctx.input.target,
          recoveryId: ctx.recoveryId,
          from: ctx.state.backup!.source,
        });
      },
      plan: ({ input }) => ({
        action: `download and sha256-check the ${input.target} dump`,
        touches: ['backup store (read)'],
      }),
    },
    {
      name: 'restore tables',
      effect: 'live',
      untouched: 'one transaction',
      waitingFor: ({ input }) => `restoring ${input.tables.join(', ')} in one transaction`,
      async destroys({ input }) {
        const live = await liveTables({ target: input.target, tables: input.tables });
        return live.map((t) => ({
          id: qualified(t),
          description: `live table ${qualified(t)} (moved aside into a kohakku_dr_replaced_* schema)`,
        }));
      },
      async run(ctx, approved) {
        ctx.state.restored = await restorePostgresTables({
          backupId: ctx.state.backup!.id,
          target: ctx.input.target,
          tables: ctx.input.tables,
          recoveryId: ctx.recoveryId,
          replace: approved,
          referencingRows: ctx.input.referencingRows ?? 'refuse',
          from: ctx.state.backup!.source,
        });
      },
      describe: ({ state }) =>
        state
          .restored!.tables.map((t) => `${t.table}: ${t.rows} rows, ${t.entries} archive entries`)
          .join('; ') +
        (state.restored!.movedAsideTo ? `; old tables in ${state.restored!.movedAsideTo}` : ''),
      plan: ({ input }) => ({
        action: `in one transaction: replay ${input.tables.join(', ')} with indexes, constraints, triggers, identities, sequences, dependent views and rules and referencing foreign keys, verify rows against the manifest`,
        touches: input.tables.map((t) => `${input.target}: ${qualified(t)}`),
      }),
    },
  ],
  cleanup: [
    {
      what: 'remove local dump copies',
      async run(ctx) {
        await cleanupPostgresRestore({ recoveryId: ctx.recoveryId, targets: [] });
      },
    },
  ],
  backup: (state) => state.backup && { ...state.backup, verified: state.backup.verified ?? false },
  result: ({ state }) => ({
    ...state.restored!,
    backupId: state.backup!.id,
    backupVerified: state.backup!.verified ?? false,
  }),
};

export async function tableRestore(input?: TableRestoreInput): Promise<TableRestoreResult | RecoveryPlan> {
  return runRecovery(tableRestoreDefinition, input);
}
