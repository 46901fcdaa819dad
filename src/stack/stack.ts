/**
 * The embedded local stack: PostgreSQL (initdb + pg_ctl), redis-server with AOF on, MinIO for
 * Kohakku's bucket, a second S3 server (VersityGW, its own process, port and data directory,
 * speaking TLS with a certificate from a CA generated for the stack) for the backup store, a directory for the backup replica, and the Temporal dev server, each on a
 * free loopback port inside one temporary folder. Used by
 * the test harness (one stack per test run) and by the drill. The machine's own PostgreSQL and
 * Redis are never touched.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, promises as fs, readdirSync, readFileSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client } from 'pg';
import { createCommandRunner } from '../infra/exec';
import { freePort, isAlive, startDaemon, stopDaemon, waitUntil, type Daemon } from '../infra/processes';
import { searchAttributeFlags } from '../domain/searchAttributes';
import { waitForTemporalDevServer } from './temporalReady';
import { makeStackTls, type StackTls } from './tls';
import { toolPaths, type ToolPaths } from './tools';

const STACK_PREFIX = 'kohakku-dr-stack-';

export interface StackInfo {
  dir: string;
  ownerPid: number;
  tools: ToolPaths;
  postgres: {
    port: number;
    dataDir: string;
    socketDir: string;
    user: string;
    log: string;
    runAs?: { uid: number; gid: number };
    /** The server's options (pg_ctl -o), so it can be started again as it was. */
    startOptions: string;
  };
  redis: { port: number; dir: string; args: string[]; pid: number; log: string };
  /**
   * Kohakku's object store (bucket `kohakku`): MinIO, or VersityGW with
   * KOHAKKU_DR_STACK_OBJECT_STORE=versitygw (the object-store tests on a second S3 server).
   */
  minio: S3Server;
  /** The backup store, on a second, separate S3 server: VersityGW (its own process, port, data). */
  backupS3: S3Server;
  /** The backup replica: a directory. */
  replicaDir: string;
  temporal: TemporalServer & { pid: number; log: string; namespace: string };
  /** Other daemons started on this stack (reference Kohakku services); stopped with it. */
  extraPidsFile: string;
}

/** The stack's Temporal dev server: how it was started, so it can be started again on the same SQLite file. */
export interface TemporalServer {
  port: number;
  uiPort: number;
  dbFile: string;
  /** Without the UI unless set (absent in stacks from before 0.3.7: headless). */
  withUi?: boolean;
}

/** `temporal server start-dev` on its SQLite file: its workflows survive its own SIGKILL. */
function startTemporalServer(tools: ToolPaths, server: TemporalServer, log: string): Daemon {
  return startDaemon(
    'temporal',
    tools.temporal,
    [
      'server',
      'start-dev',
      '--ip',
      '127.0.0.1',
      '--port',
      String(server.port),
      '--ui-port',
      String(server.uiPort),
      ...(server.withUi ? [] : ['--headless']),
      ...searchAttributeFlags(),
      '--db-filename',
      server.dbFile,
      '--log-level',
      'warn',
    ],
    { log },
  );
}

/**
 * A Temporal server crash, for the crash matrix: SIGKILL the stack's Temporal dev server, wait
 * `downMs`, start it again on the same ports and SQLite file, and wait until it answers.
 */
export async function crashTemporalServer(stackDir: string, options: { downMs: number }): Promise<void> {
  const stack = readStack(stackDir);
  await stopDaemon(stack.temporal.pid, 0, 'SIGKILL');
  await new Promise((r) => setTimeout(r, options.downMs));
  const daemon = startTemporalServer(stack.tools, stack.temporal, stack.temporal.log);
  await fs.appendFile(stack.extraPidsFile, `${daemon.pid}\n`);
  await updateStack(stackDir, (s) => {
    s.temporal = { ...s.temporal, pid: daemon.pid };
  });
  await waitForTemporalDevServer({
    cli: stack.tools.temporal,
    port: stack.temporal.port,
    namespace: stack.temporal.namespace,
    log: stack.temporal.log,
    timeoutMs: 60000,
  });
}

/** An S3 server of the stack: how it was started (so it can be started again) and where it keeps its data. */
export interface S3Server {
  kind: 'minio' | 'versitygw';
  port: number;
  dataDir: string;
  accessKey: string;
  secretKey: string;
  pid: number;
  log: string;
  file: string;
  args: string[];
  /** The server's own variables (its root credentials); only the server gets them. */
  env: Record<string, string>;
  /** An HTTP(S) GET that answers 200 once it serves. */
  healthUrl: string;
  /** For a server speaking TLS: the CA that signed its certificate (the stack's own). */
  caFile?: string;
  /** Where else it keeps data (VersityGW's object versions): lost with its disk too. */
  otherDataDirs?: string[];
}

function minioServer(
  tools: ToolPaths,
  dir: string,
  port: number,
  consolePort: number,
): Omit<S3Server, 'pid'> {
  const accessKey = 'kohakku-dr';
  const secretKey = 'kohakku-dr-local-secret';
  const dataDir = path.join(dir, 'data');
  return {
    kind: 'minio',
    port,
    dataDir,
    accessKey,
    secretKey,
    log: path.join(dir, 'minio.log'),
    file: tools.minio,
    args: [
      'server',
      '--quiet',
      '--address',
      `127.0.0.1:${port}`,
      '--console-address',
      `127.0.0.1:${consolePort}`,
      dataDir,
    ],
    env: {
      MINIO_ROOT_USER: accessKey,
      MINIO_ROOT_PASSWORD: secretKey,
      MINIO_BROWSER: 'off',
      MINIO_UPDATE: 'off',
    },
    healthUrl: `http://127.0.0.1:${port}/minio/health/live`,
  };
}

/** Which S3 server the stack runs as Kohakku's object store (KOHAKKU_DR_STACK_OBJECT_STORE). */
export function stackObjectStoreKind(env: NodeJS.ProcessEnv = process.env): S3Server['kind'] {
  const kind = env.KOHAKKU_DR_STACK_OBJECT_STORE || 'minio';
  if (kind !== 'minio' && kind !== 'versitygw')
    throw new Error(`KOHAKKU_DR_STACK_OBJECT_STORE=${kind}: expected minio or versitygw`);
  return kind;
}

/**
 * A VersityGW (posix backend): the backup store (over TLS, with the stack's CA), or Kohakku's
 * object store instead of MinIO (plain HTTP like MinIO's, with object versioning: point-in-time
 * recovery rewinds a versioned bucket).
 */
function versitygwServer(
  tools: ToolPaths,
  dir: string,
  port: number,
  options: { accessKey: string; secretKey: string; tls?: StackTls; versioning?: boolean },
): Omit<S3Server, 'pid'> {
  const { accessKey, secretKey, tls } = options;
  const dataDir = path.join(dir, 'data');
  const versionsDir = path.join(dir, 'versions');
  return {
    kind: 'versitygw',
    port,
    dataDir,
    accessKey,
    secretKey,
    log: path.join(dir, 'versitygw.log'),
    file: tools.versitygw,
    args: [
      '--port',
      `127.0.0.1:${port}`,
      ...(tls ? ['--cert', tls.certFile, '--key', tls.keyFile] : []),
      '--quiet',
      '--health',
      '/health',
      'posix',
      ...(options.versioning ? ['--versioning-dir', versionsDir] : []),
      dataDir,
    ],
    ...(options.versioning ? { otherDataDirs: [versionsDir] } : {}),
    env: { ROOT_ACCESS_KEY: accessKey, ROOT_SECRET_KEY: secretKey },
    healthUrl: `${tls ? 'https' : 'http'}://127.0.0.1:${port}/health`,
    ...(tls ? { caFile: tls.caFile } : {}),
  };
}

/** The status of a GET, trusting `caFile` for https (fetch cannot be given a CA). */
function httpStatus(url: string, caFile?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const get = url.startsWith('https:') ? https.get : http.get;
    const req = get(url, { ...(caFile ? { ca: readFileSync(caFile) } : {}), timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(new Error(`timeout: ${url}`)));
    req.on('error', reject);
  });
}

/** Starts (or starts again) one of the stack's S3 servers; its data directory is created when missing. */
export async function startS3Server(server: Omit<S3Server, 'pid'>): Promise<Daemon> {
  for (const d of [server.dataDir, ...(server.otherDataDirs ?? [])]) await fs.mkdir(d, { recursive: true });
  return startDaemon(server.kind, server.file, server.args, { log: server.log, env: server.env });
}

export async function waitForS3Server(server: Omit<S3Server, 'pid'>, timeoutMs = 60000): Promise<void> {
  await waitUntil(
    `${server.kind} on ${server.port}`,
    async () => (await httpStatus(server.healthUrl, server.caFile)) === 200,
    timeoutMs,
    server.log,
  );
}

/**
 * A real object-store disaster, for the drill and the tests: SIGKILL one of the stack's S3
 * servers (Kohakku's `minio`, or the backup store `backupS3`) and delete its data directory.
 */
export async function loseS3Server(stackDir: string, which: 'minio' | 'backupS3'): Promise<void> {
  const server = readStack(stackDir)[which];
  await stopDaemon(server.pid, 0, 'SIGKILL');
  for (const d of [server.dataDir, ...(server.otherDataDirs ?? [])])
    await fs.rm(d, { recursive: true, force: true });
}

/**
 * Changes stack.json under a lock, reading it again inside: the service adapter restarts Redis
 * and Kohakku's S3 server side by side (a full-cluster recovery does), each recording its new pid,
 * and a read-modify-write of the whole file would lose the other's.
 */
export async function updateStack(stackDir: string, change: (stack: StackInfo) => void): Promise<void> {
  const lock = `${stackFile(stackDir)}.lock`;
  const deadline = Date.now() + 10000;
  for (;;) {
    try {
      await fs.mkdir(lock);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      // A holder that died: its lock is stale after the deadline.
      if (Date.now() > deadline) {
        await fs.rm(lock, { recursive: true, force: true });
        continue;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  try {
    const stack = readStack(stackDir);
    change(stack);
    const partial = `${stackFile(stackDir)}.${process.pid}.partial`;
    await fs.writeFile(partial, JSON.stringify(stack, null, 2));
    await fs.rename(partial, stackFile(stackDir));
  } finally {
    await fs.rm(lock, { recursive: true, force: true });
  }
}

/** Starts a lost S3 server of the stack again (empty when its data was deleted) and records its pid. */
export async function restartS3Server(stackDir: string, which: 'minio' | 'backupS3'): Promise<number> {
  const stack = readStack(stackDir);
  const server = stack[which];
  await stopDaemon(server.pid, 10000);
  const daemon = await startS3Server(server);
  await fs.appendFile(stack.extraPidsFile, `${daemon.pid}\n`);
  await updateStack(stackDir, (s) => {
    s[which] = { ...s[which], pid: daemon.pid };
  });
  await waitForS3Server(server);
  return daemon.pid;
}

/**
 * pg_ctl start, stop or restart of the stack's PostgreSQL, as its user and with its options (the
 * reference Kohakku's service adapter for `postgres`; a restored data directory has no
 * postmaster.opts, so start names them). Waits until it is done.
 */
export function controlPostgres(
  stack: Pick<StackInfo, 'tools' | 'postgres'>,
  action: 'start' | 'stop' | 'restart',
  options: { wait?: boolean } = {},
): void {
  const { dataDir, log, startOptions, runAs } = stack.postgres;
  // A start after a point-in-time restore replays WAL first, for as long as it takes: the
  // adapter's start returns at once (wait: false) and the recovery watches the promotion.
  const wait = options.wait ?? true;
  // Idempotent, as systemctl is: stopping a stopped server or starting a running one is done.
  if (action !== 'restart') {
    let running: boolean;
    try {
      execFileSync(path.join(stack.tools.pgBinDir, 'pg_ctl'), ['status', '-D', dataDir], {
        stdio: 'pipe',
        ...(runAs ? { uid: runAs.uid, gid: runAs.gid } : {}),
      });
      running = true;
    } catch {
      running = false;
    }
    if (running === (action === 'start')) return;
  }
  execFileSync(
    path.join(stack.tools.pgBinDir, 'pg_ctl'),
    [
      action,
      ...(wait ? ['-w', '-t', action === 'stop' ? '60' : '600'] : ['-W']),
      '-D',
      dataDir,
      ...(action === 'stop' ? ['-m', 'fast'] : ['-l', log, '-o', startOptions]),
      ...(action === 'restart' ? ['-m', 'fast'] : []),
    ],
    { stdio: 'pipe', ...(runAs ? { uid: runAs.uid, gid: runAs.gid } : {}) },
  );
}

/** A session on the stack's PostgreSQL as its superuser, for `fn`. */
export async function withStackDb<T>(
  stack: Pick<StackInfo, 'postgres'>,
  database: string,
  fn: (c: Client) => Promise<T>,
): Promise<T> {
  const c = new Client({ host: '127.0.0.1', port: stack.postgres.port, user: 'postgres', database });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

export function stackFile(dir: string): string {
  return path.join(dir, 'stack.json');
}

export function readStack(dir: string): StackInfo {
  return JSON.parse(readFileSync(stackFile(dir), 'utf8')) as StackInfo;
}

/** PostgreSQL refuses to run as root; when we are root, its processes run as the `postgres` user. */
function postgresRunAs(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
    return { uid, gid };
  } catch {
    throw new Error(
      'running as root needs a `postgres` system user to run the stack’s PostgreSQL (apt-get install postgresql-15)',
    );
  }
}

export function redisArgs(port: number, dir: string): string[] {
  return [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--dir',
    dir,
    '--appendonly',
    'yes',
    '--appendfsync',
    'everysec',
    '--save',
    '3600 1',
    '--daemonize',
    'no',
    '--protected-mode',
    'no',
  ];
}

export function startRedis(stack: Pick<StackInfo, 'tools' | 'redis'>): Daemon {
  return startDaemon('redis', stack.tools.redisServer, stack.redis.args, { log: stack.redis.log });
}

export async function waitForRedis(port: number, log?: string): Promise<void> {
  const run = createCommandRunner();
  const { redisCli } = toolPaths();
  await waitUntil(
    `redis-server on ${port}`,
    async () => (await run(redisCli, ['-p', String(port), 'PING'])).stdout.trim() === 'PONG',
    20000,
    log,
  );
}

/** A real Redis disaster, for the drill and the tests: SIGKILL the stack's redis-server, optionally delete its AOF and RDB. */
export async function killRedis(stackDir: string, options: { deleteFiles: boolean }): Promise<void> {
  const { redis } = readStack(stackDir);
  await stopDaemon(redis.pid, 0, 'SIGKILL');
  if (!options.deleteFiles) return;
  for (const f of readdirSync(redis.dir)) {
    if (f !== 'redis.log') await fs.rm(path.join(redis.dir, f), { recursive: true, force: true });
  }
}

/** Starts a fresh stack in a new temporary folder. Stops what it started if any part fails. */
export async function startStack(
  options: { withTemporalUi?: boolean; log?: (line: string) => void } = {},
): Promise<StackInfo> {
  const say = options.log ?? (() => undefined);
  await reapStaleStacks(say);
  const tools = toolPaths();
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), STACK_PREFIX));
  await fs.chmod(dir, 0o755);
  const runAs = postgresRunAs();
  const started: number[] = [];
  const partial: Partial<StackInfo> = {
    dir,
    ownerPid: process.pid,
    tools,
    extraPidsFile: path.join(dir, 'extra-pids'),
  };
  const save = () => fs.writeFile(stackFile(dir), JSON.stringify(partial, null, 2));
  try {
    await save();
    // PostgreSQL
    const pgDir = path.join(dir, 'postgres');
    await fs.mkdir(pgDir);
    if (runAs) await fs.chown(pgDir, runAs.uid, runAs.gid);
    const pgPort = await freePort();
    partial.postgres = {
      port: pgPort,
      dataDir: path.join(pgDir, 'data'),
      socketDir: pgDir,
      user: 'postgres',
      log: path.join(pgDir, 'postgres.log'),
      runAs,
      startOptions: `-p ${pgPort} -k ${pgDir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200`,
    };
    await save();
    say(`postgres: initdb (port ${pgPort})`);
    const asPg = runAs ? { uid: runAs.uid, gid: runAs.gid } : {};
    execFileSync(
      path.join(tools.pgBinDir, 'initdb'),
      [
        '-D',
        partial.postgres.dataDir,
        '-U',
        'postgres',
        '--auth=trust',
        '-E',
        'UTF8',
        '--locale=C',
        '--no-sync',
      ],
      { ...asPg, stdio: 'pipe' },
    );
    controlPostgres(partial as StackInfo, 'start');
    // Redis, AOF on
    const redisDir = path.join(dir, 'redis');
    await fs.mkdir(redisDir);
    const redisPort = await freePort();
    partial.redis = {
      port: redisPort,
      dir: redisDir,
      args: redisArgs(redisPort, redisDir),
      pid: 0,
      log: path.join(redisDir, 'redis.log'),
    };
    const redis = startRedis(partial as StackInfo);
    partial.redis.pid = redis.pid;
    started.push(redis.pid);
    await save();
    // Kohakku's object store (MinIO, or VersityGW), and the backup store on a second S3 server (VersityGW)
    const minio =
      stackObjectStoreKind() === 'versitygw'
        ? versitygwServer(tools, path.join(dir, 'objectstore'), await freePort(), {
            accessKey: 'kohakku-dr',
            secretKey: 'kohakku-dr-local-secret',
            versioning: true,
          })
        : minioServer(tools, path.join(dir, 'minio'), await freePort(), await freePort());
    const minioDaemon = await startS3Server(minio);
    started.push(minioDaemon.pid);
    partial.minio = { ...minio, pid: minioDaemon.pid };
    await save();
    const backupS3 = versitygwServer(tools, path.join(dir, 'backup-s3'), await freePort(), {
      accessKey: 'kohakku-dr-backups',
      secretKey: 'kohakku-dr-backups-local-secret',
      tls: await makeStackTls(path.join(dir, 'tls')),
    });
    const backupDaemon = await startS3Server(backupS3);
    started.push(backupDaemon.pid);
    partial.backupS3 = { ...backupS3, pid: backupDaemon.pid };
    partial.replicaDir = path.join(dir, 'backup-replica');
    await fs.mkdir(partial.replicaDir);
    await save();
    // Temporal dev server (SQLite on disk, so it survives its own restart)
    const temporalDir = path.join(dir, 'temporal');
    await fs.mkdir(temporalDir);
    const temporalServer: TemporalServer = {
      port: await freePort(),
      uiPort: await freePort(),
      dbFile: path.join(temporalDir, 'temporal.db'),
      withUi: Boolean(options.withTemporalUi),
    };
    const temporal = startTemporalServer(tools, temporalServer, path.join(temporalDir, 'temporal.log'));
    started.push(temporal.pid);
    partial.temporal = {
      ...temporalServer,
      pid: temporal.pid,
      log: temporal.log,
      namespace: 'default',
    };
    await save();

    say(`waiting for postgres, redis, ${minio.kind} (Kohakku's objects), versitygw (backups) and temporal`);
    await waitUntil(
      'postgres',
      async () => {
        const c = new Client({ host: '127.0.0.1', port: pgPort, user: 'postgres', database: 'postgres' });
        await c.connect();
        await c.end();
        return true;
      },
      30000,
      partial.postgres.log,
    );
    await waitForRedis(redisPort, partial.redis.log);
    await waitForS3Server(minio);
    await waitForS3Server(backupS3);
    await waitForTemporalDevServer({
      cli: tools.temporal,
      port: temporalServer.port,
      namespace: 'default',
      log: temporal.log,
      timeoutMs: 60000,
    });
    return partial as StackInfo;
  } catch (err) {
    await stopStack(partial as StackInfo, { keepDir: true }).catch(() => undefined);
    throw new Error(`local stack failed to start (files kept in ${dir}): ${(err as Error).message}`);
  }
}

export function extraPids(stack: StackInfo): number[] {
  if (!existsSync(stack.extraPidsFile)) return [];
  return readFileSync(stack.extraPidsFile, 'utf8').split('\n').filter(Boolean).map(Number);
}

/** Stops every process of the stack and removes its folder (unless keepDir). */
export async function stopStack(stack: StackInfo, options: { keepDir?: boolean } = {}): Promise<void> {
  const pids = [
    ...extraPids(stack),
    stack.temporal?.pid,
    stack.minio?.pid,
    stack.backupS3?.pid,
    stack.redis?.pid,
  ].filter((p): p is number => !!p);
  // Redis may have been restarted by a test; its current pid is in its pidfile-less stack.json.
  await Promise.all(pids.map((pid) => stopDaemon(pid, 5000)));
  if (stack.postgres && existsSync(path.join(stack.postgres.dataDir, 'postmaster.pid'))) {
    try {
      execFileSync(
        path.join(stack.tools.pgBinDir, 'pg_ctl'),
        ['stop', '-m', 'immediate', '-w', '-D', stack.postgres.dataDir],
        {
          stdio: 'pipe',
          ...(stack.postgres.runAs ?? {}),
        },
      );
    } catch {
      const pid = Number(
        readFileSync(path.join(stack.postgres.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0],
      );
      if (pid) await stopDaemon(pid, 2000, 'SIGQUIT');
    }
  }
  if (!options.keepDir && stack.dir) await fs.rm(stack.dir, { recursive: true, force: true });
}

/** Stops stacks whose owning process is gone (a run that was SIGKILLed or lost power). */
export async function reapStaleStacks(say: (line: string) => void = () => undefined): Promise<void> {
  for (const name of readdirSync(os.tmpdir())) {
    if (!name.startsWith(STACK_PREFIX)) continue;
    const dir = path.join(os.tmpdir(), name);
    try {
      const stack = readStack(dir);
      if (isAlive(stack.ownerPid)) continue;
      say(`reaping stale stack ${dir} (owner ${stack.ownerPid} is gone)`);
      await stopStack(stack);
    } catch {
      // not a stack we can read; leave it
    }
  }
}

/** Environment for the kohakku-dr worker and CLI pointed at this stack. */
export function stackEnv(stack: StackInfo): Record<string, string> {
  return {
    TEMPORAL_ADDRESS: `127.0.0.1:${stack.temporal.port}`,
    TEMPORAL_NAMESPACE: stack.temporal.namespace,
    POSTGRES_HOST: '127.0.0.1',
    POSTGRES_PORT: String(stack.postgres.port),
    POSTGRES_USER: stack.postgres.user,
    POSTGRES_DB: 'postgres',
    PG_BIN_DIR: stack.tools.pgBinDir,
    REDIS_HOST: '127.0.0.1',
    REDIS_PORT: String(stack.redis.port),
    S3_ENDPOINT: `http://127.0.0.1:${stack.minio.port}`,
    S3_ACCESS_KEY: stack.minio.accessKey,
    S3_SECRET_KEY: stack.minio.secretKey,
    BACKUP_STORE: 's3',
    // localhost, not 127.0.0.1: pgBackRest checks the certificate against a host name only.
    BACKUP_S3_ENDPOINT: `https://localhost:${stack.backupS3.port}`,
    BACKUP_S3_CA_FILE: stack.backupS3.caFile!,
    BACKUP_S3_ACCESS_KEY: stack.backupS3.accessKey,
    BACKUP_S3_SECRET_KEY: stack.backupS3.secretKey,
    BACKUP_REPLICA: 'dir',
    BACKUP_REPLICA_DIR: stack.replicaDir,
    // Point-in-time recovery with pgBackRest, its repository in the backup bucket; archiving is
    // switched on by `kohakku-dr pitr setup` (the pitrSetup workflow), as on a real host.
    PITR: 'pgbackrest',
    PG_DATA_DIR: stack.postgres.dataDir,
    POSTGRES_SOCKET_DIR: stack.postgres.socketDir,
    PITR_PGBACKREST_CONFIG: path.join(stack.dir, 'pgbackrest', 'kohakku-dr.conf'),
    PITR_WORK_DIR: path.join(stack.dir, 'pgbackrest', 'work'),
    KOHAKKU_DR_WORK_DIR: path.join(stack.dir, 'dr-work'),
  };
}

/** The sourceable settings file `drill --keep` leaves in a kept stack's folder (0600: it holds keys). */
export function envFile(dir: string): string {
  return path.join(dir, 'env');
}

const shellQuote = (value: string) => `'${value.replace(/'/g, `'\\''`)}'`;

/**
 * Writes `<dir>/env`: every setting the kohakku-dr worker and CLI need for this stack, plus the
 * `temporal` CLI's own (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE) and its binary on PATH, as
 * `export` lines an operator sources for hand checks.
 */
export async function writeEnvFile(stack: StackInfo, env: Record<string, string>): Promise<string> {
  const file = envFile(stack.dir);
  const lines = [
    `# kohakku-dr: settings for the stack in ${stack.dir} (worker, kohakku-dr CLI, temporal CLI).`,
    `# source ${file}`,
    ...Object.entries(env)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `export ${k}=${shellQuote(v)}`),
    `export PATH=${shellQuote(path.dirname(stack.tools.temporal))}:"$PATH"`,
  ];
  await fs.writeFile(file, lines.join('\n') + '\n', { mode: 0o600 });
  return file;
}

/** The settings an env file (writeEnvFile's) sets, unquoted: what `stack env --json` prints. */
export function parseEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^export ([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!m) continue;
    const quoted = /^'((?:[^']|'\\'')*)'$/.exec(m[2]!);
    out[m[1]!] = quoted ? quoted[1]!.replace(/'\\''/g, "'") : m[2]!;
  }
  return out;
}

/** The env file of a kept stack, or a clear error when the folder has none. */
export function readEnvFile(dir: string): string {
  const file = envFile(dir);
  if (!existsSync(file))
    throw Object.assign(new Error(`${file} does not exist: is ${dir} a stack kept by \`drill --keep\`?`), {
      name: 'ConfigError',
    });
  return readFileSync(file, 'utf8');
}
