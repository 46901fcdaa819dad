/**
 * The benchmarks (`bash scripts/bench [--size small|medium]`): each comparison runs kohakku-dr's
 * way and a baseline side by side on the same data, on one embedded stack, in alternating rounds,
 * and prints the ratio of the medians (kohakku-dr / baseline: above 1 is slower than the
 * baseline). Results go to `bench/results/<time>-<size>.json` and the table in `bench/README.md`.
 * Nothing fails on speed: CI runs the small size only to keep the benchmarks working.
 *
 * Comparisons:
 *   - requeue of lost tasks: the activity against the same reads plus one set-based UPDATE, and
 *     against 0.3.0's statement per task;
 *   - object mirror, a full copy and a no-change re-run: the activity (into a backup directory)
 *     against `rclone sync` (Debian's rclone) from the same bucket into a directory, tuned
 *     (--transfers 32 --checkers 32 --fast-list) and with its defaults;
 *   - object restore, the other direction: each side's copy back into an empty bucket, and a
 *     no-change re-run over what it restored, against `rclone sync` from its directory;
 *   - verified restore of the Controller's database: restoreIntoStaging (the dump's sha256
 *     checked, pg_restore -j PG_RESTORE_JOBS, every table's checksum compared with the manifest)
 *     against `createdb` + `pg_restore -j 2` of the same dump, and `pg_restore --clean` over the
 *     database in place, neither of which checks anything;
 *   - the nightly backup's backup step (three workflows on a worker in this process) against the
 *     runbook's cron entries (scripts/baselines/nightly-cron.sh), and what verification adds;
 *   - the full-cluster recovery against the runbook's commands in a shell script
 *     (scripts/baselines/full-cluster.sh), with the services and agents running
 *     (src/bench/fullCluster.ts).
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { Redis } from 'ioredis';
import { createActivities } from '../activities';
import { createObjectStoreActivities } from '../activities/objectStore';
import { createPostgresActivities } from '../activities/postgres';
import { createRedisRecoveryActivities } from '../activities/redisRecovery';
import { loadConfig, type Config } from '../config';
import { backupIdAt } from '../domain/backupIds';
import { dirBackupStore } from '../infra/backupStore';
import { createCommandRunner } from '../infra/exec';
import { removeBucket, s3Client } from '../infra/s3';
import { referenceModelOn, workerEnvFor } from '../reference/onStack';
import { seedReferenceKohakku } from '../reference/seed';
import { startStack, stopStack, withStackDb, type StackInfo } from '../stack/stack';
import { objectStoreBackup, postgresBackup, redisBackup, verifyBackupSet } from '../workflows';
import { baselineScriptEnv, benchWorker, compare, median, type Comparison } from './compare';
import { fullClusterComparison } from './fullCluster';

export interface BenchResult {
  size: BenchSize;
  at: string;
  machine: { cpus: number; node: string };
  comparisons: Comparison[];
}

export const BENCH_SIZES = {
  // At 1,000,000 tasks the 200,000 live agents check in every 10 s, with a 30 s grace (as in the
  // large drill: faster check-ins would take the cores from what is measured).
  small: { tasks: 20_000, objects: 300, rounds: 2, agentIntervalSeconds: 2, graceSeconds: 10 },
  medium: { tasks: 1_000_000, objects: 10_000, rounds: 3, agentIntervalSeconds: 10, graceSeconds: 30 },
} as const;
export type BenchSize = keyof typeof BENCH_SIZES;

/** Lost tasks back to pending: every running task of the seed (no agent checks back). */
async function requeueComparison(stack: StackInfo, config: Config, rounds: number): Promise<Comparison> {
  const db = config.postgres.databases.controller;
  await withStackDb(stack, db, (c) =>
    c.query(
      `DROP TABLE IF EXISTS bench_running; CREATE TABLE bench_running AS SELECT id, container, progress FROM tasks_task WHERE status = 'running'`,
    ),
  );
  const lost = await withStackDb(stack, db, async (c) =>
    Number((await c.query<{ n: string }>('SELECT count(*) AS n FROM bench_running')).rows[0]!.n),
  );
  const reset = () =>
    withStackDb(stack, db, (c) =>
      c.query(
        `UPDATE tasks_task t SET status = 'running', container = r.container, progress = r.progress FROM bench_running r WHERE t.id = r.id`,
      ),
    ).then(() => undefined);
  const exec = createCommandRunner();
  const activity = createRedisRecoveryActivities({ config, exec });
  const perTask = createRedisRecoveryActivities({
    config: {
      ...config,
      model: {
        ...config.model,
        requeueTaskSql:
          "UPDATE tasks_task SET status = 'pending', container = NULL, progress = 0 WHERE id = $1 AND status = 'running' AND container = $2",
      },
    },
    exec,
  });
  const setBased = async () => {
    // The same reads (in-flight tasks, agents' keys), then one statement for all of them.
    await withStackDb(stack, db, async (c) => {
      const rows = (await c.query<{ id: string; container: string }>(config.model.inFlightTasksSql)).rows;
      const redis = new Redis({ host: config.redis.host, port: config.redis.port, lazyConnect: true });
      await redis.connect();
      const pipe = redis.pipeline();
      for (const t of rows) pipe.exists(`${config.model.agentKeyPrefix}${t.container}`);
      const alive = (await pipe.exec()) ?? [];
      redis.disconnect();
      const gone = rows.filter((_, i) => alive[i]?.[1] !== 1);
      await c.query(
        `UPDATE tasks_task t SET status = 'pending', container = NULL, progress = 0 FROM unnest($1::bigint[], $2::text[]) AS lost(id, container) WHERE t.id = lost.id AND t.status = 'running' AND t.container = lost.container`,
        [gone.map((t) => t.id), gone.map((t) => t.container)],
      );
    });
  };
  return compare({
    name: 'requeue lost tasks',
    data: `${lost} lost in-flight tasks`,
    rounds,
    reset,
    ours: {
      what: 'requeueLostTasks (set-based, 100,000 per statement)',
      run: () => activity.requeueLostTasks(),
    },
    baselines: [
      { what: 'the same reads + one set-based UPDATE', run: setBased },
      { what: "0.3.0's statement per task", run: () => perTask.requeueLostTasks() },
    ],
  });
}

/** Objects of 1–64 KiB of random bytes under briefs/ in a bucket of their own. */
async function seedObjects(config: Config, bucket: string, count: number): Promise<number> {
  const s3 = s3Client(config.s3);
  if (!(await s3.bucketExists(bucket))) await s3.makeBucket(bucket, config.s3.region);
  let bytes = 0;
  const keys = Array.from({ length: count }, (_, i) => i);
  for (let i = 0; i < keys.length; i += 32) {
    await Promise.all(
      keys.slice(i, i + 32).map((n) => {
        const body = randomBytes(1024 + ((n * 7919) % (63 * 1024)));
        bytes += body.length;
        return s3.putObject(bucket, `briefs/bench-${n}.bin`, body, body.length);
      }),
    );
  }
  return bytes;
}

async function mirrorComparisons(stack: StackInfo, config: Config, objects: number, rounds: number) {
  const bucket = 'bench-objects';
  const bytes = await seedObjects(config, bucket, objects);
  const scratch = path.join(stack.dir, 'bench-mirror');
  const benchConfig: Config = { ...config, kohakkuBucket: bucket, backupPrefixes: ['briefs/'] };
  const s3 = s3Client(config.s3);
  const exec = createCommandRunner();
  const rcloneEnv = {
    PATH: process.env.PATH ?? '',
    HOME: scratch,
    RCLONE_CONFIG_SRC_TYPE: 's3',
    RCLONE_CONFIG_SRC_PROVIDER: 'Minio',
    RCLONE_CONFIG_SRC_ENDPOINT: `http://127.0.0.1:${stack.minio.port}`,
    RCLONE_CONFIG_SRC_ACCESS_KEY_ID: stack.minio.accessKey,
    RCLONE_CONFIG_SRC_SECRET_ACCESS_KEY: stack.minio.secretKey,
  };
  const rclone = (dest: string, tuned: boolean) =>
    exec(
      'rclone',
      [
        'sync',
        `src:${bucket}/briefs`,
        dest,
        ...(tuned ? ['--transfers', '32', '--checkers', '32', '--fast-list'] : []),
      ],
      { env: rcloneEnv, isolatedEnv: true },
    );
  const fresh = async () => {
    await fs.rm(scratch, { recursive: true, force: true });
    await fs.mkdir(scratch, { recursive: true });
  };
  let run = 0;
  const mirror = (dir: string) =>
    createObjectStoreActivities({ config: benchConfig, store: dirBackupStore(dir), s3 }).mirrorObjects({
      backupId: backupIdAt(new Date(Date.UTC(2026, 0, 1) + run++ * 1000)),
    });
  const data = `${objects} objects, ${(bytes / 1048576).toFixed(1)} MiB, 1–64 KiB each`;
  const full = await compare({
    name: 'object mirror, full copy',
    data,
    rounds,
    reset: fresh,
    ours: { what: 'mirrorObjects into a backup directory', run: () => mirror(path.join(scratch, 'ours')) },
    baselines: [
      { what: 'rclone sync, tuned', run: () => rclone(path.join(scratch, 'rclone'), true) },
      { what: 'rclone sync, defaults', run: () => rclone(path.join(scratch, 'rclone'), false) },
    ],
  });
  // No change since the last copy: each side runs again over its own finished copy.
  await fresh();
  await mirror(path.join(scratch, 'ours'));
  await rclone(path.join(scratch, 'rclone'), true);
  const unchanged = await compare({
    name: 'object mirror, no-change re-run',
    data,
    rounds,
    reset: async () => undefined,
    ours: {
      what: 'mirrorObjects, a new set over the same content',
      run: () => mirror(path.join(scratch, 'ours')),
    },
    baselines: [
      { what: 'rclone sync, tuned', run: () => rclone(path.join(scratch, 'rclone'), true) },
      { what: 'rclone sync, defaults', run: () => rclone(path.join(scratch, 'rclone'), false) },
    ],
  });

  // The other direction: each side's own finished copy back into an empty bucket, then once more
  // over what it restored.
  const restoreConfig: Config = { ...benchConfig, kohakkuBucket: 'bench-restored' };
  const restoreBucket = 'bench-restored-rclone';
  const restoreId = backupIdAt(new Date(Date.UTC(2026, 0, 1) + (run - 1) * 1000));
  const restore = () =>
    createObjectStoreActivities({
      config: restoreConfig,
      store: dirBackupStore(path.join(scratch, 'ours')),
      s3,
    }).restoreObjects({ backupId: restoreId, recoveryId: `bench-restore-${run++}` });
  const rcloneBack = (tuned: boolean) =>
    exec(
      'rclone',
      [
        'sync',
        path.join(scratch, 'rclone'),
        `src:${restoreBucket}/briefs`,
        ...(tuned ? ['--transfers', '32', '--checkers', '32', '--fast-list'] : []),
      ],
      { env: rcloneEnv, isolatedEnv: true },
    );
  const emptyBuckets = async () => {
    for (const b of [restoreConfig.kohakkuBucket, restoreBucket]) {
      await removeBucket(s3, b);
      await s3.makeBucket(b, config.s3.region);
    }
  };
  const restoreFull = await compare({
    name: 'object restore, full copy',
    data,
    rounds,
    reset: emptyBuckets,
    ours: { what: 'restoreObjects from the backup directory into an empty bucket', run: restore },
    baselines: [
      { what: 'rclone sync, tuned', run: () => rcloneBack(true) },
      { what: 'rclone sync, defaults', run: () => rcloneBack(false) },
    ],
  });
  await emptyBuckets();
  await restore();
  await rcloneBack(true);
  const restoreUnchanged = await compare({
    name: 'object restore, no-change re-run',
    data,
    rounds,
    reset: async () => undefined,
    ours: { what: 'restoreObjects over the bucket it restored', run: restore },
    baselines: [
      { what: 'rclone sync, tuned', run: () => rcloneBack(true) },
      { what: 'rclone sync, defaults', run: () => rcloneBack(false) },
    ],
  });
  for (const b of [restoreConfig.kohakkuBucket, restoreBucket]) await removeBucket(s3, b);
  return [full, unchanged, restoreFull, restoreUnchanged];
}

/** The Controller's database restored from one dump, verified (ours) or not (pg_restore -j 2). */
async function restoreComparison(stack: StackInfo, config: Config, rounds: number): Promise<Comparison> {
  const storeDir = path.join(stack.dir, 'bench-backups');
  const store = dirBackupStore(storeDir);
  const exec = createCommandRunner();
  const postgres = createPostgresActivities({ config, exec, store });
  const backupId = backupIdAt(new Date(Date.UTC(2026, 0, 2)));
  const manifest = await postgres.backupPostgres({ backupId, targets: ['controller'] });
  const entry = manifest.databases[0]!;
  const dump = path.join(stack.dir, 'bench-controller.dump');
  await store.getFile(entry.key, dump);
  const recoveryId = 'bench-restore';
  const staging = (await postgres.restoreIntoStaging({ backupId, target: 'controller', recoveryId })).staging;
  const pgTool = (name: string) => path.join(config.postgres.binDir ?? '', name);
  const pgArgs = ['-h', '127.0.0.1', '-p', String(stack.postgres.port), '-U', 'postgres'];
  const env = { PATH: process.env.PATH ?? '' };
  const reset = async () => {
    for (const db of [staging, 'bench_plain_restore'])
      await withStackDb(stack, 'postgres', (c) => c.query(`DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`));
  };
  const plainRestore = async () => {
    await exec(pgTool('createdb'), [...pgArgs, 'bench_plain_restore'], { env, isolatedEnv: true });
    await exec(pgTool('pg_restore'), [...pgArgs, '-j', '2', '-d', 'bench_plain_restore', dump], {
      env,
      isolatedEnv: true,
    });
  };
  const result = await compare({
    name: 'verified restore',
    data: `${entry.database}: ${(entry.size / 1048576).toFixed(0)} MiB dump, ${entry.tables.reduce((n, t) => n + t.rows, 0)} rows`,
    rounds,
    reset,
    ours: {
      what: `restoreIntoStaging (sha256, pg_restore -j ${config.postgres.restoreJobs}, table checksums)`,
      run: () => postgres.restoreIntoStaging({ backupId, target: 'controller', recoveryId }),
    },
    baselines: [
      { what: 'createdb + pg_restore -j 2', run: plainRestore },
      {
        // Over a database that has the data already, as a runbook restoring in place would.
        what: 'pg_restore --clean --if-exists -j 2 over the database',
        prepare: plainRestore,
        run: () =>
          exec(
            pgTool('pg_restore'),
            [...pgArgs, '--clean', '--if-exists', '-j', '2', '-d', 'bench_plain_restore', dump],
            { env, isolatedEnv: true },
          ),
      },
    ],
  });
  await reset();
  return result;
}

/**
 * The nightly backup's backup step — the Postgres, Redis and object-store backup workflows side
 * by side, on a worker in this process — against the runbook's cron entries doing the same into
 * the same backup S3 server (scripts/baselines/nightly-cron.sh: pg_dump, BGSAVE + copy, rclone
 * sync). Neither verifies here; what verification adds is measured on its own, with no baseline.
 */
async function nightlyComparison(stack: StackInfo, config: Config, rounds: number): Promise<Comparison[]> {
  const bench = await benchWorker(config, 'kohakku-dr-bench');
  const { deps, client, taskQueue } = bench;
  const exec = createCommandRunner();
  const work = path.join(stack.dir, 'bench-cron');
  let round = 0;
  const backupId = () => backupIdAt(new Date(Date.UTC(2026, 1, 1) + round++ * 60_000));
  const run = <A extends unknown[], R>(workflow: (...args: A) => Promise<R>, args: A) =>
    client.workflow.execute(workflow, { taskQueue, workflowId: `bench-${workflow.name}-${round}`, args });
  const ours = async () => {
    const id = backupId();
    await Promise.all([
      run(postgresBackup, [{ backupId: id }]),
      run(redisBackup, [{ backupId: id }]),
      run(objectStoreBackup, [{ backupId: id }]),
    ]);
    return id;
  };
  const cron = async () => {
    await fs.rm(work, { recursive: true, force: true });
    await fs.mkdir(work, { recursive: true });
    await exec('bash', [path.resolve(__dirname, '../../scripts/baselines/nightly-cron.sh')], {
      isolatedEnv: true,
      env: {
        ...baselineScriptEnv({ stack, config, work, stamp: String(round++) }),
        REDIS_PORT: String(stack.redis.port),
      },
    });
  };
  try {
    return await bench.runUntil(async () => {
      const backups = await compare({
        name: 'nightly backup (Postgres, Redis, objects)',
        data: `both databases, Redis, bucket ${config.kohakkuBucket}`,
        rounds,
        reset: async () => undefined,
        ours: { what: 'postgresBackup + redisBackup + objectStoreBackup workflows, side by side', run: ours },
        baselines: [{ what: "the runbook's cron entries (pg_dump, BGSAVE + copy, rclone sync)", run: cron }],
      });
      const id = await ours();
      const verification = await compare({
        name: 'what verification adds (no baseline verifies)',
        data: `backup set ${id}`,
        rounds,
        reset: async () => undefined,
        ours: {
          what: 'writeBackupSet + verifyBackupSet (scratch restores of everything)',
          run: async () => {
            await createActivities(deps).writeBackupSet({
              backupId: id,
              startedAt: new Date().toISOString(),
            });
            await run(verifyBackupSet, [{ backupId: id }]);
          },
        },
        baselines: [{ what: "the cron entries' run above (median)", run: cron }],
      });
      return [backups, verification];
    });
  } finally {
    await bench.close();
  }
}

function summaryTable(result: BenchResult): string {
  const lines = [
    '# Benchmarks',
    '',
    'Written by `bash scripts/bench` (this is its last run). Each row: kohakku-dr against a baseline on',
    "the same data and stack, alternating rounds; the ratio is kohakku-dr's median time over the",
    "baseline's (above 1: slower). Raw figures per run are in `results/`.",
    '',
    `Size \`${result.size}\`, ${result.at}, ${result.machine.cpus} CPUs, Node ${result.machine.node}.`,
    '',
    '| comparison | data | kohakku-dr | baseline | kohakku-dr s | baseline s | ratio |',
    '| --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const c of result.comparisons)
    for (const b of c.baselines)
      lines.push(
        `| ${c.name} | ${c.data} | ${c.ours.what} | ${b.what} | ${median(c.ours.seconds).toFixed(2)} | ${median(b.seconds).toFixed(2)} | ${b.ratio.toFixed(2)} |`,
      );
  const notes = result.comparisons.flatMap((c) => c.notes ?? []);
  if (notes.length > 0) lines.push('', ...notes.map((n) => `- ${n}`));
  return lines.join('\n') + '\n';
}

/** The comparisons by the name `--only` takes, in the order a full run takes them. */
export const BENCH_COMPARISONS = [
  'requeue',
  'objects',
  'postgres-restore',
  'nightly',
  'full-cluster',
] as const;
export type BenchComparison = (typeof BENCH_COMPARISONS)[number];

/**
 * Before each comparison: the previous one's aftermath settled, so that neither side pays for it.
 * The requeue comparison leaves millions of dead row versions that autovacuum would otherwise
 * clean (and a checkpoint would write out) on the same two cores while the object mirror runs.
 */
async function quiesce(stack: StackInfo): Promise<void> {
  const databases = await withStackDb(
    stack,
    'postgres',
    async (c) =>
      (await c.query<{ datname: string }>('SELECT datname FROM pg_database WHERE datallowconn')).rows,
  );
  for (const { datname } of databases) await withStackDb(stack, datname, (c) => c.query('VACUUM (ANALYZE)'));
  await withStackDb(stack, 'postgres', (c) => c.query('CHECKPOINT'));
  const { rss, heapUsed } = process.memoryUsage();
  console.log(
    `   (stack quiet; this process: rss ${(rss / 1048576).toFixed(0)} MiB, heap ${(heapUsed / 1048576).toFixed(0)} MiB)`,
  );
}

/**
 * Runs the comparisons at `size` (all, or `only` those); writes the JSON into `outDir/results`,
 * and the summary table into `outDir/README.md` when all of them ran.
 */
export async function runBenchmarks(
  size: BenchSize,
  outDir: string,
  only: readonly BenchComparison[] = BENCH_COMPARISONS,
): Promise<BenchResult> {
  const { tasks, objects, rounds, agentIntervalSeconds, graceSeconds } = BENCH_SIZES[size];
  const stack = await startStack({ log: (l) => console.log(`   ${l}`) });
  try {
    const model = await referenceModelOn(stack, 'bench');
    // Every comparison needs the seeded tasks (the object restore leaves out completed tasks' briefs).
    console.log(`seeding the reference Kohakku with ${tasks} tasks`);
    await seedReferenceKohakku(model, { tasks, briefs: 1 });
    const config = loadConfig({ ...workerEnvFor(stack, model) });
    const runs: Record<BenchComparison, () => Promise<Comparison[]>> = {
      requeue: async () => [await requeueComparison(stack, config, rounds)],
      objects: () => mirrorComparisons(stack, config, objects, rounds),
      'postgres-restore': async () => [await restoreComparison(stack, config, rounds)],
      nightly: () => nightlyComparison(stack, config, rounds),
      'full-cluster': async () => [
        await fullClusterComparison({ stack, model, config, rounds, agentIntervalSeconds, graceSeconds }),
      ],
    };
    const comparisons: Comparison[] = [];
    for (const name of BENCH_COMPARISONS.filter((c) => only.includes(c))) {
      await quiesce(stack);
      comparisons.push(...(await runs[name]()));
    }
    const result: BenchResult = {
      size,
      at: new Date().toISOString(),
      machine: { cpus: (await import('node:os')).cpus().length, node: process.version },
      comparisons,
    };
    const complete = only.length === BENCH_COMPARISONS.length;
    await fs.mkdir(path.join(outDir, 'results'), { recursive: true });
    await fs.writeFile(
      path.join(
        outDir,
        'results',
        `${result.at.replace(/[:.]/g, '-')}-${size}${complete ? '' : `-${only.join('+')}`}.json`,
      ),
      JSON.stringify(result, null, 2),
    );
    if (complete) await fs.writeFile(path.join(outDir, 'README.md'), summaryTable(result));
    return result;
  } finally {
    await stopStack(stack);
  }
}
