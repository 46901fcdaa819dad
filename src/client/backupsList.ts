/**
 * `kohakku-dr backups`: the backup sets in each store (primary, replica), newest first, with
 * their verification — a failed one says what failed — and the point-in-time window when PITR is
 * on. A store that is empty says so, and one whose bucket or directory is missing says that
 * instead: at 3 a.m. "nothing printed" must never be the answer.
 */
import type { Config } from '../config';
import type { BackupSetManifest } from '../domain/manifests';
import { STORE_NAMES, type StoreName } from '../domain/stores';
import { listBackupSets, readPostgresManifest } from '../infra/catalog';
import { createBackupStores } from '../infra/stores';

export interface StoreListing {
  store: StoreName;
  location: string;
  /** missing: no such bucket/directory; unreadable: the listing failed (error says why). */
  state: 'ok' | 'empty' | 'missing' | 'unreadable';
  error?: string;
  sets: number;
}

export interface BackupSetRow {
  id: string;
  /** Per store holding it: verified / FAILED verification / not verified, and the problems. */
  copies: Partial<
    Record<
      StoreName,
      { verdict: 'verified' | 'failed' | 'not verified'; problems: string[]; copyChecked?: boolean }
    >
  >;
  postgres?: { database: string; bytes: number; rows: number }[];
}

export interface BackupsListing {
  stores: StoreListing[];
  sets: BackupSetRow[];
}

const verdictOf = (set: BackupSetManifest) =>
  !set.verification ? 'not verified' : set.verification.ok ? 'verified' : 'failed';

export async function listBackups(config: Config): Promise<BackupsListing> {
  const stores = createBackupStores(config);
  const listings: StoreListing[] = [];
  const rows = new Map<string, BackupSetRow>();
  for (const name of STORE_NAMES) {
    const store = stores[name];
    if (!store) continue;
    const listing: StoreListing = { store: name, location: store.location, state: 'ok', sets: 0 };
    listings.push(listing);
    try {
      if (!(await store.exists())) {
        listing.state = 'missing';
        continue;
      }
      const sets = await listBackupSets(store);
      listing.sets = sets.length;
      if (sets.length === 0) listing.state = 'empty';
      for (const set of sets) {
        const row = rows.get(set.id) ?? { id: set.id, copies: {} };
        rows.set(set.id, row);
        row.copies[name] = {
          verdict: verdictOf(set),
          problems: set.verification?.problems ?? [],
          ...(name === 'replica' ? { copyChecked: Boolean(set.replica) } : {}),
        };
        if (!row.postgres) {
          const pg = await readPostgresManifest(store, set.id);
          row.postgres = (pg?.databases ?? []).map((d) => ({
            database: d.database,
            bytes: d.size,
            rows: d.tables.reduce((n, t) => n + t.rows, 0),
          }));
        }
      }
    } catch (err) {
      listing.state = 'unreadable';
      listing.error = (err as Error).message;
    }
  }
  return { stores: listings, sets: [...rows.values()].sort((a, b) => (a.id < b.id ? 1 : -1)) };
}

/** The listing for a person: one line per store, one per set (and a failed set's first problem). */
export function backupsLines(listing: BackupsListing): string[] {
  const lines: string[] = [];
  for (const s of listing.stores)
    lines.push(
      s.state === 'missing'
        ? `${s.store}: ${s.location} — does not exist (no bucket/directory there: check BACKUP_* settings)`
        : s.state === 'empty'
          ? `${s.store}: no backups in ${s.location}`
          : s.state === 'unreadable'
            ? `${s.store}: ${s.location} — UNREADABLE: ${s.error}`
            : `${s.store}: ${s.location} — ${s.sets} set(s)`,
    );
  const storeNames = listing.stores.map((s) => s.store);
  for (const row of listing.sets) {
    const columns = storeNames.map((n) => {
      const c = row.copies[n];
      const verdict = !c ? '—' : c.verdict === 'failed' ? 'FAILED verification' : c.verdict;
      return `${n}: ${verdict}${c?.copyChecked ? ' (copy checked)' : ''}`;
    });
    const sizes = (row.postgres ?? []).map((d) => `${d.database}: ${d.bytes} B, ${d.rows} rows`).join('  ');
    lines.push(`${row.id}  ${columns.map((c) => c.padEnd(30)).join(' ')} ${sizes}`);
    for (const n of storeNames) {
      const problems = row.copies[n]?.problems ?? [];
      if (row.copies[n]?.verdict !== 'failed' || problems.length === 0) continue;
      const more = problems.length > 1 ? ` (and ${problems.length - 1} more problem(s))` : '';
      lines.push(`    ${n} failed: ${problems[0]}${more}`);
    }
  }
  return lines;
}
