/**
 * The disaster-recovery drill's default scenario, full cluster, and the choice of scenario
 * (`--scenario pitr`: drillPitr.ts). The drill on an embedded local stack: start the stack and a reference
 * Kohakku (Controller, Dispatcher, Monitor, agents, its own Temporal), take the nightly backup,
 * then lose the whole cluster for real — both databases dropped, Redis killed and its files
 * deleted, Kohakku's S3 server SIGKILLed with its data directory deleted, every service killed; only the agents keep running — run the
 * full-cluster workflow on a real worker, verify against the backup, print a report, tear down.
 */
import type { ReportCheck } from '../domain/reports';
import { Redis } from 'ioredis';
import { loadConfig } from '../config';
import { s3Client } from '../infra/s3';
import { createBackupStore } from '../infra/stores';
import { compareTables, tableStats, type PostgresManifest } from '../activities/postgres';
import { containerName, seededStatus } from '../reference/model';
import type { referenceModelOn } from '../reference/onStack';
import { servicePid } from '../reference/supervisor';
import { signalDaemon, tcpOpen } from '../infra/processes';
import { killRedis, loseS3Server, readStack, type StackInfo } from '../stack/stack';
import { fullCluster, nightlyBackup } from '../workflows';
import type { FullClusterResult } from '../workflows/fullCluster';
import type { NightlyBackupResult } from '../workflows/nightlyBackup';
import { pitrScenario } from './drillPitr';
import { watch } from './temporal';

import {
  say,
  withDb,
  withDrillPlatform,
  type DrillOptions,
  type DrillPlatform,
  type DrillReport,
} from './drillPlatform';

export type { DrillOptions, DrillReport };

export async function runDrill(options: DrillOptions): Promise<DrillReport> {
  return withDrillPlatform(options, options.scenario === 'pitr' ? pitrScenario : fullClusterScenario);
}

/** The default scenario: the whole cluster lost, recovered with the full-cluster workflow. */
async function fullClusterScenario({
  stack,
  model,
  env,
  client,
  options,
  t0,
}: DrillPlatform): Promise<DrillReport> {
  say('③ nightly backup, as the schedule runs it: Postgres, Redis, objects → one set → verify → prune');
  const nightly = await watch<NightlyBackupResult>(
    await client.workflow.start(nightlyBackup, {
      taskQueue: 'kohakku-dr',
      workflowId: 'drill-nightly-backup',
      args: [],
    }),
    (l) => say(`   ${l}`),
  );
  const store = createBackupStore(loadConfig(env));
  const manifest = (await store.getJson<PostgresManifest>(`postgres/${nightly.set.id}/manifest.json`))!;
  say(`   set ${nightly.set.id}: ${nightly.verification.ok ? 'verified restorable' : 'FAILED verification'}`);

  say('④ the disaster: the whole cluster');
  for (const service of ['controller', 'dispatcher', 'monitor', 'temporal'] as const) {
    const pid = servicePid(model.stateDir, service);
    if (pid) signalDaemon(pid, 'SIGKILL');
  }
  say("   SIGKILL: Controller, Dispatcher, Monitor, Kohakku's Temporal (the agents keep running)");
  for (const db of [model.postgres.controllerDb, model.postgres.dispatcherDb]) {
    await withDb(stack, 'postgres', (c) => c.query(`DROP DATABASE ${c.escapeIdentifier(db)} WITH (FORCE)`));
  }
  say(`   DROP DATABASE "${model.postgres.controllerDb}", "${model.postgres.dispatcherDb}"`);
  await killRedis(stack.dir, { deleteFiles: true });
  say('   SIGKILL redis-server, its AOF and RDB deleted');
  const s3 = s3Client(loadConfig(env).s3);
  let objectsBefore = 0;
  for await (const object of s3.listObjectsV2(model.s3.bucket, '', true)) if (object) objectsBefore++;
  await loseS3Server(stack.dir, 'minio');
  say(
    `   SIGKILL Kohakku's S3 server (MinIO), its data directory deleted (bucket ${model.s3.bucket}: ${objectsBefore} objects); the backups live on their own S3 server (VersityGW) and in the replica directory`,
  );
  const incidentAt = new Date().toISOString();

  say(`⑤ recovering: fullCluster workflow (agents' grace period ${options.grace} s)`);
  const result = await watch<FullClusterResult>(
    await client.workflow.start(fullCluster, {
      taskQueue: 'kohakku-dr',
      workflowId: 'kohakku-dr-recover-cluster',
      args: [
        {
          checkInGraceSeconds: options.grace,
          startDeadlineSeconds: 60,
          registrationDeadlineSeconds: 20,
          incidentAt,
        },
      ],
    }),
    (l) => say(`   ${l}`),
  );

  say('⑥ verifying against the backup');
  return await verify(stack, model, manifest, nightly, result, objectsBefore, t0);
}

async function verify(
  stack: StackInfo,
  model: Awaited<ReturnType<typeof referenceModelOn>>,
  manifest: PostgresManifest,
  nightly: NightlyBackupResult,
  result: FullClusterResult,
  objectsBefore: number,
  t0: number,
): Promise<DrillReport> {
  const lines: string[] = [];
  const checks: ReportCheck[] = [];
  let ok = true;
  const check = (pass: boolean, text: string) => {
    ok &&= pass;
    checks.push({ ok: pass, text });
    lines.push(`${pass ? '✔' : '✘'} ${text}`);
  };
  check(
    result.backupId === nightly.set.id && result.backupVerified,
    `the recovery used backup set ${result.backupId} (${result.backupVerified ? 'verified' : 'not verified'})`,
  );
  // Every table equals the backup, but tasks_task, whose lost tasks were re-dispatched on purpose.
  for (const db of manifest.databases) {
    const actual = await withDb(stack, db.database, (c) => tableStats(c, { expected: db.tables }));
    const expected = db.tables.filter((t) => t.table !== 'public.tasks_task');
    const problems = compareTables(
      expected,
      actual.filter((t) => t.table !== 'public.tasks_task'),
    );
    check(
      problems.length === 0,
      `${db.database}: ${expected.length} table(s) identical to the backup${problems.length ? `: ${problems.join('; ')}` : ''}`,
    );
  }
  const tasks = await withDb(
    stack,
    model.postgres.controllerDb,
    async (c) =>
      (
        await c.query<{ id: string; status: string; container: string | null }>(
          'SELECT id, status, container FROM tasks_task',
        )
      ).rows,
  );
  const backupRows = manifest.databases[0]!.tables.find((t) => t.table === 'public.tasks_task')!.rows;
  const lost = tasks.filter((t) => seededStatus(Number(t.id)) === 'running-lost');
  const live = tasks.filter((t) => seededStatus(Number(t.id)) === 'running-live');
  check(tasks.length === backupRows, `tasks_task: ${tasks.length} rows, as in the backup`);
  check(
    lost.every((t) => t.status === 'pending' && t.container === null),
    `${lost.length} tasks whose agents are gone: back to pending`,
  );
  check(
    live.every((t) => t.status === 'running' && t.container === containerName(Number(t.id))),
    `${live.length} tasks whose agents checked back: untouched, still running`,
  );
  const redis = new Redis({ port: readStack(stack.dir).redis.port });
  const queue = await redis.lrange(model.redis.prefix + 'queue:pending', 0, -1);
  // The lost containers stay registered until the Monitor's passes remove them (at 1,000,000
  // tasks, several passes): waited for while the count still moves, given up after 30 s (three
  // Monitor intervals) without change.
  let registered = await redis.scard(model.redis.containersKey);
  for (let lastChange = Date.now(); registered !== live.length && Date.now() - lastChange < 30000;) {
    await new Promise((r) => setTimeout(r, 500));
    const now = await redis.scard(model.redis.containersKey);
    if (now !== registered) lastChange = Date.now();
    registered = now;
  }
  redis.disconnect();
  const pending = tasks.filter((t) => t.status === 'pending').length;
  check(
    queue.length === pending && new Set(queue).size === queue.length,
    `queue: ${queue.length} tasks, every pending task exactly once`,
  );
  check(
    registered === live.length,
    `Redis: ${registered} containers registered (${live.length} live agents)`,
  );
  check(
    result.objectStoreServer?.restarted === true && result.objectStoreServer.healthy,
    "Kohakku's S3 server started again through the service adapter, answering",
  );
  check(
    result.objects.restoredAndVerified + result.objects.skippedCompletedBriefs === objectsBefore,
    `objects: ${result.objects.restoredAndVerified} restored and verified, ${result.objects.skippedCompletedBriefs} completed-task briefs skipped`,
  );
  for (const name of ['controller', 'dispatcher', 'monitor'] as const) {
    const status = await fetch(`http://127.0.0.1:${model.ports[name]}/healthz`).then(
      (r) => r.status,
      () => 0,
    );
    check(status === 200, `${name} healthy (HTTP ${status})`);
  }
  check(await tcpOpen(model.ports.temporal), `Kohakku's Temporal answering on ${model.ports.temporal}`);
  lines.push('', 'step timings:');
  for (const s of result.steps)
    lines.push(
      `  ${s.name.padEnd(44)} ${s.status === 'done' ? `${((s.durationMs ?? 0) / 1000).toFixed(1).padStart(6)} s` : s.status}`,
    );
  const m = result.measurements;
  lines.push(
    '',
    `RTO (recovery start to verified-healthy): ${m.rtoSeconds} s`,
    `RPO (incident ${m.incidentAt} vs backup ${m.backupCreatedAt}): ${m.rpoSeconds} s of writes at risk`,
    `drill total: ${((Date.now() - t0) / 1000).toFixed(1)} s — ${ok ? 'PASSED' : 'FAILED'}`,
  );
  return { ok, lines, checks, recovery: result, scenario: 'full-cluster' };
}
