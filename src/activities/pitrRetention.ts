/**
 * Base backup retention, decided here and carried out by pgBackRest (`expire --set`): pgBackRest's
 * own time-based retention cannot know which recovery point the nightly proved, or which base
 * backup a recovery in flight is restoring, so its automatic expire is told to keep everything
 * (see PGBACKREST_OPTIONS) and this policy picks what goes. A full backup goes with its
 * differentials and incrementals; then pgBackRest expires the WAL older than the oldest backup
 * that remains (it keeps all WAL from there on, so every remaining backup recovers to any later
 * instant).
 *
 * Kept: every chain whose full backup ended within BACKUP_RETENTION_DAYS of `asOf`, the newest
 * one that ended before (it is what recovers to the first instant of the retention window), the
 * chain of the newest verified recovery point whatever its age, every chain a running recovery
 * holds a lease on, and always the newest full backup.
 */
import { PITR_LEASES_PREFIX, type BaseBackupLease, type BaseBackupVerdicts } from '../domain/pitr';
import { ErrorType, fail } from '../domain/errors';
import { cancellationSignal } from './heartbeat';
import { iso, type PitrKit } from './pitrKit';

export interface BaseBackupRef {
  label: string;
  /** When the backup ended (ISO). */
  stop: string;
}

export interface BaseBackupRetention {
  /** Full backups to expire (each with its dependents), oldest first. */
  expire: string[];
  kept: { full: string; reason: string }[];
}

/** The full backup a backup's chain starts from: pgBackRest labels a dependent `<full>_<own>`. */
export const fullOf = (label: string) => label.split('_')[0]!;

/** Which full backup chains go, as of `asOf`; `protect` names backups (any in a chain) that must stay, and why. */
export function baseBackupRetention(input: {
  backups: BaseBackupRef[];
  asOf: number;
  retentionDays: number;
  protect: { label: string; reason: string }[];
}): BaseBackupRetention {
  const cutoff = input.asOf - input.retentionDays * 86400_000;
  const fulls = [...new Set(input.backups.map((b) => fullOf(b.label)))]
    .map((full) => ({ full, stop: Date.parse(input.backups.find((b) => b.label === full)?.stop ?? '') }))
    .filter((f) => !Number.isNaN(f.stop))
    .sort((a, b) => a.stop - b.stop);
  const newestBeforeCutoff = [...fulls].reverse().find((f) => f.stop < cutoff)?.full;
  const protectedFulls = new Map<string, string>();
  for (const p of input.protect)
    if (!protectedFulls.has(fullOf(p.label))) protectedFulls.set(fullOf(p.label), p.reason);
  const result: BaseBackupRetention = { expire: [], kept: [] };
  fulls.forEach(({ full, stop }, i) => {
    const reason =
      i === fulls.length - 1
        ? 'newest full backup'
        : stop >= cutoff
          ? `within retention (${input.retentionDays} days)`
          : full === newestBeforeCutoff
            ? `recovers to the start of the retention window (${new Date(cutoff).toISOString()})`
            : protectedFulls.get(full);
    if (reason) result.kept.push({ full, reason });
    else result.expire.push(full);
  });
  return result;
}

export interface BaseBackupExpiry extends BaseBackupRetention {
  asOf: string;
  retentionDays: number;
  /** The newest verified recovery point's base backup, when there is one. */
  newestVerified?: string;
}

export function createPitrRetentionActivities(kit: PitrKit) {
  const { config, store, tool, readVerdicts, writeVerdicts } = kit;

  /** The base backups running recoveries hold (unexpired leases). */
  async function leasedBackups(asOf: number): Promise<{ label: string; reason: string }[]> {
    const held: { label: string; reason: string }[] = [];
    for (const { key } of await store.list(PITR_LEASES_PREFIX)) {
      const label = key.slice(PITR_LEASES_PREFIX.length).split('/')[0]!;
      const lease = await store.getJson<Partial<BaseBackupLease>>(key).catch(() => undefined);
      const expires = Date.parse(lease?.expiresAt ?? '');
      // An unreadable lease protects (it may be a recovery's); an expired one is removed.
      if (Number.isNaN(expires) || expires > asOf)
        held.push({ label, reason: `in use by recovery ${lease?.holder ?? key}` });
      else await store.removeKeys([key]);
    }
    return held;
  }

  /** The newest verified recovery point still in the repository. */
  function newestVerifiedOf(verdicts: BaseBackupVerdicts, labels: Set<string>) {
    return Object.entries(verdicts)
      .filter(([label, v]) => v.ok && labels.has(label))
      .sort(([, a], [, b]) => Date.parse(a.verifiedAt) - Date.parse(b.verifiedAt))
      .pop();
  }

  /**
   * Expires the base backups past retention as of `asOf` (the workflow's time) with
   * `pgbackrest expire --set`, keeping what baseBackupRetention keeps; the verdicts of expired
   * backups are dropped.
   */
  async function expireBaseBackups(input: {
    asOf: string;
    retentionDays?: number;
  }): Promise<BaseBackupExpiry> {
    const retentionDays = input.retentionDays ?? config.retentionDays;
    const asOf = Date.parse(input.asOf);
    if (Number.isNaN(asOf))
      throw fail(ErrorType.InvalidInput, `asOf must be an ISO instant, got ${input.asOf}`);
    if (!Number.isInteger(retentionDays) || retentionDays < 7 || retentionDays > 30)
      throw fail(ErrorType.InvalidInput, `retention must be 7 to 30 days, got ${retentionDays}`);
    const pg = tool();
    const info = await pg.info();
    const backups = info.backup.filter((b) => !b.error);
    const labels = new Set(backups.map((b) => b.label));
    const verdicts = await readVerdicts();
    const verified = newestVerifiedOf(verdicts, labels);
    const protect = await leasedBackups(asOf);
    if (verified)
      protect.push({
        label: verified[0],
        reason: `newest verified recovery point (${verified[0]}, verified ${verified[1].verifiedAt})`,
      });
    const decision = baseBackupRetention({
      backups: backups.map((b) => ({ label: b.label, stop: iso(b.timestamp.stop) })),
      asOf,
      retentionDays,
      protect,
    });
    for (const full of decision.expire)
      await pg.run([`--set=${full}`, 'expire'], { signal: cancellationSignal() });
    // WAL older than the oldest remaining backup: pgBackRest expires archive only when there are
    // at least as many full backups as the archive retention, so that is set to what remains.
    const remaining = (await pg.info()).backup;
    const fulls = new Set(remaining.map((b) => fullOf(b.label))).size;
    if (fulls > 0)
      await pg.run(['--repo1-retention-archive-type=full', `--repo1-retention-archive=${fulls}`, 'expire'], {
        signal: cancellationSignal(),
      });
    if (decision.expire.length) await writeVerdicts({ keep: new Set(remaining.map((b) => b.label)) });
    return { asOf: input.asOf, retentionDays, newestVerified: verified?.[0], ...decision };
  }

  return { expireBaseBackups };
}
