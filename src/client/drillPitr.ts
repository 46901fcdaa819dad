/**
 * The drill's point-in-time scenario (`bash scripts/drill --scenario pitr`): continuous
 * archiving set up the product's way (pitrSetup) and a full base backup; a writer keeps
 * committing to both databases; at an instant T a "bad deploy" deletes tasks and drops a
 * dispatcher table, rewrites and deletes objects and uploads a new one while the writer goes on;
 * then the pointInTimeRecovery workflow rewinds both databases and the versioned bucket to T. Checked against what the writer saw committed: every row acknowledged
 * before T is there, none started after T is, the deleted tasks and the dropped table are back,
 * the services are healthy and Redis registrations rebuilt. It prints the measured RPO (T
 * against the last write that survived) and the RTO, and — from a nightly logical backup run on
 * the same data just after the base backup — physical against logical backup and scratch-restore
 * times, side by side.
 */
import type { ReportCheck } from '../domain/reports';
import { Client } from 'pg';
import { loadConfig } from '../config';
import { switchAndAwaitArchive } from '../infra/database';
import { hashObject, s3Client } from '../infra/s3';
import type { StackInfo } from '../stack/stack';
import { markRestorePoint, nightlyBackup, pitrBackup, pitrSetup, pointInTimeRecovery } from '../workflows';
import type { NightlyBackupResult } from '../workflows/nightlyBackup';
import type { PointInTimeRecoveryResult } from '../workflows/pointInTimeRecovery';
import { say, withDb, type DrillPlatform, type DrillReport } from './drillPlatform';
import { watch } from './temporal';

interface Write {
  n: number;
  /** The server's clock inside the writing transaction. */
  at: number;
  /** When the client had the commit acknowledged (same machine, same clock). */
  ackedAt: number;
}

/** Commits a row to each database every `everyMs` until stopped; records what it saw committed. */
function startWriter(stack: StackInfo, databases: { controller: string; dispatcher: string }, everyMs = 40) {
  const writes: Write[] = [];
  const started: number[] = [];
  let stop = false;
  const done = (async () => {
    const connect = async (database: string) => {
      const c = new Client({ host: '127.0.0.1', port: stack.postgres.port, user: 'postgres', database });
      await c.connect();
      return c;
    };
    const controller = await connect(databases.controller);
    const dispatcher = await connect(databases.dispatcher);
    try {
      for (let n = 1; !stop; n++) {
        started.push(Date.now());
        const r = await controller.query<{ at: Date }>(
          `INSERT INTO tasks_skill (name, object_key, created_at) VALUES ($1, $2, clock_timestamp()) RETURNING created_at AS at`,
          [`drill-write-${n}`, `skills/drill-write-${n}.md`],
        );
        await dispatcher.query(
          `INSERT INTO dispatcher_agent VALUES ($1, 'drill-writer', clock_timestamp())`,
          [`drill-write-${n}`],
        );
        writes.push({ n, at: r.rows[0]!.at.getTime(), ackedAt: Date.now() });
        await new Promise((r) => setTimeout(r, everyMs));
      }
    } finally {
      await controller.end();
      await dispatcher.end();
    }
  })();
  return {
    writes,
    /** When write n started (client clock). */
    startedAt: (n: number) => started[n - 1]!,
    async stop() {
      stop = true;
      await done;
    },
  };
}

/** A closed workflow's run time, from its start and close. */
async function workflowSeconds(
  client: DrillPlatform['client'],
  workflowId: string,
): Promise<number | undefined> {
  const d = await client.workflow.getHandle(workflowId).describe();
  return d.closeTime ? (d.closeTime.getTime() - d.startTime.getTime()) / 1000 : undefined;
}

/** How long a workflow's (first) activity of this type took, scheduled to completed, from its history. */
async function activitySeconds(
  client: DrillPlatform['client'],
  workflowId: string,
  activityType: string,
): Promise<number | undefined> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  const time = (e: { eventTime?: { seconds?: unknown; nanos?: number | null } | null }) =>
    Number(e.eventTime?.seconds ?? 0) + (e.eventTime?.nanos ?? 0) / 1e9;
  const scheduled = history.events?.find(
    (e) => e.activityTaskScheduledEventAttributes?.activityType?.name === activityType,
  );
  if (!scheduled) return undefined;
  const completed = history.events?.find(
    (e) =>
      Number(e.activityTaskCompletedEventAttributes?.scheduledEventId ?? -1) === Number(scheduled.eventId),
  );
  return completed ? time(completed) - time(scheduled) : undefined;
}

export async function pitrScenario({ stack, model, env, client, t0 }: DrillPlatform): Promise<DrillReport> {
  const db = model.postgres;
  const run = <T>(handle: Promise<{ result(): Promise<T> }>) =>
    handle.then((h) => watch<T>(h as never, (l) => say(`   ${l}`)));
  say(
    '③ point-in-time recovery set-up, as an operator runs it: `kohakku-dr pitr setup`, then a full base backup',
  );
  await run(
    client.workflow.start(pitrSetup, { taskQueue: 'kohakku-dr', workflowId: 'drill-pitr-setup', args: [] }),
  );
  await run(
    client.workflow.start(pitrBackup, {
      taskQueue: 'kohakku-dr',
      workflowId: 'drill-pitr-full',
      args: [{ type: 'full' }],
    }),
  );
  say('   the nightly logical backup on the same data, for comparison (and its scratch recoveries)');
  const nightly = await run<NightlyBackupResult>(
    client.workflow.start(nightlyBackup, {
      taskQueue: 'kohakku-dr',
      workflowId: 'drill-pitr-nightly',
      args: [],
    }),
  );
  const compared = {
    physicalBackup: await workflowSeconds(client, 'drill-pitr-full'),
    logicalBackup: await workflowSeconds(client, 'drill-pitr-nightly/postgres'),
    physicalScratchRestore: nightly.recoveryWindow?.seconds,
    logicalScratchRestore: await activitySeconds(client, 'drill-pitr-nightly/verify', 'verifyPostgresBackup'),
  };

  say('④ a writer commits to both databases every 40 ms; then the bad deploy');
  const writer = startWriter(stack, { controller: db.controllerDb, dispatcher: db.dispatcherDb });
  await new Promise((r) => setTimeout(r, 4000));
  await run(
    client.workflow.start(markRestorePoint, {
      taskQueue: 'kohakku-dr',
      workflowId: 'drill-pitr-mark',
      args: [{ name: 'before deploy 42' }],
    }),
  );
  await new Promise((r) => setTimeout(r, 1000));
  const completedBefore = await withDb(stack, db.controllerDb, async (c) =>
    Number(
      (await c.query<{ n: string }>(`SELECT count(*) AS n FROM tasks_task WHERE status = 'completed'`))
        .rows[0]!.n,
    ),
  );
  const T = await withDb(
    stack,
    'postgres',
    async (c) => (await c.query<{ t: Date }>('SELECT clock_timestamp() AS t')).rows[0]!.t,
  );
  await withDb(stack, db.controllerDb, (c) => c.query(`DELETE FROM tasks_task WHERE status = 'completed'`));
  await withDb(stack, db.dispatcherDb, (c) => c.query('DROP TABLE dispatcher_dispatch'));
  // …and it rewrites a skill, deletes a brief, uploads a file that was not there at T.
  const s3 = s3Client(loadConfig(env).s3);
  const bucket = model.s3.bucket;
  const objectsAtT = new Map<string, string>();
  for (const key of ['skills/skill-1.tar', 'briefs/task-1.md'])
    objectsAtT.set(key, (await hashObject(s3, bucket, key)).sha256);
  await s3.putObject(bucket, 'skills/skill-1.tar', Buffer.from('a broken skill from the bad deploy'));
  await s3.removeObject(bucket, 'briefs/task-1.md');
  await s3.putObject(bucket, 'skills/bad-deploy.tar', Buffer.from('uploaded by the bad deploy'));
  say(
    `   T = ${T.toISOString()}: DELETE FROM tasks_task WHERE status = 'completed' (${completedBefore} rows); DROP TABLE dispatcher_dispatch; skills/skill-1.tar rewritten, briefs/task-1.md deleted, skills/bad-deploy.tar uploaded`,
  );
  await new Promise((r) => setTimeout(r, 2000));
  await writer.stop();
  const incidentAt = new Date().toISOString();
  say(`   the writer stops after ${writer.writes.length} writes; waiting until the WAL is archived`);
  await withDb(stack, 'postgres', (c) => switchAndAwaitArchive(c));

  say(`⑤ recovering: pointInTimeRecovery to ${T.toISOString()}`);
  const result = (await run(
    client.workflow.start(pointInTimeRecovery, {
      taskQueue: 'kohakku-dr',
      workflowId: 'kohakku-dr-recover-postgres',
      args: [{ target: T.toISOString(), objects: true, confirm: true, checkInGraceSeconds: 10, incidentAt }],
    }),
  )) as PointInTimeRecoveryResult;

  say('⑥ verifying against what the writer saw committed');
  const lines: string[] = [];
  const checks: ReportCheck[] = [];
  let ok = true;
  const check = (pass: boolean, text: string) => {
    ok &&= pass;
    checks.push({ ok: pass, text });
    lines.push(`${pass ? '✔' : '✘'} ${text}`);
  };
  const survived = async (database: string, sql: string) =>
    new Set((await withDb(stack, database, (c) => c.query<{ name: string }>(sql))).rows.map((r) => r.name));
  const skills = await survived(
    db.controllerDb,
    `SELECT name FROM tasks_skill WHERE name LIKE 'drill-write-%'`,
  );
  const agents = await survived(
    db.dispatcherDb,
    `SELECT container AS name FROM dispatcher_agent WHERE container LIKE 'drill-write-%'`,
  );
  const tMs = T.getTime();
  const before = writer.writes.filter((w) => w.ackedAt < tMs);
  const after = writer.writes.filter((w) => writer.startedAt(w.n) > tMs);
  check(
    before.every((w) => skills.has(`drill-write-${w.n}`) && agents.has(`drill-write-${w.n}`)),
    `all ${before.length} writes committed before T are back in both databases`,
  );
  check(
    after.every((w) => !skills.has(`drill-write-${w.n}`) && !agents.has(`drill-write-${w.n}`)),
    `none of the ${after.length} writes started after T is there`,
  );
  const completedNow = await withDb(stack, db.controllerDb, async (c) =>
    Number(
      (await c.query<{ n: string }>(`SELECT count(*) AS n FROM tasks_task WHERE status = 'completed'`))
        .rows[0]!.n,
    ),
  );
  check(completedNow === completedBefore, `the ${completedBefore} deleted tasks are back (${completedNow})`);
  const dropped = await withDb(
    stack,
    db.dispatcherDb,
    async (c) =>
      (await c.query<{ back: boolean }>(`SELECT to_regclass('dispatcher_dispatch') IS NOT NULL AS back`))
        .rows[0]!.back,
  );
  check(dropped, 'the dropped table dispatcher_dispatch is back');
  let objectsAsAtT = true;
  for (const [key, sha] of objectsAtT)
    objectsAsAtT &&= (await hashObject(s3, bucket, key).catch(() => undefined))?.sha256 === sha;
  const badUploadHidden = await s3.statObject(bucket, 'skills/bad-deploy.tar').then(
    () => false,
    () => true,
  );
  check(
    objectsAsAtT && badUploadHidden,
    `objects as at T: the rewritten skill and the deleted brief back by content, the later upload hidden (${result.objects?.rewound ?? 0} rewound, ${result.objects?.hidden ?? 0} hidden, every version kept)`,
  );
  check(
    result.registrations.complete,
    `Redis: ${result.registrations.registered}/${result.registrations.expected} containers registered by the Monitor`,
  );
  for (const name of ['controller', 'dispatcher', 'monitor'] as const) {
    const status = await fetch(`http://127.0.0.1:${model.ports[name]}/healthz`).then(
      (r) => r.status,
      () => 0,
    );
    check(status === 200, `${name} healthy (HTTP ${status})`);
  }
  const lastSurvivor = writer.writes.filter((w) => skills.has(`drill-write-${w.n}`)).pop();
  lines.push('', 'step timings:');
  for (const s of result.steps)
    lines.push(
      `  ${s.name.padEnd(44)} ${s.status === 'done' ? `${((s.durationMs ?? 0) / 1000).toFixed(1).padStart(6)} s` : s.status}`,
    );
  const ratio = (physical?: number, logical?: number) =>
    physical !== undefined && logical !== undefined && physical > 0
      ? `${physical.toFixed(1)} s vs ${logical.toFixed(1)} s: logical/physical ${(logical / physical).toFixed(2)}`
      : 'not measured';
  lines.push(
    '',
    'physical (pgBackRest) against logical (pg_dump / pg_restore), same data, same machine:',
    `  backup (pitrBackup full vs the nightly's postgres dump):                ${ratio(compared.physicalBackup, compared.logicalBackup)}`,
    `  restore into scratch, checked (window verification vs dump verification): ${ratio(compared.physicalScratchRestore, compared.logicalScratchRestore)}`,
    `  this recovery: pgbackrest restore ${result.restoreSeconds} s, WAL replay to T ${(result.steps.find((x) => x.name === 'start postgres and replay to the target')?.durationMs ?? 0) / 1000} s`,
    '',
    `base backup ${result.baseBackup.label}, WAL ${result.wal.from} … ${result.wal.to}, old data directory kept in ${result.movedAsideTo}`,
    `RTO (recovery start to verified-healthy, with a 10 s agents' grace period): ${result.measurements.rtoSeconds} s`,
    `RPO (T ${T.toISOString()} vs the last write that survived, ${lastSurvivor ? new Date(lastSurvivor.at).toISOString() : 'none'}): ${lastSurvivor ? ((tMs - lastSurvivor.at) / 1000).toFixed(3) : '?'} s`,
    `drill total: ${((Date.now() - t0) / 1000).toFixed(1)} s — ${ok ? 'PASSED' : 'FAILED'}`,
  );
  return { ok, lines, checks, recovery: result, scenario: 'pitr' };
}
