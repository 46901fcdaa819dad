/**
 * Reading the backup store's catalog: which backup ids exist, which parts each has, their set
 * manifests and Postgres manifests; and the one rule that chooses the backup a recovery uses,
 * with the reasons every newer one was passed over. Used by the activities, the CLI's listings
 * and the drill alike, so none of them reaches into another's code to find a backup.
 */
import { BACKUP_ID_FORMAT, BACKUP_ID_PATTERN, backupTime } from '../domain/backupIds';
import { ErrorType, fail } from '../domain/errors';
import { BACKUP_PARTS, MANIFEST, postgresManifestKey, setManifestKey } from '../domain/layout';
import type { BackupSetManifest, PostgresManifest } from '../domain/manifests';
import type { StoreName } from '../domain/stores';
import type { BackupStore } from './backupStore';

export async function readSet(store: BackupStore, id: string): Promise<BackupSetManifest | undefined> {
  return store.getJson<BackupSetManifest>(setManifestKey(id));
}

export async function readPostgresManifest(
  store: BackupStore,
  id: string,
): Promise<PostgresManifest | undefined> {
  return store.getJson<PostgresManifest>(postgresManifestKey(id));
}

/** Every backup id present in the store under any part, newest first. */
export async function allBackupIds(store: BackupStore): Promise<string[]> {
  const ids = new Set<string>();
  // One level under each part (`objects/` also holds every content blob: never walked here).
  for (const part of BACKUP_PARTS)
    for (const id of await store.listChildren(part)) if (BACKUP_ID_PATTERN.test(id)) ids.add(id);
  return [...ids].sort().reverse();
}

/** Every complete backup set (one with a set manifest), newest first. */
export async function listBackupSets(store: BackupStore): Promise<BackupSetManifest[]> {
  const out: BackupSetManifest[] = [];
  for (const id of await allBackupIds(store)) {
    const set = await readSet(store, id);
    if (set) out.push(set);
  }
  return out;
}

/** The parts a backup id can have, each complete once its manifest is written. */
export const BACKUP_PART_NAMES = ['postgres', 'redis', 'objects'] as const;
export type BackupPartName = (typeof BACKUP_PART_NAMES)[number];

/** What the store holds for one backup id. */
export interface CatalogEntry {
  id: string;
  /** Parts whose manifest is written (complete parts). */
  parts: BackupPartName[];
  /** The set manifest, when the set was completed. */
  set?: BackupSetManifest;
  /** Why the set manifest could not be read (damaged or altered): the set is passed over, never used. */
  damaged?: string;
}

/** Every backup id with at least one complete part or a set manifest, newest first. */
export async function readCatalog(store: BackupStore): Promise<CatalogEntry[]> {
  const parts = new Map<string, Set<BackupPartName>>();
  const withSet = new Set<string>();
  // The ids one level under each part, each with its manifest looked up: never a walk of the
  // blobs under objects/.
  const note = async (prefix: string, found: (id: string) => void) => {
    for (const id of await store.listChildren(`${prefix}/`))
      if (BACKUP_ID_PATTERN.test(id) && (await store.stat(`${prefix}/${id}/${MANIFEST}`))) found(id);
  };
  for (const part of BACKUP_PART_NAMES) {
    await note(part, (id) => {
      if (!parts.has(id)) parts.set(id, new Set());
      parts.get(id)!.add(part);
    });
  }
  await note('sets', (id) => withSet.add(id));
  const ids = [...new Set([...parts.keys(), ...withSet])].sort().reverse();
  const out: CatalogEntry[] = [];
  for (const id of ids) {
    const found = { id, parts: BACKUP_PART_NAMES.filter((p) => parts.get(id)?.has(p)) };
    try {
      out.push({ ...found, set: withSet.has(id) ? await readSet(store, id) : undefined });
    } catch (err) {
      // One damaged set manifest must not hide every other backup: it is listed, and passed over.
      if ((err as { type?: string }).type !== ErrorType.BackupCorrupt) throw err;
      out.push({ ...found, damaged: (err as Error).message });
    }
  }
  return out;
}

/** The backup a recovery will use, and why: `choice` says it in words, `skipped` lists every newer id passed over. */
export interface BackupChoice {
  id: string;
  createdAt: string;
  /** Its set passed verification (a restore from it was proven). */
  verified: boolean;
  choice: string;
  skipped: { id: string; reason: string }[];
  /** The store it is read from, once resolved across stores. */
  source?: StoreName;
  sourceLocation?: string;
}

export interface BackupRequest {
  /** A backup id, or undefined / "latest" for the newest verified set. */
  backupId?: string;
  /**
   * What the recovery needs of a backup: a whole set (default), or only its Postgres dumps (a
   * Postgres backup taken on its own, with no set, is then usable when named or as a fallback).
   */
  needs?: 'set' | 'postgres';
  /**
   * Only backups complete by this instant (ISO): point-in-time recovery's objects, in a bucket
   * without versioning, come from the nearest set before the target.
   */
  before?: string;
}

function whyNotVerified(entry: CatalogEntry): string {
  const v = entry.set?.verification;
  if (entry.damaged) return `DAMAGED: ${entry.damaged}`;
  if (!entry.set) {
    const missing = BACKUP_PART_NAMES.filter((p) => !entry.parts.includes(p));
    return entry.parts.length === 0
      ? 'incomplete: no part was completed, no set manifest'
      : `incomplete: has ${entry.parts.join(', ')}${missing.length ? `, no ${missing.join(', ')}` : ''}; no set manifest`;
  }
  if (!v) return 'not verified yet';
  if (!v.ok) return `verification FAILED (${v.verifiedAt}): ${v.problems[0] ?? 'no problem recorded'}`;
  return 'verified';
}

const createdAtOf = (entry: CatalogEntry) =>
  entry.set?.createdAt ?? new Date(backupTime(entry.id)).toISOString();

/**
 * Chooses a backup from the catalog (newest first). A named id is used as named (InvalidInput
 * when it is not an id, BackupNotFound when it is not there). "latest" is the newest set whose
 * verification passed; every newer id is listed in `skipped` with its reason. Only when no set
 * passed verification does it fall back, to the newest usable backup whose verification did not
 * fail, and `choice` says so in capitals; when every one failed, nothing is chosen. With
 * `before`, only backups complete by then are considered.
 */
export function chooseBackup(everything: CatalogEntry[], request: BackupRequest = {}): BackupChoice {
  const needs = request.needs ?? 'set';
  const before = request.before === undefined ? undefined : Date.parse(request.before);
  const catalog =
    before === undefined ? everything : everything.filter((e) => Date.parse(createdAtOf(e)) <= before);
  const usable = (e: CatalogEntry) => (needs === 'set' ? !!e.set : e.parts.includes('postgres'));
  const what = `${needs === 'set' ? 'backup set' : 'Postgres backup'}${request.before ? ` complete before ${request.before}` : ''}`;
  const reason = (e: CatalogEntry) =>
    usable(e) || needs === 'set'
      ? whyNotVerified(e)
      : `no Postgres dump (${e.parts.length ? `has ${e.parts.join(', ')}` : 'no part was completed'})`;
  const wanted = request.backupId && request.backupId !== 'latest' ? request.backupId : undefined;
  if (wanted !== undefined) {
    if (!BACKUP_ID_PATTERN.test(wanted))
      throw fail(ErrorType.InvalidInput, `"${wanted}" is not a backup id (${BACKUP_ID_FORMAT} or latest)`);
    const damaged = catalog.find((e) => e.id === wanted && e.damaged);
    if (damaged) throw fail(ErrorType.BackupCorrupt, `${what} ${wanted}: ${damaged.damaged}`);
    const entry = catalog.find((e) => e.id === wanted && usable(e));
    if (!entry)
      throw fail(ErrorType.BackupNotFound, `${what} ${wanted} not found (kohakku-dr backups lists them)`);
    const state = whyNotVerified(entry);
    return {
      id: entry.id,
      createdAt: createdAtOf(entry),
      verified: entry.set?.verification?.ok === true,
      choice: `${what} ${entry.id}, as requested (${state === 'verified' ? 'verified' : `NOT verified: ${state}`})`,
      skipped: [],
    };
  }
  const newestVerified = catalog.findIndex((e) => usable(e) && e.set?.verification?.ok === true);
  if (newestVerified >= 0) {
    const entry = catalog[newestVerified]!;
    const skipped = catalog.slice(0, newestVerified).map((e) => ({ id: e.id, reason: reason(e) }));
    return {
      id: entry.id,
      createdAt: createdAtOf(entry),
      verified: true,
      choice:
        `newest verified ${what}: ${entry.id}` +
        (skipped.length ? ` (${skipped.length} newer backup(s) skipped, see skipped)` : ''),
      skipped,
    };
  }
  const fallback = catalog.findIndex((e) => usable(e) && e.set?.verification?.ok !== false);
  if (fallback < 0) {
    const failed = catalog.filter(usable);
    throw fail(
      ErrorType.BackupNotFound,
      failed.length === 0
        ? `no ${what} at all in the backup store: run the nightly backup first`
        : `no usable ${what}: every one failed verification (newest ${failed[0]!.id}: ${whyNotVerified(failed[0]!)}); name one explicitly to restore it anyway`,
    );
  }
  const entry = catalog[fallback]!;
  const skipped = catalog.slice(0, fallback).map((e) => ({ id: e.id, reason: reason(e) }));
  return {
    id: entry.id,
    createdAt: createdAtOf(entry),
    verified: false,
    choice:
      `NO VERIFIED ${what.toUpperCase()}: falling back to the newest ${what} that did not fail verification, ` +
      `${entry.id} (${whyNotVerified(entry)}); nothing proves it restorable (kohakku-dr verify ${entry.id})`,
    skipped,
  };
}
