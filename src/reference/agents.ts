/**
 * Simulated agents: every live container checks back every KOHAKKU_REF_AGENT_INTERVAL seconds,
 * writing its heartbeat and progress to Redis (never to Postgres, so a restored database stays
 * comparable with its backup). Lost agents are simply absent from the list.
 */
import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { modelFromEnv } from './model';
import { liveAgentsFile } from './seed';
import { onShutdown } from './healthServer';

const model = modelFromEnv();
const intervalSeconds = Number(process.env.KOHAKKU_REF_AGENT_INTERVAL ?? '5');
const containers = JSON.parse(readFileSync(liveAgentsFile(model), 'utf8')) as string[];
const redis = new Redis({ host: model.redis.host, port: model.redis.port, maxRetriesPerRequest: 1 });
redis.on('error', () => undefined);

async function checkIn(): Promise<void> {
  const now = Date.now();
  for (let i = 0; i < containers.length; i += 5000) {
    const pipe = redis.pipeline();
    for (const c of containers.slice(i, i + 5000))
      pipe.set(`${model.redis.prefix}agent:${c}`, String(now), 'EX', intervalSeconds * 3);
    await pipe.exec().catch(() => undefined); // Redis down: agents keep trying on their schedule
  }
}

void checkIn();
const timer = setInterval(() => void checkIn(), intervalSeconds * 1000);
console.log(`${containers.length} agents checking in every ${intervalSeconds} s`);
onShutdown(async () => {
  clearInterval(timer);
  redis.disconnect();
});
