/**
 * Kohakku's services: health checks (HTTP 2xx or a TCP connect, each with a deadline) and
 * restarts through the configured adapter. Every adapter is an argument array run by execa.
 */
import * as net from 'node:net';
import type { Config, KohakkuService } from '../config';
import type { CommandRunner } from '../infra/exec';
import { cancellationSignal, heartbeat, sleep } from './heartbeat';

export interface HealthReport {
  service: KohakkuService;
  healthy: boolean;
  checks: number;
  waitedMs: number;
  lastError?: string;
}

/** The command that restarts `service` under each adapter. */
export function restartCommand(config: Config['services'], service: KohakkuService): string[] {
  const name = config.names[service];
  switch (config.adapter) {
    case 'command':
      return config.restartCommand!.map((part) => part.replaceAll('{service}', name));
    case 'compose':
      return [
        'docker',
        'compose',
        ...(config.composeFile ? ['-f', config.composeFile] : []),
        'restart',
        name,
      ];
    case 'systemd':
      return ['systemctl', 'restart', name];
    case 'kubectl':
      return ['kubectl', '--namespace', config.kubeNamespace, 'rollout', 'restart', `deployment/${name}`];
  }
}

async function probe(target: string, timeoutMs: number): Promise<string | undefined> {
  const url = new URL(target);
  if (url.protocol === 'tcp:') {
    return new Promise((resolve) => {
      const socket = net.connect({ host: url.hostname, port: Number(url.port) });
      const done = (err?: string) => {
        socket.destroy();
        resolve(err);
      };
      socket.setTimeout(timeoutMs, () => done('timeout'));
      socket.once('connect', () => done());
      socket.once('error', (e) => done(e.message));
    });
  }
  try {
    const res = await fetch(target, { signal: AbortSignal.timeout(timeoutMs) });
    return res.ok ? undefined : `HTTP ${res.status}: ${(await res.text()).slice(0, 200)}`;
  } catch (err) {
    return (err as Error).message;
  }
}

export function createServiceActivities({ config, exec }: { config: Config; exec: CommandRunner }) {
  /** Polls a service's health until it is healthy or the deadline passes; never throws on unhealthy. */
  async function waitForHealthy(input: {
    service: KohakkuService;
    deadlineSeconds: number;
    pollMs?: number;
  }): Promise<HealthReport> {
    const started = Date.now();
    const target = config.services.health[input.service];
    let checks = 0;
    let lastError: string | undefined;
    for (;;) {
      checks++;
      lastError = await probe(target, 3000);
      const waitedMs = Date.now() - started;
      if (!lastError) return { service: input.service, healthy: true, checks, waitedMs };
      heartbeat({ service: input.service, checks, lastError });
      if (waitedMs >= input.deadlineSeconds * 1000)
        return { service: input.service, healthy: false, checks, waitedMs, lastError };
      await sleep(input.pollMs ?? 1000, cancellationSignal());
    }
  }

  async function restartService(input: {
    service: KohakkuService;
  }): Promise<{ service: KohakkuService; command: string[] }> {
    const [file, ...args] = restartCommand(config.services, input.service);
    await exec(file!, args, { signal: cancellationSignal() });
    return { service: input.service, command: [file!, ...args] };
  }

  return { waitForHealthy, restartService };
}
