/**
 * The production docker-compose.yml and the worker's Dockerfile, checked without a Docker engine:
 * the file is loaded as `docker compose config` loads it (tools/compose-check, built on
 * compose-go, the library Docker Compose is made of: the Compose Specification's JSON schema,
 * interpolation, references between services); it refuses to start without each secret, naming
 * it; it runs what the issue asks for (PostgreSQL archiving, Redis with AOF, S3 servers, Temporal
 * on PostgreSQL with its UI, the worker built here); the worker's settings are accepted by the
 * worker's own configuration (src/config.ts), secrets only by interpolation; and every file the
 * Dockerfiles copy exists.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { loadConfig, OPTIONS as OPTION_TABLE, type OptionSpec } from '../src/config';

const OPTIONS = OPTION_TABLE as readonly OptionSpec[];
import { toolPaths } from '../src/stack/tools';

const ROOT = path.join(__dirname, '..');
const COMPOSE = path.join(ROOT, 'docker-compose.yml');

/** The `${NAME:?…}` variables: what .env must set. */
const REQUIRED = [...readFileSync(COMPOSE, 'utf8').matchAll(/\$\{([A-Z0-9_]+):\?/g)].map((m) => m[1]!);
const SECRETS = Object.fromEntries(
  [...new Set(REQUIRED)].map((name) => [name, `test-${name.toLowerCase()}-0123`]),
);

interface Service {
  image?: string;
  build?: { context: string; dockerfile?: string };
  command?: string[];
  environment?: Record<string, string | null>;
  depends_on?: Record<string, { condition: string }>;
  volumes?: { source?: string; target: string }[];
}

async function composeConfig(env: Record<string, string>) {
  return promisify(execFile)(toolPaths().composeCheck, [COMPOSE], {
    env: { PATH: process.env.PATH ?? '', ...env },
    cwd: ROOT,
  }).then(
    ({ stdout }) => ({
      code: 0,
      project: JSON.parse(stdout) as { name: string; services: Record<string, Service> },
      stderr: '',
    }),
    (err: { code: number; stderr: string }) => ({ code: err.code, project: undefined, stderr: err.stderr }),
  );
}

test('without its secrets the file does not load, naming each one', async () => {
  expect(new Set(REQUIRED).size).toBeGreaterThanOrEqual(6);
  const { code, stderr } = await composeConfig({});
  expect(code).toBe(1);
  for (const name of new Set(REQUIRED))
    expect(stderr).toContain(`required variable ${name} is missing a value`);
  // .env.example lists each of them.
  const example = readFileSync(path.join(ROOT, '.env.example'), 'utf8');
  for (const name of new Set(REQUIRED)) expect(example).toMatch(new RegExp(`^${name}=$`, 'm'));
});

test('it loads as `docker compose config` would and runs what production needs', async () => {
  const { code, project, stderr } = await composeConfig(SECRETS);
  expect(stderr).toBe('');
  expect(code).toBe(0);
  const s = project!.services;
  expect(Object.keys(s).sort()).toEqual(
    [
      'backup-s3',
      'dr-temporal',
      'dr-temporal-db',
      'dr-temporal-ui',
      'kohakku-objectstore',
      'kohakku-redis',
      'postgresql',
      'worker',
    ].sort(),
  );
  expect(s.postgresql!.command).toEqual(expect.arrayContaining(['archive_mode=on', 'wal_level=replica']));
  expect(s['kohakku-redis']!.command!.join(' ')).toMatch(/--appendonly yes/);
  expect(s['dr-temporal']!.environment).toMatchObject({ DB: 'postgres12', POSTGRES_SEEDS: 'dr-temporal-db' });
  expect(s['dr-temporal']!.depends_on).toEqual({
    'dr-temporal-db': expect.objectContaining({ condition: 'service_healthy' }),
  });
  expect(s['dr-temporal-ui']!.environment).toMatchObject({ TEMPORAL_ADDRESS: 'dr-temporal:7233' });
  // Every image pinned to a version, never `latest`.
  for (const [name, service] of Object.entries(s))
    if (service.image)
      expect([name, service.image]).toEqual([name, expect.stringMatching(/:[\w.-]*\d[\w.-]*$/)]);
  // The worker is built here, from the Dockerfile the test checks below.
  expect(s.worker!.build).toMatchObject({ context: ROOT, dockerfile: 'Dockerfile' });
});

test("the worker's settings are ones the worker accepts, with its secrets only interpolated", async () => {
  const { project } = await composeConfig(SECRETS);
  const env = Object.fromEntries(
    Object.entries(project!.services.worker!.environment!).filter(
      (e): e is [string, string] => e[1] !== null,
    ),
  );
  const known = new Set(OPTIONS.map((o) => o.env));
  expect(Object.keys(env).filter((name) => !known.has(name))).toEqual([]);
  // The worker's own validation: every value parses (empty optional ones are unset).
  const config = loadConfig(Object.fromEntries(Object.entries(env).filter(([, v]) => v !== '')));
  expect(config).toMatchObject({
    temporal: { address: 'dr-temporal:7233', logFormat: 'json', metricsAddress: '0.0.0.0:9464' },
    backupStore: { kind: 's3', bucket: 'kohakku-backups' },
    services: { adapter: 'compose' },
  });
  expect(config.pitr).toBeDefined();
  // No secret written into the file: each secret setting of the worker comes from the environment.
  const raw = readFileSync(COMPOSE, 'utf8');
  const secretOptions = OPTIONS.filter((o) => o.secret && o.env in env);
  expect(secretOptions.map((o) => o.env)).toEqual(
    expect.arrayContaining(['POSTGRES_PASSWORD', 'REDIS_PASSWORD', 'S3_SECRET_KEY', 'BACKUP_S3_SECRET_KEY']),
  );
  for (const option of secretOptions) {
    const line = new RegExp(`^\\s+${option.env}:\\s*(.*)$`, 'm').exec(raw.slice(raw.indexOf('  worker:')));
    expect([option.env, line?.[1]]).toEqual([option.env, expect.stringMatching(/^\$\{[A-Z0-9_]+(:-)?\}$/)]);
  }
});

test('every file the Dockerfiles copy from this repository exists; the worker starts through scripts/worker', () => {
  for (const file of ['Dockerfile', 'docker/postgres/Dockerfile']) {
    const text = readFileSync(path.join(ROOT, file), 'utf8');
    const context =
      path.dirname(path.join(ROOT, file)) === path.join(ROOT, 'docker/postgres')
        ? path.join(ROOT, 'docker/postgres')
        : ROOT;
    for (const m of text.matchAll(/^COPY (?!--from)(.+) \S+$/gm))
      for (const source of m[1]!.split(/\s+/))
        expect([file, source, existsSync(path.join(context, source))]).toEqual([file, source, true]);
    for (const m of text.matchAll(/^FROM (\S+)/gm)) expect(m[1]).toMatch(/:[\w.-]*\d[\w.-]*$/);
  }
  const dockerfile = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
  expect(dockerfile).toMatch(/^CMD \["bash", "scripts\/worker"\]$/m);
  expect(dockerfile).toMatch(/pgbackrest/);
  expect(dockerfile).toMatch(/postgresql-client-15/);
});
