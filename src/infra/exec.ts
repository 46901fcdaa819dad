/**
 * The one place external tools are run: execa with argument arrays, never a shell string, and
 * never with the worker's whole environment (it holds the S3 secrets, the database password, the
 * webhook): a child gets the basics every program expects (CHILD_BASE_ENV), what its call passes
 * in `env`, the worker variables its call names in `passEnv`, and — a libpq tool (pg_dump,
 * pg_restore, pg_ctl…) — the PG* variables (PGSSLMODE, PGOPTIONS…).
 * execa 9 is ESM-only and this package is CommonJS (the worker's webpack bundle and jest both
 * want CJS), so execa is loaded with a dynamic import() that tsc's Node16 mode keeps as-is.
 */
import * as path from 'node:path';

/** What every child gets from the worker's environment: where programs are, who and where it is, the locale. */
export const CHILD_BASE_ENV = [
  'PATH',
  'HOME',
  'USER',
  'LOGNAME',
  'LANG',
  'LANGUAGE',
  'LC_ALL',
  'LC_CTYPE',
  'LC_MESSAGES',
  'TZ',
  'TMPDIR',
] as const;

const LIBPQ_TOOLS = /^(pg_[a-z_]+|psql|postgres|initdb)$/;

/**
 * The environment a child runs with: see the file's comment. A `passEnv` entry ending in `*` is a
 * prefix (`DOCKER_*`).
 */
export function childEnv(
  file: string,
  options: Pick<RunOptions, 'env' | 'passEnv' | 'isolatedEnv'>,
  from: NodeJS.ProcessEnv = process.env,
): Record<string, string> {
  const out: Record<string, string> = {};
  const wanted = options.isolatedEnv
    ? []
    : [
        ...CHILD_BASE_ENV,
        ...(options.passEnv ?? []),
        ...(LIBPQ_TOOLS.test(path.basename(file)) ? ['PG*'] : []),
      ];
  for (const name of wanted) {
    const names = name.endsWith('*')
      ? Object.keys(from).filter((n) => n.startsWith(name.slice(0, -1)))
      : [name];
    for (const n of names) if (from[n] !== undefined) out[n] = from[n]!;
  }
  for (const [n, v] of Object.entries(options.env ?? {})) if (v !== undefined) out[n] = v;
  return out;
}

/** A tool installed beside another (redis-check-rdb next to redis-server); by name on PATH when `bin` is. */
export function siblingTool(bin: string, name: string): string {
  return bin.includes('/') ? path.join(path.dirname(bin), name) : name;
}

export interface RunOptions {
  /** Variables the tool needs (set by the call). */
  env?: Record<string, string | undefined>;
  /** Worker variables passed on as they are (a service adapter's DOCKER_HOST, KUBECONFIG…). */
  passEnv?: readonly string[];
  /** How the command is named in an error, instead of its first arguments (which may hold a token). */
  name?: string;
  cwd?: string;
  /** Aborts the child (SIGTERM) when the activity is cancelled. */
  signal?: AbortSignal;
  /** Called with each stderr line as it arrives (pg_restore -v progress, say). */
  onStderrLine?: (line: string) => void;
  /** Called with each stdout line as it arrives (pgbackrest's console log, say). */
  onStdoutLine?: (line: string) => void;
  /**
   * Only `env`, not even CHILD_BASE_ENV: for tools that read settings from it (pgbackrest takes
   * every PGBACKREST_* variable as an option).
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
      env: childEnv(file, options),
      extendEnv: false,
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
        options.name ?? [file, ...args.slice(0, 2)].join(' '),
        result.exitCode,
        // Not execa's message when it printed nothing: that repeats the whole command line.
        stderr || (result.signal ? `killed by ${result.signal}` : 'no error output'),
      );
    }
    return { stdout: String(result.stdout ?? ''), stderr };
  };
}
