/**
 * A spool of JSON lines on the worker's disk: what a restore decided for each object, written in
 * one pass and read back in the next, so the plan of a million objects is never in memory whole.
 * Local to one activity attempt (a retry plans again): the file is removed when it is done with,
 * and a killed attempt's by the next spool of the same name (infra/files.ts).
 */
import { createReadStream, createWriteStream, promises as fs } from 'node:fs';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { asNoSpace, processFileName } from './files';

export interface Spool<T> {
  /** Appends one item (waits when the disk is behind). */
  write(item: T): Promise<void>;
  /** Ends writing; then the items can be read. */
  close(): Promise<void>;
  /** The items, in the order they were written. */
  read(): AsyncGenerator<T>;
  /** Removes the file (also when writing failed half-way). */
  remove(): Promise<void>;
}

export async function createSpool<T>(dir: string, name: string): Promise<Spool<T>> {
  const file = await processFileName(dir, name, '.jsonl');
  const out = createWriteStream(file);
  const closed = once(out, 'close');
  closed.catch(() => undefined); // an error is reported by the write or close that meets it
  return {
    async write(item) {
      try {
        if (!out.write(`${JSON.stringify(item)}\n`)) await once(out, 'drain');
      } catch (err) {
        throw asNoSpace(err, dir, `the spool ${name}`); // a full disk is named, not retried
      }
    },
    async close() {
      out.end();
      await closed.catch((err: unknown) => {
        throw asNoSpace(err, dir, `the spool ${name}`);
      });
    },
    async *read() {
      const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
      for await (const line of lines) if (line.length > 0) yield JSON.parse(line) as T;
    },
    async remove() {
      out.destroy();
      await fs.rm(file, { force: true });
    },
  };
}
