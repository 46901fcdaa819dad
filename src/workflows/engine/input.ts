/**
 * Strict input for every workflow: one zod schema each, checked before anything else runs. A
 * non-object, an unknown or misspelled field, a wrong type or an out-of-range value fails the
 * workflow at once with InvalidInput naming the field — a run never continues on defaults it
 * guessed, and never stays Running on input it cannot use.
 */
import { z } from 'zod';
import { BACKUP_ID_FORMAT, BACKUP_ID_PATTERN } from '../../domain/backupIds';
import { ErrorType, fail } from '../../domain/errors';
import { STORE_NAMES } from '../../domain/stores';

/** `latest` or a backup id. */
export const backupIdField = z.string().refine((v) => v === 'latest' || BACKUP_ID_PATTERN.test(v), {
  message: `expected "latest" or a backup id (${BACKUP_ID_FORMAT}; kohakku-dr backups lists them)`,
});

/** Which backup store to restore from; by default the first (primary, then replica) that has a verified copy. */
export const fromField = z.enum(STORE_NAMES);

/** Whole seconds, 1 s to a day. */
export const secondsField = z.number().int().min(1).max(86400);

const INSTANT = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(?:Z|[+-](\d{2}):(\d{2}))$/;

/**
 * Whether `v` is an ISO 8601 instant with its zone whose date and time exist: Date.parse alone
 * takes 2026-02-30 for March 2nd, and a recovery must never rewind to an instant nobody meant.
 */
export function isInstant(v: string): boolean {
  const m = INSTANT.exec(v);
  if (!m || Number.isNaN(Date.parse(v))) return false;
  const [year, month, day, hour, minute, second, offsetHours, offsetMinutes] = m
    .slice(1)
    .map((x) => Number(x ?? 0));
  const daysInMonth = new Date(Date.UTC(year!, month!, 0)).getUTCDate(); // day 0 of the next month
  return (
    month! >= 1 &&
    month! <= 12 &&
    day! >= 1 &&
    day! <= daysInMonth &&
    hour! <= 23 &&
    minute! <= 59 &&
    second! <= 59 &&
    offsetHours! <= 14 &&
    offsetMinutes! <= 59
  );
}

/** An ISO 8601 instant with its zone, e.g. 2026-11-25T03:12:00Z. */
export const instantField = z.string().refine(isInstant, {
  message: 'expected an ISO 8601 time with its zone whose date exists, e.g. 2026-11-25T03:12:00Z',
});

/** The fields every recovery accepts. */
export const recoveryCommonFields = {
  /** Show each step, what it would touch and the backup it would use — change nothing. */
  plan: z.boolean().optional(),
  /** Replacing live data is approved in advance; otherwise each destructive step waits for the `approve` signal. */
  confirm: z.boolean().optional(),
  /** When the incident happened, for the RPO; the workflow's start when absent. */
  incidentAt: instantField.optional(),
};

function closest(word: string, candidates: string[]): string | undefined {
  const lower = word.toLowerCase();
  const distance = (a: string, b: string) => {
    const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
    for (let j = 1; j <= b.length; j++) d[0]![j] = j;
    for (let i = 1; i <= a.length; i++)
      for (let j = 1; j <= b.length; j++)
        d[i]![j] = Math.min(
          d[i - 1]![j]! + 1,
          d[i]![j - 1]! + 1,
          d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
        );
    return d[a.length]![b.length]!;
  };
  const best = candidates
    .map((c) => ({ c, d: c.toLowerCase() === lower ? 0 : distance(lower, c.toLowerCase()) }))
    .sort((x, y) => x.d - y.d)[0];
  return best && best.d <= Math.max(2, Math.floor(word.length / 3)) ? best.c : undefined;
}

/** A payload the data converter could not decode arrives as this marker (see src/payloadConverter.ts). */
export interface UndecodablePayload {
  __kohakkuDrUndecodable: string;
}

function isUndecodable(raw: unknown): raw is UndecodablePayload {
  return typeof raw === 'object' && raw !== null && '__kohakkuDrUndecodable' in raw;
}

/**
 * Parses a workflow's input against its schema. `undefined` (no argument at all) counts as `{}`;
 * anything else must be a JSON object that the schema accepts.
 */
export function parseInput<S extends z.ZodObject>(schema: S, raw: unknown, workflow: string): z.infer<S> {
  if (isUndecodable(raw)) {
    throw fail(
      ErrorType.InvalidInput,
      `${workflow}: the input could not be decoded (${raw.__kohakkuDrUndecodable}); send JSON such as {}`,
    );
  }
  const value = raw === undefined ? {} : raw;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw fail(
      ErrorType.InvalidInput,
      `${workflow}: the input must be a JSON object such as {} or {"backupId": "latest"}, got ${JSON.stringify(value)}`,
    );
  }
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const known = Object.keys(schema.shape);
  const problems = parsed.error.issues.map((issue) => {
    if (issue.code === 'unrecognized_keys') {
      return issue.keys
        .map((k) => {
          const hint = closest(k, known);
          return `unknown field "${k}"${hint ? ` (did you mean "${hint}"?)` : ''}`;
        })
        .join('; ');
    }
    const field = issue.path.length ? issue.path.join('.') : '(input)';
    return `field "${field}": ${issue.message}`;
  });
  throw fail(
    ErrorType.InvalidInput,
    `${workflow}: ${problems.join('; ')}. Accepted fields: ${known.join(', ')}`,
    { problems },
  );
}
