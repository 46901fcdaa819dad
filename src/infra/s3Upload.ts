/**
 * Uploads to S3 with memory that does not grow with the object: minio-js's own `putObject` reads
 * an object up to its part size (64 MiB) into one Buffer, and above it pipes the source into a
 * block stream that buffers up to 16 parts ahead of the upload (1 GiB when the disk outruns the
 * network, as it does for a multi-GB dump). Here an object up to UPLOAD_PART_BYTES goes in one
 * PUT from one Buffer, a bigger one in parts read one at a time, each uploaded before the next is
 * read, and a failed multipart upload is aborted. Callers bound how many run at once.
 */
import type { Readable } from 'node:stream';
import type * as Minio from 'minio';

/** The part size (16 MiB), or larger when an object would need more than S3's 10,000 parts. */
export const UPLOAD_PART_BYTES = 16 * 1024 * 1024;

export function partSizeFor(size: number): number {
  return Math.max(UPLOAD_PART_BYTES, Math.ceil(size / 10_000));
}

/** The bytes of memory an upload of `size` bytes holds at most (what transfer budgets reserve). */
export function uploadMemory(size: number): number {
  return Math.min(size, partSizeFor(size));
}

/** Reads `source` in buffers of exactly `size` bytes (the last one shorter). */
async function* inParts(source: Readable, size: number): AsyncGenerator<Buffer> {
  let part = Buffer.allocUnsafe(size);
  let filled = 0;
  for await (const chunk of source as AsyncIterable<Buffer>) {
    let offset = 0;
    while (offset < chunk.length) {
      const n = Math.min(size - filled, chunk.length - offset);
      chunk.copy(part, filled, offset, offset + n);
      filled += n;
      offset += n;
      if (filled === size) {
        yield part;
        part = Buffer.allocUnsafe(size);
        filled = 0;
      }
    }
  }
  if (filled > 0) yield part.subarray(0, filled);
}

/**
 * Streams `size` bytes from `source` into `bucket/key` (user metadata as given, without the
 * `x-amz-meta-` prefix). Returns the new object's ETag.
 */
export async function uploadBounded(
  client: Minio.Client,
  target: { bucket: string; key: string; size: number; metadata?: Record<string, string> },
  source: Readable,
): Promise<{ etag: string }> {
  const partSize = partSizeFor(target.size);
  if (target.size <= partSize) {
    const chunks: Buffer[] = [];
    for await (const chunk of source as AsyncIterable<Buffer>) chunks.push(chunk);
    const body = Buffer.concat(chunks);
    const { etag } = await client.putObject(
      target.bucket,
      target.key,
      body,
      body.length,
      target.metadata ?? {},
    );
    return { etag: etag.replace(/"/g, '') };
  }
  const headers: Record<string, string> = { 'Content-Type': 'application/octet-stream' };
  for (const [name, value] of Object.entries(target.metadata ?? {})) headers[`x-amz-meta-${name}`] = value;
  const uploadId = await client.initiateNewMultipartUpload(target.bucket, target.key, headers);
  try {
    const etags: { part: number; etag: string }[] = [];
    let partNumber = 0;
    for await (const part of inParts(source, partSize)) {
      partNumber++;
      const { etag } = await client.uploadPart(
        { bucketName: target.bucket, objectName: target.key, uploadID: uploadId, partNumber, headers: {} },
        part,
      );
      etags.push({ part: partNumber, etag });
    }
    const { etag } = await client.completeMultipartUpload(target.bucket, target.key, uploadId, etags);
    return { etag: etag.replace(/"/g, '') };
  } catch (err) {
    await client.abortMultipartUpload(target.bucket, target.key, uploadId).catch(() => undefined);
    throw err;
  }
}
