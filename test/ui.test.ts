/**
 * The Temporal UI as the operator sees it at 3 a.m., in a real headless Chromium (Debian's, driven
 * by playwright-core) against the suite's Temporal dev server with its UI: a recovery started with
 * `kohakku-dr recover … --no-wait` that waits for approval shows its summary (procedure, target,
 * who started it) and, on the workflow's page, the current details whose first lines say it waits
 * for approval with the exact approve command. The recovery's activities are STUBBED
 * (test/harness/stubs.ts): what is tested is what the UI shows of it.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { WORKFLOW_IDS } from '../src/client/temporal';
import { runCli } from './harness/cli';
import { testStack } from './harness/kohakku';
import { liveDatabasesExist, stubActivities } from './harness/stubs';
import { uniqueId, workflowSuite } from './harness/suite';
import type { Activities } from '../src/activities';

const suite = workflowSuite();
const taskQueue = uniqueId('ui');
let browser: Browser;

beforeAll(async () => {
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
});
afterAll(async () => {
  await browser?.close();
});

jest.setTimeout(120000);

test('a recovery waiting for approval: its summary and details, the approve command first in its current details, its activities summarized in the timeline', async () => {
  const worker = await suite.createWorker(
    { ...stubActivities, liveDatabaseStates: liveDatabasesExist } as unknown as Partial<Activities>,
    taskQueue,
  );
  await worker.runUntil(async () => {
    const workflowId = WORKFLOW_IDS.postgresRecovery;
    try {
      const started = await runCli(
        ['recover', 'total-database-loss', '--target', 'controller', '--no-wait', '--json'],
        {
          taskQueue,
        },
      );
      expect(started.code).toBe(4);
      const { runId } = JSON.parse(started.stdout) as { runId: string };
      const ui = `http://127.0.0.1:${testStack().temporal.uiPort}`;
      const page = await browser.newPage();
      // This run's page (not the id's latest run), its User Metadata tab: the Summary and Details
      // fixed at the start, and the Current Details the workflow keeps (the UI renders markdown in
      // a sandboxed frame: every frame's text is read).
      await page.goto(`${ui}/namespaces/default/workflows/${workflowId}/${runId}/history`);
      await page.getByText(runId).first().waitFor({ timeout: 60000 });
      await page.getByText('User Metadata', { exact: true }).click();
      const framesText = async () =>
        (
          await Promise.all(
            page.frames().map((f) =>
              f
                .locator('body')
                .innerText()
                .catch(() => ''),
            ),
          )
        ).join('\n');
      const SUMMARY = /^totalDatabaseLoss: targets controller — by \S+@\S+$/m;
      let details = '';
      for (let i = 0; i < 120 && !(SUMMARY.test(details) && details.includes('kohakku-dr approve')); i++) {
        await page.waitForTimeout(500);
        details = await framesText();
      }
      await page.screenshot({ path: path.join(os.tmpdir(), 'kohakku-dr-ui-test.png') });
      expect(details).toMatch(SUMMARY);
      expect(details).toContain(`follow: kohakku-dr watch ${workflowId}`);
      // Current details: the state, then what it waits for with the exact command, before any step.
      const current = details.slice(details.indexOf('Total database loss — running'));
      expect(current).toMatch(
        new RegExp(
          `^Total database loss — running\\s+waiting for: approval to swap databases in, replacing: live database kohakku-controller \\(moved aside, not dropped\\) — send the .approve. signal \\(kohakku-dr approve ${workflowId}\\)`,
        ),
      );
      expect(current.indexOf('kohakku-dr approve')).toBeLessThan(current.indexOf('✔ preflight'));
      // The activities' summaries in the timeline.
      await page.getByText('History', { exact: false }).first().click();
      await page
        .getByText(/lock backup — backup 20261124T020000Z/)
        .first()
        .waitFor({ timeout: 30000 });
    } finally {
      const handle = suite.env.client.workflow.getHandle(workflowId);
      if ((await handle.describe().catch(() => undefined))?.status.name === 'RUNNING')
        await handle.terminate('ui.test cleanup');
    }
  });
});
