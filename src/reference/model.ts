import * as path from 'node:path';

/** Connection settings of a reference Kohakku, handed to its processes as one JSON variable. */
export interface ReferenceModel {
  postgres: { host: string; port: number; user: string; controllerDb: string; dispatcherDb: string };
  redis: { host: string; port: number; containersKey: string; prefix: string };
  s3: { endPoint: string; port: number; accessKey: string; secretKey: string; bucket: string };
  /** Folder for service specs, pids, logs and the live-agents list. */
  stateDir: string;
  ports: { controller: number; dispatcher: number; monitor: number; temporal: number };
}

export const MODEL_ENV = 'KOHAKKU_REFERENCE_MODEL';

export function modelFromEnv(): ReferenceModel {
  const raw = process.env[MODEL_ENV];
  if (!raw) throw new Error(`${MODEL_ENV} is not set`);
  return JSON.parse(raw) as ReferenceModel;
}

/** Status mix of the seed, by task id modulo 10 (deterministic, so tests can predict it). */
export function seededStatus(id: number): 'completed' | 'pending' | 'running-live' | 'running-lost' {
  const m = id % 10;
  if (m < 4) return 'completed';
  if (m < 7) return 'pending';
  if (m < 9) return 'running-live';
  return 'running-lost';
}

export function containerName(id: number): string {
  return `agent-${String(id).padStart(7, '0')}`;
}

/**
 * Path of a compiled reference script (controller.js, servicectl.js…). Run from the sources
 * (jest), __dirname is src/reference; the processes always run the build in dist/.
 */
export function referenceScript(name: string): string {
  const dir = __filename.endsWith('.ts') ? path.resolve(__dirname, '../../dist/reference') : __dirname;
  return path.join(dir, `${name}.js`);
}
