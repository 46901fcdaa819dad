#!/usr/bin/env node
/**
 * kohakku-dr: start and watch recoveries and backups, list backups, run the drill.
 * Commander for parsing (subcommands, typed options, generated --help) rather than hand-rolled argv code.
 */
import { Command, InvalidArgumentError } from 'commander';
import { createBackupStore } from '../activities/deps';
import { createPostgresActivities } from '../activities/postgres';
import { createCommandRunner } from '../activities/exec';
import { loadConfig, optionsMarkdown } from '../config';
import { readStack, stopStack } from '../stack/stack';
import type { TotalDatabaseLossInput } from '../workflows/totalDatabaseLoss';
import { runDrill } from './drill';
import { AlreadyRunning, connect, startUnique, temporalSettings, watch, WORKFLOW_IDS } from './temporal';

const seconds = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('expected a whole number of seconds');
  return n;
};

async function run(): Promise<void> {
  const program = new Command('kohakku-dr')
    .description("Kohakku's Backup & Recovery runbook as durable Temporal workflows")
    .showHelpAfterError();

  program
    .command('drill')
    .description(
      'disaster-recovery drill on an embedded local stack: seed, back up, drop both databases, recover, verify, report',
    )
    .option('--tasks <n>', 'tasks to seed', (v) => Number(v), 20000)
    .option('--keep', 'leave the stack running afterwards (Temporal UI to look at)', false)
    .action(async (opts: { tasks: number; keep: boolean }) => {
      const report = await runDrill(opts);
      console.log(['', '══ drill report ══', ...report.lines].join('\n'));
      if (!report.ok) process.exitCode = 1;
    });

  program
    .command('recover')
    .description('start a recovery workflow and watch it')
    .command('total-database-loss')
    .description(
      'restore both Kohakku databases from a backup, then bring the services and Redis registrations back',
    )
    .option('--backup <id>', 'backup id (YYYYMMDDTHHMMSSZ) or latest', 'latest')
    .option('--target <name...>', 'controller and/or dispatcher (default both)')
    .option('--replace-existing', 'move existing target databases aside and replace them', false)
    .option('--reconnect-deadline <s>', 'seconds the services get to reconnect before a restart', seconds)
    .option('--restart-deadline <s>', 'seconds a restarted service gets to become healthy', seconds)
    .option(
      '--registration-deadline <s>',
      'seconds the Monitor gets to register every active container',
      seconds,
    )
    .option('--no-wait', 'start and return the workflow id')
    .action(async (opts) => {
      const input: TotalDatabaseLossInput = {
        backupId: opts.backup,
        targets: opts.target,
        replaceExisting: opts.replaceExisting,
        reconnectDeadlineSeconds: opts.reconnectDeadline,
        restartDeadlineSeconds: opts.restartDeadline,
        registrationDeadlineSeconds: opts.registrationDeadline,
      };
      const settings = temporalSettings();
      const { client, close } = await connect(settings);
      try {
        const workflowId = WORKFLOW_IDS.postgresRecovery;
        const handle = await startUnique(client, workflowId, () =>
          client.workflow.start('totalDatabaseLoss', {
            taskQueue: settings.taskQueue,
            workflowId,
            args: [input],
          }),
        );
        console.log(`started ${workflowId} (run ${handle.firstExecutionRunId})`);
        if (opts.wait) console.log(JSON.stringify(await watch(handle, console.log), null, 2));
      } finally {
        await close();
      }
    });

  program
    .command('backup')
    .description('take a backup now')
    .command('postgres')
    .description('pg_dump -Fc of both databases into the backup store, with a manifest')
    .option('--no-wait', 'start and return the workflow id')
    .action(async (opts: { wait: boolean }) => {
      const settings = temporalSettings();
      const { client, close } = await connect(settings);
      try {
        const workflowId = WORKFLOW_IDS.postgresBackup;
        const handle = await startUnique(client, workflowId, () =>
          client.workflow.start('postgresBackup', { taskQueue: settings.taskQueue, workflowId, args: [{}] }),
        );
        console.log(`started ${workflowId} (run ${handle.firstExecutionRunId})`);
        if (opts.wait) console.log(JSON.stringify(await watch(handle, console.log), null, 2));
      } finally {
        await close();
      }
    });

  program
    .command('backups')
    .description('list Postgres backups in the backup store, newest first (reads the worker configuration)')
    .action(async () => {
      const config = loadConfig();
      const pg = createPostgresActivities({
        config,
        exec: createCommandRunner(),
        store: createBackupStore(config),
      });
      for (const b of await pg.listPostgresBackups()) {
        console.log(
          `${b.id}  ${b.createdAt}  ${b.databases.map((d) => `${d.database}: ${d.size} B, ${d.rows} rows`).join('  ')}`,
        );
      }
    });

  program
    .command('watch <workflowId>')
    .description("follow a running workflow's progress until it ends")
    .action(async (workflowId: string) => {
      const { client, close } = await connect(temporalSettings());
      try {
        console.log(JSON.stringify(await watch(client.workflow.getHandle(workflowId), console.log), null, 2));
      } finally {
        await close();
      }
    });

  program
    .command('config')
    .description('the worker settings (environment variables), their defaults and meaning, as Markdown')
    .action(() => console.log(optionsMarkdown()));

  program
    .command('stack')
    .description('the embedded local stack')
    .command('stop <dir>')
    .description('stop a stack kept by `drill --keep` and remove its folder')
    .action(async (dir: string) => stopStack(readStack(dir)));

  await program.parseAsync(process.argv);
}

run().catch((err) => {
  console.error(err instanceof AlreadyRunning || err?.name === 'ConfigError' ? err.message : err);
  process.exit(err instanceof AlreadyRunning ? 3 : 1);
});
