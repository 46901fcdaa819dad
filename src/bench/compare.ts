/**
 * What every benchmark comparison shares (src/bench/bench.ts, src/bench/fullCluster.ts): timing
 * both sides in alternating rounds from the same reset, the median ratio, and a kohakku-dr worker
 * in the benchmark's own process for the comparisons that run workflows.
 */
import { workflowCodeOptions } from '../bundleWorkflows';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { createActivities } from '../activities';
import { createDeps } from '../activities/deps';
import type { Config, S3Connection } from '../config';
import type { StackInfo } from '../stack/stack';

export interface Comparison {
  name: string;
  data: string;
  ours: { what: string; seconds: number[] };
  baselines: { what: string; seconds: number[]; ratio: number }[];
  /** Figures beside the times (e.g. where a recovery's time went), printed under the table. */
  notes?: string[];
}

export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function seconds(work: () => Promise<unknown>): Promise<number> {
  const started = process.hrtime.bigint();
  await work();
  return Number(process.hrtime.bigint() - started) / 1e9;
}

/**
 * Alternates `ours` with each baseline for `rounds` rounds, `reset` before every run (so each
 * starts from the same data), and returns the comparison with median ratios.
 */
export async function compare(options: {
  name: string;
  data: string;
  rounds: number;
  reset: () => Promise<void>;
  ours: { what: string; run: () => Promise<unknown> };
  /** `prepare`: untimed, after the reset (e.g. the database a --clean restore runs over). */
  baselines: { what: string; run: () => Promise<unknown>; prepare?: () => Promise<unknown> }[];
}): Promise<Comparison> {
  const ours: number[] = [];
  const baselines = options.baselines.map((b) => ({ ...b, seconds: [] as number[] }));
  for (let round = 0; round < options.rounds; round++) {
    await options.reset();
    ours.push(await seconds(options.ours.run));
    for (const b of baselines) {
      await options.reset();
      await b.prepare?.();
      b.seconds.push(await seconds(b.run));
    }
  }
  const result: Comparison = {
    name: options.name,
    data: options.data,
    ours: { what: options.ours.what, seconds: ours },
    baselines: baselines.map((b) => ({
      what: b.what,
      seconds: b.seconds,
      ratio: Math.round((median(ours) / median(b.seconds)) * 100) / 100,
    })),
  };
  console.log(`${result.name} (${result.data}): kohakku-dr ${median(ours).toFixed(2)} s`);
  for (const b of result.baselines)
    console.log(`   vs ${b.what}: ${median(b.seconds).toFixed(2)} s → ratio ${b.ratio.toFixed(2)}`);
  return result;
}

/** A kohakku-dr worker in this process on its own task queue, and a client to start workflows on it. */
export async function benchWorker(config: Config, taskQueue: string) {
  const deps = createDeps(config);
  const connection = await NativeConnection.connect({ address: config.temporal.address });
  const code = workflowCodeOptions();
  const dataConverter = code.dataConverter;
  const worker = await Worker.create({
    connection,
    namespace: config.temporal.namespace,
    taskQueue,
    ...code,
    activities: createActivities(deps),
  });
  const clientConnection = await Connection.connect({ address: config.temporal.address });
  const client = new Client({
    connection: clientConnection,
    namespace: config.temporal.namespace,
    dataConverter,
  });
  return {
    deps,
    client,
    taskQueue,
    /** Runs `work` while the worker polls; stops it after. */
    runUntil: <T>(work: () => Promise<T>) => worker.runUntil(work),
    async close() {
      await clientConnection.close();
      await connection.close();
      await deps.close();
    },
  };
}

/** An rclone remote called `name` on an S3 server, as RCLONE_CONFIG_* variables. */
export function rcloneRemote(name: string, c: S3Connection): Record<string, string> {
  return {
    [`RCLONE_CONFIG_${name}_TYPE`]: 's3',
    [`RCLONE_CONFIG_${name}_PROVIDER`]: 'Other',
    [`RCLONE_CONFIG_${name}_ENDPOINT`]: `${c.useSSL ? 'https' : 'http'}://${c.endPoint}:${c.port}`,
    [`RCLONE_CONFIG_${name}_ACCESS_KEY_ID`]: c.accessKey,
    [`RCLONE_CONFIG_${name}_SECRET_ACCESS_KEY`]: c.secretKey,
    [`RCLONE_CONFIG_${name}_FORCE_PATH_STYLE`]: 'true',
  };
}

/**
 * What the shell baselines (scripts/baselines/) read: PostgreSQL, Redis's data directory, the
 * buckets, a work directory, and rclone's remotes `src` (Kohakku's S3) and `dst` (the backups').
 */
export function baselineScriptEnv(options: {
  stack: StackInfo;
  config: Config;
  work: string;
  stamp: string;
}): Record<string, string> {
  const { stack, config, work, stamp } = options;
  if (config.backupStore.kind !== 's3') throw new Error('the bench stack backs up to S3');
  const backupS3 = config.backupStore.s3;
  return {
    PATH: `${config.postgres.binDir ?? ''}:${process.env.PATH ?? ''}`,
    HOME: work,
    PGHOST: config.postgres.host,
    PGPORT: String(config.postgres.port),
    PGUSER: config.postgres.user,
    CONTROLLER_DB: config.postgres.databases.controller,
    DISPATCHER_DB: config.postgres.databases.dispatcher,
    REDIS_DATA_DIR: stack.redis.dir,
    KOHAKKU_BUCKET: config.kohakkuBucket,
    BACKUP_BUCKET: config.backupStore.bucket,
    STAMP: stamp,
    WORK_DIR: work,
    RCLONE_CA_CERT: backupS3.caFile ?? '',
    ...rcloneRemote('SRC', config.s3),
    ...rcloneRemote('DST', backupS3),
  };
}
