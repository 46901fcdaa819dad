/** sha256 of files (backup checksums) and short stable tags (names derived from a run's id). */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** The first `length` hex digits of sha256(text): short, stable, safe in any name. */
export function shortTag(text: string, length = 8): string {
  return createHash('sha256').update(text).digest('hex').slice(0, length);
}
