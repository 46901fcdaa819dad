/**
 * What kohakku-dr tells a chat channel or a pager, and when: a recovery waiting for approval
 * (with the exact approve command), a recovery completed or failed (with what happened to live
 * data), a nightly backup or its verification failed, a schedule paused. Workflows build these;
 * the worker's `sendNotification` activity posts them to NOTIFY_WEBHOOK_URL, which only the worker
 * holds — never the workflow's input, history or logs.
 */
export const NOTIFICATION_EVENTS = [
  'approval-waiting',
  'recovery-completed',
  'recovery-failed',
  'backup-failed',
  'verification-failed',
  'schedule-paused',
] as const;
export type NotificationEvent = (typeof NOTIFICATION_EVENTS)[number];

export interface Notification {
  event: NotificationEvent;
  /** One line: "fullCluster waits for approval to swap in the restored databases". */
  title: string;
  /** What to know and do next, a line each. */
  lines: string[];
  /** The run it is about (a schedule's id for a paused schedule). */
  workflowId: string;
  runId?: string;
  /** The Temporal Schedule that started the run: a failure may have paused it (pauseOnFailure). */
  schedule?: string;
}

/** The child workflow that delivers one notification: its id, unique per run, event and count. */
export const notificationWorkflowId = (
  workflowId: string,
  runId: string,
  event: NotificationEvent,
  n: number,
) => `${workflowId}/notify/${event}/${runId.slice(0, 8)}-${n}`;

const ICONS: Record<NotificationEvent, string> = {
  'approval-waiting': ':raised_hand:',
  'recovery-completed': ':white_check_mark:',
  'recovery-failed': ':x:',
  'backup-failed': ':x:',
  'verification-failed': ':warning:',
  'schedule-paused': ':double_vertical_bar:',
};

/**
 * Slack's incoming-webhook JSON (also taken by Mattermost, Rocket.Chat, Discord's /slack
 * endpoint and most chat bridges): `text` for notifications and clients without blocks, and one
 * mrkdwn section with the same words.
 */
export function slackPayload(n: Notification): { text: string; blocks: unknown[] } {
  const text = [
    `${ICONS[n.event]} *kohakku-dr: ${n.title}*`,
    ...n.lines,
    `\`${n.workflowId}\`${n.runId ? ` run \`${n.runId}\`` : ''}`,
  ].join('\n');
  return { text, blocks: [{ type: 'section', text: { type: 'mrkdwn', text: text.slice(0, 3000) } }] };
}
