/**
 * The one suite helper for workflow-logic tests (after the SDK's test-helpers): the real
 * Temporal dev server of this run, the workflow bundle built once per file, and
 * `createWorker`/`executeWorkflow` with activities stubbed by `jest.fn` — no PostgreSQL, Redis
 * or MinIO is touched by these tests.
 */
import { TestWorkflowEnvironment } from '@temporalio/testing';
import {
  bundleWorkflowCode,
  DefaultLogger,
  Runtime,
  Worker,
  type WorkflowBundleWithSourceMap,
} from '@temporalio/worker';
import type { Workflow, WorkflowStartOptions } from '@temporalio/client';
import type { Activities } from '../../src/activities';
import { MAX_HEARTBEAT_THROTTLE } from '../../src/activities/heartbeat';
import { WORKFLOW_CODE } from '../../src/bundleWorkflows';
import { testStack } from './kohakku';

const silent = {
  log: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  debug: () => undefined,
  trace: () => undefined,
};

export interface Suite {
  env: TestWorkflowEnvironment;
  /** A worker on its own task queue with these (stubbed) activities. */
  createWorker(activities: Partial<Activities>, taskQueue?: string): Promise<Worker>;
  /** Runs `workflow` to its end on a fresh worker; resolves with its result or its error. */
  executeWorkflow<W extends Workflow>(
    workflow: W,
    options: { activities: Partial<Activities>; args: Parameters<W>; workflowId?: string },
  ): Promise<{ result?: Awaited<ReturnType<W>>; error?: unknown; workflowId: string }>;
}

let counter = 0;
export const uniqueId = (prefix: string) => `${prefix}-${process.pid}-${Date.now()}-${counter++}`;

/** Call at the top of a test file: sets up beforeAll/afterAll and returns the suite. */
export function workflowSuite(): Suite {
  let env: TestWorkflowEnvironment;
  let bundle: WorkflowBundleWithSourceMap;
  beforeAll(async () => {
    Runtime.install({ logger: new DefaultLogger('WARN') });
    env = await TestWorkflowEnvironment.createFromExistingServer({
      address: `127.0.0.1:${testStack().temporal.port}`,
    });
    bundle = await bundleWorkflowCode({
      ...WORKFLOW_CODE,
      logger: silent,
    });
  });
  afterAll(async () => {
    await env?.teardown();
  });
  const suite: Suite = {
    get env() {
      return env;
    },
    async createWorker(activities, taskQueue = uniqueId('logic')) {
      return Worker.create({
        connection: env.nativeConnection,
        taskQueue,
        workflowBundle: bundle,
        activities,
        dataConverter: { payloadConverterPath: WORKFLOW_CODE.payloadConverterPath },
        maxHeartbeatThrottleInterval: MAX_HEARTBEAT_THROTTLE, // as the production worker
      });
    },
    async executeWorkflow(workflow, options) {
      const worker = await suite.createWorker(options.activities);
      const workflowId = options.workflowId ?? uniqueId(workflow.name);
      const outcome = await worker.runUntil(
        env.client.workflow
          .execute(workflow, {
            taskQueue: worker.options.taskQueue,
            workflowId,
            args: options.args,
          } as unknown as WorkflowStartOptions<typeof workflow>)
          .then(
            (result) => ({ result: result as Awaited<ReturnType<typeof workflow>>, error: undefined }),
            (error: unknown) => ({ result: undefined, error }),
          ),
      );
      return { ...outcome, workflowId };
    },
  };
  return suite;
}
