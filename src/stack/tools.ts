/** Where the real tools are: the paths scripts/install-tools.sh wrote, or the environment. */
import { existsSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export interface ToolPaths {
  temporal: string;
  minio: string;
  /** VersityGW, the second S3 server (the stack's backup store). */
  versitygw: string;
  pgBinDir: string;
  redisServer: string;
  redisCli: string;
  redisCheckAof: string;
  /** tools/compose-check: validates docker-compose.yml as `docker compose config` would (compose-go). */
  composeCheck: string;
}

const VARS: Record<keyof ToolPaths, string> = {
  temporal: 'KOHAKKU_DR_TEMPORAL_BIN',
  minio: 'KOHAKKU_DR_MINIO_BIN',
  versitygw: 'KOHAKKU_DR_VERSITYGW_BIN',
  pgBinDir: 'KOHAKKU_DR_PG_BIN_DIR',
  redisServer: 'KOHAKKU_DR_REDIS_SERVER_BIN',
  redisCli: 'KOHAKKU_DR_REDIS_CLI_BIN',
  redisCheckAof: 'KOHAKKU_DR_REDIS_CHECK_AOF_BIN',
  composeCheck: 'KOHAKKU_DR_COMPOSE_CHECK_BIN',
};

function toolsDir(): string {
  return (
    process.env.KOHAKKU_DR_TOOLS ??
    path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'kohakku-dr', 'tools')
  );
}

/** The paths scripts/install-tools.sh wrote (paths.env), by variable name. */
function installedPaths(): Record<string, string> {
  const fromFile: Record<string, string> = {};
  const file = path.join(toolsDir(), 'paths.env');
  if (existsSync(file)) {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
      if (m) fromFile[m[1]!] = m[2]!;
    }
  }
  return fromFile;
}

/** One tool's configured paths, unchecked, in the order tried: its variable, then the installed one. */
export function configuredToolPaths(key: keyof ToolPaths): string[] {
  return [process.env[VARS[key]], installedPaths()[VARS[key]]].filter((p): p is string => !!p);
}

export function toolPaths(): ToolPaths {
  const fromFile = installedPaths();
  const out = {} as ToolPaths;
  for (const [key, env] of Object.entries(VARS) as [keyof ToolPaths, string][]) {
    const value = process.env[env] ?? fromFile[env];
    if (!value || !existsSync(value)) {
      throw new Error(
        `${env} is not set or missing (${value ?? 'unset'}): run scripts/install-tools.sh first`,
      );
    }
    out[key] = value;
  }
  return out;
}
