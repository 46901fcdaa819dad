/**
 * The bad-input table: every way an operator, a runbook or a damaged backup store can hand
 * kohakku-dr something it cannot use — through `temporal workflow start`, the Temporal client,
 * the `kohakku-dr` CLI, the worker's settings, and the backup store's own contents — each one row
 * that names the error type and message it must get, on real services: a reference Kohakku, a
 * real worker, a real nightly backup set. After every row the live data (both databases, Redis,
 * Kohakku's bucket) is compared with what it was before, and no staging database or local work
 * file is left. Rows that alter the backup store put the original bytes back.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { WorkflowFailedError, type Workflow } from '@temporalio/client';
import { Redis } from 'ioredis';
import { failureOf } from '../src/client/exitCodes';
import { postgresManifestKey, redisManifestKey, setManifestKey } from '../src/domain/layout';
import type { PostgresManifest, RedisBackupManifest } from '../src/domain/manifests';
import { freePort } from '../src/infra/processes';
import {
  fullCluster,
  pointInTimeRecovery,
  redisLoss,
  tableRestore,
  totalDatabaseLoss,
  nightlyBackup,
  verifyBackupSet,
} from '../src/workflows';
import { runCli } from './harness/cli';
import {
  backupObject,
  putBackupObject,
  databases,
  freshKohakku,
  minioClient,
  startWorker,
  startWorkerExpectingRefusal,
  stopKohakku,
  tableFingerprints,
  temporalClient,
  type TestKohakku,
  type WorkerProcess,
} from './harness/kohakku';

jest.setTimeout(240000);

let k: TestKohakku;
let worker: WorkerProcess;
let backupId: string;
/** A file a shell would create if a metacharacter in an input ever reached one. */
const PWNED = '/tmp/kohakku-dr-bad-input-pwned';

beforeAll(async () => {
  k = await freshKohakku('badinput', { tasks: 400, briefs: 8 }, { agents: false });
  worker = await startWorker(k.workerEnv);
  const client = await temporalClient(k.stack);
  const nightly = await client.workflow
    .execute(nightlyBackup, {
      taskQueue: k.workerEnv.KOHAKKU_DR_TASK_QUEUE!,
      workflowId: 'test-badinput-nightly',
    })
    .catch((err: unknown) => {
      throw new Error(`the nightly backup failed: ${JSON.stringify(refusalOf(err))}`);
    });
  backupId = nightly.set.id;
  await fs.rm(PWNED, { force: true });
});

afterAll(async () => {
  await worker?.stop();
  if (k) await stopKohakku(k);
});

/** What a refusal says: the error type (or how it was refused), its message and the CLI's exit code. */
interface Refusal {
  type?: string;
  message: string;
  exit?: number;
}

/** Everything live: both databases, every Redis key's value, every object in Kohakku's bucket. */
async function liveState() {
  const redis = new Redis({ port: k.stack.redis.port, lazyConnect: true });
  await redis.connect();
  const keys = (await redis.keys('*')).sort();
  const values = createHash('sha256');
  for (const key of keys) values.update(key).update((await redis.dumpBuffer(key)) ?? '');
  redis.disconnect();
  const objects: string[] = [];
  for await (const o of minioClient(k.stack).listObjectsV2('kohakku', '', true))
    objects.push(`${o.name} ${o.etag} ${o.size}`);
  return {
    databases: (await databases(k.stack)).sort(),
    controller: await tableFingerprints(k.stack, 'kohakku-controller'),
    dispatcher: await tableFingerprints(k.stack, 'kohakku-dispatcher'),
    redis: { keys: keys.length, values: values.digest('hex') },
    objects: objects.sort(),
  };
}

let runs = 0;
const nextId = (what: string) => `test-badinput-${what}-${runs++}`;

/** The innermost failure of a workflow run, as the CLI reads it. */
function refusalOf(err: unknown): Refusal {
  if (!(err instanceof WorkflowFailedError)) throw err;
  const { type, message } = failureOf(err);
  return { type, message };
}

/** Runs a workflow through the client (as kohakku-dr and the UI do) with `input`, which must fail. */
async function viaClient<W extends Workflow>(
  workflow: W,
  input: unknown,
  taskQueue?: string,
): Promise<Refusal> {
  const client = await temporalClient(k.stack);
  const outcome = await client.workflow
    .execute(workflow.name, {
      taskQueue: taskQueue ?? k.workerEnv.KOHAKKU_DR_TASK_QUEUE!,
      workflowId: nextId(workflow.name),
      args: [input],
    })
    .then(
      (result: unknown) => ({ result }),
      (err: unknown) => ({ err }),
    );
  if ('result' in outcome) throw new Error(`${workflow.name} completed: ${JSON.stringify(outcome.result)}`);
  return refusalOf(outcome.err);
}

/** `temporal workflow start --input JSON` as a runbook types it; the run's failure read back. */
async function viaTemporalCli(workflow: Workflow, inputJson: string, extra: string[] = []): Promise<Refusal> {
  const workflowId = nextId(`cli-${workflow.name}`);
  const args = [
    'workflow',
    'start',
    '--address',
    `127.0.0.1:${k.stack.temporal.port}`,
    '--namespace',
    k.stack.temporal.namespace,
    '--disable-config-file',
    '--disable-config-env',
    '--type',
    workflow.name,
    '--task-queue',
    k.workerEnv.KOHAKKU_DR_TASK_QUEUE!,
    '--workflow-id',
    workflowId,
    '--input',
    inputJson,
    ...extra,
  ];
  const started = await new Promise<{ code: number | null; out: string }>((resolve) => {
    const child = spawn(k.stack.tools.temporal, args, { env: { PATH: process.env.PATH ?? '' } });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) => resolve({ code, out }));
  });
  if (started.code !== 0) throw new Error(`temporal workflow start failed: ${started.out}`);
  const err = await (
    await temporalClient(k.stack)
  ).workflow
    .getHandle(workflowId)
    .result()
    .then(
      () => undefined,
      (e: unknown) => e,
    );
  if (!err) throw new Error(`${workflow.name} ${inputJson} completed`);
  return refusalOf(err);
}

/** `kohakku-dr args… --json` against the worker: its exit code and its one JSON document. */
async function viaKohakkuDr(args: string[]): Promise<Refusal> {
  const run = await runCli([...args, '--json'], { taskQueue: k.workerEnv.KOHAKKU_DR_TASK_QUEUE! });
  const doc = JSON.parse(run.stdout) as { error: string; type?: string };
  return { type: doc.type, message: doc.error, exit: run.code ?? undefined };
}

/** A worker process started with one setting changed: it must stop at once, one line naming it. */
async function viaWorkerSettings(env: Record<string, string>): Promise<Refusal> {
  const { code, lines } = await startWorkerExpectingRefusal({ ...k.workerEnv, ...env });
  if (lines.length !== 1) throw new Error(`expected one line, got: ${lines.join('\n')}`);
  return { type: 'ConfigError', message: lines[0]!, exit: code ?? undefined };
}

/** A worker whose settings name an endpoint wrongly (it starts: they are well-formed) runs `input`. */
async function viaWorkerWith(
  env: Record<string, string>,
  workflow: Workflow,
  input: unknown,
): Promise<Refusal> {
  const queue = nextId('queue');
  const w = await startWorker({ ...k.workerEnv, ...env, KOHAKKU_DR_TASK_QUEUE: queue });
  try {
    return await viaClient(workflow, input, queue);
  } finally {
    await w.stop();
  }
}

const readObject = (key: string) => backupObject(k.stack, key);
const putObject = (key: string, body: Buffer) => putBackupObject(k.stack, key, body);

/** Runs `work` with `keys` of the backup store as `alter` leaves them; their original bytes are put back after. */
async function withBackupAltered(
  keys: string[],
  alter: (original: Map<string, Buffer>) => Promise<void>,
  work: () => Promise<Refusal>,
): Promise<Refusal> {
  const original = new Map<string, Buffer>();
  for (const key of keys) original.set(key, await readObject(key));
  try {
    await alter(original);
    return await work();
  } finally {
    for (const [key, body] of original) await putObject(key, body);
  }
}

/** The backup's Postgres manifest changed by `edit` while `work` runs. */
function withManifestEdited(edit: (m: PostgresManifest) => unknown, work: () => Promise<Refusal>) {
  const key = postgresManifestKey(backupId);
  return withBackupAltered(
    [key],
    async (original) => {
      const m = JSON.parse(original.get(key)!.toString()) as PostgresManifest;
      await putObject(key, Buffer.from(JSON.stringify(edit(m) ?? m)));
    },
    work,
  );
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
/** A whole restore of this backup, approved, from the primary store (the rows alter the primary's copy, not the replica's). */
const restoreAll = () => ({ backupId, confirm: true, from: 'primary' });

interface Row {
  name: string;
  run: () => Promise<Refusal>;
  type?: string;
  message: RegExp;
  exit?: number;
}

const rows: Row[] = [
  // --- `temporal workflow start`: the input as JSON typed into a runbook
  {
    name: 'temporal workflow start: null input',
    run: () => viaTemporalCli(totalDatabaseLoss, 'null'),
    type: 'InvalidInput',
    message: /total-database-loss: the input must be a JSON object such as \{\}.*got null/,
  },
  {
    name: 'temporal workflow start: an array',
    run: () => viaTemporalCli(totalDatabaseLoss, '[{"confirm": true}]'),
    type: 'InvalidInput',
    message: /the input must be a JSON object .*got \[\{"confirm":true\}\]/,
  },
  {
    name: 'temporal workflow start: a string',
    run: () => viaTemporalCli(redisLoss, '"latest"'),
    type: 'InvalidInput',
    message: /redis-loss: the input must be a JSON object .*got "latest"/,
  },
  {
    name: 'temporal workflow start: not JSON, sent as text',
    run: () => viaTemporalCli(fullCluster, "{backupId: 'latest'}", ['--input-meta', 'encoding=text/plain']),
    type: 'InvalidInput',
    message: /full-cluster: the input could not be decoded .*send JSON such as \{\}/,
  },
  {
    name: 'temporal workflow start: a misspelled field',
    run: () => viaTemporalCli(totalDatabaseLoss, '{"bakupId": "latest", "confirm": true}'),
    type: 'InvalidInput',
    message: /unknown field "bakupId" \(did you mean "backupId"\?\)/,
  },
  {
    name: 'temporal workflow start: an unknown field',
    run: () => viaTemporalCli(fullCluster, '{"force": true}'),
    type: 'InvalidInput',
    message: /unknown field "force"\. Accepted fields: .*backupId/,
  },
  {
    name: 'temporal workflow start: a wrong type',
    run: () => viaTemporalCli(totalDatabaseLoss, '{"confirm": "yes"}'),
    type: 'InvalidInput',
    message: /field "confirm": .*expected boolean/i,
  },
  // --- the client (what kohakku-dr and the UI send)
  {
    name: 'a time without its zone',
    run: () => viaClient(pointInTimeRecovery, { target: '2026-11-25T03:12:00' }),
    type: 'InvalidInput',
    message: /field "target": .*ISO 8601 time with its zone/,
  },
  {
    name: 'a date that does not exist (February 30th)',
    run: () => viaClient(pointInTimeRecovery, { target: '2026-02-30T03:00:00Z' }),
    type: 'InvalidInput',
    message: /field "target": .*whose date exists/,
  },
  {
    name: 'a malformed incident time',
    run: () => viaClient(totalDatabaseLoss, { incidentAt: 'yesterday at 3' }),
    type: 'InvalidInput',
    message: /field "incidentAt": expected an ISO 8601 time/,
  },
  {
    name: 'both an instant and a restore point',
    run: () => viaClient(pointInTimeRecovery, { target: 'latest', restorePoint: 'before deploy' }),
    type: 'InvalidInput',
    message: /give exactly one of target .* and restorePoint/,
  },
  {
    name: 'SQL in a table name',
    run: () =>
      viaClient(tableRestore, { target: 'controller', tables: ['tasks_task; DROP TABLE tasks_task_skills'] }),
    type: 'InvalidInput',
    message: /field "tables.0": expected a table name such as "tasks_task"/,
  },
  {
    name: 'a quote in a table name',
    run: () => viaClient(tableRestore, { target: 'controller', tables: ['tasks_task"--'] }),
    type: 'InvalidInput',
    message: /field "tables.0": expected a table name/,
  },
  {
    name: 'shell in a backup id',
    run: () => viaClient(totalDatabaseLoss, { backupId: `$(touch ${PWNED})`, confirm: true }),
    type: 'InvalidInput',
    message: /field "backupId": expected "latest" or a backup id/,
  },
  {
    name: 'a path in a backup id',
    run: () => viaClient(fullCluster, { backupId: '../sets/20200101T000000Z', confirm: true }),
    type: 'InvalidInput',
    message: /field "backupId": expected "latest" or a backup id/,
  },
  {
    name: 'an unknown target',
    run: () => viaClient(totalDatabaseLoss, { targets: ['billing'] }),
    type: 'InvalidInput',
    message: /field "targets.0": .*controller.*dispatcher/,
  },
  {
    name: 'an unknown backup store',
    run: () => viaClient(fullCluster, { from: 'tape' }),
    type: 'InvalidInput',
    message: /field "from": .*primary.*replica/,
  },
  {
    name: 'a deadline of 0 s',
    run: () => viaClient(redisLoss, { startDeadlineSeconds: 0 }),
    type: 'InvalidInput',
    message: /field "startDeadlineSeconds": .*>=1|field "startDeadlineSeconds": .*at least 1/i,
  },
  {
    name: 'a backup id that is not there',
    run: () => viaClient(totalDatabaseLoss, { backupId: '20200101T000000Z', confirm: true }),
    type: 'BackupNotFound',
    message: /20200101T000000Z not found/,
  },
  // --- the kohakku-dr CLI
  {
    name: 'kohakku-dr: SQL and shell in a table name',
    run: () =>
      viaKohakkuDr(['recover', 'table', 'controller', `x; DROP TABLE tasks_task; $(touch ${PWNED})`]),
    type: 'InvalidInput',
    message: /field "tables.0": expected a table name/,
    exit: 2,
  },
  {
    name: 'kohakku-dr: a malformed --to',
    run: () => viaKohakkuDr(['recover', 'point-in-time', '--to', '25/11/2026 03:12']),
    type: 'InvalidInput',
    message: /field "target": .*ISO 8601/,
    exit: 2,
  },
  {
    name: 'kohakku-dr: a misspelled option',
    run: () => viaKohakkuDr(['recover', 'total-database-loss', '--bakup', 'latest']),
    // commander refuses it: no workflow is started, so there is no error type
    message: /unknown option '--bakup'.*Did you mean --backup\?/s,
    exit: 2,
  },
  // --- the worker's settings: it refuses to start, one line naming the setting
  {
    name: 'settings: cron 61 2 * * *',
    run: () => viaWorkerSettings({ BACKUP_SCHEDULE_CRON: '61 2 * * *' }),
    type: 'ConfigError',
    message: /invalid setting BACKUP_SCHEDULE_CRON: minutes part must be >= 0 and <= 59/,
    exit: 2,
  },
  {
    name: 'settings: retention 6 days',
    run: () => viaWorkerSettings({ BACKUP_RETENTION_DAYS: '6' }),
    type: 'ConfigError',
    message: /invalid setting BACKUP_RETENTION_DAYS: retention must be between 7 and 30 days/,
    exit: 2,
  },
  {
    name: 'settings: retention 31 days',
    run: () => viaWorkerSettings({ BACKUP_RETENTION_DAYS: '31' }),
    type: 'ConfigError',
    message: /invalid setting BACKUP_RETENTION_DAYS: .*\(got "31"\)/,
    exit: 2,
  },
  {
    name: 'settings: an unknown time zone',
    run: () => viaWorkerSettings({ BACKUP_SCHEDULE_TIMEZONE: 'Mars/Olympus_Mons' }),
    type: 'ConfigError',
    message: /invalid setting BACKUP_SCHEDULE_TIMEZONE: expected an IANA time zone/,
    exit: 2,
  },
  {
    name: 'settings: shell in a port',
    run: () => viaWorkerSettings({ POSTGRES_PORT: `5432; touch ${PWNED}` }),
    type: 'ConfigError',
    message: /invalid setting POSTGRES_PORT:/,
    exit: 2,
  },
  // --- endpoints the settings name wrongly: the preflight names them, within seconds
  {
    name: 'a backup bucket that does not exist',
    run: () => viaWorkerWith({ BACKUP_BUCKET: 'no-such-backup-bucket' }, totalDatabaseLoss, restoreAll()),
    type: 'EndpointMissing',
    message: /no-such-backup-bucket/,
  },
  {
    name: 'a wrong backup-store access key',
    run: () => viaWorkerWith({ BACKUP_S3_ACCESS_KEY: 'not-the-access-key' }, totalDatabaseLoss, restoreAll()),
    type: 'EndpointAuthFailed',
    message: /credentials refused/,
  },
  {
    name: 'an unreachable backup store',
    run: async () =>
      viaWorkerWith(
        { BACKUP_S3_ENDPOINT: `https://127.0.0.1:${await freePort()}` },
        totalDatabaseLoss,
        restoreAll(),
      ),
    type: 'EndpointUnreachable',
    message: /backup store .*127\.0\.0\.1:\d+.*unreachable/,
  },
  // --- what the backup store holds: damaged, altered, or from elsewhere
  {
    name: 'a dump from a newer PostgreSQL major (the manifest of a PostgreSQL 17 backup)',
    run: () =>
      withManifestEdited(
        (m) => ({ ...m, serverVersion: '17.2 (Debian 17.2-1)', pgDumpVersion: 'pg_dump (PostgreSQL) 17.2' }),
        () => viaClient(totalDatabaseLoss, restoreAll()),
      ),
    type: 'BackupIncompatible',
    message: /taken from PostgreSQL 17\.2 .*newer than the live server \(15\)/,
  },
  {
    name: 'a manifest that is not JSON',
    run: () =>
      withBackupAltered(
        [postgresManifestKey(backupId)],
        async (o) =>
          putObject(postgresManifestKey(backupId), o.get(postgresManifestKey(backupId))!.subarray(0, 200)),
        () => viaClient(totalDatabaseLoss, restoreAll()),
      ),
    type: 'BackupCorrupt',
    message: /postgres\/\d{8}T\d{6}Z\/manifest\.json in s3:\/\/kohakku-backups.* is not valid JSON/,
  },
  {
    name: "a manifest copied from another backup's",
    run: () =>
      withManifestEdited(
        (m) => ({ ...m, id: '20200101T000000Z' }),
        () =>
          viaClient(tableRestore, {
            backupId,
            target: 'controller',
            tables: ['tasks_task'],
            confirm: true,
            from: 'primary',
          }),
      ),
    type: 'BackupCorrupt',
    message: /is damaged or was altered: it names backup "20200101T000000Z"/,
  },
  {
    name: 'a manifest whose dump sha256 was altered',
    run: () =>
      withManifestEdited(
        (m) => {
          m.databases[0]!.sha256 = 'f'.repeat(64);
        },
        () => viaClient(totalDatabaseLoss, restoreAll()),
      ),
    type: 'BackupCorrupt',
    message: /is corrupt: sha256 .* manifest says ffffffffffff/,
  },
  {
    name: 'a manifest whose row count was altered',
    run: () =>
      withManifestEdited(
        (m) => {
          const t = m.databases
            .find((d) => d.target === 'controller')!
            .tables.find((x) => x.table.endsWith('tasks_task'))!;
          t.rows += 1;
        },
        () => viaClient(totalDatabaseLoss, restoreAll()),
      ),
    type: 'RestoreVerificationFailed',
    message: /tasks_task/,
  },
  {
    name: 'a dump truncated, its manifest re-sealed to match',
    run: async () => {
      const m = JSON.parse((await readObject(postgresManifestKey(backupId))).toString()) as PostgresManifest;
      const entry = m.databases.find((d) => d.target === 'dispatcher')!;
      return withBackupAltered(
        [entry.key, postgresManifestKey(backupId)],
        async (o) => {
          const cut = o.get(entry.key)!.subarray(0, Math.floor(entry.size / 2));
          await putObject(entry.key, cut);
          entry.size = cut.length;
          entry.sha256 = sha256(cut);
          await putObject(postgresManifestKey(backupId), Buffer.from(JSON.stringify(m)));
        },
        () => viaClient(totalDatabaseLoss, restoreAll()),
      );
    },
    type: 'BackupCorrupt',
    message: /kohakku-dispatcher/,
  },
  {
    name: 'a truncated RDB, its manifest re-sealed to match: verification fails, the set is marked so',
    run: async () => {
      const rm = JSON.parse((await readObject(redisManifestKey(backupId))).toString()) as RedisBackupManifest;
      return withBackupAltered(
        [rm.key, redisManifestKey(backupId), setManifestKey(backupId)],
        async (o) => {
          const cut = o.get(rm.key)!.subarray(0, Math.floor(rm.size / 2));
          await putObject(rm.key, cut);
          await putObject(
            redisManifestKey(backupId),
            Buffer.from(JSON.stringify({ ...rm, size: cut.length, sha256: sha256(cut) })),
          );
        },
        () => viaClient(verifyBackupSet, { backupId, from: 'primary' }),
      );
    },
    type: 'VerificationFailed',
    message: /RDB .* does not check out/,
  },
];

test('the table has at least 25 rows, each with its own name', () => {
  expect(rows.length).toBeGreaterThanOrEqual(25);
  expect(new Set(rows.map((r) => r.name)).size).toBe(rows.length);
});

/** The recoveries' local work (dump copies, table-restore scripts): whatever a row adds must be gone after it. */
async function workFiles(): Promise<string[]> {
  const restoreDir = path.join(k.workerEnv.KOHAKKU_DR_WORK_DIR!, 'restore');
  return existsSync(restoreDir) ? (await fs.readdir(restoreDir)).sort() : [];
}

test.each(rows.map((r) => [r.name, r] as const))('%s', async (_name, row) => {
  const before = await liveState();
  const filesBefore = await workFiles();
  const refusal = await row.run();
  expect(refusal.message).toMatch(row.message);
  if (row.type) expect(refusal.type).toBe(row.type);
  if (row.exit !== undefined) expect(refusal.exit).toBe(row.exit);
  // Live data exactly as it was; nothing of the recovery left behind; no shell ever ran.
  expect(await liveState()).toEqual(before); // also the list of databases: no staging copy left
  expect(existsSync(PWNED)).toBe(false);
  expect(await workFiles()).toEqual(filesBefore);
});
