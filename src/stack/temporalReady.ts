/**
 * When a Temporal dev server started here is ready for work. Its frontend port opens before it
 * can serve a namespace, and once in CI a workflow start on the suite's server was answered
 * "Namespace not found: 'default'" although `operator namespace describe` had passed at start.
 * So the check asks what a start needs: `temporal workflow count` in the namespace goes
 * through the frontend's namespace lookup, as StartWorkflowExecution does, and it must pass
 * twice in a row, a second apart, before the server is called ready.
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
    ]);
    return true;
  };
  let answeredAt = 0;
  await waitUntil(
    `temporal namespace ${server.namespace} on port ${server.port}`,
    async () => {
      if (!(await count().catch(() => false))) {
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
  );
}
