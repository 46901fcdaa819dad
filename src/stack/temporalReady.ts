/**
 * When a Temporal dev server started here is ready for work. Its frontend port opens before it
 * can serve a namespace, and once in CI a workflow start on the suite's server was answered
 * "Namespace not found: 'default'" although `operator namespace describe` had passed at start.
 * So the check asks what a start needs: `temporal workflow count` in the namespace goes
 * through the frontend's namespace lookup, as StartWorkflowExecution does, and it must pass
 * twice in a row, a second apart, before the server is called ready. The check reads no user
 * config (`--disable-config-file --disable-config-env`): a CLI run without HOME — `kohakku-dr`
 * from a minimal environment — would otherwise fail on "neither $XDG_CONFIG_HOME nor $HOME are
 * defined" for ever, and a profile of the operator's could point it elsewhere. When the server
 * does not come up, the check's last error is named beside the log.
 */
import { createCommandRunner } from '../infra/exec';
import { tcpOpen, waitUntil } from '../infra/processes';

export interface TemporalDevServer {
  /** The `temporal` CLI binary. */
  cli: string;
  port: number;
  namespace: string;
  /** The server's log, named when it does not come up. */
  log: string;
  timeoutMs: number;
}

export async function waitForTemporalDevServer(server: TemporalDevServer): Promise<void> {
  const deadline = Date.now() + server.timeoutMs;
  const left = () => Math.max(1000, deadline - Date.now());
  await waitUntil(`temporal on port ${server.port}`, () => tcpOpen(server.port), left(), server.log);
  const run = createCommandRunner();
  const count = async () => {
    await run(server.cli, [
      'workflow',
      'count',
      '--address',
      `127.0.0.1:${server.port}`,
      '--namespace',
      server.namespace,
      '--command-timeout',
      '5s',
      '--disable-config-file',
      '--disable-config-env',
    ]);
    return true;
  };
  let answeredAt = 0;
  let lastError = '';
  await waitUntil(
    `temporal namespace ${server.namespace} on port ${server.port}`,
    async () => {
      if (
        !(await count().catch((err: Error) => {
          lastError = err.message.split('\n').slice(-3).join(' ').trim();
          return false;
        }))
      ) {
        answeredAt = 0;
        return false;
      }
      if (answeredAt === 0) {
        answeredAt = Date.now();
        return false;
      }
      return Date.now() - answeredAt >= 1000;
    },
    left(),
    server.log,
  ).catch((err: Error) => {
    throw new Error(`${err.message}${lastError ? `; last check: ${lastError.slice(0, 500)}` : ''}`);
  });
}
