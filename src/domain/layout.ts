/**
 * The backup store's layout: every key a backup, a set, a lock or the object mirror lives under.
 * A directory store and an S3 bucket hold the same keys; a part is complete only once its
 * manifest.json is written, last.
 */
export const MANIFEST = 'manifest.json';

export const postgresManifestKey = (backupId: string) => `postgres/${backupId}/${MANIFEST}`;
export function dumpKey(backupId: string, database: string): string {
  return `postgres/${backupId}/${database}-${backupId.slice(0, 8)}.dump`;
}

export const redisManifestKey = (backupId: string) => `redis/${backupId}/${MANIFEST}`;
export function redisBackupKey(backupId: string): string {
  return `redis/${backupId}/dump-${backupId.slice(0, 8)}.rdb`;
}

export const objectsManifestKey = (backupId: string) => `objects/${backupId}/${MANIFEST}`;
export const objectIndexKey = (backupId: string) => `objects/${backupId}/index.json`;
/** A mirror's checkpoints while it runs (entries already hashed and stored), removed when it completes. */
export const objectProgressPrefix = (backupId: string) => `objects/${backupId}/progress/`;
/** A partitioned mirror's finished partitions (their entries), merged into the index at the end. */
export const objectPartitionsPrefix = (backupId: string) => `objects/${backupId}/partitions/`;
export const objectPartitionKey = (backupId: string, index: number, of: number) =>
  `${objectPartitionsPrefix(backupId)}${index}-of-${of}.json`;
/**
 * Mirrored objects, shared by every set that holds them. Since 0.2 a blob's key is its content,
 * `sha256-<hex>-<size>`; 0.1 keyed blobs by ETag (`<etag>-<size>`), and its indexes name those
 * keys, which stay valid.
 */
export const BLOB_PREFIX = 'objects/blobs/';
export const contentBlobKey = (sha256: string, size: number) => `${BLOB_PREFIX}sha256-${sha256}-${size}`;
/**
 * Blobs retention found unreferenced, and since when: a blob is removed only once it has been
 * unreferenced for BLOB_GC_GRACE_HOURS, so a mirror still running (its blobs stored, its index not
 * yet written) never loses them.
 */
export const BLOB_GC_CANDIDATES_KEY = 'objects/gc-candidates.json';
export const BLOB_GC_GRACE_HOURS = 24;

export const setManifestKey = (backupId: string) => `sets/${backupId}/${MANIFEST}`;

/** A restore's hold on a backup, so retention leaves it alone while the lease lasts. */
export const LOCK_PREFIX = 'locks/';
export const lockKey = (backupId: string, holder: string) =>
  `${LOCK_PREFIX}${backupId}/${encodeURIComponent(holder)}.json`;

/** Top-level parts a backup id can appear under. */
export const BACKUP_PARTS = ['postgres/', 'redis/', 'objects/', 'sets/', 'locks/'] as const;
