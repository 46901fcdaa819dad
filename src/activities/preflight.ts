/**
 * The preflight check every recovery runs first: each endpoint it needs answers, within seconds,
 * or the recovery fails at once with a typed, non-retryable error naming the endpoint, where it
 * is and why (unreachable, credentials refused, not there) — before anything is locked, read or
 * changed. A wrong S3 secret or a dead PostgreSQL is then named in seconds, not after minutes of
 * retries. Without a `from`, a recovery may read from either backup store: one that answers is
 * enough, and the other's failure is reported as a warning.
 */
import { promises as fs } from 'node:fs';
import type { Config, StoreConfig } from '../config';
import { ENDPOINTS, type Endpoint, type EndpointCheck } from '../domain/endpoints';
import { ErrorType, fail, type ErrorTypeName } from '../domain/errors';
import type { StoreName } from '../domain/stores';
import type * as Minio from 'minio';
import {
  probeBucket,
  probeDirectory,
  probePostgres,
  probeProgram,
  probeRedis,
  type ProbeOutcome,
} from '../infra/probes';
import { s3Client } from '../infra/s3';
import { serviceCommand } from './services';

export interface PreflightDeps {
  config: Config;
  /** Kohakku's object store. */
  s3: Minio.Client;
}

export interface PreflightReport {
  checks: EndpointCheck[];
  /** Failures that did not stop the recovery (a second backup store that did not answer). */
  warnings: string[];
  /**
   * Whether the worker has a notification webhook (NOTIFY_WEBHOOK_URL): the recovery then sends
   * its notifications. Absent from runs recorded before 0.3.6, which replay sending none.
   */
  notifications?: boolean;
}

const TYPE_OF_CAUSE: Record<NonNullable<EndpointCheck['cause']>, ErrorTypeName> = {
  unreachable: ErrorType.EndpointUnreachable,
  auth: ErrorType.EndpointAuthFailed,
  missing: ErrorType.EndpointMissing,
};

function line(check: EndpointCheck): string {
  const cause =
    check.cause === 'auth' ? 'credentials refused' : check.cause === 'missing' ? 'not there' : 'unreachable';
  return `${ENDPOINTS[check.endpoint]} at ${check.address}: ${cause} — ${check.detail}`;
}

export function createPreflightActivities({ config, s3 }: PreflightDeps) {
  const timed = async (endpoint: Endpoint, address: string, probe: () => Promise<ProbeOutcome>) => {
    const t0 = Date.now();
    const result = await probe();
    return { endpoint, address, ...result, ms: Date.now() - t0 } satisfies EndpointCheck;
  };

  const storeCheck = (name: StoreName, place: StoreConfig) =>
    place.kind === 's3'
      ? timed('backup-store', `${name}: s3://${place.bucket} on ${place.s3.url}`, () =>
          probeBucket(s3Client(place.s3), place.bucket),
        )
      : timed('backup-store', `${name}: ${place.dir}`, () => probeDirectory(place.dir));

  const checksFor: Record<Endpoint, (from?: StoreName) => Promise<EndpointCheck>[]> = {
    postgres: () => {
      const pg = config.postgres;
      return [
        timed('postgres', `${pg.host}:${pg.port} (user ${pg.user}, database ${pg.maintenanceDb})`, () =>
          probePostgres({ ...pg, database: pg.maintenanceDb }),
        ),
      ];
    },
    redis: () => {
      const r = config.redis;
      return [timed('redis', `${r.host}:${r.port} (db ${r.db})`, () => probeRedis(r))];
    },
    'kohakku-s3': () => [
      timed('kohakku-s3', `s3://${config.kohakkuBucket} on ${config.s3.url}`, () =>
        probeBucket(s3, config.kohakkuBucket),
      ),
    ],
    'backup-store': (from) => {
      if (from === 'replica' && config.replicaStore) return [storeCheck('replica', config.replicaStore)];
      if (from === 'primary' || !config.replicaStore) return [storeCheck('primary', config.backupStore)];
      return [storeCheck('primary', config.backupStore), storeCheck('replica', config.replicaStore)];
    },
    'service-adapter': () => {
      const s = config.services;
      // The program the adapter runs (the first service's command shows which).
      const program = serviceCommand(s, 'controller')[0]!;
      const checks = [timed('service-adapter', `${s.adapter}: ${program}`, () => probeProgram(program))];
      if (s.adapter === 'compose' && s.composeFile) {
        const file = s.composeFile;
        checks.push(
          timed('service-adapter', `compose file ${file}`, async () =>
            (await fs.stat(file).then(
              () => true,
              () => false,
            ))
              ? { ok: true, detail: `${file} is there` }
              : { ok: false, cause: 'missing', detail: `${file} does not exist` },
          ),
        );
      }
      return checks;
    },
  };

  /**
   * Checks the endpoints side by side (each within a few seconds). Fails with EndpointAuthFailed,
   * EndpointMissing or EndpointUnreachable (in that order of precedence: the most specific cause)
   * naming every endpoint that failed; returns every check otherwise.
   */
  async function checkEndpoints(input: {
    endpoints: Endpoint[];
    from?: StoreName;
  }): Promise<PreflightReport> {
    const unknown = input.endpoints.filter((e) => !(e in ENDPOINTS));
    if (unknown.length) throw fail(ErrorType.InvalidInput, `unknown endpoint(s): ${unknown.join(', ')}`);
    const checks = await Promise.all(
      [...new Set(input.endpoints)].flatMap((endpoint) => checksFor[endpoint](input.from)),
    );
    const warnings: string[] = [];
    const failed = checks.filter((c) => {
      if (c.ok) return false;
      // Any backup store that answers will do when the input names none.
      if (
        c.endpoint === 'backup-store' &&
        !input.from &&
        checks.some((o) => o.endpoint === 'backup-store' && o.ok)
      ) {
        warnings.push(`${line(c)} (the other backup store answered; a backup there can still be used)`);
        return false;
      }
      return true;
    });
    if (failed.length) {
      const cause = (['auth', 'missing', 'unreachable'] as const).find((k) =>
        failed.some((f) => f.cause === k),
      )!;
      throw fail(
        TYPE_OF_CAUSE[cause],
        `preflight: ${failed.map(line).join('; ')}. Nothing was changed; fix the setting or the endpoint and start the recovery again`,
        { checks },
      );
    }
    return { checks, warnings, notifications: Boolean(config.notify.webhookUrl) };
  }

  return { checkEndpoints };
}
