/**
 * Reports and evidence as an auditor would use them, through the CLI: `evidence keygen` makes a
 * signing key; two real drills (`kohakku-dr drill`: their own embedded stack, the whole cluster
 * lost and recovered) write signed JSON + Markdown reports with the controls they evidence;
 * `evidence verify` accepts them, and rejects one whose RTO or a failed check was edited, and one
 * checked against another key; `history` gives their RTO and RPO as a trend.
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Report } from '../src/domain/reports';
import { runCli, stackTraceLine } from './harness/cli';
import { registerSecret } from './harness/secrets';

jest.setTimeout(300000);

let dir: string;
beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'evidence-'));
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

const cli = (args: string[], env: Record<string, string> = {}) =>
  runCli(args, { taskQueue: 'unused', env: { REPORTS_DIR: path.join(dir, 'reports'), ...env } });

test('drills write signed reports that evidence verify accepts, and rejects once changed; history shows the trend', async () => {
  const keygen = await cli(['evidence', 'keygen', '--dir', path.join(dir, 'keys'), '--json']);
  expect(keygen.code).toBe(0);
  const key = JSON.parse(keygen.stdout) as { keyFile: string; publicKeyFile: string; keyId: string };
  expect((await fs.stat(key.keyFile)).mode & 0o777).toBe(0o600);
  // The private key's body, for the secret sweep: it signs, and appears nowhere.
  registerSecret((await fs.readFile(key.keyFile, 'utf8')).replace(/-----[^-]+-----|\s/g, ''));
  const again = await cli(['evidence', 'keygen', '--dir', path.join(dir, 'keys')]);
  expect(again.code).toBe(3); // refused: an existing key is never overwritten

  const reports: string[] = [];
  for (let i = 0; i < 2; i++) {
    const drill = await cli(['drill', '--tasks', '1000', '--grace', '2', '--json'], {
      EVIDENCE_SIGNING_KEY_FILE: key.keyFile,
    });
    expect(drill.code).toBe(0);
    const result = JSON.parse(drill.stdout) as {
      ok: boolean;
      evidence: { json: string; markdown: string; signedBy: string };
    };
    expect(result.ok).toBe(true);
    expect(result.evidence.signedBy).toBe(key.keyId);
    reports.push(result.evidence.json);
  }
  const report = JSON.parse(await fs.readFile(reports[0]!, 'utf8')) as Report;
  expect(report).toMatchObject({
    kind: 'drill',
    procedure: 'drill full-cluster',
    outcome: 'passed',
    workflowId: 'kohakku-dr-recover-cluster',
    signature: { algorithm: 'ed25519', keyId: key.keyId },
  });
  expect(report.measurements!.rtoSeconds).toBeGreaterThan(0);
  expect(report.measurements!.rpoSeconds).toBeGreaterThan(0);
  expect(report.checks!.length).toBeGreaterThan(5);
  expect(report.checks!.every((c) => c.ok)).toBe(true);
  expect(report.steps.find((s) => s.name === 'restore into staging')!.detail).toMatch(/rows verified/);
  expect(report.controls!.map((c) => `${c.framework} ${c.id}`)).toEqual([
    'SOC 2 A1.2',
    'SOC 2 A1.3',
    'ISO 22301 8.5',
  ]);
  const markdown = await fs.readFile(reports[0]!.replace(/\.json$/, '.md'), 'utf8');
  expect(markdown).toMatch(/^# Restore drill \(full-cluster\): PASSED/);
  expect(markdown).toContain('SOC 2 A1.3');
  expect(markdown).toContain(`key ${key.keyId}`);

  const verified = await cli([
    'evidence',
    'verify',
    reports[0]!,
    '--public-key',
    key.publicKeyFile,
    '--json',
  ]);
  expect(verified.code).toBe(0);
  expect(JSON.parse(verified.stdout)).toMatchObject({
    verified: true,
    verdict: { ok: true, keyId: key.keyId },
  });

  // Edited after signing: a better RTO, a failed check turned into a pass.
  for (const [what, edit] of [
    ['rto', (r: Report) => (r.measurements!.rtoSeconds = 1)],
    ['check', (r: Report) => (r.checks![0]!.text += ' (edited)')],
  ] as const) {
    const tampered = JSON.parse(await fs.readFile(reports[0]!, 'utf8')) as Report;
    edit(tampered);
    const file = path.join(dir, `tampered-${what}.json`);
    await fs.writeFile(file, JSON.stringify(tampered, null, 2));
    const refused = await cli(['evidence', 'verify', file, '--public-key', key.publicKeyFile]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('NOT verified — the signature does not match the content');
    expect(refused.stderr).not.toMatch(stackTraceLine);
  }
  const other = await cli(['evidence', 'keygen', '--dir', path.join(dir, 'other'), '--json']);
  const otherKey = JSON.parse(other.stdout) as { publicKeyFile: string; keyId: string };
  const wrongKey = await cli(['evidence', 'verify', reports[0]!, '--public-key', otherKey.publicKeyFile]);
  expect(wrongKey.code).toBe(1);
  expect(wrongKey.stderr).toContain(`signed by key ${key.keyId}, not by the given key ${otherKey.keyId}`);

  const history = await cli(['history', '--json']);
  expect(history.code).toBe(0);
  const rows = (
    JSON.parse(history.stdout) as { reports: { procedure: string; rtoSeconds: number; signed: boolean }[] }
  ).reports;
  expect(rows).toHaveLength(2);
  expect(rows.every((r) => r.procedure === 'drill full-cluster' && r.rtoSeconds > 0 && r.signed)).toBe(true);
  const words = await cli(['history']);
  expect(words.stdout).toMatch(
    /drill full-cluster: 2 runs\n {2}RTO [▁-█]{2} {2}first [\d.]+ s, last [\d.]+ s/,
  );
});
