/**
 * Logic only, no services: the adaptive concurrency object transfers run with
 * (src/infra/adaptive.ts), driven by a simulated server, in virtual time where throughput is
 * judged (so the windows are exact whatever else loads the machine). The same code moves real
 * objects in objectIdentity.test.ts, objectStoreLoss.test.ts and the benchmarks; here its rules
 * are pinned: every item once, never above the maximum, climbing while throughput grows (every
 * finished transfer counted), trying higher again once a saturated server gets faster, halving on
 * 503 SlowDown (and the item retried), the first real error reported once the transfers in
 * flight have settled, items pulled from a stream only as they start; and the memory budget big
 * transfers share.
 */
import { mapAdaptive, memoryBudget } from '../src/infra/adaptive';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Runs `work` in virtual time (jest's fake timers fake setTimeout and performance.now alike): the
 * clock jumps from one timer to the next once everything that can run has run, so the throughput
 * windows see exactly the simulated server's latencies, however loaded the machine running the
 * test is.
 */
async function inVirtualTime<T>(work: () => Promise<T>): Promise<T> {
  jest.useFakeTimers();
  try {
    let settled = false;
    const run = work().finally(() => (settled = true));
    run.catch(() => undefined);
    while (!settled) {
      for (let i = 0; i < 50; i++) await Promise.resolve();
      jest.advanceTimersToNextTimer();
    }
    return await run;
  } finally {
    jest.useRealTimers();
  }
}

/** A server answering each request in `latencyMs`, however many arrive at once (it records the most). */
function simulatedServer(latencyMs: number) {
  let active = 0;
  let peak = 0;
  return {
    get peak() {
      return peak;
    },
    async request(): Promise<void> {
      active++;
      peak = Math.max(peak, active);
      await sleep(latencyMs);
      active--;
    },
  };
}

test('every item exactly once; climbs from its start while throughput grows, never above the maximum', async () => {
  const server = simulatedServer(5);
  const seen = new Map<number, number>();
  const items = Array.from({ length: 3000 }, (_, i) => i);
  const outcome = await inVirtualTime(() =>
    mapAdaptive(items, { start: 2, max: 24, windowMs: 40 }, async (i) => {
      await server.request();
      seen.set(i, (seen.get(i) ?? 0) + 1);
      return 1024;
    }),
  );
  expect(seen.size).toBe(items.length);
  expect([...seen.values()].every((n) => n === 1)).toBe(true);
  expect(server.peak).toBeLessThanOrEqual(24);
  // Its throughput grows with every transfer added: it climbs to the maximum and stays there
  // (every finished transfer counts in a window's throughput, however many finish at once).
  expect(outcome.peak).toBe(24);
  expect(outcome.settledAt).toBe(24);
});

test('a server that is saturated at first and faster later gets used fully: higher levels are tried again', async () => {
  // For its first 300 ms (another job on it, say) the server serves 5 requests at a time and
  // queues the rest; then any number. Only trying higher again finds that out.
  let serving = 0;
  const queue: (() => void)[] = [];
  const capacity = () => (performance.now() < 300 ? 5 : Infinity);
  const request = async () => {
    while (serving >= capacity()) await new Promise<void>((go) => queue.push(go));
    serving++;
    await sleep(5);
    serving--;
    queue.shift()?.();
  };
  const outcome = await inVirtualTime(() =>
    mapAdaptive(
      Array.from({ length: 6000 }, (_, i) => i),
      { start: 2, max: 24, windowMs: 40 },
      async () => {
        await request();
        return 1024;
      },
    ),
  );
  expect(outcome.peak).toBe(24);
  expect(outcome.settledAt).toBe(24);
});

test('an overloaded server (503 SlowDown) halves the concurrency and the item is sent again', async () => {
  let calls = 0;
  let refused = 0;
  const changes: number[] = [];
  const done = new Set<number>();
  const outcome = await mapAdaptive(
    Array.from({ length: 200 }, (_, i) => i),
    { start: 16, max: 16, windowMs: 1000, onChange: (n) => changes.push(n) },
    async (i) => {
      calls++;
      if (i === 50 && refused === 0) {
        refused++;
        throw Object.assign(new Error('Please reduce your request rate.'), { code: 'SlowDown' });
      }
      await sleep(1);
      done.add(i);
      return 0;
    },
  );
  expect(done.size).toBe(200);
  expect(calls).toBe(201);
  expect(changes[0]).toBe(8);
  expect(outcome.settledAt).toBeLessThanOrEqual(8);
});

test('the first real error is reported, after the transfers in flight settle; nothing new starts', async () => {
  let started = 0;
  let finished = 0;
  const run = mapAdaptive(
    Array.from({ length: 1000 }, (_, i) => i),
    { start: 4, max: 4 },
    async (i) => {
      started++;
      if (i === 10) throw new Error('AccessDenied: bucket kohakku on 10.0.0.5:9000');
      await sleep(20);
      finished++;
      return 0;
    },
  );
  await expect(run).rejects.toThrow('AccessDenied');
  expect(started).toBeLessThan(20);
  expect(finished).toBe(started - 1);
});

test('a memory budget: transfers hold at most its bytes at once; one bigger than the whole runs alone', async () => {
  const budget = memoryBudget(100);
  let held = 0;
  let most = 0;
  const order: string[] = [];
  const transfer = (name: string, bytes: number, ms: number) =>
    budget.within(bytes, async () => {
      held += Math.min(bytes, 100);
      most = Math.max(most, held);
      order.push(`start ${name}`);
      await sleep(ms);
      held -= Math.min(bytes, 100);
      order.push(`end ${name}`);
    });
  await Promise.all([
    transfer('a', 60, 30),
    transfer('b', 30, 10),
    transfer('huge', 500, 10),
    transfer('c', 10, 10),
  ]);
  expect(most).toBeLessThanOrEqual(100);
  // The huge one waits until everything before it has ended, and what follows waits for it.
  expect(order.indexOf('start huge')).toBeGreaterThan(order.indexOf('end a'));
  expect(order.indexOf('start c')).toBeGreaterThan(order.indexOf('end huge'));
});

test('items from a stream are pulled only as transfers start; a failure closes the stream', async () => {
  let pulled = 0;
  let closed = false;
  async function* plan() {
    try {
      for (let i = 0; i < 2000; i++) {
        pulled++;
        yield i;
      }
    } finally {
      closed = true;
    }
  }
  let started = 0;
  const done = new Set<number>();
  await mapAdaptive(plan(), { start: 4, max: 4 }, async (i) => {
    started++;
    // Never more pulled than started plus the one being pulled.
    expect(pulled).toBeLessThanOrEqual(started + 1);
    await sleep(0);
    done.add(i);
    return 0;
  });
  expect(done.size).toBe(2000);
  expect(closed).toBe(true);

  pulled = 0;
  closed = false;
  await expect(
    mapAdaptive(plan(), { start: 4, max: 4 }, async (i) => {
      if (i === 20) throw new Error('AccessDenied');
      await sleep(1);
      return 0;
    }),
  ).rejects.toThrow('AccessDenied');
  expect(closed).toBe(true);
  expect(pulled).toBeLessThan(40);
});
