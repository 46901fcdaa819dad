/**
 * The one place external tools are run: execa with argument arrays, never a shell string.
 * execa 9 is ESM-only and this package is CommonJS (the worker's webpack bundle and jest both
 * want CJS), so execa is loaded with a dynamic import() that tsc's Node16 mode keeps as-is.
 */
import * as path from 'node:path';

/** A tool installed beside another (redis-check-rdb next to redis-server); by name on PATH when `bin` is. */
export function siblingTool(bin: string, name: string): string {
  return bin.includes('/') ? path.join(path.dirname(bin), name) : name;
}

export interface RunOptions {
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Aborts the child (SIGTERM) when the activity is cancelled. */
  signal?: AbortSignal;
  /** Called with each stderr line as it arrives (pg_restore -v progress, say). */
  onStderrLine?: (line: string) => void;
  /** Called with each stdout line as it arrives (pgbackrest's console log, say). */
  onStdoutLine?: (line: string) => void;
  /**
   * Only `env` (no inherited environment): for tools that read settings from it (pgbackrest takes
   * every PGBACKREST_* variable as an option) or must not see the worker's secrets.
   */
  isolatedEnv?: boolean;
  /** Run as this user (the worker is root; the data directory's owner must own what is written). */
  uid?: number;
  gid?: number;
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

export type CommandRunner = (
  file: string,
  args: readonly string[],
  options?: RunOptions,
) => Promise<RunResult>;

export class CommandFailed extends Error {
  constructor(
    readonly command: string,
    readonly exitCode: number | undefined,
    readonly stderr: string,
  ) {
    super(
      `${command} failed (exit ${exitCode ?? 'signal'}): ${stderr.trim().split('\n').slice(-3).join(' | ')}`,
    );
    this.name = 'CommandFailed';
  }
}

type ExecaModule = typeof import('execa', { with: { 'resolution-mode': 'import' } });
let execaModule: Promise<ExecaModule> | undefined;

export function createCommandRunner(): CommandRunner {
  execaModule ??= import('execa');
  return async (file, args, options = {}) => {
    const { execa } = await execaModule!;
    const child = execa(file, [...args], {
      env: options.env,
      extendEnv: !options.isolatedEnv,
      cwd: options.cwd,
      ...(options.uid !== undefined ? { uid: options.uid, gid: options.gid } : {}),
      cancelSignal: options.signal,
      reject: false,
      stdin: 'ignore',
      stripFinalNewline: true,
    });
    const byLine = (stream: NodeJS.ReadableStream | null | undefined, onLine?: (line: string) => void) => {
      if (!stream || !onLine) return;
      let pending = '';
      stream.on('data', (chunk: Buffer) => {
        pending += chunk.toString('utf8');
        const lines = pending.split('\n');
        pending = lines.pop() ?? '';
        for (const line of lines) onLine(line);
      });
    };
    byLine(child.stderr, options.onStderrLine);
    byLine(child.stdout, options.onStdoutLine);
    const result = await child;
    const stderr = String(result.stderr ?? '');
    if (result.failed) {
      if (result.isCanceled) throw new Error(`${file} was cancelled`);
      if (result.code === 'ENOENT') throw new CommandFailed(file, undefined, `${file}: not found`);
      throw new CommandFailed(
        [file, ...args.slice(0, 2)].join(' '),
        result.exitCode,
        stderr || String(result.message),
      );
    }
    return { stdout: String(result.stdout ?? ''), stderr };
  };
}
