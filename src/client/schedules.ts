/**
 * The nightly backup's Temporal Schedule, created or updated idempotently from configuration,
 * plus list, pause, unpause and trigger. The schedule shows in the Temporal UI and works with
 * `temporal schedule …` commands.
 */
import {
  DAYS_OF_WEEK,
  MONTHS,
  ScheduleAlreadyRunning,
  type CalendarSpecDescription,
  type Client,
  type DayOfWeek,
  type Month,
  type Range,
  type ScheduleOptions,
  type ScheduleOverlapPolicy,
} from '@temporalio/client';
import cronstrue from 'cronstrue';
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
  /** Each of the spec's calendars written back as cron, and in words (cronstrue). */
  crons: { cron: string; inWords: string }[];
  timezone?: string;
  nextRuns: string[];
  recentRuns: string[];
}

const MONTH_NUMBER = Object.fromEntries(MONTHS.map((m, i) => [m, i + 1])) as Record<Month, number>;
const DAY_NUMBER = Object.fromEntries(DAYS_OF_WEEK.map((d, i) => [d, i])) as Record<DayOfWeek, number>;

/**
 * One cron field from the ranges the server keeps (it turns cron strings into calendars): none, or
 * one covering [min, max] by 1, is `*`; `a`, `a-b`, `a-b/s` otherwise, comma-separated.
 */
function cronField(ranges: Range<number>[], min: number, max: number): string {
  if (ranges.length === 0) return '*';
  return ranges
    .map(({ start, end, step }) => {
      const last = end < start ? start : end;
      const by = step > 1 ? `/${step}` : '';
      if (start === min && last === max) return `*${by}`;
      return start === last ? `${start}` : `${start}-${last}${by}`;
    })
    .join(',');
}

/** A calendar spec as the five-field cron it came from (seconds and years are the defaults: 0, every). */
export function calendarToCron(c: CalendarSpecDescription): string {
  return [
    cronField(c.minute, 0, 59),
    cronField(c.hour, 0, 23),
    cronField(c.dayOfMonth, 1, 31),
    cronField(
      c.month.map((r) => ({ start: MONTH_NUMBER[r.start], end: MONTH_NUMBER[r.end], step: r.step })),
      1,
      12,
    ),
    cronField(
      c.dayOfWeek.map((r) => ({ start: DAY_NUMBER[r.start], end: DAY_NUMBER[r.end], step: r.step })),
      0,
      6,
    ),
  ].join(' ');
}

export async function listSchedules(client: Client): Promise<ScheduleSummary[]> {
  const out: ScheduleSummary[] = [];
  for await (const s of client.schedule.list()) {
    const d = await client.schedule.getHandle(s.scheduleId).describe();
    out.push({
      id: s.scheduleId,
      paused: d.state.paused,
      note: d.state.note,
      crons: (d.spec.calendars ?? []).map(calendarToCron).map((cron) => ({
        cron,
        inWords: cronstrue.toString(cron, { use24HourTimeFormat: true, verbose: true }),
      })),
      timezone: d.spec.timezone,
      nextRuns: d.info.nextActionTimes.slice(0, 3).map((t) => t.toISOString()),
      recentRuns: d.info.recentActions
        .slice(-3)
        .map((a) => `${a.takenAt.toISOString()} ${a.action.workflow.workflowId}`),
    });
  }
  return out;
}

/** `schedules list` for a person. */
export function scheduleLines(list: ScheduleSummary[]): string[] {
  if (list.length === 0) return ['no schedules: create them with `kohakku-dr schedules apply`'];
  return list.flatMap((s) => [
    `${s.id}: ${s.paused ? `PAUSED${s.note ? ` (${s.note})` : ''}` : 'active'}`,
    ...s.crons.map((c) => `  ${c.inWords} (${s.timezone || 'UTC'}) — cron "${c.cron}"`),
    `  next: ${s.nextRuns.join(', ') || '—'}`,
    `  recent: ${s.recentRuns.join(', ') || '—'}`,
  ]);
}
