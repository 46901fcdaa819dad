/**
 * `kohakku-dr up` — break-glass. When nothing of the cluster survives but the backups and one
 * host, there is no Temporal server to run a recovery on and no worker to run its activities.
 * `up` starts both here: a Temporal dev server persisted in a folder (so a run in flight survives
 * `up` being stopped and started again) with its web UI, and a kohakku-dr worker from the
 * settings in the environment (through scripts/worker, with its memory settings). It supervises
 * them — either one that dies is started again, the server on the same database — prints how to
 * reach both and keeps running until Ctrl-C. With `--recover <procedure>` it also starts that
 * recovery and follows it, exactly as `kohakku-dr recover <procedure>` would (the arguments after
 * `--` go to that command).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { ConfigError, loadConfig } from '../config';
import { searchAttributeFlags } from '../domain/searchAttributes';
import { probeProgram } from '../infra/probes';
import { isAlive, tcpOpen, workerCommand } from '../infra/processes';
import { waitForTemporalDevServer } from '../stack/temporalReady';
import { configuredToolPaths } from '../stack/tools';
import { CliError } from './exitCodes';

export interface UpOptions {
  /** Where the server's database and both logs are kept. */
  dir: string;
  ip: string;
  port: number;
  uiPort: number;
  namespace: string;
  /** The `temporal` CLI; found when not given. */
  temporalBin?: string;
  /** A recovery to start once both are up: the procedure and `recover`'s own arguments. */
  recover?: { procedure: string; args: string[] };
  say: (line: string) => void;
}

/** The `temporal` CLI: the setting, the tools scripts/install-tools.sh built, or PATH. */
export async function findTemporalCli(given?: string): Promise<string> {
  // Given, else KOHAKKU_DR_TEMPORAL_BIN or the installed tools (as the stack finds it), else PATH.
  const candidates = [...(given ? [given] : configuredToolPaths('temporal')), 'temporal'];
  for (const candidate of candidates) {
    if ((await probeProgram(candidate)).ok) return candidate;
    if (candidate === given) break;
  }
  throw new CliError(
    'bad-input',
    given
      ? `--temporal-bin ${given} is not an executable file`
      : 'no Temporal CLI found (--temporal-bin, KOHAKKU_DR_TEMPORAL_BIN, scripts/install-tools.sh, or `temporal` on PATH): install it from https://github.com/temporalio/cli/releases',
  );
}

/** The environment a child that needs no settings gets: where programs are, whose home, the locale. */
function onlyBasics(): NodeJS.ProcessEnv {
  const keep = ['PATH', 'HOME', 'USER', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR', 'NODE_OPTIONS'];
  return Object.fromEntries(keep.filter((k) => process.env[k] !== undefined).map((k) => [k, process.env[k]]));
}

/** A child process that is started again when it dies, until `stop()`. */
class Supervised {
  private child?: ChildProcess;
  private stopping = false;
  private restarts = 0;

  constructor(
    private readonly name: string,
    private readonly start: () => ChildProcess,
    private readonly ready: () => Promise<void>,
    private readonly say: (line: string) => void,
  ) {}

  async run(): Promise<void> {
    this.child = this.start();
    const child = this.child;
    child.once('exit', (code, signal) => {
      if (this.stopping || this.child !== child) return;
      this.restarts++;
      this.say(
        `${this.name} exited (${signal ?? `code ${code}`}); starting it again (restart ${this.restarts}) in 2 s`,
      );
      setTimeout(() => {
        if (this.stopping) return;
        this.run().catch((err: Error) => this.say(`${this.name} did not come back: ${err.message}`));
      }, 2000).unref();
    });
    await this.ready();
  }

  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }
}

/**
 * Runs until SIGINT/SIGTERM: returns the exit code for the process (the recovery's when one was
 * started and failed, else 0).
 */
export async function up(options: UpOptions): Promise<number> {
  const { say } = options;
  const address = `${options.ip}:${options.port}`;
  const workerEnv = { ...process.env, TEMPORAL_ADDRESS: address, TEMPORAL_NAMESPACE: options.namespace };
  // The worker's settings first: a missing one is named now, not after the server started.
  let taskQueue: string;
  try {
    taskQueue = loadConfig(workerEnv).temporal.taskQueue;
  } catch (err) {
    if (err instanceof ConfigError) throw new CliError('bad-input', err.message);
    throw err;
  }
  const dir = path.resolve(options.dir);
  const pidsFile = path.join(dir, 'up-pids.json');
  for (const [what, port] of [
    ['--port', options.port],
    ['--ui-port', options.uiPort],
  ] as const)
    if (await tcpOpen(port, options.ip)) {
      // A previous `up` on this folder that was killed leaves its children running: name them.
      const left = existsSync(pidsFile)
        ? Object.entries(JSON.parse(readFileSync(pidsFile, 'utf8')) as Record<string, number>).filter(
            ([, pid]) => isAlive(pid),
          )
        : [];
      throw new CliError(
        'refused',
        `${what} ${port}: something already listens on ${options.ip}:${port}` +
          (left.length
            ? ` — a previous \`kohakku-dr up\` on ${dir} left ${left.map(([name, pid]) => `its ${name} (pid ${pid})`).join(' and ')} running: stop them (kill ${left.map(([, pid]) => pid).join(' ')}) and start again`
            : ' (another `kohakku-dr up`, or a Temporal server: use it with TEMPORAL_ADDRESS instead)'),
      );
    }
  const temporalBin = await findTemporalCli(options.temporalBin);
  mkdirSync(dir, { recursive: true });
  const pids: Record<string, number> = {};
  const notePid = (name: string, child: ChildProcess) => {
    if (child.pid) pids[name] = child.pid;
    writeFileSync(pidsFile, JSON.stringify(pids));
    return child;
  };
  const dbFile = path.join(dir, 'temporal.db');
  const serverLog = path.join(dir, 'temporal.log');
  const workerLog = path.join(dir, 'worker.log');
  const resuming = existsSync(dbFile);

  /** The child writes to its log file itself (no pipe through `up`, which it may outlive). */
  const logTo = (file: string, start: (stdio: ['ignore', number, number]) => ChildProcess) => {
    const fd = openSync(file, 'a');
    try {
      return start(['ignore', fd, fd]);
    } finally {
      closeSync(fd);
    }
  };
  let workerChild: ChildProcess | undefined;
  const server = new Supervised(
    'the Temporal server',
    () =>
      notePid(
        'Temporal server',
        logTo(serverLog, (stdio) =>
          spawn(
            temporalBin,
            [
              'server',
              'start-dev',
              '--ip',
              options.ip,
              '--port',
              String(options.port),
              '--ui-port',
              String(options.uiPort),
              '--db-filename',
              dbFile,
              '--namespace',
              options.namespace,
              ...searchAttributeFlags(),
              '--log-level',
              'warn',
            ],
            // Its own process group, as the worker's: a terminal's Ctrl-C reaches `up` alone, which
            // then stops the worker first and the server after it.
            // The server needs none of the worker's settings (its secrets among them).
            { stdio, detached: true, env: onlyBasics() },
          ),
        ),
      ),
    () =>
      waitForTemporalDevServer({
        cli: temporalBin,
        port: options.port,
        namespace: options.namespace,
        log: serverLog,
        timeoutMs: 60000,
      }),
    say,
  );
  const launch = workerCommand();
  const worker = new Supervised(
    'the worker',
    () => {
      workerChild = notePid(
        'worker',
        logTo(workerLog, (stdio) =>
          spawn(launch.file, launch.args, {
            env: { ...workerEnv, ...launch.env },
            stdio,
            detached: true,
          }),
        ),
      );
      return workerChild;
    },
    // Its log is appended to across restarts: ready once a new "polling" line appears.
    async () => {
      const pollingLines = () =>
        existsSync(workerLog) ? readFileSync(workerLog, 'utf8').split('worker polling').length - 1 : 0;
      const before = pollingLines();
      const deadline = Date.now() + 60000;
      for (;;) {
        if (pollingLines() > before) return;
        if (workerChild && (workerChild.exitCode !== null || workerChild.signalCode !== null))
          throw new Error(
            `the worker exited (${workerChild.signalCode ?? `code ${workerChild.exitCode}`}): see ${workerLog}`,
          );
        if (Date.now() > deadline) throw new Error(`the worker did not start within 60 s: see ${workerLog}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    },
    say,
  );

  let stopping: Promise<void> | undefined;
  let recovery: ChildProcess | undefined;
  const stopAll = () =>
    (stopping ??= (async () => {
      say(
        'stopping: the worker first (it finishes what it is doing, at most 60 s), then the Temporal server',
      );
      if (recovery && recovery.exitCode === null) recovery.kill('SIGINT');
      await worker.stop(60000);
      await server.stop(15000);
      rmSync(pidsFile, { force: true });
      say(
        `stopped. The server's database stays in ${dbFile}: \`kohakku-dr up --dir ${options.dir}\` resumes any run in flight.`,
      );
    })());
  const signalled = new Promise<void>((resolve) => {
    for (const signal of ['SIGINT', 'SIGTERM'] as const)
      process.once(signal, () => {
        void stopAll().then(resolve);
      });
  });

  try {
    say(`starting the Temporal server (${resuming ? `resuming ${dbFile}` : `a new database in ${dbFile}`})`);
    await server.run();
    say('starting the kohakku-dr worker');
    await worker.run();
  } catch (err) {
    await stopAll();
    throw new CliError('failed', `kohakku-dr up could not start: ${(err as Error).message}`);
  }
  const uiUrl = `http://${options.ip}:${options.uiPort}/namespaces/${options.namespace}/workflows`;
  say(`up. Temporal ${address} (namespace ${options.namespace}); its UI ${uiUrl}`);
  say(`     worker polling ${taskQueue}; logs ${serverLog} and ${workerLog}`);
  say(`     from another shell: export TEMPORAL_ADDRESS=${address} KOHAKKU_DR_TASK_QUEUE=${taskQueue}`);
  say(`     then e.g. kohakku-dr recover full-cluster, kohakku-dr status <workflow-id>, or the UI above`);
  say('     Ctrl-C stops the worker and the server.');

  let exit = 0;
  if (options.recover) {
    const { procedure, args } = options.recover;
    say(`starting: kohakku-dr recover ${[procedure, ...args].join(' ')}`);
    recovery = spawn(process.execPath, [path.join(__dirname, 'cli.js'), 'recover', procedure, ...args], {
      // The CLI needs only where the server and the worker are, not the worker's secrets.
      env: {
        ...onlyBasics(),
        TEMPORAL_ADDRESS: address,
        TEMPORAL_NAMESPACE: options.namespace,
        KOHAKKU_DR_TASK_QUEUE: taskQueue,
      },
      stdio: ['ignore', 'inherit', 'inherit'],
      detached: true,
    });
    const child = recovery;
    const code = await new Promise<number>((resolve) => child.once('exit', (c) => resolve(c ?? 130)));
    if (!stopping) {
      exit = code;
      say(
        `the recovery's command ended (exit ${code}); still up for the UI and further commands — Ctrl-C to stop`,
      );
    }
  }
  await signalled;
  return exit;
}
