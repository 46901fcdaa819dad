/**
 * Secrets stay where they are configured. Run last (harness/sequencer.js):
 * - every workflow history on the suite's Temporal server (payloads decoded) and every worker and
 *   CLI log the suite wrote (harness/secrets.ts) holds none of the secrets the suite configured:
 *   the S3 secret keys, the PostgreSQL password every test worker carries, the webhook token,
 *   the evidence signing keys;
 * - a service restart command — the real activity, a real child process — gets the basics and
 *   the variables SERVICE_COMMAND_ENV names, none of the worker's other variables; its
 *   arguments (a token in them) are in neither its result nor its error; a health check's
 *   response body never reaches the result; a libpq tool gets the PG* variables, not the S3 ones.
 */
import { promises as fs } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createServiceActivities } from '../src/activities/services';
import { loadConfig } from '../src/config';
import { childEnv, CHILD_BASE_ENV, createCommandRunner } from '../src/infra/exec';
import { stackEnv } from '../src/stack/stack';
import { closeTemporal, temporalClient } from './harness/kohakku';
import { configuredSecrets, logsDir, testStack } from './harness/secrets';

afterAll(async () => {
  await closeTemporal();
});

jest.setTimeout(600000);

test('no configured secret in any workflow history or any worker or CLI log of the suite', async () => {
  const secrets = configuredSecrets();
  expect(secrets.length).toBeGreaterThanOrEqual(3);
  const found: string[] = [];
  const look = (text: string, where: string) => {
    for (const secret of secrets) if (text.includes(secret)) found.push(`${secret.slice(0, 6)}… in ${where}`);
  };
  const client = await temporalClient(testStack());
  let histories = 0;
  for await (const run of client.workflow.list()) {
    const history = await client.workflow.getHandle(run.workflowId, run.runId).fetchHistory();
    // Payloads are bytes (JSON): read as text, with every attribute, failure and memo around them.
    look(
      JSON.stringify(history, (_key, value: unknown) =>
        value instanceof Uint8Array ? Buffer.from(value).toString('utf8') : value,
      ),
      `the history of ${run.workflowId}`,
    );
    histories += 1;
  }
  let logs = 0;
  for (const name of await fs.readdir(logsDir()).catch(() => [] as string[])) {
    look(await fs.readFile(path.join(logsDir(), name), 'utf8'), `log ${name}`);
    logs += 1;
  }
  process.stderr.write(
    `[secret-sweep] ${secrets.length} secrets looked for in ${histories} workflow histories and ${logs} worker and CLI logs\n`,
  );
  expect(found).toEqual([]);
  // A sweep of nothing proves nothing: it reads what the suite's other files left (run alone, it fails here).
  expect(histories).toBeGreaterThan(0);
  expect(logs).toBeGreaterThan(0);
});

const CANARIES = {
  BACKUP_S3_SECRET_KEY: 'sweep-canary-s3-secret-9b1d',
  POSTGRES_PASSWORD: 'sweep-canary-pg-password-4e7a',
  NOTIFY_WEBHOOK_URL: 'https://hooks.example/services/sweep-canary-webhook-0c2f',
};

describe('child processes get only what they need', () => {
  const added = [...Object.keys(CANARIES), 'KOHAKKU_TEST_PASSED', 'DOCKER_HOST'];
  const saved = Object.fromEntries(added.map((n) => [n, process.env[n]]));
  let dir: string;
  let healthServer: http.Server;
  let healthPort: number;

  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kohakku-dr-child-env-'));
    Object.assign(process.env, CANARIES, {
      KOHAKKU_TEST_PASSED: 'passed-on',
      DOCKER_HOST: 'unix:///nowhere',
    });
    // A health endpoint that fails with a body holding a secret.
    healthServer = http.createServer((_req, res) => {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`database url postgres://admin:${CANARIES.POSTGRES_PASSWORD}@db/kohakku`);
    });
    await new Promise<void>((r) => healthServer.listen(0, '127.0.0.1', r));
    healthPort = (healthServer.address() as AddressInfo).port;
  });

  afterAll(async () => {
    for (const [n, v] of Object.entries(saved))
      if (v === undefined) delete process.env[n];
      else process.env[n] = v;
    await new Promise((r) => healthServer.close(r));
    await fs.rm(dir, { recursive: true, force: true });
  });

  const TOKEN_ARG = '--token=sweep-canary-command-token-77aa';

  function activitiesWith(command: string[]) {
    const config = loadConfig({
      ...stackEnv(testStack()),
      ...CANARIES,
      KOHAKKU_CONTROLLER_DB: 'kohakku-controller',
      KOHAKKU_DISPATCHER_DB: 'kohakku-dispatcher',
      SERVICE_ADAPTER: 'command',
      SERVICE_RESTART_COMMAND: JSON.stringify(command),
      SERVICE_COMMAND_ENV: 'KOHAKKU_TEST_PASSED',
      KOHAKKU_CONTROLLER_HEALTH: `http://127.0.0.1:${healthPort}/healthz`,
      KOHAKKU_DISPATCHER_HEALTH: `http://127.0.0.1:${healthPort}/healthz`,
      KOHAKKU_MONITOR_HEALTH: `http://127.0.0.1:${healthPort}/healthz`,
      KOHAKKU_TEMPORAL_HEALTH: `tcp://127.0.0.1:${healthPort}`,
    });
    return createServiceActivities({ config, exec: createCommandRunner() });
  }

  test('SERVICE_RESTART_COMMAND: the basics and SERVICE_COMMAND_ENV only; its arguments in neither result nor error', async () => {
    const envFile = path.join(dir, 'env.json');
    const dumpEnv = `require('fs').writeFileSync(process.argv[1], JSON.stringify(process.env))`;
    const ok = activitiesWith([process.execPath, '-e', dumpEnv, envFile, '{action}', '{service}', TOKEN_ARG]);
    const result = await new MockActivityEnvironment().run(ok.restartService, {
      service: 'controller' as const,
    });
    expect(JSON.stringify(result)).not.toContain('sweep-canary');
    expect(result).toEqual({
      service: 'controller',
      action: 'restart',
      adapter: 'command',
      program: path.basename(process.execPath),
    });

    const seen = JSON.parse(await fs.readFile(envFile, 'utf8')) as Record<string, string>;
    const allowed = new Set<string>([...CHILD_BASE_ENV, 'KOHAKKU_TEST_PASSED']);
    expect(Object.keys(seen).filter((n) => !allowed.has(n))).toEqual([]);
    expect(seen.KOHAKKU_TEST_PASSED).toBe('passed-on');
    expect(seen.PATH).toBe(process.env.PATH);
    expect(JSON.stringify(seen)).not.toContain('sweep-canary');

    const failing = activitiesWith([process.execPath, '-e', 'process.exit(3)', '{service}', TOKEN_ARG]);
    const error = await new MockActivityEnvironment()
      .run(failing.restartService, { service: 'dispatcher' as const })
      .catch((e: Error) => e);
    expect((error as Error).message).toMatch(
      /\(SERVICE_ADAPTER=command, restart dispatcher\) failed \(exit 3\)/,
    );
    expect((error as Error).message).not.toContain('sweep-canary');
  });

  test("a failing health check's response body never reaches the result", async () => {
    const { waitForHealthy } = activitiesWith(['true']);
    const report = await new MockActivityEnvironment().run(waitForHealthy, {
      service: 'controller' as const,
      deadlineSeconds: 0,
    });
    expect(report).toMatchObject({ healthy: false, lastError: 'HTTP 500 Internal Server Error' });
    expect(JSON.stringify(report)).not.toContain('sweep-canary');
  });

  test('a libpq tool gets the PG* variables and what its call sets; no other tool gets them', () => {
    const from = { PATH: '/bin', PGSSLMODE: 'require', PGOPTIONS: '-c TimeZone=Asia/Tokyo', ...CANARIES };
    expect(childEnv('/usr/lib/postgresql/15/bin/pg_restore', { env: { PGPASSWORD: 'given' } }, from)).toEqual(
      {
        PATH: '/bin',
        PGSSLMODE: 'require',
        PGOPTIONS: '-c TimeZone=Asia/Tokyo',
        PGPASSWORD: 'given',
      },
    );
    expect(childEnv('/usr/bin/redis-check-aof', {}, from)).toEqual({ PATH: '/bin' });
    expect(childEnv('pgbackrest', { isolatedEnv: true, env: { PGBACKREST_STANZA: 'k' } }, from)).toEqual({
      PGBACKREST_STANZA: 'k',
    });
  });
});
