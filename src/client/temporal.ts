/** Client-side helpers: connecting, workflow ids (one recovery per target), watching progress. */
import {
  Client,
  Connection,
  WorkflowExecutionAlreadyStartedError,
  type WorkflowExecutionDescription,
  type WorkflowHandle,
} from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { meterIn } from '../domain/meter';
import { progressQuery, type Progress, type StepProgress } from '../workflows/definitions';
import { CliError } from './exitCodes';
import type { ActivityMeter, MeterDisplay } from './meters';

export interface TemporalSettings {
  address: string;
  namespace: string;
  taskQueue: string;
}

/** The client needs only these three; the worker holds everything else. */
export function temporalSettings(env: NodeJS.ProcessEnv = process.env): TemporalSettings {
  return {
    address: env.TEMPORAL_ADDRESS || 'localhost:7233',
    namespace: env.TEMPORAL_NAMESPACE || 'default',
    taskQueue: env.KOHAKKU_DR_TASK_QUEUE || 'kohakku-dr',
  };
}

export async function connect(
  settings: TemporalSettings,
): Promise<{ client: Client; close: () => Promise<void> }> {
  const connection = await Connection.connect({ address: settings.address, connectTimeout: '10s' }).catch(
    (err: Error) => {
      throw new CliError(
        'unreachable',
        `cannot reach the Temporal server at ${settings.address} (TEMPORAL_ADDRESS): ${err.message}`,
      );
    },
  );
  return {
    client: new Client({ connection, namespace: settings.namespace }),
    close: () => connection.close(),
  };
}

/**
 * Workflow ids derive from the target, so a second recovery of the same thing is refused by
 * the server while the first runs (the default conflict policy), not run beside it.
 */
export const WORKFLOW_IDS = {
  postgresRecovery: 'kohakku-dr-recover-postgres',
  redisRecovery: 'kohakku-dr-recover-redis',
  objectsRecovery: 'kohakku-dr-recover-objects',
  clusterRecovery: 'kohakku-dr-recover-cluster',
  /** Point-in-time recovery rewinds the whole PostgreSQL cluster: it shares the Postgres id. */
  pitrRecovery: 'kohakku-dr-recover-postgres',
  pitrSetup: 'kohakku-dr-pitr-setup',
  pitrBackup: 'kohakku-dr-pitr-backup',
  mark: 'kohakku-dr-mark',
  postgresBackup: 'kohakku-dr-backup-postgres',
  verify: 'kohakku-dr-verify',
} as const;

export class AlreadyRunning extends Error {
  constructor(workflowId: string, runId: string | undefined, startedAt: Date | undefined) {
    super(
      `a run of ${workflowId} is already in progress (run ${runId ?? '?'}, started ${startedAt?.toISOString() ?? '?'}); ` +
        `watch it with \`kohakku-dr watch ${workflowId}\` ` +
        `or cancel it with \`kohakku-dr cancel ${workflowId}\` before starting another`,
    );
    this.name = 'AlreadyRunning';
  }
}

/**
 * Starts a workflow whose id is its target; a conflict becomes AlreadyRunning naming the running
 * run. (Recoveries of overlapping targets under other ids — a full cluster while a Redis loss runs
 * — are refused by the workflows' own target locks, so that also holds for `temporal workflow start`.)
 */
export async function startUnique<T extends WorkflowHandle>(
  client: Client,
  workflowId: string,
  start: () => Promise<T>,
): Promise<T & { firstExecutionRunId?: string }> {
  try {
    return await start();
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) {
      const running = await client.workflow
        .getHandle(workflowId)
        .describe()
        .catch(() => undefined);
      throw new AlreadyRunning(workflowId, running?.runId, running?.startTime);
    }
    throw err;
  }
}

/** One step as `watch` and `status` print it: ▶ running, ✔ done (duration, detail), ✘ failed, · not yet. */
export function stepLine(s: StepProgress): string {
  if (s.status === 'running') return `  ▶ ${s.name}…`;
  if (s.status === 'done')
    return `  ✔ ${s.name} (${((s.durationMs ?? 0) / 1000).toFixed(1)} s)${s.detail ? ` — ${s.detail}` : ''}`;
  if (s.status === 'failed') return `  ✘ ${s.name}: ${s.detail ?? ''}`;
  return `  · ${s.name}`;
}

/** An activity the server is retrying: which, which attempt, and why the last one failed. */
export interface RetryingActivity {
  activity: string;
  attempt: number;
  maximumAttempts?: number;
  lastFailure?: string;
}

/**
 * The run's activities past their first attempt, from the server's own record (describe's
 * pending activities): what the progress query cannot say, since the workflow does not see an
 * activity's retries until it ends.
 */
export function retryingActivities(d: WorkflowExecutionDescription): RetryingActivity[] {
  return (d.raw.pendingActivities ?? [])
    .filter((a) => (a.attempt ?? 1) > 1)
    .map((a) => ({
      activity: a.activityType?.name ?? 'activity',
      attempt: a.attempt ?? 1,
      ...(a.maximumAttempts ? { maximumAttempts: a.maximumAttempts } : {}),
      ...(a.lastFailure?.message ? { lastFailure: a.lastFailure.message.split('\n')[0]!.slice(0, 300) } : {}),
    }));
}

export const retryLine = (r: RetryingActivity) =>
  `  ↻ ${r.activity}: attempt ${r.attempt}${r.maximumAttempts ? ` of ${r.maximumAttempts}` : ''}${r.lastFailure ? ` — last failure: ${r.lastFailure}` : ''}`;

/**
 * The meters (src/domain/meter.ts) the run's pending activities last heartbeated, from the
 * server's record: what the workflow itself never sees while an activity runs.
 */
export function activityMeters(d: WorkflowExecutionDescription): ActivityMeter[] {
  const meters: ActivityMeter[] = [];
  for (const a of d.raw.pendingActivities ?? []) {
    const payload = a.heartbeatDetails?.payloads?.at(-1);
    if (!payload) continue;
    let details: unknown;
    try {
      details = defaultPayloadConverter.fromPayload(payload);
    } catch {
      continue; // not JSON: no meter, nothing to draw
    }
    const meter = meterIn(details);
    if (meter)
      meters.push({
        activityId: a.activityId ?? '',
        activityType: a.activityType?.name ?? 'activity',
        meter,
      });
  }
  return meters;
}

/**
 * Prints each step as it starts and ends, and each retry of an activity as it is scheduled,
 * until the workflow closes; returns its result. With `meters`, the long activities' heartbeated
 * progress is drawn there too (bars with an ETA on a terminal, a line now and then otherwise) and
 * the lines go through it.
 */
export async function watch<R>(
  handle: WorkflowHandle,
  print: (line: string) => void,
  options: { everyMs?: number; meters?: MeterDisplay } = {},
): Promise<R> {
  const everyMs = options.everyMs ?? 1000;
  const meters = options.meters;
  if (meters) print = (line) => meters.print(line);
  const seen = new Map<string, string>();
  const attempts = new Map<string, number>();
  let waiting: string | undefined;
  let warned = 0;
  let finished = false;
  let polls = 0;
  const result = handle.result().finally(() => (finished = true)) as Promise<R>;
  result.catch(() => undefined);
  const poll = async () => {
    const p: Progress | undefined = await handle.query(progressQuery).catch(() => undefined);
    if (!p) return;
    for (const s of p.steps) {
      const key = `${s.status}`;
      if (seen.get(s.name) === key) continue;
      seen.set(s.name, key);
      if (s.status === 'running' || s.status === 'done' || s.status === 'failed') print(stepLine(s));
    }
    if (p.waitingFor && p.waitingFor !== waiting) print(`    waiting for: ${p.waitingFor}`);
    for (const w of p.warnings.slice(warned)) print(`  ! ${w}`);
    warned = p.warnings.length;
    waiting = p.waitingFor;
    // Retries and heartbeats are the server's to tell: asked every other poll.
    if (polls++ % 2 !== 0) return;
    const d = await handle.describe().catch(() => undefined);
    if (!d) return;
    for (const r of retryingActivities(d)) {
      if ((attempts.get(r.activity) ?? 1) >= r.attempt) continue;
      attempts.set(r.activity, r.attempt);
      print(retryLine(r));
    }
    meters?.show(finished ? [] : activityMeters(d));
  };
  try {
    while (!finished) {
      await poll();
      await Promise.race([result.catch(() => undefined), new Promise((r) => setTimeout(r, everyMs))]);
    }
    await poll();
  } finally {
    meters?.stop();
  }
  return result;
}
