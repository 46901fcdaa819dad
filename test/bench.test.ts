/**
 * The benchmarks keep working (issue 9): `scripts/bench --size small` on its own embedded stack
 * runs every comparison, each side on the same data, and writes the JSON and the summary table.
 * Speed is not asserted here — the ratios are figures to read, never a pass/fail line.
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runBenchmarks, type BenchResult } from '../src/bench/bench';

test('the small benchmarks run every comparison against its baselines and write results and summary', async () => {
  const out = await fs.mkdtemp(path.join(os.tmpdir(), 'kohakku-dr-bench-'));
  try {
    const result = await runBenchmarks('small', out);
    expect(result.comparisons.map((c) => c.name)).toEqual([
      'requeue lost tasks',
      'object mirror, full copy',
      'object mirror, no-change re-run',
      'object restore, full copy',
      'object restore, no-change re-run',
      'verified restore',
      'nightly backup (Postgres, Redis, objects)',
      'what verification adds (no baseline verifies)',
      'full-cluster recovery (RTO)',
    ]);
    for (const c of result.comparisons) {
      expect(c.ours.seconds).toHaveLength(2);
      for (const b of c.baselines) {
        expect(b.seconds).toHaveLength(2);
        expect(Number.isFinite(b.ratio) && b.ratio > 0).toBe(true);
      }
    }
    const [file] = await fs.readdir(path.join(out, 'results'));
    const written = JSON.parse(await fs.readFile(path.join(out, 'results', file!), 'utf8')) as BenchResult;
    expect(written.comparisons).toHaveLength(9);
    const summary = await fs.readFile(path.join(out, 'README.md'), 'utf8');
    expect(summary).toContain('| requeue lost tasks |');
    expect(summary.split('\n').filter((l) => /\| \d+\.\d\d \|$/.test(l))).toHaveLength(15);
    expect(summary).toMatch(
      /- full-cluster recovery: of kohakku-dr's [\d.]+ s .* orchestrating between them\./,
    );
  } finally {
    await fs.rm(out, { recursive: true, force: true });
  }
});
