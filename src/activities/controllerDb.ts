/** One short-lived session on the Controller's database: the Kohakku model's queries run here. */
import { Client, type QueryResultRow } from 'pg';
import type { Config } from '../config';

export async function withControllerDb<T>(config: Config, fn: (client: Client) => Promise<T>): Promise<T> {
  const pg = config.postgres;
  const client = new Client({
    host: pg.host,
    port: pg.port,
    user: pg.user,
    password: pg.password,
    database: pg.databases.controller,
  });
  client.on('error', () => undefined); // surfaces on the next query instead
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

export async function queryController<R extends QueryResultRow>(config: Config, sql: string): Promise<R[]> {
  return withControllerDb(config, async (c) => (await c.query<R>(sql)).rows);
}
