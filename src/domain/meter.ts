/**
 * How far a long activity has got, in one shape: the `meter` field of its heartbeat details.
 * Activities heartbeat whatever their stage needs to say (a database, an attempt, a key); the
 * meter is the part `kohakku-dr watch` and `status` can turn into a progress bar with an ETA
 * without knowing each activity — bytes downloaded of a dump, pg_restore's items, objects
 * copied, tasks requeued.
 */
export const METER_UNITS = ['bytes', 'objects', 'rows', 'tasks', 'items'] as const;
export type MeterUnit = (typeof METER_UNITS)[number];

export interface Meter {
  /** What is being counted, in a few words: "downloading kohakku_controller.dump". */
  what: string;
  unit: MeterUnit;
  done: number;
  /** Unknown while a listing or a stream has not said. */
  total?: number;
}

export const meter = (what: string, unit: MeterUnit, done: number, total?: number): Meter => ({
  what,
  unit,
  done,
  ...(total !== undefined ? { total } : {}),
});

/** The meter in heartbeat details, if they carry a well-formed one. */
export function meterIn(details: unknown): Meter | undefined {
  const m = (details as { meter?: Partial<Meter> } | undefined)?.meter;
  if (!m || typeof m !== 'object') return undefined;
  if (typeof m.what !== 'string' || typeof m.done !== 'number') return undefined;
  if (!(METER_UNITS as readonly string[]).includes(m.unit as string)) return undefined;
  return meter(m.what, m.unit!, m.done, typeof m.total === 'number' ? m.total : undefined);
}

/** `1.2 GiB`, `12,345 objects`: an amount in its unit, for people. */
export function formatAmount(n: number, unit: MeterUnit): string {
  if (unit !== 'bytes') return `${Math.round(n).toLocaleString('en-US')} ${unit}`;
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

/** `1 h 02 min`, `3 min 05 s`, `42 s`. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s >= 3600)
    return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
  if (s >= 60) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
  return `${s} s`;
}
