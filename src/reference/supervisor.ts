/**
 * Starts, restarts and stops the reference Kohakku's processes. Each service's spec and pid
 * sit in the state folder, so any process — the command service adapter (servicectl), a test,
 * the drill — can restart one.
 */
import { appendFileSync, existsSync, promises as fs, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { isAlive, startDaemon, stopDaemon, waitUntil } from '../infra/processes';
import { waitForTemporalDevServer } from '../stack/temporalReady';
import { toolPaths } from '../stack/tools';
import { MODEL_ENV, referenceScript, type ReferenceModel } from './model';

export const REFERENCE_SERVICES = ['controller', 'dispatcher', 'monitor', 'agents', 'temporal'] as const;
export type ReferenceService = (typeof REFERENCE_SERVICES)[number];

interface ServiceRecord {
  name: ReferenceService;
  /** The program and its arguments: node with a reference script, or Kohakku's own Temporal. */
  file: string;
  args: string[];
  env: Record<string, string>;
  log: string;
  pid: number;
  pidsFile?: string;
}

export interface ServiceOptions {
  /** Controller/Dispatcher hold one connection and need a restart once it is lost. */
  noReconnect?: boolean;
  monitorIntervalSeconds?: number;
  agentIntervalSeconds?: number;
  /** Pids are appended here too (the stack's list), so stopping the stack stops them. */
  pidsFile?: string;
}

const recordFile = (model: Pick<ReferenceModel, 'stateDir'>, name: string) =>
  path.join(model.stateDir, `${name}.service.json`);

function launch(record: Omit<ServiceRecord, 'pid'>): ServiceRecord {
  const daemon = startDaemon(record.name, record.file, record.args, {
    log: record.log,
    env: record.env,
  });
  if (record.pidsFile) appendFileSync(record.pidsFile, `${daemon.pid}\n`);
  return { ...record, pid: daemon.pid };
}

export async function startReferenceService(
  model: ReferenceModel,
  name: ReferenceService,
  options: ServiceOptions = {},
): Promise<void> {
  await fs.mkdir(model.stateDir, { recursive: true });
  const env: Record<string, string> = { [MODEL_ENV]: JSON.stringify(model) };
  if (options.noReconnect) env.KOHAKKU_REF_NO_RECONNECT = '1';
  if (options.monitorIntervalSeconds !== undefined)
    env.KOHAKKU_REF_MONITOR_INTERVAL = String(options.monitorIntervalSeconds);
  if (options.agentIntervalSeconds !== undefined)
    env.KOHAKKU_REF_AGENT_INTERVAL = String(options.agentIntervalSeconds);
  // Kohakku's own Temporal is a real dev server of its own (not the DR one the worker uses).
  const [file, args] =
    name === 'temporal'
      ? [
          toolPaths().temporal,
          [
            'server',
            'start-dev',
            '--headless',
            '--ip',
            '127.0.0.1',
            '--port',
            String(model.ports.temporal),
            '--db-filename',
            path.join(model.stateDir, 'kohakku-temporal.db'),
            '--log-level',
            'warn',
          ],
        ]
      : [process.execPath, [referenceScript(name)]];
  const record = launch({
    name,
    file,
    args,
    env,
    log: path.join(model.stateDir, `${name}.log`),
    pidsFile: options.pidsFile,
  });
  await fs.writeFile(recordFile(model, name), JSON.stringify(record, null, 2));
  if (name !== 'agents') await waitForServiceHealthy(model, name, 20000);
}

export async function waitForServiceHealthy(
  model: ReferenceModel,
  name: Exclude<ReferenceService, 'agents'>,
  timeoutMs: number,
): Promise<void> {
  const log = path.join(model.stateDir, `${name}.log`);
  if (name === 'temporal') {
    await waitForTemporalDevServer({
      cli: toolPaths().temporal,
      port: model.ports.temporal,
      namespace: 'default',
      log,
      timeoutMs,
    });
    return;
  }
  await waitUntil(
    `reference ${name}`,
    async () =>
      (
        await fetch(`http://127.0.0.1:${model.ports[name]}/healthz`, {
          signal: AbortSignal.timeout(2000),
        })
      ).ok,
    timeoutMs,
    log,
  );
}

/** Stops the service and starts it again with the same spec. Does not wait for health. */
export async function restartReferenceService(stateDir: string, name: ReferenceService): Promise<number> {
  const file = recordFile({ stateDir }, name);
  if (!existsSync(file)) throw new Error(`no reference service ${name} was started in ${stateDir}`);
  const record = JSON.parse(readFileSync(file, 'utf8')) as ServiceRecord;
  await stopDaemon(record.pid, 5000);
  const next = launch(record);
  await fs.writeFile(file, JSON.stringify(next, null, 2));
  return next.pid;
}

/** Stops one service (its record stays, so it can be started again). */
export async function stopReferenceService(stateDir: string, name: ReferenceService): Promise<void> {
  const file = recordFile({ stateDir }, name);
  if (!existsSync(file)) throw new Error(`no reference service ${name} was started in ${stateDir}`);
  const record = JSON.parse(readFileSync(file, 'utf8')) as ServiceRecord;
  await stopDaemon(record.pid, 5000);
}

/** Starts a stopped service with its recorded spec (a no-op when it runs). Does not wait for health. */
export async function startStoppedReferenceService(
  stateDir: string,
  name: ReferenceService,
): Promise<number> {
  const file = recordFile({ stateDir }, name);
  if (!existsSync(file)) throw new Error(`no reference service ${name} was started in ${stateDir}`);
  const record = JSON.parse(readFileSync(file, 'utf8')) as ServiceRecord;
  if (isAlive(record.pid)) return record.pid;
  const next = launch(record);
  await fs.writeFile(file, JSON.stringify(next, null, 2));
  return next.pid;
}

export async function stopReferenceServices(stateDir: string): Promise<void> {
  await Promise.all(
    REFERENCE_SERVICES.map(async (name) => {
      const file = recordFile({ stateDir }, name);
      if (!existsSync(file)) return;
      const record = JSON.parse(readFileSync(file, 'utf8')) as ServiceRecord;
      await stopDaemon(record.pid, 5000);
    }),
  );
}

export function servicePid(stateDir: string, name: ReferenceService): number | undefined {
  const file = recordFile({ stateDir }, name);
  if (!existsSync(file)) return undefined;
  const pid = (JSON.parse(readFileSync(file, 'utf8')) as ServiceRecord).pid;
  return isAlive(pid) ? pid : undefined;
}
