/**
 * The mirror's downloads (infra/s3Reads.ts: undici + aws4 rather than minio-js) on the two real
 * S3 servers of the test stack — MinIO over HTTP and VersityGW over TLS with the stack's private
 * CA: bytes, ETag and size as the server has them, keys that need escaping, a missing key as
 * NoSuchKey (what the mirror passes over), and wrong credentials as a typed error naming the
 * endpoint and the object, never the secret.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { S3Connection } from '../src/config';
import { isNotFound } from '../src/infra/backupStore';
import { s3Client } from '../src/infra/s3';
import { objectReader, S3ReadError } from '../src/infra/s3Reads';
import { backupS3Connection, testStack } from './harness/kohakku';

const stack = testStack();
const minio: S3Connection = {
  endPoint: '127.0.0.1',
  port: stack.minio.port,
  useSSL: false,
  accessKey: stack.minio.accessKey,
  secretKey: stack.minio.secretKey,
  region: 'us-east-1',
  url: `http://127.0.0.1:${stack.minio.port}`,
};
const versity = backupS3Connection(stack);
const BUCKET = `reads-${process.pid}`;
const KEYS = ['plain.bin', 'dir/with space & plus+.bin', 'ünïcode/😀 (1).bin', 'empty.bin'];

describe.each([
  ['MinIO over HTTP', minio],
  ['VersityGW over TLS (private CA)', versity],
])('%s', (_name, connection) => {
  const s3 = s3Client(connection);
  const reader = objectReader(connection);
  const bodies = new Map(
    KEYS.map((k, i) => [k, k === 'empty.bin' ? Buffer.alloc(0) : randomBytes(1000 + i * 70_000)]),
  );

  beforeAll(async () => {
    await s3.makeBucket(BUCKET, 'us-east-1');
    for (const [key, body] of bodies) await s3.putObject(BUCKET, key, body, body.length);
  });
  afterAll(async () => {
    await reader.close();
    for (const key of KEYS) await s3.removeObject(BUCKET, key);
    await s3.removeBucket(BUCKET);
  });

  test('each object with its bytes, ETag and size as the server lists them', async () => {
    for (const [key, body] of bodies) {
      const download = await reader.get(BUCKET, key);
      const hash = createHash('sha256');
      let size = 0;
      for await (const chunk of download.body) {
        hash.update(chunk as Buffer);
        size += (chunk as Buffer).length;
      }
      const stat = await s3.statObject(BUCKET, key);
      expect({
        key,
        sha256: hash.digest('hex'),
        size,
        etag: download.etag,
        announced: download.size,
      }).toEqual({
        key,
        sha256: createHash('sha256').update(body).digest('hex'),
        size: body.length,
        etag: stat.etag,
        announced: body.length,
      });
    }
  });

  test('a missing key is NoSuchKey, as minio-js says it', async () => {
    const err = await reader.get(BUCKET, 'gone/not here.bin').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(S3ReadError);
    expect(isNotFound(err)).toBe(true);
    expect((err as S3ReadError).statusCode).toBe(404);
    expect((err as Error).message).toContain(`${connection.url}/${BUCKET}/gone/not here.bin`);
  });

  test('a wrong secret: the endpoint, the object and the S3 code named, the secret not', async () => {
    const wrong = objectReader({ ...connection, secretKey: 'not-the-secret-0123456789' });
    try {
      const err = await wrong.get(BUCKET, 'plain.bin').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(S3ReadError);
      expect((err as S3ReadError).statusCode).toBe(403);
      expect((err as S3ReadError).code).toMatch(/SignatureDoesNotMatch|AccessDenied|InvalidAccessKeyId/);
      expect((err as Error).message).toContain(`GET ${connection.url}/${BUCKET}/plain.bin: 403`);
      expect((err as Error).message).not.toContain('not-the-secret');
      expect(isNotFound(err)).toBe(false);
    } finally {
      await wrong.close();
    }
  });
});

test('an unreachable server: the endpoint and the cause named within seconds', async () => {
  const reader = objectReader({ ...minio, port: 1, url: 'http://127.0.0.1:1' });
  try {
    const started = Date.now();
    const err = await reader.get(BUCKET, 'plain.bin').catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/^GET http:\/\/127\.0\.0\.1:1\/.*ECONNREFUSED/);
    expect(Date.now() - started).toBeLessThan(10_000);
  } finally {
    await reader.close();
  }
});
