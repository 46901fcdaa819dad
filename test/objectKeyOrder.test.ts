/**
 * Logic, on a real directory backup store and with the bucket listing simulated (no S3 here; the
 * same code restores a real bucket in objectIdentity.test.ts and objectStoreLoss.test.ts): a
 * backup's index read in S3's key order (UTF-8 bytes, not JavaScript's UTF-16 order), one written
 * before sorted, one out of order refused as BackupCorrupt; its merge with a listing; the
 * order-keeping batches a restore compares in.
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  forEachInOrder,
  indexInKeyOrder,
  inKeyOrder,
  joinWithBucket,
  listingPrefixes,
  s3KeyOrder,
  type ListedObject,
} from '../src/activities/objectKit';
import type { ObjectIndexEntry } from '../src/domain/manifests';
import { dirBackupStore } from '../src/infra/backupStore';
import { putJsonArray } from '../src/infra/jsonArrays';

let dir: string;
beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'key-order-'));
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

// In UTF-16 (JavaScript's <) the emoji's surrogates sort before U+FFFD; in UTF-8 (S3) after it.
const KEYS = ['briefs/a.md', 'briefs/\uFFFD.md', 'briefs/😀.md', 'skills/b.txt'];
const entry = (key: string, size = 1): ObjectIndexEntry => ({
  key,
  size,
  etag: `etag-${key}`,
  sha256: '0'.repeat(64),
  blob: `objects/blobs/sha256-${'0'.repeat(64)}-${size}`,
});

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

async function* listed(objects: ListedObject[]): AsyncGenerator<ListedObject> {
  yield* objects;
}

test("S3's key order is the keys' UTF-8 bytes, which JavaScript's string order is not", () => {
  expect([...KEYS].sort()).not.toEqual(KEYS);
  expect([...KEYS].sort(s3KeyOrder)).toEqual(KEYS);
  expect(listingPrefixes(['skills/', 'briefs/2026/', 'briefs/', 'skills/'])).toEqual(['briefs/', 'skills/']);
});

test('a stream checked for key order: passed on as it comes; a key before the last one fails, the same key again unless repeats are allowed', async () => {
  const check = (keys: string[], repeats?: boolean) =>
    collect(
      inKeyOrder(listed(keys.map((key) => ({ key, size: 1, etag: 'e' }))), {
        keyOf: (o) => o.key,
        repeats,
        outOfOrder: (key, previous) => new Error(`${key} after ${previous}`),
      }),
    ).then((out) => out.map((o) => o.key));
  expect(await check(KEYS)).toEqual(KEYS);
  await expect(check([KEYS[2]!, KEYS[1]!])).rejects.toThrow(`${KEYS[1]} after ${KEYS[2]}`);
  await expect(check([KEYS[0]!, KEYS[0]!])).rejects.toThrow(`${KEYS[0]} after ${KEYS[0]}`);
  expect(await check([KEYS[0]!, KEYS[0]!, KEYS[3]!], true)).toEqual([KEYS[0], KEYS[0], KEYS[3]]);
});

test('an index in key order streams as it is; one from before is sorted; one out of order is BackupCorrupt', async () => {
  const store = dirBackupStore(path.join(dir, 'store'));
  await putJsonArray(
    store,
    { key: 'now.json', workDir: dir },
    KEYS.map((k) => entry(k)),
  );
  expect((await collect((await indexInKeyOrder(store, 'now.json'))!)).map((e) => e.key)).toEqual(KEYS);

  await store.putJson(
    'before.json',
    [...KEYS].reverse().map((k) => entry(k)),
  ); // pretty-printed, as 0.3.2 wrote
  expect((await collect((await indexInKeyOrder(store, 'before.json'))!)).map((e) => e.key)).toEqual(KEYS);

  // JavaScript's order, one entry per line: not an index kohakku-dr writes.
  await putJsonArray(
    store,
    { key: 'utf16.json', workDir: dir },
    [...KEYS].sort().map((k) => entry(k)),
  );
  await expect(collect((await indexInKeyOrder(store, 'utf16.json'))!)).rejects.toMatchObject({
    type: 'BackupCorrupt',
    nonRetryable: true,
    message: expect.stringContaining('utf16.json: briefs/\uFFFD.md comes after briefs/😀.md'),
  });
  await putJsonArray(store, { key: 'twice.json', workDir: dir }, [entry('a'), entry('a')]);
  await expect(collect((await indexInKeyOrder(store, 'twice.json'))!)).rejects.toMatchObject({
    type: 'BackupCorrupt',
  });
  expect(await indexInKeyOrder(store, 'missing.json')).toBeUndefined();
});

test('the merge pairs each entry with the live object of its key, passing over keys the index does not name', async () => {
  const index = ['briefs/a.md', 'briefs/\uFFFD.md', 'briefs/😀.md', 'skills/gone.txt', 'skills/z.txt'];
  const live: ListedObject[] = [
    { key: 'briefs/a.md', size: 1, etag: 'x' },
    { key: 'briefs/extra.md', size: 9, etag: 'e' },
    { key: 'briefs/😀.md', size: 2, etag: 'y' },
    { key: 'skills/z.txt', size: 3, etag: 'z' },
    { key: 'skills/zz-extra.txt', size: 4, etag: 'w' },
  ];
  async function* entries() {
    yield* index.map((k) => entry(k));
  }
  const pairs = await collect(joinWithBucket(entries(), listed(live)));
  expect(pairs.map((p) => [p.entry.key, p.live])).toEqual([
    ['briefs/a.md', { size: 1, etag: 'x' }],
    ['briefs/\uFFFD.md', undefined],
    ['briefs/😀.md', { size: 2, etag: 'y' }],
    ['skills/gone.txt', undefined],
    ['skills/z.txt', { size: 3, etag: 'z' }],
  ]);
  // An empty bucket: every entry absent.
  const none = await collect(joinWithBucket(entries(), listed([])));
  expect(none.every((p) => p.live === undefined)).toBe(true);
});

test('compared in batches, several at once, handed over in order; one batch in memory at a time', async () => {
  let pulled = 0;
  async function* items() {
    for (let i = 0; i < 2500; i++) {
      pulled++;
      yield i;
    }
  }
  const seen: number[] = [];
  let active = 0;
  let peak = 0;
  let aheadOfConsumer = 0;
  await forEachInOrder(
    items(),
    { concurrency: 8, batch: 100 },
    async (i) => {
      active++;
      peak = Math.max(peak, active);
      await new Promise((r) => setTimeout(r, (i * 7) % 3));
      active--;
      return i * 2;
    },
    (i, doubled) => {
      expect(doubled).toBe(i * 2);
      aheadOfConsumer = Math.max(aheadOfConsumer, pulled - seen.length);
      seen.push(i);
    },
  );
  expect(seen).toEqual(Array.from({ length: 2500 }, (_, i) => i));
  expect(peak).toBe(8);
  expect(aheadOfConsumer).toBeLessThanOrEqual(100);
});
