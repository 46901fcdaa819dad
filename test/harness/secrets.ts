/**
 * What the secret sweep (secretSweep.test.ts, run last) looks for and where: every secret the
 * suite configures — the stack's S3 secret keys, a PostgreSQL password canary every test worker
 * is given (the stack trusts local connections, so it is never needed, only carried), and what
 * tests register (a webhook token, a signing key) — and every worker's and CLI's output, which
 * the harness writes to the stack's logs/ directory as well as keeping it for its test. Also the
 * one reader of the run's stack (testStack), which every harness module needs.
 */
import { appendFileSync, mkdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { readStack, type StackInfo } from '../../src/stack/stack';
import { STACK_DIR_ENV } from './globalSetup';

/** The run's shared stack (globalSetup started it). */
export function testStack(): StackInfo {
  const dir = process.env[STACK_DIR_ENV];
  if (!dir) throw new Error('no test stack: run through jest (globalSetup starts it)');
  return readStack(dir);
}

/** POSTGRES_PASSWORD of every test worker (freshKohakku): carried through config to PGPASSWORD, never needed. */
export const POSTGRES_PASSWORD_CANARY = 'pg-canary-5d41402abc4b2a76';

const registry = () => path.join(testStack().dir, 'secrets-to-find.txt');

/** A secret a test configured, for the sweep to look for in every history and log. */
export function registerSecret(value: string): void {
  appendFileSync(registry(), `${JSON.stringify(value)}\n`);
}

export function configuredSecrets(): string[] {
  const stack = testStack();
  let registered: string[] = [];
  try {
    registered = readFileSync(registry(), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as string);
  } catch {
    // none registered
  }
  return [
    ...new Set([stack.minio.secretKey, stack.backupS3.secretKey, POSTGRES_PASSWORD_CANARY, ...registered]),
  ];
}

export const logsDir = () => path.join(testStack().dir, 'logs');

let logSeq = 0;

/** A new file under the stack's logs/ for one process's output (`worker`, `cli`). */
export function logFile(kind: string): string {
  mkdirSync(logsDir(), { recursive: true });
  return path.join(logsDir(), `${kind}-${process.pid}-${logSeq++}.log`);
}
