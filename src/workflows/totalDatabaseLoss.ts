/**
 * Total database loss — the runbook, in order:
 *   1. restore Postgres from the latest (or a named) backup
 *   2. Controller and Dispatcher reconnect (check health, restart them if they don't)
 *   3. the Monitor rebuilds Redis (re-registers active containers)
 *   4. running containers carry on (nothing to do: their tasks are back in Postgres)
 *
 * All or nothing: every database is restored into a staging copy and verified before any is
 * swapped in, then all are swapped in one transaction, so the databases always come from the
 * same backup — or the live ones stay exactly as they were.
 */
import { proxyActivities } from '@temporalio/workflow';
import { z } from 'zod';
import type { Activities } from '../activities';
import type { GlobalsReport } from '../activities/postgresGlobals';
import type { LiveDatabaseState, StagedRestore, SwapResult } from '../activities/postgresRestore';
import type { PostgresBackupSummary } from '../activities/postgresKit';
import { POSTGRES_TARGETS, type PostgresTarget } from '../domain/targets';
import type { RecoveryEnvelope, RecoveryPlan } from './definitions';
import type { StoreName } from '../domain/stores';
import { backupIdField, fromField, recoveryCommonFields, secondsField } from './engine/input';
import { runRecovery, settleAll, type Phase, type RecoveryDefinition } from './engine/recovery';
import { long, quick } from './options';
import {
  monitorRegistersContainersPhase,
  reconnectOrRestart,
  type Registrations,
  type ServiceReport,
} from './services';

const {
  resolvePostgresBackup,
  checkSwapBlockers,
  liveDatabaseStates,
  cleanupPostgresRestore,
  ensurePostgresGlobals,
  cleanupPostgresGlobals,
} = proxyActivities<Activities>(quick);
const { preparePostgresRestore, restoreIntoStaging, swapInStaging } = proxyActivities<Activities>(long);

export const totalDatabaseLossInput = z.strictObject({
  ...recoveryCommonFields,
  /** A backup id or "latest" (the newest verified backup; the result says which and why). */
  backupId: backupIdField.optional(),
  /** Which backup store to read it from; by default the first that has a verified copy (the result says which). */
  from: fromField.optional(),
  /** Which databases were lost; both by default. */
  targets: z
    .array(z.enum(POSTGRES_TARGETS))
    .min(1)
    .refine((t) => new Set(t).size === t.length, { message: 'targets must be distinct' })
    .optional(),
  /** Same as `confirm` (kept from 0.1). */
  replaceExisting: z.boolean().optional(),
  /** How long the services get to reconnect on their own before they are restarted (60). */
  reconnectDeadlineSeconds: secondsField.optional(),
  /** How long a restarted service gets to become healthy (120). */
  restartDeadlineSeconds: secondsField.optional(),
  /** How long the Monitor gets without progress to register every active container (60). */
  registrationDeadlineSeconds: secondsField.optional(),
});
export type TotalDatabaseLossInput = z.input<typeof totalDatabaseLossInput>;

export interface PostgresRestoreState {
  backup?: PostgresBackupSummary;
  globals?: GlobalsReport;
  staged?: StagedRestore[];
  live?: LiveDatabaseState[];
  swapped?: SwapResult[];
}

interface State extends PostgresRestoreState {
  services?: ServiceReport[];
  registrations?: Registrations;
}

export interface TotalDatabaseLossDetails {
  backupId: string;
  backupCreatedAt: string;
  backupVerified: boolean;
  globals?: GlobalsReport;
  restored: (StagedRestore & { movedAsideTo?: string })[];
  services: ServiceReport[];
  registrations: Registrations;
}

export type TotalDatabaseLossResult = RecoveryEnvelope & TotalDatabaseLossDetails;

/**
 * The Postgres phases, shared with the full-cluster recovery: resolve the backup, recreate
 * missing roles, check the dumps, restore every target into staging, check for blockers, swap
 * all targets in at once.
 */
export function postgresRestorePhases<I, S extends PostgresRestoreState>(options: {
  targets: (input: I) => PostgresTarget[];
  backupId?: (input: I) => string | undefined;
  from?: (input: I) => StoreName | undefined;
  /** Full cluster resolves the set itself. */
  resolve: boolean;
}) {
  const names = (ctx: { input: I }) => options.targets(ctx.input);
  const resolve: Phase<I, S> = {
    name: 'resolve backup',
    effect: 'read',
    waitingFor: (ctx) => `finding backup "${options.backupId?.(ctx.input) ?? 'latest'}"`,
    async run(ctx) {
      ctx.state.backup = await resolvePostgresBackup({
        backupId: options.backupId?.(ctx.input),
        targets: names(ctx),
        from: options.from?.(ctx.input),
      });
    },
    describe: ({ state }) =>
      `backup ${state.backup!.id} (${state.backup!.createdAt}, ${state.backup!.verified ? 'verified' : 'NOT verified'})${state.backup!.choice ? `: ${state.backup!.choice}` : ''}`,
    plan: () => ({ action: 'find the backup', touches: ['backup store (read)'] }),
  };
  const roles: Phase<I, S> = {
    name: 'recreate missing roles',
    effect: 'live',
    undoneByCleanupOnFailure: true,
    changed: ({ state }) => state.globals!.createdRoles.length > 0,
    waitingFor: () => 'creating the roles the backup needs that this server lacks',
    async run(ctx) {
      ctx.state.globals = await ensurePostgresGlobals({
        backupId: ctx.state.backup!.id,
        recoveryId: ctx.recoveryId,
        from: ctx.state.backup!.source,
      });
    },
    describe: ({ state }) =>
      state.globals!.createdRoles.length
        ? `created ${state.globals!.createdRoles.join(', ')}${state.globals!.rolesWithoutPassword.length ? `; without password: ${state.globals!.rolesWithoutPassword.join(', ')}` : ''}`
        : `all ${state.globals!.existingRoles.length} roles exist`,
    plan: () => ({
      action:
        'create the roles and memberships of the backup that this server lacks (existing roles are left alone; removed again if the recovery fails)',
      touches: ['postgres roles (additions only)'],
    }),
  };
  const verifyFiles: Phase<I, S> = {
    name: 'verify backup files',
    effect: 'own-copies',
    waitingFor: (ctx) => `downloading and checking sha256 of ${names(ctx).length} dump(s)`,
    async run(ctx) {
      await settleAll(
        names(ctx).map((target) =>
          preparePostgresRestore({
            backupId: ctx.state.backup!.id,
            target,
            recoveryId: ctx.recoveryId,
            from: ctx.state.backup!.source,
          }),
        ),
      );
    },
    plan: (ctx) => ({
      action: `download and sha256-check the dumps of ${names(ctx).join(', ')}`,
      touches: ['backup store (read)', 'worker scratch directory'],
    }),
  };
  const staging: Phase<I, S> = {
    name: 'restore into staging',
    effect: 'own-copies',
    waitingFor: () => 'pg_restore into staging databases, then comparing every table with the manifest',
    async run(ctx) {
      ctx.state.staged = await settleAll(
        names(ctx).map((target) =>
          restoreIntoStaging({
            backupId: ctx.state.backup!.id,
            target,
            recoveryId: ctx.recoveryId,
            from: ctx.state.backup!.source,
          }),
        ),
      );
    },
    describe: ({ state }) =>
      state
        .staged!.map((r) => `${r.database}: ${r.tablesVerified} tables, ${r.rowsVerified} rows verified`)
        .join('; '),
    plan: (ctx) => ({
      action: `pg_restore each dump into a staging database and compare every table with the manifest; live databases are not touched`,
      touches: names(ctx).map((t) => `staging database of ${t}`),
    }),
  };
  const blockers: Phase<I, S> = {
    name: 'check swap blockers',
    effect: 'read',
    waitingFor: () => 'prepared transactions, sessions that cannot be ended, privileges',
    async run(ctx) {
      ctx.state.live = await checkSwapBlockers({ targets: names(ctx), recoveryId: ctx.recoveryId });
    },
    describe: () => 'none',
    plan: () => ({
      action: 'check for prepared transactions, unkillable sessions, missing privileges',
      touches: [],
    }),
  };
  const swap: Phase<I, S> = {
    name: 'swap databases in',
    effect: 'live',
    waitingFor: (ctx) => `renaming ${names(ctx).join(' and ')} into place in one transaction`,
    async destroys(ctx) {
      const live = await liveDatabaseStates({ targets: names(ctx) });
      return live
        .filter((l) => l.exists)
        .map((l) => ({
          id: l.target,
          description: `live database ${l.database} (moved aside, not dropped)`,
        }));
    },
    untouched: {
      snapshot: (ctx) => liveDatabaseStates({ targets: names(ctx) }),
      async check(ctx, before) {
        const after = await liveDatabaseStates({ targets: names(ctx) });
        const was = before as LiveDatabaseState[];
        const differs = after.filter((a) => {
          const b = was.find((x) => x.target === a.target);
          return !b || b.exists !== a.exists || b.oid !== a.oid || b.allowConnections !== a.allowConnections;
        });
        return differs.length
          ? {
              same: false,
              detail: differs
                .map(
                  (d) =>
                    `${d.database}: ${d.exists ? `oid ${d.oid}, connections ${d.allowConnections ? 'allowed' : 'REFUSED'}` : 'missing'}`,
                )
                .join('; '),
            }
          : {
              same: true,
              detail: `${after.map((a) => a.database).join(', ')}: same database, connections as before`,
            };
      },
    },
    async run(ctx, approved) {
      ctx.state.swapped = await swapInStaging({
        backupId: ctx.state.backup!.id,
        targets: names(ctx),
        recoveryId: ctx.recoveryId,
        replace: approved as PostgresTarget[],
        from: ctx.state.backup!.source,
      });
    },
    describe: ({ state }) =>
      state
        .swapped!.map((s) => `${s.database}${s.movedAsideTo ? ` (old one moved to ${s.movedAsideTo})` : ''}`)
        .join(', '),
    plan: (ctx) => ({
      action: `rename every staging database into place in one transaction`,
      touches: names(ctx).map((t) => `postgres database of ${t}`),
    }),
  };
  return {
    resolve,
    roles,
    verifyFiles,
    staging,
    blockers,
    swap,
    all: [...(options.resolve ? [resolve] : []), roles, verifyFiles, staging, blockers, swap],
  };
}

/** The Postgres cleanup steps: staging copies, datallowconn, created roles. */
export function postgresCleanup<I, S extends PostgresRestoreState>(targets: (input: I) => PostgresTarget[]) {
  return [
    {
      what: 'drop this run’s staging databases and local dump copies',
      async run(ctx: { input: I; recoveryId: string }) {
        const r = await cleanupPostgresRestore({ recoveryId: ctx.recoveryId, targets: targets(ctx.input) });
        return r.droppedStaging.length ? `dropped ${r.droppedStaging.join(', ')}` : undefined;
      },
    },
    {
      what: 'remove roles this run created, if it failed',
      async run(ctx: { state: S; recoveryId: string }, outcome: 'completed' | 'failed') {
        if (!ctx.state.backup) return;
        const r = await cleanupPostgresGlobals({
          recoveryId: ctx.recoveryId,
          backupId: ctx.state.backup.id,
          outcome,
          from: ctx.state.backup.source,
        });
        return r.droppedRoles.length ? `dropped roles ${r.droppedRoles.join(', ')}` : undefined;
      },
    },
  ];
}

const targetsOf = (input: z.infer<typeof totalDatabaseLossInput>): PostgresTarget[] =>
  input.targets ?? [...POSTGRES_TARGETS];

const pg = postgresRestorePhases<z.infer<typeof totalDatabaseLossInput>, State>({
  targets: targetsOf,
  backupId: (input) => input.backupId,
  from: (input) => input.from,
  resolve: true,
});

const services: Phase<z.infer<typeof totalDatabaseLossInput>, State> = {
  name: 'controller and dispatcher reconnect',
  effect: 'live',
  waitingFor: ({ input }) =>
    `controller and dispatcher healthy (restarted after ${input.reconnectDeadlineSeconds ?? 60} s)`,
  async run(ctx) {
    const { input } = ctx;
    ctx.state.services = await settleAll(
      (['controller', 'dispatcher'] as const).map((s) =>
        reconnectOrRestart(s, input.reconnectDeadlineSeconds ?? 60, input.restartDeadlineSeconds ?? 120),
      ),
    );
  },
  describe: ({ state }) =>
    state.services!.map((r) => `${r.service} ${r.restarted ? 'restarted' : 'reconnected'}`).join(', '),
  plan: () => ({
    action: 'health checks; restart through the service adapter if they do not reconnect',
    touches: ['controller', 'dispatcher'],
  }),
};

export const totalDatabaseLossDefinition: RecoveryDefinition<
  typeof totalDatabaseLossInput,
  State,
  TotalDatabaseLossDetails
> = {
  procedure: 'total-database-loss',
  title: 'Total database loss',
  input: totalDatabaseLossInput,
  confirmedInAdvance: (input) => input.confirm === true || input.replaceExisting === true,
  locks: () => ['postgres'],
  // The Monitor re-registers containers in Redis afterwards.
  endpoints: () => ['postgres', 'redis', 'backup-store', 'service-adapter'],
  initialState: () => ({}),
  phases: [
    ...pg.all,
    services,
    monitorRegistersContainersPhase({
      name: 'monitor rebuilds redis',
      deadlines: (input) => ({
        registrationSeconds: input.registrationDeadlineSeconds ?? 60,
        restartSeconds: input.restartDeadlineSeconds ?? 120,
      }),
    }),
  ],
  cleanup: postgresCleanup(targetsOf),
  backup: (state) => state.backup && { ...state.backup, verified: state.backup.verified ?? false },
  result: ({ state }) => ({
    backupId: state.backup!.id,
    backupCreatedAt: state.backup!.createdAt,
    backupVerified: state.backup!.verified ?? false,
    globals: state.globals,
    restored: state.staged!.map((s) => ({
      ...s,
      movedAsideTo: state.swapped?.find((w) => w.target === s.target)?.movedAsideTo,
    })),
    services: state.services!,
    registrations: state.registrations!,
  }),
};

export async function totalDatabaseLoss(
  input?: TotalDatabaseLossInput,
): Promise<TotalDatabaseLossResult | RecoveryPlan> {
  return runRecovery(totalDatabaseLossDefinition, input);
}
