/**
 * The disaster-recovery drill on an embedded local stack: start the stack and a reference
 * Kohakku, back up, really drop both databases, run the Total Database Loss workflow on a
 * real worker, verify against the backup, print a report, tear everything down.
 */
import { appendFileSync } from 'node:fs';
import * as path from 'node:path';
import { Redis } from 'ioredis';
import { Client } from 'pg';
import * as Minio from 'minio';
import { s3BackupStore } from '../activities/backupStore';
import { compareTables, tableStats, type PostgresManifest } from '../activities/postgres';
import type { NightlyBackupResult } from '../workflows/nightlyBackup';
import { referenceModelOn, workerEnvFor } from '../reference/onStack';
import { seedReferenceKohakku } from '../reference/seed';
import { startReferenceService } from '../reference/supervisor';
import { startDaemon } from '../stack/processes';
import { startStack, stopStack, type StackInfo } from '../stack/stack';
import type { TotalDatabaseLossResult } from '../workflows/totalDatabaseLoss';
import { connect, watch } from './temporal';

export interface DrillOptions {
  tasks: number;
  keep: boolean;
}

export interface DrillReport {
  ok: boolean;
  lines: string[];
}

const say = (line: string) => console.log(line);

async function waitForWorker(log: string): Promise<void> {
  const { readFileSync } = await import('node:fs');
  const deadline = Date.now() + 60000;
  while (!readFileSync(log, 'utf8').includes('worker polling')) {
    if (Date.now() > deadline) throw new Error(`the worker did not start; see ${log}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function withDb<T>(stack: StackInfo, database: string, fn: (c: Client) => Promise<T>): Promise<T> {
  const c = new Client({ host: '127.0.0.1', port: stack.postgres.port, user: 'postgres', database });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

export async function runDrill(options: DrillOptions): Promise<DrillReport> {
  const t0 = Date.now();
  say('① starting the embedded stack (PostgreSQL, Redis with AOF, MinIO, Temporal dev server)');
  const stack = await startStack({ withTemporalUi: true, log: (l) => say(`   ${l}`) });
  const stopOnSignal = () => {
    say('interrupted: stopping the stack');
    void stopStack(stack).finally(() => process.exit(130));
  };
  process.once('SIGINT', stopOnSignal);
  process.once('SIGTERM', stopOnSignal);
  say(`   stack in ${stack.dir}; Temporal UI http://127.0.0.1:${stack.temporal.uiPort}`);
  try {
    const model = await referenceModelOn(stack);
    say(`② seeding the reference Kohakku with ${options.tasks} tasks`);
    const seed = await seedReferenceKohakku(model, { tasks: options.tasks });
    say(`   ${JSON.stringify(seed.byStatus)}; ${seed.briefs} briefs, ${seed.skills} skills`);
    for (const service of ['controller', 'dispatcher', 'monitor', 'agents'] as const) {
      await startReferenceService(model, service, {
        pidsFile: stack.extraPidsFile,
        monitorIntervalSeconds: 5,
        agentIntervalSeconds: 5,
        noReconnect: service === 'controller',
      });
    }
    const env = workerEnvFor(stack, model);
    const workerLog = path.join(stack.dir, 'worker.log');
    const worker = startDaemon('worker', process.execPath, [path.join(__dirname, '..', 'worker.js')], {
      log: workerLog,
      env,
    });
    appendFileSync(stack.extraPidsFile, `${worker.pid}\n`);
    await waitForWorker(workerLog);
    say(
      `   Controller, Dispatcher, Monitor, agents and the kohakku-dr worker are running (worker log ${workerLog})`,
    );

    const { client, close } = await connect({
      address: env.TEMPORAL_ADDRESS!,
      namespace: 'default',
      taskQueue: 'kohakku-dr',
    });
    try {
      say('③ nightly backup, as the schedule runs it: Postgres, Redis, objects → one set → verify → prune');
      const backup = await client.workflow.start('nightlyBackup', {
        taskQueue: 'kohakku-dr',
        workflowId: 'drill-nightly-backup',
        args: [],
      });
      const nightly = await watch<NightlyBackupResult>(backup, (l) => say(`   ${l}`));
      const store = s3BackupStore(
        new Minio.Client({
          endPoint: '127.0.0.1',
          port: stack.minio.port,
          useSSL: false,
          accessKey: stack.minio.accessKey,
          secretKey: stack.minio.secretKey,
        }),
        'kohakku-backups',
        'us-east-1',
      );
      const manifest = (await store.getJson<PostgresManifest>(`postgres/${nightly.set.id}/manifest.json`))!;
      say(
        `   set ${nightly.set.id}: ${nightly.verification.ok ? 'verified restorable' : 'FAILED verification'}`,
      );

      say(
        '④ the disaster: DROP DATABASE "kohakku-controller", "kohakku-dispatcher" (sessions terminated), Redis registrations gone',
      );
      for (const db of [model.postgres.controllerDb, model.postgres.dispatcherDb]) {
        await withDb(stack, 'postgres', (c) =>
          c.query(`DROP DATABASE ${c.escapeIdentifier(db)} WITH (FORCE)`),
        );
      }
      // The registrations go too, so the Monitor has something to rebuild (it re-registers from Postgres).
      const lost = new Redis({ port: stack.redis.port });
      await lost.del(model.redis.containersKey);
      lost.disconnect();
      const incidentAt = Date.now();
      const controllerDown = await fetch(`http://127.0.0.1:${model.ports.controller}/healthz`).then(
        (r) => r.status,
      );
      say(`   controller health now: HTTP ${controllerDown}`);

      say('⑤ recovering (totalDatabaseLoss workflow)');
      const recovery = await client.workflow.start('totalDatabaseLoss', {
        taskQueue: 'kohakku-dr',
        workflowId: 'kohakku-dr-recover-postgres',
        args: [{ reconnectDeadlineSeconds: 10, registrationDeadlineSeconds: 20 }],
      });
      const result = await watch<TotalDatabaseLossResult>(recovery, (l) => say(`   ${l}`));
      const recoveredAt = Date.now();

      say('⑥ verifying against the backup');
      const lines: string[] = [];
      let ok = true;
      for (const db of manifest.databases) {
        const actual = await withDb(stack, db.database, tableStats);
        const problems = compareTables(db.tables, actual);
        ok &&= problems.length === 0;
        const rows = actual.reduce((n, t) => n + t.rows, 0);
        lines.push(
          `${problems.length ? '✘' : '✔'} ${db.database}: ${actual.length} tables, ${rows} rows, checksums ${problems.length ? problems.join('; ') : 'identical to backup ' + manifest.id}`,
        );
      }
      for (const [name, port] of Object.entries(model.ports)) {
        const status = await fetch(`http://127.0.0.1:${port}/healthz`).then(
          (r) => r.status,
          () => 0,
        );
        ok &&= status === 200;
        const restarted = result.services.find((s) => s.service === name)?.restarted;
        lines.push(
          `${status === 200 ? '✔' : '✘'} ${name} healthy (HTTP ${status})${restarted ? ', restarted by the workflow' : ''}`,
        );
      }
      const active = await withDb(stack, model.postgres.controllerDb, async (c) =>
        (
          await c.query<{ container: string }>(`SELECT container FROM tasks_task WHERE status = 'running'`)
        ).rows.map((r) => r.container),
      );
      const redis = new Redis({ port: stack.redis.port });
      const registered = new Set(await redis.smembers(model.redis.containersKey));
      redis.disconnect();
      const missing = active.filter((c) => !registered.has(c)).length;
      ok &&= missing === 0;
      lines.push(
        `${missing === 0 ? '✔' : '✘'} Redis: ${registered.size} containers registered, ${active.length} active in Postgres, ${missing} missing`,
      );
      lines.push(
        `${result.backupVerified ? '✔' : '✘'} the recovery used backup set ${result.backupId} (${result.backupVerified ? 'verified' : 'not verified'})`,
      );
      ok &&= result.backupVerified && result.backupId === nightly.set.id;
      lines.push('', 'step timings:');
      for (const s of result.steps)
        lines.push(`  ${s.name.padEnd(38)} ${((s.durationMs ?? 0) / 1000).toFixed(1).padStart(6)} s`);
      lines.push(
        '',
        `RTO (disaster to verified recovery): ${((recoveredAt - incidentAt) / 1000).toFixed(1)} s`,
        `RPO (incident vs backup ${manifest.id}): ${((incidentAt - Date.parse(manifest.createdAt)) / 1000).toFixed(1)} s of writes at risk`,
        `drill total: ${((Date.now() - t0) / 1000).toFixed(1)} s — ${ok ? 'PASSED' : 'FAILED'}`,
      );
      return { ok, lines };
    } finally {
      await close();
    }
  } finally {
    if (options.keep) {
      say(
        `stack kept running in ${stack.dir} (Temporal UI http://127.0.0.1:${stack.temporal.uiPort}); stop it with: kohakku-dr stack stop ${stack.dir}`,
      );
    } else {
      await stopStack(stack);
    }
    process.removeListener('SIGINT', stopOnSignal);
    process.removeListener('SIGTERM', stopOnSignal);
  }
}
