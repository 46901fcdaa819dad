/**
 * What a log pipeline and Prometheus get from a real worker (scripts/worker, real services): with
 * WORKER_LOG_FORMAT=json every line it writes is one JSON object, and those of a backup's
 * activities carry the workflow's and the activity's ids; with WORKER_METRICS_ADDRESS the SDK's
 * metrics are served at /metrics, the backup's activities among them; no setting's secret is in
 * either.
 */
import { freePort } from '../src/infra/processes';
import { freshKohakku, startWorker, stopKohakku, type TestKohakku, backUpPostgres } from './harness/kohakku';

let k: TestKohakku;

beforeAll(async () => {
  k = await freshKohakku('observability', { tasks: 200, briefs: 5 }, { agents: false });
});

afterAll(async () => {
  if (k) await stopKohakku(k);
});

jest.setTimeout(180000);

test('JSON log lines with workflow and activity ids, and Prometheus metrics, from a worker running a backup', async () => {
  const metricsAddress = `127.0.0.1:${await freePort()}`;
  const worker = await startWorker({
    ...k.workerEnv,
    WORKER_LOG_FORMAT: 'json',
    WORKER_LOG_LEVEL: 'DEBUG',
    WORKER_METRICS_ADDRESS: metricsAddress,
  });
  let metrics = '';
  try {
    await backUpPostgres(k, 'test-observability-backup');
    const response = await fetch(`http://${metricsAddress}/metrics`);
    expect(response.status).toBe(200);
    metrics = await response.text();
  } finally {
    await worker.stop();
  }

  const lines = worker
    .output()
    .split('\n')
    .filter((l) => l.trim() !== '');
  // Every line, the worker's own ("polling …") and the SDK's, is a JSON object.
  const entries = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  for (const e of entries)
    expect(e).toEqual(
      expect.objectContaining({
        time: expect.any(String),
        level: expect.any(String),
        message: expect.any(String),
      }),
    );
  expect(entries.some((e) => String(e.message).includes('worker polling'))).toBe(true);
  expect(entries.some((e) => String(e.message).includes(`http://${metricsAddress}/metrics`))).toBe(true);
  const backupActivity = entries.find(
    (e) => e.activityType === 'backupPostgres' && e.workflowId === 'test-observability-backup',
  );
  expect(backupActivity).toEqual(
    expect.objectContaining({ activityId: expect.any(String), workflowId: 'test-observability-backup' }),
  );

  // The SDK's Prometheus exposition: the backup's activities were counted and timed.
  expect(metrics).toMatch(/^temporal_activity_execution_latency\w*\{[^}]*activity_type="backupPostgres"/m);
  expect(metrics).toMatch(/^temporal_worker_start\w*\{/m);

  const secrets = Object.entries(k.workerEnv)
    .filter(([name, value]) => /PASSWORD|SECRET/.test(name) && value.length >= 6)
    .map(([, value]) => value);
  expect(secrets.length).toBeGreaterThan(0);
  for (const secret of secrets) {
    expect(worker.output()).not.toContain(secret);
    expect(metrics).not.toContain(secret);
  }
});
