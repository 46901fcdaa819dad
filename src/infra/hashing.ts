/** sha256 of files (backup checksums) and short stable tags (names derived from a run's id). */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';

/** sha256 of a file, streamed; `onBytes` hears how much has been read so far (for heartbeats). */
export async function sha256File(file: string, onBytes?: (bytesRead: number) => void): Promise<string> {
  const hash = createHash('sha256');
  let read = 0;
  for await (const chunk of createReadStream(file)) {
    hash.update(chunk as Buffer);
    read += (chunk as Buffer).length;
    onBytes?.(read);
  }
  return hash.digest('hex');
}

/** The first `length` hex digits of sha256(text): short, stable, safe in any name. */
export function shortTag(text: string, length = 8): string {
  return createHash('sha256').update(text).digest('hex').slice(0, length);
}
