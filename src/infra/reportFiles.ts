/**
 * A report's two files in a folder — `<dir>/<kind>/<name>.json` and `.md`, named by reportKey —
 * as the worker writes them into REPORTS_DIR and `kohakku-dr drill` writes its own: one layout,
 * so `kohakku-dr history` reads both.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { reportKey, reportMarkdown, type Report } from '../domain/reports';

export async function writeReportFiles(
  report: Report,
  dir: string,
): Promise<{ json: string; markdown: string }> {
  const base = path.join(dir, reportKey(report).replace(/^reports\//, ''));
  await fs.mkdir(path.dirname(base), { recursive: true });
  await fs.writeFile(`${base}.json`, JSON.stringify(report, null, 2) + '\n');
  await fs.writeFile(`${base}.md`, reportMarkdown(report));
  return { json: `${base}.json`, markdown: `${base}.md` };
}
