/**
 * Choosing the entries of a pg_dump archive that bring tables back *complete*: pg_restore -t
 * alone restores a table and its rows but none of its indexes, constraints, triggers, sequences
 * (serial or identity, with their values), the foreign keys that point at it, or the views,
 * materialized views and rules built on it. The selection follows the archive's own dependency
 * graph (`pg_restore -l -v` prints each entry's "depends on"), so it takes exactly what
 * `DROP TABLE … CASCADE` would have taken, in any schema, and nothing that merely shares a name.
 */
export interface TocEntry {
  id: string;
  line: string;
  type: string;
  schema: string;
  name: string;
  /** The entry's SQL from the schema-only script ('' for data entries). */
  sql: string;
  /** Ids of the entries this one depends on. */
  dependsOn: string[];
}

/** Entry types `pg_restore -l` prints, longest first so that prefixes match the right one. */
const TYPES = [
  'MATERIALIZED VIEW DATA',
  'SEQUENCE OWNED BY',
  'MATERIALIZED VIEW',
  'CHECK CONSTRAINT',
  'FK CONSTRAINT',
  'SECURITY LABEL',
  'ROW SECURITY',
  'SEQUENCE SET',
  'INDEX ATTACH',
  'TABLE ATTACH',
  'TABLE DATA',
  'DEFAULT ACL',
  'CONSTRAINT',
  'STATISTICS',
  'SEQUENCE',
  'FUNCTION',
  'TRIGGER',
  'DEFAULT',
  'COMMENT',
  'POLICY',
  'SCHEMA',
  'TABLE',
  'INDEX',
  'RULE',
  'VIEW',
  'ACL',
];

/**
 * What can hang off a table and must come back with it. Deliberately not here: other TABLEs
 * (inheritance children and partitions are tables of their own) and FUNCTIONs (a function
 * returning the table's row type survives a move aside; see the module comment in postgresTables).
 */
const DEPENDENT_TYPES = new Set([
  'TABLE DATA',
  'SEQUENCE',
  'SEQUENCE OWNED BY',
  'SEQUENCE SET',
  'DEFAULT',
  'CONSTRAINT',
  'CHECK CONSTRAINT',
  'FK CONSTRAINT',
  'INDEX',
  'TRIGGER',
  'RULE',
  'POLICY',
  'ROW SECURITY',
  'STATISTICS',
  'COMMENT',
  'SECURITY LABEL',
  'ACL',
  'VIEW',
  'MATERIALIZED VIEW',
  'MATERIALIZED VIEW DATA',
]);

/** Types whose names are relations in the entry's schema: the restore creates them there. */
const RELATION_TYPES = new Set(['TABLE', 'VIEW', 'MATERIALIZED VIEW', 'SEQUENCE', 'INDEX']);

/** `pg_restore -l -v` output plus the schema-only script → entries with their SQL and dependencies. */
export function parseToc(verboseList: string, schemaScript: string): TocEntry[] {
  const sqlByKey = new Map<string, string>();
  for (const block of schemaScript.split(/^-- Name: /m).slice(1)) {
    const header = /^(.*); Type: (.*); Schema: (.*); Owner: .*$/m.exec(block);
    // Without its header line; the next entry's "--" comment lines are dropped where used.
    if (header) sqlByKey.set(`${header[2]}|${header[3]}|${header[1]}`, block.slice(block.indexOf('\n') + 1));
  }
  const entries: TocEntry[] = [];
  let last: TocEntry | undefined;
  for (const raw of verboseList.split('\n')) {
    const line = raw.trimEnd();
    const deps = /^;\s*depends on:(.*)$/.exec(line);
    if (deps) {
      last?.dependsOn.push(...deps[1]!.trim().split(/\s+/).filter(Boolean));
      continue;
    }
    const m = /^(\d+); \d+ \d+ (.*)$/.exec(line.trim());
    if (!m) continue;
    last = undefined;
    const rest = m[2]!;
    const type = TYPES.find((t) => rest.startsWith(`${t} `));
    if (!type) continue;
    const words = rest.slice(type.length + 1).split(' ');
    const schema = words[0]!;
    const name = words.slice(1, -1).join(' ');
    last = {
      id: m[1]!,
      line: line.trim(),
      type,
      schema,
      name,
      sql: sqlByKey.get(`${type}|${schema}|${name}`) ?? '',
      dependsOn: [],
    };
    entries.push(last);
  }
  return entries;
}

export function quoteIdent(name: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
}

export interface QualifiedName {
  schema: string;
  name: string;
}

/** A foreign key the restore re-creates: added NOT VALID, checked for orphans, then validated. */
export interface ForeignKeyToRestore {
  /** The table the constraint is on (the referencing side). */
  child: QualifiedName;
  constraint: string;
  /** `ALTER TABLE … ADD CONSTRAINT …` from the archive, with NOT VALID when it must be checked. */
  statement: string;
  /** False when the archive itself had it NOT VALID: then it stays so, unchecked. */
  validate: boolean;
}

export interface Dependent {
  kind: 'view' | 'materialized view' | 'rule';
  /** "public.task_event_summary", or for a rule "task_events_log on public.task_events". */
  name: string;
}

export interface RestoreSelection {
  /** Rendered through `pg_restore -L` before the foreign keys (tables, data, indexes, views…). */
  main: TocEntry[];
  foreignKeys: ForeignKeyToRestore[];
  /** Rendered after the foreign keys: entries that depend on one (a comment on a constraint). */
  afterForeignKeys: TocEntry[];
  /** Views, materialized views and rules re-created because they depend (transitively) on a table. */
  dependents: Dependent[];
  /** Every relation the restore creates, to check beforehand that its name is free. */
  relations: QualifiedName[];
  /** Entries per wanted table (its own entries; dependents counted once, on the first table they reach). */
  entriesPerTable: number[];
}

/** The statement of an FK CONSTRAINT entry, NOT VALID added when the archive validated it. */
function foreignKeyStatement(entry: TocEntry): { statement: string; validate: boolean } {
  const statement = entry.sql
    .split('\n')
    // Comment lines, and psql meta-commands (pg_dump's closing `\unrestrict …` follows the last entry).
    .filter((l) => !l.startsWith('--') && !l.startsWith('\\'))
    .join('\n')
    .trim();
  if (!/^ALTER TABLE [\s\S]* ADD CONSTRAINT [\s\S]* FOREIGN KEY [\s\S]*;$/.test(statement))
    throw new Error(`unexpected SQL for foreign key entry ${entry.line}: ${statement.slice(0, 200)}`);
  if (/\bNOT VALID;$/.test(statement)) return { statement, validate: false };
  return { statement: `${statement.slice(0, -1)} NOT VALID;`, validate: true };
}

/** Every entry needed to restore `tables` whole, following the archive's dependencies. */
export function selectTables(
  entries: TocEntry[],
  tables: { schema: string; table: string }[],
): RestoreSelection {
  const owner = new Map<string, number>();
  const roots = tables.map((t) => {
    const entry = entries.find((e) => e.type === 'TABLE' && e.schema === t.schema && e.name === t.table);
    if (!entry) throw new Error(`the archive has no TABLE entry for ${t.schema}.${t.table}`);
    return entry;
  });
  roots.forEach((r, i) => owner.set(r.id, i));
  // Fixed point over the dependency graph: entries are listed in restore order, dependents
  // mostly after what they depend on, so this converges in a pass or two.
  let grew = true;
  while (grew) {
    grew = false;
    for (const e of entries) {
      if (owner.has(e.id) || !DEPENDENT_TYPES.has(e.type)) continue;
      const reached = e.dependsOn.map((d) => owner.get(d)).find((i) => i !== undefined);
      if (reached === undefined) continue;
      owner.set(e.id, reached);
      grew = true;
    }
  }
  const selected = entries.filter((e) => owner.has(e.id));
  const rootIds = new Set(roots.map((r) => r.id));
  // Table data only for the tables asked for (never another table's rows).
  const chosen = selected.filter(
    (e) => e.type !== 'TABLE DATA' || e.dependsOn.some((d) => rootIds.has(d)) || rootIds.has(e.id),
  );
  const fkIds = new Set(chosen.filter((e) => e.type === 'FK CONSTRAINT').map((e) => e.id));
  const late = new Set<string>();
  let lateGrew = true;
  while (lateGrew) {
    lateGrew = false;
    for (const e of chosen) {
      if (fkIds.has(e.id) || late.has(e.id)) continue;
      if (e.dependsOn.some((d) => fkIds.has(d) || late.has(d))) {
        late.add(e.id);
        lateGrew = true;
      }
    }
  }
  const foreignKeys = chosen
    .filter((e) => fkIds.has(e.id))
    .map((e) => {
      const [table, ...rest] = e.name.split(' ');
      return {
        child: { schema: e.schema, name: table! },
        constraint: rest.join(' '),
        ...foreignKeyStatement(e),
      };
    });
  const dependents: Dependent[] = [];
  for (const e of chosen) {
    if (e.type === 'VIEW') dependents.push({ kind: 'view', name: `${e.schema}.${e.name}` });
    if (e.type === 'MATERIALIZED VIEW')
      dependents.push({ kind: 'materialized view', name: `${e.schema}.${e.name}` });
    if (e.type === 'RULE') {
      const [table, ...rule] = e.name.split(' ');
      dependents.push({ kind: 'rule', name: `${rule.join(' ')} on ${e.schema}.${table}` });
    }
  }
  const entriesPerTable = tables.map((_, i) => chosen.filter((e) => owner.get(e.id) === i).length);
  return {
    main: chosen.filter((e) => !fkIds.has(e.id) && !late.has(e.id)),
    foreignKeys,
    afterForeignKeys: chosen.filter((e) => late.has(e.id)),
    dependents,
    relations: chosen
      .filter((e) => RELATION_TYPES.has(e.type))
      .map((e) => ({ schema: e.schema, name: e.name })),
    entriesPerTable,
  };
}
