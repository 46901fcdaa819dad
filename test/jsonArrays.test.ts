/**
 * The object index's layout (src/infra/jsonArrays.ts), on a real directory backup store: written
 * one entry per line and read back line by line, still one JSON array for any JSON reader
 * (`getJson`), and an index written before (pretty-printed) read as it always was. The S3 store
 * takes the same path through putFile/getStream in objectIdentity.test.ts and the drill.
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { dirBackupStore } from '../src/infra/backupStore';
import { forEachJsonArrayEntry, putJsonArray, readJsonArray } from '../src/infra/jsonArrays';

let dir: string;
beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'json-arrays-'));
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

// Keys that would break a naive line or comma split: newlines, commas, brackets, quotes.
const entries = [
  { key: 'briefs/a.md', size: 1 },
  { key: 'briefs/line\nbreak],\n[', size: 2 },
  { key: 'briefs/"quoted", {braced}', size: 3, sha256: 'ab'.repeat(32) },
  { key: 'briefs/ünïcødé ✓', size: 4 },
];

test('written one entry per line, read back in order; getJson still reads the whole array', async () => {
  const store = dirBackupStore(path.join(dir, 'store'));
  async function* generated() {
    yield* entries;
  }
  const count = await putJsonArray(
    store,
    { key: 'objects/x/index.json', workDir: path.join(dir, 'work') },
    generated(),
  );
  expect(count).toBe(entries.length);
  const text = await fs.readFile(path.join(dir, 'store', 'objects/x/index.json'), 'utf8');
  expect(text.split('\n')).toHaveLength(entries.length + 3); // [, one per entry, ], and the final newline
  expect(await readJsonArray(store, 'objects/x/index.json')).toEqual(entries);
  expect(await store.getJson('objects/x/index.json')).toEqual(entries);
  expect(await readJsonArray<{ size: number }>(store, 'objects/x/index.json', (e) => e.size > 2)).toEqual(
    entries.slice(2),
  );
  // The temporary file is gone.
  expect(await fs.readdir(path.join(dir, 'work'))).toEqual([]);
});

test('an empty array either way; a pretty-printed index from before; no index at all', async () => {
  const store = dirBackupStore(path.join(dir, 'store'));
  await putJsonArray(store, { key: 'new-empty.json', workDir: dir }, []);
  expect(await readJsonArray(store, 'new-empty.json')).toEqual([]);
  expect(await store.getJson('new-empty.json')).toEqual([]);
  await store.putJson('old-empty.json', []);
  expect(await readJsonArray(store, 'old-empty.json')).toEqual([]);
  await store.putJson('old.json', entries); // JSON.stringify(…, null, 2), as 0.3.2 wrote indexes
  const seen: unknown[] = [];
  expect(await forEachJsonArrayEntry(store, 'old.json', (e) => void seen.push(e))).toBe(true);
  expect(seen).toEqual(entries);
  expect(await readJsonArray(store, 'missing.json')).toBeUndefined();
  expect(await forEachJsonArrayEntry(store, 'missing.json', () => undefined)).toBe(false);
});

test('a damaged index is a typed, non-retryable BackupCorrupt naming the key and line', async () => {
  const store = dirBackupStore(path.join(dir, 'store'));
  await fs.mkdir(path.join(dir, 'store'), { recursive: true });
  await fs.writeFile(path.join(dir, 'store', 'cut.json'), '[\n{"key":"a","size":1},\n{"key":"b","si');
  await expect(readJsonArray(store, 'cut.json')).rejects.toMatchObject({
    type: 'BackupCorrupt',
    nonRetryable: true,
    message: expect.stringContaining('cut.json line 3 is not valid JSON'),
  });
  // Cut at a line's end: not a shorter index.
  await fs.writeFile(
    path.join(dir, 'store', 'short.json'),
    '[\n{"key":"a","size":1},\n{"key":"b","size":2},\n',
  );
  await expect(readJsonArray(store, 'short.json')).rejects.toMatchObject({
    type: 'BackupCorrupt',
    message: 'short.json ends before its closing ] (after line 3)',
  });
  await fs.writeFile(path.join(dir, 'store', 'more.json'), '[\n{"key":"a","size":1}\n]\n{"key":"b"}\n');
  await expect(readJsonArray(store, 'more.json')).rejects.toMatchObject({ type: 'BackupCorrupt' });
  await fs.writeFile(path.join(dir, 'store', 'object.json'), '{"not": "an array"}');
  await expect(readJsonArray(store, 'object.json')).rejects.toMatchObject({
    type: 'BackupCorrupt',
    message: 'object.json is not a JSON array',
  });
});
