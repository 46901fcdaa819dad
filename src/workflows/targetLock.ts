/**
 * A target lock: one running child workflow per target (`kohakku-dr-lock-postgres`, `-redis`,
 * `-objects`), started by the recovery that holds it. The server refuses a second workflow with a
 * running id, so two recoveries of the same target cannot run side by side however they were
 * started — our CLI, `temporal workflow start` under any workflow id, the UI. The lock ends when
 * its holder releases it, and with its holder in any case (parent close policy TERMINATE), so a
 * terminated recovery never leaves a lock behind.
 */
import { condition, setHandler } from '@temporalio/workflow';
import { releaseLockSignal } from './definitions';

export interface TargetLockInput {
  holderWorkflowId: string;
  holderRunId: string;
  procedure: string;
}

export async function targetLock(input: TargetLockInput): Promise<TargetLockInput> {
  let released = false;
  setHandler(releaseLockSignal, () => {
    released = true;
  });
  await condition(() => released);
  return input;
}
