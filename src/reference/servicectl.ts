/**
 * `node dist/reference/servicectl.js STATE_DIR restart SERVICE` — the restart command the
 * `command` service adapter runs against the reference Kohakku (SERVICE may carry the
 * `kohakku-` prefix of KOHAKKU_SERVICE_NAMES). `redis` restarts the embedded stack's
 * redis-server and `objectstore` its MinIO, Kohakku's S3 server (fresh and empty when its data
 * directory was lost); the state folder sits inside the stack's folder.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { stopDaemon } from '../infra/processes';
import { readStack, restartS3Server, startRedis, stackFile } from '../stack/stack';
import { REFERENCE_SERVICES, restartReferenceService, type ReferenceService } from './supervisor';

async function restartStackRedis(stateDir: string): Promise<number> {
  const stackDir = path.dirname(stateDir);
  const stack = readStack(stackDir);
  await stopDaemon(stack.redis.pid, 10000);
  const daemon = startRedis(stack);
  stack.redis.pid = daemon.pid;
  await fs.appendFile(stack.extraPidsFile, `${daemon.pid}\n`);
  await fs.writeFile(stackFile(stackDir), JSON.stringify(stack, null, 2));
  return daemon.pid;
}

async function run(): Promise<void> {
  const [stateDir, verb, rawName] = process.argv.slice(2);
  const name = rawName?.replace(/^kohakku-/, '');
  const known = [...REFERENCE_SERVICES, 'redis', 'objectstore'];
  if (!stateDir || verb !== 'restart' || !name || !known.includes(name)) {
    throw new Error(`usage: servicectl STATE_DIR restart ${known.join('|')}`);
  }
  const pid =
    name === 'redis'
      ? await restartStackRedis(stateDir)
      : name === 'objectstore'
        ? await restartS3Server(path.dirname(stateDir), 'minio')
        : await restartReferenceService(stateDir, name as ReferenceService);
  console.log(`restarted ${name} (pid ${pid})`);
}

run().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
