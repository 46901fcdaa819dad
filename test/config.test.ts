/**
 * Configuration: the table validates once at start, and a real worker process refuses to start
 * on a bad setting with one line naming it. (The unit part needs no services.)
 */
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { loadConfig, OPTIONS, optionsMarkdown } from '../src/config';
import { readFileSync } from 'node:fs';

const minimal = { S3_ACCESS_KEY: 'k', S3_SECRET_KEY: 's' };

test('defaults are the reference model; secrets are required where there is no default', () => {
  const config = loadConfig(minimal);
  expect(config.postgres.databases).toEqual({
    controller: 'kohakku-controller',
    dispatcher: 'kohakku-dispatcher',
  });
  expect(config.backupStore).toEqual({ kind: 's3', bucket: 'kohakku-backups' });
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
  const child = spawn(process.execPath, [path.join(__dirname, '..', 'dist', 'worker.js')], {
    env: { PATH: process.env.PATH, ...minimal, POSTGRES_PORT: 'not-a-port' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  expect(code).toBe(2);
  expect(stderr.trim().split('\n')).toEqual([expect.stringContaining('invalid setting POSTGRES_PORT:')]);
});
