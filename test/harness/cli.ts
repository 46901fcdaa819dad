/**
 * The CLI spawned as a user or a script runs it — its own process, stdout, stderr and exit
 * code read — for every test that checks what an operator sees (cli.test.ts, preflight.test.ts).
 */
import { spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import * as path from 'node:path';
import { DIST, testStack } from './kohakku';
import { logFile } from './secrets';

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface CliOptions {
  /** The worker's task queue the CLI starts workflows on. */
  taskQueue: string;
  env?: Record<string, string>;
  /** Sends SIGINT once the output contains this. */
  interruptAfter?: string;
}

/** Runs `kohakku-dr args…` against the suite's Temporal server, with only PATH from this process. */
export function runCli(args: string[], options: CliOptions): Promise<CliRun> {
  const started = Date.now();
  const child = spawn(process.execPath, [path.join(DIST, 'client/cli.js'), ...args], {
    env: {
      PATH: process.env.PATH ?? '',
      TEMPORAL_ADDRESS: `127.0.0.1:${testStack().temporal.port}`,
      TEMPORAL_NAMESPACE: 'default',
      KOHAKKU_DR_TASK_QUEUE: options.taskQueue,
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let interrupted = false;
  const maybeInterrupt = () => {
    if (options.interruptAfter && !interrupted && (stdout + stderr).includes(options.interruptAfter)) {
      interrupted = true;
      child.kill('SIGINT');
    }
  };
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
    maybeInterrupt();
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
    maybeInterrupt();
  });
  // A CLI that hangs fails its test with what it printed, not the file's timeout.
  const hung = setTimeout(() => child.kill('SIGKILL'), 90_000);
  return new Promise((resolve) =>
    child.on('exit', (code) => {
      clearTimeout(hung);
      if (code === null) console.error(`kohakku-dr ${args.join(' ')} hung:\n${stdout}\n${stderr}`);
      // For the secret sweep (harness/secrets.ts).
      appendFileSync(logFile('cli'), `$ kohakku-dr ${args.join(' ')}\n${stdout}\n${stderr}\n`);
      resolve({ code, stdout, stderr, ms: Date.now() - started });
    }),
  );
}

/** A failure is one line of ours, never a Node stack trace. */
export const stackTraceLine = /^\s+at .+:\d+:\d+\)?$/m;
