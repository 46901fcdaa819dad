/**
 * A run's report, from workflow code: the engine's recoveries and the backup verification hand
 * theirs to the worker's `writeReport` activity (signing, the backup store, REPORTS_DIR). Runs
 * started before 0.3.6 replay writing none (patch `kohakku-dr-report`); a report that could not
 * be written is a warning for the run, never its failure, and a cancelled run still writes one.
 */
import { CancellationScope, patched, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { REPORT_FORMAT_VERSION, reportSteps, tenths, type Report } from '../domain/reports';
import type { StepProgress } from './definitions';
import { rootMessage } from './engine/progress';
import { reporting } from './options';

export const REPORT_PATCH = 'kohakku-dr-report';

const { writeReport } = proxyActivities<Activities>(reporting);

export type ReportFields = Omit<
  Report,
  'formatVersion' | 'workflowId' | 'runId' | 'endedAt' | 'durationSeconds' | 'steps' | 'signature'
> & { steps: StepProgress[] };

/** Writes the report; where it went, or undefined (with `warn` told why). */
export async function recordReport(
  fields: ReportFields,
  warn: (warning: string) => void,
): Promise<string[] | undefined> {
  if (!patched(REPORT_PATCH)) return undefined;
  const info = workflowInfo();
  const now = Date.now();
  try {
    const { written } = await CancellationScope.nonCancellable(() =>
      writeReport({
        ...fields,
        formatVersion: REPORT_FORMAT_VERSION,
        workflowId: info.workflowId,
        runId: info.runId,
        endedAt: new Date(now).toISOString(),
        durationSeconds: tenths(now - Date.parse(fields.startedAt)),
        steps: reportSteps(fields.steps),
      }),
    );
    return written;
  } catch (err) {
    warn(`the report could not be written: ${rootMessage(err)}`);
    return undefined;
  }
}
