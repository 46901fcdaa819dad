/**
 * The report every recovery, verification and drill leaves behind — the evidence an auditor or a
 * post-incident review asks for: what ran, step by step with durations and the numbers each step
 * verified, RTO and RPO, the backup used, what was moved aside, who approved what and when, how it
 * ended and what happened to live data. One JSON document (signed, when a key is configured:
 * src/infra/evidence.ts) and a Markdown summary rendered from it. Pure: imported by workflows,
 * activities and the CLI alike.
 */
import type { ApprovalRecord, BackupChoice, Measurements, StepProgress } from '../workflows/definitions';

export const REPORT_FORMAT_VERSION = 1;

/** A control a drill's report is evidence for. */
export interface Control {
  framework: string;
  id: string;
  title: string;
}

/** What a restore drill evidences: a tested recovery from verified backups. */
export const DRILL_CONTROLS: Control[] = [
  {
    framework: 'SOC 2',
    id: 'A1.2',
    title: 'Data back-up processes and recovery infrastructure are implemented, operated and monitored',
  },
  {
    framework: 'SOC 2',
    id: 'A1.3',
    title: 'Recovery plan procedures supporting system recovery are tested',
  },
  {
    framework: 'ISO 22301',
    id: '8.5',
    title: 'Exercise programme: business continuity procedures exercised and tested',
  },
];

export interface ReportStep {
  name: string;
  status: StepProgress['status'];
  durationSeconds?: number;
  /** What the step found or did, with its numbers ("2,005,140 rows verified"). */
  detail?: string;
}

/** A check a drill made of the end state, and whether it held. */
export interface ReportCheck {
  ok: boolean;
  text: string;
}

export interface ReportSignature {
  algorithm: 'ed25519';
  /** The first 16 hex digits of the sha256 of the public key (SPKI DER). */
  keyId: string;
  /** base64 of the signature over canonicalJson(report without `signature`). */
  value: string;
}

export interface Report {
  formatVersion: number;
  kind: 'recovery' | 'verification' | 'drill';
  /** `full-cluster`, `total-database-loss`, `verify`, `drill full-cluster`… */
  procedure: string;
  title: string;
  workflowId?: string;
  runId?: string;
  outcome: 'completed' | 'failed' | 'cancelled' | 'passed';
  startedAt: string;
  endedAt: string;
  durationSeconds: number;
  measurements?: Measurements;
  backup?: BackupChoice;
  steps: ReportStep[];
  approvals: ApprovalRecord[];
  warnings: string[];
  /** On failure: the error's type and message. */
  error?: { type?: string; message: string };
  /** What happened to live data, in the words of the run's result or failure. */
  liveData: string;
  /** Drills: what was checked of the end state. */
  checks?: ReportCheck[];
  /** Drills: the controls this report evidences. */
  controls?: Control[];
  signature?: ReportSignature;
}

/** Milliseconds as seconds to a tenth, as reports and measurements give durations. */
export const tenths = (ms: number) => Math.round(ms / 100) / 10;

/** Steps as a report gives them: durations in seconds. */
export const reportSteps = (steps: StepProgress[]): ReportStep[] =>
  steps.map((s) => ({
    name: s.name,
    status: s.status,
    ...(s.durationMs !== undefined ? { durationSeconds: tenths(s.durationMs) } : {}),
    ...(s.detail ? { detail: s.detail } : {}),
  }));

/** JSON with every object's keys sorted, no spaces: the bytes a signature is over. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(
          Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
        )
      : v,
  );
}

/** The bytes of a report that its signature covers: all of it but the signature. */
export function signedBytes(report: Report): string {
  // eslint-disable-next-line @typescript-eslint/no-unused-vars
  const { signature, ...rest } = report;
  return canonicalJson(rest);
}

/** `reports/recovery/20261203T131429Z-full-cluster-01a23c0a`: where a report's two files go (+ .json, .md). */
export function reportKey(report: Pick<Report, 'kind' | 'procedure' | 'endedAt' | 'runId'>): string {
  const at = report.endedAt.replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  const slug = report.procedure.replace(/[^a-z0-9]+/gi, '-').toLowerCase();
  return `reports/${report.kind}/${at}-${slug}${report.runId ? `-${report.runId.slice(0, 8)}` : ''}`;
}

const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

/** The Markdown summary of a report, for people (the JSON is the evidence). */
export function reportMarkdown(r: Report): string {
  const m = r.measurements;
  const lines = [
    `# ${r.title}: ${r.outcome.toUpperCase()}`,
    '',
    `- **Procedure**: ${r.procedure}${r.workflowId ? ` — workflow \`${r.workflowId}\`${r.runId ? `, run \`${r.runId}\`` : ''}` : ''}`,
    `- **When**: ${r.startedAt} → ${r.endedAt} (${r.durationSeconds} s)`,
    ...(m
      ? [
          `- **RTO**: ${m.rtoSeconds} s (${m.rtoWithoutApprovalSeconds} s without ${m.approvalWaitSeconds} s waiting for approval)`,
          `- **RPO**: ${m.rpoSeconds !== undefined ? `${m.rpoSeconds} s (incident ${m.incidentAt}, backup ${m.backupCreatedAt})` : 'not measured'}`,
        ]
      : []),
    ...(r.backup
      ? [
          `- **Backup**: ${r.backup.id} of ${r.backup.createdAt}, ${r.backup.verified ? 'verified' : 'NOT verified'}${r.backup.source ? `, from the ${r.backup.source} store` : ''}${r.backup.choice ? ` (${r.backup.choice})` : ''}`,
        ]
      : []),
    `- **Live data**: ${r.liveData}`,
    ...(r.error ? [`- **Error**: ${r.error.type ? `${r.error.type}: ` : ''}${r.error.message}`] : []),
    '',
    '## Steps',
    '',
    '| step | status | seconds | what it found or did |',
    '| --- | --- | ---: | --- |',
    ...r.steps.map(
      (s) => `| ${cell(s.name)} | ${s.status} | ${s.durationSeconds ?? ''} | ${cell(s.detail ?? '')} |`,
    ),
    '',
    '## Approvals',
    '',
    ...(r.approvals.length
      ? r.approvals.map(
          (a) =>
            `- ${a.step}: approved by ${a.by ?? 'unnamed'} at ${a.at}${a.note ? ` (${a.note})` : ''} — replacing ${a.replaces.join('; ')}`,
        )
      : ['none needed']),
    ...(r.checks
      ? ['', '## Checks of the end state', '', ...r.checks.map((c) => `- ${c.ok ? '✔' : '✘'} ${c.text}`)]
      : []),
    ...(r.warnings.length ? ['', '## Warnings', '', ...r.warnings.map((w) => `- ${w}`)] : []),
    ...(r.controls
      ? ['', '## Controls evidenced', '', ...r.controls.map((c) => `- ${c.framework} ${c.id}: ${c.title}`)]
      : []),
    '',
    r.signature
      ? `Signed (${r.signature.algorithm}, key ${r.signature.keyId}): check the JSON with \`kohakku-dr evidence verify <report>.json --public-key <key>.pub\`.`
      : 'Not signed (no EVIDENCE_SIGNING_KEY_FILE).',
    '',
  ];
  return lines.join('\n');
}
