/**
 * The crash matrix's machinery (crashMatrix.test.ts): where to crash, how to notice the moment,
 * and what a crash cost. A kill point names a moment in a recovery's history — an activity
 * scheduled or completed, halfway through one, the check-in grace timer running, or a time
 * since the start — and its victim: the worker (SIGKILL, a new worker started at once, as a
 * supervisor would) or the Temporal server (SIGKILL, started again on its SQLite file). The
 * moment is read from the server's own history as it is written (a long poll), not guessed.
 */
import type { Client, WorkflowHandle } from '@temporalio/client';

type HistoryEvent = NonNullable<Awaited<ReturnType<WorkflowHandle['fetchHistory']>>['events']>[number];
/** temporal.api.enums.v1.PendingActivityState.PENDING_ACTIVITY_STATE_STARTED */
const PENDING_ACTIVITY_STARTED = 2;

export type Trigger =
  /** As the workflow schedules the first `activity` (the boundary before it). */
  | { at: 'scheduled'; activity: string }
  /** As the first `activity` completes (the boundary after it). */
  | { at: 'completed'; activity: string }
  /** `afterMs` after the first `activity` is scheduled: inside it, when it runs that long. */
  | { at: 'inside'; activity: string; afterMs: number }
  /** Halfway through the first durable timer (the check-in grace period). */
  | { at: 'timer'; afterMs: number }
  /** `afterMs` after the recovery started, whatever it is doing. */
  | { at: 'time'; afterMs: number };

export interface KillPoint {
  victim: 'worker' | 'temporal';
  trigger: Trigger;
}

export function describePoint(p: KillPoint): string {
  const t = p.trigger;
  const when =
    t.at === 'time'
      ? `at ${(t.afterMs / 1000).toFixed(1)} s (random)`
      : t.at === 'timer'
        ? 'during the check-in grace timer'
        : t.at === 'inside'
          ? `inside ${t.activity} (+${(t.afterMs / 1000).toFixed(1)} s)`
          : `${t.at === 'scheduled' ? 'as' : 'after'} ${t.activity}${t.at === 'scheduled' ? ' is scheduled' : ''}`;
  return `${p.victim === 'worker' ? 'worker' : 'Temporal server'} killed ${when}`;
}

const ms = (t: { seconds?: unknown; nanos?: number | null } | null | undefined): number =>
  t ? Number(t.seconds ?? 0) * 1000 + Math.floor((t.nanos ?? 0) / 1e6) : 0;

const closed = (e: HistoryEvent) =>
  Boolean(
    e.workflowExecutionCompletedEventAttributes ||
    e.workflowExecutionFailedEventAttributes ||
    e.workflowExecutionCanceledEventAttributes ||
    e.workflowExecutionTerminatedEventAttributes ||
    e.workflowExecutionTimedOutEventAttributes ||
    e.workflowExecutionContinuedAsNewEventAttributes,
  );

/** A workflow's history event by event, as the server writes it (long poll), until it closes. */
async function* liveHistory(client: Client, handle: WorkflowHandle): AsyncGenerator<HistoryEvent> {
  let nextPageToken: Uint8Array | undefined;
  for (;;) {
    const page = await client.workflowService.getWorkflowExecutionHistory({
      namespace: client.options.namespace,
      execution: { workflowId: handle.workflowId },
      nextPageToken,
      waitNewEvent: true,
    });
    for (const e of page.history?.events ?? []) {
      yield e;
      if (closed(e)) return;
    }
    if (!page.nextPageToken?.length) return;
    nextPageToken = page.nextPageToken;
  }
}

const sleep = (millis: number) => new Promise((r) => setTimeout(r, millis));

/**
 * Resolves when `trigger`'s moment comes (true), or when the workflow closes first (false).
 * `startedAt` is when the recovery was started (for `time`).
 */
export async function momentOf(
  client: Client,
  handle: WorkflowHandle,
  trigger: Trigger,
  startedAt: number,
): Promise<boolean> {
  if (trigger.at === 'time') {
    await sleep(Math.max(0, startedAt + trigger.afterMs - Date.now()));
    return (await handle.describe()).status.name === 'RUNNING';
  }
  const names = new Map<string, string>();
  for await (const e of liveHistory(client, handle)) {
    const scheduled = e.activityTaskScheduledEventAttributes;
    if (scheduled) names.set(String(e.eventId), scheduled.activityType?.name ?? '');
    const completed = e.activityTaskCompletedEventAttributes;
    const name = scheduled
      ? scheduled.activityType?.name
      : completed
        ? names.get(String(completed.scheduledEventId))
        : undefined;
    if (trigger.at === 'timer' && e.timerStartedEventAttributes) {
      await sleep(trigger.afterMs);
      return true;
    }
    if (trigger.at !== 'timer' && name === trigger.activity) {
      if (trigger.at === 'scheduled' && scheduled) return true;
      if (trigger.at === 'completed' && completed) return true;
      if (trigger.at === 'inside' && scheduled) {
        await sleep(trigger.afterMs);
        return true;
      }
    }
  }
  return false;
}

export interface ActivityRun {
  activity: string;
  /** From scheduled to completed, in the baseline run. */
  millis: number;
}

/** A finished run's activities in the order they were first scheduled, with how long each first one took. */
export async function activitiesOf(handle: WorkflowHandle): Promise<ActivityRun[]> {
  const history = await handle.fetchHistory();
  const scheduledAt = new Map<string, { activity: string; at: number }>();
  const runs: ActivityRun[] = [];
  for (const e of history.events ?? []) {
    const s = e.activityTaskScheduledEventAttributes;
    if (s) scheduledAt.set(String(e.eventId), { activity: s.activityType?.name ?? '', at: ms(e.eventTime) });
    const c = e.activityTaskCompletedEventAttributes;
    const first = c && scheduledAt.get(String(c.scheduledEventId));
    if (first && !runs.some((r) => r.activity === first.activity))
      runs.push({ activity: first.activity, millis: ms(e.eventTime) - first.at });
  }
  return runs;
}

interface Pending {
  activityId: string;
  activity: string;
  attempt: number;
}

/** The activities the server has as running (started on a worker) right now. */
export async function runningActivities(handle: WorkflowHandle): Promise<Pending[]> {
  const { raw } = await handle.describe();
  return (raw.pendingActivities ?? [])
    .filter((a) => Number(a.state) === PENDING_ACTIVITY_STARTED)
    .map((a) => ({
      activityId: a.activityId ?? '',
      activity: a.activityType?.name ?? '',
      attempt: a.attempt ?? 1,
    }));
}

/**
 * What losing the worker cost: from the kill until every activity it was running has either
 * finished or been started again on another worker (seconds), or undefined when it was running
 * none. Gives up after `limitMs`.
 */
export async function lostWorkerCost(
  handle: WorkflowHandle,
  wasRunning: Pending[],
  killedAt: number,
  limitMs = 180000,
): Promise<number | undefined> {
  if (wasRunning.length === 0) return undefined;
  const waiting = new Map(wasRunning.map((p) => [p.activityId, p]));
  while (waiting.size > 0 && Date.now() - killedAt < limitMs) {
    const { raw, status } = await handle.describe();
    if (status.name !== 'RUNNING') break;
    const pending = new Map((raw.pendingActivities ?? []).map((a) => [a.activityId ?? '', a]));
    for (const [id, before] of waiting) {
      const now = pending.get(id);
      if (!now || (now.attempt ?? 1) > before.attempt) waiting.delete(id);
    }
    if (waiting.size > 0) await sleep(250);
  }
  return (Date.now() - killedAt) / 1000;
}

/** A small seeded PRNG (mulberry32), so a random kill time can be run again with the same seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
