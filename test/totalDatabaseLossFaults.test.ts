/**
 * The total-database-loss workflow meeting a fault inside the restore, on a real worker and
 * real services: the promise is that it completes verified or leaves production exactly as it
 * found it, and says which. Each fault is injected for real and the end state is read from the
 * live catalog and rows, never from a log line:
 *   - the dispatcher's dump fails verification after the controller's staging copy verified
 *     (issue case 1: the controller used to be swapped already);
 *   - a prepared transaction in the live controller database (case 2: a database used to be
 *     left refusing connections), refused within seconds, then a retry after ROLLBACK PREPARED
 *     completes verified.
 */
import { WorkflowFailedError } from '@temporalio/client';
import { createBackupStore } from '../src/infra/stores';
import { loadConfig } from '../src/config';
import { postgresManifestKey } from '../src/domain/layout';
import type { PostgresManifest } from '../src/domain/manifests';
import { totalDatabaseLoss } from '../src/workflows';
import { progressQuery, type Progress } from '../src/workflows/definitions';
import type { TotalDatabaseLossResult } from '../src/workflows/totalDatabaseLoss';
import {
  databases,
  failureType,
  freshKohakku,
  health,
  leavePreparedTransaction,
  rollbackPreparedTransactions,
  setPreparedTransactions,
  sql,
  startWorker,
  stopKohakku,
  tableFingerprints,
  temporalClient,
  type TestKohakku,
  type WorkerProcess,
  backUpPostgres,
} from './harness/kohakku';

const CONTROLLER = 'kohakku-controller';
const DISPATCHER = 'kohakku-dispatcher';
const GID = 'kohakku-tdl-faults-2pc';

let k: TestKohakku;
let worker: WorkerProcess;
let backupId: string;
let atBackup: Record<string, Record<string, string>>;

beforeAll(async () => {
  await setPreparedTransactions(10);
  k = await freshKohakku('tdlfaults', { tasks: 2000, briefs: 5 }, { agents: false });
  worker = await startWorker(k.workerEnv);
  atBackup = {
    [CONTROLLER]: await tableFingerprints(k.stack, CONTROLLER),
    [DISPATCHER]: await tableFingerprints(k.stack, DISPATCHER),
  };
  const manifest = await backUpPostgres(k, 'test-tdlfaults-backup');
  backupId = manifest.id;
  // Live data moves on after the backup, so a database swapped to the backup shows in its rows.
  await sql(k.stack, CONTROLLER, `UPDATE tasks_task SET title = title || ' (after backup)' WHERE id <= 3`);
  await sql(k.stack, DISPATCHER, `INSERT INTO dispatcher_agent VALUES ('after-backup', 'host-9', now())`);
});

afterAll(async () => {
  await worker?.stop();
  if (k) await stopKohakku(k);
  await rollbackPreparedTransactions();
  await setPreparedTransactions('default');
});

/** Everything a failed recovery must leave as it was: which database is live, whether it takes connections, its rows. */
async function live() {
  const catalog = await sql<{ datname: string; oid: number; datallowconn: boolean }>(
    k.stack,
    'postgres',
    `SELECT datname, oid::int AS oid, datallowconn FROM pg_database WHERE datname LIKE 'kohakku%' ORDER BY 1`,
  );
  return {
    catalog,
    rows: {
      [CONTROLLER]: await tableFingerprints(k.stack, CONTROLLER),
      [DISPATCHER]: await tableFingerprints(k.stack, DISPATCHER),
    },
  };
}

async function recover(workflowId: string) {
  const client = await temporalClient(k.stack);
  const handle = await client.workflow.start(totalDatabaseLoss, {
    taskQueue: k.workerEnv.KOHAKKU_DR_TASK_QUEUE!,
    workflowId,
    // Approved in advance: the faults must be caught by the engine, not by an operator.
    args: [
      {
        backupId,
        confirm: true,
        reconnectDeadlineSeconds: 5,
        restartDeadlineSeconds: 30,
        registrationDeadlineSeconds: 10,
      },
    ],
  });
  const outcome = await handle.result().then(
    (result) => ({ result: result as TotalDatabaseLossResult, error: undefined }),
    (error: unknown) => ({ result: undefined, error }),
  );
  const progress: Progress = await handle.query(progressQuery);
  return { ...outcome, progress };
}

function failedWith(error: unknown): { type: string | undefined; message: string } {
  expect(error).toBeInstanceOf(WorkflowFailedError);
  const cause = (error as WorkflowFailedError).cause;
  return { type: failureType(error), message: cause?.message ?? '' };
}

test('the dispatcher failing verification after the controller verified: both live databases exactly as before, and the error says so', async () => {
  const store = createBackupStore(loadConfig({ ...k.workerEnv }));
  const manifest = (await store.getJson<PostgresManifest>(postgresManifestKey(backupId)))!;
  const tampered = structuredClone(manifest);
  const table = tampered.databases.find((d) => d.target === 'dispatcher')!.tables[0]!;
  table.checksum = '0'.repeat(32); // the manifest disagrees with the dump: verification fails
  await store.putJson(postgresManifestKey(backupId), tampered);
  const before = await live();
  let run: Awaited<ReturnType<typeof recover>>;
  try {
    run = await recover('test-tdlfaults-verification');
  } finally {
    await store.putJson(postgresManifestKey(backupId), manifest);
  }

  const { type, message } = failedWith(run.error);
  expect(type).toBe('RestoreVerificationFailed');
  expect(message).toContain(`${table.table}: checksum differs`);
  expect(message).toMatch(/live data untouched/);
  expect(run.progress.status).toBe('failed');
  const staging = run.progress.steps.find((s) => s.name === 'restore into staging');
  expect(staging?.status).toBe('failed');
  expect(run.progress.steps.find((s) => s.name === 'swap databases in')?.status).toBe('pending');

  // The end state, read from the server: same databases (oids), open, same rows, no copies left.
  expect(await live()).toEqual(before);
  expect(before.catalog.map((d) => d.datname)).toEqual([CONTROLLER, DISPATCHER]);
  expect(before.catalog.every((d) => d.datallowconn)).toBe(true);
  expect(before.rows[CONTROLLER]).not.toEqual(atBackup[CONTROLLER]); // still the live data, not the backup
  expect((await databases(k.stack)).filter((d) => d.includes('__dr_'))).toEqual([]);
  expect(await health(k.model.ports.controller)).toBe(200);
  expect(await health(k.model.ports.dispatcher)).toBe(200);
});

test('a prepared transaction in the live controller: refused within seconds, naming it, nothing changed; after ROLLBACK PREPARED the recovery completes verified', async () => {
  await leavePreparedTransaction(CONTROLLER, GID);
  const before = await live();

  const blocked = await recover('test-tdlfaults-prepared');
  const { type, message } = failedWith(blocked.error);
  expect(type).toBe('SwapBlocked');
  expect(message).toContain(`ROLLBACK PREPARED '${GID}'`);
  expect(message).toMatch(/live data untouched/);
  const check = blocked.progress.steps.find((s) => s.name === 'check swap blockers');
  expect(check?.status).toBe('failed');
  expect(check?.durationMs).toBeLessThan(15000); // named within seconds, not after retries
  expect(blocked.progress.steps.find((s) => s.name === 'swap databases in')?.status).toBe('pending');
  expect(await live()).toEqual(before);
  expect((await databases(k.stack)).filter((d) => d.includes('__dr_'))).toEqual([]);
  expect(await health(k.model.ports.controller)).toBe(200);

  // The operator does what the message says, and runs the recovery again.
  await sql(k.stack, CONTROLLER, `ROLLBACK PREPARED '${GID}'`);
  const retried = await recover('test-tdlfaults-prepared-retry');
  expect(retried.error).toBeUndefined();
  expect(retried.result!.backupId).toBe(backupId);
  expect(await tableFingerprints(k.stack, CONTROLLER)).toEqual(atBackup[CONTROLLER]);
  expect(await tableFingerprints(k.stack, DISPATCHER)).toEqual(atBackup[DISPATCHER]);
  // The data it replaced is aside, not dropped.
  const aside = retried.result!.restored.map((r) => r.movedAsideTo);
  expect(aside).toHaveLength(2);
  expect(await tableFingerprints(k.stack, aside[0]!)).toEqual(before.rows[CONTROLLER]);
  expect(await tableFingerprints(k.stack, aside[1]!)).toEqual(before.rows[DISPATCHER]);
  expect(await health(k.model.ports.controller)).toBe(200);
  expect(await health(k.model.ports.dispatcher)).toBe(200);
});
