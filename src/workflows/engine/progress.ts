/**
 * Progress of a workflow: its phases with status and timings, what it is waiting for, its
 * warnings — answered by the `progress` query and shown as the Temporal UI's current details.
 * The recovery engine drives it; the backup workflows use it directly through Procedure.
 *
 * Time: inside the workflow sandbox the SDK replaces Date with the workflow task's time, so
 * `Date.now()` here is replay-safe; it is the only clock this file uses.
 */
import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  ChildWorkflowFailure,
  setCurrentDetails,
  setHandler,
} from '@temporalio/workflow';
import { progressQuery, type Progress, type StepProgress, type StepStatus } from '../definitions';

export type { Progress, StepProgress, StepStatus };

export class ProgressTracker {
  readonly progress: Progress;

  constructor(procedure: string, stepNames: readonly string[]) {
    this.progress = {
      procedure,
      status: 'running',
      startedAt: new Date(Date.now()).toISOString(),
      steps: stepNames.map((name) => ({ name, status: 'pending' })),
      warnings: [],
    };
    setHandler(progressQuery, () => this.progress);
    this.publish();
  }

  find(name: string): StepProgress {
    const step = this.progress.steps.find((s) => s.name === name);
    if (!step) throw new Error(`unknown step ${name}`);
    return step;
  }

  start(name: string, waitingFor: string): number {
    const step = this.find(name);
    const started = Date.now();
    step.status = 'running';
    step.startedAt = new Date(started).toISOString();
    this.progress.waitingFor = waitingFor;
    this.publish();
    return started;
  }

  end(name: string, started: number, status: 'done' | 'failed', detail?: string): void {
    const step = this.find(name);
    step.status = status;
    if (detail !== undefined) step.detail = detail;
    step.endedAt = new Date(Date.now()).toISOString();
    step.durationMs = Date.now() - started;
    this.progress.waitingFor = undefined;
    this.publish();
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

  warn(warning: string): void {
    this.progress.warnings.push(warning);
    this.publish();
  }

  finish(status: Progress['status'], error?: string): void {
    this.progress.status = status;
    this.progress.error = error;
    this.progress.waitingFor = undefined;
    this.publish();
  }

  /** The Temporal UI shows this as the workflow's current details. */
  publish(): void {
    const p = this.progress;
    const icon: Record<StepStatus, string> = {
      pending: '·',
      running: '▶',
      done: '✔',
      failed: '✘',
      skipped: '–',
    };
    // What an operator must read first comes first: the UI shows current details in a panel of
    // fixed height, which clipped the approve instruction when it came after the steps.
    const lines = [
      `**${p.procedure}** — ${p.status}`,
      ...(p.waitingFor ? [`waiting for: ${p.waitingFor}`] : []),
      ...(p.error ? [`error: ${p.error}`] : []),
      ...p.warnings.map((w) => `warning: ${w}`),
      ...p.steps.map(
        (s) =>
          `${icon[s.status]} ${s.name}${s.durationMs !== undefined ? ` (${(s.durationMs / 1000).toFixed(1)} s)` : ''}${s.detail ? ` — ${s.detail}` : ''}`,
      ),
    ];
    setCurrentDetails(lines.join('\n\n'));
  }
}

/**
 * The backup workflows' simple form: named steps run in order, then an always-run cleanup
 * whose failure is a warning, never the run's error.
 */
export class Procedure extends ProgressTracker {
  /** Runs one phase, recording its status and timing. */
  async step<T>(
    name: string,
    waitingFor: string,
    run: () => Promise<T>,
    describe?: (result: T) => string,
  ): Promise<T> {
    const started = this.start(name, waitingFor);
    try {
      const result = await run();
      this.end(name, started, 'done', describe?.(result));
      return result;
    } catch (err) {
      this.end(name, started, 'failed', rootMessage(err));
      throw err;
    }
  }

  /** Runs the phases, then the cleanup — always, also after a failure or cancellation. */
  async run<T>(phases: () => Promise<T>, cleanup?: () => Promise<unknown>): Promise<T> {
    let result: T;
    try {
      result = await phases();
    } catch (err) {
      const failure = surfaceFailure(err);
      this.finish('cleaning-up', (failure as Error).message);
      if (cleanup) await CancellationScope.nonCancellable(() => this.cleanupWarned(cleanup));
      this.finish('failed', (failure as Error).message);
      throw failure;
    }
    if (cleanup) await CancellationScope.nonCancellable(() => this.cleanupWarned(cleanup));
    this.finish('completed');
    return result;
  }

  private async cleanupWarned(cleanup: () => Promise<unknown>): Promise<void> {
    try {
      await cleanup();
    } catch (err) {
      this.warn(`cleanup failed: ${rootMessage(err)}`);
    }
  }
}

/** The error under the activity and child-workflow failures wrapping it. */
function rootCause(err: unknown): unknown {
  let e: unknown = err;
  while ((e instanceof ActivityFailure || e instanceof ChildWorkflowFailure) && e.cause) e = e.cause;
  return e;
}

/** The ApplicationFailure type under the activity and child-workflow failures, if any. */
export function failureTypeOf(err: unknown): string | undefined {
  const e = rootCause(err);
  return e instanceof ApplicationFailure ? (e.type ?? undefined) : undefined;
}

export function rootMessage(err: unknown): string {
  const e = rootCause(err);
  return e instanceof Error ? e.message : String(e);
}

/**
 * An activity's typed failure becomes the workflow's own, so `temporal workflow describe`, the
 * UI and the CLI show e.g. `BackupCorrupt: dump … is corrupt` rather than "activity failed".
 */
export function surfaceFailure(err: unknown): unknown {
  const e = rootCause(err);
  if (e !== err && e instanceof ApplicationFailure) {
    return ApplicationFailure.create({
      type: e.type ?? undefined,
      message: e.message,
      nonRetryable: true,
      details: e.details ?? undefined,
      cause: err as Error,
    });
  }
  return err;
}
