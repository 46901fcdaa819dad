import { readStack, stopStack } from '../../src/stack/stack';
import { STACK_DIR_ENV } from './globalSetup';

export default async function globalTeardown(): Promise<void> {
  const dir = process.env[STACK_DIR_ENV];
  if (!dir) return;
  await stopStack(readStack(dir));
  process.stderr.write(`[stack] stopped and removed ${dir}\n`);
}
