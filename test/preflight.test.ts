/**
 * The preflight step on real services: a worker whose backup-store secret is wrong, and one whose
 * PostgreSQL is not there, each start a recovery through the CLI as an operator would. The
 * recovery fails within seconds — not after minutes of retries — with the endpoint named (where,
 * and whether it is the credentials or the network), exit 5, no stack trace, no secret printed;
 * and the live databases are exactly as they were. A worker with every endpoint right passes the
 * preflight and goes on to the approval.
 */
import { freePort } from '../src/infra/processes';
import { EXIT_CODES } from '../src/client/exitCodes';
import { WORKFLOW_IDS } from '../src/client/temporal';
import { progressQuery } from '../src/workflows/definitions';
import { runCli, stackTraceLine } from './harness/cli';
import {
  databases,
  freshKohakku,
  startWorker,
  stopKohakku,
  tableFingerprints,
  temporalClient,
  type TestKohakku,
  backUpPostgres,
} from './harness/kohakku';

let k: TestKohakku;

beforeAll(async () => {
  k = await freshKohakku('preflight', { tasks: 500, briefs: 10 }, { agents: false });
  // A backup in the primary store, for the recovery that gets past its preflight.
  const worker = await startWorker(k.workerEnv);
  try {
    await backUpPostgres(k, 'test-preflight-backup');
  } finally {
    await worker.stop();
  }
});

afterAll(async () => {
  if (k) await stopKohakku(k);
});

jest.setTimeout(180000);

const UNREACHABLE = EXIT_CODES.find((e) => e.name === 'unreachable')!.code;

async function liveState() {
  return {
    databases: (await databases(k.stack)).filter((d) => d.startsWith('kohakku')).sort(),
    controller: await tableFingerprints(k.stack, 'kohakku-controller'),
    dispatcher: await tableFingerprints(k.stack, 'kohakku-dispatcher'),
  };
}

/** Starts a worker with `env` over the good settings on a queue of its own, runs the CLI against it. */
async function recoverWith(queue: string, env: Record<string, string>, args: string[]) {
  const worker = await startWorker({ ...k.workerEnv, ...env, KOHAKKU_DR_TASK_QUEUE: queue });
  try {
    return await runCli(['recover', 'total-database-loss', ...args], { taskQueue: queue });
  } finally {
    await worker.stop();
    const handle = (await temporalClient(k.stack)).workflow.getHandle(WORKFLOW_IDS.postgresRecovery);
    if ((await handle.describe().catch(() => undefined))?.status.name === 'RUNNING')
      await handle.terminate('preflight.test cleanup');
  }
}

test('a wrong backup-store secret is named as refused credentials within seconds; nothing changes', async () => {
  const before = await liveState();
  const wrongSecret = 'not-the-backup-secret-0123456789';
  const queue = 'test-preflight-secret';
  const secrets = [wrongSecret, k.workerEnv.BACKUP_S3_SECRET_KEY!];
  // Read from the primary: its preflight fails, before anything else.
  const named = await recoverWith(queue, { BACKUP_S3_SECRET_KEY: wrongSecret }, ['--from', 'primary']);
  expect(named.code).toBe(UNREACHABLE);
  expect(named.ms).toBeLessThan(30000);
  expect(named.stderr).toMatch(/EndpointAuthFailed/);
  expect(named.stderr).toMatch(
    /preflight: backup store at primary: s3:\/\/kohakku-backups on https:\/\/[\w.]+:\d+: credentials refused — refused the access key \(AccessDenied\)/,
  );
  expect(named.stderr).toMatch(/Nothing was changed/);
  expect(named.stderr).not.toMatch(stackTraceLine);
  for (const secret of secrets) expect(named.stdout + named.stderr).not.toContain(secret);
  // From either store: the replica answers, so the preflight only warns; the primary's refusal
  // then ends the look-up for a backup at once (refused credentials do not heal within a run).
  const either = await recoverWith(queue, { BACKUP_S3_SECRET_KEY: wrongSecret }, []);
  expect(either.code).toBe(UNREACHABLE);
  expect(either.ms).toBeLessThan(30000);
  expect(either.stderr).toMatch(/EndpointAuthFailed.*primary refused the worker's credentials/);
  expect(either.stderr).not.toMatch(stackTraceLine);
  for (const secret of secrets) expect(either.stdout + either.stderr).not.toContain(secret);
  expect(await liveState()).toEqual(before);
});

test('an unreachable PostgreSQL is named with its address within seconds; nothing changes', async () => {
  const before = await liveState();
  const closedPort = await freePort();
  const run = await recoverWith('test-preflight-postgres', { POSTGRES_PORT: String(closedPort) }, ['--json']);
  expect(run.code).toBe(UNREACHABLE);
  expect(run.ms).toBeLessThan(30000);
  const doc = JSON.parse(run.stdout) as { error: string; type: string; exit: number };
  expect(doc).toMatchObject({ exit: UNREACHABLE, type: 'EndpointUnreachable' });
  expect(doc.error).toContain(`PostgreSQL at 127.0.0.1:${closedPort}`);
  expect(doc.error).toMatch(/unreachable — ECONNREFUSED/);
  expect(run.stderr).not.toMatch(stackTraceLine);
  expect(await liveState()).toEqual(before);
});

test('with every endpoint answering, the preflight passes and the recovery goes on to its approval', async () => {
  const before = await liveState();
  const queue = 'test-preflight-ok';
  const worker = await startWorker({ ...k.workerEnv, KOHAKKU_DR_TASK_QUEUE: queue });
  const handle = (await temporalClient(k.stack)).workflow.getHandle(WORKFLOW_IDS.postgresRecovery);
  try {
    const run = await runCli(
      ['recover', 'total-database-loss', '--target', 'controller', '--no-wait', '--json'],
      {
        taskQueue: queue,
      },
    );
    expect(run.code).toBe(EXIT_CODES.find((e) => e.name === 'awaiting-approval')!.code);
    const progress = await handle.query(progressQuery);
    const preflight = progress.steps.find((s) => s.name === 'preflight');
    expect(preflight).toMatchObject({ status: 'done' });
    expect(preflight?.detail).toMatch(
      /^answered: PostgreSQL 127\.0\.0\.1:\d+ .*Redis 127\.0\.0\.1:\d+ .*backup store primary: s3:\/\/kohakku-backups .*service adapter command: /,
    );
  } finally {
    await handle.cancel().catch(() => undefined);
    await handle.result().catch(() => undefined);
    await worker.stop();
  }
  expect(await liveState()).toEqual(before);
});
