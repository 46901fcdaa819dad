/**
 * Every activity a kohakku-dr workflow schedules carries a one-line summary, which the Temporal
 * UI shows in the run's timeline and event history instead of a bare type name: what it does, in
 * words, and on what (`restore into staging — target controller, backup 20261124T020000Z`).
 * Derived from the activity's type and the salient fields of its input, in one place, so no call
 * site has to remember it. A summary is user metadata on the command, not part of what replay
 * compares: runs recorded without summaries replay unchanged (test/histories).
 */
import type {
  ActivityInput,
  Next,
  WorkflowInterceptorsFactory,
  WorkflowOutboundCallsInterceptor,
} from '@temporalio/workflow';

/** Input fields worth naming in a summary, in the order they are named, with their words. */
const SALIENT_FIELDS: [field: string, words: string][] = [
  ['service', 'service'],
  ['target', 'target'],
  ['targets', 'targets'],
  ['database', 'database'],
  ['tables', 'tables'],
  ['backupId', 'backup'],
  ['from', 'from the store'],
  ['type', 'type'],
];

/** `restoreIntoStaging` → `restore into staging`. */
export function inWords(activityType: string): string {
  return activityType.replace(/([a-z0-9])([A-Z])/g, '$1 $2').toLowerCase();
}

const MAX_SUMMARY = 200;

/** The summary of one activity call: its type in words, then what its input names. */
export function activitySummary(activityType: string, args: unknown[]): string {
  const input =
    args[0] && typeof args[0] === 'object' && !Array.isArray(args[0])
      ? (args[0] as Record<string, unknown>)
      : {};
  const named = SALIENT_FIELDS.flatMap(([field, words]) => {
    const v = input[field];
    if (typeof v === 'string' || typeof v === 'number') return [`${words} ${v}`];
    if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return [`${words} ${v.join(', ')}`];
    return [];
  });
  const summary = `${inWords(activityType)}${named.length ? ` — ${named.join(', ')}` : ''}`;
  return summary.length > MAX_SUMMARY ? `${summary.slice(0, MAX_SUMMARY - 1)}…` : summary;
}

class ActivitySummaries implements WorkflowOutboundCallsInterceptor {
  scheduleActivity(input: ActivityInput, next: Next<WorkflowOutboundCallsInterceptor, 'scheduleActivity'>) {
    if (input.options.summary) return next(input);
    return next({
      ...input,
      options: { ...input.options, summary: activitySummary(input.activityType, input.args) },
    });
  }
}

export const interceptors: WorkflowInterceptorsFactory = () => ({ outbound: [new ActivitySummaries()] });
