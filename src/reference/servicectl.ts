/**
 * `node dist/reference/servicectl.js STATE_DIR ACTION SERVICE` — the command the `command`
 * service adapter runs against the reference Kohakku: ACTION is restart, stop or start; SERVICE
 * may carry the `kohakku-` prefix of KOHAKKU_SERVICE_NAMES. Beside the reference services,
 * `redis` is the embedded stack's redis-server, `objectstore` its MinIO (Kohakku's S3 server,
 * fresh and empty when its data directory was lost) and `postgres` its PostgreSQL (pg_ctl with
 * the stack's options); the state folder sits inside the stack's folder.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { stopDaemon } from '../infra/processes';
import { controlPostgres, readStack, restartS3Server, startRedis, updateStack } from '../stack/stack';
import {
  REFERENCE_SERVICES,
  restartReferenceService,
  startStoppedReferenceService,
  stopReferenceService,
  type ReferenceService,
} from './supervisor';

const ACTIONS = ['restart', 'stop', 'start'] as const;
type Action = (typeof ACTIONS)[number];

async function stackRedis(stateDir: string, action: Action): Promise<string> {
  const stackDir = path.dirname(stateDir);
  const stack = readStack(stackDir);
  await stopDaemon(stack.redis.pid, 10000);
  if (action === 'stop') return 'stopped';
  const daemon = startRedis(stack);
  await fs.appendFile(stack.extraPidsFile, `${daemon.pid}\n`);
  await updateStack(stackDir, (s) => {
    s.redis.pid = daemon.pid;
  });
  return `pid ${daemon.pid}`;
}

async function referenceService(stateDir: string, name: ReferenceService, action: Action): Promise<string> {
  if (action === 'stop') {
    await stopReferenceService(stateDir, name);
    return 'stopped';
  }
  const pid =
    action === 'start'
      ? await startStoppedReferenceService(stateDir, name)
      : await restartReferenceService(stateDir, name);
  return `pid ${pid}`;
}

async function run(): Promise<void> {
  const [stateDir, verb, rawName] = process.argv.slice(2);
  // `postgresql` is the service's default name (KOHAKKU_SERVICE_NAMES), as Debian's unit is called.
  const name = rawName === 'postgresql' ? 'postgres' : rawName?.replace(/^kohakku-/, '');
  const known = [...REFERENCE_SERVICES, 'redis', 'objectstore', 'postgres'];
  if (!stateDir || !(ACTIONS as readonly string[]).includes(verb ?? '') || !name || !known.includes(name)) {
    throw new Error(`usage: servicectl STATE_DIR ${ACTIONS.join('|')} ${known.join('|')}`);
  }
  const action = verb as Action;
  const stackDir = path.dirname(stateDir);
  let outcome: string;
  if (name === 'redis') outcome = await stackRedis(stateDir, action);
  else if (name === 'postgres') {
    controlPostgres(readStack(stackDir), action, { wait: action !== 'start' });
    outcome = 'done';
  } else if (name === 'objectstore') {
    if (action !== 'restart') throw new Error('objectstore: only restart is supported');
    outcome = `pid ${await restartS3Server(stackDir, 'minio')}`;
  } else outcome = await referenceService(stateDir, name as ReferenceService, action);
  console.log(`${action} ${name}: ${outcome}`);
}

run().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
