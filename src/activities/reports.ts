/**
 * Writes a run's report (src/domain/reports.ts): signed with EVIDENCE_SIGNING_KEY_FILE when one
 * is configured, as `<key>.json` and `<key>.md` under `reports/` in the backup store — the primary,
 * else the replica, so a report outlives the cluster it is about — and into REPORTS_DIR when set.
 * Returns where it went; a report that could be written nowhere is an error the workflow turns
 * into a warning, never the run's failure.
 */
import type { KeyObject } from 'node:crypto';
import type { Config } from '../config';
import { reportKey, reportMarkdown, type Report } from '../domain/reports';
import type { BackupStores } from '../infra/stores';
import { readSigningKey, signReport } from '../infra/evidence';
import { writeReportFiles } from '../infra/reportFiles';

export interface ReportDeps {
  config: Pick<Config, 'reports'>;
  stores: BackupStores;
}

export interface WrittenReport {
  /** Where the JSON and Markdown went: store locations and files. */
  written: string[];
  /** Key id of the signature, when signed. */
  signedBy?: string;
  failures: string[];
}

export function createReportActivities({ config, stores }: ReportDeps) {
  let key: Promise<KeyObject> | undefined;
  const signingKey = () =>
    config.reports.signingKeyFile ? (key ??= readSigningKey(config.reports.signingKeyFile)) : undefined;

  async function writeReport(input: Report): Promise<WrittenReport> {
    const k = signingKey();
    const report = k ? signReport(input, await k) : input;
    const json = JSON.stringify(report, null, 2) + '\n';
    const markdown = reportMarkdown(report);
    const base = reportKey(report);
    const written: string[] = [];
    const failures: string[] = [];
    for (const store of [stores.primary, stores.replica]) {
      if (!store) continue;
      try {
        await store.putBytes(`${base}.json`, Buffer.from(json));
        await store.putBytes(`${base}.md`, Buffer.from(markdown));
        written.push(`${base}.json in ${store.location}`);
        break; // one store is enough; the replica only when the primary is not there
      } catch (err) {
        failures.push(`${store.location}: ${(err as Error).message}`);
      }
    }
    if (config.reports.dir) {
      try {
        written.push((await writeReportFiles(report, config.reports.dir)).json);
      } catch (err) {
        failures.push(`${config.reports.dir}: ${(err as Error).message}`);
      }
    }
    if (written.length === 0) throw new Error(`the report could be written nowhere: ${failures.join('; ')}`);
    return { written, failures, ...(report.signature ? { signedBy: report.signature.keyId } : {}) };
  }

  return { writeReport };
}
