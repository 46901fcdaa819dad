/**
 * Adaptive concurrency for object transfers. How many transfers at once pay off depends on the
 * S3 server, the network and the object sizes, none of which the worker knows in advance (a
 * fixed OBJECT_TRANSFER_CONCURRENCY of 8, 32 or 64 made no difference on one server and would on
 * another). So a transfer run starts low and climbs: each second it compares throughput with the
 * best seen, adds transfers while that keeps growing, goes back to the best level when a higher
 * one does no better, tries higher again every few seconds (throughput drifts, and one slow
 * second must not pin it), and halves when the server says it is overloaded (503 SlowDown). Throughput counts requests as
 * well as bytes (one request ≈ 1 MiB), since small objects are bound by round trips, big ones by
 * bandwidth.
 */

export interface AdaptiveOptions {
  /** Transfers at once to begin with. */
  start: number;
  /** Never more than this many at once. */
  max: number;
  /** How often throughput is judged (ms). */
  windowMs?: number;
  /** Told each new concurrency (for progress). */
  onChange?: (concurrency: number) => void;
}

export interface AdaptiveOutcome {
  /** The concurrency the run settled on (the best level it measured). */
  settledAt: number;
  /** The highest concurrency it tried. */
  peak: number;
}

/** Windows at the best level without change before the next level up is tried again. */
const PROBE_AFTER_WINDOWS = 3;

/** One request weighs what this many bytes do in the throughput that concurrency climbs on. */
const REQUEST_WEIGHT_BYTES = 1 << 20;

function overloaded(err: unknown): boolean {
  const e = err as { code?: string; statusCode?: number; $metadata?: { httpStatusCode?: number } };
  return e.code === 'SlowDown' || e.statusCode === 503 || e.$metadata?.httpStatusCode === 503;
}

/**
 * Runs `fn` over every item with a concurrency that adapts (see the module comment); `fn` returns
 * the bytes it moved. Items may come from an array or a stream (an async iterable is pulled only
 * as transfers start, so a plan spooled to disk is never in memory whole). Rejects with the first
 * error once the transfers in flight have settled (an overloaded server's 503 first halves the
 * concurrency and is retried once, after a pause); the stream is then closed.
 */
export async function mapAdaptive<T>(
  items: readonly T[] | AsyncIterable<T>,
  options: AdaptiveOptions,
  fn: (item: T) => Promise<number>,
): Promise<AdaptiveOutcome> {
  const max = Math.max(1, options.max);
  const windowMs = options.windowMs ?? 1000;
  let limit = Math.max(1, Math.min(options.start, max));
  let peak = limit;
  let best = { limit, rate: 0 };
  let active = 0;
  let failure: unknown;
  let units = 0;
  let quiet = 0;
  // A monotonic clock: a wall-clock step (NTP on a loaded VM) must not freeze or fake a window.
  let windowStart = performance.now();

  const judge = () => {
    const now = performance.now();
    if (now - windowStart < windowMs) return;
    const rate = units / ((now - windowStart) / 1000);
    units = 0;
    windowStart = now;
    if (rate > best.rate * 1.05) {
      best = { limit, rate };
      quiet = 0;
      limit = Math.min(max, Math.ceil(limit * 1.5));
    } else if (limit !== best.limit) {
      // A level no better than the best one measured: back to that.
      limit = best.limit;
    } else {
      // At the best level: what it does now is its rate (a server's throughput drifts, one slow
      // window must not set the bar for good), and after a few windows without change the next
      // level is tried again, so a noisy window never pins the concurrency where it was.
      best.rate = rate;
      if (++quiet >= PROBE_AFTER_WINDOWS && limit < max) {
        quiet = 0;
        limit = Math.min(max, Math.ceil(limit * 1.5));
      }
    }
    peak = Math.max(peak, limit);
    options.onChange?.(limit);
  };

  // Not `units += … await …`: that reads `units` before the await and would drop the units every
  // transfer finishing meanwhile counted (throughput would look flat whatever the concurrency).
  const count = (bytes: number) => {
    units += 1 + bytes / REQUEST_WEIGHT_BYTES;
  };
  const runOne = async (item: T): Promise<void> => {
    try {
      count(await fn(item));
    } catch (err) {
      if (!overloaded(err)) throw err;
      limit = Math.max(1, Math.floor(limit / 2));
      best = { limit, rate: 0 };
      options.onChange?.(limit);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      count(await fn(item));
    }
  };

  // The next item: at once from an array, a promise of it from a stream.
  let next = 0;
  const stream = Array.isArray(items) ? undefined : (items as AsyncIterable<T>)[Symbol.asyncIterator]();
  const array = items as readonly T[];
  const pull = (): IteratorResult<T> | Promise<IteratorResult<T>> =>
    stream
      ? stream.next()
      : next < array.length
        ? { done: false, value: array[next++]! }
        : { done: true, value: undefined };
  let exhausted = false;
  let pulling = false;

  await new Promise<void>((resolve) => {
    const start = (item: T) => {
      active++;
      runOne(item)
        .catch((err: unknown) => {
          failure ??= err;
        })
        .finally(() => {
          active--;
          pump();
        });
    };
    const pump = () => {
      judge();
      while (failure === undefined && !exhausted && !pulling && active < limit) {
        const result = pull();
        if (result instanceof Promise) {
          pulling = true;
          result.then(
            (r) => {
              pulling = false;
              if (r.done) exhausted = true;
              else start(r.value);
              pump();
            },
            (err: unknown) => {
              pulling = false;
              failure ??= err;
              pump();
            },
          );
          break;
        }
        if (result.done) exhausted = true;
        else start(result.value);
      }
      if (active === 0 && !pulling && (failure !== undefined || exhausted)) resolve();
    };
    pump();
  });
  if (failure !== undefined) {
    if (!exhausted) await stream?.return?.().catch(() => undefined);
    throw failure;
  }
  return { settledAt: best.limit, peak };
}

/**
 * The bytes one worker's object transfers (mirror, restore, verification, replica copy) hold in
 * memory at once, all of them together: small objects whole, big ones a part at a time
 * (infra/s3Upload.ts), whatever their concurrency climbs to and however many run side by side.
 */
export const TRANSFER_MEMORY_BYTES = 128 * 1024 * 1024;

export type MemoryBudget = ReturnType<typeof memoryBudget>;

/**
 * A budget of bytes in memory shared by concurrent transfers: `within(n, work)` waits until `n`
 * bytes are free (a request for more than the whole budget waits until it is all free, then
 * runs alone), so however high concurrency climbs, transfers hold at most the budget.
 */
export function memoryBudget(total: number) {
  let free = total;
  const waiting: { need: number; go: () => void }[] = [];
  const wake = () => {
    while (waiting.length > 0 && waiting[0]!.need <= free) {
      const next = waiting.shift()!;
      free -= next.need;
      next.go();
    }
  };
  return {
    async within<T>(bytes: number, work: () => Promise<T>): Promise<T> {
      const need = Math.min(Math.max(0, bytes), total);
      if (waiting.length === 0 && need <= free) free -= need;
      else await new Promise<void>((go) => waiting.push({ need, go }));
      try {
        return await work();
      } finally {
        free += need;
        wake();
      }
    },
  };
}
