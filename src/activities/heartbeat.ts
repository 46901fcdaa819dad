/**
 * Heartbeating for long activities: a timer that keeps heartbeating the latest progress while
 * a child process runs, so the server notices a dead worker within the heartbeat timeout. The
 * details show progress; a retry resumes from durable state (a verified staging database, the
 * blobs already mirrored or restored), which outlives the worker that heartbeated.
 */
import * as path from 'node:path';
import { Context } from '@temporalio/activity';
import { sha256File } from '../infra/hashing';

export function inActivity(): boolean {
  try {
    Context.current();
    return true;
  } catch {
    return false;
  }
}

export function heartbeat(details: unknown): void {
  if (inActivity()) Context.current().heartbeat(details);
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

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        reject(signal.reason);
      },
      { once: true },
    );
  });
}

/** sha256 of a file while heartbeating how much is hashed: a multi-GB dump outlasts any heartbeat timeout. */
export function sha256WithHeartbeats(file: string): Promise<string> {
  let hashed = 0;
  return withHeartbeats(
    () => ({ stage: 'hashing', file: path.basename(file), hashed }),
    () => sha256File(file, (n) => (hashed = n)),
  );
}
