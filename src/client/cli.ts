#!/usr/bin/env node
/**
 * kohakku-dr: start and watch recoveries and backups, manage the nightly schedule, list backup
 * sets, run the drill. Commander parses (subcommands, typed options, generated --help) rather
 * than hand-rolled argv code.
 */
import { Command, InvalidArgumentError } from 'commander';
import type { Workflow } from '@temporalio/client';
import { loadConfig, optionsMarkdown } from '../config';
import type { BackupSetManifest } from '../domain/manifests';
import { STORE_NAMES, type StoreName } from '../domain/stores';
import { listBackupSets, readPostgresManifest } from '../infra/catalog';
import { createBackupStores } from '../infra/stores';
import { readEnvFile, readStack, stopStack } from '../stack/stack';
import {
  fullCluster,
  markRestorePoint,
  nightlyBackup,
  objectStoreBackup,
  objectStoreLoss,
  pitrBackup,
  pitrSetup,
  pitrStatus,
  pointInTimeRecovery,
  postgresBackup,
  redisBackup,
  redisLoss,
  tableRestore,
  totalDatabaseLoss,
  verifyBackupSet,
} from '../workflows';
import { approveSignal, progressQuery } from '../workflows/definitions';
import type { TotalDatabaseLossInput } from '../workflows/totalDatabaseLoss';
import { runDrill } from './drill';
import { DRILL_SIZES, type DrillSize } from './drillLarge';
import { applyAllSchedules, listSchedules, NIGHTLY_SCHEDULE_ID } from './schedules';
import { AlreadyRunning, connect, startUnique, temporalSettings, watch, WORKFLOW_IDS } from './temporal';

const storeName = (v: string): StoreName => {
  if (!(STORE_NAMES as readonly string[]).includes(v))
    throw new InvalidArgumentError(`expected ${STORE_NAMES.join(' or ')}`);
  return v as StoreName;
};

const seconds = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('expected a whole number of seconds');
  return n;
};

/** Starts a workflow under its target-derived id (a second start is refused) and follows it. */
async function startAndWatch(
  workflow: Workflow,
  workflowId: string,
  args: unknown[],
  wait: boolean,
): Promise<void> {
  const settings = temporalSettings();
  const { client, close } = await connect(settings);
  try {
    const handle = await startUnique(client, workflowId, () =>
      client.workflow.start(workflow, {
        taskQueue: settings.taskQueue,
        workflowId,
        args,
        workflowIdConflictPolicy: 'FAIL',
      }),
    );
    console.log(`started ${workflow.name} as ${workflowId} (run ${handle.firstExecutionRunId})`);
    if (wait) console.log(JSON.stringify(await watch(handle, console.log), null, 2));
  } finally {
    await close();
  }
}

async function withClient<T>(
  fn: (client: Awaited<ReturnType<typeof connect>>['client']) => Promise<T>,
): Promise<T> {
  const { client, close } = await connect(temporalSettings());
  try {
    return await fn(client);
  } finally {
    await close();
  }
}

async function run(): Promise<void> {
  const program = new Command('kohakku-dr')
    .description("Kohakku's Backup & Recovery runbook as durable Temporal workflows")
    .showHelpAfterError();

  program
    .command('drill')
    .description(
      'disaster-recovery drill on an embedded local stack: seed, back up, drop both databases, recover, verify, report',
    )
    .option('--tasks <n>', 'tasks to seed (default: 20,000; 1,000,000 with --size large)', (v) => Number(v))
    .option(
      '--size <size>',
      "default, or large: 1,000,000 tasks, 100,000 briefs, 5 GiB of incompressible rows, two 100 MiB objects (single PUT and multipart); reports the worker's peak memory",
      (v: string) => {
        if (v !== 'default' && v !== 'large') throw new InvalidArgumentError('expected default or large');
        return v;
      },
      'default',
    )
    .option(
      '--grace <s>',
      'seconds the running agents get to check back before their tasks are re-dispatched (default 10; 30 with --size large)',
      seconds,
    )
    .option('--keep', 'leave the stack running afterwards (Temporal UI to look at)', false)
    .option(
      '--scenario <name>',
      'full-cluster (the whole cluster lost) or pitr (a bad deploy undone by point-in-time recovery)',
      (v: string) => {
        if (v !== 'full-cluster' && v !== 'pitr')
          throw new InvalidArgumentError('expected full-cluster or pitr');
        return v;
      },
      'full-cluster',
    )
    .action(
      async (opts: {
        tasks?: number;
        size: DrillSize;
        keep: boolean;
        grace?: number;
        scenario: 'full-cluster' | 'pitr';
      }) => {
        const size = DRILL_SIZES[opts.size];
        const report = await runDrill({
          ...opts,
          tasks: opts.tasks ?? size.tasks,
          grace: opts.grace ?? size.grace,
        });
        console.log(['', '══ drill report ══', ...report.lines].join('\n'));
        if (!report.ok) process.exitCode = 1;
      },
    );

  const recover = program.command('recover').description('start a recovery workflow and watch it');
  const common = (c: Command, fromBackup = true) =>
    (fromBackup
      ? c
          .option('--backup <id>', 'backup set id (default: the newest verified set)')
          .option(
            '--from <store>',
            'primary or replica: the backup store to restore from (default: the first that has a verified copy)',
            storeName,
          )
      : c
    )
      .option(
        '--confirm',
        'approve replacing live data in advance (otherwise the workflow waits for `kohakku-dr approve`)',
        false,
      )
      .option(
        '--plan',
        'show each step, what it would touch and the backup it would use; change nothing',
        false,
      )
      .option('--incident-at <time>', 'when the incident happened (ISO), for the RPO')
      .option('--no-wait', 'start and return the workflow id');
  const commonInput = (opts: {
    backup?: string;
    from?: StoreName;
    confirm: boolean;
    plan: boolean;
    incidentAt?: string;
  }) => ({
    backupId: opts.backup,
    ...(opts.from ? { from: opts.from } : {}),
    confirm: opts.confirm,
    plan: opts.plan,
    incidentAt: opts.incidentAt,
  });
  common(
    recover
      .command('total-database-loss')
      .description(
        'restore both Kohakku databases from a backup, then bring the services and Redis registrations back',
      ),
  )
    .option('--target <name...>', 'controller and/or dispatcher (default both)')
    .option('--replace-existing', 'same as --confirm')
    .option('--reconnect-deadline <s>', 'seconds the services get to reconnect before a restart', seconds)
    .option('--restart-deadline <s>', 'seconds a restarted service gets to become healthy', seconds)
    .option(
      '--registration-deadline <s>',
      'seconds the Monitor gets to register every active container',
      seconds,
    )
    .action(async (opts) => {
      const input: TotalDatabaseLossInput = {
        ...commonInput(opts),
        targets: opts.target,
        replaceExisting: opts.replaceExisting,
        reconnectDeadlineSeconds: opts.reconnectDeadline,
        restartDeadlineSeconds: opts.restartDeadline,
        registrationDeadlineSeconds: opts.registrationDeadline,
      };
      await startAndWatch(totalDatabaseLoss, WORKFLOW_IDS.postgresRecovery, [input], opts.wait);
    });
  common(
    recover
      .command('redis-loss')
      .description(
        'restart Redis (AOF/RDB, or empty with damaged files moved aside), re-register containers, re-dispatch pending tasks',
      ),
    false,
  )
    .option('--start-deadline <s>', 'seconds Redis gets to start', seconds)
    .action((opts) =>
      startAndWatch(
        redisLoss,
        WORKFLOW_IDS.redisRecovery,
        [
          {
            confirm: opts.confirm,
            plan: opts.plan,
            incidentAt: opts.incidentAt,
            startDeadlineSeconds: opts.startDeadline,
          },
        ],
        opts.wait,
      ),
    );
  common(
    recover
      .command('object-store-loss')
      .description('restore the bucket from the backup mirror, minus completed-task briefs'),
  ).action((opts) =>
    startAndWatch(objectStoreLoss, WORKFLOW_IDS.objectsRecovery, [commonInput(opts)], opts.wait),
  );
  common(
    recover
      .command('full-cluster')
      .description('Postgres → Redis → objects → services → grace period → re-dispatch lost tasks'),
  )
    .option('--grace <s>', 'seconds running agents get to check back (default 300)', seconds)
    .action((opts) =>
      startAndWatch(
        fullCluster,
        WORKFLOW_IDS.clusterRecovery,
        [{ ...commonInput(opts), checkInGraceSeconds: opts.grace }],
        opts.wait,
      ),
    );
  common(
    recover
      .command('table <target> <tables...>')
      .description(
        'restore whole tables (indexes, constraints, triggers, sequences) from a backup, e.g. `table controller tasks_task`',
      ),
  )
    .option(
      '--move-referencing-rows',
      'live rows in other tables that reference rows the backup lacks are moved aside instead of refusing',
    )
    .action((target: string, tables: string[], opts) =>
      startAndWatch(
        tableRestore,
        WORKFLOW_IDS.postgresRecovery,
        [
          {
            ...commonInput(opts),
            target,
            tables,
            ...(opts.moveReferencingRows ? { referencingRows: 'move-aside' } : {}),
          },
        ],
        opts.wait,
      ),
    );

  recover
    .command('point-in-time')
    .description(
      'rewind both databases to an instant (or a named restore point, or the end of the archive) with pgBackRest, then the services, Redis and lost tasks as after a total database loss',
    )
    .option('--to <time>', 'the instant, ISO 8601 with its zone (e.g. 2026-11-25T03:12:00Z), or "latest"')
    .option('--restore-point <name>', 'a restore point made by `kohakku-dr mark`, instead of --to')
    .option(
      '--objects',
      "also rewind Kohakku's bucket (briefs/, skills/) to its versions at the target (needs versioning on the bucket)",
      false,
    )
    .option(
      '--confirm',
      'approve stopping the services and moving the data directory aside in advance',
      false,
    )
    .option(
      '--plan',
      'show the base backup, the WAL range and what would be moved aside; change nothing',
      false,
    )
    .option('--grace <s>', 'seconds running agents get to check back (default 300)', seconds)
    .option(
      '--replay-deadline <s>',
      'seconds PostgreSQL gets to replay WAL to the target (default 1800)',
      seconds,
    )
    .option('--incident-at <time>', 'when the incident happened (ISO), for the RPO')
    .option('--no-wait', 'start and return the workflow id')
    .action((opts) =>
      startAndWatch(
        pointInTimeRecovery,
        WORKFLOW_IDS.pitrRecovery,
        [
          {
            ...(opts.restorePoint ? { restorePoint: opts.restorePoint } : { target: opts.to ?? 'latest' }),
            ...(opts.objects ? { objects: true } : {}),
            confirm: opts.confirm,
            plan: opts.plan,
            incidentAt: opts.incidentAt,
            checkInGraceSeconds: opts.grace,
            replayDeadlineSeconds: opts.replayDeadline,
          },
        ],
        opts.wait,
      ),
    );

  const pitr = program
    .command('pitr')
    .description('point-in-time recovery with pgBackRest: archiving set-up and base backups');
  pitr
    .command('setup')
    .description(
      "configure continuous WAL archiving (pgBackRest's configuration, archive_command, archive_timeout, commit timestamps; PostgreSQL restarted through the service adapter when needed) and create the stanza; idempotent",
    )
    .option('--no-wait', 'start and return the workflow id')
    .action((opts: { wait: boolean }) => startAndWatch(pitrSetup, WORKFLOW_IDS.pitrSetup, [], opts.wait));
  pitr
    .command('backup')
    .description('take a pgBackRest base backup now')
    .option('--type <type>', 'full, diff or incr', 'full')
    .option('--no-wait', 'start and return the workflow id')
    .action((opts: { type: string; wait: boolean }) =>
      startAndWatch(pitrBackup, WORKFLOW_IDS.pitrBackup, [{ type: opts.type }], opts.wait),
    );

  program
    .command('mark <name>')
    .description(
      'make a named restore point (pg_create_restore_point), e.g. `kohakku-dr mark "before deploy 42"`',
    )
    .action((name: string) => startAndWatch(markRestorePoint, WORKFLOW_IDS.mark, [{ name }], true));

  const backup = program.command('backup').description('take a backup now');
  for (const [part, workflow, what] of [
    ['postgres', postgresBackup, 'pg_dump -Fc of both databases, with a manifest'],
    ['redis', redisBackup, 'BGSAVE (or redis-cli --rdb) and copy of the RDB'],
    ['objects', objectStoreBackup, 'incremental mirror of briefs/ and skills/'],
    ['nightly', nightlyBackup, 'all three as one backup set, then verify and prune (what the schedule runs)'],
  ] as const) {
    backup
      .command(part)
      .description(what)
      .option('--no-wait', 'start and return the workflow id')
      .action((opts: { wait: boolean }) =>
        startAndWatch(workflow, `kohakku-dr-backup-${part}`, [], opts.wait),
      );
  }

  program
    .command('verify')
    .description(
      'restore a backup set into scratch copies, check it against its manifest, record the verdict',
    )
    .option('--backup <id>', 'the set (default: the newest)')
    .option('--from <store>', 'primary or replica: whose copy to verify (default primary)', storeName)
    .option('--no-wait', 'start and return the workflow id')
    .action((opts: { backup?: string; from?: StoreName; wait: boolean }) =>
      startAndWatch(
        verifyBackupSet,
        WORKFLOW_IDS.verify,
        [{ ...(opts.backup ? { backupId: opts.backup } : {}), ...(opts.from ? { from: opts.from } : {}) }],
        opts.wait,
      ),
    );

  program
    .command('backups')
    .description(
      'list backup sets, newest first, with where each exists (primary, replica) and its verification (reads the worker configuration)',
    )
    .action(async () => {
      const config = loadConfig();
      const stores = createBackupStores(config);
      const seen = new Map<string, Partial<Record<StoreName, BackupSetManifest>>>();
      const sizes = new Map<string, string>();
      for (const name of STORE_NAMES) {
        const store = stores[name];
        if (!store) continue;
        try {
          const sets = await listBackupSets(store);
          console.log(`${name}: ${store.location} — ${sets.length} set(s)`);
          for (const set of sets) {
            seen.set(set.id, { ...seen.get(set.id), [name]: set });
            if (!sizes.has(set.id)) {
              const pg = await readPostgresManifest(store, set.id);
              sizes.set(
                set.id,
                (pg?.databases ?? [])
                  .map((d) => `${d.database}: ${d.size} B, ${d.tables.reduce((n, t) => n + t.rows, 0)} rows`)
                  .join('  '),
              );
            }
          }
        } catch (err) {
          console.log(`${name}: ${store.location} — UNREADABLE: ${(err as Error).message}`);
        }
      }
      const verdict = (set: BackupSetManifest | undefined) =>
        !set
          ? '—'
          : set.verification
            ? set.verification.ok
              ? 'verified'
              : 'FAILED verification'
            : 'not verified';
      for (const id of [...seen.keys()].sort().reverse()) {
        const where = seen.get(id)!;
        const columns = STORE_NAMES.filter((n) => stores[n]).map(
          (n) => `${n}: ${verdict(where[n])}${n === 'replica' && where[n]?.replica ? ' (copy checked)' : ''}`,
        );
        console.log(`${id}  ${columns.map((c) => c.padEnd(30)).join(' ')} ${sizes.get(id) ?? ''}`);
      }
      if (config.pitr) {
        // pgBackRest runs on the database host: the worker there reads the window.
        try {
          const w = await withClient((client) =>
            client.workflow.execute(pitrStatus, {
              taskQueue: config.temporal.taskQueue,
              workflowId: `kohakku-dr-pitr-status-${Date.now()}`,
              args: [],
              workflowExecutionTimeout: '2m',
            }),
          );
          console.log(
            `point-in-time (pgBackRest stanza ${w.stanza}, ${w.status}): recoverable from ${w.earliest ?? '—'} to ${w.latest ?? '—'}; WAL ${w.wal.min ?? '—'} … ${w.wal.max ?? '—'}`,
          );
          for (const b of w.backups)
            console.log(
              `  base backup ${b.label} (${b.type}) ${b.start} … ${b.stop}, ${b.repoSize} B in the repository, ${!b.verdict ? 'not verified' : b.verdict.ok ? `verified ${b.verdict.verifiedAt}` : `FAILED verification ${b.verdict.verifiedAt}: ${b.verdict.problems.join('; ')}`}`,
            );
          for (const p of w.restorePoints)
            console.log(`  restore point "${p.name}" at ${p.at} (LSN ${p.lsn})`);
        } catch (err) {
          console.log(`point-in-time: window unavailable: ${(err as Error).message}`);
        }
      }
    });

  const schedules = program.command('schedules').description('the nightly backup schedule on Temporal');
  schedules
    .command('apply')
    .description('create or update the schedule from configuration (BACKUP_SCHEDULE_*)')
    .action(async () => {
      const config = loadConfig();
      const outcomes = await withClient((client) => applyAllSchedules(client, config));
      for (const { id, outcome } of outcomes) console.log(`${outcome} schedule ${id}`);
      console.log(
        `nightly backup "${config.schedule.cron}"${config.pitr ? `, base backups full "${config.schedule.pitrFullCron}" diff "${config.schedule.pitrDiffCron}"` : ''} (${config.schedule.timezone})`,
      );
    });
  schedules
    .command('list')
    .description('schedules with their state, next and recent runs')
    .action(async () => console.log(JSON.stringify(await withClient(listSchedules), null, 2)));
  for (const verb of ['pause', 'unpause', 'trigger'] as const) {
    schedules
      .command(`${verb} [scheduleId]`)
      .description(`${verb} a schedule (default ${NIGHTLY_SCHEDULE_ID})`)
      .option('--note <text>', 'why (pause/unpause)')
      .action(async (id: string | undefined, opts: { note?: string }) => {
        await withClient(async (client) => {
          const handle = client.schedule.getHandle(id ?? NIGHTLY_SCHEDULE_ID);
          if (verb === 'trigger') await handle.trigger();
          else await handle[verb](opts.note);
        });
        console.log(`${verb}d ${id ?? NIGHTLY_SCHEDULE_ID}`);
      });
  }

  program
    .command('approve <workflowId>')
    .description('approve the destructive step a recovery is waiting for (it says so in its progress)')
    .option('--by <name>', 'who approves', process.env.USER)
    .option('--note <text>', 'why')
    .action(async (workflowId: string, opts: { by?: string; note?: string }) => {
      await withClient(async (client) => {
        const handle = client.workflow.getHandle(workflowId);
        // An approval applies to what a step replaces now: show it, and refuse when nothing waits.
        const progress = await handle.query(progressQuery);
        if (!progress.awaitingApproval) {
          console.error(
            `${workflowId} is not waiting for an approval (${progress.waitingFor ?? progress.status}); nothing sent`,
          );
          process.exitCode = 3;
          return;
        }
        await handle.signal(approveSignal, { by: opts.by, note: opts.note });
        console.log(
          `approved "${progress.awaitingApproval.step}" of ${workflowId}, replacing: ${progress.awaitingApproval.replaces.join('; ')}`,
        );
      });
    });

  program
    .command('watch <workflowId>')
    .description("follow a running workflow's progress until it ends")
    .action(async (workflowId: string) => {
      const result = await withClient((client) => watch(client.workflow.getHandle(workflowId), console.log));
      console.log(JSON.stringify(result, null, 2));
    });

  program
    .command('config')
    .description('the worker settings (environment variables), their defaults and meaning, as Markdown')
    .action(() => console.log(optionsMarkdown()));

  const stack = program.command('stack').description('the embedded local stack');
  stack
    .command('stop <dir>')
    .description('stop a stack kept by `drill --keep` and remove its folder')
    .action(async (dir: string) => stopStack(readStack(dir)));
  stack
    .command('env <dir>')
    .description(
      'print the sourceable settings of a stack kept by `drill --keep` (worker, kohakku-dr CLI, temporal CLI): `source <(kohakku-dr stack env DIR)`',
    )
    .action((dir: string) => {
      process.stdout.write(readEnvFile(dir));
    });

  await program.parseAsync(process.argv);
}

run().catch((err) => {
  console.error(err instanceof AlreadyRunning || err?.name === 'ConfigError' ? err.message : err);
  process.exit(err instanceof AlreadyRunning ? 3 : 1);
});
