/**
 * Logic only, no services: which base backup chains retention expires as of an instant, and which
 * base backup a recovery starts from. The same functions act on a real pgBackRest repository in
 * pitr.test.ts (expire --set, a plan from the verified backup); here the edge cases are
 * enumerated: the newest full always kept, the one recovering to the retention window's first
 * instant kept, a verified or leased chain kept whatever its age, dependents going with their full;
 * verified backups preferred, known-bad ones passed over, a WAL gap refused.
 */
import { chooseBaseBackup } from '../src/activities/pitrRestore';
import { baseBackupRetention } from '../src/activities/pitrRetention';
import type { BaseBackupVerdict } from '../src/domain/pitr';

const day = 86400_000;
const asOf = Date.parse('2026-12-01T12:00:00Z');
const at = (daysAgo: number) => new Date(asOf - daysAgo * day).toISOString();

describe('baseBackupRetention', () => {
  const backups = [
    { label: '20261101-000000F', stop: at(30) },
    { label: '20261101-000000F_20261102-000000D', stop: at(29) },
    { label: '20261111-000000F', stop: at(20) },
    { label: '20261121-000000F', stop: at(10) },
    { label: '20261121-000000F_20261125-000000D', stop: at(6) },
    { label: '20261128-000000F', stop: at(3) },
  ];

  test('chains older than retention go, except the one that recovers to the start of the window and the newest', () => {
    const r = baseBackupRetention({ backups, asOf, retentionDays: 7, protect: [] });
    expect(r.expire).toEqual(['20261101-000000F', '20261111-000000F']);
    expect(r.kept).toEqual([
      {
        full: '20261121-000000F',
        reason: expect.stringMatching(/recovers to the start of the retention window/),
      },
      { full: '20261128-000000F', reason: 'newest full backup' },
    ]);
  });

  test('the chain of a protected backup (a verified differential, a lease) stays whatever its age', () => {
    const r = baseBackupRetention({
      backups,
      asOf,
      retentionDays: 7,
      protect: [{ label: '20261101-000000F_20261102-000000D', reason: 'newest verified recovery point' }],
    });
    expect(r.expire).toEqual(['20261111-000000F']);
    expect(r.kept[0]).toEqual({ full: '20261101-000000F', reason: 'newest verified recovery point' });
  });

  test('everything within retention stays; a lone full backup always stays', () => {
    expect(baseBackupRetention({ backups, asOf, retentionDays: 30, protect: [] }).expire).toEqual([]);
    expect(
      baseBackupRetention({ backups: [backups[0]!], asOf: asOf + 400 * day, retentionDays: 7, protect: [] }),
    ).toEqual({ expire: [], kept: [{ full: '20261101-000000F', reason: 'newest full backup' }] });
  });
});

describe('chooseBaseBackup', () => {
  const ok: BaseBackupVerdict = { ok: true, verifiedAt: at(1), problems: [] };
  const bad: BaseBackupVerdict = { ok: false, verifiedAt: at(1), problems: ['controller: no tables'] };
  const candidate = (label: string, verdict?: BaseBackupVerdict, missing: string[] = []) => ({
    backup: { label, archive: { start: `${label}-start` } },
    verdict,
    wal: { to: 'END', missing },
  });

  test('the newest verified one, naming the newer unverified and failed ones passed over', () => {
    const r = chooseBaseBackup([candidate('A', ok), candidate('B', bad), candidate('C')]);
    expect(r.chosen.label).toBe('A');
    expect(r.choice).toBe(
      `A: the newest verified base backup; newer passed over: C (not verified yet), B (FAILED verification ${at(1)}: controller: no tables)`,
    );
  });

  test('none verified: the newest not known bad, and it says so', () => {
    const r = chooseBaseBackup([candidate('A'), candidate('B', bad)]);
    expect(r.chosen.label).toBe('A');
    expect(r.choice).toMatch(/^A: NO verified base backup before the target/);
  });

  test('a verified one whose WAL has a gap is passed over; all with gaps is BackupCorrupt', () => {
    const r = chooseBaseBackup([candidate('A'), candidate('B', ok, ['000000010000000000000007'])]);
    expect(r.chosen.label).toBe('A');
    expect(r.choice).toMatch(/B \(WAL 000000010000000000000007 missing\)/);
    expect(() => chooseBaseBackup([candidate('B', ok, ['000000010000000000000007'])])).toThrow(
      /WAL segment 000000010000000000000007 is missing/,
    );
  });
});
