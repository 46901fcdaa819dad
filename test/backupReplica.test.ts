/**
 * Backups off the failure domain, for real: the backup store on its own S3 server (VersityGW,
 * not Kohakku's MinIO) and a replica directory.
 *   - the nightly backup copies the verified set to the replica and checks the copy; each file
 *     there is identical (sha256, computed here) to the primary's; `kohakku-dr backups` shows
 *     where each set exists;
 *   - a second nightly copies only what the replica lacks (the new set's files, one new blob);
 *   - the primary backup store's server is SIGKILLed and its data directory deleted, and with it
 *     the databases and Kohakku's S3 server are lost: both recoveries read from the replica, say
 *     so, and bring back data identical to the backup.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import type { ReplicaReport } from '../src/activities/replica';
import { loadConfig } from '../src/config';
import { sha256File } from '../src/infra/hashing';
import { hashObject } from '../src/infra/s3';
import { createBackupStore } from '../src/infra/stores';
import { seededStatus } from '../src/reference/model';
import { loseS3Server, restartS3Server } from '../src/stack/stack';
import { nightlyBackup, objectStoreLoss, totalDatabaseLoss } from '../src/workflows';
import type { NightlyBackupResult } from '../src/workflows/nightlyBackup';
import type { ObjectStoreLossResult } from '../src/workflows/objectStoreLoss';
import type { TotalDatabaseLossResult } from '../src/workflows/totalDatabaseLoss';
import {
  backupS3Client,
  DIST,
  dropDatabase,
  freshKohakku,
  health,
  minioClient,
  startWorker,
  stopKohakku,
  tableFingerprints,
  temporalClient,
  type TestKohakku,
  type WorkerProcess,
} from './harness/kohakku';

const BACKUPS = 'kohakku-backups';
const CONTROLLER = 'kohakku-controller';
const DISPATCHER = 'kohakku-dispatcher';

let k: TestKohakku;
let worker: WorkerProcess;
let first: NightlyBackupResult;
let second: NightlyBackupResult;
let atSecondBackup: Record<string, Record<string, string>>;

beforeAll(async () => {
  k = await freshKohakku('replica', { tasks: 3000, briefs: 60 }, { agents: false });
  worker = await startWorker(k.workerEnv);
});

afterAll(async () => {
  await worker?.stop();
  // The later test files need a backup store: start the lost one again (empty).
  await restartS3Server(k.stack.dir, 'backupS3').catch(() => undefined);
  if (k) await stopKohakku(k);
});

async function nightly(workflowId: string): Promise<NightlyBackupResult> {
  const client = await temporalClient(k.stack);
  return client.workflow.execute(nightlyBackup, {
    taskQueue: k.workerEnv.KOHAKKU_DR_TASK_QUEUE!,
    workflowId,
  });
}

/** Every key of the set in the primary with its sha256, read here from the backup server. */
async function primaryFiles(backupId: string): Promise<Map<string, string>> {
  const s3 = backupS3Client(k.stack);
  const out = new Map<string, string>();
  const keys: string[] = [];
  for (const prefix of [`postgres/${backupId}/`, `redis/${backupId}/`, `objects/${backupId}/`])
    for await (const o of s3.listObjectsV2(BACKUPS, prefix, true)) keys.push((o as { name: string }).name);
  const index = JSON.parse(
    await streamText(await s3.getObject(BACKUPS, `objects/${backupId}/index.json`)),
  ) as { blob: string }[];
  for (const e of index) keys.push(e.blob);
  for (const key of keys) out.set(key, (await hashObject(s3, BACKUPS, key)).sha256);
  return out;
}

async function streamText(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function replicaHashes(keys: Iterable<string>): Promise<Map<string, string | undefined>> {
  const out = new Map<string, string | undefined>();
  for (const key of keys)
    out.set(key, await sha256File(path.join(k.stack.replicaDir, key)).catch(() => undefined));
  return out;
}

/** Kohakku's bucket: key → sha256, computed here. */
async function bucketContent(): Promise<Map<string, string>> {
  const s3 = minioClient(k.stack);
  const out = new Map<string, string>();
  if (!(await s3.bucketExists('kohakku'))) return out;
  const keys: string[] = [];
  for await (const o of s3.listObjectsV2('kohakku', '', true)) keys.push((o as { name: string }).name);
  for (const key of keys.sort()) out.set(key, (await hashObject(s3, 'kohakku', key)).sha256);
  return out;
}

test('the nightly backup copies the verified set to the replica: every file identical by sha256, the copy checked, both stores listed', async () => {
  first = await nightly('test-replica-nightly-1');
  expect(first.verification.ok).toBe(true);
  const replica = first.replica as ReplicaReport;
  expect(replica.skipped).toBeUndefined();
  expect(replica.replica).toBe(k.stack.replicaDir);
  expect(replica.alreadyPresent).toBe(0);
  expect(replica.checked).toMatchObject({ dumps: 2, rdb: 1, blobsSized: 0 });
  expect(replica.checked.blobsHashed).toBe(replica.blobsCopied);

  const files = await primaryFiles(first.set.id);
  expect(replica.copied).toBe(files.size);
  expect(await replicaHashes(files.keys())).toEqual(files);
  // The replica's set manifest, written last: the verdict and where the copy came from.
  const set = JSON.parse(
    await fs.readFile(path.join(k.stack.replicaDir, `sets/${first.set.id}/manifest.json`), 'utf8'),
  );
  expect(set.verification.ok).toBe(true);
  expect(set.replica.copiedFrom).toContain(`on https://localhost:${k.stack.backupS3.port}`);
  expect(first.replicaRetention?.kept.map((x) => x.id)).toEqual([first.set.id]);

  const { stdout } = await promisify(execFile)(
    process.execPath,
    [path.join(DIST, 'client/cli.js'), 'backups'],
    {
      env: { ...process.env, ...k.workerEnv },
    },
  );
  expect(stdout).toContain(
    `primary: s3://${BACKUPS} on https://localhost:${k.stack.backupS3.port} — 1 set(s)`,
  );
  expect(stdout).toContain(`replica: ${k.stack.replicaDir} — 1 set(s)`);
  expect(stdout).toMatch(
    new RegExp(`${first.set.id}\\s+primary: verified\\s+replica: verified \\(copy checked\\)`),
  );
});

test("the backup store speaks TLS with the stack's private CA: trusted through BACKUP_S3_CA_FILE, refused without it", async () => {
  const { BACKUP_S3_CA_FILE, ...withoutCa } = k.workerEnv;
  expect(BACKUP_S3_CA_FILE).toBe(k.stack.backupS3.caFile);
  expect(k.workerEnv.BACKUP_S3_ENDPOINT).toMatch(/^https:/);
  expect((await createBackupStore(loadConfig(k.workerEnv)).list('sets/')).length).toBeGreaterThan(0);
  await expect(createBackupStore(loadConfig(withoutCa)).list('sets/')).rejects.toThrow(/certificate/);
});

test('a second nightly copies only what the replica lacks: the new set, one new blob', async () => {
  const s3 = minioClient(k.stack);
  await s3.putObject('kohakku', 'skills/replica-new.md', Buffer.from('a skill added after the first backup'));
  // The next backup id is the next second (backup ids are to the second).
  await new Promise((r) => setTimeout(r, 1100));
  second = await nightly('test-replica-nightly-2');
  atSecondBackup = {
    [CONTROLLER]: await tableFingerprints(k.stack, CONTROLLER),
    [DISPATCHER]: await tableFingerprints(k.stack, DISPATCHER),
  };
  const replica = second.replica as ReplicaReport;
  const firstBlobs = first.replica!.blobsCopied;
  expect(replica.blobsCopied).toBe(1);
  expect(replica.blobsAlreadyPresent).toBe(firstBlobs);
  expect(replica.checked).toMatchObject({ blobsHashed: 1, blobsSized: firstBlobs });
  const files = await primaryFiles(second.set.id);
  expect(await replicaHashes(files.keys())).toEqual(files);
  expect(replica.copied + replica.alreadyPresent).toBe(files.size);
});

test('the primary backup store lost with its server and disk: database and object-store recoveries read the replica, say so, and bring the data back identical', async () => {
  const objectsAtBackup = await bucketContent();
  // The disaster: the backup store's server and its disk, the databases, Kohakku's S3 server.
  await loseS3Server(k.stack.dir, 'backupS3');
  await dropDatabase(k.stack, CONTROLLER);
  await dropDatabase(k.stack, DISPATCHER);
  await loseS3Server(k.stack.dir, 'minio');

  const client = await temporalClient(k.stack);
  const taskQueue = k.workerEnv.KOHAKKU_DR_TASK_QUEUE!;
  const db = (await client.workflow.execute(totalDatabaseLoss, {
    taskQueue,
    workflowId: 'test-replica-tdl',
    args: [{ reconnectDeadlineSeconds: 5, restartDeadlineSeconds: 30, registrationDeadlineSeconds: 10 }],
  })) as TotalDatabaseLossResult;
  expect(db.backupId).toBe(second.set.id);
  expect(db.backup).toMatchObject({ source: 'replica', sourceLocation: k.stack.replicaDir, verified: true });
  expect(db.backup!.choice).toMatch(/from the replica store/);
  expect(db.backup!.choice).toMatch(new RegExp(`primary .*localhost:${k.stack.backupS3.port}.* UNREACHABLE`));
  expect(await tableFingerprints(k.stack, CONTROLLER)).toEqual(atSecondBackup[CONTROLLER]);
  expect(await tableFingerprints(k.stack, DISPATCHER)).toEqual(atSecondBackup[DISPATCHER]);
  expect(await health(k.model.ports.controller)).toBe(200);

  const objects = (await client.workflow.execute(objectStoreLoss, {
    taskQueue,
    workflowId: 'test-replica-objects',
    args: [{}],
  })) as ObjectStoreLossResult;
  expect(objects.server).toMatchObject({ restarted: true, healthy: true });
  expect(objects.backup).toMatchObject({ id: second.set.id, source: 'replica' });
  const completedBriefs = [...objectsAtBackup.keys()].filter((key) => {
    const m = /^briefs\/task-(\d+)\.md$/.exec(key);
    return m && seededStatus(Number(m[1])) === 'completed';
  });
  expect(objects.restored.skippedCompletedBriefs).toBe(completedBriefs.length);
  for (const key of completedBriefs) objectsAtBackup.delete(key);
  expect(await bucketContent()).toEqual(objectsAtBackup);
});
