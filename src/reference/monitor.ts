/**
 * The reference Monitor: when it starts, and then every KOHAKKU_REF_MONITOR_INTERVAL seconds
 * (0: only at start), it re-registers the running containers from Postgres into Redis and
 * removes registrations Postgres no longer backs. Passes never overlap: the next starts an
 * interval after the last one ended (at 1,000,000 tasks a pass takes seconds, and a pass that read
 * Postgres before a re-dispatch would otherwise register again what a later pass removed).
 */
import { Redis } from 'ioredis';
import { Pool } from 'pg';
import { modelFromEnv } from './model';
import { onShutdown, serveHealth } from './healthServer';

const model = modelFromEnv();
const intervalSeconds = Number(process.env.KOHAKKU_REF_MONITOR_INTERVAL ?? '10');
const pool = new Pool({
  ...model.postgres,
  database: model.postgres.controllerDb,
  max: 1,
  connectionTimeoutMillis: 2000,
});
pool.on('error', () => undefined);
const redis = new Redis({ host: model.redis.host, port: model.redis.port, maxRetriesPerRequest: 1 });
redis.on('error', () => undefined);
let last: { at: string; registered: number; removed: number } | { at: string; error: string } | undefined;

async function reconcile(): Promise<void> {
  try {
    const res = await pool.query<{ id: string; container: string }>(
      `SELECT id, container FROM tasks_task WHERE status = 'running' AND container IS NOT NULL`,
    );
    const key = model.redis.containersKey;
    const active = new Set(res.rows.map((r) => r.container));
    const registered = await redis.smembers(key);
    const stale = registered.filter((c) => !active.has(c));
    let pipe = redis.pipeline();
    for (const row of res.rows) {
      pipe.sadd(key, row.container);
      pipe.hset(`${model.redis.prefix}task:${row.id}`, 'status', 'running', 'container', row.container);
      if (pipe.length >= 5000) {
        await pipe.exec();
        pipe = redis.pipeline();
      }
    }
    if (stale.length) pipe.srem(key, ...stale);
    await pipe.exec();
    last = { at: new Date().toISOString(), registered: active.size, removed: stale.length };
  } catch (err) {
    last = { at: new Date().toISOString(), error: (err as Error).message };
  }
}

const server = serveHealth(model.ports.monitor, async () => ({ ok: true, detail: last ?? 'starting' }));
let timer: NodeJS.Timeout | undefined;
let stopped = false;
const nextPass = () => {
  if (intervalSeconds > 0 && !stopped)
    timer = setTimeout(() => void reconcile().then(nextPass), intervalSeconds * 1000);
};
void reconcile().then(() => {
  console.log(`monitor on ${model.ports.monitor}: ${JSON.stringify(last)}`);
  nextPass();
});
onShutdown(async () => {
  stopped = true;
  if (timer) clearTimeout(timer);
  server.close();
  redis.disconnect();
  await pool.end().catch(() => undefined);
});
