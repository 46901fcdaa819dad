/**
 * The search attributes a recovery started by kohakku-dr carries where the Temporal server has
 * them registered — procedure, target and requested backup — so the UI and `temporal workflow
 * list --query "KohakkuDrProcedure='fullCluster'"` find runs by what they recover. The embedded
 * stack and `kohakku-dr up` register them (`--search-attribute KohakkuDrProcedure=Keyword`); on
 * another server an operator registers them once (`temporal operator search-attribute create`),
 * and until then runs simply go without.
 */
export const SEARCH_ATTRIBUTES = {
  procedure: 'KohakkuDrProcedure',
  target: 'KohakkuDrTarget',
  backup: 'KohakkuDrBackupId',
} as const;

/** `temporal server start-dev` flags that register them. */
export const searchAttributeFlags = (): string[] =>
  Object.values(SEARCH_ATTRIBUTES).flatMap((name) => ['--search-attribute', `${name}=Keyword`]);
