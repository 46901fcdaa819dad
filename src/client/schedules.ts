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
/** With PITR=pgbackrest: the base backups the WAL archive replays from. */
export const PITR_SCHEDULE_IDS = {
  full: 'kohakku-dr-pitr-full-backup',
  diff: 'kohakku-dr-pitr-diff-backup',
} as const;

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

/** The base-backup schedules (full weekly, differential daily by default), with the nightly's policies. */
export function pitrScheduleOptions(config: Pick<Config, 'schedule' | 'temporal'>): ScheduleOptions[] {
  const s = config.schedule;
  return (['full', 'diff'] as const).map((type) => ({
    scheduleId: PITR_SCHEDULE_IDS[type],
    spec: { cronExpressions: [type === 'full' ? s.pitrFullCron : s.pitrDiffCron], timezone: s.timezone },
    action: {
      type: 'startWorkflow',
      workflowType: 'pitrBackup',
      workflowId: PITR_SCHEDULE_IDS[type],
      taskQueue: config.temporal.taskQueue,
      args: [{ type }],
    },
    policies: {
      overlap: s.overlap.toUpperCase() as ScheduleOverlapPolicy,
      catchupWindow: s.catchupWindow,
      pauseOnFailure: s.pauseOnFailure,
    },
    state: { note: 'managed by kohakku-dr: `kohakku-dr schedules apply` rewrites it from configuration' },
  }));
}

/** The nightly schedule, and the base-backup ones when PITR is on: created or updated, each. */
export async function applyAllSchedules(
  client: Client,
  config: Pick<Config, 'schedule' | 'temporal' | 'pitr'>,
): Promise<{ id: string; outcome: 'created' | 'updated' }[]> {
  const all = [nightlyScheduleOptions(config), ...(config.pitr ? pitrScheduleOptions(config) : [])];
  const out: { id: string; outcome: 'created' | 'updated' }[] = [];
  for (const options of all)
    out.push({ id: options.scheduleId, outcome: await applySchedule(client, options) });
  return out;
}

/** Creates the nightly schedule, or updates it in place to match configuration; says which. */
export async function applySchedules(
  client: Client,
  config: Pick<Config, 'schedule' | 'temporal'>,
): Promise<'created' | 'updated'> {
  return applySchedule(client, nightlyScheduleOptions(config));
}

async function applySchedule(client: Client, options: ScheduleOptions): Promise<'created' | 'updated'> {
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
