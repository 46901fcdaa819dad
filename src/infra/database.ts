/**
 * Short-lived sessions on the configured PostgreSQL server: one per call, closed after, so a
 * dropped or renamed database never leaves a pooled connection behind.
 */
import { Client, type QueryResultRow } from 'pg';
import type { Config } from '../config';

function sessionOn(config: Config, database: string): Client {
  const pg = config.postgres;
  const client = new Client({ host: pg.host, port: pg.port, user: pg.user, password: pg.password, database });
  client.on('error', () => undefined); // a terminated session surfaces on the next query instead
  return client;
}

export async function withDatabase<T>(
  config: Config,
  database: string,
  fn: (client: Client) => Promise<T>,
): Promise<T> {
  const client = sessionOn(config, database);
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** The Controller's database: where the Kohakku model's queries run. */
export function withControllerDb<T>(config: Config, fn: (client: Client) => Promise<T>): Promise<T> {
  return withDatabase(config, config.postgres.databases.controller, fn);
}

export async function queryController<R extends QueryResultRow>(config: Config, sql: string): Promise<R[]> {
  return withControllerDb(config, async (c) => (await c.query<R>(sql)).rows);
}

/** Rows a cursor hands over at a time (forEachPage). */
export const PAGE_ROWS = 10_000;

/**
 * Runs `sql` through a server-side cursor in a read-only transaction of its own and hands its
 * rows to `onPage` at most `pageRows` at a time, so memory stays bounded whatever the result's
 * size. One snapshot for the whole result, as a plain query would have. Returns the row count.
 */
export async function forEachPage<R extends QueryResultRow>(
  client: Client,
  sql: string,
  onPage: (rows: R[]) => Promise<void>,
  pageRows = PAGE_ROWS,
): Promise<number> {
  await client.query('BEGIN READ ONLY');
  try {
    await client.query(`DECLARE kohakku_dr_page NO SCROLL CURSOR FOR ${sql.trim().replace(/;+$/, '')}`);
    let total = 0;
    for (;;) {
      const rows = (await client.query<R>(`FETCH ${pageRows} FROM kohakku_dr_page`)).rows;
      if (rows.length === 0) break;
      total += rows.length;
      await onPage(rows);
      if (rows.length < pageRows) break;
    }
    await client.query('COMMIT');
    return total;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/**
 * The rows of `sql` on the Controller's database as a stream, read through a cursor a page at a
 * time as forEachPage does: for a consumer that pulls (a merge with another sorted stream). The
 * session opens at the first row pulled and ends when the stream does or is closed.
 */
export async function* controllerRows<R extends QueryResultRow>(
  config: Config,
  sql: string,
  pageRows = PAGE_ROWS,
): AsyncGenerator<R> {
  const client = sessionOn(config, config.postgres.databases.controller);
  try {
    await client.connect();
    await client.query('BEGIN READ ONLY');
    await client.query(`DECLARE kohakku_dr_rows NO SCROLL CURSOR FOR ${sql.trim().replace(/;+$/, '')}`);
    for (;;) {
      const rows = (await client.query<R>(`FETCH ${pageRows} FROM kohakku_dr_rows`)).rows;
      yield* rows;
      if (rows.length < pageRows) break;
    }
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Switches to a new WAL segment and waits until PostgreSQL reports it archived: everything
 * committed before the call is then in the archive (pg_stat_archiver, same timeline or later).
 */
export async function switchAndAwaitArchive(client: Client, timeoutMs = 60000): Promise<string> {
  const { wal } = (await client.query<{ wal: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS wal'))
    .rows[0]!;
  for (const until = Date.now() + timeoutMs; Date.now() < until;) {
    const { last } = (
      await client.query<{ last: string | null }>('SELECT last_archived_wal AS last FROM pg_stat_archiver')
    ).rows[0]!;
    if (last && last.slice(8) >= wal.slice(8)) return wal;
    await new Promise((r) => setTimeout(r, 300));
  }
  throw new Error(`WAL ${wal} was not archived within ${Math.round(timeoutMs / 1000)} s`);
}
