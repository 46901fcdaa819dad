/**
 * The full-cluster recovery against a shell script of the runbook's commands
 * (scripts/baselines/full-cluster.sh), on the same stack and the same reference Kohakku with its
 * services and agents running: before every run the whole cluster is lost for real (services
 * SIGKILLed, both databases dropped, Redis killed with its files, Kohakku's S3 server killed
 * with its data), then one side recovers it. Both wait the same check-in grace period, and both
 * must end in the same state (lost tasks pending, every pending task queued once) or the
 * benchmark fails.
 *
 * Besides the RTO ratio it reports where kohakku-dr's time went, from the workflow's history:
 * inside activities (the tools: pg_restore, the copies, the checks), in retried attempts (a
 * service not answering yet), in the grace timer, and the rest — orchestration (scheduling,
 * history, polling between steps) — and its longest steps.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { Client } from '@temporalio/client';
import { Redis } from 'ioredis';
import type { Config } from '../config';
import { createCommandRunner } from '../infra/exec';
import { signalDaemon } from '../infra/processes';
import { referenceScript, seededStatus, type ReferenceModel } from '../reference/model';
import { servicePid, startReferenceService, stopReferenceServices } from '../reference/supervisor';
import { killRedis, loseS3Server, readStack, withStackDb, type StackInfo } from '../stack/stack';
import { fullCluster, nightlyBackup } from '../workflows';
import type { FullClusterResult } from '../workflows/fullCluster';
import { baselineScriptEnv, benchWorker, compare, median, type Comparison } from './compare';

type HistoryEvent = NonNullable<
  Awaited<ReturnType<ReturnType<Client['workflow']['getHandle']>['fetchHistory']>>['events']
>[number];

const ms = (t: HistoryEvent['eventTime']) =>
  Number(t?.seconds ?? 0) * 1000 + Math.floor((t?.nanos ?? 0) / 1e6);

/** Total length of the union of intervals. */
function covered(intervals: [number, number][]): number {
  let total = 0;
  let end = -Infinity;
  for (const [a, b] of [...intervals].sort((x, y) => x[0] - y[0])) {
    if (b <= end) continue;
    total += b - Math.max(a, end);
    end = b;
  }
  return total;
}

interface TimeShares {
  wallMs: number;
  /** Inside activities (their last attempt). */
  activityMs: number;
  /** Earlier attempts of retried activities and the pauses between them (e.g. a service not up yet). */
  retryMs: number;
  /** In the workflow's timers (the check-in grace). */
  timerMs: number;
}

/** Where a run's time went, from its history; the rest of `wallMs` is orchestration. */
export function timeShares(events: HistoryEvent[]): TimeShares {
  const scheduled = new Map<string, number>();
  const retry: [number, number][] = [];
  const started = new Map<string, number>();
  const timers = new Map<string, number>();
  const activity: [number, number][] = [];
  const timer: [number, number][] = [];
  for (const e of events) {
    const at = ms(e.eventTime);
    if (e.activityTaskScheduledEventAttributes) scheduled.set(String(e.eventId), at);
    const start = e.activityTaskStartedEventAttributes;
    if (start) {
      // The history keeps the last attempt's start only: the attempts before it happened since scheduling.
      if ((start.attempt ?? 1) > 1) retry.push([scheduled.get(String(start.scheduledEventId)) ?? at, at]);
      started.set(String(start.scheduledEventId), at);
    }
    const closed =
      e.activityTaskCompletedEventAttributes ??
      e.activityTaskFailedEventAttributes ??
      e.activityTaskTimedOutEventAttributes;
    if (closed) {
      const from = started.get(String(closed.scheduledEventId));
      if (from !== undefined) activity.push([from, at]);
    }
    if (e.timerStartedEventAttributes) timers.set(e.timerStartedEventAttributes.timerId ?? '', at);
    const fired = e.timerFiredEventAttributes;
    if (fired) {
      const from = timers.get(fired.timerId ?? '');
      if (from !== undefined) timer.push([from, at]);
    }
  }
  const wallMs = ms(events[events.length - 1]?.eventTime) - ms(events[0]?.eventTime);
  return { wallMs, activityMs: covered(activity), retryMs: covered(retry), timerMs: covered(timer) };
}

/** How long one run of a baseline script may take. */
const SCRIPT_TIMEOUT_MS = 20 * 60_000;

export async function fullClusterComparison(options: {
  stack: StackInfo;
  model: ReferenceModel;
  config: Config;
  rounds: number;
  /** How often the live agents check in, and the grace period both sides wait for them. */
  agentIntervalSeconds: number;
  graceSeconds: number;
}): Promise<Comparison> {
  const { stack, model, config, rounds, agentIntervalSeconds, graceSeconds: GRACE_SECONDS } = options;
  if (config.backupStore.kind !== 's3') throw new Error('the bench stack backs up to S3');
  // The seed's in-flight tasks as they were before the requeue comparison sent them all back to
  // pending (it keeps them in bench_running): live ones with agents checking in, lost ones without.
  // Run alone (`--only full-cluster`), the seed's tasks are still as seeded.
  await withStackDb(stack, config.postgres.databases.controller, async (c) => {
    const kept = await c.query<{ t: string | null }>(`SELECT to_regclass('bench_running')::text AS t`);
    if (kept.rows[0]?.t)
      await c.query(
        `UPDATE tasks_task t SET status = 'running', container = r.container, progress = r.progress FROM bench_running r WHERE t.id = r.id`,
      );
  });
  for (const service of ['controller', 'dispatcher', 'monitor', 'agents', 'temporal'] as const)
    await startReferenceService(model, service, {
      pidsFile: stack.extraPidsFile,
      monitorIntervalSeconds: 5,
      agentIntervalSeconds,
    });
  const bench = await benchWorker(config, 'kohakku-dr-bench-cluster');
  const exec = createCommandRunner();
  const work = path.join(stack.dir, 'bench-cluster');
  const stamp = 'cluster';
  const scriptEnv = baselineScriptEnv({ stack, config, work, stamp });
  const script = (name: string, extra: Record<string, string>) =>
    exec('bash', [path.resolve(__dirname, '../../scripts/baselines', name)], {
      isolatedEnv: true,
      env: { ...scriptEnv, ...extra },
      // A wedged baseline (an rclone retrying against a broken server) fails the comparison
      // instead of holding the benchmark forever.
      signal: AbortSignal.timeout(SCRIPT_TIMEOUT_MS),
    });
  const shares: TimeShares[] = [];
  const stepTimes: FullClusterResult['steps'][] = [];
  /** The shell script's own step times, per run (its STEP_TIMES file). */
  const scriptSteps: { wallMs: number; steps: [string, number][] }[] = [];
  let run = 0;
  try {
    return await bench.runUntil(async () => {
      // Each side's backup, once: the nightly backup workflow, and the runbook's cron entries.
      const nightly = await bench.client.workflow.execute(nightlyBackup, {
        taskQueue: bench.taskQueue,
        workflowId: 'bench-cluster-nightly',
        args: [],
      });
      await fs.mkdir(work, { recursive: true });
      await script('nightly-cron.sh', { REDIS_PORT: String(readStack(stack.dir).redis.port) });

      const disaster = async () => {
        for (const service of ['controller', 'dispatcher', 'monitor', 'temporal'] as const) {
          const pid = servicePid(model.stateDir, service);
          if (pid) signalDaemon(pid, 'SIGKILL');
        }
        for (const db of [model.postgres.controllerDb, model.postgres.dispatcherDb])
          await withStackDb(stack, 'postgres', (c) =>
            c.query(`DROP DATABASE IF EXISTS ${c.escapeIdentifier(db)} WITH (FORCE)`),
          );
        await killRedis(stack.dir, { deleteFiles: true });
        await loseS3Server(stack.dir, 'minio');
        await fs.rm(work, { recursive: true, force: true });
        await fs.mkdir(work, { recursive: true });
      };
      const ours = async () => {
        const handle = await bench.client.workflow.start(fullCluster, {
          taskQueue: bench.taskQueue,
          workflowId: `bench-cluster-recover-${run++}`,
          args: [
            {
              checkInGraceSeconds: GRACE_SECONDS,
              startDeadlineSeconds: 60,
              registrationDeadlineSeconds: 20,
              incidentAt: new Date().toISOString(),
            },
          ],
        });
        const result = (await handle.result()) as FullClusterResult;
        shares.push(timeShares((await handle.fetchHistory()).events ?? []));
        stepTimes.push(result.steps);
        await expectRecovered('kohakku-dr');
      };
      const baseline = async () => {
        const timesFile = path.join(stack.dir, `bench-cluster-steps-${scriptSteps.length}.txt`);
        const t0 = Date.now();
        await script('full-cluster.sh', {
          STEP_TIMES: timesFile,
          REDIS_PORT: String(readStack(stack.dir).redis.port),
          SERVICECTL: `${process.execPath} ${referenceScript('servicectl')} ${model.stateDir}`,
          HEALTH_URLS: (['controller', 'dispatcher', 'monitor'] as const)
            .map((s) => `http://127.0.0.1:${model.ports[s]}/healthz`)
            .join(' '),
          GRACE_SECONDS: String(GRACE_SECONDS),
          QUEUE_KEY: config.model.queueKey,
          QUEUE_DEPTH_KEY: config.model.queueDepthKey,
          AGENT_KEY_PREFIX: config.model.agentKeyPrefix,
        });
        const wallMs = Date.now() - t0;
        const lines = (await fs.readFile(timesFile, 'utf8')).trim().split('\n');
        scriptSteps.push({
          wallMs,
          steps: lines.map((l) => {
            const [step, seconds] = l.split(' ');
            return [step!, Number(seconds)];
          }),
        });
        await expectRecovered('the shell script');
      };
      /** Both sides must leave the same state: lost tasks pending, each pending task queued once. */
      const expectRecovered = async (who: string) => {
        const tasks = await withStackDb(stack, model.postgres.controllerDb, async (c) => {
          return (await c.query<{ id: string; status: string }>('SELECT id, status FROM tasks_task')).rows;
        });
        const redis = new Redis({ port: readStack(stack.dir).redis.port });
        try {
          const queue = await redis.lrange(config.model.queueKey, 0, -1);
          const pending = tasks.filter((t) => t.status === 'pending');
          const lostStill = tasks.filter(
            (t) => seededStatus(Number(t.id)) === 'running-lost' && t.status !== 'pending',
          );
          const problems = [
            ...(queue.length !== pending.length || new Set(queue).size !== queue.length
              ? [`queue holds ${queue.length} ids for ${pending.length} pending tasks`]
              : []),
            ...(lostStill.length > 0 ? [`${lostStill.length} lost tasks are not pending`] : []),
          ];
          if (problems.length > 0)
            throw new Error(`${who} did not recover the cluster: ${problems.join('; ')}`);
        } finally {
          redis.disconnect();
        }
      };
      const comparison = await compare({
        name: 'full-cluster recovery (RTO)',
        data: `the whole cluster lost, ${GRACE_SECONDS} s check-in grace on both sides`,
        rounds,
        reset: disaster,
        ours: { what: `fullCluster workflow from verified set ${nightly.set.id}`, run: ours },
        baselines: [
          {
            what: "the runbook's commands in a shell script (pg_restore -j 2, rclone sync, …)",
            run: baseline,
          },
        ],
      });
      // The median run's shares (by wall time).
      const wall = median(shares.map((s) => s.wallMs));
      const medianShares = shares.find((s) => s.wallMs === wall) ?? shares[0]!;
      const { activityMs: inActivities, retryMs: inRetries, timerMs: inTimers } = medianShares;
      const orchestration = Math.max(0, wall - inActivities - inRetries - inTimers);
      comparison.notes = [
        `full-cluster recovery: of kohakku-dr's ${(wall / 1000).toFixed(1)} s (median, from its history) ` +
          `${(inActivities / 1000).toFixed(1)} s were spent in activities (the tools and checks), ` +
          `${(inRetries / 1000).toFixed(1)} s in retried attempts and their pauses, ` +
          `${(inTimers / 1000).toFixed(1)} s in the check-in grace timer and ` +
          `${(orchestration / 1000).toFixed(1)} s (${Math.round((orchestration / wall) * 100)} %) orchestrating between them.`,
      ];
      // Where kohakku-dr's time went in the median run: every step that took time, in order
      // (side-by-side branches overlap), beside the shell script's steps below.
      const medianRun = stepTimes[shares.indexOf(medianShares)] ?? [];
      const steps = medianRun
        .filter((st) => (st.durationMs ?? 0) >= 100)
        .map((st) => `${st.name} ${(st.durationMs! / 1000).toFixed(1)} s`);
      comparison.notes.push(`full-cluster recovery: kohakku-dr's steps (median run): ${steps.join(', ')}.`);
      // Where the script's time went, in its median run: the runbook's six steps one after another.
      const scriptWall = median(scriptSteps.map((r) => r.wallMs));
      const scriptMedian = scriptSteps.find((r) => r.wallMs === scriptWall) ?? scriptSteps[0];
      if (scriptMedian)
        comparison.notes.push(
          `full-cluster recovery: the shell script's steps (median run): ${scriptMedian.steps
            .map(([step, seconds]) => `${step} ${seconds.toFixed(1)} s`)
            .join(', ')}.`,
        );
      for (const note of comparison.notes) console.log(`   ${note}`);
      return comparison;
    });
  } finally {
    await bench.close();
    await stopReferenceServices(model.stateDir);
  }
}
