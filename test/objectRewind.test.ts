/**
 * Point-in-time recovery's object rewind read a page of versions at a time (issue 9: memory holds a
 * page and one key's versions, not a prefix's): on real MinIO with versioning on, a bucket whose
 * keys have histories of every shape — changed, deleted and recreated before and after T, created
 * after T, one key with more versions than a page — listed three versions per page so that keys
 * straddle page boundaries, comes back exactly as at T under the backed-up prefixes, with every
 * version kept and nothing outside the prefixes touched; a dry run changes nothing and a second
 * run changes nothing more. The bucket is then emptied and removed the same way, page by page.
 * Activity called directly.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { createObjectRewindActivities } from '../src/activities/objectRewind';
import { removeBucket } from '../src/infra/s3';
import { minioClient, testStack } from './harness/kohakku';

const BUCKET = `rewind-pages-${process.pid}`;
const s3 = minioClient(testStack());
// Keys whose UTF-8 and UTF-16 orders differ, and a space (listing markers must survive both).
const key = (i: number) =>
  `briefs/${String(i).padStart(2, '0')}${['', ' draft', '-\uFFFD', '-😀'][i % 4]}.md`;
const put = (name: string, body: string) => s3.putObject(BUCKET, name, Buffer.from(body));

/** What each key under the prefixes holds now (absent when its current version is a delete marker). */
async function current(prefix: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const o of s3.listObjectsV2(BUCKET, prefix, true)) {
    const name = (o as { name: string }).name;
    const chunks: Buffer[] = [];
    for await (const c of await s3.getObject(BUCKET, name)) chunks.push(c as Buffer);
    out.set(name, Buffer.concat(chunks).toString());
  }
  return out;
}

async function versionCount(): Promise<number> {
  let n = 0;
  for await (const v of s3.listObjects(BUCKET, '', true, { IncludeVersion: true }))
    if ((v as { name?: string }).name) n++;
  return n;
}

afterAll(async () => {
  await removeBucket(s3, BUCKET); // when the test failed before removing it
});

test('a bucket rewound to T a listing page at a time: keys across page boundaries as at T, every version kept, idempotent', async () => {
  await s3.makeBucket(BUCKET);
  await s3.setBucketVersioning(BUCKET, { Status: 'Enabled' });
  const atT = new Map<string, string>();
  // Before T: keys 0–29 written; 0–9 written again; key 0 five more times (more versions than a
  // page); 20–24 deleted.
  for (let i = 0; i < 30; i++) await put(key(i), `v1 of ${i}`);
  for (let i = 0; i < 10; i++) await put(key(i), `v1b of ${i}`);
  for (let n = 0; n < 5; n++) await put(key(0), `v1c${n} of 0`);
  for (let i = 20; i < 25; i++) await s3.removeObject(BUCKET, key(i));
  await put('skills/kept.txt', 'skill at T');
  for (const [name, body] of await current('briefs/')) atT.set(name, body);
  atT.set('skills/kept.txt', 'skill at T');
  await sleep(1100);
  const T = new Date().toISOString();
  await sleep(1100);
  // After T: 0–14 changed, 25–29 deleted, 20–22 recreated, 30–39 created, and outside the
  // prefixes a key created (it stays).
  for (let i = 0; i < 15; i++) await put(key(i), `v2 of ${i}`);
  for (let i = 25; i < 30; i++) await s3.removeObject(BUCKET, key(i));
  for (let i = 20; i < 23; i++) await put(key(i), `recreated ${i}`);
  for (let i = 30; i < 40; i++) await put(key(i), `new ${i}`);
  await put('other/after-T.txt', 'not backed up');
  const before = { briefs: await current('briefs/'), versions: await versionCount() };

  const { rewindObjects } = createObjectRewindActivities({
    config: { kohakkuBucket: BUCKET, backupPrefixes: ['briefs/', 'skills/'] },
    s3,
    versionsPerPage: 3,
  });
  const expected = { versioned: true, keys: 41, rewound: 20, hidden: 13, unchanged: 8 };

  const dry = await rewindObjects({ at: T, dryRun: true });
  expect(dry).toMatchObject(expected);
  expect(await current('briefs/')).toEqual(before.briefs);
  expect(await versionCount()).toBe(before.versions);

  expect(await rewindObjects({ at: T })).toMatchObject(expected);
  const after = new Map([...(await current('briefs/')), ...(await current('skills/'))]);
  expect(after).toEqual(atT);
  expect(await current('other/')).toEqual(new Map([['other/after-T.txt', 'not backed up']]));
  // Every version kept: 20 copies and 13 delete markers added, nothing removed.
  expect(await versionCount()).toBe(before.versions + 20 + 13);

  expect(await rewindObjects({ at: T })).toMatchObject({ keys: 41, rewound: 0, hidden: 0, unchanged: 41 });

  // Emptied and removed the same way, a page at a time (the current objects counted).
  const live = (await current('')).size;
  expect(await removeBucket(s3, BUCKET, { versionsPerPage: 3 })).toBe(live);
  expect(await s3.bucketExists(BUCKET)).toBe(false);
});
