/**
 * What the object mirror (objectStore.ts) and the object restore (objectRestore.ts) share: S3's
 * key order, a bucket listed in that order as a stream, an index read in that order, and the
 * join of the two — so a plan, a restore or a verification walks a backup's index beside the
 * live bucket a page at a time, and holds neither whole, however many objects there are.
 */
import type * as Minio from 'minio';
import type { Config } from '../config';
import type { ObjectIndexEntry } from '../domain/manifests';
import { ErrorType, fail } from '../domain/errors';
import type { BackupStore } from '../infra/backupStore';
import type { MemoryBudget } from '../infra/adaptive';
import type { ObjectReader } from '../infra/s3Reads';
import { openJsonArray } from '../infra/jsonArrays';
import { mapLimit, s3KeyOrder, type ContentDigest } from '../infra/s3';

export interface ObjectStoreDeps {
  config: Config;
  store: BackupStore;
  s3: Minio.Client;
  /** Downloads from Kohakku's object store for the mirror (one of its own, on config.s3, when not given). */
  objectReader?: ObjectReader;
  /** The worker's transfer memory, shared with its other transfers (one of its own when not given). */
  transferMemory?: MemoryBudget;
}

export { s3KeyOrder };

/** What a bucket listing says of an object. */
export interface LiveObject {
  size: number;
  etag: string;
}

export type ListedObject = { key: string } & LiveObject;

/** How a live object stands against an index entry. */
export type Comparison =
  { state: 'absent' } | { state: 'same'; etag: string } | { state: 'differs'; live: LiveObject };

/** Transfers at once a mirror or restore starts with, before it adapts (src/infra/adaptive.ts). */
export const INITIAL_TRANSFERS = 8;

export const unquote = (etag: string | undefined) => (etag ?? '').replace(/"/g, '');

export function isNotFound(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === 'NotFound' || code === 'NoSuchKey';
}

/** Whether bytes that went through `digest` are the content an index entry describes. */
export function contentProblem(e: ObjectIndexEntry, digest: ContentDigest): string | undefined {
  if (digest.bytes !== e.size) return `${digest.bytes} bytes, the index says ${e.size}`;
  if (e.sha256)
    return digest.sha256 === e.sha256 ? undefined : `sha256 ${digest.sha256}, the index says ${e.sha256}`;
  // A 0.1 entry has no sha256: a single-part ETag is the content's md5; a multipart one proves nothing.
  if (!e.etag.includes('-') && digest.md5 !== e.etag)
    return `md5 ${digest.md5}, the index's ETag is ${e.etag}`;
  return undefined;
}

/**
 * Prefixes to list one after another so that the listings, concatenated, are in S3's key order:
 * sorted, and without a prefix another one already covers (`briefs/` covers `briefs/2026/`).
 */
export function listingPrefixes(prefixes: readonly string[]): string[] {
  const sorted = [...new Set(prefixes)].sort(s3KeyOrder);
  return sorted.filter((p) => !sorted.some((q) => q !== p && p.startsWith(q)));
}

/**
 * `items` passed on as they come, checked to be in S3's key order: a key before the previous one
 * (or the same key again, unless `repeats`) fails with the error `outOfOrder` makes.
 */
export async function* inKeyOrder<T>(
  items: AsyncIterable<T>,
  options: {
    keyOf: (item: T) => string;
    repeats?: boolean;
    outOfOrder: (key: string, previous: string) => Error;
  },
): AsyncGenerator<T> {
  let previous: string | undefined;
  for await (const item of items) {
    const key = options.keyOf(item);
    if (previous !== undefined) {
      const order = s3KeyOrder(previous, key);
      if (order > 0 || (order === 0 && !options.repeats)) throw options.outOfOrder(key, previous);
    }
    previous = key;
    yield item;
  }
}

/**
 * The bucket's objects under `prefixes`, streamed in S3's key order (nothing when the bucket does
 * not exist). Listings come a page at a time: memory does not grow with the bucket.
 */
export async function* bucketInKeyOrder(
  s3: Minio.Client,
  bucket: string,
  prefixes: readonly string[],
): AsyncGenerator<ListedObject> {
  if (!(await s3.bucketExists(bucket))) return;
  async function* listed(): AsyncGenerator<ListedObject> {
    for (const prefix of listingPrefixes(prefixes)) {
      for await (const item of s3.listObjectsV2(bucket, prefix, true)) {
        const o = item as { name?: string; size?: number; etag?: string };
        if (o.name) yield { key: o.name, size: o.size ?? 0, etag: unquote(o.etag) };
      }
    }
  }
  yield* inKeyOrder(listed(), {
    keyOf: (o) => o.key,
    outOfOrder: (key, previous) =>
      fail(
        ErrorType.ToolUnavailable,
        `the S3 server lists bucket ${bucket} out of key order (${key} after ${previous}): ` +
          'kohakku-dr needs a server that lists keys in UTF-8 byte order, as S3 does',
      ),
  });
}

/**
 * A backup's object index, streamed in S3's key order; undefined when there is none. An index
 * kohakku-dr writes one entry per line (0.3.3 on) is in key order, and an entry out of order is
 * BackupCorrupt; one from before is parsed whole anyway, and sorted.
 */
export async function indexInKeyOrder(
  store: Pick<BackupStore, 'getStream'>,
  indexKey: string,
): Promise<AsyncIterable<ObjectIndexEntry> | undefined> {
  const entries = await openJsonArray<ObjectIndexEntry>(store, indexKey, {
    sortLegacy: (a, b) => s3KeyOrder(a.key, b.key),
  });
  if (!entries) return undefined;
  return inKeyOrder(entries, {
    keyOf: (e) => e.key,
    outOfOrder: (key, previous) =>
      fail(
        ErrorType.BackupCorrupt,
        `${indexKey}: ${key} comes after ${previous}; an index lists each key once, in key order`,
      ),
  });
}

/**
 * Each item of `items` with the item of `others` that has its key (undefined when none), both
 * streams in S3's key order: a merge of two sorted streams, holding one item of each at a time.
 * Items of `others` that no item names are passed over.
 */
export async function* matchInKeyOrder<T, U>(
  items: AsyncIterable<T>,
  others: AsyncIterable<U>,
  keys: { of: (item: T) => string; ofOther: (other: U) => string },
): AsyncGenerator<{ item: T; match: U | undefined }> {
  const rest = others[Symbol.asyncIterator]();
  let next = await rest.next();
  try {
    for await (const item of items) {
      const key = keys.of(item);
      while (!next.done && s3KeyOrder(keys.ofOther(next.value), key) < 0) next = await rest.next();
      if (!next.done && keys.ofOther(next.value) === key) {
        yield { item, match: next.value };
        next = await rest.next();
      } else yield { item, match: undefined };
    }
  } finally {
    await rest.return?.();
  }
}

/**
 * Each entry of `index` with the live object of the same key (undefined when the bucket has
 * none), in key order. Live objects no entry names are passed over (a restore leaves them alone).
 */
export async function* joinWithBucket(
  index: AsyncIterable<ObjectIndexEntry>,
  live: AsyncIterable<ListedObject>,
): AsyncGenerator<{ entry: ObjectIndexEntry; live: LiveObject | undefined }> {
  for await (const { item, match } of matchInKeyOrder(index, live, {
    of: (e) => e.key,
    ofOther: (o) => o.key,
  }))
    yield { entry: item, live: match && { size: match.size, etag: match.etag } };
}

/**
 * `fn` over every item of `items`, at most `concurrency` at once, in batches of `batch`: the
 * results are handed to `each` in the items' order. Holds one batch at a time.
 */
export async function forEachInOrder<T, R>(
  items: AsyncIterable<T>,
  options: { concurrency: number; batch?: number },
  fn: (item: T) => Promise<R>,
  each: (item: T, result: R) => void | Promise<void>,
): Promise<void> {
  const size = options.batch ?? 1000;
  let batch: T[] = [];
  const flush = async () => {
    const items = batch;
    batch = [];
    const results = await mapLimit(items, options.concurrency, fn);
    for (let i = 0; i < items.length; i++) await each(items[i]!, results[i]!);
  };
  for await (const item of items) {
    batch.push(item);
    if (batch.length >= size) await flush();
  }
  if (batch.length > 0) await flush();
}
