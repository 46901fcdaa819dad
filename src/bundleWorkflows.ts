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

async function run(): Promise<void> {
  const { code } = await bundleWorkflowCode({
    workflowsPath: require.resolve('./workflows'),
    payloadConverterPath: require.resolve('./payloadConverter'),
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
