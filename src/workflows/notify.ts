/**
 * Notifications from workflows (src/domain/notifications.ts). Each is delivered by a workflow of
 * its own, `deliverNotification`, started beside the run and abandoned by it: Temporal retries the
 * delivery for about half an hour (a chat service's outage) while the recovery goes on or has
 * ended — no recovery ever waits for a webhook, and a failed delivery is that workflow's failure,
 * never the recovery's. The webhook URL stays on the worker.
 */
import {
  CancellationScope,
  ParentClosePolicy,
  proxyActivities,
  startChild,
  workflowInfo,
} from '@temporalio/workflow';
import { z } from 'zod';
import type { Activities } from '../activities';
import { NOTIFICATION_EVENTS, notificationWorkflowId, type Notification } from '../domain/notifications';
import { rootMessage } from './engine/progress';
import { parseInput } from './engine/input';
import { notification } from './options';

const { sendNotification } = proxyActivities<Activities>(notification);

const notificationInput = z
  .object({
    event: z.enum(NOTIFICATION_EVENTS),
    title: z.string().min(1).max(500),
    lines: z.array(z.string().max(2000)).max(50),
    workflowId: z.string().min(1),
    runId: z.string().optional(),
    schedule: z.string().optional(),
  })
  .strict();

/** Delivers one notification to the worker's webhook (nothing when it has none). */
export async function deliverNotification(input: Notification): Promise<{ sent: boolean; to?: string }> {
  return sendNotification(parseInput(notificationInput, input, 'deliverNotification'));
}

/** Notifications this run has started, for unique delivery ids. */
let started = 0;

/**
 * Starts the delivery of `n` beside this run; returns once it is started. It cannot fail the run:
 * a delivery that could not even be started is returned as a warning.
 */
export async function notifyBeside(
  n: Omit<Notification, 'workflowId' | 'runId'>,
): Promise<string | undefined> {
  const info = workflowInfo();
  const workflowId = notificationWorkflowId(info.workflowId, info.runId, n.event, ++started);
  try {
    // Also from a cancelled run: its "cancelled" notice is sent.
    await CancellationScope.nonCancellable(() =>
      startChild(deliverNotification, {
        workflowId,
        args: [{ ...n, workflowId: info.workflowId, runId: info.runId }],
        parentClosePolicy: ParentClosePolicy.ABANDON,
      }),
    );
    return undefined;
  } catch (err) {
    return `the ${n.event} notification could not be started (${workflowId}): ${rootMessage(err)}`;
  }
}
