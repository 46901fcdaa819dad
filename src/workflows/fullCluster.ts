/**
 * Full cluster — the runbook, in order:
 *   1. Postgres first (source of truth)                } side by side: Redis does not need
 *   2. Redis (its AOF, or fresh)                       } Postgres to start
 *   3. the object store from the backup (needs Postgres: completed-task briefs are skipped); its
 *      S3 server, if it was lost with its disk, is started again (empty) beside steps 1 and 2
 *   4. start Controller, Dispatcher, Kohakku's Temporal — in that order, each gated on health;
 *      then the Monitor re-registers the containers Postgres says are active
 *   5. running agents time out or check back: a durable wait for the check-in grace period
 *   6. re-dispatch the in-progress tasks whose agents did not check back (exactly once), and
 *      every pending task the fresh queue lost
 * and a cleanup phase that always runs.
 */
import { z } from 'zod';
import type { RedispatchReport } from '../activities/redisRecovery';
import type { StagedRestore } from '../activities/postgresRestore';
import type { ObjectRestoreReport } from '../activities/objectStore';
import { POSTGRES_TARGETS, type KohakkuService } from '../domain/targets';
import type { RecoveryEnvelope, RecoveryPlan } from './definitions';
import { backupIdField, fromField, recoveryCommonFields, secondsField } from './engine/input';
import { runRecovery, type Phase, type RecoveryDefinition } from './engine/recovery';
import {
  objectStoreServerPhase,
  resolveSetPhase,
  restoreObjectsPhase,
  type ObjectRestoreState,
} from './objectStoreLoss';
import {
  bringRedisBackPhases,
  checkInGracePhase,
  monitorRegistersContainersPhase,
  redispatchLostTasksPhase,
  type LostTasks,
  reconnectOrRestart,
  type RedisBack,
  type RedisState,
  type Registrations,
  type ServiceReport,
} from './services';
import { postgresCleanup, postgresRestorePhases, type PostgresRestoreState } from './totalDatabaseLoss';

export const fullClusterInput = z.strictObject({
  ...recoveryCommonFields,
  /** Backup set id, or "latest" (the newest verified set; the result says which and why). */
  backupId: backupIdField.optional(),
  /** Which backup store to read it from; by default the first that has a verified copy (the result says which). */
  from: fromField.optional(),
  /** How long running agents get to check back before their tasks are re-dispatched (300). */
  checkInGraceSeconds: secondsField.optional(),
  /** Per service: how long it gets to come up after being started (120). */
  startDeadlineSeconds: secondsField.optional(),
  registrationDeadlineSeconds: secondsField.optional(),
});
export type FullClusterInput = z.input<typeof fullClusterInput>;
type Input = z.infer<typeof fullClusterInput>;

interface State extends PostgresRestoreState, RedisState, ObjectRestoreState {
  services: ServiceReport[];
  registrations?: Registrations;
  lost?: LostTasks;
  redispatch?: RedispatchReport;
}

export interface FullClusterDetails {
  backupId: string;
  backupVerified: boolean;
  postgres: (StagedRestore & { movedAsideTo?: string })[];
  redis: RedisBack;
  objects: ObjectRestoreReport;
  /** Kohakku's S3 server: answering, or started again through the adapter (absent before 0.3). */
  objectStoreServer?: ServiceReport;
  services: ServiceReport[];
  lostTasks: { inFlight: number; checkedBack: number; requeued: number };
  redispatch: RedispatchReport;
}
export type FullClusterResult = RecoveryEnvelope & FullClusterDetails;

const targets = () => [...POSTGRES_TARGETS];
const pg = postgresRestorePhases<Input, State>({ targets, resolve: false });
const [restartRedis, startRedisEmpty] = bringRedisBackPhases<Input, State>({
  restart: 'restart redis',
  startEmpty: 'start redis empty if its files are damaged',
  startDeadlineSeconds: (input) => input.startDeadlineSeconds ?? 120,
});

const resolveSet = resolveSetPhase<Input, State>();
const resolve: Phase<Input, State> = {
  ...resolveSet,
  async run(ctx, approved) {
    await resolveSet.run(ctx, approved);
    const set = ctx.state.set!;
    // The Postgres phases read the backup from here: the set's own dumps.
    ctx.state.backup = { ...set, databases: [] };
  },
};

function startService(name: string, service: KohakkuService): Phase<Input, State> {
  return {
    name,
    effect: 'live',
    waitingFor: () => `${service} healthy`,
    async run(ctx) {
      ctx.state.services.push(await reconnectOrRestart(service, 2, ctx.input.startDeadlineSeconds ?? 120));
    },
    changed: ({ state }) => state.services.find((x) => x.service === service)!.restarted,
    describe: ({ state }) => {
      const s = state.services.find((x) => x.service === service)!;
      return `${s.restarted ? 'started' : 'already running'}, healthy`;
    },
    plan: () => ({
      action: `start ${service} through the service adapter unless healthy; wait until healthy`,
      touches: [service],
    }),
  };
}

export const fullClusterDefinition: RecoveryDefinition<typeof fullClusterInput, State, FullClusterDetails> = {
  procedure: 'full-cluster',
  title: 'Full cluster',
  input: fullClusterInput,
  locks: () => ['postgres', 'redis', 'objects'],
  // Redis and Kohakku's S3 server are what it brings back; PostgreSQL's server must be up.
  endpoints: () => ['postgres', 'backup-store', 'service-adapter'],
  initialState: () => ({ services: [] }),
  phases: [
    resolve,
    pg.roles,
    pg.verifyFiles,
    // 1 + 2: Postgres into staging and Redis side by side; Kohakku's S3 server comes back meanwhile.
    {
      parallel: [
        [pg.staging],
        [restartRedis, startRedisEmpty],
        [objectStoreServerPhase("kohakku's s3 server back")],
      ],
    },
    pg.blockers,
    pg.swap,
    // 3: needs Postgres (which briefs belong to completed tasks).
    restoreObjectsPhase('restore object store'),
    // 4: services in order, each gated on health.
    startService('start controller', 'controller'),
    startService('start dispatcher', 'dispatcher'),
    startService('start kohakku temporal', 'temporal'),
    monitorRegistersContainersPhase({
      name: 'monitor re-registers containers',
      deadlines: (input) => ({
        registrationSeconds: input.registrationDeadlineSeconds ?? 60,
        restartSeconds: input.startDeadlineSeconds ?? 120,
      }),
    }),
    // 5: a durable timer: a worker or server restart during the wait does not shorten or restart it.
    checkInGracePhase(),
    // 6
    redispatchLostTasksPhase('re-dispatch lost tasks'),
  ],
  cleanup: postgresCleanup(targets),
  backup: (state) => state.set,
  result: ({ state }) => ({
    backupId: state.set!.id,
    backupVerified: state.set!.verified,
    postgres: state.staged!.map((s) => ({
      ...s,
      movedAsideTo: state.swapped?.find((w) => w.target === s.target)?.movedAsideTo,
    })),
    redis: state.redis!,
    objects: state.objects!,
    objectStoreServer: state.objectStoreServer,
    services: state.services,
    lostTasks: state.lost!,
    redispatch: state.redispatch!,
  }),
};

export async function fullCluster(input?: FullClusterInput): Promise<FullClusterResult | RecoveryPlan> {
  return runRecovery(fullClusterDefinition, input);
}
