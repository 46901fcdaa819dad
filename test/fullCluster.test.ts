/**
 * Full cluster on the reference model with 10,000 tasks: Postgres dropped, Redis killed with
 * its files deleted, Kohakku's S3 server SIGKILLed with its data directory deleted, Controller, Dispatcher, Monitor and Kohakku's Temporal
 * killed — only the live agents keep running. After the recovery: every task whose agent is gone
 * is re-dispatched exactly once, no live task is touched, all other data equals the backup.
 */
import { Redis } from 'ioredis';
import { seededStatus } from '../src/reference/model';
import { fullCluster, nightlyBackup } from '../src/workflows';
import type { FullClusterResult } from '../src/workflows/fullCluster';
import {
  clusterFingerprints,
  freshKohakku,
  health,
  loseWholeCluster,
  sql,
  startWorker,
  stopKohakku,
  temporalClient,
  testStack,
  type TestKohakku,
  type WorkerProcess,
} from './harness/kohakku';

let k: TestKohakku;
let worker: WorkerProcess;

beforeAll(async () => {
  k = await freshKohakku(
    'cluster',
    { tasks: 10000, briefs: 300 },
    {
      monitor: { monitorIntervalSeconds: 2 },
      agents: { agentIntervalSeconds: 1 },
      temporal: {},
    },
  );
  worker = await startWorker(k.workerEnv);
});

afterAll(async () => {
  await worker?.stop();
  if (k) await stopKohakku(k);
});

jest.setTimeout(240000);

test('full cluster loss: lost tasks re-dispatched exactly once, live tasks untouched, data identical to the backup', async () => {
  const client = await temporalClient(k.stack);
  const taskQueue = k.workerEnv.KOHAKKU_DR_TASK_QUEUE!;
  const nightly = await client.workflow.execute(nightlyBackup, {
    taskQueue,
    workflowId: 'test-cluster-nightly',
  });
  const before = await clusterFingerprints(k);

  // The disaster: everything but the agents.
  await loseWholeCluster(k);

  const result = (await client.workflow.execute(fullCluster, {
    taskQueue,
    workflowId: 'test-cluster-recovery',
    args: [{ checkInGraceSeconds: 6, startDeadlineSeconds: 30, registrationDeadlineSeconds: 10 }],
  })) as FullClusterResult;

  expect(result.backupId).toBe(nightly.set.id);
  expect(result.objectStoreServer).toMatchObject({ restarted: true, healthy: true });
  expect(result.redis.recoveredFrom).toBe('its own AOF/RDB');
  expect(result.lostTasks).toEqual({ inFlight: 3000, checkedBack: 2000, requeued: 1000 });

  // Lost tasks: pending again, each queued exactly once; live tasks: still running, same container.
  const lostIds = Array.from({ length: 10000 }, (_, i) => i + 1).filter(
    (id) => seededStatus(id) === 'running-lost',
  );
  const statuses = await sql<{ id: string; status: string; container: string | null }>(
    k.stack,
    'kohakku-controller',
    `SELECT id, status, container FROM tasks_task WHERE id % 10 IN (7, 8, 9)`,
  );
  for (const row of statuses) {
    if (seededStatus(Number(row.id)) === 'running-lost')
      expect(row).toMatchObject({ status: 'pending', container: null });
    else expect(row).toMatchObject({ status: 'running', container: `agent-${row.id.padStart(7, '0')}` });
  }
  const redis = new Redis({ port: testStack().redis.port });
  const queue = await redis.lrange('kohakku:queue:pending', 0, -1);
  expect(new Set(queue).size).toBe(queue.length);
  expect(queue.length).toBe(3000 + 1000);
  for (const id of lostIds) expect(queue.includes(String(id))).toBe(true);
  redis.disconnect();

  // Everything else identical to the backup; objects back minus completed briefs; services healthy.
  expect(await clusterFingerprints(k)).toEqual(before);
  expect(result.objects.skippedCompletedBriefs).toBe(120);
  for (const service of ['controller', 'dispatcher', 'monitor'] as const)
    expect(await health(k.model.ports[service])).toBe(200);
  expect(result.services.map((s) => s.service)).toEqual(['controller', 'dispatcher', 'temporal']);
  expect(result.measurements.rpoSeconds).toBeGreaterThan(0);

  // A second full recovery restores the backup again (the live databases moved aside), so the
  // same tasks are lost again — and still none is queued twice.
  const again = (await client.workflow.execute(fullCluster, {
    taskQueue,
    workflowId: 'test-cluster-again',
    args: [{ checkInGraceSeconds: 1, startDeadlineSeconds: 30, confirm: true }],
  })) as FullClusterResult;
  expect(again.lostTasks.requeued).toBe(1000);
  expect(again.redispatch.pushed).toBe(0);
  expect(again.postgres.every((p) => p.movedAsideTo?.includes('__dr_replaced_'))).toBe(true);
  const redis2 = new Redis({ port: testStack().redis.port });
  expect(await redis2.llen('kohakku:queue:pending')).toBe(4000);
  redis2.disconnect();
});
