/**
 * S3 clients and the few bucket operations shared by the activities, the stack and the drill,
 * and hashing an object's bytes while they stream past (an ETag is not a content hash: a
 * multipart upload's depends on its part sizes). Plain S3 APIs only (any S3 server), through the
 * minio client library.
 */
import { createHash, type Hash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as https from 'node:https';
import type { IncomingMessage } from 'node:http';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import * as Minio from 'minio';
import type { S3Connection } from '../config';
import { uploadBounded } from './s3Upload';

/** A client for one S3 server: Kohakku's (`config.s3`), the backup store's or the replica's. */
export function s3Client(connection: S3Connection): Minio.Client {
  const { endPoint, port, useSSL, accessKey, secretKey, region, caFile } = connection;
  return new Minio.Client({
    endPoint,
    port,
    useSSL,
    accessKey,
    secretKey,
    region,
    // A private CA (e.g. the embedded stack's): trusted for this client only.
    ...(useSSL && caFile
      ? { transportAgent: new https.Agent({ ca: readFileSync(caFile), keepAlive: true }) }
      : {}),
  });
}

/** S3's key order: by the keys' UTF-8 bytes. */
export function s3KeyOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** One version of an object, or a delete marker, as a version listing gives it. */
export interface ObjectVersion {
  name: string;
  versionId: string;
  lastModified: Date;
  etag: string;
  isLatest: boolean;
  isDeleteMarker: boolean;
}

/**
 * A value escaped as SigV4's canonical request has it (RFC 3986: only A–Z a–z 0–9 - _ . ~ left):
 * query values here, each segment of a key's path in s3Reads.ts.
 */
export function sigV4Escape(value: string): string {
  return encodeURIComponent(value).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

/**
 * Every version and delete marker under `prefix`, a listing page at a time. A page covers a range
 * of keys in key order, but gives its versions and its delete markers apart; `lastKey` is where
 * a truncated page ends — that key's versions may go on in the next page. Paged by markers
 * escaped as SigV4 wants: minio-js's own listObjects sends the server's URL-encoded
 * NextKeyMarker unescaped, and past the first page a key with a space or a slash fails its
 * signature.
 */
export async function* versionPages(
  s3: Minio.Client,
  bucket: string,
  prefix: string,
  pageSize = 1000,
): AsyncGenerator<{ versions: ObjectVersion[]; lastKey?: string }> {
  let keyMarker = '';
  let versionIdMarker = '';
  for (;;) {
    const page = await s3.listObjectsQuery(bucket, prefix, '', {
      Delimiter: '',
      MaxKeys: pageSize,
      IncludeVersion: true,
      keyMarker,
      versionIdMarker,
    });
    const versions = (page.objects as unknown as ObjectVersion[]).filter((v) => v.name);
    if (!page.isTruncated) {
      yield { versions };
      return;
    }
    // The page ends at its greatest key (S3's NextKeyMarker, here decoded).
    const lastKey = versions.map((v) => v.name).reduce((a, b) => (s3KeyOrder(a, b) >= 0 ? a : b), '');
    if (!lastKey || !page.versionIdMarker)
      throw new Error(`s3://${bucket}/${prefix}: a truncated version listing without its next markers`);
    yield { versions, lastKey };
    keyMarker = sigV4Escape(lastKey);
    versionIdMarker = sigV4Escape(page.versionIdMarker);
  }
}

/** Empties a bucket (every version, when versioned) and removes it; returns how many objects it held, undefined when there was none. */
export async function removeBucket(
  s3: Minio.Client,
  name: string,
  options: { versionsPerPage?: number } = {},
): Promise<number | undefined> {
  if (!(await s3.bucketExists(name))) return undefined;
  // A versioned bucket is empty only once every version and delete marker is gone.
  const versioning = await s3.getBucketVersioning(name).catch(() => undefined);
  if (versioning?.Status === 'Enabled' || versioning?.Status === 'Suspended') {
    let current = 0;
    // The page's last key is removed after the next page is listed: its last version is where
    // that listing starts from (and a newer version removed first would make an older one latest).
    let pending: ObjectVersion[] = [];
    for await (const { versions, lastKey } of versionPages(s3, name, '', options.versionsPerPage)) {
      current += versions.filter((v) => v.isLatest && !v.isDeleteMarker).length;
      const now = [...pending, ...versions.filter((v) => v.name !== lastKey)];
      pending = versions.filter((v) => v.name === lastKey);
      for (let i = 0; i < now.length; i += 1000)
        await s3.removeObjects(
          name,
          now.slice(i, i + 1000).map(({ name, versionId }) => ({ name, versionId })),
        );
    }
    await s3.removeBucket(name);
    return current;
  }
  // A page of keys at a time (removing keys already listed does not disturb the listing after them).
  let removed = 0;
  let page: string[] = [];
  for await (const o of s3.listObjectsV2(name, '', true)) {
    page.push((o as { name: string }).name);
    if (page.length === 1000) {
      await s3.removeObjects(name, page);
      removed += page.length;
      page = [];
    }
  }
  if (page.length > 0) await s3.removeObjects(name, page);
  await s3.removeBucket(name);
  return removed + page.length;
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

/**
 * User metadata kohakku-dr sets on every object it restores (`x-amz-meta-kohakku-dr-sha256`): the
 * content's sha256, so a later comparison needs a HEAD, not a download, whatever its ETag.
 */
export const SHA256_METADATA = 'kohakku-dr-sha256';

export interface ContentDigest {
  bytes: number;
  sha256: string;
  /** md5 of the content: what a single-part upload's ETag is (unless not asked for). */
  md5?: string;
}

/** A pass-through stream that counts and hashes what flows through it (sha256; md5 unless told not to). */
export class DigestingStream extends Transform {
  private readonly sha = createHash('sha256');
  private readonly md5Hash?: Hash;
  private bytes = 0;
  private result?: ContentDigest;

  constructor(options: { md5?: boolean } = {}) {
    super();
    if (options.md5 !== false) this.md5Hash = createHash('md5');
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    this.sha.update(chunk);
    this.md5Hash?.update(chunk);
    done(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    this.result = { bytes: this.bytes, sha256: this.sha.digest('hex'), md5: this.md5Hash?.digest('hex') };
    done();
  }

  /** The digest of everything that went through; only once the stream has ended. */
  digest(): ContentDigest {
    if (!this.result) throw new Error('the stream was not read to its end');
    return this.result;
  }
}

/** `source` seen through a DigestingStream; an error of the source fails the digesting stream. */
export function digesting(source: Readable, options: { md5?: boolean } = {}): DigestingStream {
  const digest = new DigestingStream(options);
  source.on('error', (err) => digest.destroy(err));
  source.pipe(digest);
  return digest;
}

/**
 * Resolves when `work` does, rejects as soon as `stream` fails. minio-js does not hear of an error
 * of the stream it uploads from in a multipart upload and would wait forever.
 */
export function unlessStreamFails<T>(stream: Readable, work: Promise<T>): Promise<T> {
  work.catch(() => undefined); // settled later or never: its failure is reported through `stream`
  return new Promise<T>((resolve, reject) => {
    stream.once('error', reject);
    work.then(resolve, reject);
  });
}

/**
 * Streams `source` into `bucket/key` (`size` bytes expected) and hashes it on the way.
 * Returns the new object's ETag with the digest of what was actually sent.
 */
export async function putHashed(
  s3: Minio.Client,
  target: { bucket: string; key: string; size: number; metadata?: Record<string, string> },
  source: Readable,
  options: { md5?: boolean } = {},
): Promise<ContentDigest & { etag: string }> {
  const digest = digesting(source, options);
  if (target.size === 0) {
    // minio-js sends an empty object without reading the stream: read it here (it should be empty).
    const chunks: Buffer[] = [];
    for await (const chunk of digest) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const { etag } = await s3.putObject(target.bucket, target.key, body, body.length, target.metadata ?? {});
    return { ...digest.digest(), etag: etag.replace(/"/g, '') };
  }
  const { etag } = await unlessStreamFails(digest, uploadBounded(s3, target, digest));
  return { ...digest.digest(), etag };
}

/** The ETag an object download came with (undefined when the server sent none). */
export function responseETag(stream: Readable): string | undefined {
  const etag = (stream as Partial<IncomingMessage>).headers?.etag;
  return typeof etag === 'string' ? etag.replace(/"/g, '') : undefined;
}

/** The size an object download announced (Content-Length), when it did. */
export function responseSize(stream: Readable): number | undefined {
  const length = (stream as Partial<IncomingMessage>).headers?.['content-length'];
  return typeof length === 'string' && /^\d+$/.test(length) ? Number(length) : undefined;
}

/** Downloads an object and hashes it: its content's identity, whatever its ETag. */
export async function hashObject(s3: Minio.Client, bucket: string, key: string): Promise<ContentDigest> {
  return hashStream(await s3.getObject(bucket, key));
}

/** Reads a stream to its end and hashes it (a backup store's file read back, say). */
export async function hashStream(source: Readable): Promise<ContentDigest> {
  const digest = digesting(source);
  digest.resume();
  await new Promise<void>((resolve, reject) => {
    digest.once('end', resolve);
    digest.once('error', reject);
  });
  return digest.digest();
}

/** The sha256 kohakku-dr recorded on an object when it restored it (a HEAD), if any. */
export async function recordedSha256(
  s3: Minio.Client,
  bucket: string,
  key: string,
): Promise<string | undefined> {
  const stat = await s3.statObject(bucket, key);
  const value = (stat.metaData as Record<string, unknown> | undefined)?.[SHA256_METADATA];
  return typeof value === 'string' && /^[0-9a-f]{64}$/.test(value) ? value : undefined;
}
