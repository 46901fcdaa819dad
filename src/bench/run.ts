/**
 * `bash scripts/bench [--size small|medium] [--only a,b] [--out DIR]`: runs the benchmarks
 * (bench.ts) and writes their results beside the repository's `bench/README.md`, or into `--out
 * DIR`; `--only` runs some of them (its results go to results/ only, the table is a full run's).
 */
import * as path from 'node:path';
import { BENCH_COMPARISONS, BENCH_SIZES, runBenchmarks, type BenchComparison, type BenchSize } from './bench';

async function run(): Promise<void> {
  const args = process.argv.slice(2);
  const value = (flag: string) => {
    const i = args.indexOf(flag);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const size = (value('--size') ?? 'medium') as BenchSize;
  if (!(size in BENCH_SIZES))
    throw new Error(`--size must be one of ${Object.keys(BENCH_SIZES).join(', ')}, got ${size}`);
  const only = (value('--only')?.split(',') ?? [...BENCH_COMPARISONS]) as BenchComparison[];
  const unknown = only.filter((c) => !BENCH_COMPARISONS.includes(c));
  if (unknown.length > 0)
    throw new Error(
      `--only takes ${BENCH_COMPARISONS.join(', ')} (comma-separated), got ${unknown.join(', ')}`,
    );
  const out = value('--out') ?? path.resolve(__dirname, '..', '..', 'bench');
  const result = await runBenchmarks(size, out, only);
  console.log(`\n${result.comparisons.length} comparisons; results in ${out}`);
}

run().catch((err) => {
  console.error(err);
  process.exit(1);
});
