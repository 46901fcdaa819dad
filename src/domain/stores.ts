/**
 * The backup stores a backup can be read from: the primary (where every backup is written) and
 * the replica (the second copy of each verified set). Shared by workflows, activities and the CLI.
 */
export const STORE_NAMES = ['primary', 'replica'] as const;
export type StoreName = (typeof STORE_NAMES)[number];

/** Added to the input of every activity that reads a backup: which store to read it from (primary). */
export interface FromStore {
  from?: StoreName;
}
