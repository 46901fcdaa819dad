/**
 * What the worker tells the systems that watch it: its log lines — text for a person, or JSON
 * lines (WORKER_LOG_FORMAT=json) with the ids the SDK attaches (workflowId, runId, activityId,
 * activityType, taskQueue) for a log pipeline — and, with WORKER_METRICS_ADDRESS, the Temporal
 * SDK's own Prometheus endpoint. Both are the SDK's Runtime, installed once before the worker
 * connects; the worker's own lines go through the same logger.
 */
import {
  DefaultLogger,
  Runtime,
  makeTelemetryFilterString,
  type LogEntry,
  type Logger,
} from '@temporalio/worker';
import type { Config } from './config';

/** A log entry's fields as one JSON object; an Error in the metadata as its name and message. */
export function jsonLogLine(entry: LogEntry): string {
  const { level, timestampNanos, message, meta } = entry;
  return JSON.stringify(
    {
      time: new Date(Number(timestampNanos / 1_000_000n)).toISOString(),
      level,
      message,
      ...meta,
    },
    (_key, value: unknown) => {
      if (typeof value === 'bigint') return value.toString();
      if (value instanceof Error)
        return { name: value.name, message: value.message, ...('type' in value ? { type: value.type } : {}) };
      return value;
    },
  );
}

/** Installs the SDK's Runtime with the configured logs and metrics; returns its logger. */
export function installTelemetry(settings: Config['temporal']): Logger {
  const logger = new DefaultLogger(
    settings.logLevel,
    settings.logFormat === 'json' ? (entry) => process.stderr.write(jsonLogLine(entry) + '\n') : undefined,
  );
  Runtime.install({
    logger,
    telemetryOptions: {
      // The SDK core's own lines (connection trouble, poller errors) through the same logger.
      logging: { forward: {}, filter: makeTelemetryFilterString({ core: settings.logLevel }) },
      ...(settings.metricsAddress
        ? { metrics: { prometheus: { bindAddress: settings.metricsAddress } } }
        : {}),
    },
  });
  return logger;
}
