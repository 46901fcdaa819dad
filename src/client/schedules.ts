/**
 * The nightly backup's Temporal Schedule, created or updated idempotently from configuration,
 * plus list, pause, unpause and trigger. The schedule shows in the Temporal UI and works with
 * `temporal schedule …` commands.
 */
import {
  ScheduleAlreadyRunning,
  type Client,
  type ScheduleOptions,
  type ScheduleOverlapPolicy,
} from '@temporalio/client';
import type { Config } from '../config';

export const NIGHTLY_SCHEDULE_ID = 'kohakku-dr-nightly-backup';

export function nightlyScheduleOptions(config: Pick<Config, 'schedule' | 'temporal'>): ScheduleOptions {
  const s = config.schedule;
  return {
    scheduleId: NIGHTLY_SCHEDULE_ID,
    spec: { cronExpressions: [s.cron], timezone: s.timezone },
    action: {
      type: 'startWorkflow',
      workflowType: 'nightlyBackup',
      workflowId: NIGHTLY_SCHEDULE_ID, // the server appends the scheduled time
      taskQueue: config.temporal.taskQueue,
      args: [],
    },
    policies: {
      overlap: s.overlap.toUpperCase() as ScheduleOverlapPolicy,
      catchupWindow: s.catchupWindow,
      pauseOnFailure: s.pauseOnFailure,
    },
    state: { note: 'managed by kohakku-dr: `kohakku-dr schedules apply` rewrites it from configuration' },
  };
}

/** Creates the schedule, or updates it in place to match configuration; says which. */
export async function applySchedules(
  client: Client,
  config: Pick<Config, 'schedule' | 'temporal'>,
): Promise<'created' | 'updated'> {
  const options = nightlyScheduleOptions(config);
  try {
    await client.schedule.create(options);
    return 'created';
  } catch (err) {
    if (!(err instanceof ScheduleAlreadyRunning)) throw err;
    await client.schedule.getHandle(options.scheduleId).update((previous) => ({
      ...previous,
      spec: options.spec,
      action: options.action,
      policies: { ...previous.policies, ...options.policies },
    }));
    return 'updated';
  }
}

export interface ScheduleSummary {
  id: string;
  paused: boolean;
  note?: string;
  spec: string;
  nextRuns: string[];
  recentRuns: string[];
}

export async function listSchedules(client: Client): Promise<ScheduleSummary[]> {
  const out: ScheduleSummary[] = [];
  for await (const s of client.schedule.list()) {
    const d = await client.schedule.getHandle(s.scheduleId).describe();
    out.push({
      id: s.scheduleId,
      paused: d.state.paused,
      note: d.state.note,
      spec: JSON.stringify(d.spec),
      nextRuns: d.info.nextActionTimes.slice(0, 3).map((t) => t.toISOString()),
      recentRuns: d.info.recentActions
        .slice(-3)
        .map((a) => `${a.takenAt.toISOString()} ${a.action.workflow.workflowId}`),
    });
  }
  return out;
}
