/**
 * A procedure is a readable list of phases (after Kanister). This tracks them for the
 * `progress` query and the Temporal UI's current details, with per-step timings.
 *
 * Time: inside the workflow sandbox the SDK replaces Date with the workflow task's time, so
 * `Date.now()` here is replay-safe; it is the only clock this file uses.
 */
import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  ChildWorkflowFailure,
  workflowInfo,
  defineQuery,
  setCurrentDetails,
  setHandler,
} from '@temporalio/workflow';

export type StepStatus = 'pending' | 'running' | 'done' | 'failed' | 'skipped';

export interface StepProgress {
  name: string;
  status: StepStatus;
  startedAt?: string;
  endedAt?: string;
  durationMs?: number;
  detail?: string;
}

export interface Progress {
  procedure: string;
  status: 'running' | 'completed' | 'failed' | 'cleaning-up';
  startedAt: string;
  steps: StepProgress[];
  /** What the workflow is waiting for right now, in words. */
  waitingFor?: string;
  error?: string;
}

export const progressQuery = defineQuery<Progress>('progress');

export class Procedure {
  readonly progress: Progress;

  constructor(procedure: string, stepNames: readonly string[]) {
    this.progress = {
      procedure,
      status: 'running',
      startedAt: new Date(Date.now()).toISOString(),
      steps: stepNames.map((name) => ({ name, status: 'pending' })),
    };
    setHandler(progressQuery, () => this.progress);
    this.publish();
  }

  private find(name: string): StepProgress {
    const step = this.progress.steps.find((s) => s.name === name);
    if (!step) throw new Error(`unknown step ${name}`);
    return step;
  }

  /** Runs one phase, recording its status and timing. */
  async step<T>(
    name: string,
    waitingFor: string,
    run: () => Promise<T>,
    describe?: (result: T) => string,
  ): Promise<T> {
    const step = this.find(name);
    const started = Date.now();
    step.status = 'running';
    step.startedAt = new Date(started).toISOString();
    this.progress.waitingFor = waitingFor;
    this.publish();
    try {
      const result = await run();
      step.status = 'done';
      step.detail = describe?.(result);
      return result;
    } catch (err) {
      step.status = 'failed';
      step.detail = rootMessage(err);
      throw err;
    } finally {
      step.endedAt = new Date(Date.now()).toISOString();
      step.durationMs = Date.now() - started;
      this.progress.waitingFor = undefined;
      this.publish();
    }
  }

  /**
   * Runs the procedure's phases, then its cleanup phase — always, also after a failure or a
   * cancellation (in a non-cancellable scope) — and records the outcome.
   */
  async run<T>(phases: () => Promise<T>, cleanup?: () => Promise<unknown>): Promise<T> {
    let result: T;
    try {
      result = await phases();
    } catch (err) {
      const failure = surfaceFailure(err);
      this.finish('cleaning-up', (failure as Error).message);
      if (cleanup) await CancellationScope.nonCancellable(cleanup);
      this.finish('failed', (failure as Error).message);
      throw failure;
    }
    if (cleanup) await cleanup();
    this.finish('completed');
    return result;
  }

  /** A phase that was not needed this time, and why. */
  skip(name: string, why: string): void {
    const step = this.find(name);
    step.status = 'skipped';
    step.detail = why;
    this.publish();
  }

  note(name: string, detail: string): void {
    this.find(name).detail = detail;
    this.publish();
  }

  waiting(what: string | undefined): void {
    this.progress.waitingFor = what;
    this.publish();
  }

  finish(status: Progress['status'], error?: string): void {
    this.progress.status = status;
    this.progress.error = error;
    this.progress.waitingFor = undefined;
    this.publish();
  }

  /** The Temporal UI shows this as the workflow's current details. */
  private publish(): void {
    const p = this.progress;
    const icon: Record<StepStatus, string> = {
      pending: '·',
      running: '▶',
      done: '✔',
      failed: '✘',
      skipped: '–',
    };
    const lines = [
      `**${p.procedure}** — ${p.status}`,
      ...p.steps.map(
        (s) =>
          `${icon[s.status]} ${s.name}${s.durationMs !== undefined ? ` (${(s.durationMs / 1000).toFixed(1)} s)` : ''}${s.detail ? ` — ${s.detail}` : ''}`,
      ),
      ...(p.waitingFor ? [`waiting for: ${p.waitingFor}`] : []),
      ...(p.error ? [`error: ${p.error}`] : []),
    ];
    setCurrentDetails(lines.join('\n\n'));
  }
}

function rootMessage(err: unknown): string {
  return (err instanceof ActivityFailure || err instanceof ChildWorkflowFailure) && err.cause
    ? err.cause.message
    : (err as Error).message;
}

/** A backup id is the run's start time (UTC, to the second): a retried activity writes the same backup. */
export function backupIdOfThisRun(): string {
  return workflowInfo()
    .runStartTime.toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}Z$/, 'Z');
}

/**
 * An activity's typed failure becomes the workflow's own, so `temporal workflow describe`, the
 * UI and the CLI show e.g. `BackupCorrupt: dump … is corrupt` rather than "activity failed".
 */
export function surfaceFailure(err: unknown): unknown {
  if (
    (err instanceof ActivityFailure || err instanceof ChildWorkflowFailure) &&
    err.cause instanceof ApplicationFailure
  ) {
    const cause = err.cause;
    return ApplicationFailure.create({
      type: cause.type ?? undefined,
      message: cause.message,
      nonRetryable: true,
      details: cause.details ?? undefined,
      cause: err,
    });
  }
  return err;
}
