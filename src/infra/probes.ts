/**
 * One quick look at each endpoint kohakku-dr talks to — PostgreSQL, Redis, an S3 bucket, a
 * backup directory, a program — bounded by a few seconds, answering reachable or not and, when
 * not, why: the network or TLS (`unreachable`), the credentials (`auth`), or the thing named is
 * not there (`missing`). What the preflight check runs before a recovery touches anything, so
 * that a wrong secret or a dead host is named in seconds instead of after minutes of retries.
 * Addresses name hosts, users and buckets, never a password or key.
 */
import { constants as fsConstants, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { Redis } from 'ioredis';
import type * as Minio from 'minio';
import { Client } from 'pg';
import type { EndpointCheck, ProbeCause } from '../domain/endpoints';

/** How long one probe may take. */
export const PROBE_TIMEOUT_MS = 5000;

export type ProbeOutcome = Omit<EndpointCheck, 'endpoint' | 'address' | 'ms'>;

class ProbeFailure extends Error {
  constructor(
    readonly probeCause: ProbeCause,
    message: string,
  ) {
    super(message);
  }
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  'CERT_HAS_EXPIRED',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'EPROTO',
]);

/** Walks an error and its causes (undici and pg wrap the socket's error) for a system code. */
function networkCode(err: unknown): string | undefined {
  for (let e = err as { code?: unknown; cause?: unknown; errors?: unknown[] } | undefined; e;) {
    if (typeof e.code === 'string' && NETWORK_CODES.has(e.code)) return e.code;
    const inner = Array.isArray(e.errors) ? e.errors[0] : undefined;
    e = (e.cause ?? inner) as typeof e | undefined;
  }
  return undefined;
}

function messageOf(err: unknown): string {
  const e = err as { message?: string; code?: string };
  return (e.message || e.code || String(err)).split('\n')[0]!.slice(0, 300);
}

async function within<T>(
  ms: number,
  what: string,
  work: () => Promise<T>,
  onTimeout?: () => void,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout?.();
      reject(new ProbeFailure('unreachable', `no answer within ${ms / 1000} s (${what})`));
    }, ms);
  });
  try {
    return await Promise.race([work(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function outcome(work: () => Promise<string>): Promise<ProbeOutcome> {
  try {
    return { ok: true, detail: await work() };
  } catch (err) {
    if (err instanceof ProbeFailure) return { ok: false, cause: err.probeCause, detail: err.message };
    const code = networkCode(err);
    return { ok: false, cause: 'unreachable', detail: code ? `${code}: ${messageOf(err)}` : messageOf(err) };
  }
}

export async function probePostgres(options: {
  host: string;
  port: number;
  user: string;
  password?: string;
  database: string;
  timeoutMs?: number;
}): Promise<ProbeOutcome> {
  const timeoutMs = options.timeoutMs ?? PROBE_TIMEOUT_MS;
  return outcome(async () => {
    const client = new Client({
      host: options.host,
      port: options.port,
      user: options.user,
      password: options.password,
      database: options.database,
      connectionTimeoutMillis: timeoutMs,
      query_timeout: timeoutMs,
    });
    client.on('error', () => undefined);
    try {
      await client.connect();
      const version = (await client.query<{ v: string }>(`SELECT current_setting('server_version') AS v`))
        .rows[0]?.v;
      return `answered (PostgreSQL ${version})`;
    } catch (err) {
      const code = (err as { code?: string }).code;
      // 28P01 invalid_password, 28000 invalid_authorization_specification (pg_hba refused).
      if (code === '28P01' || code === '28000') throw new ProbeFailure('auth', messageOf(err));
      if (code === '3D000') throw new ProbeFailure('missing', messageOf(err));
      if (/timeout/i.test(messageOf(err)) && !networkCode(err))
        throw new ProbeFailure('unreachable', `no answer within ${timeoutMs / 1000} s (${messageOf(err)})`);
      throw err;
    } finally {
      await client.end().catch(() => undefined);
    }
  });
}

export async function probeRedis(options: {
  host: string;
  port: number;
  password?: string;
  db: number;
  timeoutMs?: number;
}): Promise<ProbeOutcome> {
  const timeoutMs = options.timeoutMs ?? PROBE_TIMEOUT_MS;
  return outcome(async () => {
    const redis = new Redis({
      host: options.host,
      port: options.port,
      password: options.password,
      db: options.db,
      lazyConnect: true,
      connectTimeout: timeoutMs,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
      retryStrategy: () => null,
    });
    redis.on('error', () => undefined);
    try {
      await within(timeoutMs, 'connect and PING', async () => {
        await redis.connect();
        await redis.ping();
      });
      return 'answered PING';
    } catch (err) {
      if (/NOAUTH|WRONGPASS|invalid password|invalid username-password/i.test(messageOf(err)))
        throw new ProbeFailure('auth', messageOf(err));
      throw err;
    } finally {
      redis.disconnect();
    }
  });
}

/** S3 error codes that mean the credentials (or the clock they are signed with) were refused. */
const S3_AUTH_CODES = new Set([
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'AccessDenied',
  'InvalidToken',
  'ExpiredToken',
  'RequestTimeTooSkewed',
  'AuthorizationHeaderMalformed',
  'XAdminUserNotFound', // VersityGW: "No user exists with the provided access key ID"
]);

/** Whether an S3 call failed because the server refused the credentials (not the network). */
export function credentialsRefused(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && S3_AUTH_CODES.has(code);
}

/** HEAD of the bucket: a HEAD has no body, so a refusal comes back as a bare 403. */
export async function probeBucket(
  client: Minio.Client,
  bucket: string,
  timeoutMs = PROBE_TIMEOUT_MS,
): Promise<ProbeOutcome> {
  return outcome(async () => {
    let exists: boolean;
    try {
      exists = await within(timeoutMs, `HEAD bucket ${bucket}`, () => client.bucketExists(bucket));
    } catch (err) {
      if (err instanceof ProbeFailure) throw err;
      const e = err as { code?: string; statusCode?: number };
      if (credentialsRefused(err) || e.statusCode === 403 || /\b403\b|forbidden/i.test(messageOf(err)))
        throw new ProbeFailure('auth', `refused the access key (${e.code ?? messageOf(err)})`);
      throw err;
    }
    if (!exists) {
      // VersityGW answers a HEAD signed with an unknown access key 404, as for a missing bucket:
      // a listing's error body says which of the two it is.
      const listed = await within(timeoutMs, `list bucket ${bucket}`, () => firstKey(client, bucket)).then(
        () => undefined,
        (err: unknown) => err,
      );
      if (listed instanceof ProbeFailure) throw listed;
      if (credentialsRefused(listed))
        throw new ProbeFailure('auth', `refused the access key (${(listed as { code: string }).code})`);
      throw new ProbeFailure('missing', `bucket ${bucket} does not exist`);
    }
    return `bucket ${bucket} answered`;
  });
}

/** A backup directory: there, a directory, writable by this process. */
export async function probeDirectory(dir: string): Promise<ProbeOutcome> {
  return outcome(async () => {
    const stat = await fs.stat(dir).catch(() => undefined);
    if (!stat) throw new ProbeFailure('missing', `${dir} does not exist`);
    if (!stat.isDirectory()) throw new ProbeFailure('missing', `${dir} is not a directory`);
    await fs.access(dir, fsConstants.R_OK | fsConstants.W_OK).catch(() => {
      throw new ProbeFailure('auth', `${dir} is not readable and writable by this worker`);
    });
    return `${dir} is a writable directory`;
  });
}

/** A program: an absolute or relative path that is executable, or a name found on PATH. */
export async function probeProgram(
  program: string,
  pathVariable = process.env.PATH ?? '',
): Promise<ProbeOutcome> {
  return outcome(async () => {
    const candidates = program.includes('/')
      ? [program]
      : pathVariable
          .split(':')
          .filter(Boolean)
          .map((d) => path.join(d, program));
    for (const candidate of candidates) {
      if (
        await fs.access(candidate, fsConstants.X_OK).then(
          () => true,
          () => false,
        )
      )
        return `${candidate} is executable`;
    }
    throw new ProbeFailure(
      'missing',
      program.includes('/')
        ? `${program} is not an executable file`
        : `${program} is not on the worker's PATH`,
    );
  });
}

/** The first key of a one-key listing (or none): a GET, whose error has a body with its code. */
function firstKey(client: Minio.Client, bucket: string): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const stream = client.listObjectsV2(bucket, '', false);
    stream.once('data', (item: { name?: string; prefix?: string }) => {
      stream.destroy();
      resolve(item.name ?? item.prefix);
    });
    stream.once('error', reject);
    stream.once('end', () => resolve(undefined));
  });
}
