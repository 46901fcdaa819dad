/**
 * Configuration: the table validates once at start, and a real worker process refuses to start
 * on a bad setting with one line naming it — also on a backup store that shares Kohakku's S3
 * server, unless the unsafe setting accepts it. (No services are needed: the refusal comes before
 * any connection.)
 */
import * as path from 'node:path';
import { loadConfig, OPTIONS, optionsMarkdown } from '../src/config';
import { readFileSync } from 'node:fs';
import { startWorkerExpectingRefusal } from './harness/kohakku';

const minimal = {
  S3_ACCESS_KEY: 'k',
  S3_SECRET_KEY: 's',
  BACKUP_S3_ENDPOINT: 'https://backups.example:9443',
  BACKUP_S3_ACCESS_KEY: 'bk',
  BACKUP_S3_SECRET_KEY: 'bs',
};

test('defaults are the reference model; secrets are required where there is no default', () => {
  const config = loadConfig(minimal);
  expect(config.postgres.databases).toEqual({
    controller: 'kohakku-controller',
    dispatcher: 'kohakku-dispatcher',
  });
  expect(config.backupStore).toMatchObject({
    kind: 's3',
    bucket: 'kohakku-backups',
    s3: { endPoint: 'backups.example', port: 9443, useSSL: true, accessKey: 'bk', region: 'us-east-1' },
  });
  expect(config.replicaStore).toBeUndefined();
  expect(config.services.names.monitor).toBe('kohakku-monitor');
  expect(() => loadConfig({})).toThrow('invalid setting S3_ACCESS_KEY: required but not set');
});

test.each([
  [{ POSTGRES_PORT: 'abc' }, 'POSTGRES_PORT'],
  [{ POSTGRES_PORT: '70000' }, 'POSTGRES_PORT'],
  [{ BACKUP_STORE: 'tape' }, 'BACKUP_STORE'],
  [{ BACKUP_STORE: 'dir' }, 'BACKUP_DIR'],
  [{ SERVICE_ADAPTER: 'command' }, 'SERVICE_RESTART_COMMAND'],
  [
    { SERVICE_ADAPTER: 'command', SERVICE_RESTART_COMMAND: 'systemctl restart {service}' },
    'SERVICE_RESTART_COMMAND',
  ],
  [{ KOHAKKU_CONTROLLER_HEALTH: 'localhost:8080' }, 'KOHAKKU_CONTROLLER_HEALTH'],
  [{ KOHAKKU_SERVICE_NAMES: 'scheduler=x' }, 'KOHAKKU_SERVICE_NAMES'],
  [{ BACKUP_S3_ENDPOINT: '' }, 'BACKUP_S3_ENDPOINT'],
  [{ BACKUP_S3_SECRET_KEY: '' }, 'BACKUP_S3_SECRET_KEY'],
  [{ BACKUP_STORE_ON_KOHAKKU_S3: 'yes' }, 'BACKUP_STORE_ON_KOHAKKU_S3'],
  [{ BACKUP_REPLICA: 'tape' }, 'BACKUP_REPLICA'],
  [{ BACKUP_REPLICA: 'dir' }, 'BACKUP_REPLICA_DIR'],
  [{ BACKUP_REPLICA: 's3' }, 'BACKUP_REPLICA_S3_ENDPOINT'],
])('rejects %j naming %s', (env, setting) => {
  expect(() => loadConfig({ ...minimal, ...env })).toThrow(`invalid setting ${setting}:`);
});

test('a secret value is never echoed in an error', () => {
  expect(() => loadConfig({ ...minimal, S3_SECRET_KEY: ' ' })).toThrow(/S3_SECRET_KEY: .*\(got \(secret\)\)/);
});

test('the README documents exactly the options table', () => {
  const readme = readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8');
  expect(readme).toContain(optionsMarkdown());
  expect(OPTIONS.length).toBeGreaterThan(20);
});

test('the worker process refuses to start on a bad setting, naming it in one line', async () => {
  const { code, lines } = await startWorkerExpectingRefusal({ ...minimal, POSTGRES_PORT: 'not-a-port' });
  expect(code).toBe(2);
  expect(lines).toEqual([expect.stringContaining('invalid setting POSTGRES_PORT:')]);
});

test('a heap growth scripts/worker cannot pass to node, or outside 10–400, stops the worker naming the setting', async () => {
  for (const value of ['abc', '5']) {
    const { code, lines } = await startWorkerExpectingRefusal({
      ...minimal,
      WORKER_HEAP_GROWING_PERCENT: value,
    });
    expect(code).toBe(2);
    expect(lines).toEqual([expect.stringContaining('invalid setting WORKER_HEAP_GROWING_PERCENT:')]);
  }
});

test("the worker refuses a backup store on Kohakku's S3 server (by address: localhost = 127.0.0.1) and accepts it only with BACKUP_STORE_ON_KOHAKKU_S3", async () => {
  const shared = {
    ...minimal,
    S3_ENDPOINT: 'http://127.0.0.1:9000',
    BACKUP_S3_ENDPOINT: 'http://localhost:9000',
    // An unreachable Temporal: an accepted configuration gets past the check and fails to connect.
    TEMPORAL_ADDRESS: '127.0.0.1:1',
  };
  const refused = await startWorkerExpectingRefusal(shared);
  expect(refused.code).toBe(2);
  expect(refused.lines).toEqual([
    expect.stringMatching(
      /invalid setting BACKUP_S3_ENDPOINT: the backup store http:\/\/localhost:9000 is the same S3 server as Kohakku's bucket \(S3_ENDPOINT http:\/\/127\.0\.0\.1:9000\).*BACKUP_STORE_ON_KOHAKKU_S3=true/,
    ),
  ]);
  // Without its own endpoint at all: refused, saying what to set.
  const none = await startWorkerExpectingRefusal({ ...shared, BACKUP_S3_ENDPOINT: '' });
  expect(none.code).toBe(2);
  expect(none.lines).toEqual([
    expect.stringContaining('invalid setting BACKUP_S3_ENDPOINT: required when BACKUP_STORE=s3'),
  ]);
  // Another port is another server.
  const otherPort = await startWorkerExpectingRefusal({
    ...shared,
    BACKUP_S3_ENDPOINT: 'http://localhost:9100',
  });
  expect(otherPort.lines.join('\n')).not.toContain('invalid setting');
  // Accepted explicitly (unsafe): it gets past the check (and on to connecting to Temporal).
  for (const accepted of [
    { ...shared, BACKUP_STORE_ON_KOHAKKU_S3: 'true' },
    { ...shared, BACKUP_STORE_ON_KOHAKKU_S3: 'true', BACKUP_S3_ENDPOINT: '' },
  ]) {
    const run = await startWorkerExpectingRefusal(accepted);
    expect(run.lines.join('\n')).not.toContain('invalid setting');
    expect(run.code).not.toBe(2);
  }
  // A replica on Kohakku's server, or in the primary's place, is no second copy.
  const replicaOnKohakku = await startWorkerExpectingRefusal({
    ...minimal,
    S3_ENDPOINT: 'http://127.0.0.1:9000',
    BACKUP_REPLICA: 's3',
    BACKUP_REPLICA_S3_ENDPOINT: 'http://localhost:9000',
    BACKUP_REPLICA_S3_ACCESS_KEY: 'r',
    BACKUP_REPLICA_S3_SECRET_KEY: 'r',
  });
  expect(replicaOnKohakku.lines).toEqual([
    expect.stringContaining('invalid setting BACKUP_REPLICA_S3_ENDPOINT: the replica'),
  ]);
  const sameDir = await startWorkerExpectingRefusal({
    ...minimal,
    BACKUP_STORE: 'dir',
    BACKUP_DIR: '/srv/backups',
    BACKUP_REPLICA: 'dir',
    BACKUP_REPLICA_DIR: '/srv/backups/replica',
  });
  expect(sameDir.lines).toEqual([
    expect.stringContaining('invalid setting BACKUP_REPLICA_DIR: the replica is in the same place'),
  ]);
});
