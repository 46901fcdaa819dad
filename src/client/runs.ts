/**
 * The CLI's commands on one workflow run: start one and follow it, follow one already running
 * (`watch`), say where one stands (`status`), cancel one (`cancel`). Each ends in one result
 * document (for --json) and an exit code from exitCodes.ts; Ctrl-C while following says that the
 * workflow keeps running on the worker and how to follow or cancel it.
 */
import * as os from 'node:os';
import type { Client, Workflow, WorkflowExecutionDescription, WorkflowHandle } from '@temporalio/client';
import { WorkflowFailedError } from '@temporalio/client';
import { defineSearchAttributeKey, SearchAttributeType, TypedSearchAttributes } from '@temporalio/common';
import { SEARCH_ATTRIBUTES } from '../domain/searchAttributes';
import { progressQuery, type Progress } from '../workflows/definitions';
import { deliverNotification } from '../workflows/notify';
import { CliError, exitCode, failureOf } from './exitCodes';
import { barMeterDisplay, meterLine, plainMeterDisplay } from './meters';
import type { Output } from './output';
import {
  activityMeters,
  retryingActivities,
  retryLine,
  startUnique,
  stepLine,
  temporalSettings,
  watch,
} from './temporal';

/** Who runs this CLI, where: `oncall@host`, as the UI's summary and the notifications name them. */
const operator = () => `${os.userInfo().username}@${os.hostname()}`;

/** What to type next about a run, in the messages that hand it back to the operator. */
const commandsFor = (workflowId: string) => ({
  watchCommand: `kohakku-dr watch ${workflowId}`,
  statusCommand: `kohakku-dr status ${workflowId}`,
  cancelCommand: `kohakku-dr cancel ${workflowId}`,
  approveCommand: `kohakku-dr approve ${workflowId}`,
});

/**
 * Ctrl-C while `work` runs: the CLI stops following (exit 130) and says that the workflow goes
 * on. The handler is removed when `work` ends.
 */
async function interruptible<T>(
  out: Output,
  workflowId: string,
  work: () => Promise<T>,
  /** Put the terminal back first (progress bars hide the cursor). */
  beforeExit?: () => void,
): Promise<T> {
  const onInterrupt = () => {
    beforeExit?.();
    const next = commandsFor(workflowId);
    out.say('');
    out.error(
      `interrupted: ${workflowId} keeps running on the worker (Ctrl-C only stops this command). Follow it: ${next.watchCommand}; cancel it: ${next.cancelCommand}`,
      { workflowId, interrupted: true, ...next },
    );
    process.exit(exitCode('interrupted'));
  };
  process.once('SIGINT', onInterrupt);
  try {
    return await work();
  } finally {
    process.removeListener('SIGINT', onInterrupt);
  }
}

/** Follows a run to its end, printing its steps; the result, or a CliError naming the failure. */
async function followToEnd(out: Output, handle: WorkflowHandle, runId: string | undefined): Promise<void> {
  const workflowId = handle.workflowId;
  try {
    const meters = out.humanStream.isTTY
      ? barMeterDisplay(out.humanStream)
      : plainMeterDisplay((line) => out.say(line));
    const result = await interruptible(
      out,
      workflowId,
      () => watch(handle, out.say, { meters }),
      () => meters.stop(),
    );
    out.result({ workflowId, runId, status: 'completed', result }, () => JSON.stringify(result, null, 2));
  } catch (err) {
    if (!(err instanceof WorkflowFailedError)) throw err;
    const failure = failureOf(err);
    const status =
      failure.type === 'Cancelled' ? 'cancelled' : failure.type === 'Terminated' ? 'terminated' : 'failed';
    throw new CliError(
      failure.exit,
      status === 'failed'
        ? `${workflowId} failed${failure.type ? ` (${failure.type})` : ''}: ${failure.message}`
        : `${workflowId} was ${failure.message}`,
      { workflowId, runId, status, error: failure.message, type: failure.type },
    );
  }
}

/**
 * With --no-wait: a run that will ask for an approval is followed until it does (exit 4, with
 * what it would replace and the approve command) or ends; any other run is left at once.
 */
async function followToApproval(
  out: Output,
  handle: WorkflowHandle,
  runId: string | undefined,
): Promise<void> {
  const workflowId = handle.workflowId;
  const ended = handle.result().then(
    () => true,
    () => true,
  );
  for (;;) {
    const progress = await handle.query(progressQuery).catch(() => undefined);
    if (progress?.awaitingApproval) {
      const next = commandsFor(workflowId);
      out.result(
        {
          workflowId,
          runId,
          status: 'awaiting-approval',
          awaitingApproval: progress.awaitingApproval,
          ...next,
        },
        () => [
          `${workflowId} waits for approval of "${progress.awaitingApproval!.step}", which replaces: ${progress.awaitingApproval!.replaces.join('; ')}`,
          `approve: ${next.approveCommand}    follow: ${next.watchCommand}    cancel: ${next.cancelCommand}`,
        ],
      );
      process.exitCode = exitCode('awaiting-approval');
      return;
    }
    const done = await Promise.race([ended, new Promise<false>((r) => setTimeout(() => r(false), 1000))]);
    if (done) return followToEnd(out, handle, runId);
  }
}

/** A workflow's input object (its first argument), as the CLI built it. */
const inputOf = (args: unknown[]) =>
  (args[0] && typeof args[0] === 'object' ? args[0] : {}) as Record<string, unknown>;

/** What a recovery's input names as its target: databases, a database, never an instant (point-in-time). */
function targetOf(input: Record<string, unknown>): string | undefined {
  if (Array.isArray(input.targets)) return input.targets.join(', ');
  return typeof input.target === 'string' && !/^\d{4}-/.test(input.target) ? input.target : undefined;
}

/**
 * The run's procedure, target and requested backup as search attributes — those the server has
 * registered (SEARCH_ATTRIBUTES); none when it has none of them or cannot say.
 */
async function searchAttributesFor(
  client: Client,
  workflowType: string,
  args: unknown[],
): Promise<TypedSearchAttributes | undefined> {
  const registered = await client.connection.operatorService
    .listSearchAttributes({ namespace: client.options.namespace })
    .then((r) => new Set(Object.keys(r.customAttributes ?? {})))
    .catch(() => new Set<string>());
  const input = inputOf(args);
  const values: [string, string | undefined][] = [
    [SEARCH_ATTRIBUTES.procedure, workflowType],
    [SEARCH_ATTRIBUTES.target, targetOf(input)],
    // Only for a recovery from a backup set (its input has the field, maybe unset: "latest").
    [SEARCH_ATTRIBUTES.backup, 'backupId' in input ? String(input.backupId ?? 'latest') : undefined],
  ];
  const pairs = values
    .filter((v): v is [string, string] => v[1] !== undefined && registered.has(v[0]))
    .map(([name, value]) => ({ key: defineSearchAttributeKey(name, SearchAttributeType.KEYWORD), value }));
  return pairs.length ? new TypedSearchAttributes(pairs) : undefined;
}

/**
 * What the Temporal UI shows of a run started here, fixed at its start: a one-line summary (what,
 * from which backup) and details (the input, who started it where, how to follow, approve or
 * cancel it) — so 60 runs under a few workflow ids can be told apart at a glance.
 */
export function uiMetadata(
  workflowType: string,
  workflowId: string,
  args: unknown[],
): { staticSummary: string; staticDetails: string } {
  const input = inputOf(args);
  const target = targetOf(input);
  const parts = [
    input.plan ? 'plan only' : undefined,
    typeof input.backupId === 'string' ? `backup ${input.backupId}` : undefined,
    target ? `${Array.isArray(input.targets) ? 'targets' : 'target'} ${target}` : undefined,
    typeof input.target === 'string' && !target ? `to ${input.target}` : undefined,
    Array.isArray(input.tables) ? `tables ${input.tables.join(', ')}` : undefined,
    typeof input.from === 'string' ? `from the ${input.from} store` : undefined,
    input.confirm ? 'approved in advance' : undefined,
  ].filter(Boolean);
  const by = operator();
  const next = commandsFor(workflowId);
  return {
    staticSummary: `${workflowType}${parts.length ? `: ${parts.join(', ')}` : ''} — by ${by}`,
    staticDetails: [
      `**${workflowType}** started with \`kohakku-dr\` by ${by} at ${new Date().toISOString()}`,
      `input: \`${JSON.stringify(input)}\``,
      `follow: \`${next.watchCommand}\` · approve: \`${next.approveCommand}\` · cancel: \`${next.cancelCommand}\``,
    ].join('\n\n'),
  };
}

/**
 * Starts a workflow under its target-derived id (a second start is refused: exit 3) and follows
 * it to its end, or (wait false) returns once it is started — or, when `asksApproval`, once it
 * waits for the approval.
 */
export async function startAndFollow(options: {
  client: Client;
  out: Output;
  taskQueue: string;
  workflow: Workflow;
  workflowId: string;
  args: unknown[];
  wait: boolean;
  /** The run will stop for `kohakku-dr approve` (a recovery without --confirm or --plan). */
  asksApproval?: boolean;
}): Promise<void> {
  const { client, out, workflow, workflowId } = options;
  const typedSearchAttributes = await searchAttributesFor(client, workflow.name, options.args);
  const handle = await startUnique(client, workflowId, () =>
    client.workflow.start(workflow, {
      taskQueue: options.taskQueue,
      workflowId,
      args: options.args,
      workflowIdConflictPolicy: 'FAIL',
      ...uiMetadata(workflow.name, workflowId, options.args),
      ...(typedSearchAttributes ? { typedSearchAttributes } : {}),
    }),
  );
  const runId = handle.firstExecutionRunId;
  out.say(`started ${workflow.name} as ${workflowId} (run ${runId})`);
  if (options.wait) return followToEnd(out, handle, runId);
  if (options.asksApproval) return interruptible(out, workflowId, () => followToApproval(out, handle, runId));
  out.result(
    { workflowId, runId, status: 'started', ...commandsFor(workflowId) },
    () => `follow it: ${commandsFor(workflowId).watchCommand}`,
  );
}

/** `watch`: follows a run already started, to its end. */
export async function watchRun(client: Client, out: Output, workflowId: string): Promise<void> {
  const handle = client.workflow.getHandle(workflowId);
  const { runId } = await handle.describe();
  return followToEnd(out, handle, runId);
}

const CLOSED_STATUS: Record<string, string> = {
  COMPLETED: 'completed',
  FAILED: 'failed',
  CANCELLED: 'cancelled',
  TERMINATED: 'terminated',
  TIMED_OUT: 'timed out',
  CONTINUED_AS_NEW: 'continued as new',
};

/** A run's state in the CLI's words (describe()'s status names: RUNNING, COMPLETED, …). */
const stateOf = (d: WorkflowExecutionDescription) => CLOSED_STATUS[d.status.name] ?? d.status.name;

/** `status`: the run's state, its steps and what it waits for; exit 4 when that is an approval. */
export async function showStatus(client: Client, out: Output, workflowId: string): Promise<void> {
  const handle = client.workflow.getHandle(workflowId);
  const d = await handle.describe();
  const running = d.status.name === 'RUNNING';
  // The progress needs a worker to answer the query: with none (a worker lost), after 5 s the
  // server's state is enough.
  const progress: Progress | undefined = await Promise.race([
    handle.query(progressQuery).catch(() => undefined),
    new Promise<undefined>((r) => setTimeout(() => r(undefined), 5000).unref()),
  ]);
  const state = running ? (progress?.awaitingApproval ? 'awaiting-approval' : 'running') : stateOf(d);
  const next = commandsFor(workflowId);
  const retrying = running ? retryingActivities(d) : [];
  const meters = running ? activityMeters(d) : [];
  out.result(
    {
      workflowId,
      runId: d.runId,
      workflowType: d.type,
      status: state,
      startedAt: d.startTime.toISOString(),
      closedAt: d.closeTime?.toISOString(),
      progress,
      retrying,
      meters,
      ...(running ? next : {}),
    },
    () => [
      `${workflowId} (${d.type}, run ${d.runId}): ${state}, started ${d.startTime.toISOString()}${d.closeTime ? `, closed ${d.closeTime.toISOString()}` : ''}`,
      ...(progress?.steps ?? []).map(stepLine),
      ...(running && !progress
        ? ['  no worker answered the progress query within 5 s: is a worker polling KOHAKKU_DR_TASK_QUEUE?']
        : []),
      ...(progress?.waitingFor && running ? [`  waiting for: ${progress.waitingFor}`] : []),
      ...retrying.map(retryLine),
      ...meters.map((m) => meterLine(m.meter)),
      ...(progress?.error ? [`  error: ${progress.error}`] : []),
      ...(progress?.awaitingApproval
        ? [`  approve: ${next.approveCommand} (replaces: ${progress.awaitingApproval.replaces.join('; ')})`]
        : []),
    ],
  );
  if (state === 'awaiting-approval') process.exitCode = exitCode('awaiting-approval');
  else if (!running && state !== 'completed') process.exitCode = exitCode('failed');
}

/**
 * `cancel`: asks a running run to cancel — its cleanup phases still run (the engine releases its
 * locks and removes its staging) — and waits up to `waitSeconds` for it to close.
 */
export async function cancelRun(
  client: Client,
  out: Output,
  workflowId: string,
  waitSeconds: number,
): Promise<void> {
  const handle = client.workflow.getHandle(workflowId);
  const d = await handle.describe();
  if (d.status.name !== 'RUNNING')
    throw new CliError('refused', `${workflowId} is not running (${stateOf(d)}); nothing cancelled`, {
      workflowId,
      runId: d.runId,
      status: stateOf(d),
    });
  await handle.cancel();
  out.say(
    `cancellation requested for ${workflowId} (run ${d.runId}); waiting up to ${waitSeconds} s for its cleanup`,
  );
  const closed = await Promise.race([
    handle.result().then(
      () => 'completed',
      (err) =>
        err instanceof WorkflowFailedError
          ? failureOf(err).type === 'Cancelled'
            ? 'cancelled'
            : 'failed'
          : 'unknown',
    ),
    // unref: a run that closes in time must not keep the CLI waiting for the timer.
    new Promise<undefined>((r) => setTimeout(() => r(undefined), waitSeconds * 1000).unref()),
  ]);
  if (!closed)
    throw new CliError(
      'failed',
      `${workflowId} has not closed within ${waitSeconds} s of the cancellation (its current step may not heartbeat yet); see ${commandsFor(workflowId).statusCommand}, or as a last resort \`temporal workflow terminate --workflow-id ${workflowId}\` (no cleanup)`,
      { workflowId, runId: d.runId, status: 'cancelling' },
    );
  out.result({ workflowId, runId: d.runId, status: closed }, () => `${workflowId}: ${closed}`);
  if (closed !== 'cancelled') process.exitCode = exitCode('failed');
}

/**
 * Hands a "schedule paused" notification to the worker (`deliverNotification`, retried there by
 * Temporal; nothing is sent by a worker without NOTIFY_WEBHOOK_URL). The pause stands whether or
 * not it could be handed over: what went wrong is returned, for a warning.
 */
export async function notifySchedulePaused(
  client: Client,
  scheduleId: string,
  note?: string,
): Promise<string | undefined> {
  const by = operator();
  const at = new Date().toISOString();
  return client.workflow
    .start(deliverNotification, {
      taskQueue: temporalSettings().taskQueue,
      workflowId: `${scheduleId}/notify/schedule-paused/${at}`,
      args: [
        {
          event: 'schedule-paused',
          title: `schedule ${scheduleId} paused by ${by}`,
          lines: [
            ...(note ? [`Note: ${note}`] : []),
            `No backup runs until \`kohakku-dr schedules unpause ${scheduleId}\`.`,
          ],
          workflowId: scheduleId,
        },
      ],
    })
    .then(
      () => undefined,
      (err: Error) => `the "schedule paused" notification was not handed to the worker: ${err.message}`,
    );
}
