/**
 * Full cluster on the reference model (10,000 tasks: Postgres dropped, Redis killed with its
 * files deleted, Kohakku's S3 server SIGKILLed with its data directory deleted, Controller,
 * Dispatcher, Monitor and Kohakku's Temporal killed — only the live agents keep running), and
 * the crash matrix on it: the same recovery again and again, each time with a crash at another
 * point (harness/crashes.ts) — the worker SIGKILLed as an activity is scheduled, after it
 * completes, halfway through the long ones, during the check-in grace timer, at random times;
 * the Temporal server SIGKILLed and started again on its SQLite file. Every run must end
 * completed and identical: every task but the lost ones, the Dispatcher's tables and the skills
 * as the backup has them, each lost task re-dispatched exactly once, every live task still
 * running in its container, no staging or moved-aside database, backup lock, target lock or
 * work file left behind — and a lost worker must cost at most 30 s.
 *
 * The normal test command runs the crash-free recovery, three kill points and a second recovery
 * over live databases. `bash scripts/crash-matrix` runs every kill point the crash-free run's
 * history gives plus random ones, and prints kill points tried / recovered / identical.
 *
 * Then the fault matrix: the same recovery meeting a fault inside what it restores (a second
 * database failing verification, a full disk, Redis refusing writes, a swap refused, the backup
 * store answering 503 or nothing) — each run ending verified, or refused with production exactly
 * as it was and a message saying so. Three faults in the normal suite, all six with
 * `bash scripts/fault-matrix`.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { WorkflowFailedError, type Client, type WorkflowHandle } from '@temporalio/client';
import { Redis } from 'ioredis';
import { containerName, seededStatus } from '../src/reference/model';
import { crashTemporalServer } from '../src/stack/stack';
import { LOCK_PREFIX, postgresManifestKey } from '../src/domain/layout';
import { fullCluster, nightlyBackup } from '../src/workflows';
import type { FullClusterResult } from '../src/workflows/fullCluster';
import type { PostgresManifest } from '../src/domain/manifests';
import {
  activitiesOf,
  describePoint,
  lostWorkerCost,
  momentOf,
  runningActivities,
  seededRandom,
  type ActivityRun,
  type KillPoint,
  type Trigger,
} from './harness/crashes';
import { startFaultyS3, type FaultyS3 } from './harness/faultyS3';
import {
  backupObject,
  backupS3Client,
  putBackupObject,
  clusterFingerprints,
  databases,
  dropDatabase,
  failureType,
  freshKohakku,
  health,
  loseWholeCluster,
  pgClient,
  sql,
  startWorker,
  stopKohakku,
  temporalClient,
  testStack,
  type TestKohakku,
  type WorkerProcess,
} from './harness/kohakku';

const execFileAsync = promisify(execFile);

/** `all` (scripts/crash-matrix): every kill point; otherwise the normal suite's subset. */
const ALL = process.env.KOHAKKU_DR_CRASH_MATRIX === 'all';
const RANDOM_KILLS = Number(process.env.KOHAKKU_DR_CRASH_RANDOM ?? (ALL ? 6 : 0));
const SEED = Number(process.env.KOHAKKU_DR_CRASH_SEED ?? Date.now() % 1000000);
/** What the recovery of a lost worker may cost: the heartbeat timeout (20 s), the retry's 2 s, the new worker's start. */
const LOST_WORKER_LIMIT_SECONDS = 30;
/** Tasks in the reference model (a multiple of 10: seededStatus gives each tenth its status). */
const TASKS = Number(process.env.KOHAKKU_DR_CRASH_TASKS ?? 10000);
const LOST = { inFlight: (TASKS * 3) / 10, checkedBack: (TASKS * 2) / 10, requeued: TASKS / 10 };
const GRACE_SECONDS = 6;
/** An activity that took this long in the crash-free run also gets a kill point halfway through it. */
const INSIDE_MIN_MS = 1000;

let k: TestKohakku;
let worker: WorkerProcess;
let client: Client;
let taskQueue: string;
let before: Awaited<ReturnType<typeof clusterFingerprints>>;
let backupId: string;
/** From the crash-free run: the activities in order, and how long the whole recovery took. */
let baseline: { activities: ActivityRun[]; millis: number } | undefined;
let runs = 0;

beforeAll(async () => {
  k = await freshKohakku(
    'cluster',
    { tasks: TASKS, briefs: 300 },
    {
      monitor: { monitorIntervalSeconds: 2 },
      agents: { agentIntervalSeconds: 1 },
      temporal: {},
    },
  );
  worker = await startWorker(k.workerEnv);
  client = await temporalClient(k.stack);
  taskQueue = k.workerEnv.KOHAKKU_DR_TASK_QUEUE!;
  const nightly = await client.workflow.execute(nightlyBackup, {
    taskQueue,
    workflowId: 'test-cluster-nightly',
  });
  backupId = nightly.set.id;
  before = await clusterFingerprints(k);
});

afterAll(async () => {
  await worker?.stop();
  if (k) await stopKohakku(k);
});

const sleep = (millis: number) => new Promise((r) => setTimeout(r, millis));

/** The files in the worker's work directory, relative to it. */
async function workFiles(): Promise<string[]> {
  const workDir = k.workerEnv.KOHAKKU_DR_WORK_DIR ?? `${k.stack.dir}/dr-work`;
  return (await fs.readdir(workDir, { recursive: true, withFileTypes: true }).catch(() => []))
    .filter((e) => !e.isDirectory())
    .map((e) => path.relative(workDir, path.join(e.parentPath, e.name)));
}

function startRecovery(name: string, extra: Record<string, unknown> = {}): Promise<WorkflowHandle> {
  runs += 1;
  return client.workflow.start(fullCluster, {
    taskQueue,
    workflowId: `test-cluster-${runs}-${name}`,
    args: [
      {
        checkInGraceSeconds: GRACE_SECONDS,
        startDeadlineSeconds: 30,
        registrationDeadlineSeconds: 10,
        ...extra,
      },
    ],
  });
}

/** The result, riding out a Temporal server that is down for a while. */
async function outcomeOf(handle: WorkflowHandle): Promise<{ result?: FullClusterResult; error?: string }> {
  const deadline = Date.now() + 300000;
  for (;;) {
    try {
      return { result: (await handle.result()) as FullClusterResult };
    } catch (err) {
      if (err instanceof WorkflowFailedError)
        return { error: `${failureType(err) ?? 'failed'}: ${err.cause?.message ?? err.message}` };
      if (Date.now() > deadline) throw err;
      await sleep(1000);
    }
  }
}

/**
 * Everything a recovered cluster must be, checked against the live services independently of
 * the code under test; what is not, as sentences (none: identical).
 */
async function differences(result: FullClusterResult, filesBefore: Set<string>): Promise<string[]> {
  const found: string[] = [];
  const same = (what: string, actual: unknown, expected: unknown) => {
    if (JSON.stringify(actual) !== JSON.stringify(expected))
      found.push(`${what}: ${JSON.stringify(actual)}, expected ${JSON.stringify(expected)}`);
  };
  same('backup', result.backupId, backupId);
  same('lost tasks', result.lostTasks, LOST);
  same('data but the lost tasks', await clusterFingerprints(k), before);
  // Lost tasks pending again and queued exactly once; live tasks still running in their container.
  const rows = await sql<{ id: string; status: string; container: string | null }>(
    k.stack,
    k.model.postgres.controllerDb,
    `SELECT id, status, container FROM tasks_task WHERE id % 10 IN (7, 8, 9)`,
  );
  let wrongLost = 0;
  let touchedLive = 0;
  for (const row of rows) {
    const lost = seededStatus(Number(row.id)) === 'running-lost';
    if (lost && (row.status !== 'pending' || row.container !== null)) wrongLost += 1;
    if (!lost && (row.status !== 'running' || row.container !== containerName(Number(row.id))))
      touchedLive += 1;
  }
  same('lost tasks not pending again', wrongLost, 0);
  same('live tasks touched', touchedLive, 0);
  const redis = new Redis({ port: testStack().redis.port });
  try {
    const queue = await redis.lrange('kohakku:queue:pending', 0, -1);
    same('tasks queued more than once', queue.length - new Set(queue).size, 0);
    same('queue length', queue.length, LOST.inFlight + LOST.requeued);
    const queued = new Set(queue);
    const lostIds = Array.from({ length: TASKS }, (_, i) => i + 1).filter(
      (id) => seededStatus(id) === 'running-lost',
    );
    same('lost tasks not queued', lostIds.filter((id) => !queued.has(String(id))).length, 0);
  } finally {
    redis.disconnect();
  }
  // Nothing left behind.
  same(
    'staging or moved-aside databases',
    (await databases(k.stack)).filter((d) => d.includes('__dr_')),
    [],
  );
  const locks: string[] = [];
  const bucket = k.workerEnv.BACKUP_S3_BUCKET ?? 'kohakku-backups';
  for await (const o of backupS3Client(k.stack).listObjectsV2(bucket, LOCK_PREFIX, true))
    if (o.name) locks.push(o.name);
  same('backup locks', locks, []);
  const targetLocks: string[] = [];
  for await (const w of client.workflow.list({
    query: `WorkflowType = 'targetLock' AND ExecutionStatus = 'Running'`,
  }))
    targetLocks.push(w.workflowId);
  same('target locks', targetLocks, []);
  // Its directories stay; a file that appeared during the run is a crashed attempt's download,
  // spool or index (other test files on the shared stack leave theirs: README, crash matrix).
  same(
    'work files left',
    (await workFiles()).filter((f) => !filesBefore.has(f)),
    [],
  );
  for (const service of ['controller', 'dispatcher', 'monitor'] as const)
    same(`${service} health`, await health(k.model.ports[service]).catch((e: Error) => e.message), 200);
  return found;
}

interface Outcome {
  point: string;
  fired: boolean;
  recovered: boolean;
  identical: boolean;
  problems: string[];
  seconds: number;
  lostWorkerSeconds?: number;
}

/** One recovery of the whole cluster with a crash at `point`. */
async function crashRun(point: KillPoint, name: string): Promise<Outcome> {
  const filesBefore = new Set(await workFiles());
  await loseWholeCluster(k);
  const startedAt = Date.now();
  const handle = await startRecovery(name);
  const fired = await momentOf(client, handle, point.trigger, startedAt);
  let lostWorkerSeconds: number | undefined;
  if (fired && point.victim === 'worker') {
    const wasRunning = await runningActivities(handle);
    await worker.kill();
    const killedAt = Date.now();
    worker = await startWorker(k.workerEnv);
    lostWorkerSeconds = await lostWorkerCost(handle, wasRunning, killedAt);
  } else if (fired) {
    await crashTemporalServer(k.stack.dir, { downMs: 3000 });
  }
  const { result, error } = await outcomeOf(handle);
  const problems = result ? await differences(result, filesBefore) : [error!];
  if (lostWorkerSeconds !== undefined && lostWorkerSeconds > LOST_WORKER_LIMIT_SECONDS)
    problems.push(
      `a lost worker cost ${lostWorkerSeconds.toFixed(1)} s (limit ${LOST_WORKER_LIMIT_SECONDS} s)`,
    );
  if (worker.child.exitCode !== null || worker.child.signalCode !== null) {
    problems.push(
      `the worker exited (${worker.child.exitCode ?? worker.child.signalCode}): ${worker.output().slice(-2000)}`,
    );
    worker = await startWorker(k.workerEnv);
  }
  return {
    point: describePoint(point),
    fired,
    recovered: Boolean(result),
    identical: Boolean(result) && problems.length === 0,
    problems,
    seconds: (Date.now() - startedAt) / 1000,
    lostWorkerSeconds,
  };
}

/** The kill points: every one the crash-free run's history gives (ALL), or the normal suite's three. */
function killPoints(activities: ActivityRun[], millis: number): KillPoint[] {
  const longest = [...activities].sort((a, b) => b.millis - a.millis)[0];
  const inside = (a: ActivityRun) => ({
    at: 'inside' as const,
    activity: a.activity,
    afterMs: Math.round(a.millis / 2),
  });
  const timer = { at: 'timer' as const, afterMs: (GRACE_SECONDS * 1000) / 2 };
  if (!ALL)
    return [
      { victim: 'worker', trigger: { at: 'scheduled', activity: 'swapInStaging' } },
      { victim: 'worker', trigger: inside(longest) },
      { victim: 'temporal', trigger: timer },
    ];
  const points: KillPoint[] = [];
  for (const a of activities) {
    points.push({ victim: 'worker', trigger: { at: 'scheduled', activity: a.activity } });
    if (a.millis >= INSIDE_MIN_MS) points.push({ victim: 'worker', trigger: inside(a) });
    points.push({ victim: 'worker', trigger: { at: 'completed', activity: a.activity } });
  }
  points.push({ victim: 'worker', trigger: timer });
  const random = seededRandom(SEED);
  for (let i = 0; i < RANDOM_KILLS; i++)
    points.push({ victim: 'worker', trigger: { at: 'time', afterMs: Math.round(random() * 0.9 * millis) } });
  points.push(
    { victim: 'temporal', trigger: { at: 'scheduled', activity: 'restoreIntoStaging' } },
    { victim: 'temporal', trigger: inside(longest) },
    { victim: 'temporal', trigger: timer },
    { victim: 'temporal', trigger: { at: 'scheduled', activity: 'redispatchPendingTasks' } },
  );
  return points;
}

jest.setTimeout(300000);

test('full cluster loss: lost tasks re-dispatched exactly once, live tasks untouched, data identical to the backup', async () => {
  const filesBefore = new Set(await workFiles());
  // The disaster: everything but the agents.
  await loseWholeCluster(k);
  const startedAt = Date.now();
  const handle = await startRecovery('recovery');
  const result = (await handle.result()) as FullClusterResult;
  baseline = { activities: await activitiesOf(handle), millis: Date.now() - startedAt };

  expect(result.objectStoreServer).toMatchObject({ restarted: true, healthy: true });
  expect(result.redis.recoveredFrom).toBe('its own AOF/RDB');
  expect(result.objects.skippedCompletedBriefs).toBe(120); // of 300 briefs: those of completed tasks
  expect(result.services.map((s) => s.service)).toEqual(['controller', 'dispatcher', 'temporal']);
  expect(result.measurements.rpoSeconds).toBeGreaterThan(0);
  expect(await differences(result, filesBefore)).toEqual([]);
});

test(
  `crash matrix (${ALL ? 'every kill point' : 'a subset; all of it: bash scripts/crash-matrix'}): each run completes, identical`,
  async () => {
    expect(baseline).toBeDefined();
    const points = killPoints(baseline!.activities, baseline!.millis);
    const say = (line: string) => process.stderr.write(`[crash-matrix] ${line}\n`);
    say(
      `${points.length} kill points on a ${(baseline!.millis / 1000).toFixed(1)} s recovery of ${baseline!.activities.length} activities; random seed ${SEED}`,
    );
    const outcomes: Outcome[] = [];
    for (const [i, point] of points.entries()) {
      const o = await crashRun(point, `crash-${i + 1}`);
      outcomes.push(o);
      say(
        `${String(i + 1).padStart(3)}. ${o.point}: ${o.fired ? '' : 'NOT REACHED; '}${o.recovered ? 'recovered' : 'FAILED'}, ${o.identical ? 'identical' : 'DIFFERENT'}` +
          `${o.lostWorkerSeconds !== undefined ? `, lost worker cost ${o.lostWorkerSeconds.toFixed(1)} s` : ''}, ${o.seconds.toFixed(1)} s` +
          `${o.problems.length ? `\n       ${o.problems.join('\n       ')}` : ''}`,
      );
    }
    const costs = outcomes.flatMap((o) => (o.lostWorkerSeconds === undefined ? [] : [o.lostWorkerSeconds]));
    say(
      `kill points tried ${outcomes.length}, reached ${outcomes.filter((o) => o.fired).length}, recovered ${outcomes.filter((o) => o.recovered).length}, identical ${outcomes.filter((o) => o.identical).length}` +
        ` (worker ${points.filter((p) => p.victim === 'worker').length}, Temporal server ${points.filter((p) => p.victim === 'temporal').length}` +
        `; lost worker cost at most ${costs.length ? Math.max(...costs).toFixed(1) : '–'} s)`,
    );
    expect(outcomes.filter((o) => !o.fired || !o.identical)).toEqual([]);
  },
  1000 * 60 * 60 * 3,
);

test('a second full recovery over live databases moves them aside, and still queues no task twice', async () => {
  const handle = await startRecovery('again', { checkInGraceSeconds: 1, confirm: true });
  const again = (await handle.result()) as FullClusterResult;
  expect(again.lostTasks.requeued).toBe(LOST.requeued);
  expect(again.redispatch.pushed).toBe(0);
  expect(again.postgres.every((p) => p.movedAsideTo?.includes('__dr_replaced_'))).toBe(true);
  const redis = new Redis({ port: testStack().redis.port });
  expect(await redis.llen('kohakku:queue:pending')).toBe(LOST.inFlight + LOST.requeued);
  redis.disconnect();
});

/** `all` (scripts/fault-matrix): every fault; otherwise the normal suite's subset. */
const ALL_FAULTS = process.env.KOHAKKU_DR_FAULT_MATRIX === 'all';

/**
 * A fault inside what is restored. `over: 'lost'`: the whole cluster is lost first, the fault
 * passes (healed while the recovery runs), and the run must end identical to the backup as in
 * the crash matrix. `over: 'live'`: the recovery runs over the live databases (approved in
 * advance), the fault stays, and the run must fail with `refusal` leaving production exactly as
 * it was: the same databases (same oids, connections allowed), the rows written after the
 * backup, the queue, nothing of the recovery left.
 */
interface Fault {
  name: string;
  over: 'lost' | 'live';
  /** When the fault starts: before the recovery (undefined) or at this moment of it. */
  trigger?: Trigger;
  /** Starts the fault; returns what ends it. */
  inject(): Promise<() => Promise<void>>;
  /** 'lost' faults end this long after they started. */
  healAfterMs?: number;
  /** 'live' faults: the failure `type: message` the run must end with. */
  refusal?: RegExp;
  /** The worker's settings while the fault lasts (it is restarted with them, then without). */
  workerEnv?: () => Promise<Record<string, string>>;
  /** Run once the run is over and the worker is back on its own settings. */
  after?: () => Promise<void>;
}

const FAULT_MARK = 'kohakku_dr_fault_matrix_mark';

/** Production as the 'live' faults must leave it: which databases (by oid), and what was written after the backup. */
async function productionState() {
  const catalog = await sql<{ datname: string; oid: string; datallowconn: boolean }>(
    k.stack,
    'postgres',
    `SELECT datname, oid::text, datallowconn FROM pg_database WHERE datname LIKE 'kohakku%' ORDER BY datname`,
  );
  const marks: Record<string, unknown> = {};
  for (const db of [k.model.postgres.controllerDb, k.model.postgres.dispatcherDb])
    marks[db] = await sql(k.stack, db, `SELECT note FROM ${FAULT_MARK} ORDER BY note`).catch(
      (err: Error) => `unreadable: ${err.message}`,
    );
  return { catalog, marks, queue: await redisAdmin((r) => r.lrange('kohakku:queue:pending', 0, -1)) };
}

async function redisAdmin<T>(fn: (r: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis({ port: testStack().redis.port });
  try {
    return await fn(redis);
  } finally {
    redis.disconnect();
  }
}

const TMPFS_WORK_DIR = () => path.join(testStack().dir, 'tmpfs-work');
const manifestKey = () => postgresManifestKey(backupId);
const manifestBytes = () => backupObject(k.stack, manifestKey());
const putManifest = (body: Buffer) => putBackupObject(k.stack, manifestKey(), body);

async function backupManifest(): Promise<PostgresManifest> {
  return JSON.parse((await manifestBytes()).toString()) as PostgresManifest;
}

/** The backup's Postgres manifest with one dispatcher table's row count off by one (a verification that must fail). */
async function withDispatcherCountOff(): Promise<() => Promise<void>> {
  const original = await manifestBytes();
  const manifest = JSON.parse(original.toString()) as PostgresManifest;
  manifest.databases.find((d) => d.target === 'dispatcher')!.tables[0]!.rows += 1;
  await putManifest(Buffer.from(JSON.stringify(manifest)));
  return () => putManifest(original);
}

let slowS3: FaultyS3 | undefined;

/** The faults only `scripts/fault-matrix` runs (each costs a minute or more). */
const EVERY_OTHER_FAULT: Fault[] = [
  {
    name: 'the live controller database refuses the swap (a session elsewhere holds a lock on it)',
    over: 'live',
    trigger: { at: 'scheduled', activity: 'swapInStaging' },
    async inject() {
      const holder = pgClient(k.stack, 'postgres');
      await holder.connect();
      await holder.query(`SET application_name = 'fault-matrix-lock-holder'`);
      await holder.query('BEGIN');
      await holder.query(
        `COMMENT ON DATABASE "${k.model.postgres.controllerDb}" IS 'held by the fault matrix'`,
      );
      return async () => {
        await holder.query('ROLLBACK');
        await holder.end();
      };
    },
    refusal: /^SwapBlocked: .*gave up after \d+ s .*application "fault-matrix-lock-holder"/,
  },
  {
    name: 'the backup store answers 503 SlowDown to everything for 15 s as the dumps are fetched',
    over: 'lost',
    trigger: { at: 'scheduled', activity: 'preparePostgresRestore' },
    async workerEnv() {
      slowS3 = await startFaultyS3(testStack());
      return { BACKUP_S3_ENDPOINT: slowS3.endpoint };
    },
    async inject() {
      slowS3!.failing = true;
      return async () => {
        slowS3!.failing = false;
      };
    },
    healAfterMs: 15000,
    async after() {
      process.stderr.write(`[fault-matrix]     (the proxy answered ${slowS3?.refused} requests 503)\n`);
      await slowS3?.close();
      slowS3 = undefined;
    },
  },
  {
    name: 'the backup store stops answering for 20 s as the dumps are fetched (its server SIGSTOPped)',
    over: 'lost',
    trigger: { at: 'scheduled', activity: 'preparePostgresRestore' },
    async inject() {
      const pid = testStack().backupS3.pid;
      process.kill(pid, 'SIGSTOP');
      return async () => {
        process.kill(pid, 'SIGCONT');
      };
    },
    healAfterMs: 20000,
  },
];

const FAULTS: Fault[] = [
  {
    name: 'the second database fails verification (the controller verified)',
    over: 'live',
    inject: withDispatcherCountOff,
    refusal: /^RestoreVerificationFailed: .*kohakku-dispatcher/,
  },
  {
    // Each dump fits, both do not: the second download finds the disk full (or, checked first, too small).
    name: 'the disk fills while downloading (a tmpfs work directory one and a half dumps big)',
    over: 'live',
    async inject() {
      const sizes = (await backupManifest()).databases.map((d) => d.size).sort((a, b) => a - b);
      const kib = Math.ceil((sizes[1]! + sizes[0]! / 2) / 4096) * 4 + 8;
      await fs.mkdir(TMPFS_WORK_DIR(), { recursive: true });
      await execFileAsync('mount', ['-t', 'tmpfs', '-o', `size=${kib}k`, 'tmpfs', TMPFS_WORK_DIR()]);
      return async () => {
        await execFileAsync('umount', [TMPFS_WORK_DIR()]);
      };
    },
    workerEnv: async () => ({ KOHAKKU_DR_WORK_DIR: TMPFS_WORK_DIR() }),
    refusal:
      /^NoSpace: work directory .*tmpfs-work.* has too little free space: (the dump kohakku-\w+-\d{8}\.dump needs \d+ B, \d+ B are free|the dump .*: the disk filled up \(ENOSPC\))\. Free space there/,
  },
  {
    name: 'Redis refuses writes for 10 s as re-dispatch starts (NOREPLICAS)',
    over: 'lost',
    trigger: { at: 'scheduled', activity: 'redispatchPendingTasks' },
    async inject() {
      await redisAdmin((r) => r.config('SET', 'min-replicas-to-write', '1'));
      return () => redisAdmin((r) => r.config('SET', 'min-replicas-to-write', '0')).then(() => undefined);
    },
    healAfterMs: 10000,
  },
  ...(ALL_FAULTS ? EVERY_OTHER_FAULT : []),
];

/** One recovery with `fault`: how it ended, in words, and what in it broke the promise (none: kept). */
async function faultRun(fault: Fault, name: string): Promise<{ ended: string; problems: string[] }> {
  const filesBefore = new Set(await workFiles());
  if (fault.over === 'live') {
    for (const db of [k.model.postgres.controllerDb, k.model.postgres.dispatcherDb])
      await sql(
        k.stack,
        db,
        `CREATE TABLE IF NOT EXISTS ${FAULT_MARK} (note text); INSERT INTO ${FAULT_MARK} VALUES ('${name}')`,
      );
  } else await loseWholeCluster(k);
  const production = fault.over === 'live' ? await productionState() : undefined;
  let heal: (() => Promise<void>) | undefined;
  const healed = async () => {
    const h = heal;
    heal = undefined;
    await h?.();
  };
  try {
    if (!fault.trigger) heal = await fault.inject();
    if (fault.workerEnv) {
      await worker.stop();
      worker = await startWorker({ ...k.workerEnv, ...(await fault.workerEnv()) });
    }
    const startedAt = Date.now();
    const handle = await startRecovery(name, fault.over === 'live' ? { confirm: true, from: 'primary' } : {});
    if (fault.trigger) {
      if (!(await momentOf(client, handle, fault.trigger, startedAt)))
        return { ended: 'NOT INJECTED', problems: ['the fault was never injected: its moment did not come'] };
      heal = await fault.inject();
    }
    const timer =
      fault.healAfterMs === undefined ? undefined : setTimeout(() => void healed(), fault.healAfterMs);
    const { result, error } = await outcomeOf(handle);
    clearTimeout(timer);
    await healed();
    if (fault.over === 'lost')
      return result
        ? { ended: 'recovered', problems: await differences(result, filesBefore) }
        : { ended: `FAILED (${error})`, problems: [error!] };
    const problems: string[] = [];
    if (result) problems.push('completed, but the fault should have stopped it');
    else if (!fault.refusal!.test(error!)) problems.push(`failed otherwise: ${error}`);
    // …and says so: the truth about live data is part of the promise.
    else if (!/live data untouched/.test(error!) || /live data was changed/.test(error!))
      problems.push(`the message does not say production was left as it was: ${error}`);
    const now = await productionState();
    if (JSON.stringify(now) !== JSON.stringify(production))
      problems.push(`production changed: ${JSON.stringify(now)}, was ${JSON.stringify(production)}`);
    const left = (await databases(k.stack)).filter((d) => d.includes('__dr_'));
    if (left.length) problems.push(`left behind: ${left.join(', ')}`);
    const files = (await workFiles()).filter((f) => !filesBefore.has(f));
    if (files.length) problems.push(`work files left: ${files.join(', ')}`);
    return { ended: result ? 'COMPLETED' : `refused (${error})`, problems };
  } finally {
    await healed();
    if (fault.workerEnv) {
      await worker.stop();
      worker = await startWorker(k.workerEnv);
    }
    await fault.after?.();
  }
}

test(
  `fault matrix (${ALL_FAULTS ? 'every fault' : 'a subset; all of it: bash scripts/fault-matrix'}): each run ends verified, or refused with production exactly as it was`,
  async () => {
    const say = (line: string) => process.stderr.write(`[fault-matrix] ${line}\n`);
    // The copies the second recovery moved aside, dropped as an operator would after a review:
    // every run below must leave no database of its own behind.
    for (const db of await databases(k.stack))
      if (db.includes('__dr_replaced_')) await dropDatabase(k.stack, db);
    const outcomes: { fault: Fault; ended: string; problems: string[] }[] = [];
    for (const [i, fault] of FAULTS.entries()) {
      const started = Date.now();
      const o = await faultRun(fault, `fault-${i + 1}`);
      outcomes.push({ fault, ...o });
      say(
        `${String(i + 1).padStart(2)}. ${fault.name}: ${o.ended}, ${o.problems.length ? 'NOT AS PROMISED' : fault.over === 'lost' ? 'identical' : 'production unchanged'}, ${((Date.now() - started) / 1000).toFixed(1)} s` +
          `${o.problems.length ? `\n      ${o.problems.join('\n      ')}` : ''}`,
      );
    }
    const kept = outcomes.filter((o) => o.problems.length === 0);
    say(
      `faults tried ${outcomes.length}: ended verified ${kept.filter((o) => o.fault.over === 'lost').length}, ` +
        `refused with production unchanged ${kept.filter((o) => o.fault.over === 'live').length}, not as promised ${outcomes.length - kept.length}`,
    );
    expect(
      outcomes.filter((o) => o.problems.length > 0).map((o) => `${o.fault.name}: ${o.problems.join('; ')}`),
    ).toEqual([]);
  },
  1000 * 60 * 60,
);
