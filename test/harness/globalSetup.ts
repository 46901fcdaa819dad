/**
 * Starts the run's stack once, before any test file, and makes sure it goes away afterwards:
 * globalTeardown on a normal end, a signal handler on Ctrl-C/SIGTERM, and the next run's
 * reaper if this process is SIGKILLed.
 */
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import * as path from 'node:path';
import { signalDaemon } from '../../src/infra/processes';
import { extraPids, startStack, type StackInfo } from '../../src/stack/stack';

export const STACK_DIR_ENV = 'KOHAKKU_DR_TEST_STACK';

function killNow(stack: StackInfo): void {
  for (const pid of [
    ...extraPids(stack),
    stack.temporal.pid,
    stack.minio.pid,
    stack.backupS3.pid,
    stack.redis.pid,
  ])
    signalDaemon(pid, 'SIGKILL');
  try {
    execFileSync(
      path.join(stack.tools.pgBinDir, 'pg_ctl'),
      ['stop', '-m', 'immediate', '-D', stack.postgres.dataDir],
      { stdio: 'ignore', ...(stack.postgres.runAs ?? {}) },
    );
  } catch {
    // already down
  }
  rmSync(stack.dir, { recursive: true, force: true });
}

export default async function globalSetup(): Promise<void> {
  const started = Date.now();
  // With the Temporal UI: ui.test.ts opens it in a headless Chromium.
  const stack = await startStack({
    withTemporalUi: true,
    log: (line) => process.stderr.write(`[stack] ${line}\n`),
  });
  process.stderr.write(`[stack] up in ${((Date.now() - started) / 1000).toFixed(1)} s at ${stack.dir}\n`);
  process.env[STACK_DIR_ENV] = stack.dir;
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      process.stderr.write(`[stack] ${signal}: stopping the stack\n`);
      killNow(stack);
      process.exit(130);
    });
  }
}
