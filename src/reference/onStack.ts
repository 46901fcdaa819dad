/** The reference Kohakku laid over an embedded stack, and the worker settings that point at it. */
import * as path from 'node:path';
import { freePort } from '../infra/processes';
import { stackEnv, type StackInfo } from '../stack/stack';
import { referenceScript, type ReferenceModel } from './model';

export async function referenceModelOn(stack: StackInfo, name = 'kohakku'): Promise<ReferenceModel> {
  return {
    postgres: {
      host: '127.0.0.1',
      port: stack.postgres.port,
      user: stack.postgres.user,
      controllerDb: 'kohakku-controller',
      dispatcherDb: 'kohakku-dispatcher',
    },
    redis: {
      host: '127.0.0.1',
      port: stack.redis.port,
      containersKey: 'kohakku:containers',
      prefix: 'kohakku:',
    },
    s3: {
      endPoint: '127.0.0.1',
      port: stack.minio.port,
      accessKey: stack.minio.accessKey,
      secretKey: stack.minio.secretKey,
      bucket: 'kohakku',
    },
    stateDir: path.join(stack.dir, name),
    ports: {
      controller: await freePort(),
      dispatcher: await freePort(),
      monitor: await freePort(),
      temporal: await freePort(),
    },
  };
}

/** Everything the kohakku-dr worker needs to recover this reference Kohakku on this stack. */
export function workerEnvFor(stack: StackInfo, model: ReferenceModel): Record<string, string> {
  return {
    ...stackEnv(stack),
    KOHAKKU_CONTROLLER_DB: model.postgres.controllerDb,
    KOHAKKU_DISPATCHER_DB: model.postgres.dispatcherDb,
    SERVICE_ADAPTER: 'command',
    SERVICE_RESTART_COMMAND: JSON.stringify([
      process.execPath,
      referenceScript('servicectl'),
      model.stateDir,
      '{action}',
      '{service}',
    ]),
    KOHAKKU_CONTROLLER_HEALTH: `http://127.0.0.1:${model.ports.controller}/healthz`,
    KOHAKKU_DISPATCHER_HEALTH: `http://127.0.0.1:${model.ports.dispatcher}/healthz`,
    KOHAKKU_MONITOR_HEALTH: `http://127.0.0.1:${model.ports.monitor}/healthz`,
    KOHAKKU_TEMPORAL_HEALTH: `tcp://127.0.0.1:${model.ports.temporal}`,
    KOHAKKU_REDIS_CONTAINERS_KEY: model.redis.containersKey,
    REDIS_DATA_DIR: stack.redis.dir,
    REDIS_CHECK_AOF_BIN: stack.tools.redisCheckAof,
    REDIS_SERVER_BIN: stack.tools.redisServer,
  };
}
