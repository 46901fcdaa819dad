/**
 * Objects as of an instant T, for point-in-time recovery: in a bucket with versioning on, each
 * key under the backed-up prefixes gets back the version that was current at T — a server-side
 * copy of that version, so every later version is kept — and a key that did not exist at T is
 * hidden by a delete marker (its versions kept too). Nothing is deleted. A listing page gives a
 * key's versions and its delete markers apart, so each prefix's version list is gathered before
 * keys are decided: memory grows with the versions under one prefix (issue 9's bounded-memory
 * work should page this by key marker). A retry changes nothing more: a key whose current version already
 * has T's content (same ETag) is left alone. Without versioning nothing is rewound, and the
 * report says so (the recovery then restores the nearest object backup set before T instead).
 */
import * as Minio from 'minio';
import type { Config } from '../config';
import { heartbeat } from './heartbeat';

export interface ObjectRewindReport {
  bucket: string;
  at: string;
  versioned: boolean;
  keys: number;
  unchanged: number;
  /** Given back the version current at T (a new version with its content). */
  rewound: number;
  /** Created after T (or deleted before T but recreated): hidden by a delete marker. */
  hidden: number;
  examples: string[];
}

interface Version {
  name: string;
  versionId: string;
  lastModified: Date;
  etag: string;
  isLatest: boolean;
  isDeleteMarker: boolean;
}

export function createObjectRewindActivities({ config, s3 }: { config: Config; s3: Minio.Client }) {
  /** What each key needs to be as at T: nothing, its version at T copied back, or hidden. */
  function decide(versions: Version[], at: number): { action: 'none' | 'copy' | 'hide'; version?: Version } {
    const current = versions.find((v) => v.isLatest) ?? versions[0]!;
    const atT = versions.find((v) => v.lastModified.getTime() <= at);
    if (!atT || atT.isDeleteMarker) return current.isDeleteMarker ? { action: 'none' } : { action: 'hide' };
    if (!current.isDeleteMarker && (current.versionId === atT.versionId || current.etag === atT.etag))
      return { action: 'none' };
    return { action: 'copy', version: atT };
  }

  /**
   * Rewinds (or, with `dryRun`, counts what it would rewind in) Kohakku's bucket to `at`, for
   * the prefixes it backs up.
   */
  async function rewindObjects(input: { at: string; dryRun?: boolean }): Promise<ObjectRewindReport> {
    const bucket = config.kohakkuBucket;
    const at = Date.parse(input.at);
    const report: ObjectRewindReport = {
      bucket,
      at: input.at,
      versioned: false,
      keys: 0,
      unchanged: 0,
      rewound: 0,
      hidden: 0,
      examples: [],
    };
    if (!(await s3.bucketExists(bucket))) return report;
    report.versioned = (await s3.getBucketVersioning(bucket))?.Status === 'Enabled';
    if (!report.versioned) return report;
    const apply = async (listed: Version[]) => {
      // Newest first (servers do not all list a key's versions in that order).
      const versions = [...listed].sort(
        (x, y) =>
          y.lastModified.getTime() - x.lastModified.getTime() || Number(y.isLatest) - Number(x.isLatest),
      );
      report.keys++;
      const { action, version } = decide(versions, at);
      if (action === 'none') {
        report.unchanged++;
        return;
      }
      if (report.examples.length < 5)
        report.examples.push(`${versions[0]!.name} (${action === 'copy' ? 'rewound' : 'hidden'})`);
      if (action === 'copy') {
        report.rewound++;
        if (!input.dryRun)
          await s3.copyObject(
            new Minio.CopySourceOptions({
              Bucket: bucket,
              Object: version!.name,
              VersionID: version!.versionId,
            }),
            new Minio.CopyDestinationOptions({ Bucket: bucket, Object: version!.name }),
          );
      } else {
        report.hidden++;
        if (!input.dryRun) await s3.removeObject(bucket, versions[0]!.name);
      }
      if (report.keys % 200 === 0) heartbeat({ rewinding: bucket, ...report, examples: undefined });
    };
    for (const prefix of config.backupPrefixes) {
      // A listing page holds its versions, then its delete markers: a key's entries are not
      // next to each other, so they are gathered per prefix first.
      const byKey = new Map<string, Version[]>();
      for await (const item of s3.listObjects(bucket, prefix, true, { IncludeVersion: true })) {
        const v = item as unknown as Version;
        if (!v.name) continue;
        const list = byKey.get(v.name);
        if (list) list.push(v);
        else byKey.set(v.name, [v]);
      }
      for (const versions of byKey.values()) await apply(versions);
    }
    return report;
  }

  /** Whether Kohakku's bucket keeps versions (what decides how point-in-time recovery brings objects back). */
  async function bucketVersioning(): Promise<{ bucket: string; exists: boolean; versioned: boolean }> {
    const bucket = config.kohakkuBucket;
    const exists = await s3.bucketExists(bucket);
    return {
      bucket,
      exists,
      versioned: exists && (await s3.getBucketVersioning(bucket))?.Status === 'Enabled',
    };
  }

  return { rewindObjects, bucketVersioning };
}
