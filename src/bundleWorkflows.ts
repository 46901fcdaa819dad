/**
 * Bundles the workflow code once, at build time (`npm run build`), into dist/workflow-bundle.js.
 * A worker given the bundle starts in a second and never loads webpack: bundling inside the
 * worker at start-up costs it seconds and a few hundred MiB of heap it keeps (Temporal's advice
 * for production workers). The worker falls back to bundling itself when the file is missing.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';

export const WORKFLOW_BUNDLE = path.join(__dirname, 'workflow-bundle.js');

/**
 * What every worker, replayer and bundle of kohakku-dr's workflows is made of — the workflows,
 * their interceptors (activity summaries), the payload converter — named once, so a test's
 * worker and a replay run the same code as production.
 */
export const WORKFLOW_CODE = {
  workflowsPath: require.resolve('./workflows'),
  workflowInterceptorModules: [require.resolve('./workflows/interceptors')],
  payloadConverterPath: require.resolve('./payloadConverter'),
};

/** Worker.create's (and the replayer's) options for that code, when it is not bundled ahead. */
export const workflowCodeOptions = () => ({
  workflowsPath: WORKFLOW_CODE.workflowsPath,
  interceptors: { workflowModules: WORKFLOW_CODE.workflowInterceptorModules },
  dataConverter: { payloadConverterPath: WORKFLOW_CODE.payloadConverterPath },
});

async function run(): Promise<void> {
  const { code } = await bundleWorkflowCode({
    ...WORKFLOW_CODE,
    logger: { trace() {}, debug() {}, info() {}, warn: console.warn, error: console.error, log() {} },
  });
  await fs.writeFile(WORKFLOW_BUNDLE, code);
  console.log(
    `workflow bundle: ${path.relative(process.cwd(), WORKFLOW_BUNDLE)} (${Math.round(code.length / 1024)} KiB)`,
  );
}

if (require.main === module)
  run().catch((err) => {
    console.error(err);
    process.exit(1);
  });
