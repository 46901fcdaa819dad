/**
 * Scheduled backups, verification and retention on real services: a schedule triggered now
 * produces a complete, verified set; verification catches a tampered dump and a truncated RDB;
 * retention prunes by age but keeps the newest verified set and locked ones; a backup taken
 * while Kohakku keeps writing restores consistently.
 */
import { Redis } from 'ioredis';
import { Client } from 'pg';
import { createBackupSetActivities } from '../src/activities/backupSets';
import type { BackupSetManifest } from '../src/domain/manifests';
import { readSet } from '../src/infra/catalog';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { dirBackupStore, s3BackupStore } from '../src/infra/backupStore';
import { BLOB_PREFIX } from '../src/activities/objectStore';
import { redisBackupKey } from '../src/activities/redisBackup';
import { createPostgresActivities, dumpKey } from '../src/activities/postgres';
import { applySchedules, NIGHTLY_SCHEDULE_ID } from '../src/client/schedules';
import { loadConfig } from '../src/config';
import { nightlyBackup, redisBackup, verifyBackupSet } from '../src/workflows';
import {
  backupObject,
  databases,
  failureType,
  freshKohakku,
  putBackupObject,
  backupS3Client,
  minioClient,
  startWorker,
  stopKohakku,
  temporalClient,
  testStack,
  type TestKohakku,
  type WorkerProcess,
  backUpPostgres,
} from './harness/kohakku';

let k: TestKohakku;
let worker: WorkerProcess;
const BACKUPS = 'kohakku-backups';

beforeAll(async () => {
  k = await freshKohakku('backups', { tasks: 3000, briefs: 50 }, { agents: false });
  worker = await startWorker(k.workerEnv);
});

afterAll(async () => {
  await worker?.stop();
  if (k) await stopKohakku(k);
});

const store = () => s3BackupStore(backupS3Client(k.stack), BACKUPS, 'us-east-1');

const objectBytes = (key: string) => backupObject(k.stack, key, BACKUPS);
const putBytes = (key: string, body: Buffer) => putBackupObject(k.stack, key, body, BACKUPS);

/** Nothing a verification creates may outlive it. */
async function expectNoScratchLeft(): Promise<void> {
  expect((await databases(k.stack)).filter((d) => d.includes('__dr_verify_'))).toEqual([]);
  expect(
    (await minioClient(k.stack).listBuckets())
      .map((b) => b.name)
      .filter((b) => b.startsWith('kohakku-dr-verify-')),
  ).toEqual([]);
}

async function runNightlyFromSchedule(): Promise<BackupSetManifest> {
  const client = await temporalClient(k.stack);
  const config = loadConfig({ ...k.workerEnv });
  expect(await applySchedules(client, config)).toMatch(/created|updated/);
  const schedule = client.schedule.getHandle(NIGHTLY_SCHEDULE_ID);
  const before = (await schedule.describe()).info.recentActions.length;
  await schedule.trigger();
  let workflowId: string | undefined;
  const deadline = Date.now() + 30000;
  while (!workflowId) {
    const actions = (await schedule.describe()).info.recentActions;
    if (actions.length > before) workflowId = actions.at(-1)!.action.workflow.workflowId;
    else if (Date.now() > deadline) throw new Error('the schedule did not start a run');
    else await new Promise((r) => setTimeout(r, 250));
  }
  const result = await client.workflow.getHandle<typeof nightlyBackup>(workflowId).result();
  return result.set;
}

test('a schedule triggered now produces a complete, verified backup set; applying it again updates in place', async () => {
  const set = await runNightlyFromSchedule();
  const stored = await readSet(store(), set.id);
  expect(stored?.verification).toMatchObject({ ok: true, problems: [] });

  // The set matches what was there: rows, Redis keys, objects.
  const c = new Client({
    host: '127.0.0.1',
    port: k.stack.postgres.port,
    user: 'postgres',
    database: 'kohakku-controller',
  });
  await c.connect();
  const rows = Number(
    (
      await c.query<{ n: string }>(
        'SELECT (SELECT count(*) FROM tasks_task) + (SELECT count(*) FROM tasks_task_skills) + (SELECT count(*) FROM tasks_skill) AS n',
      )
    ).rows[0]!.n,
  );
  await c.end();
  expect(set.postgres.databases.find((d) => d.database === 'kohakku-controller')).toMatchObject({
    tables: 3,
    rows,
  });
  const redis = new Redis({ port: k.stack.redis.port });
  expect(set.redis.keys).toBe(await redis.dbsize());
  redis.disconnect();
  const objects: string[] = [];
  for await (const o of minioClient(k.stack).listObjectsV2('kohakku', '', true))
    objects.push((o as { name: string }).name);
  expect(set.objects.objects).toBe(objects.length);

  // Idempotent: applying the same configuration again updates, never duplicates.
  const client = await temporalClient(k.stack);
  expect(await applySchedules(client, loadConfig({ ...k.workerEnv }))).toBe('updated');
  const ids: string[] = [];
  for await (const s of client.schedule.list()) ids.push(s.scheduleId);
  expect(ids.filter((id) => id === NIGHTLY_SCHEDULE_ID)).toHaveLength(1);
  await expectNoScratchLeft();
});

test('a second nightly run mirrors only what changed', async () => {
  await minioClient(k.stack).putObject('kohakku', 'briefs/task-new.md', Buffer.from('new brief'));
  const set = await runNightlyFromSchedule();
  expect(set.objects.copied).toBe(1);
});

async function verify(backupId: string): Promise<unknown> {
  const client = await temporalClient(k.stack);
  return client.workflow
    .execute<typeof verifyBackupSet>('verifyBackupSet', {
      taskQueue: k.workerEnv.KOHAKKU_DR_TASK_QUEUE!,
      workflowId: `test-verify-${backupId}-${Date.now()}`,
      args: [{ backupId }],
    })
    .then(
      (r) => r,
      (err: unknown) => err,
    );
}

test('verification catches a tampered dump and a truncated RDB, records the verdict, leaves no scratch copies', async () => {
  const [latest] = await createBackupSetActivities({
    store: store(),
    config: { retentionDays: 14 },
  }).listBackupSets();
  const id = latest!.id;
  expect(latest!.verification?.ok).toBe(true);

  const dumpKeyName = dumpKey(id, 'kohakku-controller');
  const dump = await objectBytes(dumpKeyName);
  const tampered = Buffer.from(dump);
  tampered[Math.floor(tampered.length / 3)] ^= 0x01;
  await putBytes(dumpKeyName, tampered);
  const err = await verify(id);
  expect(failureType(err)).toBe('VerificationFailed');
  const afterDump = await readSet(store(), id);
  expect(afterDump?.verification?.ok).toBe(false);
  expect(afterDump?.verification?.problems.join(' ')).toMatch(/kohakku-controller.*corrupt/);
  await expectNoScratchLeft();
  await putBytes(dumpKeyName, dump);

  const rdbKey = redisBackupKey(id);
  const rdb = await objectBytes(rdbKey);
  await putBytes(rdbKey, rdb.subarray(0, Math.floor(rdb.length / 2)));
  expect(failureType(await verify(id))).toBe('VerificationFailed');
  expect((await readSet(store(), id))?.verification?.problems.join(' ')).toMatch(/RDB/);
  await expectNoScratchLeft();
  await putBytes(rdbKey, rdb);

  // Restored: the same set verifies again.
  expect(await verify(id)).toMatchObject({ ok: true });
});

test('retention prunes by age, keeps the newest verified set even when old and a locked one, refuses 3 or 45 days', async () => {
  // A backup directory of its own (BACKUP_STORE=dir), so only the sets made here are in it.
  const s = dirBackupStore(await fs.mkdtemp(path.join(os.tmpdir(), 'kohakku-dr-retention-')));
  const sets = createBackupSetActivities({ store: s, config: { retentionDays: 14 } });
  const real = store();
  const [source] = await createBackupSetActivities({
    store: real,
    config: { retentionDays: 14 },
  }).listBackupSets();
  for (const o of await real.list(BLOB_PREFIX)) await s.putStream(o.key, await real.getStream(o.key), o.size);
  const now = Date.parse('2026-06-30T12:00:00Z');
  const idAt = (daysAgo: number) =>
    new Date(now - daysAgo * 86400_000)
      .toISOString()
      .replace(/[-:]/g, '')
      .replace(/\.\d{3}Z$/, 'Z');
  // Old sets made by copying a real one under older ids (the test's setup, not the code under test).
  const fabricate = async (id: string, verified: boolean) => {
    const manifest = { ...source!, id, verification: verified ? source!.verification : undefined };
    for (const part of ['postgres', 'redis', 'objects']) {
      for (const o of await real.list(`${part}/${source!.id}/`)) {
        await s.putStream(o.key.replace(source!.id, id), await real.getStream(o.key), o.size);
      }
    }
    await s.putJson(`sets/${id}/manifest.json`, manifest);
  };
  const oldVerified = idAt(40);
  const oldUnverified = idAt(35);
  const locked = idAt(25);
  const stale = idAt(20);
  const recent = idAt(1);
  for (const [id, verified] of [
    [oldVerified, true],
    [oldUnverified, false],
    [locked, false],
    [stale, false],
    [recent, false],
  ] as const) {
    await fabricate(id, verified);
  }
  await sets.lockBackup({ backupId: locked, holder: 'test-restore' });

  const report = await sets.pruneBackups({ asOf: new Date(now).toISOString() });
  expect(report.pruned.sort()).toEqual([oldUnverified, stale].sort());
  expect(report.kept).toEqual(
    expect.arrayContaining([
      { id: oldVerified, reason: 'newest verified set' },
      { id: locked, reason: 'in use by a restore' },
      { id: recent, reason: 'within retention' },
    ]),
  );
  expect(await s.list(`postgres/${stale}/`)).toEqual([]);
  expect(await readSet(s, oldVerified)).toBeDefined();
  expect(report.blobsRemoved).toBe(0); // every blob is still referenced by a kept set
  await sets.unlockBackup({ backupId: locked, holder: 'test-restore' });

  await expect(sets.pruneBackups({ asOf: new Date(now).toISOString(), retentionDays: 45 })).rejects.toThrow(
    /7 to 30 days/,
  );
  expect(() => loadConfig({ ...k.workerEnv, BACKUP_RETENTION_DAYS: '3' })).toThrow(
    'invalid setting BACKUP_RETENTION_DAYS',
  );
  expect(() => loadConfig({ ...k.workerEnv, BACKUP_RETENTION_DAYS: '45' })).toThrow(
    'invalid setting BACKUP_RETENTION_DAYS',
  );
  await fs.rm(s.location, { recursive: true, force: true });
});

test('a backup taken while Kohakku keeps writing restores consistently (foreign keys hold, counts match)', async () => {
  const writer = new Client({
    host: '127.0.0.1',
    port: k.stack.postgres.port,
    user: 'postgres',
    database: 'kohakku-controller',
  });
  await writer.connect();
  let writing = true;
  let written = 0;
  const loop = (async () => {
    while (writing) {
      // A task and its skill link in one transaction: a torn backup would break the foreign key.
      await writer.query('BEGIN');
      const id = (
        await writer.query<{ id: string }>(
          `INSERT INTO tasks_task (title, status, brief_key, created_at, updated_at) VALUES ('live write', 'pending', 'briefs/x', now(), now()) RETURNING id`,
        )
      ).rows[0]!.id;
      await writer.query('INSERT INTO tasks_task_skills (task_id, skill_id) VALUES ($1, 1)', [id]);
      await writer.query('COMMIT');
      written++;
    }
  })();
  try {
    const set = await runNightlyFromSchedule();
    expect(written).toBeGreaterThan(0);
    // Verified = restored into scratch databases with every constraint re-created, and the
    // per-table counts equal to those taken in the dump's own snapshot.
    expect((await readSet(store(), set.id))?.verification?.ok).toBe(true);
  } finally {
    writing = false;
    await loop;
    await writer.end();
  }
});

test('recovery picks the newest verified set by default, over a newer unverified backup, and says so', async () => {
  const [verifiedSet] = (
    await createBackupSetActivities({ store: store(), config: { retentionDays: 14 } }).listBackupSets()
  ).filter((s) => s.verification?.ok);
  await new Promise((r) => setTimeout(r, 1100)); // backup ids have one-second resolution
  const unverified = await backUpPostgres(k, 'test-backups-unverified');
  expect(unverified.id > verifiedSet!.id).toBe(true);
  // exec is not used to resolve a backup: a stub that would fail loudly if it were.
  const pg = createPostgresActivities({
    config: loadConfig({ ...k.workerEnv }),
    store: store(),
    exec: async () => {
      throw new Error('exec must not be called');
    },
  });
  const chosen = await pg.resolvePostgresBackup({ targets: ['controller', 'dispatcher'] });
  expect(chosen).toMatchObject({ id: verifiedSet!.id, verified: true });
  expect(await pg.resolvePostgresBackup({ backupId: unverified.id, targets: ['controller'] })).toMatchObject({
    id: unverified.id,
    verified: false,
  });
});

test('a Redis backup pulled over the network (redis-cli --rdb) when the worker is not on the Redis host', async () => {
  const networkWorker = await startWorker({
    ...k.workerEnv,
    REDIS_BACKUP_METHOD: 'network',
    REDIS_CLI_BIN: testStack().tools.redisCli,
    KOHAKKU_DR_TASK_QUEUE: 'test-backups-network',
  });
  try {
    const client = await temporalClient(k.stack);
    const manifest = await client.workflow.execute(redisBackup, {
      taskQueue: 'test-backups-network',
      workflowId: 'test-backups-network-redis',
      args: [{}],
    });
    const redis = new Redis({ port: k.stack.redis.port });
    expect(manifest).toMatchObject({ method: 'network', keys: await redis.dbsize() });
    redis.disconnect();
    expect(
      Buffer.from(await objectBytes(manifest.key))
        .subarray(0, 5)
        .toString(),
    ).toBe('REDIS');
  } finally {
    await networkWorker.stop();
  }
});

test('a Redis backup started during an AOF rewrite waits for it (Redis refuses a second child) and succeeds on its first attempt', async () => {
  const redis = new Redis({ port: k.stack.redis.port });
  try {
    // Each key costs the rewrite's child 1 ms, so the rewrite outlives the backup's start; the
    // delay is set back at once, so the backup's own BGSAVE (a later child) runs at full speed.
    // Redis runs one child at a time: a save of its own (its save policy) first ends, else the
    // rewrite is only scheduled behind it.
    const persistence = () => redis.info('persistence');
    const until = async (pattern: RegExp) => {
      const deadline = Date.now() + 20000;
      while (!pattern.test(await persistence())) {
        if (Date.now() > deadline) throw new Error(`Redis never showed ${pattern}: ${await persistence()}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    await until(/rdb_bgsave_in_progress:0[\s\S]*aof_rewrite_in_progress:0/);
    await redis.config('SET', 'rdb-key-save-delay', '1000');
    await redis.bgrewriteaof();
    await until(/aof_rewrite_in_progress:1/);
    await redis.config('SET', 'rdb-key-save-delay', '0');
    const marker = `dr-test:aof-rewrite:${Date.now()}`;
    await redis.set(marker, '1');
    const client = await temporalClient(k.stack);
    const handle = await client.workflow.start(redisBackup, {
      taskQueue: k.workerEnv.KOHAKKU_DR_TASK_QUEUE!,
      workflowId: `test-backups-during-aof-rewrite-${Date.now()}`,
      args: [{}],
    });
    const manifest = await handle.result();
    expect(await redis.info('persistence')).toMatch(/aof_rewrite_in_progress:0/);
    // The RDB taken holds the key written before the backup started, and every key.
    expect(manifest.keys).toBe(await redis.dbsize());
    const { events } = await handle.fetchHistory();
    const attempts = (events ?? [])
      .map((e) => e.activityTaskStartedEventAttributes?.attempt)
      .filter((a): a is number => a !== undefined && a !== null);
    expect(attempts.length).toBeGreaterThan(0);
    expect(attempts.filter((a) => a > 1)).toEqual([]);
    await redis.del(marker);
  } finally {
    await redis.config('SET', 'rdb-key-save-delay', '0');
    redis.disconnect();
  }
});
