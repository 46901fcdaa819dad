/**
 * Short-lived sessions on the configured PostgreSQL server: one per call, closed after, so a
 * dropped or renamed database never leaves a pooled connection behind.
 */
import { Client, type QueryResultRow } from 'pg';
import type { Config } from '../config';

export async function withDatabase<T>(
  config: Config,
  database: string,
  fn: (client: Client) => Promise<T>,
): Promise<T> {
  const pg = config.postgres;
  const client = new Client({ host: pg.host, port: pg.port, user: pg.user, password: pg.password, database });
  client.on('error', () => undefined); // a terminated session surfaces on the next query instead
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
