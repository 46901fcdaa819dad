/**
 * The runbooks (docs/runbooks/) against the code, so the page an operator follows at 3 a.m. says
 * what the product does: every page the index links exists and has its sections; every
 * `temporal workflow start` names a workflow type that exists, the workflow id the CLI uses for it,
 * the default task queue, --address and --fail-existing, and an input the workflow's own schema
 * accepts; "Before you start" names every endpoint the preflight checks; every `kohakku-dr
 * recover …` and `kohakku-dr up …` option is one the command has. Logic only: nothing is started.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { WORKFLOW_IDS } from '../src/client/temporal';
import { ENDPOINTS } from '../src/domain/endpoints';
import { fullClusterDefinition } from '../src/workflows/fullCluster';
import { objectStoreLossDefinition } from '../src/workflows/objectStoreLoss';
import { pointInTimeRecoveryDefinition } from '../src/workflows/pointInTimeRecovery';
import { redisLossDefinition } from '../src/workflows/redisLoss';
import { tableRestoreDefinition } from '../src/workflows/tableRestore';
import { totalDatabaseLossDefinition } from '../src/workflows/totalDatabaseLoss';
import { DIST } from './harness/kohakku';

const DIR = path.resolve(__dirname, '../docs/runbooks');
const read = (page: string) => readFileSync(path.join(DIR, page), 'utf8');

/** Each workflow type a runbook may start: its definition and the id the CLI starts it under. */
const RECOVERIES: Record<
  string,
  {
    definition: {
      input: { safeParse(v: unknown): { success: boolean } };
      endpoints?: (i: never) => string[];
    };
    workflowId: string;
    page: string;
  }
> = {
  totalDatabaseLoss: {
    definition: totalDatabaseLossDefinition,
    workflowId: WORKFLOW_IDS.postgresRecovery,
    page: 'total-database-loss.md',
  },
  tableRestore: {
    definition: tableRestoreDefinition,
    workflowId: WORKFLOW_IDS.postgresRecovery,
    page: 'table-restore.md',
  },
  pointInTimeRecovery: {
    definition: pointInTimeRecoveryDefinition,
    workflowId: WORKFLOW_IDS.pitrRecovery,
    page: 'point-in-time.md',
  },
  redisLoss: {
    definition: redisLossDefinition,
    workflowId: WORKFLOW_IDS.redisRecovery,
    page: 'redis-loss.md',
  },
  objectStoreLoss: {
    definition: objectStoreLossDefinition,
    workflowId: WORKFLOW_IDS.objectsRecovery,
    page: 'object-store-loss.md',
  },
  fullCluster: {
    definition: fullClusterDefinition,
    workflowId: WORKFLOW_IDS.clusterRecovery,
    page: 'full-cluster.md',
  },
};

/** Shell commands in the page's code blocks, continuation lines joined. */
function commands(page: string): string[] {
  const blocks = [...read(page).matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
  return blocks.flatMap((b) =>
    b
      .replace(/\\\n\s*/g, ' ')
      .split('\n')
      .map((l) => l.replace(/\s+#.*$/, '').trim())
      .filter(Boolean),
  );
}

/** The value after `flag`, unquoting a '…' argument. */
function flagValue(command: string, flag: string): string | undefined {
  const m = new RegExp(`${flag} ('([^']*)'|"([^"]*)"|(\\S+))`).exec(command);
  return m ? (m[2] ?? m[3] ?? m[4]) : undefined;
}

test('the index links a page for every recovery and for up, and each has its sections', () => {
  const index = read('README.md');
  const linked = [...index.matchAll(/\]\(([\w-]+\.md)\)/g)].map((m) => m[1]!);
  for (const { page } of Object.values(RECOVERIES)) expect(linked).toContain(page);
  expect(linked).toContain('up.md');
  expect(linked).toContain('stuck-run.md');
  for (const page of new Set(linked)) {
    expect(existsSync(path.join(DIR, page))).toBe(true);
    if (Object.values(RECOVERIES).some((r) => r.page === page))
      for (const section of [
        '**When**',
        '**Before you start**',
        '## Start it',
        '## Check afterwards',
        '## Stuck',
      ])
        expect(`${page}: ${read(page).includes(section)}`).toBe(`${page}: true`);
  }
});

test('every `temporal workflow start` starts a real workflow, under its id, with input its schema accepts', () => {
  for (const [type, { definition, workflowId, page }] of Object.entries(RECOVERIES)) {
    const starts = commands(page).filter((c) => c.startsWith('temporal workflow start'));
    expect(`${page}: ${starts.length > 0}`).toBe(`${page}: true`);
    for (const start of starts) {
      expect(flagValue(start, '--type')).toBe(type);
      expect(flagValue(start, '--workflow-id')).toBe(workflowId);
      expect(flagValue(start, '--task-queue')).toBe('kohakku-dr');
      expect(start).toContain('--fail-existing');
      expect(start).toContain('--address "$TEMPORAL_ADDRESS"');
      const input: unknown = JSON.parse(flagValue(start, '--input') ?? 'null');
      expect(`${page}: ${JSON.stringify(input)} ${definition.input.safeParse(input).success}`).toBe(
        `${page}: ${JSON.stringify(input)} true`,
      );
    }
    // The UI way names the same type and id.
    expect(read(page)).toContain(`Workflow ID \`${workflowId}\``);
    expect(read(page)).toContain(`Workflow Type \`${type}\``);
  }
});

test('"Before you start" names every endpoint the preflight checks', () => {
  for (const { definition, page } of Object.values(RECOVERIES)) {
    const before = /\*\*Before you start\*\*([\s\S]*?)\n\n/.exec(read(page))![1]!;
    for (const endpoint of definition.endpoints!({} as never))
      expect(`${page}: ${before.includes(ENDPOINTS[endpoint as keyof typeof ENDPOINTS])}`).toBe(
        `${page}: true`,
      );
  }
});

test('every kohakku-dr option a runbook uses is one the command has', () => {
  const cli = (args: string[]) =>
    execFileSync(process.execPath, [path.join(DIST, 'client/cli.js'), ...args, '--help'], {
      encoding: 'utf8',
    });
  const pages = ['up.md', ...Object.values(RECOVERIES).map((r) => r.page)];
  for (const page of pages) {
    for (const command of commands(page).filter((c) => /^kohakku-dr (recover|up)\b/.test(c))) {
      // `up … -- <recover options>`: the options before `--` are up's.
      const [own] = command.split(' -- ');
      const words = own!.split(/\s+/);
      const sub = words[1] === 'recover' ? ['recover', words[2]!] : ['up'];
      const help = cli(sub);
      for (const option of words.filter((w) => w.startsWith('--')))
        expect(`${page}: ${sub.join(' ')} ${option} ${help.includes(option)}`).toBe(
          `${page}: ${sub.join(' ')} ${option} true`,
        );
    }
  }
});
