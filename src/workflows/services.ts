/**
 * Service steps shared by the recoveries: wait for a service to reconnect and restart it
 * through the adapter if it does not; let the Monitor re-register containers, restarting it if
 * it does not.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { RegistrationReport } from '../activities/redis';
import type { HealthReport } from '../activities/services';
import type { KohakkuService } from '../domain/targets';
import { ErrorType, fail } from '../domain/errors';
import { quick, waitUpTo } from './options';
import type { Procedure } from './procedure';

const { restartService } = proxyActivities<Activities>(quick);

/** Waits for a service to be healthy; restarts it through the adapter if it does not reconnect in time. */
export async function reconnectOrRestart(
  service: KohakkuService,
  reconnectSeconds: number,
  restartSeconds: number,
): Promise<HealthReport & { restarted: boolean }> {
  const { waitForHealthy } = proxyActivities<Activities>(
    waitUpTo(Math.max(reconnectSeconds, restartSeconds)),
  );
  const first = await waitForHealthy({ service, deadlineSeconds: reconnectSeconds });
  if (first.healthy) return { ...first, restarted: false };
  await restartService({ service });
  const second = await waitForHealthy({ service, deadlineSeconds: restartSeconds });
  if (!second.healthy) {
    throw fail(
      ErrorType.ServiceUnhealthy,
      `${service} is still unhealthy ${restartSeconds} s after a restart (${second.lastError}); check its logs, then run this recovery again — restored databases are kept`,
    );
  }
  return { ...second, restarted: true };
}

/** Waits for every active container to be registered; restarts the Monitor once if they are not. */
export async function monitorRegistersContainers(
  procedure: Procedure,
  stepName: string,
  registrationSeconds: number,
  restartSeconds: number,
): Promise<RegistrationReport & { monitorRestarted: boolean }> {
  return procedure.step(
    stepName,
    'the Monitor registering every active container in Redis',
    async () => {
      const { waitForRegistrations } = proxyActivities<Activities>(waitUpTo(registrationSeconds));
      // A Monitor that is down cannot register anything: bring it up first.
      const monitor = await reconnectOrRestart('monitor', 2, restartSeconds);
      const first = await waitForRegistrations({ deadlineSeconds: registrationSeconds });
      if (first.complete) return { ...first, monitorRestarted: monitor.restarted };
      procedure.note(
        stepName,
        `${first.missing.length}+ missing after ${registrationSeconds} s: restarting the Monitor`,
      );
      await restartService({ service: 'monitor' });
      const { waitForHealthy } = proxyActivities<Activities>(waitUpTo(restartSeconds));
      const health = await waitForHealthy({ service: 'monitor', deadlineSeconds: restartSeconds });
      if (!health.healthy)
        throw fail(
          ErrorType.ServiceUnhealthy,
          `the Monitor is unhealthy after a restart: ${health.lastError}`,
        );
      const second = await waitForRegistrations({ deadlineSeconds: registrationSeconds });
      if (!second.complete) {
        throw fail(
          ErrorType.RegistrationIncomplete,
          `${second.expected - second.registered} active container(s) still unregistered after a Monitor restart (e.g. ${second.missing.slice(0, 3).join(', ')})`,
          second,
        );
      }
      return { ...second, monitorRestarted: true };
    },
    (r) =>
      `${r.registered}/${r.expected} containers registered${r.monitorRestarted ? ' after a Monitor restart' : ''}`,
  );
}
