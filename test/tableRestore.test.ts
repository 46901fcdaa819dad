/**
 * Table restore, for real: DROP TABLE tasks_task CASCADE, then restore it from the backup — it
 * must come back with its rows, indexes, constraints (and the foreign key pointing at it),
 * trigger and sequence value, exactly as before.
 */
import { tableRestore } from '../src/workflows';
import type { RecoveryPlan } from '../src/workflows/definitions';
import type { TableRestoreResult } from '../src/workflows/tableRestore';
import {
  freshKohakku,
  sql,
  startWorker,
  stopKohakku,
  tableFingerprints,
  temporalClient,
  type TestKohakku,
  type WorkerProcess,
  backUpPostgres,
} from './harness/kohakku';

let k: TestKohakku;
let worker: WorkerProcess;
let backupId: string;

beforeAll(async () => {
  k = await freshKohakku('tables', { tasks: 5000, briefs: 5 }, { agents: false });
  worker = await startWorker(k.workerEnv);
  backupId = (await backUpPostgres(k, 'test-tables-backup')).id;
});

afterAll(async () => {
  await worker?.stop();
  if (k) await stopKohakku(k);
});

/** Everything about tasks_task that pg_restore -t alone would lose. */
async function tableShape() {
  const db = 'kohakku-controller';
  return {
    indexes: (
      await sql<{ d: string }>(
        k.stack,
        db,
        `SELECT indexdef AS d FROM pg_indexes WHERE tablename = 'tasks_task' ORDER BY 1`,
      )
    ).map((r) => r.d),
    constraints: (
      await sql<{ d: string }>(
        k.stack,
        db,
        `SELECT conname || ' ' || conrelid::regclass || ' ' || pg_get_constraintdef(oid) AS d FROM pg_constraint
          WHERE conrelid = 'tasks_task'::regclass OR confrelid = 'tasks_task'::regclass ORDER BY 1`,
      )
    ).map((r) => r.d),
    triggers: (
      await sql<{ d: string }>(
        k.stack,
        db,
        `SELECT pg_get_triggerdef(oid) AS d FROM pg_trigger WHERE tgrelid = 'tasks_task'::regclass AND NOT tgisinternal ORDER BY 1`,
      )
    ).map((r) => r.d),
    sequence: (await sql(k.stack, db, `SELECT last_value, is_called FROM tasks_task_id_seq`))[0],
    ownedBy: (
      await sql<{ d: string }>(k.stack, db, `SELECT pg_get_serial_sequence('tasks_task', 'id') AS d`)
    )[0]!.d,
  };
}

async function run(workflowId: string, input: Parameters<typeof tableRestore>[0]) {
  const client = await temporalClient(k.stack);
  return client.workflow.execute(tableRestore, {
    taskQueue: k.workerEnv.KOHAKKU_DR_TASK_QUEUE!,
    workflowId,
    args: [input],
  });
}

test('DROP TABLE tasks_task CASCADE → restored with rows, indexes, constraints, trigger, sequence value', async () => {
  const shape = await tableShape();
  const data = await tableFingerprints(k.stack, 'kohakku-controller');
  expect(shape.indexes).toHaveLength(4);
  expect(shape.constraints.some((c) => c.includes('tasks_task_skills_task_id_fkey'))).toBe(true);

  await sql(k.stack, 'kohakku-controller', 'DROP TABLE tasks_task CASCADE');
  const result = (await run('test-tables-dropped', {
    backupId,
    target: 'controller',
    tables: ['tasks_task'],
  })) as TableRestoreResult;

  expect(result.tables).toEqual([{ table: 'public.tasks_task', rows: 5000, entries: expect.any(Number) }]);
  expect(await tableShape()).toEqual(shape);
  expect(await tableFingerprints(k.stack, 'kohakku-controller')).toEqual(data);
  // The foreign key from tasks_task_skills is enforced again.
  await expect(
    sql(
      k.stack,
      'kohakku-controller',
      'INSERT INTO tasks_task_skills (task_id, skill_id) VALUES (999999, 1)',
    ),
  ).rejects.toThrow(/foreign key/);
});

test('over a live table: plan mode changes nothing; confirmed, the live table is moved aside into a schema', async () => {
  await sql(k.stack, 'kohakku-controller', `UPDATE tasks_task SET title = 'edited' WHERE id <= 100`);
  const edited = await tableFingerprints(k.stack, 'kohakku-controller');
  const plan = (await run('test-tables-plan', {
    target: 'controller',
    tables: ['tasks_task'],
    plan: true,
  })) as RecoveryPlan;
  expect(plan.steps.find((s) => s.step === 'restore tables')?.destructive).toBe(true);
  expect(await tableFingerprints(k.stack, 'kohakku-controller')).toEqual(edited);

  const result = (await run('test-tables-live', {
    backupId,
    target: 'controller',
    tables: ['tasks_task'],
    confirm: true,
  })) as TableRestoreResult;
  const restored = await sql<{ n: string }>(
    k.stack,
    'kohakku-controller',
    `SELECT count(*) AS n FROM tasks_task WHERE title = 'edited'`,
  );
  expect(restored[0]!.n).toBe('0');
  const aside = await sql<{ n: string }>(
    k.stack,
    'kohakku-controller',
    `SELECT count(*) AS n FROM ${result.movedAsideTo}.tasks_task WHERE title = 'edited'`,
  );
  expect(aside[0]!.n).toBe('100');
});

test('a table the backup does not have is refused before anything is touched', async () => {
  const before = await tableFingerprints(k.stack, 'kohakku-controller');
  const err = await run('test-tables-unknown', {
    backupId,
    target: 'controller',
    tables: ['no_such_table'],
    confirm: true,
  }).catch((e: unknown) => e);
  expect(String((err as Error & { cause?: Error }).cause?.message)).toMatch(/no table public.no_such_table/);
  expect(await tableFingerprints(k.stack, 'kohakku-controller')).toEqual(before);
});
