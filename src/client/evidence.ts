/**
 * The CLI's side of reports and evidence: a drill's report (what the drill checked of the end
 * state, its recovery's steps, RTO and RPO, the controls it evidences), signed with
 * EVIDENCE_SIGNING_KEY_FILE and written to the reports folder; `evidence verify` (the signature
 * over exactly what the report says, by the given public key); `evidence keygen`; and `history`,
 * the RTO and RPO of past drills (and recoveries) as a trend.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { DRILL_CONTROLS, REPORT_FORMAT_VERSION, reportSteps, tenths, type Report } from '../domain/reports';
import { readPublicKey, readSigningKey, signReport, verifyReport, type Verdict } from '../infra/evidence';
import { writeReportFiles } from '../infra/reportFiles';
import { CliError } from './exitCodes';
import type { DrillReport } from './drillPlatform';

/** Where reports go and are read from when no REPORTS_DIR says otherwise. */
export const DEFAULT_REPORTS_DIR = 'kohakku-dr-reports';

export const reportsDir = (env: NodeJS.ProcessEnv = process.env) => env.REPORTS_DIR || DEFAULT_REPORTS_DIR;

/** A drill's report: its recovery's envelope, what it checked, the controls it evidences. */
export function drillReport(drill: DrillReport, startedAt: Date): Report {
  const r = drill.recovery;
  const now = new Date();
  return {
    formatVersion: REPORT_FORMAT_VERSION,
    kind: 'drill',
    procedure: `drill ${drill.scenario}`,
    title: `Restore drill (${drill.scenario})`,
    workflowId: r.recoveryId.split('/')[0],
    runId: r.recoveryId.split('/')[1],
    outcome: drill.ok ? 'passed' : 'failed',
    startedAt: startedAt.toISOString(),
    endedAt: now.toISOString(),
    durationSeconds: tenths(now.getTime() - startedAt.getTime()),
    measurements: r.measurements,
    ...(r.backup ? { backup: r.backup } : {}),
    steps: reportSteps(r.steps),
    approvals: r.approvals,
    warnings: r.warnings,
    liveData:
      'a drill on an embedded local stack and a seeded reference Kohakku: no production data involved',
    checks: drill.checks,
    controls: DRILL_CONTROLS,
  };
}

/** Signs `report` when a key file is given, writes it as the worker writes into REPORTS_DIR. */
export async function writeDrillReport(
  report: Report,
  dir: string,
  signingKeyFile?: string,
): Promise<{ json: string; markdown: string; signedBy?: string }> {
  let signed = report;
  if (signingKeyFile) {
    const key = await readSigningKey(signingKeyFile).catch((err: Error) => {
      throw new CliError('bad-input', `EVIDENCE_SIGNING_KEY_FILE: ${err.message}`);
    });
    signed = signReport(report, key);
  }
  return {
    ...(await writeReportFiles(signed, dir)),
    ...(signed.signature ? { signedBy: signed.signature.keyId } : {}),
  };
}

async function readReport(file: string): Promise<Report> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new CliError('bad-input', `cannot read ${file}: ${(err as Error).message}`);
  }
  try {
    const report = JSON.parse(text) as Report;
    if (typeof report !== 'object' || report === null || typeof report.kind !== 'string')
      throw new Error('not a report');
    return report;
  } catch (err) {
    throw new CliError('bad-input', `${file} is not a kohakku-dr report: ${(err as Error).message}`);
  }
}

/** `evidence verify`: the report, whether its signature holds, and why not. */
export async function verifyEvidence(
  file: string,
  publicKeyFile: string,
): Promise<{
  file: string;
  report: Pick<Report, 'kind' | 'procedure' | 'outcome' | 'endedAt'>;
  verdict: Verdict;
}> {
  const report = await readReport(file);
  const key = await readPublicKey(publicKeyFile).catch((err: Error) => {
    throw new CliError('bad-input', err.message);
  });
  return {
    file,
    report: {
      kind: report.kind,
      procedure: report.procedure,
      outcome: report.outcome,
      endedAt: report.endedAt,
    },
    verdict: verifyReport(report, key),
  };
}

export interface HistoryRow {
  endedAt: string;
  kind: Report['kind'];
  procedure: string;
  outcome: Report['outcome'];
  rtoSeconds?: number;
  rtoWithoutApprovalSeconds?: number;
  rpoSeconds?: number;
  signed: boolean;
  file: string;
}

async function jsonFilesUnder(dir: string): Promise<string[]> {
  const entries = await fs
    .readdir(dir, { withFileTypes: true, recursive: true })
    .catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [];
      throw err;
    });
  return entries
    .filter((e) => e.isFile() && e.name.endsWith('.json'))
    .map((e) => path.join(e.parentPath, e.name));
}

/** The reports under `dir`, oldest first: drills only unless `all`. */
export async function reportHistory(dir: string, all: boolean): Promise<HistoryRow[]> {
  const rows: HistoryRow[] = [];
  for (const file of await jsonFilesUnder(dir)) {
    let r: Report;
    try {
      r = JSON.parse(await fs.readFile(file, 'utf8')) as Report;
    } catch {
      continue; // not ours
    }
    if (r.formatVersion === undefined || !r.kind || (!all && r.kind !== 'drill')) continue;
    rows.push({
      endedAt: r.endedAt,
      kind: r.kind,
      procedure: r.procedure,
      outcome: r.outcome,
      rtoSeconds: r.measurements?.rtoSeconds,
      rtoWithoutApprovalSeconds: r.measurements?.rtoWithoutApprovalSeconds,
      rpoSeconds: r.measurements?.rpoSeconds,
      signed: Boolean(r.signature),
      file,
    });
  }
  return rows.sort((a, b) => (a.endedAt < b.endedAt ? -1 : a.endedAt > b.endedAt ? 1 : 0));
}

const BLOCKS = '▁▂▃▄▅▆▇█';

/** `▁▃█`: values as bar heights between their minimum and maximum. */
export function sparkline(values: number[]): string {
  if (values.length === 0) return '';
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  return values
    .map((v) => BLOCKS[hi === lo ? 3 : Math.round(((v - lo) / (hi - lo)) * (BLOCKS.length - 1))])
    .join('');
}

/** `history`'s words: a line per report, then the RTO and RPO trends per procedure. */
export function historyLines(rows: HistoryRow[], dir: string): string[] {
  if (rows.length === 0) return [`no reports in ${dir} (REPORTS_DIR; drills write theirs there)`];
  const num = (v?: number) => (v === undefined ? '—' : `${v} s`);
  const lines = rows.map(
    (r) =>
      `${r.endedAt}  ${r.procedure.padEnd(24)} ${r.outcome.padEnd(9)} RTO ${num(r.rtoSeconds).padStart(8)} (without approval ${num(r.rtoWithoutApprovalSeconds)})  RPO ${num(r.rpoSeconds).padStart(8)}${r.signed ? '  signed' : ''}`,
  );
  for (const procedure of [...new Set(rows.map((r) => r.procedure))]) {
    const of = rows.filter((r) => r.procedure === procedure && r.rtoSeconds !== undefined);
    if (of.length < 2) continue;
    const rto = of.map((r) => r.rtoSeconds!);
    const rpo = of.filter((r) => r.rpoSeconds !== undefined).map((r) => r.rpoSeconds!);
    lines.push(
      '',
      `${procedure}: ${of.length} runs`,
      `  RTO ${sparkline(rto)}  first ${rto[0]} s, last ${rto.at(-1)} s, best ${Math.min(...rto)} s, worst ${Math.max(...rto)} s`,
      ...(rpo.length >= 2 ? [`  RPO ${sparkline(rpo)}  first ${rpo[0]} s, last ${rpo.at(-1)} s`] : []),
    );
  }
  return lines;
}
