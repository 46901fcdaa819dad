/**
 * Test helpers on the run's shared stack: the reference Kohakku on it, a real worker process,
 * a Temporal client, and checks computed independently of the code under test.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, promises as fs } from 'node:fs';
import * as path from 'node:path';
import {
  Client as TemporalClient,
  Connection,
  WorkflowFailedError,
  type WorkflowHandle,
} from '@temporalio/client';
import { ApplicationFailure, TemporalFailure } from '@temporalio/common';
import { Redis } from 'ioredis';
import * as Minio from 'minio';
import { Client } from 'pg';
import type { S3Connection } from '../../src/config';
import { workerCommand } from '../../src/infra/processes';
import { removeBucket, s3Client } from '../../src/infra/s3';
import type { ReferenceModel } from '../../src/reference/model';
import { referenceModelOn, workerEnvFor } from '../../src/reference/onStack';
import { seedReferenceKohakku, type SeedOptions } from '../../src/reference/seed';
import {
  servicePid,
  startReferenceService,
  stopReferenceServices,
  type ServiceOptions,
} from '../../src/reference/supervisor';
import { controlPostgres, killRedis, loseS3Server, type StackInfo } from '../../src/stack/stack';
import type { PostgresManifest } from '../../src/domain/manifests';
import { postgresBackup } from '../../src/workflows';
import { progressQuery, type Progress } from '../../src/workflows/definitions';
import { logFile, POSTGRES_PASSWORD_CANARY, testStack } from './secrets';

export const DIST = path.resolve(__dirname, '../../dist');

export { testStack };

export function pgClient(stack: StackInfo, database = 'postgres'): Client {
  return new Client({ host: '127.0.0.1', port: stack.postgres.port, user: 'postgres', database });
}

export async function sql<T extends object = Record<string, unknown>>(
  stack: StackInfo,
  database: string,
  text: string,
  params: unknown[] = [],
): Promise<T[]> {
  const c = pgClient(stack, database);
  await c.connect();
  try {
    return (await c.query<T>(text, params)).rows;
  } finally {
    await c.end();
  }
}

export async function databases(stack: StackInfo): Promise<string[]> {
  return (
    await sql<{ datname: string }>(stack, 'postgres', 'SELECT datname FROM pg_database ORDER BY 1')
  ).map((r) => r.datname);
}

/** A real disaster: sessions terminated, the database dropped. */
export async function dropDatabase(stack: StackInfo, name: string): Promise<void> {
  await sql(stack, 'postgres', `DROP DATABASE IF EXISTS "${name.replace(/"/g, '""')}" WITH (FORCE)`);
}

/**
 * Row count and checksum per table, computed here with a different query than the product's
 * (rows sorted by their text, concatenated), so a shared bug cannot hide.
 */
export async function tableFingerprints(stack: StackInfo, database: string): Promise<Record<string, string>> {
  const c = pgClient(stack, database);
  await c.connect();
  try {
    const tables = await c.query<{ t: string }>(
      `SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) AS t FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`,
    );
    const out: Record<string, string> = {};
    for (const { t } of tables.rows) {
      const r = await c.query<{ n: string; h: string | null }>(
        `SELECT count(*) AS n, md5(string_agg(x::text, '|' ORDER BY x::text)) AS h FROM ${t} x`,
      );
      out[t] = `${r.rows[0]!.n}:${r.rows[0]!.h}`;
    }
    const seq = await c
      .query<{ last_value: string }>(`SELECT last_value FROM tasks_task_id_seq`)
      .catch(() => undefined);
    if (seq) out['sequence tasks_task_id_seq'] = seq.rows[0]!.last_value;
    return out;
  } finally {
    await c.end();
  }
}

/**
 * max_prepared_transactions (for tests that leave a prepared transaction in a live database)
 * needs a restart (pg_ctl restart with the stack's start options). Set it back to 'default'
 * in afterAll, after rolling back every prepared transaction.
 */
export async function setPreparedTransactions(value: number | 'default'): Promise<void> {
  const stack = testStack();
  await sql(
    stack,
    'postgres',
    value === 'default'
      ? 'ALTER SYSTEM RESET max_prepared_transactions'
      : `ALTER SYSTEM SET max_prepared_transactions = ${value}`,
  );
  controlPostgres(stack, 'restart');
}

/**
 * Leaves a prepared transaction (a row inserted into tasks_skill) in `database`, holding its
 * locks until someone runs ROLLBACK PREPARED '<gid>': a blocker a swap must detect.
 */
export async function leavePreparedTransaction(database: string, gid: string): Promise<void> {
  const prepared = pgClient(testStack(), database);
  await prepared.connect();
  await prepared.query('BEGIN');
  await prepared.query(
    `INSERT INTO tasks_skill (name, object_key, created_at) VALUES ('2pc', 'skills/2pc', now())`,
  );
  await prepared.query(`PREPARE TRANSACTION '${gid.replace(/'/g, "''")}'`);
  await prepared.end();
}

/** Rolls back every prepared transaction left on the stack's server. */
export async function rollbackPreparedTransactions(): Promise<void> {
  const stack = testStack();
  const left = await sql<{ gid: string; database: string }>(
    stack,
    'postgres',
    'SELECT gid, database FROM pg_prepared_xacts',
  );
  for (const p of left) await sql(stack, p.database, `ROLLBACK PREPARED '${p.gid.replace(/'/g, "''")}'`);
}

export interface TestKohakku {
  stack: StackInfo;
  model: ReferenceModel;
  workerEnv: Record<string, string>;
}

/** A fresh reference Kohakku on the shared stack: clears what an earlier test file left. */
export async function freshKohakku(
  name: string,
  seed: SeedOptions,
  /** Each service runs unless set to false; Kohakku's own Temporal runs only when given. */
  services: Partial<
    Record<'controller' | 'dispatcher' | 'monitor' | 'agents' | 'temporal', ServiceOptions | false>
  > = {},
): Promise<TestKohakku> {
  const stack = testStack();
  const model = await referenceModelOn(stack, name);
  for (const db of await databases(stack)) if (db.startsWith('kohakku')) await dropDatabase(stack, db);
  const redis = new Redis({ port: stack.redis.port, lazyConnect: true });
  await redis.connect();
  await redis.flushall();
  redis.disconnect();
  // Every bucket on Kohakku's S3 server and on the backup store's, and the replica directory.
  for (const s3 of [minioClient(stack), backupS3Client(stack)])
    for (const bucket of await s3.listBuckets()) await deleteBucket(s3, bucket.name);
  await fs.rm(stack.replicaDir, { recursive: true, force: true });
  await fs.mkdir(stack.replicaDir, { recursive: true });
  await seedReferenceKohakku(model, seed);
  for (const service of ['controller', 'dispatcher', 'monitor', 'agents', 'temporal'] as const) {
    const options = services[service];
    if (options === false || (service === 'temporal' && options === undefined)) continue;
    await startReferenceService(model, service, { pidsFile: stack.extraPidsFile, ...options });
  }
  const workerEnv = {
    ...workerEnvFor(stack, model),
    KOHAKKU_DR_TASK_QUEUE: `test-${name}`,
    POSTGRES_PASSWORD: POSTGRES_PASSWORD_CANARY,
  };
  return { stack, model, workerEnv };
}

export async function stopKohakku(k: TestKohakku): Promise<void> {
  await closeTemporal();
  await stopReferenceServices(k.model.stateDir);
}

/** A client of Kohakku's S3 server (MinIO, bucket `kohakku`). */
export function minioClient(stack: StackInfo): Minio.Client {
  return new Minio.Client({
    endPoint: '127.0.0.1',
    port: stack.minio.port,
    useSSL: false,
    accessKey: stack.minio.accessKey,
    secretKey: stack.minio.secretKey,
  });
}

/** Where the backup store's own S3 server (VersityGW, TLS with the stack's CA) is, with its credentials. */
export function backupS3Connection(stack: StackInfo): S3Connection {
  return {
    endPoint: '127.0.0.1',
    port: stack.backupS3.port,
    useSSL: true,
    accessKey: stack.backupS3.accessKey,
    secretKey: stack.backupS3.secretKey,
    region: 'us-east-1',
    caFile: stack.backupS3.caFile,
    url: `https://127.0.0.1:${stack.backupS3.port}`,
  };
}

/** A client of the backup store's own S3 server (VersityGW, bucket `kohakku-backups`). */
export function backupS3Client(stack: StackInfo): Minio.Client {
  return s3Client(backupS3Connection(stack));
}

/** A real disaster for the object store: every object removed, then the bucket itself. */
/** The backup store's bucket on the stack. */
export const BACKUP_BUCKET = 'kohakku-backups';

/** An object's bytes in the backup store (tests that alter a backup read it first). */
export async function backupObject(stack: StackInfo, key: string, bucket = BACKUP_BUCKET): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of await backupS3Client(stack).getObject(bucket, key)) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** Writes `body` under `key` in the backup store, as a damaged or altered backup would have it. */
export async function putBackupObject(
  stack: StackInfo,
  key: string,
  body: Buffer,
  bucket = BACKUP_BUCKET,
): Promise<void> {
  await backupS3Client(stack).putObject(bucket, key, body, body.length);
}

export async function deleteBucket(s3: Minio.Client, bucket: string): Promise<void> {
  await removeBucket(s3, bucket);
}

/** A real disaster for Redis: SIGKILL the stack's redis-server; optionally delete its AOF and RDB too. */
export function killStackRedis(options: { deleteFiles: boolean }): Promise<void> {
  return killRedis(testStack().dir, options);
}

/**
 * The full-cluster disaster on the reference model: Controller, Dispatcher, Monitor and
 * Kohakku's Temporal SIGKILLed, both databases dropped, Redis killed with its files deleted,
 * Kohakku's S3 server SIGKILLed with its data directory deleted — only the live agents keep
 * running (crashMatrix.test.ts, up.test.ts).
 */
export async function loseWholeCluster(k: TestKohakku): Promise<void> {
  for (const service of ['controller', 'dispatcher', 'monitor', 'temporal'] as const) {
    const pid = servicePid(k.model.stateDir, service);
    if (pid) process.kill(-pid, 'SIGKILL');
  }
  await dropDatabase(k.stack, k.model.postgres.controllerDb);
  await dropDatabase(k.stack, k.model.postgres.dispatcherDb);
  await killStackRedis({ deleteFiles: true });
  await loseS3Server(k.stack.dir, 'minio');
}

/**
 * Fingerprints of what a full-cluster recovery must give back as the backup had it: every task
 * but the lost ones (ids ≡ 9 mod 10 hold them; see seededStatus), the Dispatcher's tables, the
 * skills.
 */
export async function clusterFingerprints(k: TestKohakku) {
  return {
    tasks: await sql(
      k.stack,
      k.model.postgres.controllerDb,
      `SELECT count(*) AS n, md5(string_agg(t::text, '|' ORDER BY id)) AS h FROM tasks_task t WHERE id % 10 <> 9`,
    ),
    dispatcher: await tableFingerprints(k.stack, k.model.postgres.dispatcherDb),
    skills: await sql(
      k.stack,
      k.model.postgres.controllerDb,
      `SELECT count(*) AS n, md5(string_agg(t::text, '|' ORDER BY task_id)) AS h FROM tasks_task_skills t`,
    ),
  };
}

export interface WorkerProcess {
  child: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
  /** Graceful stop (SIGTERM). */
  stop(): Promise<void>;
  /** A crash: SIGKILL to the worker only; children it started (pg_restore) are orphaned as in real life. */
  kill(): Promise<void>;
}

/** Starts the worker as production does (scripts/worker) as its own process and waits until it polls. */
export async function startWorker(env: Record<string, string>): Promise<WorkerProcess> {
  const launch = workerCommand();
  const child = spawn(launch.file, launch.args, {
    env: { ...process.env, ...env, ...launch.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  // Also to the stack's logs/, for the secret sweep (harness/secrets.ts).
  const log = createWriteStream(logFile('worker'));
  const collect = (d: Buffer) => {
    out += d.toString();
    log.write(d);
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  child.on('exit', () => log.end());
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const deadline = Date.now() + 60000;
  while (!out.includes('worker polling')) {
    if (child.exitCode !== null) throw new Error(`worker exited ${child.exitCode}: ${out}`);
    if (Date.now() > deadline) throw new Error(`worker did not start: ${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    child,
    output: () => out,
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
    async kill() {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/**
 * Starts a real worker process with only `env` (and PATH), as one that must refuse its settings:
 * resolves with its exit code and stderr lines (it is killed after `ms` if it starts after all).
 */
export async function startWorkerExpectingRefusal(
  env: Record<string, string>,
  ms = 15000,
): Promise<{ code: number | null; lines: string[] }> {
  const launch = workerCommand();
  const child = spawn(launch.file, launch.args, {
    env: { PATH: process.env.PATH, ...env, ...launch.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), ms);
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  clearTimeout(timer);
  return { code, lines: stderr.trim().split('\n') };
}

let connection: Promise<Connection> | undefined;

/** One connection per test file; closeTemporal() in afterAll. */
export async function temporalClient(stack: StackInfo): Promise<TemporalClient> {
  connection ??= Connection.connect({ address: `127.0.0.1:${stack.temporal.port}` });
  return new TemporalClient({ connection: await connection, namespace: stack.temporal.namespace });
}

export async function closeTemporal(): Promise<void> {
  const c = connection;
  connection = undefined;
  if (c) await (await c).close();
}

/** The ApplicationFailure type at the root of a failed workflow. */
export function failureType(err: unknown): string | undefined {
  let e: unknown = err instanceof WorkflowFailedError ? err.cause : err;
  while (e instanceof TemporalFailure) {
    if (e instanceof ApplicationFailure) return e.type ?? undefined;
    e = e.cause;
  }
  return undefined;
}

/** A Postgres backup of `k` on its worker's task queue (a worker must poll it), as `workflowId`; its manifest. */
export async function backUpPostgres(k: TestKohakku, workflowId: string): Promise<PostgresManifest> {
  return (await temporalClient(k.stack)).workflow.execute(postgresBackup, {
    taskQueue: k.workerEnv.KOHAKKU_DR_TASK_QUEUE!,
    workflowId,
    args: [{}],
  });
}

/** Waits until a recovery asks for approval; returns its progress (step and what it replaces). */
export async function awaitApprovalRequest(handle: WorkflowHandle): Promise<Progress> {
  const deadline = Date.now() + 30000;
  for (;;) {
    const progress = await handle.query(progressQuery).catch(() => undefined);
    if (progress?.awaitingApproval) return progress;
    if (Date.now() > deadline) throw new Error(`never asked for approval: ${JSON.stringify(progress)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function health(port: number): Promise<number> {
  return (await fetch(`http://127.0.0.1:${port}/healthz`)).status;
}
