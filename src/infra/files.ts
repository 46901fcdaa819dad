/**
 * Small filesystem questions the activities ask (whether a path is there, whether a download
 * fits), answered one way, and the names of a process's own work files, so a killed worker's are
 * not left behind for ever.
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ErrorType, fail } from '../domain/errors';
import { isAlive } from './processes';

/** Whether `p` exists (any kind of entry); false on any error reaching it. */
export function pathExists(p: string): Promise<boolean> {
  return fs.stat(p).then(
    () => true,
    () => false,
  );
}

let fileSeq = 0;

/**
 * A new file name of this process in `dir` (created if missing): `${prefix}-${host}-${pid}-${n}${ext}`.
 * A worker that is killed leaves such files behind (a spool, an index being written), and its
 * retry runs in another process; so first the files with this prefix made on this host by a
 * process no longer running are removed. A live sibling worker's stay, and so do other hosts'
 * (workers in two containers sharing a work volume have their own pids, and their own host names).
 */
export async function processFileName(dir: string, prefix: string, ext: string): Promise<string> {
  await fs.mkdir(dir, { recursive: true });
  const host = os.hostname().replace(/[^A-Za-z0-9.]/g, '_');
  const ours = `${prefix}-${host}-`;
  for (const name of await fs.readdir(dir)) {
    const pid = name.startsWith(ours) ? Number(/^(\d+)-\d+/.exec(name.slice(ours.length))?.[1]) : 0;
    if (pid && pid !== process.pid && !isAlive(pid)) await fs.rm(path.join(dir, name), { force: true });
  }
  return path.join(dir, `${prefix}-${host}-${process.pid}-${fileSeq++}${ext}`);
}

/** Bytes free for this process under `dir` (the nearest existing ancestor), or undefined when the system cannot tell. */
export async function freeBytes(dir: string): Promise<number | undefined> {
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    const st = await fs.statfs(d).catch(() => undefined);
    if (st) return st.bavail * st.bsize;
    if (path.dirname(d) === d) return undefined;
  }
}

/**
 * Refuses at once (NoSpace, naming the directory, the need and what is free) to download
 * `bytes` into `dir` when they cannot fit — instead of filling the disk and failing halfway.
 */
export async function ensureRoomFor(dir: string, bytes: number, what: string): Promise<void> {
  const free = await freeBytes(dir);
  if (free !== undefined && free < bytes) throw noSpace(dir, `${what} needs ${bytes} B, ${free} B are free`);
}

/** An error that is the disk being full (ENOSPC, EDQUOT) as a NoSpace failure naming `dir`; anything else unchanged. */
export function asNoSpace(err: unknown, dir: string, what: string): unknown {
  const code = (err as { code?: string } | undefined)?.code;
  if (code !== 'ENOSPC' && code !== 'EDQUOT') return err;
  return noSpace(dir, `${what}: the disk filled up (${code})`);
}

function noSpace(dir: string, detail: string) {
  return fail(
    ErrorType.NoSpace,
    `work directory ${dir} has too little free space: ${detail}. ` +
      'Free space there (or set KOHAKKU_DR_WORK_DIR to a larger disk) and start again.',
  );
}
