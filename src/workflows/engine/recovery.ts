/**
 * The recovery engine. A recovery is declared — an input schema, an ordered list of phases
 * (what each waits for, runs, describes, would do in plan mode, and what it would replace) and
 * a cleanup phase — and this one engine runs every recovery the same way (after Kanister's
 * phases + DeferPhase, and the samples' dsl-interpreter). It owns, in one place:
 *
 * - strict input validation before anything else (InvalidInput naming the field);
 * - progress and the UI's current details;
 * - plan mode, rendered from the same phases, so plan and progress cannot drift;
 * - the approval gate, evaluated immediately before each destructive phase against what is live
 *   at that moment (the phase's `destroys` look-up), and passed to the phase as what it may
 *   replace — so something that appeared later is refused, not replaced;
 * - the target locks (one recovery per target, however it was started) and the backup's lease
 *   against retention, renewed while the recovery runs;
 * - the cleanup phase, which always runs and whose failures are warnings that never replace the
 *   original error nor turn a success into a failure;
 * - one result envelope, and a failure message that says truthfully whether live data was
 *   changed — "untouched" only when the engine knows it.
 */
import {
  ApplicationFailure,
  CancellationScope,
  ParentClosePolicy,
  condition,
  isCancellation,
  patched,
  proxyActivities,
  setHandler,
  startChild,
  upsertMemo,
  workflowInfo,
  type ChildWorkflowHandle,
} from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import type { z } from 'zod';
import type { Activities } from '../../activities';
import { ENDPOINTS, type Endpoint } from '../../domain/endpoints';
import { ErrorType, fail } from '../../domain/errors';
import type { StoreName } from '../../domain/stores';
import {
  approveSignal,
  releaseLockSignal,
  type Approval,
  type ApprovalRecord,
  type BackupChoice,
  type Measurements,
  type PlanStep,
  type RecoveryEnvelope,
  type RecoveryPlan,
} from '../definitions';
import type { Notification } from '../../domain/notifications';
import { tenths, type Report } from '../../domain/reports';
import { notifyBeside } from '../notify';
import { preflight, quick } from '../options';
import { recordReport } from '../reporting';
import { targetLock } from '../targetLock';
import { parseInput } from './input';
import { ProgressTracker, rootMessage, surfaceFailure } from './progress';

/** Workflow-code generation, recorded in each run's memo (see README, "Upgrading"). */
export const WORKFLOW_GENERATION = 3;

/** What a recovery can hold a lock on. */
export type LockTarget = 'postgres' | 'redis' | 'objects';

export const lockWorkflowId = (target: LockTarget) => `kohakku-dr-lock-${target}`;

/** How a phase touches data: looks only; changes only this recovery's own copies; changes live data. */
export type Effect = 'read' | 'own-copies' | 'live';

/** One thing a destructive phase would replace, as found live right before it runs. */
export interface Replacement {
  /** Passed back to the phase as approved (a target, a qualified table name, a count…). */
  id: string;
  /** For the operator: what is replaced and where it goes. */
  description: string;
}

export interface PhaseContext<I, S> {
  readonly input: I;
  /** Filled by the phases as they run; the result is built from it. */
  readonly state: S;
  readonly recoveryId: string;
  readonly planMode: boolean;
  /** Replaces the running phase's detail line. */
  note(detail: string): void;
  warn(warning: string): void;
}

export interface Phase<I, S> {
  readonly name: string;
  readonly effect: Effect;
  /**
   * A phase added after recoveries were already in flight: the `patched()` id it runs under. A
   * run that started before (replaying an older history) skips it, so its history still replays.
   */
  readonly patch?: string;
  /** What the phase waits for, in words (progress `waitingFor`). */
  waitingFor(ctx: PhaseContext<I, S>): string;
  /** A reason to skip the phase this time, or undefined to run it. */
  skip?(ctx: PhaseContext<I, S>): string | undefined;
  /** In plan mode, read phases run for real (they only look); set false to render them instead. */
  runsInPlan?: boolean;
  /**
   * For a destructive phase: what it would replace if it ran now (a read-only look-up). The
   * engine asks right before running it, asks for approval when the list is not empty, and
   * passes the approved ids to `run`.
   */
  destroys?(ctx: PhaseContext<I, S>): Promise<Replacement[]>;
  run(ctx: PhaseContext<I, S>, approved: string[]): Promise<void>;
  /** The detail line once done. */
  describe?(ctx: PhaseContext<I, S>): string;
  /** What it would do, for plan mode. */
  plan(ctx: PhaseContext<I, S>): { action: string; touches: string[] };
  /**
   * For a live phase: how the engine checks after a failure that nothing live changed. Either
   * a snapshot compared after the failure, or 'one transaction' for a phase whose whole change
   * is a single database transaction that either commits or rolls back.
   */
  untouched?:
    | 'one transaction'
    | {
        snapshot(ctx: PhaseContext<I, S>): Promise<unknown>;
        check(ctx: PhaseContext<I, S>, before: unknown): Promise<{ same: boolean; detail: string }>;
      };
  /** A live phase whose change the cleanup takes back when the recovery fails (roles it created). */
  undoneByCleanupOnFailure?: boolean;
  /** For a live phase that may turn out to change nothing (every role existed): whether it changed something. */
  changed?(ctx: PhaseContext<I, S>): boolean;
}

/** Phases that run side by side: each inner list in order, the lists concurrently. */
export interface ParallelPhases<I, S> {
  readonly parallel: readonly (readonly Phase<I, S>[])[];
}

export type PhaseEntry<I, S> = Phase<I, S> | ParallelPhases<I, S>;

export interface CleanupStep<I, S> {
  readonly what: string;
  run(ctx: PhaseContext<I, S>, outcome: 'completed' | 'failed'): Promise<string | void>;
}

export interface RecoveryDefinition<Schema extends z.ZodObject, S, D> {
  /** Machine name: `total-database-loss`. */
  readonly procedure: string;
  /** For people: `Total database loss`. */
  readonly title: string;
  readonly input: Schema;
  readonly locks: (input: z.infer<Schema>) => LockTarget[];
  /** Destructive phases need no approval signal when this says so (default: `confirm: true`). */
  confirmedInAdvance?(input: z.infer<Schema>): boolean;
  initialState(input: z.infer<Schema>): S;
  readonly phases: readonly PhaseEntry<z.infer<Schema>, S>[];
  readonly cleanup: readonly CleanupStep<z.infer<Schema>, S>[];
  /** The backup in use once known; it is locked against retention from then on. */
  backup(state: S): BackupChoice | undefined;
  /** The recovery's own details, beside the envelope. */
  result(ctx: PhaseContext<z.infer<Schema>, S>): D;
  /**
   * The endpoints that must answer when the recovery starts — not the ones it is about to bring
   * back. The engine checks them in its first step, PREFLIGHT_STEP, before anything is read or
   * changed (plan mode too), and fails at once naming any that does not answer and why.
   */
  readonly endpoints?: (input: z.infer<Schema>) => Endpoint[];
}

export const CLEANUP_STEP = 'cleanup';
export const PREFLIGHT_STEP = 'preflight';

/** Recoveries that started before the preflight step existed replay without it. */
export const PREFLIGHT_PATCH = 'kohakku-dr-preflight';

/** Seconds a backup lock lasts unless renewed; renewed at every phase and hourly while waiting. */
export const BACKUP_LEASE_SECONDS = 6 * 3600;

const { lockBackup, unlockBackup } = proxyActivities<Activities>(quick);
const { checkEndpoints } = proxyActivities<Activities>(preflight);

/**
 * The engine's first step when a definition lists its endpoints; `onPassed` hears its report
 * (whether the worker sends notifications, too).
 */
function preflightPhase<I extends { from?: StoreName }, S>(
  endpoints: (input: I) => Endpoint[],
  onPassed: (report: { notifications?: boolean }) => void,
): Phase<I, S> {
  let passed = '';
  return {
    name: PREFLIGHT_STEP,
    effect: 'read',
    patch: PREFLIGHT_PATCH,
    waitingFor: ({ input }) =>
      `${endpoints(input)
        .map((e) => ENDPOINTS[e])
        .join(', ')} answering`,
    async run({ input, warn }) {
      const report = await checkEndpoints({ endpoints: endpoints(input), from: input.from });
      onPassed(report);
      for (const w of report.warnings) warn(`preflight: ${w}`);
      passed = report.checks
        .filter((c) => c.ok)
        .map((c) => `${ENDPOINTS[c.endpoint]} ${c.address} (${c.ms} ms)`)
        .join('; ');
    },
    describe: () => `answered: ${passed}`,
    plan: ({ input }) => ({
      action: `check that ${endpoints(input)
        .map((e) => ENDPOINTS[e])
        .join(', ')} answer`,
      touches: [],
    }),
  };
}

function phasesOf<I, S>(entries: readonly PhaseEntry<I, S>[]): Phase<I, S>[] {
  return entries.flatMap((e) => ('parallel' in e ? e.parallel.flat() : [e]));
}

/**
 * Runs a declared recovery. Returns its result (envelope + details), or its plan in plan mode;
 * throws the original error, with a statement of what happened to live data.
 */
export async function runRecovery<Schema extends z.ZodObject, S, D>(
  definition: RecoveryDefinition<Schema, S, D>,
  rawInput: unknown,
): Promise<(RecoveryEnvelope & D) | RecoveryPlan> {
  type I = z.infer<Schema>;
  // Notifications go out when the preflight says the worker has a webhook: a run recorded before
  // 0.3.6 has no such answer in its history, and replays sending none.
  let notifications = false;
  // The preflight runs before the locks are taken and the phases run; plan mode runs it too.
  const preflightStep = definition.endpoints
    ? preflightPhase<I, S>(definition.endpoints, (report) => (notifications = report.notifications === true))
    : undefined;
  let pastPreflight = !preflightStep;
  const phases = [...(preflightStep ? [preflightStep] : []), ...phasesOf(definition.phases)];
  const tracker = new ProgressTracker(definition.title, [...phases.map((p) => p.name), CLEANUP_STEP]);
  const info = workflowInfo();
  const notify = async (n: Omit<Notification, 'workflowId' | 'runId'>) => {
    if (!notifications) return;
    const warning = await notifyBeside(n);
    if (warning) tracker.warn(warning);
  };
  /** The run's report (src/workflows/reporting.ts); where it went, or undefined. */
  const report = (r: Pick<Report, 'outcome' | 'liveData' | 'measurements' | 'backup' | 'error'>) =>
    recordReport(
      {
        kind: 'recovery',
        procedure: definition.procedure,
        title: definition.title,
        startedAt: new Date(started).toISOString(),
        steps: tracker.progress.steps,
        approvals,
        warnings: tracker.progress.warnings,
        ...r,
      },
      (w) => tracker.warn(w),
    );
  const recoveryId = `${info.workflowId}/${info.runId}`;
  const started = Date.now();
  upsertMemo({ kohakkuDr: { generation: WORKFLOW_GENERATION, procedure: definition.procedure } });

  // Approvals: a destructive phase raises a request; the signal grants the request pending now.
  let pending: { step: string; replaces: string[]; granted?: Approval } | undefined;
  const approvals: ApprovalRecord[] = [];
  /** Time spent waiting for approvals, reported beside the RTO. */
  let approvalWaitMs = 0;
  setHandler(approveSignal, (approval) => {
    if (pending && !pending.granted) pending.granted = approval ?? {};
    else
      tracker.warn(
        `an approval${approval?.by ? ` by ${approval.by}` : ''} arrived while no step was waiting for one: ignored (approvals apply to what is live when a step asks)`,
      );
  });

  let input: I | undefined;
  let state: S | undefined;
  let current: string | undefined;
  const ctxFor = (planMode: boolean): PhaseContext<I, S> => ({
    get input() {
      return input!;
    },
    get state() {
      return state!;
    },
    recoveryId,
    planMode,
    note: (detail) => current && tracker.note(current, detail),
    warn: (w) => tracker.warn(w),
  });

  // Locks held by this run.
  const lockHandles: ChildWorkflowHandle<typeof targetLock>[] = [];
  let lockedBackup: BackupChoice | undefined;
  const renewBackupLease = async () => {
    const backup = state ? definition.backup(state) : undefined;
    if (!backup) return;
    await lockBackup({
      backupId: backup.id,
      holder: recoveryId,
      leaseSeconds: BACKUP_LEASE_SECONDS,
      from: backup.source,
    });
    lockedBackup = backup;
  };

  // What live data has seen, for a truthful failure message.
  const liveChanges: string[] = [];
  /** Live changes the cleanup takes back when the recovery fails. */
  const undoable: string[] = [];
  let liveStatement: string | undefined;

  const runPhase = async (phase: Phase<I, S>, ctx: PhaseContext<I, S>): Promise<void> => {
    if (phase.patch && !patched(phase.patch)) {
      tracker.skip(phase.name, 'added by a later kohakku-dr; this run started before it');
      return;
    }
    const skip = phase.skip?.(ctx);
    if (skip) {
      tracker.skip(phase.name, skip);
      return;
    }
    await renewBackupLease();
    let approved: string[] = [];
    if (phase.destroys) {
      const replaces = await phase.destroys(ctx);
      if (replaces.length > 0) {
        approved = replaces.map((r) => r.id);
        const what = replaces.map((r) => r.description);
        let granted: Approval;
        if (definition.confirmedInAdvance ? definition.confirmedInAdvance(input!) : input!.confirm === true) {
          granted = { note: 'confirm: true in the input' };
        } else {
          pending = { step: phase.name, replaces: what };
          tracker.progress.awaitingApproval = { step: phase.name, replaces: what };
          tracker.waiting(
            `approval to ${phase.name}, replacing: ${what.join('; ')} — send the "approve" signal (kohakku-dr approve ${info.workflowId}), or cancel to leave everything as it is`,
          );
          await notify({
            event: 'approval-waiting',
            title: `${definition.title} waits for approval to ${phase.name}`,
            lines: [
              `It would replace: ${what.join('; ')}`,
              `Approve: \`kohakku-dr approve ${info.workflowId}\` (or \`temporal workflow signal --workflow-id ${info.workflowId} --name approve --input '{"by":"you"}'\`)`,
              `Leave everything as it is: \`kohakku-dr cancel ${info.workflowId}\``,
            ],
          });
          // Renew the backup's lease while the operator decides.
          const askedAt = Date.now();
          while (!(await condition(() => pending?.granted !== undefined, '1h'))) await renewBackupLease();
          approvalWaitMs += Date.now() - askedAt;
          granted = pending.granted!;
          pending = undefined;
          tracker.progress.awaitingApproval = undefined;
          tracker.waiting(undefined);
        }
        approvals.push({
          step: phase.name,
          replaces: what,
          by: granted.by,
          note: granted.note,
          at: new Date(Date.now()).toISOString(),
        });
      }
    }
    const before =
      phase.effect === 'live' && phase.untouched && phase.untouched !== 'one transaction'
        ? await phase.untouched.snapshot(ctx)
        : undefined;
    current = phase.name;
    const t0 = tracker.start(phase.name, phase.waitingFor(ctx));
    try {
      await phase.run(ctx, approved);
    } catch (err) {
      tracker.end(phase.name, t0, 'failed', rootMessage(err));
      if (phase.effect === 'live' && !liveStatement) {
        liveStatement = await statementAfterFailure(phase, ctx, before, err);
      }
      throw err;
    }
    const detail = phase.describe?.(ctx);
    tracker.end(phase.name, t0, 'done', detail);
    if (phase.effect === 'live' && phase.changed?.(ctx) !== false) {
      (phase.undoneByCleanupOnFailure ? undoable : liveChanges).push(
        `${phase.name}${detail ? ` (${detail})` : ''}`,
      );
    }
  };

  const runEntries = async (entries: readonly PhaseEntry<I, S>[], ctx: PhaseContext<I, S>) => {
    for (const entry of entries) {
      if ('parallel' in entry) {
        // Every branch runs to its end before the next phase (or the cleanup) starts.
        await settleAll(
          entry.parallel.map(async (branch) => {
            for (const phase of branch) await runPhase(phase, ctx);
          }),
        );
      } else {
        await runPhase(entry, ctx);
      }
    }
  };

  try {
    input = parseInput(definition.input, rawInput, definition.procedure);
    state = definition.initialState(input);

    if (input.plan === true) {
      const plan = await renderPlan(definition, phases, ctxFor(true), tracker);
      tracker.skip(CLEANUP_STEP, 'plan mode: nothing to clean up');
      tracker.finish('completed');
      return plan;
    }

    if (preflightStep) await runPhase(preflightStep, ctxFor(false));
    pastPreflight = true;

    for (const target of definition.locks(input)) {
      try {
        lockHandles.push(
          await startChild(targetLock, {
            workflowId: lockWorkflowId(target),
            args: [
              { holderWorkflowId: info.workflowId, holderRunId: info.runId, procedure: definition.procedure },
            ],
            parentClosePolicy: ParentClosePolicy.TERMINATE,
          }),
        );
      } catch (err) {
        if (err instanceof WorkflowExecutionAlreadyStartedError) {
          throw fail(
            ErrorType.AlreadyRunning,
            `another recovery holds the ${target} target (lock workflow ${lockWorkflowId(target)}; \`temporal workflow describe --workflow-id ${lockWorkflowId(target)}\` names it as the parent). Let it finish or cancel it, then start this one again`,
          );
        }
        throw err;
      }
    }

    await runEntries(definition.phases, ctxFor(false));
  } catch (err) {
    const failure = surfaceFailure(err);
    let statement = describeLiveData(
      liveChanges,
      undoable,
      liveStatement,
      input !== undefined && state !== undefined,
    );
    tracker.finish('cleaning-up', `${(failure as Error).message} — ${statement}`);
    const cleanupReport = await CancellationScope.nonCancellable(() =>
      cleanUp(
        definition,
        ctxFor(false),
        tracker,
        'failed',
        lockHandles,
        lockedBackup,
        recoveryId,
        // Nothing to clean up when the preflight stopped it: no phase had run.
        state !== undefined && pastPreflight,
      ),
    );
    // What the cleanup did is part of the truth about live data once something live had changed.
    if (undoable.length || liveChanges.length || liveStatement) statement += ` — cleanup: ${cleanupReport}`;
    tracker.finish('failed', `${(failure as Error).message} — ${statement}`);
    // No report for input refused, or endpoints that did not answer, before anything ran: the
    // operator who started it is told at once, and a report to a backup store that does not
    // answer would only hold the failure back.
    if (input !== undefined && state !== undefined && pastPreflight)
      await report({
        outcome: isCancellation(err) ? 'cancelled' : 'failed',
        liveData: statement,
        backup: definition.backup(state),
        error: {
          ...(failure instanceof ApplicationFailure && failure.type ? { type: failure.type } : {}),
          message: (failure as Error).message,
        },
      });
    await notify({
      event: 'recovery-failed',
      title: `${definition.title} ${isCancellation(err) ? 'was cancelled' : 'failed'}`,
      lines: [`${(failure as Error).message}`, `Live data: ${statement}`],
    });
    if (isCancellation(err)) throw err;
    if (failure instanceof ApplicationFailure) {
      throw ApplicationFailure.create({
        type: failure.type ?? undefined,
        message: `${failure.message} — ${statement}`,
        nonRetryable: true,
        details: [
          {
            liveData: statement,
            warnings: tracker.progress.warnings,
            details: failure.details ?? [],
          },
        ],
        cause: failure.cause,
      });
    }
    throw failure;
  }

  await CancellationScope.nonCancellable(() =>
    cleanUp(definition, ctxFor(false), tracker, 'completed', lockHandles, lockedBackup, recoveryId, true),
  );
  tracker.finish('completed');
  const ctx = ctxFor(false);
  const backup = definition.backup(state);
  const now = Date.now();
  const envelope: RecoveryEnvelope = {
    procedure: definition.procedure,
    recoveryId,
    outcome: 'completed',
    backup,
    approvals,
    warnings: tracker.progress.warnings,
    steps: tracker.progress.steps,
    startedAt: new Date(started).toISOString(),
    completedAt: new Date(now).toISOString(),
    durationMs: now - started,
    measurements: measure(started, input.incidentAt as string | undefined, backup?.createdAt, approvalWaitMs),
  };
  const written = await report({
    outcome: 'completed',
    liveData:
      liveChanges.length || undoable.length
        ? `changed by ${[...liveChanges, ...undoable].join('; ')}`
        : 'no step changed live data',
    measurements: envelope.measurements,
    backup,
  });
  if (written) envelope.report = written;
  const m = envelope.measurements;
  await notify({
    event: 'recovery-completed',
    title: `${definition.title} completed, verified`,
    lines: [
      `RTO ${m.rtoSeconds} s (${m.rtoWithoutApprovalSeconds} s without the ${m.approvalWaitSeconds} s waiting for approval)${m.rpoSeconds !== undefined ? `, RPO ${m.rpoSeconds} s` : ''}`,
      ...(backup
        ? [
            `Backup ${backup.id} (${backup.createdAt}${backup.source ? `, from the ${backup.source} store` : ''})`,
          ]
        : []),
      ...(envelope.warnings.length
        ? [`${envelope.warnings.length} warning(s): ${envelope.warnings.slice(0, 3).join('; ')}`]
        : []),
      ...(written ? [`Report: ${written.join('; ')}`] : []),
    ],
  });
  return { ...envelope, ...definition.result(ctx) };
}

async function statementAfterFailure<I, S>(
  phase: Phase<I, S>,
  ctx: PhaseContext<I, S>,
  before: unknown,
  err: unknown,
): Promise<string> {
  if (isCancellation(err))
    return `live data may have been changed: "${phase.name}" was cancelled while it ran`;
  const u = phase.untouched;
  if (u === 'one transaction') {
    return surfaceFailure(err) instanceof ApplicationFailure
      ? `live data untouched: "${phase.name}" runs in one transaction, which was rolled back`
      : `live data may have been changed: "${phase.name}" failed (${rootMessage(err)})`;
  }
  if (u) {
    try {
      const { same, detail } = await u.check(ctx, before);
      return same
        ? `live data untouched (checked after the failure: ${detail})`
        : `LIVE DATA CHANGED by "${phase.name}": ${detail}`;
    } catch (checkErr) {
      return `live data may have been changed by "${phase.name}" (the check after the failure failed: ${rootMessage(checkErr)})`;
    }
  }
  if (phase.undoneByCleanupOnFailure) return `"${phase.name}" failed; the cleanup takes back what it created`;
  return `live data may have been changed by "${phase.name}"`;
}

function describeLiveData(
  liveChanges: string[],
  undoable: string[],
  failedPhase: string | undefined,
  started: boolean,
): string {
  if (!started) return 'live data untouched: the input was refused before anything ran';
  const earlier = [
    ...(liveChanges.length ? [`live data was changed by earlier steps: ${liveChanges.join('; ')}`] : []),
    ...(undoable.length
      ? [`live data was changed by ${undoable.join('; ')}, which the cleanup takes back`]
      : []),
  ].join('; ');
  if (failedPhase) return earlier ? `${earlier}; then ${failedPhase}` : failedPhase;
  return earlier || 'live data untouched: no step that changes live data had started';
}

async function cleanUp<I, S, D, Schema extends z.ZodObject>(
  definition: RecoveryDefinition<Schema, S, D>,
  ctx: PhaseContext<I, S>,
  tracker: ProgressTracker,
  outcome: 'completed' | 'failed',
  lockHandles: ChildWorkflowHandle<typeof targetLock>[],
  lockedBackup: BackupChoice | undefined,
  recoveryId: string,
  started: boolean,
): Promise<string> {
  const t0 = tracker.start(CLEANUP_STEP, 'cleaning up: ' + definition.cleanup.map((c) => c.what).join(', '));
  const done: string[] = [];
  const failed: string[] = [];
  if (started) {
    for (const step of definition.cleanup) {
      try {
        const detail = await step.run(ctx as never, outcome);
        if (detail) done.push(detail);
      } catch (err) {
        failed.push(`${step.what}: ${rootMessage(err)}`);
      }
    }
  }
  // Independent of the steps above: the backup's lease and the target locks.
  if (lockedBackup) {
    try {
      await unlockBackup({ backupId: lockedBackup.id, holder: recoveryId, from: lockedBackup.source });
    } catch (err) {
      failed.push(`releasing backup ${lockedBackup.id}: ${rootMessage(err)} (its lease expires by itself)`);
    }
  }
  for (const handle of lockHandles) {
    try {
      await handle.signal(releaseLockSignal);
      await handle.result();
    } catch (err) {
      failed.push(`releasing ${handle.workflowId}: ${rootMessage(err)} (it ends with this run)`);
    }
  }
  for (const f of failed) tracker.warn(`cleanup: ${f}`);
  const report = [...done, ...failed.map((f) => `FAILED ${f}`)].join('; ') || 'nothing left behind';
  tracker.end(CLEANUP_STEP, t0, failed.length ? 'failed' : 'done', report);
  return report;
}

async function renderPlan<Schema extends z.ZodObject, S, D>(
  definition: RecoveryDefinition<Schema, S, D>,
  phases: Phase<z.infer<Schema>, S>[],
  ctx: PhaseContext<z.infer<Schema>, S>,
  tracker: ProgressTracker,
): Promise<RecoveryPlan> {
  const steps: PlanStep[] = [];
  for (const phase of phases) {
    if (phase.patch && !patched(phase.patch)) {
      tracker.skip(phase.name, 'added by a later kohakku-dr; this run started before it');
      continue;
    }
    const skip = phase.skip?.(ctx);
    if (phase.effect === 'read' && phase.runsInPlan !== false && !skip) {
      const t0 = tracker.start(phase.name, phase.waitingFor(ctx));
      try {
        await phase.run(ctx, []);
      } catch (err) {
        tracker.end(phase.name, t0, 'failed', rootMessage(err));
        throw err;
      }
      tracker.end(phase.name, t0, 'done', phase.describe?.(ctx));
      continue;
    }
    tracker.skip(phase.name, skip ? `plan mode; ${skip}` : 'plan mode');
    if (skip) continue;
    const replaces = phase.destroys ? (await phase.destroys(ctx)).map((r) => r.description) : [];
    const { action, touches } = phase.plan(ctx);
    steps.push({
      step: phase.name,
      action: replaces.length ? `${action} — replaces (needs approval): ${replaces.join('; ')}` : action,
      touches,
      destructive: replaces.length > 0,
      ...(phase.destroys ? { replaces } : {}),
    });
  }
  steps.push({
    step: CLEANUP_STEP,
    action: definition.cleanup.map((c) => c.what).join('; '),
    touches: [],
    destructive: false,
  });
  const backup = definition.backup(ctx.state);
  return {
    procedure: definition.procedure,
    plan: true,
    backup,
    backupId: backup?.id,
    backupCreatedAt: backup?.createdAt,
    backupVerified: backup?.verified,
    steps,
  };
}

/**
 * Runs side by side and waits for every one to end before failing with the first error: no
 * branch outlives its phase, so the cleanup never runs beside work still in progress.
 */
export async function settleAll<T>(work: Promise<T>[]): Promise<T[]> {
  const settled = await Promise.allSettled(work);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((s) => (s as PromiseFulfilledResult<T>).value);
}

export function measure(
  startedMs: number,
  incidentAt: string | undefined,
  backupCreatedAt: string | undefined,
  approvalWaitMs = 0,
): Measurements {
  const now = Date.now();
  const incident = incidentAt ? Date.parse(incidentAt) : startedMs;
  return {
    startedAt: new Date(startedMs).toISOString(),
    rtoSeconds: tenths(now - startedMs),
    approvalWaitSeconds: tenths(approvalWaitMs),
    rtoWithoutApprovalSeconds: tenths(now - startedMs - approvalWaitMs),
    incidentAt: new Date(incident).toISOString(),
    backupCreatedAt,
    rpoSeconds: backupCreatedAt ? tenths(incident - Date.parse(backupCreatedAt)) : undefined,
  };
}
