/**
 * `watch`'s live progress of long activities: the meters they heartbeat (src/domain/meter.ts),
 * as read from the server's record of pending activities, drawn as progress bars with an ETA when
 * the human lines go to a terminal (cli-progress: a well-kept multi-bar library that redraws in
 * place and computes the ETA from recent updates), or as a plain line per meter at most every
 * PLAIN_EVERY_MS when they go to a file or a pipe — a log of a run stays readable.
 */
import cliProgress from 'cli-progress';
import { formatAmount, formatDuration, type Meter } from '../domain/meter';

/** A pending activity's meter as `watch` saw it. */
export interface ActivityMeter {
  /** The activity's id within the run: one bar per id. */
  activityId: string;
  activityType: string;
  meter: Meter;
}

export interface MeterDisplay {
  /** The meters of the activities pending now; bars of activities no longer pending go. */
  show(meters: ActivityMeter[]): void;
  /** A line of text, printed above the bars (or as is without them). */
  print(line: string): void;
  stop(): void;
}

/** How often a plain line per meter is printed when the output is no terminal. */
export const PLAIN_EVERY_MS = 15_000;

/** `1.2 GiB of 5.0 GiB (24 %)`, or `12,000 tasks` without a total. */
export function amountLine(m: Meter): string {
  if (m.total === undefined) return formatAmount(m.done, m.unit);
  const pct = m.total > 0 ? Math.floor((100 * m.done) / m.total) : 100;
  return `${formatAmount(m.done, m.unit)} of ${formatAmount(m.total, m.unit)} (${pct} %)`;
}

/** `    … downloading x.dump: 1.2 GiB of 5.0 GiB (24 %), about 2 min 10 s left`: a meter as one line. */
export function meterLine(m: Meter, etaSeconds?: number): string {
  return `    … ${m.what}: ${amountLine(m)}${etaSeconds !== undefined ? `, about ${formatDuration(etaSeconds)} left` : ''}`;
}

/**
 * Seconds left at the rate seen between two readings of the same meter, when it has a total and
 * moved; undefined otherwise.
 */
export function etaSeconds(
  first: { at: number; done: number },
  now: { at: number; meter: Meter },
): number | undefined {
  const { total, done } = now.meter;
  const moved = done - first.done;
  const seconds = (now.at - first.at) / 1000;
  if (total === undefined || moved <= 0 || seconds <= 0) return undefined;
  return Math.max(0, total - done) / (moved / seconds);
}

/** Plain lines: one per meter when it first shows and then at most every PLAIN_EVERY_MS. */
export function plainMeterDisplay(
  write: (line: string) => void,
  now: () => number = Date.now,
  everyMs = PLAIN_EVERY_MS,
): MeterDisplay {
  const seen = new Map<string, { what: string; first: { at: number; done: number }; printedAt: number }>();
  return {
    show(meters) {
      const at = now();
      const pending = new Set(meters.map((m) => m.activityId));
      for (const id of seen.keys()) if (!pending.has(id)) seen.delete(id);
      for (const { activityId, meter } of meters) {
        let s = seen.get(activityId);
        // A new stage of the same activity (download, then hash) starts its own rate.
        if (!s || s.what !== meter.what) {
          s = { what: meter.what, first: { at, done: meter.done }, printedAt: -Infinity };
          seen.set(activityId, s);
        }
        if (at - s.printedAt < everyMs) continue;
        s.printedAt = at;
        const eta = etaSeconds(s.first, { at, meter });
        write(meterLine(meter, eta));
      }
    },
    print: write,
    stop() {
      seen.clear();
    },
  };
}

/** Bars redrawn in place on a terminal, one per pending activity with a meter. */
export function barMeterDisplay(stream: NodeJS.WriteStream): MeterDisplay {
  const bars = new cliProgress.MultiBar(
    {
      stream,
      clearOnComplete: true,
      hideCursor: true,
      // Only while `watch` has something to draw: no empty redraws between meters.
      forceRedraw: false,
      etaBuffer: 20,
      format: (options, params, payload: { what: string; amount: string }) => {
        const width = options.barsize ?? 30;
        const filled = Math.round(params.progress * width);
        const bar = payload.amount.includes(' of ')
          ? `[${'█'.repeat(filled)}${'░'.repeat(width - filled)}] `
          : '';
        const eta =
          params.eta > 0 && Number.isFinite(params.eta) && payload.amount.includes(' of ')
            ? `, about ${formatDuration(params.eta)} left`
            : '';
        return `    ${bar}${payload.what}: ${payload.amount}${eta}`;
      },
    },
    cliProgress.Presets.shades_classic,
  );
  const open = new Map<string, { bar: cliProgress.SingleBar; what: string }>();
  /** No bars left: the lines logged above them written out, the redraw timer stopped. */
  let drawing = false;
  const stopWhenEmpty = () => {
    if (open.size > 0 || !drawing) return;
    drawing = false;
    bars.update();
    bars.stop();
  };
  return {
    show(meters) {
      const pending = new Set(meters.map((m) => m.activityId));
      for (const [id, b] of open)
        if (!pending.has(id)) {
          bars.remove(b.bar);
          open.delete(id);
        }
      for (const { activityId, meter } of meters) {
        let b = open.get(activityId);
        if (b && b.what !== meter.what) {
          bars.remove(b.bar);
          b = undefined;
        }
        const total = meter.total ?? Math.max(meter.done, 1);
        const payload = { what: meter.what, amount: amountLine(meter) };
        if (!b) {
          b = { bar: bars.create(total, meter.done, payload), what: meter.what };
          drawing = true;
          open.set(activityId, b);
        } else {
          b.bar.setTotal(total);
          b.bar.update(meter.done, payload);
        }
      }
      stopWhenEmpty();
    },
    print(line) {
      // Above the bars while there are any (cli-progress needs the newline itself), else as is.
      if (open.size > 0) bars.log(line + '\n');
      else stream.write(line + '\n');
    },
    stop() {
      for (const b of open.values()) bars.remove(b.bar);
      open.clear();
      stopWhenEmpty();
    },
  };
}
