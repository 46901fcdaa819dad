/** Client-side helpers: connecting, workflow ids (one recovery per target), watching progress. */
import {
  Client,
  Connection,
  WorkflowExecutionAlreadyStartedError,
  type WorkflowHandle,
} from '@temporalio/client';
import { progressQuery, type Progress, type StepProgress } from '../workflows/definitions';
import { CliError } from './exitCodes';

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

/** Prints each step as it starts and ends, until the workflow closes; returns its result. */
export async function watch<R>(
  handle: WorkflowHandle,
  print: (line: string) => void,
  everyMs = 1000,
): Promise<R> {
  const seen = new Map<string, string>();
  let waiting: string | undefined;
  let warned = 0;
  let finished = false;
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
  };
  while (!finished) {
    await poll();
    await Promise.race([result.catch(() => undefined), new Promise((r) => setTimeout(r, everyMs))]);
  }
  await poll();
  return result;
}
