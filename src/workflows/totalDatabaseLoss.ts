/**
 * Total database loss — the runbook, in order:
 *   1. restore Postgres from the latest (or a named) backup
 *   2. Controller and Dispatcher reconnect (check health, restart them if they don't)
 *   3. the Monitor rebuilds Redis (re-registers active containers)
 *   4. running containers carry on (nothing to do: their tasks are back in Postgres)
 * and a cleanup phase that always runs.
 */
import { CancellationScope, proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { RestoreResult } from '../activities/postgres';
import type { PostgresTarget } from '../domain/targets';
import type { RegistrationReport } from '../activities/redis';
import type { HealthReport } from '../activities/services';
import { ErrorType, fail } from '../domain/errors';
import { long, quick } from './options';
import { Procedure, surfaceFailure, type StepProgress } from './procedure';
import { monitorRegistersContainers, reconnectOrRestart } from './services';
import {
  startRecovery,
  measure,
  type Measurements,
  type RecoveryCommonInput,
  type RecoveryPlan,
} from './recovery';

export interface TotalDatabaseLossInput extends RecoveryCommonInput {
  /** A backup id (YYYYMMDDTHHMMSSZ) or "latest" (the default). */
  backupId?: string;
  /** Which databases were lost; both by default. */
  targets?: PostgresTarget[];
  /**
   * A target database that still exists is moved aside and replaced only when this (or
   * `confirm`) is true, or once the `approve` signal arrives; until then the workflow waits.
   */
  replaceExisting?: boolean;
  /** How long the services get to reconnect on their own before they are restarted. */
  reconnectDeadlineSeconds?: number;
  /** How long a restarted service gets to become healthy. */
  restartDeadlineSeconds?: number;
  /** How long the Monitor gets to register every active container (again after its restart). */
  registrationDeadlineSeconds?: number;
}

export interface TotalDatabaseLossResult {
  procedure: 'total-database-loss';
  recoveryId: string;
  backupId: string;
  backupCreatedAt: string;
  /** Whether the backup used belongs to a set that verification proved restorable. */
  backupVerified: boolean;
  restored: RestoreResult[];
  services: (HealthReport & { restarted: boolean })[];
  registrations: RegistrationReport & { monitorRestarted: boolean };
  steps: StepProgress[];
  startedAt: string;
  completedAt: string;
  durationMs: number;
  measurements: Measurements;
}

const STEPS = [
  'resolve backup',
  'verify backup files',
  'restore databases',
  'controller and dispatcher reconnect',
  'monitor rebuilds redis',
  'cleanup',
] as const;

const { resolvePostgresBackup, liveDatabases, cleanupPostgresRestore, lockBackup, unlockBackup } =
  proxyActivities<Activities>(quick);
const { preparePostgresRestore, restorePostgresDatabase } = proxyActivities<Activities>(long);

function validate(
  input: TotalDatabaseLossInput,
): Required<Omit<TotalDatabaseLossInput, 'backupId'>> & { backupId: string } {
  const targets = input.targets ?? ['controller', 'dispatcher'];
  const known: PostgresTarget[] = ['controller', 'dispatcher'];
  if (
    !Array.isArray(targets) ||
    targets.length === 0 ||
    new Set(targets).size !== targets.length ||
    targets.some((t) => !known.includes(t))
  ) {
    throw fail(
      ErrorType.InvalidInput,
      'targets must be a non-empty list of distinct targets: controller, dispatcher',
    );
  }
  const seconds = (name: string, value: number | undefined, dflt: number) => {
    const v = value ?? dflt;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || v > 86400) {
      throw fail(
        ErrorType.InvalidInput,
        `${name} must be a number of seconds between 1 and 86400, got ${JSON.stringify(value)}`,
      );
    }
    return v;
  };
  const backupId = input.backupId ?? 'latest';
  if (backupId !== 'latest' && !/^\d{8}T\d{6}Z$/.test(backupId)) {
    throw fail(
      ErrorType.InvalidInput,
      `"${backupId}" is not a backup id (expected YYYYMMDDTHHMMSSZ or "latest"; kohakku-dr backups lists them)`,
    );
  }
  return {
    backupId,
    targets,
    replaceExisting: input.replaceExisting === true || input.confirm === true,
    plan: input.plan === true,
    confirm: input.confirm === true,
    incidentAt: input.incidentAt ?? '',
    reconnectDeadlineSeconds: seconds('reconnectDeadlineSeconds', input.reconnectDeadlineSeconds, 60),
    restartDeadlineSeconds: seconds('restartDeadlineSeconds', input.restartDeadlineSeconds, 120),
    registrationDeadlineSeconds: seconds(
      'registrationDeadlineSeconds',
      input.registrationDeadlineSeconds,
      60,
    ),
  };
}

export async function totalDatabaseLoss(
  rawInput: TotalDatabaseLossInput = {},
): Promise<TotalDatabaseLossResult | RecoveryPlan> {
  const { procedure, approve, recoveryId, started } = startRecovery(
    'Total database loss',
    STEPS,
    rawInput.replaceExisting === true || rawInput.confirm === true,
  );
  let input: ReturnType<typeof validate> | undefined;
  let lockedBackup: string | undefined;
  try {
    input = validate(rawInput);
    const { targets } = input;

    const backup = await procedure.step(
      'resolve backup',
      `finding backup "${input.backupId}" and checking which databases exist`,
      async () => {
        const summary = await resolvePostgresBackup({ backupId: input!.backupId, targets });
        const live = await liveDatabases({ targets });
        if (input!.plan) return { summary, live };
        // Retention must not prune the backup while this restore reads it; released in cleanup.
        await lockBackup({ backupId: summary.id, holder: recoveryId });
        lockedBackup = summary.id;
        if (live.length > 0)
          await approve(`move aside and replace the live database(s) of ${live.join(', ')}`);
        return { summary, live };
      },
      ({ summary, live }) =>
        `backup ${summary.id} (${summary.createdAt}, ${summary.verified ? 'verified' : 'NOT verified'})${live.length ? `; will move aside: ${live.join(', ')}` : ''}`,
    );
    const backupId = backup.summary.id;
    if (input.plan) {
      procedure.finish('completed');
      return planOf(backup.summary, backup.live, targets);
    }

    await procedure.step(
      'verify backup files',
      `downloading and checking sha256 of ${targets.length} dump(s)`,
      () => Promise.all(targets.map((target) => preparePostgresRestore({ backupId, target, recoveryId }))),
      (prepared) => prepared.map((p) => `${p.database}: ${p.size} B, ${p.tocEntries} TOC entries`).join('; '),
    );

    const restored = await procedure.step(
      'restore databases',
      `pg_restore into staging databases, verify against the manifest, swap in`,
      () =>
        Promise.all(
          targets.map((target) =>
            restorePostgresDatabase({
              backupId,
              target,
              recoveryId,
              // Reached only when nothing is live, or after the approval above.
              replaceExisting: true,
            }),
          ),
        ),
      (results) =>
        results
          .map((r) => `${r.database}: ${r.tablesVerified} tables, ${r.rowsVerified} rows verified`)
          .join('; '),
    );

    const services = await procedure.step(
      'controller and dispatcher reconnect',
      `controller and dispatcher healthy (restart after ${input.reconnectDeadlineSeconds} s)`,
      () =>
        Promise.all(
          (['controller', 'dispatcher'] as const).map((s) =>
            reconnectOrRestart(s, input!.reconnectDeadlineSeconds, input!.restartDeadlineSeconds),
          ),
        ),
      (reports) => reports.map((r) => `${r.service} ${r.restarted ? 'restarted' : 'reconnected'}`).join(', '),
    );

    const registrations = await monitorRegistersContainers(
      procedure,
      'monitor rebuilds redis',
      input.registrationDeadlineSeconds,
      input.restartDeadlineSeconds,
    );

    await runCleanup(procedure, recoveryId, targets, lockedBackup);
    procedure.finish('completed');
    return {
      procedure: 'total-database-loss',
      recoveryId,
      backupId,
      backupCreatedAt: backup.summary.createdAt,
      backupVerified: backup.summary.verified ?? false,
      restored,
      services,
      registrations,
      steps: procedure.progress.steps,
      startedAt: new Date(started).toISOString(),
      completedAt: new Date(Date.now()).toISOString(),
      durationMs: Date.now() - started,
      measurements: measure(started, input.incidentAt || undefined, backup.summary.createdAt),
    };
  } catch (err) {
    procedure.finish('cleaning-up', (surfaceFailure(err) as Error).message);
    // The cleanup phase always runs, also on failure and cancellation.
    await CancellationScope.nonCancellable(() =>
      runCleanup(procedure, recoveryId, input?.targets ?? ['controller', 'dispatcher'], lockedBackup),
    );
    const failure = surfaceFailure(err);
    procedure.finish('failed', (failure as Error).message);
    throw failure;
  }
}

async function runCleanup(
  procedure: Procedure,
  recoveryId: string,
  targets: PostgresTarget[],
  lockedBackup: string | undefined,
): Promise<void> {
  if (procedure.progress.steps.find((s) => s.name === 'cleanup')?.status === 'done') return;
  await procedure.step(
    'cleanup',
    'dropping this recovery’s staging databases and local dump copies',
    async () => {
      const result = await cleanupPostgresRestore({ recoveryId, targets });
      if (lockedBackup) await unlockBackup({ backupId: lockedBackup, holder: recoveryId });
      return result;
    },
    (r) => (r.droppedStaging.length ? `dropped ${r.droppedStaging.join(', ')}` : 'nothing left behind'),
  );
}

function planOf(
  summary: { id: string; createdAt: string; verified?: boolean },
  live: PostgresTarget[],
  targets: PostgresTarget[],
): RecoveryPlan {
  return {
    procedure: 'total-database-loss',
    plan: true,
    backupId: summary.id,
    backupCreatedAt: summary.createdAt,
    backupVerified: summary.verified ?? false,
    steps: [
      {
        step: 'verify backup files',
        action: `download and sha256-check the dumps of ${targets.join(', ')}`,
        touches: ['backup store (read)', 'worker scratch directory'],
        destructive: false,
      },
      {
        step: 'restore databases',
        action: `pg_restore into staging databases, compare with the manifest, rename into place${live.length ? `; the live ${live.join(', ')} database(s) are moved aside (needs approval)` : ''}`,
        touches: targets.map((t) => `postgres database of ${t}`),
        destructive: live.length > 0,
      },
      {
        step: 'controller and dispatcher reconnect',
        action: 'health checks; restart through the service adapter if they do not reconnect',
        touches: ['controller', 'dispatcher'],
        destructive: false,
      },
      {
        step: 'monitor rebuilds redis',
        action: 'wait for the Monitor to register every active container; restart it if not',
        touches: ['monitor', 'redis registrations'],
        destructive: false,
      },
      {
        step: 'cleanup',
        action: 'drop this run’s staging databases and local dump copies',
        touches: ['staging databases'],
        destructive: false,
      },
    ],
  };
}
