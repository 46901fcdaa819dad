#!/usr/bin/env node
/**
 * kohakku-dr: start and watch recoveries and backups, manage the nightly schedule, list backup
 * sets, run the drill. Commander parses (subcommands, typed options, generated --help) rather
 * than hand-rolled argv code. This file declares the commands; what a run's commands do is in
 * runs.ts, the exit codes in exitCodes.ts, --json in output.ts.
 */
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import type { Workflow } from '@temporalio/client';
import type { PitrWindow } from '../activities/pitrKit';
import { loadConfig, optionsMarkdown, OPTIONS, type Config, type OptionSpec } from '../config';
import { STORE_NAMES, type StoreName } from '../domain/stores';
import { parseEnvFile, readEnvFile, readStack, stopStack } from '../stack/stack';
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
import { backupsLines, listBackups } from './backupsList';
import {
  drillReport,
  historyLines,
  reportHistory,
  reportsDir,
  verifyEvidence,
  writeDrillReport,
} from './evidence';
import { generateSigningKey } from '../infra/evidence';
import { runDrill } from './drill';
import { DRILL_SIZES, type DrillSize } from './drillLarge';
import { sayTo } from './drillPlatform';
import { classify, CliError, exitCode, exitCodesHelp } from './exitCodes';
import { createOutput, type Output } from './output';
import { cancelRun, notifySchedulePaused, showStatus, startAndFollow, watchRun } from './runs';
import { applyAllSchedules, listSchedules, NIGHTLY_SCHEDULE_ID, scheduleLines } from './schedules';
import { connect, temporalSettings, WORKFLOW_IDS } from './temporal';
import { up } from './up';

const storeName = (v: string): StoreName => {
  if (!(STORE_NAMES as readonly string[]).includes(v))
    throw new InvalidArgumentError(`expected ${STORE_NAMES.join(' or ')}`);
  return v as StoreName;
};

const portNumber = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new InvalidArgumentError('expected a port, 1–65535');
  return n;
};

const seconds = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('expected a whole number of seconds');
  return n;
};

let output: Output | undefined;
/** The run's output, --json or not (read once the arguments are parsed). */
const out = (): Output => (output ??= createOutput({ json: process.argv.includes('--json') }));

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

/** Starts a workflow under its target-derived id (a second start is refused) and follows it. */
function startAndWatch(
  workflow: Workflow,
  workflowId: string,
  args: unknown[],
  wait: boolean,
  asksApproval = false,
): Promise<void> {
  return withClient((client) =>
    startAndFollow({
      client,
      out: out(),
      taskQueue: temporalSettings().taskQueue,
      workflow,
      workflowId,
      args,
      wait,
      asksApproval,
    }),
  );
}

/** The point-in-time window, read by the worker on the database host (pgBackRest runs there). */
async function readPitrWindow(config: Config): Promise<PitrWindow | { unavailable: string }> {
  try {
    return await withClient((client) =>
      client.workflow.execute(pitrStatus, {
        taskQueue: config.temporal.taskQueue,
        workflowId: `kohakku-dr-pitr-status-${Date.now()}`,
        args: [],
        workflowExecutionTimeout: '2m',
      }),
    );
  } catch (err) {
    return { unavailable: (err as Error).message };
  }
}

function pitrLines(w: PitrWindow | { unavailable: string }): string[] {
  if ('unavailable' in w) return [`point-in-time: window unavailable: ${w.unavailable}`];
  return [
    `point-in-time (pgBackRest stanza ${w.stanza}, ${w.status}): recoverable from ${w.earliest ?? '—'} to ${w.latest ?? '—'}; WAL ${w.wal.min ?? '—'} … ${w.wal.max ?? '—'}`,
    ...w.backups.map(
      (b) =>
        `  base backup ${b.label} (${b.type}) ${b.start} … ${b.stop}, ${b.repoSize} B in the repository, ${!b.verdict ? 'not verified' : b.verdict.ok ? `verified ${b.verdict.verifiedAt}` : `FAILED verification ${b.verdict.verifiedAt}: ${b.verdict.problems.join('; ')}`}`,
    ),
    ...w.restorePoints.map((p) => `  restore point "${p.name}" at ${p.at} (LSN ${p.lsn})`),
  ];
}

/** A recovery stops for `kohakku-dr approve` unless approved in advance or only planned. */
const asksApproval = (opts: { confirm?: boolean; plan?: boolean; replaceExisting?: boolean }) =>
  !opts.confirm && !opts.plan && !opts.replaceExisting;

async function run(): Promise<void> {
  const program = new Command('kohakku-dr')
    .description("Kohakku's Backup & Recovery runbook as durable Temporal workflows")
    .option(
      '--json',
      'one JSON document on stdout (the result, or {error, exit}); human lines on stderr',
      false,
    )
    .option('--debug', 'print the stack trace of a failure', false)
    .showHelpAfterError('(add --help for usage and exit codes)')
    .addHelpText('afterAll', exitCodesHelp())
    // Bad arguments exit 2 (not commander's 1), --help 0: the top level classifies what is thrown.
    .exitOverride();

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
        sayTo(out().say);
        const startedAt = new Date();
        const report = await runDrill({
          ...opts,
          tasks: opts.tasks ?? size.tasks,
          grace: opts.grace ?? size.grace,
        });
        // The evidence: signed with EVIDENCE_SIGNING_KEY_FILE when set, into REPORTS_DIR.
        report.evidence = await writeDrillReport(
          drillReport(report, startedAt),
          reportsDir(),
          process.env.EVIDENCE_SIGNING_KEY_FILE || undefined,
        );
        report.lines.push(
          `report: ${report.evidence.json} and ${report.evidence.markdown} (${report.evidence.signedBy ? `signed, key ${report.evidence.signedBy}` : 'not signed: no EVIDENCE_SIGNING_KEY_FILE'})`,
        );
        out().result(report, () => ['', '══ drill report ══', ...report.lines]);
        if (!report.ok) process.exitCode = exitCode('failed');
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
      await startAndWatch(
        totalDatabaseLoss,
        WORKFLOW_IDS.postgresRecovery,
        [input],
        opts.wait,
        asksApproval(opts),
      );
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
        asksApproval(opts),
      ),
    );
  common(
    recover
      .command('object-store-loss')
      .description('restore the bucket from the backup mirror, minus completed-task briefs'),
  ).action((opts) =>
    startAndWatch(
      objectStoreLoss,
      WORKFLOW_IDS.objectsRecovery,
      [commonInput(opts)],
      opts.wait,
      asksApproval(opts),
    ),
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
        asksApproval(opts),
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
        asksApproval(opts),
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
        asksApproval(opts),
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
      const listing = await listBackups(config);
      const pitrWindow = config.pitr ? await readPitrWindow(config) : undefined;
      out().result({ ...listing, ...(pitrWindow ? { pitr: pitrWindow } : {}) }, () => [
        ...backupsLines(listing),
        ...(pitrWindow ? pitrLines(pitrWindow) : []),
      ]);
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
    .description('schedules with their state, cron (in words), next and recent runs')
    .action(async () => {
      const list = await withClient(listSchedules);
      out().result(list, () => scheduleLines(list));
    });
  for (const [verb, done] of [
    ['pause', 'paused'],
    ['unpause', 'unpaused'],
    ['trigger', 'triggered'],
  ] as const) {
    schedules
      .command(`${verb} [scheduleId]`)
      .description(`${verb} a schedule (default ${NIGHTLY_SCHEDULE_ID})`)
      .option('--note <text>', 'why (pause/unpause)')
      .action(async (id: string | undefined, opts: { note?: string }) => {
        const scheduleId = id ?? NIGHTLY_SCHEDULE_ID;
        await withClient(async (client) => {
          const handle = client.schedule.getHandle(scheduleId);
          if (verb === 'trigger') await handle.trigger();
          else await handle[verb](opts.note);
          // Heard where the failures are heard: the worker delivers it (nothing without a webhook).
          const warning =
            verb === 'pause' ? await notifySchedulePaused(client, scheduleId, opts.note) : undefined;
          if (warning) out().say(`warning: ${warning}`);
        });
        out().result({ scheduleId, [done]: true }, () => `${done} ${scheduleId}`);
      });
  }

  const evidence = program
    .command('evidence')
    .description('signed reports: check one (verify), make a signing key (keygen)');
  evidence
    .command('verify <report>')
    .description("check a report's ed25519 signature: exit 0 when it holds, 1 when it does not")
    .requiredOption('--public-key <file>', "the signer's public key (PEM), e.g. kohakku-dr-evidence.pub")
    .action(async (file: string, opts: { publicKey: string }) => {
      const checked = await verifyEvidence(file, opts.publicKey);
      const { kind, procedure, outcome, endedAt } = checked.report;
      const what = `${procedure.startsWith(kind) ? procedure : `${kind} ${procedure}`} (${outcome}, ${endedAt})`;
      if (!checked.verdict.ok)
        throw new CliError('failed', `${file}: NOT verified — ${checked.verdict.reason}`, {
          ...checked,
          verified: false,
        });
      out().result(
        { ...checked, verified: true },
        () => `${file}: verified — ${what}, signed by key ${(checked.verdict as { keyId: string }).keyId}`,
      );
    });
  evidence
    .command('keygen')
    .description('make an ed25519 key pair for EVIDENCE_SIGNING_KEY_FILE (the .key stays private, mode 0600)')
    .option('--dir <dir>', 'where to write kohakku-dr-evidence.key and .pub', '.')
    .action(async (opts: { dir: string }) => {
      const made = await generateSigningKey(opts.dir).catch((err: NodeJS.ErrnoException) => {
        throw new CliError(
          err.code === 'EEXIST' ? 'refused' : 'failed',
          err.code === 'EEXIST' ? `a key already exists in ${opts.dir}: not overwritten` : err.message,
        );
      });
      out().result(made, () => [
        `private key ${made.keyFile} (EVIDENCE_SIGNING_KEY_FILE; keep it on the worker and the drill host only)`,
        `public key  ${made.publicKeyFile} (give it to whoever checks: kohakku-dr evidence verify REPORT --public-key ${made.publicKeyFile})`,
        `key id      ${made.keyId}`,
      ]);
    });

  program
    .command('history')
    .description(
      'RTO and RPO of past drills (and with --all, recoveries and verifications) from their reports, as a trend',
    )
    .option('--dir <dir>', 'the reports folder (default REPORTS_DIR, else ./kohakku-dr-reports)')
    .option('--all', 'recoveries and verifications too, not only drills', false)
    .action(async (opts: { dir?: string; all: boolean }) => {
      const dir = opts.dir ?? reportsDir();
      const rows = await reportHistory(dir, opts.all);
      out().result({ dir, reports: rows }, () => historyLines(rows, dir));
    });

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
        if (!progress.awaitingApproval)
          throw new CliError(
            'refused',
            `${workflowId} is not waiting for an approval (${progress.waitingFor ?? progress.status}); nothing sent`,
            { workflowId, approved: false, status: progress.status, waitingFor: progress.waitingFor },
          );
        await handle.signal(approveSignal, { by: opts.by, note: opts.note });
        out().result(
          {
            workflowId,
            approved: true,
            step: progress.awaitingApproval.step,
            replaces: progress.awaitingApproval.replaces,
            by: opts.by,
          },
          () =>
            `approved "${progress.awaitingApproval!.step}" of ${workflowId}, replacing: ${progress.awaitingApproval!.replaces.join('; ')}`,
        );
      });
    });

  program
    .command('watch <workflowId>')
    .description(
      "follow a running workflow's progress until it ends (Ctrl-C stops following, not the workflow)",
    )
    .action((workflowId: string) => withClient((client) => watchRun(client, out(), workflowId)));

  program
    .command('status <workflowId>')
    .description('where a workflow stands: its state, steps and what it waits for (exit 4 when an approval)')
    .action((workflowId: string) => withClient((client) => showStatus(client, out(), workflowId)));

  program
    .command('cancel <workflowId>')
    .description(
      'cancel a running workflow: its cleanup still runs (staging removed, locks released); waits for it to close',
    )
    .option('--wait <s>', 'seconds to wait for the workflow to close', seconds, 120)
    .action((workflowId: string, opts: { wait: number }) =>
      withClient((client) => cancelRun(client, out(), workflowId, opts.wait)),
    );

  program
    .command('config')
    .description('the worker settings (environment variables), their defaults and meaning, as Markdown')
    .action(() =>
      out().result(
        (OPTIONS as readonly OptionSpec[]).map((o) => ({
          setting: o.env,
          group: o.group,
          default: o.default,
          required: o.default === undefined && !o.optional,
          secret: Boolean(o.secret),
          description: o.description,
        })),
        () => optionsMarkdown(),
      ),
    );

  program
    .command('up')
    .description(
      'break-glass: run a Temporal dev server (persisted in --dir, with its UI) and a worker from the settings here, until Ctrl-C; `--recover full-cluster -- --confirm` also starts that recovery',
    )
    .argument('[recover-args...]', 'after `--`: the arguments of `kohakku-dr recover <procedure>`')
    .option('--dir <dir>', "where the server's database and the logs are kept", 'kohakku-dr-up')
    .option('--ip <ip>', 'the address both listen on', '127.0.0.1')
    .option('--port <port>', "the Temporal server's port", portNumber, 7233)
    .option('--ui-port <port>', "the Temporal UI's port", portNumber, 8233)
    .option('--namespace <name>', 'the Temporal namespace', 'default')
    .option(
      '--temporal-bin <path>',
      'the temporal CLI (default: KOHAKKU_DR_TEMPORAL_BIN, the installed tools, PATH)',
    )
    .option(
      '--recover <procedure>',
      `start this recovery once up: ${recover.commands.map((c) => c.name()).join(', ')}`,
    )
    .action(async (recoverArgs: string[], opts) => {
      const procedures = recover.commands.map((c) => c.name());
      if (opts.recover && !procedures.includes(opts.recover))
        throw new CliError(
          'bad-input',
          `--recover ${opts.recover}: expected one of ${procedures.join(', ')}`,
        );
      if (!opts.recover && recoverArgs.length > 0)
        throw new CliError('bad-input', `arguments without --recover: ${recoverArgs.join(' ')}`);
      process.exitCode = await up({
        dir: opts.dir,
        ip: opts.ip,
        port: opts.port,
        uiPort: opts.uiPort,
        namespace: opts.namespace,
        temporalBin: opts.temporalBin,
        recover: opts.recover ? { procedure: opts.recover, args: recoverArgs } : undefined,
        say: (line) => process.stderr.write(`kohakku-dr up: ${line}\n`),
      });
    });

  const stack = program.command('stack').description('the embedded local stack');
  stack
    .command('stop <dir>')
    .description('stop a stack kept by `drill --keep` and remove its folder')
    .action(async (dir: string) => {
      await stopStack(readStack(dir));
      out().result({ stopped: dir }, () => `stopped the stack in ${dir}`);
    });
  stack
    .command('env <dir>')
    .description(
      'print the sourceable settings of a stack kept by `drill --keep` (worker, kohakku-dr CLI, temporal CLI): `source <(kohakku-dr stack env DIR)`',
    )
    .action((dir: string) => {
      const text = readEnvFile(dir);
      if (out().json) out().result(parseEnvFile(text));
      else process.stdout.write(text);
    });

  await program.parseAsync(process.argv);
}

run().catch((err: unknown) => {
  // --help and --version are CommanderErrors too, already printed: they exit 0.
  if (
    err instanceof CommanderError &&
    (err.code === 'commander.helpDisplayed' || err.code === 'commander.version')
  )
    process.exit(0);
  const { exit, message } = classify(err, temporalSettings().address);
  // Commander has printed its own message for bad arguments; everything else gets one line.
  if (err instanceof CommanderError) {
    if (out().json) out().result({ error: message, exit: exitCode(exit) });
  } else
    out().error(message, {
      error: message,
      exit: exitCode(exit),
      ...(err instanceof CliError && typeof err.document === 'object' ? err.document : {}),
    });
  if (process.argv.includes('--debug')) console.error(err);
  process.exit(exitCode(exit));
});
