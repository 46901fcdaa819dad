/**
 * Big JSON arrays in the backup store (an object index holds one entry per object: 100,000
 * objects are ~25 MiB of JSON) written and read without the whole document in memory. The file
 * stays one JSON array — any JSON reader, and 0.3's `getJson`, still reads it — laid out one
 * entry per line:
 *
 *     [
 *     {"key":"briefs/a.md",…},
 *     {"key":"briefs/b.md",…}
 *     ]
 *
 * so a reader can take it line by line. A file written before (pretty-printed, one field per
 * line) is recognised by its second line and parsed whole, as it always was.
 */
import { createWriteStream, promises as fs } from 'node:fs';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { ErrorType, fail } from '../domain/errors';
import { isNotFound, type BackupStore } from './backupStore';
import { processFileName } from './files';

/**
 * Writes `items` as a JSON array, one entry per line, into `key`: through a file in `workDir`
 * (so an S3 store gets a known size and uploads it in bounded parts). Returns how many entries.
 */
export async function putJsonArray<T>(
  store: BackupStore,
  target: { key: string; workDir: string },
  items: Iterable<T> | AsyncIterable<T>,
): Promise<number> {
  const file = await processFileName(target.workDir, 'json-array', '.json');
  const out = createWriteStream(file);
  try {
    const closed = once(out, 'close');
    let count = 0;
    const write = async (text: string) => {
      if (!out.write(text)) await once(out, 'drain');
    };
    await write('[');
    for await (const item of items) {
      await write(`${count === 0 ? '\n' : ',\n'}${JSON.stringify(item)}`);
      count++;
    }
    await write('\n]\n');
    out.end();
    await closed;
    await store.putFile(target.key, file);
    return count;
  } catch (err) {
    out.destroy(); // the items failed (or the store): the file is not kept open
    throw err;
  } finally {
    await fs.rm(file, { force: true });
  }
}

function parse<T>(key: string, text: string, line?: number): T {
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw fail(
      ErrorType.BackupCorrupt,
      `${key}${line ? ` line ${line}` : ''} is not valid JSON: ${(err as Error).message}`,
    );
  }
}

/** One entry-per-line array's lines: `[`, then `{…},` lines, then `]`. */
function entryOfLine(line: string): string | undefined {
  const text = line.endsWith(',') ? line.slice(0, -1) : line;
  return text.length > 0 ? text : undefined;
}

/**
 * The entries of the JSON array at `key`, in order, read one line at a time (a pretty-printed
 * array from before is parsed whole, then sorted with `sortLegacy` when given: what was written
 * before need not keep the order a reader now relies on) — undefined when there is no such key.
 */
export async function openJsonArray<T>(
  store: Pick<BackupStore, 'getStream'>,
  key: string,
  options: { sortLegacy?: (a: T, b: T) => number } = {},
): Promise<AsyncIterable<T> | undefined> {
  let stream;
  try {
    stream = await store.getStream(key);
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
  return (async function* entries(): AsyncGenerator<T> {
    const lines = createInterface({ input: stream, crlfDelay: Infinity });
    let lineNo = 0;
    let legacy: string[] | undefined;
    let ended = false;
    for await (const line of lines) {
      lineNo++;
      if (ended && line.length > 0)
        throw fail(ErrorType.BackupCorrupt, `${key} line ${lineNo}: more after the array's closing ]`);
      if (legacy) {
        legacy.push(line);
        continue;
      }
      if (lineNo === 1) {
        if (line === '[') continue;
        // `[]`, or anything else: a document to parse whole.
        legacy = [line];
        continue;
      }
      // The second line tells the layout: a whole entry, or the `{` a pretty-printed one opens.
      if (lineNo === 2 && line.trim() !== line) {
        legacy = ['[', line];
        continue;
      }
      if (line === ']') {
        ended = true;
        continue;
      }
      const text = entryOfLine(line);
      if (text !== undefined) yield parse<T>(key, text, lineNo);
    }
    // A file cut at a line's end would otherwise read as a shorter index.
    if (!legacy && !ended)
      throw fail(ErrorType.BackupCorrupt, `${key} ends before its closing ] (after line ${lineNo})`);
    if (legacy) {
      const parsed = parse<unknown>(key, legacy.join('\n'));
      if (!Array.isArray(parsed)) throw fail(ErrorType.BackupCorrupt, `${key} is not a JSON array`);
      yield* options.sortLegacy ? (parsed as T[]).sort(options.sortLegacy) : (parsed as T[]);
    }
  })();
}

/** Calls `onEntry` for each entry of the JSON array at `key`; false when there is no such key. */
export async function forEachJsonArrayEntry<T>(
  store: Pick<BackupStore, 'getStream'>,
  key: string,
  onEntry: (entry: T) => void | Promise<void>,
): Promise<boolean> {
  const entries = await openJsonArray<T>(store, key);
  if (!entries) return false;
  for await (const entry of entries) await onEntry(entry);
  return true;
}

/**
 * The JSON array at `key` (undefined when there is none), keeping only the entries `keep`
 * accepts — without the document's text and its parse in memory beside the result.
 */
export async function readJsonArray<T>(
  store: Pick<BackupStore, 'getStream'>,
  key: string,
  keep: (entry: T) => boolean = () => true,
): Promise<T[] | undefined> {
  const out: T[] = [];
  const found = await forEachJsonArrayEntry<T>(store, key, (e) => {
    if (keep(e)) out.push(e);
  });
  return found ? out : undefined;
}
