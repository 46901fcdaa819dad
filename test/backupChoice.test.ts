/**
 * Which backup a recovery uses, and why; how long a restore's lock protects a backup. Backup sets
 * in a real backup directory (BACKUP_STORE=dir): the newest verified set is chosen and every newer
 * one is listed with its reason (failed verification, incomplete); with none verified the fallback
 * says so; a lock protects its backup from retention only while its lease lasts (a 0.1 lock,
 * without a lease, for 7 days).
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createBackupSetActivities } from '../src/activities/backupSets';
import { createPostgresActivities } from '../src/activities/postgres';
import { loadConfig } from '../src/config';
import { backupIdAt } from '../src/domain/backupIds';
import {
  BLOB_GC_CANDIDATES_KEY,
  BLOB_PREFIX,
  lockKey,
  objectIndexKey,
  objectsManifestKey,
  postgresManifestKey,
  redisManifestKey,
  setManifestKey,
} from '../src/domain/layout';
import type { BackupSetManifest, Verification } from '../src/domain/manifests';
import { dirBackupStore, type BackupStore } from '../src/infra/backupStore';
import { referenceModelOn, workerEnvFor } from '../src/reference/onStack';
import { testStack } from './harness/kohakku';

const dirs: string[] = [];

async function freshStore(): Promise<BackupStore> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kohakku-dr-choice-'));
  dirs.push(dir);
  return dirBackupStore(dir);
}

afterAll(async () => {
  for (const dir of dirs) await fs.rm(dir, { recursive: true, force: true });
});

type Part = 'postgres' | 'redis' | 'objects';

/** Writes a backup's part manifests as the backup activities do, and its set manifest unless told not to. */
async function writeBackup(
  store: BackupStore,
  id: string,
  options: { parts?: Part[]; set?: boolean; verification?: Verification } = {},
): Promise<void> {
  const parts = options.parts ?? ['postgres', 'redis', 'objects'];
  const createdAt = new Date().toISOString();
  if (parts.includes('postgres')) {
    await store.putJson(postgresManifestKey(id), {
      kind: 'postgres',
      formatVersion: 1,
      id,
      createdAt,
      serverVersion: '15',
      pgDumpVersion: 'pg_dump (PostgreSQL) 15',
      databases: ['controller', 'dispatcher'].map((target) => ({
        target,
        database: `kohakku-${target}`,
        key: `postgres/${id}/kohakku-${target}-${id.slice(0, 8)}.dump`,
        size: 1,
        sha256: '0'.repeat(64),
        tables: [],
      })),
    });
  }
  if (parts.includes('redis')) await store.putJson(redisManifestKey(id), { kind: 'redis', id, createdAt });
  if (parts.includes('objects')) {
    await store.putJson(objectIndexKey(id), []);
    await store.putJson(objectsManifestKey(id), { kind: 'objects', id, createdAt, objects: 0 });
  }
  if (options.set === false) return;
  const set: BackupSetManifest = {
    kind: 'backup-set',
    formatVersion: 1,
    id,
    createdAt,
    completedAt: createdAt,
    postgres: { databases: [] },
    redis: { size: 1, sha256: '0'.repeat(64), keys: 0, method: 'bgsave' },
    objects: { objects: 0, bytes: 0, copied: 0 },
    verification: options.verification,
  };
  await store.putJson(setManifestKey(id), set);
}

const passed: Verification = { verifiedAt: '2026-11-01T03:00:00Z', ok: true, problems: [], verifyId: 'v-ok' };
const failed: Verification = {
  verifiedAt: '2026-11-02T03:00:00Z',
  ok: false,
  problems: ['skills/big.bin: ETag abc-2, backup says def', 'briefs/x.md missing after restore'],
  verifyId: 'v-failed',
};

async function postgresActivities(store: BackupStore) {
  const stack = testStack();
  const config = loadConfig({ ...workerEnvFor(stack, await referenceModelOn(stack, 'choice')) });
  return createPostgresActivities({
    config,
    store,
    exec: async () => {
      throw new Error('resolving a backup runs no tool');
    },
  });
}

async function rejection(promise: Promise<unknown>): Promise<{ type?: string; message: string }> {
  try {
    await promise;
  } catch (err) {
    return { type: (err as { type?: string }).type, message: (err as Error).message };
  }
  throw new Error('expected a rejection');
}

test('latest is the newest verified set; the newer FAILED and incomplete ones are skipped with their reasons', async () => {
  const store = await freshStore();
  const sets = createBackupSetActivities({ store, config: { retentionDays: 14 } });
  await writeBackup(store, '20261101T020000Z', { verification: passed });
  await writeBackup(store, '20261102T020000Z', { verification: failed });
  await writeBackup(store, '20261103T020000Z', { parts: ['postgres', 'redis'], set: false });

  const chosen = await sets.resolveBackupSet({});
  expect(chosen).toMatchObject({ id: '20261101T020000Z', verified: true });
  expect(chosen.choice).toMatch(/newest verified backup set: 20261101T020000Z/);
  expect(chosen.skipped).toEqual([
    { id: '20261103T020000Z', reason: 'incomplete: has postgres, redis, no objects; no set manifest' },
    {
      id: '20261102T020000Z',
      reason: `verification FAILED (2026-11-02T03:00:00Z): ${failed.problems[0]}`,
    },
  ]);
  expect(await sets.resolveBackupSet({ backupId: 'latest' })).toEqual(chosen);

  // The same rule for a Postgres restore, with the same reasons in its summary.
  const pg = await postgresActivities(store);
  const summary = await pg.resolvePostgresBackup({ targets: ['controller', 'dispatcher'] });
  expect(summary).toMatchObject({ id: '20261101T020000Z', verified: true, skipped: chosen.skipped });
  expect(summary.choice).toMatch(/newest verified Postgres backup: 20261101T020000Z/);

  // A named id is used as named, and says what it is; bad names keep their errors.
  const named = await sets.resolveBackupSet({ backupId: '20261102T020000Z' });
  expect(named).toMatchObject({ id: '20261102T020000Z', verified: false, skipped: [] });
  expect(named.choice).toMatch(/as requested \(NOT verified: verification FAILED/);
  expect(await rejection(sets.resolveBackupSet({ backupId: '2026-11-01' }))).toMatchObject({
    type: 'InvalidInput',
  });
  expect(await rejection(sets.resolveBackupSet({ backupId: '20261103T020000Z' }))).toMatchObject({
    type: 'BackupNotFound',
  });
  expect(
    await rejection(pg.resolvePostgresBackup({ backupId: '20261009T020000Z', targets: ['controller'] })),
  ).toMatchObject({ type: 'BackupNotFound' });
});

test('with no verified set the fallback says so loudly; when every set failed nothing is chosen', async () => {
  const store = await freshStore();
  const sets = createBackupSetActivities({ store, config: { retentionDays: 14 } });
  await writeBackup(store, '20261101T020000Z'); // never verified
  await writeBackup(store, '20261102T020000Z', { verification: failed });
  await writeBackup(store, '20261103T020000Z', { parts: ['postgres'], set: false });

  const chosen = await sets.resolveBackupSet({});
  expect(chosen).toMatchObject({ id: '20261101T020000Z', verified: false });
  expect(chosen.choice).toMatch(
    /^NO VERIFIED BACKUP SET: falling back .* 20261101T020000Z \(not verified yet\)/,
  );
  expect(chosen.skipped.map((s) => s.id)).toEqual(['20261103T020000Z', '20261102T020000Z']);

  // A Postgres restore can use the newest complete Postgres backup, the one without a set, and says so.
  const summary = await (await postgresActivities(store)).resolvePostgresBackup({ targets: ['controller'] });
  expect(summary).toMatchObject({ id: '20261103T020000Z', verified: false, skipped: [] });
  expect(summary.choice).toMatch(
    /^NO VERIFIED POSTGRES BACKUP: .*incomplete: has postgres, no redis, objects/,
  );

  const onlyFailed = await freshStore();
  await writeBackup(onlyFailed, '20261102T020000Z', { verification: failed });
  const refused = await rejection(
    createBackupSetActivities({ store: onlyFailed, config: { retentionDays: 14 } }).resolveBackupSet({}),
  );
  expect(refused.type).toBe('BackupNotFound');
  expect(refused.message).toMatch(/every one failed verification .* name one explicitly/);
});

test('a damaged set manifest is passed over with its reason, never hides the others, and named is BackupCorrupt', async () => {
  const store = await freshStore();
  const sets = createBackupSetActivities({ store, config: { retentionDays: 14 } });
  await writeBackup(store, '20261101T020000Z', { verification: passed });
  await writeBackup(store, '20261102T020000Z', { verification: passed });
  await store.putBytes(setManifestKey('20261102T020000Z'), Buffer.from('{"kind": "backup-set", "id": "2026'));

  const chosen = await sets.resolveBackupSet({});
  expect(chosen).toMatchObject({ id: '20261101T020000Z', verified: true });
  expect(chosen.skipped).toEqual([
    {
      id: '20261102T020000Z',
      reason: expect.stringMatching(/^DAMAGED: sets\/20261102T020000Z\/manifest\.json .* is not valid JSON/),
    },
  ]);
  expect(await rejection(sets.resolveBackupSet({ backupId: '20261102T020000Z' }))).toMatchObject({
    type: 'BackupCorrupt',
    message: expect.stringMatching(/backup set 20261102T020000Z: .* not valid JSON .*pick another backup/),
  });
});

test('a lock protects its backup from retention only while its lease lasts; a 0.1 lock expires 7 days after it was taken', async () => {
  const store = await freshStore();
  const sets = createBackupSetActivities({ store, config: { retentionDays: 14 } });
  const asOf = Date.now() + 10 * 60_000; // retention runs 10 minutes from now
  const daysBefore = (days: number) => backupIdAt(new Date(asOf - days * 86400_000));
  const renewed = daysBefore(30);
  const lapsed = daysBefore(29);
  const legacyOld = daysBefore(28);
  const legacyRecent = daysBefore(27);
  const unlocked = daysBefore(26);
  const recentVerified = daysBefore(1);
  for (const id of [renewed, lapsed, legacyOld, legacyRecent, unlocked]) await writeBackup(store, id);
  await writeBackup(store, recentVerified, { verification: passed });

  // A restore that keeps renewing its lease, and one that was terminated after a 60 s lease.
  await sets.lockBackup({ backupId: renewed, holder: 'recovery-running', leaseSeconds: 60 });
  await sets.lockBackup({ backupId: renewed, holder: 'recovery-running', leaseSeconds: 3600 });
  await sets.lockBackup({ backupId: lapsed, holder: 'recovery-terminated', leaseSeconds: 60 });
  expect(await store.getJson(lockKey(renewed, 'recovery-running'))).toMatchObject({
    holder: 'recovery-running',
    expiresAt: expect.any(String),
  });
  // Locks as 0.1 wrote them: no expiresAt.
  await store.putJson(lockKey(legacyOld, 'old-recovery'), {
    holder: 'old-recovery',
    at: new Date(asOf - 8 * 86400_000).toISOString(),
  });
  await store.putJson(lockKey(legacyRecent, 'recent-recovery'), {
    holder: 'recent-recovery',
    at: new Date(asOf - 2 * 86400_000).toISOString(),
  });

  const report = await sets.pruneBackups({ asOf: new Date(asOf).toISOString() });
  expect(report.pruned.sort()).toEqual([lapsed, legacyOld, unlocked].sort());
  expect(report.kept).toEqual(
    expect.arrayContaining([
      { id: renewed, reason: 'in use by a restore' },
      { id: legacyRecent, reason: 'in use by a restore' },
      { id: recentVerified, reason: 'within retention' },
    ]),
  );
  expect(report.expiredLocks.map((l) => `${l.id} ${l.holder}`).sort()).toEqual(
    [`${lapsed} recovery-terminated`, `${legacyOld} old-recovery`].sort(),
  );
  // What was pruned is gone from the store, locks included; what was kept is whole.
  for (const id of [lapsed, legacyOld, unlocked]) {
    for (const part of ['sets', 'postgres', 'redis', 'objects', 'locks'])
      expect(await store.list(`${part}/${id}/`)).toEqual([]);
  }
  for (const id of [renewed, legacyRecent, recentVerified])
    expect(await store.stat(setManifestKey(id))).toBeDefined();

  // A bad lease is refused before anything is written.
  expect(
    await rejection(sets.lockBackup({ backupId: unlocked, holder: 'x', leaseSeconds: 0 })),
  ).toMatchObject({ type: 'InvalidInput' });
  expect(await store.list(`locks/${unlocked}/`)).toEqual([]);
});

test('an unreferenced blob is removed only after a day unreferenced and not written again meanwhile (a running mirror may be about to index it)', async () => {
  const store = await freshStore();
  const sets = createBackupSetActivities({ store, config: { retentionDays: 14 } });
  const id = backupIdAt(new Date(Date.now() - 3600_000));
  await writeBackup(store, id);
  const referenced = `${BLOB_PREFIX}sha256-${'a'.repeat(64)}-1`;
  const orphan = `${BLOB_PREFIX}sha256-${'b'.repeat(64)}-1`;
  const rewritten = `${BLOB_PREFIX}sha256-${'c'.repeat(64)}-1`;
  await store.putJson(objectIndexKey(id), [
    { key: 'skills/a', size: 1, etag: 'e', sha256: 'a', blob: referenced },
  ]);
  for (const blob of [referenced, orphan, rewritten]) await store.putJson(blob, 'x');
  const prune = (at: number) => sets.pruneBackups({ asOf: new Date(at).toISOString() });

  // First seen unreferenced: marked, kept.
  await new Promise((r) => setTimeout(r, 20));
  const markedAt = Date.now();
  const marked = await prune(markedAt);
  expect(marked).toMatchObject({ blobsRemoved: 0, blobsInGrace: 2 });
  expect(await store.getJson(BLOB_GC_CANDIDATES_KEY)).toEqual({
    [orphan]: new Date(markedAt).toISOString(),
    [rewritten]: new Date(markedAt).toISOString(),
  });
  // A mirror stores that content again (after the mark): its grace starts over.
  await new Promise((r) => setTimeout(r, 20));
  await store.putJson(rewritten, 'x');
  expect((await prune(markedAt + 23 * 3600_000)).blobsRemoved).toBe(0);
  const swept = await prune(markedAt + 24 * 3600_000);
  expect(swept).toMatchObject({ blobsRemoved: 1, blobsInGrace: 1 });
  expect(await store.stat(orphan)).toBeUndefined();
  expect(await store.stat(rewritten)).toBeDefined();
  expect(await store.stat(referenced)).toBeDefined();
});
