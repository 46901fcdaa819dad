/**
 * Objects as of an instant T, for point-in-time recovery: in a bucket with versioning on, each
 * key under the backed-up prefixes gets back the version that was current at T — a server-side
 * copy of that version, so every later version is kept — and a key that did not exist at T is
 * hidden by a delete marker (its versions kept too). Nothing is deleted. The versions are read a
 * listing page at a time: a page covers a range of keys in key order but gives their versions and
 * their delete markers apart, so a key is decided once its page is read — except the page's last
 * key, whose versions may go on in the next page and are carried over. Memory holds one page and
 * one key's versions, whatever the bucket holds. A retry changes nothing more: a key whose
 * current version already has T's content (same ETag) is left alone. Without versioning nothing
 * is rewound, and the report says so (the recovery then restores the nearest object backup set
 * before T instead).
 */
import * as Minio from 'minio';
import type { Config } from '../config';
import { s3KeyOrder, versionPages, type ObjectVersion } from '../infra/s3';
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

/** S3's largest listing page (a test lists in smaller ones to cross page boundaries often). */
const VERSIONS_PER_PAGE = 1000;

export function createObjectRewindActivities({
  config,
  s3,
  versionsPerPage = VERSIONS_PER_PAGE,
}: {
  config: Pick<Config, 'kohakkuBucket' | 'backupPrefixes'>;
  s3: Minio.Client;
  versionsPerPage?: number;
}) {
  /** What each key needs to be as at T: nothing, its version at T copied back, or hidden. */
  function decide(
    versions: ObjectVersion[],
    at: number,
  ): { action: 'none' | 'copy' | 'hide'; version?: ObjectVersion } {
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
    const apply = async (listed: ObjectVersion[]) => {
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
      let carried: ObjectVersion[] = [];
      for await (const { versions, lastKey } of versionPages(s3, bucket, prefix, versionsPerPage)) {
        const byKey = new Map<string, ObjectVersion[]>();
        for (const v of [...carried, ...versions]) {
          const list = byKey.get(v.name);
          if (list) list.push(v);
          else byKey.set(v.name, [v]);
        }
        // The page's last key waits for the rest of its versions in the next page.
        carried = lastKey === undefined ? [] : (byKey.get(lastKey) ?? []);
        for (const key of [...byKey.keys()].sort(s3KeyOrder))
          if (key !== lastKey) await apply(byKey.get(key)!);
      }
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
