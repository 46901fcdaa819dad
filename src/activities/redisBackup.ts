/**
 * Redis backup (the runbook's BGSAVE + copy) and its verification.
 *
 * bgsave: BGSAVE, then wait — by polling Redis's own counters, never a fixed sleep — until a
 * save newer than ours started has finished and succeeded (rdb_saves moved, LASTSAVE not older,
 * rdb_last_bgsave_status ok), then copy the RDB. network: `redis-cli --rdb` pulls a fresh RDB
 * over the wire when the worker is not on the Redis host. Either way the copy is checked with
 * redis-check-rdb, whose key count goes into the manifest.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { Redis } from 'ioredis';
import { Redis as RedisClient } from 'ioredis';
import type { Config } from '../config';
import { redisBackupKey, redisManifestKey } from '../domain/layout';
import type { RedisBackupManifest } from '../domain/manifests';
import { ErrorType, fail } from '../domain/errors';
import type { BackupStore } from '../infra/backupStore';
import { siblingTool, type CommandRunner } from '../infra/exec';
import { shortTag } from '../infra/hashing';
import {
  cancellationSignal,
  sha256WithHeartbeats,
  sleep,
  transferWithHeartbeats,
  withHeartbeats,
} from './heartbeat';
import { startDaemon, stopDaemon } from '../infra/processes';
import { pathExists } from '../infra/files';

export interface RedisBackupDeps {
  config: Config;
  exec: CommandRunner;
  store: BackupStore;
  redis: Redis;
}

function info(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\r\n')) {
    const i = line.indexOf(':');
    if (i > 0 && !line.startsWith('#')) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

export { redisBackupKey };
export type { RedisBackupManifest };
const manifestKey = redisManifestKey;

export function createRedisBackupActivities({ config, exec, store, redis }: RedisBackupDeps) {
  const checkRdb = siblingTool(config.redis.serverBin, 'redis-check-rdb');

  /** redis-check-rdb: integrity (CRC, truncation) and the key count. */
  async function inspectRdb(file: string): Promise<{ keys: number; expires: number }> {
    try {
      const { stdout, stderr } = await exec(checkRdb, [file]);
      const text = `${stdout}\n${stderr}`;
      const keys = Number(/(\d+) keys read/.exec(text)?.[1] ?? NaN);
      const expires = Number(/(\d+) expires/.exec(text)?.[1] ?? 0);
      if (!Number.isFinite(keys)) throw new Error(`unexpected redis-check-rdb output: ${text.slice(-300)}`);
      return { keys, expires };
    } catch (err) {
      throw fail(
        ErrorType.BackupCorrupt,
        `RDB ${path.basename(file)} does not check out: ${(err as Error).message}`,
      );
    }
  }

  async function bgsaveAndCopy(local: string): Promise<void> {
    const persistence = async () => info(await redis.info('persistence'));
    const childBusy = (p: Record<string, string>) =>
      p.rdb_bgsave_in_progress === '1' || p.aof_rewrite_in_progress === '1';
    await withHeartbeats(
      () => ({ stage: 'bgsave' }),
      async () => {
        // Someone else's save or an AOF rewrite first (Redis runs one child at a time): ours
        // must start after it. Redis answers BGSAVE during a rewrite with "Another child
        // process is active (AOF?)"; that is a wait, not a failure.
        while (childBusy(await persistence())) await sleep(200, cancellationSignal());
        const before = await persistence();
        const savesBefore = Number(before.rdb_saves ?? '0');
        const lastSaveBefore = await redis.lastsave();
        for (;;) {
          try {
            await redis.bgsave();
            break;
          } catch (err) {
            if (!/in progress|another child process is active/i.test((err as Error).message)) throw err;
            await sleep(200, cancellationSignal());
          }
        }
        for (;;) {
          const now = await persistence();
          const lastSave = await redis.lastsave();
          if (
            now.rdb_bgsave_in_progress === '0' &&
            Number(now.rdb_saves ?? '0') > savesBefore &&
            lastSave >= lastSaveBefore
          ) {
            if (now.rdb_last_bgsave_status !== 'ok') {
              throw new Error(
                'BGSAVE failed (rdb_last_bgsave_status is not ok): see the Redis log; retrying',
              );
            }
            return;
          }
          await sleep(100, cancellationSignal());
        }
      },
    );
    let rdbPath = config.redis.rdbPath;
    if (!rdbPath) {
      const dir = ((await redis.config('GET', 'dir')) as string[])[1]!;
      const file = ((await redis.config('GET', 'dbfilename')) as string[])[1]!;
      rdbPath = path.join(dir, file);
    }
    await fs.copyFile(rdbPath, local).catch((err: Error) => {
      throw fail(
        ErrorType.ToolUnavailable,
        `cannot read Redis's RDB at ${rdbPath} (${err.message}): set REDIS_RDB_PATH, or REDIS_BACKUP_METHOD=network when the worker is not on the Redis host`,
      );
    });
  }

  async function pullOverNetwork(local: string): Promise<void> {
    const r = config.redis;
    await withHeartbeats(
      () => ({ stage: 'redis-cli --rdb' }),
      () =>
        exec(r.cliBin, ['-h', r.host, '-p', String(r.port), '--rdb', local], {
          env: { REDISCLI_AUTH: r.password },
          signal: cancellationSignal(),
        }),
    );
  }

  /** Takes an RDB of Kohakku's Redis into the backup store. Idempotent per backup id. */
  async function backupRedisSteps(input: { backupId: string }): Promise<RedisBackupManifest> {
    const existing = await store.getJson<RedisBackupManifest>(manifestKey(input.backupId));
    if (existing) return existing;
    await store.ensureReady();
    const workDir = path.join(config.workDir, 'redis-backup', input.backupId);
    await fs.mkdir(workDir, { recursive: true });
    const local = path.join(workDir, 'dump.rdb');
    try {
      if (config.redis.backupMethod === 'bgsave') await bgsaveAndCopy(local);
      else await pullOverNetwork(local);
      const { keys, expires } = await inspectRdb(local);
      const size = (await fs.stat(local)).size;
      const sha256 = await sha256WithHeartbeats(local);
      const key = redisBackupKey(input.backupId);
      await transferWithHeartbeats({
        details: { stage: 'uploading', key, size },
        what: `uploading ${path.basename(key)}`,
        size,
        transfer: (onBytes) => store.putFile(key, local, onBytes),
      });
      const manifest: RedisBackupManifest = {
        kind: 'redis',
        formatVersion: 1,
        id: input.backupId,
        createdAt: new Date().toISOString(),
        method: config.redis.backupMethod,
        key,
        size,
        sha256,
        redisVersion: info(await redis.info('server')).redis_version ?? 'unknown',
        keys,
        expires,
      };
      await store.putJson(manifestKey(input.backupId), manifest);
      return manifest;
    } finally {
      await fs.rm(workDir, { recursive: true, force: true });
    }
  }

  function scratchDir(verifyId: string): string {
    return path.join(config.workDir, 'verify', `redis-${shortTag(verifyId)}`);
  }

  /**
   * Loads the backup's RDB into a scratch redis-server (on a unix socket, no port to clash) and
   * compares its key count with the manifest. The scratch instance is always stopped.
   */
  async function verifyRedisBackupSteps(input: {
    backupId: string;
    verifyId: string;
  }): Promise<{ ok: boolean; problems: string[]; keys?: number }> {
    const manifest = await store.getJson<RedisBackupManifest>(manifestKey(input.backupId));
    if (!manifest) return { ok: false, problems: [`no Redis backup ${input.backupId}`] };
    const dir = scratchDir(input.verifyId);
    await fs.rm(dir, { recursive: true, force: true });
    await fs.mkdir(dir, { recursive: true });
    const rdb = path.join(dir, 'dump.rdb');
    await transferWithHeartbeats({
      details: { stage: 'downloading', key: manifest.key, size: manifest.size },
      what: `downloading ${path.basename(manifest.key)}`,
      size: manifest.size,
      transfer: (onBytes) => store.getFile(manifest.key, rdb, onBytes),
    });
    const problems: string[] = [];
    const size = (await fs.stat(rdb)).size;
    const sha = await sha256WithHeartbeats(rdb);
    if (size !== manifest.size || sha !== manifest.sha256) {
      problems.push(
        `RDB ${manifest.key}: sha256/size differ from the manifest (size ${size}, manifest ${manifest.size})`,
      );
      return { ok: false, problems };
    }
    try {
      await inspectRdb(rdb);
    } catch (err) {
      return { ok: false, problems: [(err as Error).message] };
    }
    const socket = path.join(dir, 'redis.sock');
    const daemon = startDaemon(
      'scratch-redis',
      config.redis.serverBin,
      [
        '--port',
        '0',
        '--unixsocket',
        socket,
        '--dir',
        dir,
        '--dbfilename',
        'dump.rdb',
        '--appendonly',
        'no',
        '--save',
        '',
      ],
      {
        log: path.join(dir, 'redis.log'),
      },
    );
    await fs.writeFile(path.join(dir, 'pid'), String(daemon.pid));
    const scratch = new RedisClient({
      path: socket,
      lazyConnect: true,
      maxRetriesPerRequest: 1,
      retryStrategy: () => null,
    });
    scratch.on('error', () => undefined);
    try {
      const deadline = Date.now() + 60000;
      for (;;) {
        try {
          if (scratch.status !== 'ready') await scratch.connect();
          const p = info(await scratch.info('persistence'));
          if (p.loading === '0') break;
        } catch {
          // not up yet
        }
        if (Date.now() > deadline) {
          problems.push(
            `scratch redis-server did not load the RDB: ${(await fs.readFile(path.join(dir, 'redis.log'), 'utf8')).slice(-500)}`,
          );
          return { ok: false, problems };
        }
        await sleep(100, cancellationSignal());
      }
      // Keys whose TTL ran out since the backup are dropped on load (agents' check-ins): Redis
      // counts them, so loaded + expired must equal what redis-check-rdb read at backup time.
      const loadInfo = info(await scratch.info('persistence'));
      const keyspace = info(await scratch.info('keyspace'));
      const present = Object.values(keyspace).reduce((n, v) => n + Number(/keys=(\d+)/.exec(v)?.[1] ?? 0), 0);
      const loaded = Number(loadInfo.rdb_last_load_keys_loaded ?? present);
      const expired = Number(loadInfo.rdb_last_load_keys_expired ?? 0);
      const keys = loaded + expired;
      if (keys !== manifest.keys) {
        problems.push(
          `scratch Redis loaded ${loaded} keys (+${expired} expired on load), the manifest says ${manifest.keys}`,
        );
      }
      return { ok: problems.length === 0, problems, keys };
    } finally {
      scratch.disconnect();
      await stopDaemon(daemon.pid, 5000);
      await fs.rm(dir, { recursive: true, force: true });
    }
  }

  /** Stops a scratch Redis a killed or cancelled verification left, and removes its files. */
  async function cleanupRedisVerification(input: { verifyId: string }): Promise<{ removed: boolean }> {
    const dir = scratchDir(input.verifyId);
    const pid = Number(await fs.readFile(path.join(dir, 'pid'), 'utf8').catch(() => '0'));
    if (pid) await stopDaemon(pid, 5000);
    const existed = await pathExists(dir);
    await fs.rm(dir, { recursive: true, force: true });
    return { removed: existed };
  }

  // Copies, checks and uploads of a large RDB take a while: heartbeat all along.
  const backupRedis = (input: { backupId: string }) =>
    withHeartbeats(
      () => ({ stage: 'redis backup', backupId: input.backupId }),
      () => backupRedisSteps(input),
    );
  const verifyRedisBackup = (input: { backupId: string; verifyId: string }) =>
    withHeartbeats(
      () => ({ stage: 'redis verification', backupId: input.backupId }),
      () => verifyRedisBackupSteps(input),
    );

  return { backupRedis, verifyRedisBackup, cleanupRedisVerification };
}
