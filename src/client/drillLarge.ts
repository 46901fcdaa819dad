/**
 * The large drill's extra data (`bash scripts/drill --size large`): what production size looks
 * like beside the reference model at 1,000,000 tasks — gigabytes of incompressible rows in the
 * Controller's database (random bytes, stored uncompressed, so neither pg_dump nor TOAST can
 * shrink them) and 100 MiB objects, one sent in a single PUT and one in parts, next to 100,000
 * briefs. The drill then backs all of it up, loses the cluster and recovers, with every check
 * it always makes, and reports the worker's peak memory.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as Minio from 'minio';
import type { referenceModelOn } from '../reference/onStack';
import { withStackDb, type StackInfo } from '../stack/stack';

/**
 * `agentIntervalSeconds`: how often each simulated agent checks in. At the large size the
 * 200,000 live agents check in every 10 s, not every 2 s (100,000 Redis writes a second would
 * take most of this machine's two cores from the backup and the recovery being measured), and
 * get a 30 s grace period to do so.
 */
export const DRILL_SIZES = {
  default: {
    tasks: 20_000,
    briefs: 200,
    ballastMiB: 0,
    bigObjects: false,
    agentIntervalSeconds: 2,
    grace: 10,
  },
  large: {
    tasks: 1_000_000,
    briefs: 100_000,
    ballastMiB: 5 * 1024,
    bigObjects: true,
    agentIntervalSeconds: 10,
    grace: 30,
  },
} as const;
export type DrillSize = keyof typeof DRILL_SIZES;

const MiB = 1024 * 1024;

/** The table of incompressible rows, in the Controller's database. */
export const BALLAST_TABLE = 'drill_ballast';

/** `mib` MiB of random bytes in rows of 1 MiB, on two sessions at once. */
export async function seedBallast(
  stack: StackInfo,
  database: string,
  mib: number,
  log: (line: string) => void,
): Promise<void> {
  await withStackDb(stack, database, (c) =>
    c.query(
      `CREATE TABLE ${BALLAST_TABLE} (id int PRIMARY KEY, data bytea NOT NULL);
       ALTER TABLE ${BALLAST_TABLE} ALTER COLUMN data SET STORAGE EXTERNAL`,
    ),
  );
  let next = 0;
  let written = 0;
  const writer = () =>
    withStackDb(stack, database, async (c) => {
      for (let id = next++; id < mib; id = next++) {
        await c.query(`INSERT INTO ${BALLAST_TABLE} (id, data) VALUES ($1, $2)`, [id, randomBytes(MiB)]);
        if (++written % 512 === 0) log(`   ballast: ${written} of ${mib} MiB`);
      }
    });
  await Promise.all([writer(), writer()]);
}

/** Two 100 MiB objects of random bytes under skills/: one single-PUT, one multipart. */
export async function seedBigObjects(model: Awaited<ReturnType<typeof referenceModelOn>>): Promise<string[]> {
  const connection = {
    endPoint: model.s3.endPoint,
    port: model.s3.port,
    useSSL: false,
    accessKey: model.s3.accessKey,
    secretKey: model.s3.secretKey,
  };
  // minio-js sends in parts above its partSize (64 MiB by default): a larger one means ONE PUT.
  const single = new Minio.Client({ ...connection, partSize: 128 * MiB });
  const multipart = new Minio.Client(connection);
  const keys = ['skills/drill-100mib-single-put.bin', 'skills/drill-100mib-multipart.bin'];
  await single.putObject(model.s3.bucket, keys[0]!, randomBytes(100 * MiB));
  await multipart.putObject(model.s3.bucket, keys[1]!, randomBytes(100 * MiB));
  return keys;
}

/** A process's peak resident memory in MiB (VmHWM), while it runs; undefined once it has gone. */
export function peakRssMiB(pid: number): number | undefined {
  try {
    const kb = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb ? Math.round(Number(kb) / 1024) : undefined;
  } catch {
    return undefined;
  }
}
