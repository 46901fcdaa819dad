/**
 * The reference Controller and Dispatcher: each owns one database and is healthy while it can
 * query it. By default they reconnect on their own (a pool); with KOHAKKU_REF_NO_RECONNECT=1
 * they hold one connection and stay unhealthy once it is lost, like a service that must be
 * restarted — which is what exercises the recovery's restart adapter.
 */
import { Client, Pool } from 'pg';
import { modelFromEnv } from './model';
import { onShutdown, serveHealth } from './healthServer';

export function runDatabaseService(role: 'controller' | 'dispatcher'): void {
  const model = modelFromEnv();
  const database = role === 'controller' ? model.postgres.controllerDb : model.postgres.dispatcherDb;
  const probeSql =
    role === 'controller'
      ? 'SELECT count(*) AS n FROM tasks_task'
      : 'SELECT count(*) AS n FROM dispatcher_agent';
  const port = model.ports[role];
  const settings = { ...model.postgres, database, connectionTimeoutMillis: 2000 };

  if (process.env.KOHAKKU_REF_NO_RECONNECT === '1') {
    const client = new Client(settings);
    let lost: string | undefined;
    client.on('error', (err) => (lost = err.message));
    client.on('end', () => (lost ??= 'connection ended'));
    client
      .connect()
      .then(() => {
        const server = serveHealth(port, async () => {
          if (lost) return { ok: false, detail: `lost its database connection (${lost}); needs a restart` };
          const res = await client.query<{ n: string }>(probeSql);
          return { ok: true, detail: { role, database, rows: Number(res.rows[0]!.n) } };
        });
        onShutdown(async () => {
          server.close();
          await client.end().catch(() => undefined);
        });
        console.log(`${role} (no reconnect) on ${port}, database ${database}`);
      })
      .catch((err: Error) => {
        console.error(`${role}: cannot connect to ${database}: ${err.message}`);
        process.exit(1);
      });
    return;
  }

  const pool = new Pool({ ...settings, max: 2 });
  pool.on('error', () => undefined); // an idle connection was terminated: the next query reconnects
  const server = serveHealth(port, async () => {
    const res = await pool.query<{ n: string }>(probeSql);
    return { ok: true, detail: { role, database, rows: Number(res.rows[0]!.n) } };
  });
  onShutdown(async () => {
    server.close();
    await pool.end().catch(() => undefined);
  });
  console.log(`${role} on ${port}, database ${database}`);
}
