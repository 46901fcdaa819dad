/**
 * A backup id is the UTC second its run started, `YYYYMMDDTHHMMSSZ`: sortable as text, the same
 * for every part of one backup set, and the same again when a step of that run is retried.
 */
export const BACKUP_ID_PATTERN = /^\d{8}T\d{6}Z$/;
export const BACKUP_ID_FORMAT = 'YYYYMMDDTHHMMSSZ';

/** The backup id of an instant. */
export function backupIdAt(time: Date): string {
  return time
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}Z$/, 'Z');
}

/** A backup id's time in ms since the epoch (NaN when it is not a backup id). */
export function backupTime(id: string): number {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(id);
  return m ? Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!) : NaN;
}
