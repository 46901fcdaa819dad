/**
 * Delivers a notification (src/domain/notifications.ts) to NOTIFY_WEBHOOK_URL as Slack-compatible
 * JSON. A failure to deliver is an ordinary error that Temporal retries (the delivering workflow's
 * retry policy, src/workflows/notify.ts) — except a 4xx other than 408/429, which retrying cannot
 * fix (a revoked webhook): that one is final, named. Messages name the webhook's host only: a
 * webhook URL's path is its secret.
 */
import { ApplicationFailure } from '@temporalio/common';
import type { Config } from '../config';
import { ErrorType } from '../domain/errors';
import { slackPayload, type Notification } from '../domain/notifications';

export interface NotificationDeps {
  config: Pick<Config, 'notify' | 'schedule'>;
}

/** `https://hooks.slack.com/…`: where a webhook is, without the path that authorizes it. */
export function webhookHost(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}/…`;
  } catch {
    return 'the webhook (NOTIFY_WEBHOOK_URL)';
  }
}

const DELIVERY_TIMEOUT_MS = 10_000;

export function createNotificationActivities({ config }: NotificationDeps) {
  /** Posts `n`; `{ sent: false }` when no webhook is configured. */
  async function sendNotification(n: Notification): Promise<{ sent: boolean; to?: string }> {
    const url = config.notify.webhookUrl;
    if (!url) return { sent: false };
    const to = webhookHost(url);
    // A failed scheduled run pauses its schedule when the schedules are so configured: said, with the way back.
    if (n.schedule && config.schedule.pauseOnFailure)
      n = {
        ...n,
        lines: [
          ...n.lines,
          `The schedule ${n.schedule} is paused by this failure (BACKUP_SCHEDULE_PAUSE_ON_FAILURE): no backup runs until \`kohakku-dr schedules unpause\`.`,
        ],
      };
    let response: Response;
    try {
      response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(slackPayload(n)),
        signal: AbortSignal.timeout(DELIVERY_TIMEOUT_MS),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new Error(
        `notification webhook ${to} unreachable: ${cause?.code ?? cause?.message ?? (err as Error).message}`,
      );
    }
    await response.body?.cancel().catch(() => undefined);
    if (response.ok) return { sent: true, to };
    const message = `notification webhook ${to} answered ${response.status} ${response.statusText}`;
    if (response.status >= 400 && response.status < 500 && response.status !== 408 && response.status !== 429)
      throw ApplicationFailure.create({
        type: ErrorType.NotificationRejected,
        message: `${message}: check NOTIFY_WEBHOOK_URL (not retried)`,
        nonRetryable: true,
      });
    throw new Error(message);
  }
  return { sendNotification };
}
