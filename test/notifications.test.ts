/**
 * Notifications on real services: a worker with NOTIFY_WEBHOOK_URL pointing at a receiver on
 * loopback (Slack's JSON) runs a total-database-loss recovery that waits for approval, then
 * completes, and one that fails; `kohakku-dr schedules pause` pauses the nightly schedule. The
 * receiver gets the approval-waiting notice with the exact approve command, the completion with
 * its RTO, the failure saying live data was untouched, and the pause — the completion after a
 * first delivery answered 503, retried by Temporal while the recovery had already ended. The
 * webhook's secret path is in no workflow history. The same worker signs its reports
 * (EVIDENCE_SIGNING_KEY_FILE): each recovery, completed or failed, leaves a signed JSON report and
 * a Markdown summary in the backup store and REPORTS_DIR, with its steps, RTO, approvals and what
 * happened to live data.
 */
import { promises as fs } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Report } from '../src/domain/reports';
import type { TotalDatabaseLossResult } from '../src/workflows/totalDatabaseLoss';
import { generateSigningKey, readPublicKey, verifyReport } from '../src/infra/evidence';
import { WORKFLOW_IDS } from '../src/client/temporal';
import { totalDatabaseLoss } from '../src/workflows';
import { approveSignal } from '../src/workflows/definitions';
import { runCli } from './harness/cli';
import { registerSecret } from './harness/secrets';
import {
  awaitApprovalRequest,
  freshKohakku,
  startWorker,
  stopKohakku,
  temporalClient,
  type TestKohakku,
  type WorkerProcess,
  backUpPostgres,
} from './harness/kohakku';

/** The part of a webhook URL that authorizes it (Slack's …/services/T…/B…/<token>). */
const TOKEN = 'xoxwebhook-secret-7f3a9c1e5b';

interface Delivery {
  path: string;
  text: string;
  status: number;
}

let k: TestKohakku;
let worker: WorkerProcess;
let receiver: http.Server;
const deliveries: Delivery[] = [];
/** Texts matching this are answered 503 the first time (a chat service's hiccup). */
let failFirst: RegExp | undefined;
let reportsDir: string;
let publicKeyFile: string;

/** The reports the worker wrote into REPORTS_DIR for `workflowId`'s runs, oldest first. */
async function reportsOf(workflowId: string): Promise<Report[]> {
  const dir = path.join(reportsDir, 'recovery');
  const files = (await fs.readdir(dir).catch(() => [] as string[])).filter((f) => f.endsWith('.json')).sort();
  const reports = await Promise.all(
    files.map(async (f) => JSON.parse(await fs.readFile(path.join(dir, f), 'utf8')) as Report),
  );
  return reports.filter((r) => r.workflowId === workflowId);
}

beforeAll(async () => {
  registerSecret(TOKEN);
  receiver = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      const { text } = JSON.parse(body) as { text: string };
      const fail = failFirst?.test(text) && !deliveries.some((d) => d.text === text);
      const status = fail ? 503 : 200;
      deliveries.push({ path: req.url ?? '', text, status });
      res.writeHead(status).end(fail ? 'busy' : 'ok');
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  const port = (receiver.address() as AddressInfo).port;
  k = await freshKohakku('notifications', { tasks: 300, briefs: 5 }, { agents: false });
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'notifications-'));
  reportsDir = path.join(dir, 'reports');
  const key = await generateSigningKey(dir);
  publicKeyFile = key.publicKeyFile;
  registerSecret((await fs.readFile(key.keyFile, 'utf8')).replace(/-----[^-]+-----|\s/g, ''));
  worker = await startWorker({
    ...k.workerEnv,
    REPORTS_DIR: reportsDir,
    EVIDENCE_SIGNING_KEY_FILE: key.keyFile,
    NOTIFY_WEBHOOK_URL: `http://127.0.0.1:${port}/services/T0/B0/${TOKEN}`,
  });
  await backUpPostgres(k, 'test-notifications-backup');
});

afterAll(async () => {
  await worker?.stop();
  if (k) await stopKohakku(k);
  receiver?.close();
});

jest.setTimeout(240000);

/** Waits until a delivery accepted (2xx) matches `pattern`; returns it. */
async function delivered(pattern: RegExp, seconds = 60): Promise<Delivery> {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const d = deliveries.find((x) => x.status === 200 && pattern.test(x.text));
    if (d) return d;
    if (Date.now() > deadline)
      throw new Error(`no delivery matching ${pattern}; got: ${deliveries.map((x) => x.text).join(' | ')}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

test('approval waiting, then completed (delivered on the second attempt, after the run ended)', async () => {
  const client = await temporalClient(k.stack);
  failFirst = /completed, verified/;
  const handle = await client.workflow.start(totalDatabaseLoss, {
    taskQueue: k.workerEnv.KOHAKKU_DR_TASK_QUEUE!,
    workflowId: WORKFLOW_IDS.postgresRecovery,
    args: [{ targets: ['controller'] }],
  });
  await awaitApprovalRequest(handle);
  const waiting = await delivered(/waits for approval/, 20);
  expect(waiting.path).toBe(`/services/T0/B0/${TOKEN}`);
  expect(waiting.text).toContain(`kohakku-dr approve ${WORKFLOW_IDS.postgresRecovery}`);
  expect(waiting.text).toMatch(/It would replace: .*kohakku-controller/);

  await handle.signal(approveSignal, { by: 'notifications.test' });
  const result = (await handle.result()) as TotalDatabaseLossResult;
  expect(result).toMatchObject({ outcome: 'completed' });
  const completed = await delivered(/Total database loss completed, verified/);
  expect(completed.text).toMatch(/RTO [\d.]+ s \([\d.]+ s without the [\d.]+ s waiting for approval\)/);
  // The first attempt was answered 503 and retried by Temporal, after the recovery had ended.
  expect(deliveries.filter((d) => d.text === completed.text).map((d) => d.status)).toEqual([503, 200]);
  failFirst = undefined;

  // Its report: in the backup store and REPORTS_DIR, signed, with what an audit asks.
  expect(result.report).toEqual([
    expect.stringMatching(
      /^reports\/recovery\/\d{8}T\d{6}Z-total-database-loss-\w{8}\.json in s3:\/\/kohakku-backups/,
    ),
    expect.stringContaining(reportsDir),
  ]);
  expect(completed.text).toContain('Report: reports/recovery/');
  const [report] = (await reportsOf(WORKFLOW_IDS.postgresRecovery)).filter(
    (r) => r.runId === handle.firstExecutionRunId,
  );
  expect(report).toMatchObject({
    kind: 'recovery',
    procedure: 'total-database-loss',
    outcome: 'completed',
    approvals: [expect.objectContaining({ step: 'swap databases in', by: 'notifications.test' })],
    liveData: expect.stringMatching(/^changed by swap databases in/),
  });
  expect(report!.steps.find((s) => s.name === 'restore into staging')!.detail).toMatch(/rows verified/);
  expect(report!.measurements!.rtoSeconds).toBeGreaterThan(0);
  expect(verifyReport(report!, await readPublicKey(publicKeyFile))).toMatchObject({ ok: true });
  const markdown = await fs.readFile(result.report![1]!.replace(/\.json$/, '.md'), 'utf8');
  expect(markdown).toMatch(/^# Total database loss: COMPLETED/);
  expect(markdown).toContain('approved by notifications.test');
});

test('a failed recovery is notified with what happened to live data', async () => {
  const client = await temporalClient(k.stack);
  const handle = await client.workflow.start(totalDatabaseLoss, {
    taskQueue: k.workerEnv.KOHAKKU_DR_TASK_QUEUE!,
    workflowId: WORKFLOW_IDS.postgresRecovery,
    args: [{ targets: ['controller'], backupId: '20200101T000000Z', confirm: true }],
  });
  await expect(handle.result()).rejects.toThrow();
  const failed = await delivered(/Total database loss failed/);
  expect(failed.text).toContain('20200101T000000Z');
  expect(failed.text).toMatch(/Live data: live data untouched/);
  const [report] = (await reportsOf(WORKFLOW_IDS.postgresRecovery)).filter(
    (r) => r.runId === handle.firstExecutionRunId,
  );
  expect(report).toMatchObject({
    outcome: 'failed',
    error: { type: 'BackupNotFound', message: expect.stringContaining('20200101T000000Z') },
    liveData: expect.stringMatching(/^live data untouched/),
  });
  expect(verifyReport(report!, await readPublicKey(publicKeyFile))).toMatchObject({ ok: true });
});

test('a paused schedule is notified; the webhook secret is in no history', async () => {
  const env = { ...k.workerEnv };
  const queue = { taskQueue: k.workerEnv.KOHAKKU_DR_TASK_QUEUE! };
  expect((await runCli(['schedules', 'apply'], { ...queue, env })).code).toBe(0);
  const paused = await runCli(['schedules', 'pause', '--note', 'disk replacement'], { ...queue, env });
  expect(paused.code).toBe(0);
  const notice = await delivered(/schedule kohakku-dr-nightly-backup paused by/);
  expect(notice.text).toContain('Note: disk replacement');
  expect(notice.text).toContain('kohakku-dr schedules unpause kohakku-dr-nightly-backup');
  const client = await temporalClient(k.stack);
  await client.schedule.getHandle('kohakku-dr-nightly-backup').delete();

  // Every run of this file — recoveries, backups, the deliveries themselves — without the token.
  const histories: string[] = [];
  for await (const run of client.workflow.list({ query: `TaskQueue = '${queue.taskQueue}'` }))
    histories.push(JSON.stringify(await client.workflow.getHandle(run.workflowId, run.runId).fetchHistory()));
  expect(histories.length).toBeGreaterThanOrEqual(6);
  expect(histories.some((h) => h.includes('deliverNotification'))).toBe(true);
  for (const h of histories) expect(h).not.toContain(TOKEN);
});
