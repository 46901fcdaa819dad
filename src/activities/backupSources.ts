/**
 * Which store a recovery reads its backup from. Named (`from`), it is that store. Otherwise it
 * is the first store — primary, then replica — whose choice is a verified copy; when neither
 * has one, the first that has a usable copy at all. The choice says which store, and why the
 * other was passed over (unreachable, no verified copy, not there), so falling back to the
 * replica is never silent.
 */
import { ApplicationFailure } from '@temporalio/common';
import { ErrorType, fail } from '../domain/errors';
import { STORE_NAMES, type StoreName } from '../domain/stores';
import { credentialsRefused } from '../infra/probes';
import type { BackupStores } from '../infra/stores';

interface Choice {
  id: string;
  verified?: boolean;
  choice?: string;
}

export type FromSource<C> = C & { source: StoreName; sourceLocation: string };

const why = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** The refusal of a `from` naming a store this worker does not have. */
export function storeNotConfigured(from: unknown) {
  return fail(
    ErrorType.InvalidInput,
    from === 'replica'
      ? 'no replica store is configured (BACKUP_REPLICA=none): restore from the primary, or configure BACKUP_REPLICA on the worker'
      : `unknown backup store "${String(from)}": expected primary or replica`,
  );
}

export async function resolveAcrossStores<A, C extends Choice>(
  from: StoreName | undefined,
  on: Partial<Record<StoreName, A>>,
  resolve: (activities: A) => Promise<C>,
  stores: BackupStores,
): Promise<FromSource<C>> {
  const located = (c: C, name: StoreName, note?: string): FromSource<C> => ({
    ...c,
    source: name,
    sourceLocation: stores[name]!.location,
    choice: `${c.choice ?? c.id} — from the ${name} store (${stores[name]!.location})${note ? `; ${note}` : ''}`,
  });
  if (from) {
    const activities = on[from];
    if (!activities) throw storeNotConfigured(from);
    return located(await resolve(activities), from, 'as requested');
  }
  const passedOver: string[] = [];
  const found: { name: StoreName; choice: C }[] = [];
  const failures: { name: StoreName; err: unknown }[] = [];
  for (const name of STORE_NAMES) {
    const activities = on[name];
    if (!activities) continue;
    let choice: C;
    try {
      choice = await resolve(activities);
    } catch (err) {
      // Bad input is bad in every store.
      if (err instanceof ApplicationFailure && err.type === ErrorType.InvalidInput) throw err;
      failures.push({ name, err });
      passedOver.push(
        `${name} (${stores[name]!.location}) ${err instanceof ApplicationFailure ? 'has none' : 'UNREACHABLE'}: ${why(err)}`,
      );
      continue;
    }
    if (choice.verified) return located(choice, name, passedOver.join('; ') || undefined);
    found.push({ name, choice });
    passedOver.push(`${name} has no verified copy (its choice: ${choice.id}, NOT verified)`);
  }
  if (found.length > 0) {
    const first = found[0]!;
    return located(
      first.choice,
      first.name,
      passedOver.filter((p) => !p.startsWith(`${first.name} has no verified`)).join('; ') || undefined,
    );
  }
  const message = failures.map((f) => `${f.name} (${stores[f.name]!.location}): ${why(f.err)}`).join('; ');
  const refused = failures.filter((f) => credentialsRefused(f.err));
  const infrastructure = failures.find(
    (f) => !(f.err instanceof ApplicationFailure) && !credentialsRefused(f.err),
  );
  // A store that could not be read may come back: retried by policy, naming every store's failure.
  if (infrastructure) throw new Error(`no backup store could be read: ${message}`);
  // Refused credentials do not heal within the run (the worker reads its settings at start).
  if (refused.length > 0)
    throw fail(
      ErrorType.EndpointAuthFailed,
      `no backup store could be read: ${message} — ${refused.map((f) => f.name).join(' and ')} refused the worker's credentials: fix the key (the worker's settings, or the server's) and start the recovery again`,
    );
  const first = failures[0]!.err as ApplicationFailure;
  throw ApplicationFailure.create({
    type: first.type ?? ErrorType.BackupNotFound,
    message: failures.length > 1 ? `in no backup store: ${message}` : why(first),
    nonRetryable: true,
  });
}
