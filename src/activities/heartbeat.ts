/**
 * Heartbeating: every activity heartbeats steadily while it runs (heartbeatingThroughout), and
 * long ones report their progress in the details, so the server notices a dead worker within
 * the heartbeat timeout and never takes a busy one for dead. The
 * details show progress; a retry resumes from durable state (a verified staging database, the
 * blobs already mirrored or restored), which outlives the worker that heartbeated.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { Context } from '@temporalio/activity';
import { meter } from '../domain/meter';
import { sha256File } from '../infra/hashing';

export function inActivity(): boolean {
  try {
    Context.current();
    return true;
  } catch {
    return false;
  }
}

/** What each running activity last heartbeated, so the steady heartbeat repeats it. */
const lastDetails = new WeakMap<Context, unknown>();

export function heartbeat(details: unknown): void {
  if (!inActivity()) return;
  const context = Context.current();
  lastDetails.set(context, details);
  context.heartbeat(details);
}

/**
 * The worker's maxHeartbeatThrottleInterval: heartbeat details (the meters `kohakku-dr watch`
 * draws) reach the server at least this often, not only every 0.8 × the heartbeat timeout (16 s)
 * — one small call per long activity.
 */
export const MAX_HEARTBEAT_THROTTLE = '5s';

/** How often every activity heartbeats while it runs: well within a third of the shortest heartbeat timeout (20 s). */
export const STEADY_HEARTBEAT_MS = 2000;

/**
 * Runs an activity's body with a steady heartbeat from its first moment to its last: every
 * STEADY_HEARTBEAT_MS the details it last heartbeated (or its name), so no phase of it — a
 * listing, a manifest read, a child process — goes quiet long enough for a live worker to be
 * taken for dead, and a dead one is noticed within the heartbeat timeout. activities/index.ts
 * wraps every activity in it.
 */
export async function heartbeatingThroughout<T>(name: string, body: () => Promise<T>): Promise<T> {
  if (!inActivity()) return body();
  const context = Context.current();
  const timer = setInterval(
    () => context.heartbeat(lastDetails.get(context) ?? { activity: name }),
    STEADY_HEARTBEAT_MS,
  );
  try {
    return await body();
  } finally {
    clearInterval(timer);
  }
}

/** This attempt's number and when the activity was first scheduled (an attempt 1 now, outside an activity). */
export function attemptInfo(): { attempt: number; firstScheduledMs: number } {
  if (!inActivity()) return { attempt: 1, firstScheduledMs: Date.now() };
  const info = Context.current().info;
  return { attempt: info.attempt, firstScheduledMs: info.scheduledTimestampMs };
}

export function cancellationSignal(): AbortSignal | undefined {
  return inActivity() ? Context.current().cancellationSignal : undefined;
}

/** Runs `work` while heartbeating `progress()` every `everyMs`. */
export async function withHeartbeats<T>(
  progress: () => unknown,
  work: () => Promise<T>,
  everyMs = 2000,
): Promise<T> {
  heartbeat(progress());
  const timer = setInterval(() => heartbeat(progress()), everyMs);
  try {
    return await work();
  } finally {
    clearInterval(timer);
  }
}

/** Waits `ms`, or rejects when `signal` aborts first; the listener goes with the wait (polling loops add one per round). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** sha256 of a file while heartbeating how much is hashed: a multi-GB dump outlasts any heartbeat timeout. */
export async function sha256WithHeartbeats(file: string): Promise<string> {
  const size = (await fs.stat(file)).size;
  let hashed = 0;
  return withHeartbeats(
    () => ({
      stage: 'hashing',
      file: path.basename(file),
      hashed,
      meter: meter(`hashing ${path.basename(file)}`, 'bytes', hashed, size),
    }),
    () => sha256File(file, (n) => (hashed = n)),
  );
}

/**
 * A transfer of `size` bytes (a download, an upload) while heartbeating `details` with a bytes
 * meter of how far it has got — what `kohakku-dr watch` draws as a bar with an ETA.
 */
export function transferWithHeartbeats<T>(options: {
  details: Record<string, unknown>;
  /** The meter's words: "downloading kohakku_controller.dump". */
  what: string;
  size?: number;
  transfer: (onBytes: (bytes: number) => void) => Promise<T>;
}): Promise<T> {
  let moved = 0;
  return withHeartbeats(
    () => ({ ...options.details, meter: meter(options.what, 'bytes', moved, options.size) }),
    () => options.transfer((n) => (moved = n)),
  );
}
