/** Small filesystem questions the activities ask (whether a path is there), answered one way. */
import { promises as fs } from 'node:fs';

/** Whether `p` exists (any kind of entry); false on any error reaching it. */
export function pathExists(p: string): Promise<boolean> {
  return fs.stat(p).then(
    () => true,
    () => false,
  );
}
