/**
 * The kohakku-dr worker: config → dependencies → activities → Worker.create.
 * A missing or invalid setting — or a backup store on Kohakku's own S3 server — stops it with
 * one line naming the setting (exit 2).
 */
import { existsSync } from 'node:fs';
import { getHeapStatistics } from 'node:v8';
import { NativeConnection, Worker } from '@temporalio/worker';
import { createActivities } from './activities';
import { createDeps } from './activities/deps';
import { MAX_HEARTBEAT_THROTTLE } from './activities/heartbeat';
import { WORKFLOW_BUNDLE, workflowCodeOptions } from './bundleWorkflows';
import { ConfigError, loadConfig, type Config } from './config';
import { checkFailureDomains } from './infra/failureDomains';
import { readSigningKey } from './infra/evidence';
import { installTelemetry } from './telemetry';

/**
 * One line on the memory settings this worker runs with: those of scripts/worker
 * (scripts/node-memory.sh), or a warning that without them its peak memory may be about twice
 * the README's figures.
 */
function memorySettings(config: Config): string {
  const heapMiB = Math.round(getHeapStatistics().heap_size_limit / 1048576);
  const growing = process.execArgv.find((a) => a.startsWith('--heap-growing-percent='))?.split('=')[1];
  const arenas = process.env.MALLOC_ARENA_MAX;
  const line = `heap limit ${heapMiB} MiB, heap growth ${growing ? `${growing} % over what is alive` : "V8's default"}, MALLOC_ARENA_MAX ${arenas ?? 'unset'}`;
  if (!growing || !arenas)
    return `worker memory: ${line} — started without scripts/worker, its peak memory may be twice the README's figures`;
  if (Number(growing) !== config.temporal.heapGrowingPercent)
    return `worker memory: ${line} — not WORKER_HEAP_GROWING_PERCENT=${config.temporal.heapGrowingPercent}: start it with scripts/worker and that setting`;
  return `worker memory: ${line}`;
}

async function run(): Promise<void> {
  const config = loadConfig();
  const logger = installTelemetry(config.temporal);
  await checkFailureDomains(config);
  // A signing key that cannot sign stops the worker now, not the first report.
  if (config.reports.signingKeyFile)
    await readSigningKey(config.reports.signingKeyFile).catch((err: Error) => {
      throw new ConfigError('EVIDENCE_SIGNING_KEY_FILE', err.message);
    });
  const deps = createDeps(config);
  const connection = await NativeConnection.connect({ address: config.temporal.address });
  try {
    const worker = await Worker.create({
      connection,
      namespace: config.temporal.namespace,
      taskQueue: config.temporal.taskQueue,
      // Bundled at build time when the build made it (bundleWorkflows.ts), else here.
      ...(existsSync(WORKFLOW_BUNDLE)
        ? {
            workflowBundle: { codePath: WORKFLOW_BUNDLE },
            dataConverter: workflowCodeOptions().dataConverter,
          }
        : workflowCodeOptions()),
      activities: createActivities(deps),
      maxConcurrentActivityTaskExecutions: config.temporal.maxConcurrentActivities,
      maxHeartbeatThrottleInterval: MAX_HEARTBEAT_THROTTLE,
    });
    logger.info(memorySettings(config));
    if (config.temporal.metricsAddress)
      logger.info(`Prometheus metrics at http://${config.temporal.metricsAddress}/metrics`);
    logger.info(
      `kohakku-dr worker polling ${config.temporal.taskQueue} on ${config.temporal.address} (${config.temporal.namespace})`,
    );
    await worker.run(); // returns after SIGINT/SIGTERM, once in-flight tasks are done
  } finally {
    await connection.close();
    await deps.close();
  }
}

run().catch((err) => {
  if (err instanceof ConfigError) {
    console.error(err.message);
    process.exit(2);
  }
  console.error(err);
  process.exit(1);
});
