/**
 * S3 clients and the few bucket operations shared by the activities, the stack and the drill.
 * Plain S3 APIs only (any S3 server), through the minio client library.
 */
import * as Minio from 'minio';
import type { Config } from '../config';

export function s3Client(config: Pick<Config, 's3'>): Minio.Client {
  return new Minio.Client({ ...config.s3 });
}

/** Empties a bucket and removes it; returns how many objects it held, undefined when there was none. */
export async function removeBucket(s3: Minio.Client, name: string): Promise<number | undefined> {
  if (!(await s3.bucketExists(name))) return undefined;
  const keys: string[] = [];
  for await (const o of s3.listObjectsV2(name, '', true)) keys.push((o as { name: string }).name);
  for (let i = 0; i < keys.length; i += 1000) await s3.removeObjects(name, keys.slice(i, i + 1000));
  await s3.removeBucket(name);
  return keys.length;
}

/** Runs `fn` over `items`, at most `limit` at once. */
export async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
