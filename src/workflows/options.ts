/**
 * Activity options shared by the workflows: what is retried, how often, and for how long.
 *
 * Every class has a heartbeat timeout of LOST_WORKER_NOTICED (every activity heartbeats every
 * 2 s from its first moment to its last: activities/heartbeat.ts), so a worker that dies —
 * SIGKILL, OOM, a lost host — costs at most that, plus the retry's first interval, before
 * another worker runs the activity again, whatever its start-to-close limit.
 * test/crashMatrix.test.ts measures it.
 */
import { ActivityCancellationType, type ActivityOptions } from '@temporalio/workflow';
import { ErrorType, NON_RETRYABLE_ERRORS } from '../domain/errors';

/** How soon the server notices that the worker running an activity is gone. */
export const LOST_WORKER_NOTICED = '20s';

const retry = {
  initialInterval: '2s',
  backoffCoefficient: 2,
  maximumInterval: '1m',
  maximumAttempts: 10,
  nonRetryableErrorTypes: NON_RETRYABLE_ERRORS,
};

/** Quick look-ups and commands: work that does not grow with the data. */
export const quick: ActivityOptions = {
  startToCloseTimeout: '2m',
  heartbeatTimeout: LOST_WORKER_NOTICED,
  retry,
};

/**
 * Work that grows with the data but changes nothing live: listings, comparisons, plans,
 * retention. Heartbeating throughout, so a dead worker is noticed within
 * LOST_WORKER_NOTICED whatever the size.
 */
export const scan: ActivityOptions = {
  startToCloseTimeout: '1h',
  heartbeatTimeout: LOST_WORKER_NOTICED,
  retry,
};

/**
 * Dumps, restores, transfers: long, heartbeating; a dead worker is noticed within the heartbeat
 * timeout. On cancellation the workflow waits until the activity has stopped (and undone what it
 * was doing), so the cleanup phase never runs beside it.
 */
export const long: ActivityOptions = {
  startToCloseTimeout: '6h',
  heartbeatTimeout: LOST_WORKER_NOTICED,
  retry,
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
};

/**
 * Polling waits with their own deadline inside (some count it from the last progress, so the
 * outer limit is generous; a dead worker is still noticed within LOST_WORKER_NOTICED).
 */
export function waitUpTo(deadlineSeconds: number): ActivityOptions {
  return {
    startToCloseTimeout: `${deadlineSeconds * 4 + 600}s`,
    heartbeatTimeout: LOST_WORKER_NOTICED,
    retry,
  };
}

/**
 * The preflight check: every probe answers within seconds, so a lost worker is noticed within
 * LOST_WORKER_NOTICED and the check is tried again at most twice; what it finds wrong fails at once (typed,
 * non-retryable).
 */
export const preflight: ActivityOptions = {
  startToCloseTimeout: '30s',
  heartbeatTimeout: LOST_WORKER_NOTICED,
  retry: { ...retry, maximumAttempts: 3 },
};

/**
 * Delivering a notification: a webhook that does not answer within 10 s fails the attempt, which
 * is retried for about half an hour (a chat service's outage) — by its own workflow, so no
 * recovery waits for it.
 */
export const notification: ActivityOptions = {
  startToCloseTimeout: '30s',
  heartbeatTimeout: LOST_WORKER_NOTICED,
  retry: {
    initialInterval: '5s',
    backoffCoefficient: 2,
    maximumInterval: '5m',
    maximumAttempts: 10,
    nonRetryableErrorTypes: [ErrorType.NotificationRejected],
  },
};

/**
 * Writing a run's report: small puts to the backup store (or the replica); tried three times in
 * about a minute, then given up as a warning — a report never holds a finished recovery open.
 */
export const reporting: ActivityOptions = {
  startToCloseTimeout: '1m',
  heartbeatTimeout: LOST_WORKER_NOTICED,
  retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '20s', maximumAttempts: 3 },
};
