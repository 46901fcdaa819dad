/**
 * Long-running local processes (servers of the embedded stack, reference Kohakku services):
 * started detached in their own process group with an argument array (no shell), logs to a
 * file, tracked by pid so any process can stop them — the test teardown, a signal handler,
 * or the next run reaping what a killed run left behind.
 */
import { spawn } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';

/**
 * How the worker is started where this package starts one (the drill, the tests): through
 * scripts/worker, as production runs it, with its memory settings; it execs node, so the pid is
 * the worker's. `env` is what to add to the worker's settings (the node running this process).
 */
export function workerCommand(): { file: string; args: string[]; env: Record<string, string> } {
  return {
    file: 'bash',
    args: [path.join(__dirname, '..', '..', 'scripts', 'worker')],
    env: { NODE: process.execPath },
  };
}

export interface Daemon {
  name: string;
  pid: number;
  log: string;
}

export function startDaemon(
  name: string,
  file: string,
  args: string[],
  options: { log: string; env?: NodeJS.ProcessEnv; cwd?: string; uid?: number; gid?: number },
): Daemon {
  const fd = openSync(options.log, 'a');
  try {
    const child = spawn(file, args, {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: { ...process.env, ...options.env },
      cwd: options.cwd,
      uid: options.uid,
      gid: options.gid,
    });
    child.on('error', () => undefined); // surfaced by the readiness check and the log
    child.unref();
    if (!child.pid) throw new Error(`${name}: could not start ${file}`);
    return { name, pid: child.pid, log: options.log };
  } finally {
    closeSync(fd);
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Signals the daemon's whole process group (it was started detached, as its leader). */
export function signalDaemon(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

export async function stopDaemon(
  pid: number,
  graceMs = 5000,
  signal: NodeJS.Signals = 'SIGTERM',
): Promise<void> {
  if (!isAlive(pid)) return;
  signalDaemon(pid, signal);
  const deadline = Date.now() + graceMs;
  while (isAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (isAlive(pid)) signalDaemon(pid, 'SIGKILL');
  while (isAlive(pid)) await new Promise((r) => setTimeout(r, 20));
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Polls `check` until it returns true; the error names what did not come up and its log. */
export async function waitUntil(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs: number,
  log?: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline)
      throw new Error(
        `${what} did not become ready within ${timeoutMs / 1000} s${log ? ` (see ${log})` : ''}`,
      );
    await new Promise((r) => setTimeout(r, 200));
  }
}

export function tcpOpen(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * Processes on this host whose command line contains every one of `parts` (read from /proc):
 * the children a SIGKILLed worker left running, such as a `pgbackrest restore`.
 */
export async function processesMatching(parts: string[]): Promise<number[]> {
  const { readdir, readFile } = await import('node:fs/promises');
  const found: number[] = [];
  for (const entry of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    const args = cmdline.split('\0');
    if (cmdline && parts.every((p) => args.some((a) => a.includes(p)))) found.push(Number(entry));
  }
  return found;
}
