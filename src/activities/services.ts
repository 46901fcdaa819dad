/**
 * Kohakku's services: health checks (HTTP 2xx or a TCP connect, each with a deadline) and
 * restarts, stops and starts through the configured adapter. Every adapter is an argument array
 * run by execa.
 */
import * as net from 'node:net';
import * as path from 'node:path';
import type { Config, KohakkuService, ServiceAdapterKind } from '../config';
import { ErrorType, fail } from '../domain/errors';
import type { CommandRunner } from '../infra/exec';
import { cancellationSignal, heartbeat, sleep } from './heartbeat';

export interface HealthReport {
  service: KohakkuService;
  healthy: boolean;
  checks: number;
  waitedMs: number;
  lastError?: string;
}

/** What the adapter can do to a service: restart it (every recovery), or stop and start it (point-in-time recovery). */
export type ServiceAction = 'restart' | 'stop' | 'start';

/** The command that restarts, stops or starts `service` under each adapter. */
export function serviceCommand(
  config: Config['services'],
  service: KohakkuService,
  action: ServiceAction = 'restart',
): string[] {
  const name = config.names[service];
  switch (config.adapter) {
    case 'command': {
      const template = config.restartCommand!;
      if (action !== 'restart' && !template.some((part) => part.includes('{action}')))
        throw fail(
          ErrorType.InvalidInput,
          `SERVICE_RESTART_COMMAND has no {action} placeholder, so ${service} cannot be ${action === 'stop' ? 'stopped' : 'started'} (point-in-time recovery needs both): add "{action}" where the command takes restart, stop or start`,
        );
      return template.map((part) => part.replaceAll('{service}', name).replaceAll('{action}', action));
    }
    case 'compose':
      return ['docker', 'compose', ...(config.composeFile ? ['-f', config.composeFile] : []), action, name];
    case 'systemd':
      return ['systemctl', action, name];
    case 'kubectl':
      return action === 'restart'
        ? ['kubectl', '--namespace', config.kubeNamespace, 'rollout', 'restart', `deployment/${name}`]
        : [
            'kubectl',
            '--namespace',
            config.kubeNamespace,
            'scale',
            `deployment/${name}`,
            `--replicas=${action === 'stop' ? 0 : 1}`,
          ];
  }
}

/**
 * What each service adapter's program needs from the worker's environment beyond the basics
 * (infra/exec.ts): the system bus for systemctl, the Docker daemon and project for compose,
 * the kubeconfig or the in-cluster service account's API address for kubectl.
 */
const ADAPTER_ENV: Record<Exclude<ServiceAdapterKind, 'command'>, readonly string[]> = {
  systemd: ['DBUS_SYSTEM_BUS_ADDRESS', 'XDG_RUNTIME_DIR', 'SYSTEMD_*'],
  compose: ['DOCKER_*', 'COMPOSE_*'],
  kubectl: ['KUBECONFIG', 'KUBERNETES_SERVICE_HOST', 'KUBERNETES_SERVICE_PORT'],
};

/** One health check: undefined when healthy, else what failed and whether nothing listened. */
async function probe(
  target: string,
  timeoutMs: number,
): Promise<{ error: string; refused: boolean } | undefined> {
  const url = new URL(target);
  if (url.protocol === 'tcp:') {
    return new Promise((resolve) => {
      const socket = net.connect({ host: url.hostname, port: Number(url.port) });
      const done = (result?: { error: string; refused: boolean }) => {
        socket.destroy();
        resolve(result);
      };
      socket.setTimeout(timeoutMs, () => done({ error: 'timeout', refused: false }));
      socket.once('connect', () => done());
      socket.once('error', (e: NodeJS.ErrnoException) =>
        done({ error: e.message, refused: e.code === 'ECONNREFUSED' }),
      );
    });
  }
  try {
    const res = await fetch(target, { signal: AbortSignal.timeout(timeoutMs) });
    return res.ok
      ? undefined
      : // Not the body: it can hold anything (a stack trace, a config dump), and this reaches history.
        { error: `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`, refused: false };
  } catch (err) {
    const code = ((err as { cause?: { code?: string } }).cause ?? {}).code;
    return {
      error: code ? `${(err as Error).message} (${code})` : (err as Error).message,
      refused: code === 'ECONNREFUSED',
    };
  }
}

export function createServiceActivities({ config, exec }: { config: Config; exec: CommandRunner }) {
  /**
   * Polls a service's health until it is healthy or the deadline passes; never throws on
   * unhealthy. With `endWhenRefused`, a refused connection ends the wait at once: nothing
   * listens, and a process that is gone does not reconnect by itself (a full-cluster loss need
   * not wait out the reconnect deadline of every service it is about to start).
   */
  async function waitForHealthy(input: {
    service: KohakkuService;
    deadlineSeconds: number;
    pollMs?: number;
    endWhenRefused?: boolean;
  }): Promise<HealthReport> {
    const started = Date.now();
    const target = config.services.health[input.service];
    let checks = 0;
    let lastError: string | undefined;
    for (;;) {
      checks++;
      const failed = await probe(target, 3000);
      const waitedMs = Date.now() - started;
      if (!failed) return { service: input.service, healthy: true, checks, waitedMs };
      lastError = failed.error;
      heartbeat({ service: input.service, checks, lastError });
      if (waitedMs >= input.deadlineSeconds * 1000 || (input.endWhenRefused && failed.refused))
        return { service: input.service, healthy: false, checks, waitedMs, lastError };
      await sleep(input.pollMs ?? 250, cancellationSignal());
    }
  }

  /**
   * Runs the adapter's command with only what it needs from the worker's environment
   * (ADAPTER_ENV, or SERVICE_COMMAND_ENV for `command`). Neither its result nor its error repeats
   * the command's arguments — a SERVICE_RESTART_COMMAND may carry a token — only the program.
   */
  async function runServiceCommand(service: KohakkuService, action: ServiceAction) {
    const [file, ...args] = serviceCommand(config.services, service, action);
    const { adapter } = config.services;
    const program = path.basename(file!);
    await exec(file!, args, {
      signal: cancellationSignal(),
      passEnv: adapter === 'command' ? config.services.commandEnv : ADAPTER_ENV[adapter],
      name: `${program} (SERVICE_ADAPTER=${adapter}, ${action} ${service})`,
    });
    return { service, action, adapter, program };
  }

  const restartService = (input: { service: KohakkuService }) => runServiceCommand(input.service, 'restart');
  const stopService = (input: { service: KohakkuService }) => runServiceCommand(input.service, 'stop');
  const startService = (input: { service: KohakkuService }) => runServiceCommand(input.service, 'start');

  return { waitForHealthy, restartService, stopService, startService };
}
