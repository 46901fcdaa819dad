/**
 * Point-in-time recovery — both databases back to one instant T, then the rest of the platform
 * as after a total database loss:
 *   1. resolve the target (an instant, a named restore point, or the end of the archive): it must
 *      lie in the recoverable window and every WAL segment it needs must be in the repository —
 *      checked before anything is touched; the base backup is the newest verified one before the
 *      target (a newer unverified one is named as passed over), held against retention
 *   2. stop Controller, Dispatcher and PostgreSQL through the service adapter (approved first)
 *   3. move the data directory aside — never deleted
 *   4. `pgbackrest restore` of the base backup before T, with T as the recovery target
 *   5. start PostgreSQL; it replays WAL up to T and is promoted
 *   6. verify: both databases connect, their tables are there, nothing committed after T
 *   7. with objects: a versioned bucket's keys get back their versions at T; a bucket without
 *      versioning gets the objects of the nearest backup set complete before T (chosen in the
 *      plan, before anything is touched; keys created since are left in place, and the result
 *      says so)
 *   8. Controller and Dispatcher reconnect, the Monitor rebuilds Redis from Postgres, the agents'
 *      grace period, lost tasks re-dispatched
 * and a cleanup that, when the recovery failed after step 2, puts the original data directory
 * back and starts PostgreSQL and the services again: production as it was found.
 */
import { patched, proxyActivities } from '@temporalio/workflow';
import { ErrorType } from '../domain/errors';
import { failureTypeOf } from './engine/progress';
import { z } from 'zod';
import type { Activities } from '../activities';
import type { ObjectRewindReport } from '../activities/objectRewind';
import type { PitrPlan } from '../activities/pitr';
import type { RedispatchReport } from '../activities/redisRecovery';
import type { ObjectRestoreReport } from '../activities/objectStore';
import type { RecoveryEnvelope, RecoveryPlan } from './definitions';
import { restoreObjectsPhase, type ObjectRestoreState } from './objectStoreLoss';
import { instantField, recoveryCommonFields, secondsField } from './engine/input';
import { runRecovery, type Phase, type RecoveryDefinition } from './engine/recovery';
import { long, quick, scan, waitUpTo } from './options';
import {
  checkInGracePhase,
  monitorRegistersContainersPhase,
  reconnectOrRestart,
  redispatchLostTasksPhase,
  type LostTasks,
  type Registrations,
  type ServiceReport,
} from './services';

const {
  stopService,
  startService,
  moveDataDirectoryAside,
  putOriginalDataDirectoryBack,
  verifyRecoveredPoint,
  proveEndOfArchiveReached,
  bucketVersioning,
  resolveBackupSet,
} = proxyActivities<Activities>(quick);
const { restoreToTarget, rewindObjects } = proxyActivities<Activities>(long);
const { planPointInTimeRecovery } = proxyActivities<Activities>(scan);

export const pointInTimeRecoveryInput = z
  .strictObject({
    ...recoveryCommonFields,
    /** An ISO instant with its zone, or "latest" (the end of the archived WAL). */
    target: z.union([z.literal('latest'), instantField]).optional(),
    /** A named restore point (`kohakku-dr mark`), instead of `target`. */
    restorePoint: z.string().min(1).max(60).optional(),
    /** Also rewind Kohakku's bucket (briefs/, skills/) to its versions at the target; needs versioning on. */
    objects: z.boolean().optional(),
    /** How long PostgreSQL gets to replay WAL up to the target and be promoted (1800). */
    replayDeadlineSeconds: secondsField.optional(),
    /** How long a started service gets to become healthy (120). */
    startDeadlineSeconds: secondsField.optional(),
    /** How long running agents get to check back before their tasks are re-dispatched (300). */
    checkInGraceSeconds: secondsField.optional(),
    registrationDeadlineSeconds: secondsField.optional(),
  })
  .refine((i) => (i.target === undefined) !== (i.restorePoint === undefined), {
    message: 'give exactly one of target (an ISO instant, or "latest") and restorePoint',
    path: ['target'],
  });
export type PointInTimeRecoveryInput = z.input<typeof pointInTimeRecoveryInput>;
type Input = z.infer<typeof pointInTimeRecoveryInput>;

interface State extends ObjectRestoreState {
  plan?: PitrPlan;
  /** How objects come back as at the target: the bucket's own versions, or the nearest backup set before it. */
  objectsBy?: 'versions' | 'backup set';
  /** Set once a step changed the running platform (services stopped): the cleanup undoes from here. */
  stopped?: boolean;
  moved?: { asideDir: string };
  restored?: { resumed: boolean; seconds: number };
  promoted?: { waitedMs: number; timeline: number };
  /** Set when the target was not reached and the end of the archive was recovered instead, proven replayed. */
  endOfArchive?: { endedAt: string; archiveEnd: string };
  verified?: Awaited<ReturnType<Activities['verifyRecoveredPoint']>>;
  rewind?: ObjectRewindReport;
  services: ServiceReport[];
  registrations?: Registrations;
  lost?: LostTasks;
  redispatch?: RedispatchReport;
}

export interface PointInTimeRecoveryDetails {
  target: string;
  targetTime: string;
  baseBackup: PitrPlan['backup'];
  wal: { from: string; to: string };
  /** The data directory as it was before: moved here, never deleted. */
  movedAsideTo: string;
  restoreSeconds: number;
  timeline: number;
  /**
   * No transaction after the target was archived: recovered to the end of the archive instead,
   * proven replayed to its last segment (the state at the target).
   */
  endOfArchive?: { endedAt: string; archiveEnd: string };
  lastCommit?: string;
  databases: { database: string; tables: number }[];
  /** The bucket as at the target, when asked (`objects: true`) and it keeps versions. */
  objects?: ObjectRewindReport;
  /**
   * Without versioning: the objects of the nearest backup set complete before the target (keys
   * created after that set are left as they are: nothing could hide them without deleting).
   */
  objectSet?: {
    backupId: string;
    createdAt: string;
    verified: boolean;
    restored: ObjectRestoreReport;
    note: string;
  };
  services: ServiceReport[];
  registrations: Registrations;
  lostTasks: LostTasks;
  redispatch: RedispatchReport;
}
export type PointInTimeRecoveryResult = RecoveryEnvelope & PointInTimeRecoveryDetails;

const STOPPED: ('controller' | 'dispatcher' | 'postgres')[] = ['controller', 'dispatcher', 'postgres'];

const phases: Phase<Input, State>[] = [
  {
    name: 'resolve target',
    effect: 'read',
    waitingFor: ({ input }) =>
      `checking ${input.restorePoint ? `restore point "${input.restorePoint}"` : (input.target ?? 'latest')} against the recoverable window and the WAL archive`,
    async run(ctx) {
      ctx.state.plan = await planPointInTimeRecovery({
        target: ctx.input.target,
        restorePoint: ctx.input.restorePoint,
        recoveryId: ctx.recoveryId,
      });
    },
    describe: ({ state }) =>
      `${state.plan!.target}: base backup ${state.plan!.backup.label} (${state.plan!.backup.type}, ended ${state.plan!.backup.stop}${state.plan!.backup.verification ? `, ${state.plan!.backup.verification}` : ''}), WAL ${state.plan!.walFrom} … ${state.plan!.walTo}${state.plan!.choice ? ` — ${state.plan!.choice}` : ''}`,
    plan: () => ({ action: 'check the target against the window and the WAL archive', touches: [] }),
  },
  {
    name: 'objects as of the target',
    effect: 'read',
    patch: 'pitr-object-set-fallback',
    skip: ({ input }) =>
      input.objects ? undefined : 'objects not asked for (objects: true brings the bucket back too)',
    waitingFor: () =>
      "checking whether Kohakku's bucket keeps versions (without: the nearest object backup set before the target)",
    async run(ctx) {
      const bucket = await bucketVersioning();
      ctx.state.objectsBy = bucket.versioned ? 'versions' : 'backup set';
      if (!bucket.versioned) ctx.state.set = await resolveBackupSet({ before: ctx.state.plan!.targetTime });
    },
    describe: ({ state }) =>
      state.objectsBy === 'versions'
        ? 'the bucket keeps versions: each key gets back its version at the target'
        : `NO VERSIONING on the bucket: objects from backup set ${state.set!.id} (complete ${state.set!.createdAt}, ${state.set!.verified ? 'verified' : 'NOT verified'}), the nearest before the target; keys created since stay as they are`,
    plan: () => ({
      action:
        "check the bucket's versioning; without it, find the nearest object backup set before the target",
      touches: ['backup store (read)'],
    }),
  },
  {
    name: 'stop services and postgres',
    effect: 'live',
    undoneByCleanupOnFailure: true,
    waitingFor: () => 'Controller, Dispatcher and PostgreSQL stopping (service adapter)',
    async destroys({ state }) {
      const plan = state.plan!;
      return [
        {
          id: 'cluster',
          description: `the PostgreSQL cluster in ${plan.dataDir} as it is now (both Kohakku databases): moved aside to ${plan.asideDir}, never deleted; Controller, Dispatcher and PostgreSQL are stopped meanwhile`,
        },
      ];
    },
    async run(ctx) {
      ctx.state.stopped = true;
      for (const service of STOPPED) await stopService({ service });
    },
    describe: () => STOPPED.join(', ') + ' stopped',
    plan: ({ state }) => ({
      action: `stop ${STOPPED.join(', ')} through the service adapter`,
      touches: [...STOPPED, state.plan ? state.plan.dataDir : 'the data directory'],
    }),
  },
  {
    name: 'move data directory aside',
    effect: 'live',
    undoneByCleanupOnFailure: true,
    waitingFor: ({ state }) => `moving ${state.plan!.dataDir} aside`,
    async run(ctx) {
      ctx.state.moved = await moveDataDirectoryAside({ recoveryId: ctx.recoveryId });
    },
    describe: ({ state }) => `to ${state.moved!.asideDir}`,
    plan: ({ state }) => ({
      action: `rename the data directory to ${state.plan?.asideDir ?? '<data>.kohakku-dr-aside-<tag>'} (kept), leave an empty one`,
      touches: [state.plan?.dataDir ?? 'the data directory'],
    }),
  },
  {
    name: 'pgbackrest restore',
    effect: 'live',
    undoneByCleanupOnFailure: true,
    waitingFor: ({ state }) =>
      `restoring base backup ${state.plan!.backup.label} with ${state.plan!.target} as the recovery target`,
    async run(ctx) {
      ctx.state.restored = await restoreToTarget({
        recoveryId: ctx.recoveryId,
        restoreArgs: ctx.state.plan!.restoreArgs,
      });
    },
    describe: ({ state }) =>
      `${state.restored!.seconds} s${state.restored!.resumed ? ' (resumed with --delta)' : ''}`,
    plan: ({ state }) => ({
      action: `pgbackrest restore ${state.plan?.restoreArgs.join(' ') ?? ''} into the empty data directory`,
      touches: [state.plan?.dataDir ?? 'the data directory'],
    }),
  },
  {
    name: 'start postgres and replay to the target',
    effect: 'live',
    undoneByCleanupOnFailure: true,
    waitingFor: ({ input }) =>
      `PostgreSQL replaying WAL to the target and promoted (up to ${input.replayDeadlineSeconds ?? 1800} s)`,
    async run(ctx) {
      const deadline = ctx.input.replayDeadlineSeconds ?? 1800;
      await startService({ service: 'postgres' });
      const { waitForPromotion } = proxyActivities<Activities>(waitUpTo(deadline));
      try {
        ctx.state.promoted = await waitForPromotion({ deadlineSeconds: deadline });
      } catch (err) {
        // 0.3.1: an instant with no transaction archived after it (a quiet database; the very
        // instant an earlier recovery went back to) is the end of the archive: recover to that,
        // then prove every archived segment was replayed; the verification checks that nothing
        // after the target was committed.
        const plan = ctx.state.plan!;
        if (
          failureTypeOf(err) !== ErrorType.RecoveryTargetNotReached ||
          !plan.restoreArgs.includes('--type=time') ||
          !patched('pitr-end-of-archive-fallback')
        )
          throw err;
        await restoreToTarget({
          recoveryId: ctx.recoveryId,
          restoreArgs: ['--type=default', ...plan.restoreArgs.filter((a) => a.startsWith('--set='))],
          endOfArchive: true,
        });
        await startService({ service: 'postgres' });
        ctx.state.promoted = await waitForPromotion({ deadlineSeconds: deadline });
        ctx.state.endOfArchive = await proveEndOfArchiveReached();
      }
    },
    describe: ({ state }) =>
      `promoted on timeline ${state.promoted!.timeline} after ${(state.promoted!.waitedMs / 1000).toFixed(1)} s` +
      (state.endOfArchive
        ? `; no transaction after the target was archived, so PostgreSQL was recovered to the end of the archive instead and replayed all of it (ended at ${state.endOfArchive.endedAt}; archive ends at ${state.endOfArchive.archiveEnd})`
        : ''),
    plan: () => ({
      action: 'start PostgreSQL; wait until it reached the target and was promoted',
      touches: ['postgres'],
    }),
  },
  {
    name: 'verify the recovered point',
    effect: 'read',
    runsInPlan: false,
    waitingFor: () => 'both databases connect, their tables are there, nothing committed after the target',
    async run(ctx) {
      ctx.state.verified = await verifyRecoveredPoint({ targetTime: ctx.state.plan!.targetTime });
    },
    describe: ({ state }) =>
      `${state.verified!.databases.map((d) => `${d.database}: ${d.tables} tables`).join(', ')}; last commit ${state.verified!.lastCommit ?? 'unknown'}`,
    plan: () => ({ action: 'check both databases and the last commit time', touches: [] }),
  },
  {
    name: 'rewind objects to the target',
    effect: 'live',
    skip: ({ input, state }) =>
      !input.objects
        ? 'objects not asked for (objects: true rewinds the bucket too)'
        : state.objectsBy === 'backup set'
          ? 'the bucket keeps no versions: objects come from the nearest backup set before the target'
          : undefined,
    waitingFor: ({ state }) =>
      `each key under the backed-up prefixes back to its version at ${state.plan!.targetTime}`,
    async destroys({ state }) {
      const dry = await rewindObjects({ at: state.plan!.targetTime, dryRun: true });
      return dry.rewound + dry.hidden > 0
        ? [
            {
              id: 'objects',
              description: `${dry.rewound} object(s) in ${dry.bucket} given back their version at the target and ${dry.hidden} created after it hidden by delete markers (every later version kept; e.g. ${dry.examples.join(', ')})`,
            },
          ]
        : [];
    },
    async run(ctx) {
      ctx.state.rewind = await rewindObjects({ at: ctx.state.plan!.targetTime });
    },
    describe: ({ state }) =>
      state.rewind!.versioned
        ? `${state.rewind!.rewound} rewound, ${state.rewind!.hidden} hidden by delete markers, ${state.rewind!.unchanged} unchanged (every later version kept)`
        : `NOT rewound: ${state.rewind!.bucket} has no versioning; restore the nearest object backup set before the target with the object-store-loss recovery`,
    plan: ({ state }) => ({
      action: `give each key under the backed-up prefixes its version at ${state.plan?.targetTime ?? 'the target'}; hide keys created later (versions kept)`,
      touches: ['Kohakku bucket'],
    }),
  },
  {
    ...restoreObjectsPhase<Input, State>('objects from the backup set before the target'),
    patch: 'pitr-object-set-fallback',
    skip: ({ state }) =>
      state.objectsBy === 'backup set'
        ? undefined
        : 'only without versioning on the bucket (objects: true with a versioned bucket rewinds it instead)',
  },
  {
    name: 'controller and dispatcher reconnect',
    effect: 'live',
    waitingFor: () => 'Controller and Dispatcher started again and healthy',
    async run(ctx) {
      for (const service of ['controller', 'dispatcher'] as const)
        ctx.state.services.push(await reconnectOrRestart(service, 2, ctx.input.startDeadlineSeconds ?? 120));
    },
    describe: ({ state }) =>
      state.services.map((s) => `${s.service} ${s.restarted ? 'started' : 'up'}`).join(', '),
    plan: () => ({
      action: 'start Controller and Dispatcher; wait until healthy',
      touches: ['controller', 'dispatcher'],
    }),
  },
  monitorRegistersContainersPhase({
    name: 'monitor rebuilds redis',
    deadlines: (input: Input) => ({
      registrationSeconds: input.registrationDeadlineSeconds ?? 60,
      restartSeconds: input.startDeadlineSeconds ?? 120,
    }),
  }),
  checkInGracePhase(),
  redispatchLostTasksPhase('re-dispatch lost tasks'),
];

export const pointInTimeRecoveryDefinition: RecoveryDefinition<
  typeof pointInTimeRecoveryInput,
  State,
  PointInTimeRecoveryDetails
> = {
  procedure: 'point-in-time-recovery',
  title: 'Point-in-time recovery',
  input: pointInTimeRecoveryInput,
  locks: (input) => (input.objects ? ['postgres', 'redis', 'objects'] : ['postgres', 'redis']),
  endpoints: (input) => [
    'postgres',
    'redis',
    'service-adapter',
    ...(input.objects ? (['kohakku-s3'] as const) : []),
  ],
  initialState: () => ({ services: [] }),
  phases,
  cleanup: [
    {
      what: 'if the recovery failed: put the original data directory back, start PostgreSQL and the services again',
      async run(ctx, outcome) {
        if (outcome === 'completed' || !ctx.state.stopped) return;
        await stopService({ service: 'postgres' });
        const back = await putOriginalDataDirectoryBack({ recoveryId: ctx.recoveryId });
        await startService({ service: 'postgres' });
        const { waitForHealthy } = proxyActivities<Activities>(waitUpTo(300));
        const pg = await waitForHealthy({ service: 'postgres', deadlineSeconds: 300 });
        if (!pg.healthy)
          throw new Error(`PostgreSQL did not come back on the original data directory: ${pg.lastError}`);
        for (const service of ['controller', 'dispatcher'] as const)
          await reconnectOrRestart(service, 2, 120);
        return back.restored
          ? `original data directory back (the restored one kept as ${back.failedCopy}); PostgreSQL, Controller and Dispatcher running`
          : 'nothing had been moved; PostgreSQL, Controller and Dispatcher running';
      },
    },
  ],
  backup: () => undefined,
  result: ({ state }) => ({
    target: state.plan!.target,
    targetTime: state.plan!.targetTime,
    baseBackup: state.plan!.backup,
    wal: { from: state.plan!.walFrom, to: state.plan!.walTo },
    movedAsideTo: state.moved!.asideDir,
    restoreSeconds: state.restored!.seconds,
    timeline: state.promoted!.timeline,
    ...(state.endOfArchive ? { endOfArchive: state.endOfArchive } : {}),
    lastCommit: state.verified!.lastCommit,
    databases: state.verified!.databases,
    ...(state.rewind ? { objects: state.rewind } : {}),
    ...(state.objectsBy === 'backup set' && state.objects
      ? {
          objectSet: {
            backupId: state.set!.id,
            createdAt: state.set!.createdAt,
            verified: state.set!.verified,
            restored: state.objects,
            note: `the bucket keeps no versions: objects as in backup set ${state.set!.id} (complete ${state.set!.createdAt}), the nearest before the target; keys created after it are left in place`,
          },
        }
      : {}),
    services: state.services,
    registrations: state.registrations!,
    lostTasks: state.lost!,
    redispatch: state.redispatch!,
  }),
};

export async function pointInTimeRecovery(
  input?: PointInTimeRecoveryInput,
): Promise<PointInTimeRecoveryResult | RecoveryPlan> {
  return runRecovery(pointInTimeRecoveryDefinition, input);
}
