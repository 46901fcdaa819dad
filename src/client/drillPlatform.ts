/**
 * What every drill scenario runs on: the embedded stack, the reference Kohakku seeded and
 * running (Controller, Dispatcher, Monitor, agents, its own Temporal) and a kohakku-dr worker,
 * started before the scenario and torn down after it (or kept, with its env file, for --keep).
 */
import type { ReportCheck } from '../domain/reports';
import type { RecoveryEnvelope } from '../workflows/definitions';
import { appendFileSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { startDaemon, workerCommand } from '../infra/processes';
import { referenceModelOn, workerEnvFor } from '../reference/onStack';
import { seedReferenceKohakku } from '../reference/seed';
import { startReferenceService } from '../reference/supervisor';
import { readStack, startStack, stopStack, writeEnvFile, type StackInfo } from '../stack/stack';
import {
  BALLAST_TABLE,
  DRILL_SIZES,
  peakRssMiB,
  seedBallast,
  seedBigObjects,
  type DrillSize,
} from './drillLarge';
import { connect } from './temporal';

export interface DrillOptions {
  tasks: number;
  /** `default`, or `large`: 100,000 briefs, 5 GiB of incompressible rows, two 100 MiB objects (drillLarge.ts). */
  size?: DrillSize;
  keep: boolean;
  /** `full-cluster` (default) or `pitr`. */
  scenario?: 'full-cluster' | 'pitr';
  /** Seconds the running agents get to check back before their tasks are re-dispatched. */
  grace: number;
}

export interface DrillReport {
  ok: boolean;
  lines: string[];
  /** What was checked of the end state (the ✔/✘ lines). */
  checks: ReportCheck[];
  /** The drill's recovery: its result's envelope (steps, RTO, RPO, backup, approvals). */
  recovery: RecoveryEnvelope;
  /** The drill's scenario, for its report: `full-cluster`, `pitr`. */
  scenario: string;
  /** Where the drill's signed report went (src/client/evidence.ts). */
  evidence?: { json: string; markdown: string; signedBy?: string };
}

let sink: (line: string) => void = (line) => console.log(line);
/** The drill's running commentary (the CLI sends it to stderr under --json). */
export const say = (line: string) => sink(line);
export function sayTo(to: (line: string) => void): void {
  sink = to;
}

export { withStackDb as withDb } from '../stack/stack';

async function waitForWorker(log: string): Promise<void> {
  const deadline = Date.now() + 60000;
  while (!readFileSync(log, 'utf8').includes('worker polling')) {
    if (Date.now() > deadline) throw new Error(`the worker did not start; see ${log}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** What a drill scenario runs on: the stack, the reference Kohakku and a kohakku-dr worker. */
export interface DrillPlatform {
  stack: StackInfo;
  model: Awaited<ReturnType<typeof referenceModelOn>>;
  env: Record<string, string>;
  client: Awaited<ReturnType<typeof connect>>['client'];
  options: DrillOptions;
  t0: number;
}

/**
 * Starts the embedded stack, seeds the reference Kohakku, starts its services and a worker, runs
 * `scenario` on them, and tears everything down (or keeps it, with its env file, for `--keep`).
 */
export async function withDrillPlatform(
  options: DrillOptions,
  scenario: (platform: DrillPlatform) => Promise<DrillReport>,
): Promise<DrillReport> {
  const t0 = Date.now();
  say(
    '① starting the embedded stack (PostgreSQL, Redis with AOF, MinIO for Kohakku, VersityGW for the backups, a replica directory, Temporal dev server for DR)',
  );
  const stack = await startStack({ withTemporalUi: true, log: (l) => say(`   ${l}`) });
  // Stopped once: an interrupt stops the stack while the drill's steps fail on it and reach the
  // `finally` below, which must wait for that same stop (a second one raced the first's removal
  // of the stack's directory, left half of it behind and ended in ENOENT).
  let stopping: Promise<void> | undefined;
  const stopOnce = () => (stopping ??= stopStack(readStack(stack.dir)));
  const stopOnSignal = () => {
    say('interrupted: stopping the stack');
    void stopOnce().finally(() => process.exit(130));
  };
  process.once('SIGINT', stopOnSignal);
  process.once('SIGTERM', stopOnSignal);
  say(`   stack in ${stack.dir}; Temporal UI http://127.0.0.1:${stack.temporal.uiPort}`);
  let envFileWritten: string | undefined;
  try {
    const model = await referenceModelOn(stack);
    say(`② seeding the reference Kohakku with ${options.tasks} tasks`);
    // The point-in-time scenario rewinds the bucket too: it needs versioning on.
    const size = DRILL_SIZES[options.size ?? 'default'];
    const seed = await seedReferenceKohakku(model, {
      tasks: options.tasks,
      briefs: size.briefs,
      versioning: options.scenario === 'pitr',
    });
    say(`   ${JSON.stringify(seed.byStatus)}; ${seed.briefs} briefs, ${seed.skills} skills`);
    if (size.ballastMiB > 0) {
      say(
        `   ${size.ballastMiB} MiB of incompressible rows in ${model.postgres.controllerDb}.${BALLAST_TABLE}`,
      );
      await seedBallast(stack, model.postgres.controllerDb, size.ballastMiB, say);
    }
    if (size.bigObjects) say(`   100 MiB objects: ${(await seedBigObjects(model)).join(', ')}`);
    for (const service of ['controller', 'dispatcher', 'monitor', 'agents', 'temporal'] as const) {
      await startReferenceService(model, service, {
        pidsFile: stack.extraPidsFile,
        monitorIntervalSeconds: 5,
        agentIntervalSeconds: size.agentIntervalSeconds,
      });
    }
    const env: Record<string, string> = {
      ...workerEnvFor(stack, model),
      KOHAKKU_DR_TASK_QUEUE: 'kohakku-dr',
    };
    if (options.keep) envFileWritten = await writeEnvFile(stack, env);
    const workerLog = path.join(stack.dir, 'worker.log');
    const launch = workerCommand();
    const worker = startDaemon('worker', launch.file, launch.args, {
      log: workerLog,
      env: { ...env, ...launch.env },
    });
    appendFileSync(stack.extraPidsFile, `${worker.pid}\n`);
    await waitForWorker(workerLog);
    say(
      `   Controller, Dispatcher, Monitor, agents, Kohakku's Temporal and the kohakku-dr worker run (worker log ${workerLog})`,
    );
    const { client, close } = await connect({
      address: env.TEMPORAL_ADDRESS!,
      namespace: 'default',
      taskQueue: 'kohakku-dr',
    });
    try {
      const report = await scenario({ stack, model, env, client, options, t0 });
      const peak = peakRssMiB(worker.pid);
      if (peak !== undefined)
        report.lines.push(`  the kohakku-dr worker's peak resident memory: ${peak} MiB (goal ≤ 512 MiB)`);
      return report;
    } finally {
      await close();
    }
  } finally {
    if (options.keep) {
      say(
        `stack kept running in ${stack.dir} (Temporal UI http://127.0.0.1:${stack.temporal.uiPort}); stop it with: kohakku-dr stack stop ${stack.dir}`,
      );
      if (envFileWritten)
        say(
          `settings for the worker, the kohakku-dr CLI and the temporal CLI: source ${envFileWritten} (or: kohakku-dr stack env ${stack.dir})`,
        );
    } else {
      await stopOnce();
    }
    process.removeListener('SIGINT', stopOnSignal);
    process.removeListener('SIGTERM', stopOnSignal);
  }
}
