/**
 * Break-glass on real services: the reference Kohakku is backed up, then the whole cluster is
 * lost — and so are the Temporal server and the worker that took the backup (stopped; nothing of
 * kohakku-dr is left running). `kohakku-dr up --recover full-cluster` is started as an operator
 * would, with only the worker's settings: it starts a Temporal dev server of its own (persisted
 * in --dir, with its UI) and a worker, and brings the full-cluster recovery to completion from
 * the backup store alone. Checked against the live data: everything but the lost tasks as the
 * backup had it, the lost tasks pending and queued once. Ctrl-C then stops the server and the
 * worker; `up` again on the same folder finds the finished run in its database.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Redis } from 'ioredis';
import { Client, Connection } from '@temporalio/client';
import { freePort, tcpOpen } from '../src/infra/processes';
import { WORKFLOW_IDS } from '../src/client/temporal';
import { nightlyBackup } from '../src/workflows';
import {
  clusterFingerprints,
  DIST,
  freshKohakku,
  loseWholeCluster,
  startWorker,
  stopKohakku,
  temporalClient,
  testStack,
  type TestKohakku,
} from './harness/kohakku';

let k: TestKohakku;

beforeAll(async () => {
  k = await freshKohakku(
    'up',
    { tasks: 2000, briefs: 50 },
    { monitor: { monitorIntervalSeconds: 2 }, agents: { agentIntervalSeconds: 1 }, temporal: {} },
  );
});

afterAll(async () => {
  if (k) await stopKohakku(k);
});

jest.setTimeout(300000);

/** `kohakku-dr up …` with the worker's settings but no Temporal address: its own server. */
function startUp(args: string[]) {
  const settings = Object.fromEntries(
    Object.entries(k.workerEnv).filter(([key]) => key !== 'TEMPORAL_ADDRESS'),
  );
  const child = spawn(process.execPath, [path.join(DIST, 'client/cli.js'), 'up', ...args], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root', ...settings },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const waitFor = async (pattern: RegExp, timeoutMs: number) => {
    const deadline = Date.now() + timeoutMs;
    while (!pattern.test(output)) {
      if (child.exitCode !== null) throw new Error(`up exited ${child.exitCode}:\n${output}`);
      if (Date.now() > deadline)
        throw new Error(`up: no ${pattern} within ${timeoutMs / 1000} s:\n${output}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  };
  return { child, exited, waitFor, output: () => output };
}

test('`up --recover full-cluster` on a host with nothing else brings the recovery to completion', async () => {
  // The backup, taken the usual way (the suite's Temporal and a worker), which are then gone.
  const backupWorker = await startWorker(k.workerEnv);
  const nightly = await (
    await temporalClient(k.stack)
  ).workflow.execute(nightlyBackup, {
    taskQueue: k.workerEnv.KOHAKKU_DR_TASK_QUEUE!,
    workflowId: 'test-up-nightly',
  });
  await backupWorker.stop();
  const before = await clusterFingerprints(k);
  await loseWholeCluster(k);

  const dir = mkdtempSync(path.join(os.tmpdir(), 'kohakku-dr-up-'));
  const [port, uiPort] = [await freePort(), await freePort()];
  const up = startUp([
    '--dir',
    dir,
    '--port',
    String(port),
    '--ui-port',
    String(uiPort),
    '--recover',
    'full-cluster',
    '--',
    '--confirm',
    '--grace',
    '6',
  ]);
  try {
    await up.waitFor(/up\. Temporal 127\.0\.0\.1:\d+/, 90000);
    expect(up.output()).toContain(`its UI http://127.0.0.1:${uiPort}/namespaces/default/workflows`);
    expect(up.output()).toContain(`export TEMPORAL_ADDRESS=127.0.0.1:${port}`);
    await up.waitFor(/the recovery's command ended \(exit \d+\)/, 240000);
    expect(up.output()).toContain("the recovery's command ended (exit 0)");
    expect(up.output()).toContain(nightly.set.id);

    // The live data: everything but the lost tasks as the backup had it; lost tasks queued once.
    expect(await clusterFingerprints(k)).toEqual(before);
    const redis = new Redis({ port: testStack().redis.port });
    const queue = await redis.lrange('kohakku:queue:pending', 0, -1);
    redis.disconnect();
    expect(new Set(queue).size).toBe(queue.length);
    expect(queue.length).toBe(600 + 200); // the seed's pending tasks and its lost ones

    // The run is on up's own server, and its UI answers.
    const connection = await Connection.connect({ address: `127.0.0.1:${port}` });
    const d = await new Client({ connection }).workflow.getHandle(WORKFLOW_IDS.clusterRecovery).describe();
    await connection.close();
    expect(d.status.name).toBe('COMPLETED');
    expect((await fetch(`http://127.0.0.1:${uiPort}/`)).ok).toBe(true);
  } finally {
    up.child.kill('SIGINT');
    await up.exited;
  }
  expect(up.output()).toMatch(/stopped\. The server's database stays in .*temporal\.db/);
  expect(await tcpOpen(port)).toBe(false);
  expect(await tcpOpen(uiPort)).toBe(false);
});
