/**
 * `bash scripts/bench [--size small|medium]`: runs the benchmarks (bench.ts) and writes their
 * results beside the repository's `bench/README.md`, or into `--out DIR`.
 */
import * as path from 'node:path';
import { BENCH_SIZES, runBenchmarks, type BenchSize } from './bench';

async function run(): Promise<void> {
  const args = process.argv.slice(2);
  const value = (flag: string) => {
    const i = args.indexOf(flag);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const size = (value('--size') ?? 'medium') as BenchSize;
  if (!(size in BENCH_SIZES))
    throw new Error(`--size must be one of ${Object.keys(BENCH_SIZES).join(', ')}, got ${size}`);
  const out = value('--out') ?? path.resolve(__dirname, '..', '..', 'bench');
  const result = await runBenchmarks(size, out);
  console.log(`\n${result.comparisons.length} comparisons; results in ${out}`);
}

run().catch((err) => {
  console.error(err);
  process.exit(1);
});
