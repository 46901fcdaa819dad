/**
 * Choosing the entries of a pg_dump archive that bring one table back *complete*: pg_restore
 * -t alone restores the table and its rows but none of its indexes, constraints, triggers,
 * owned sequences (with their values) or the foreign keys that point at it. Works from the
 * archive's TOC (`pg_restore -l`) and the SQL of each entry (`pg_restore -s -f -`).
 */
export interface TocEntry {
  id: string;
  line: string;
  type: string;
  schema: string;
  name: string;
  sql: string;
}

const TYPES = [
  'SEQUENCE OWNED BY',
  'MATERIALIZED VIEW DATA',
  'MATERIALIZED VIEW',
  'FK CONSTRAINT',
  'SEQUENCE SET',
  'TABLE DATA',
  'DEFAULT ACL',
  'CONSTRAINT',
  'SEQUENCE',
  'FUNCTION',
  'TRIGGER',
  'DEFAULT',
  'COMMENT',
  'SCHEMA',
  'TABLE',
  'INDEX',
  'VIEW',
  'ACL',
];

/** `pg_restore -l` lines plus the schema script's blocks → entries with their SQL. */
export function parseToc(list: string, schemaScript: string): TocEntry[] {
  const sqlByKey = new Map<string, string>();
  const blocks = schemaScript.split(/^-- Name: /m).slice(1);
  for (const block of blocks) {
    const header = /^(.*); Type: (.*); Schema: (.*); Owner: .*$/m.exec(block);
    if (header) sqlByKey.set(`${header[2]}|${header[3]}|${header[1]}`, block);
  }
  const entries: TocEntry[] = [];
  for (const line of list.split('\n')) {
    const m = /^(\d+); \d+ \d+ (.*)$/.exec(line.trim());
    if (!m) continue;
    const rest = m[2]!;
    const type = TYPES.find((t) => rest.startsWith(`${t} `));
    if (!type) continue;
    const words = rest.slice(type.length + 1).split(' ');
    const schema = words[0]!;
    const name = words.slice(1, -1).join(' ');
    entries.push({
      id: m[1]!,
      line,
      type,
      schema,
      name,
      sql: sqlByKey.get(`${type}|${schema}|${name}`) ?? '',
    });
  }
  return entries;
}

export function quoteIdent(name: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
}

export interface TableSelection {
  entries: TocEntry[];
  /** Foreign keys on other tables that reference a restored table: dropped, then recreated from the backup. */
  referencingForeignKeys: { table: string; constraint: string }[];
}

/** Every entry needed to restore `schema.table` whole. */
export function selectTable(entries: TocEntry[], schema: string, table: string): TableSelection {
  const qualified = `${quoteIdent(schema)}.${quoteIdent(table)}`;
  const ownedSequences = new Set(
    entries
      .filter(
        (e) =>
          e.type === 'SEQUENCE OWNED BY' && e.schema === schema && e.sql.includes(`OWNED BY ${qualified}.`),
      )
      .map((e) => e.name),
  );
  const onTable = (e: TocEntry) => e.name.startsWith(`${table} `);
  const selected = entries.filter((e) => {
    if (e.schema !== schema) return false;
    switch (e.type) {
      case 'TABLE':
      case 'TABLE DATA':
        return e.name === table;
      case 'SEQUENCE':
      case 'SEQUENCE OWNED BY':
      case 'SEQUENCE SET':
        return ownedSequences.has(e.name);
      case 'DEFAULT':
      case 'CONSTRAINT':
      case 'TRIGGER':
        return onTable(e);
      case 'FK CONSTRAINT':
        return onTable(e) || e.sql.includes(`REFERENCES ${qualified}(`);
      case 'INDEX':
        return new RegExp(` ON (ONLY )?${qualified.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} `).test(e.sql);
      case 'COMMENT':
        return e.name === `TABLE ${table}` || e.name.startsWith(`COLUMN ${table}.`);
      case 'ACL':
        return e.name === `TABLE ${table}` || [...ownedSequences].some((s) => e.name === `SEQUENCE ${s}`);
      default:
        return false;
    }
  });
  const referencingForeignKeys = selected
    .filter((e) => e.type === 'FK CONSTRAINT' && !onTable(e))
    .map((e) => {
      const [fkTable, ...rest] = e.name.split(' ');
      return { table: fkTable!, constraint: rest.join(' ') };
    });
  return { entries: selected, referencingForeignKeys };
}
