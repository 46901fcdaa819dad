/**
 * The worker's configuration: one declarative table of options (after pgBackRest) that drives
 * validation at start, `kohakku-dr config --help`-style listings and the README's reference.
 * Everything Kohakku-specific is an option whose default is the reference model's name.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import cronstrue from 'cronstrue';
import { z } from 'zod';
import { SERVICE_NAMES, type KohakkuService } from './domain/targets';

export const SERVICE_ADAPTERS = ['command', 'compose', 'systemd', 'kubectl'] as const;
export type ServiceAdapterKind = (typeof SERVICE_ADAPTERS)[number];
export { SERVICE_NAMES, type KohakkuService };

const port = z.coerce.number().int().min(1).max(65535);
/**
 * Five cron fields whose values are in range (`61 2 * * *` is refused here, naming the field,
 * not later by the Temporal server when the schedule is applied). cronstrue, which already
 * renders the schedules in words, checks the ranges.
 */
function cronSchema(example: string) {
  return z
    .string()
    .trim()
    .regex(/^\S+( \S+){4}$/, `expected five cron fields, e.g. "${example}"`)
    .superRefine((cron, ctx) => {
      try {
        cronstrue.toString(cron, { throwExceptionOnParseError: true });
      } catch (err) {
        ctx.addIssue({
          code: 'custom',
          message: `${String(err).replace(/^Error: /, '')}, e.g. "${example}"`,
        });
      }
    });
}

const nonEmpty = z.string().trim().min(1);
const healthTarget = z
  .string()
  .trim()
  .refine((v) => /^(https?|tcp):\/\/[^/]+/.test(v), 'expected http://host:port/path or tcp://host:port');
const commandTemplate = z.string().transform((v, ctx) => {
  try {
    const parsed: unknown = JSON.parse(v);
    if (Array.isArray(parsed) && parsed.length > 0 && parsed.every((p) => typeof p === 'string')) {
      return parsed as string[];
    }
  } catch {
    // fall through to the issue below
  }
  ctx.addIssue({
    code: 'custom',
    message: 'expected a JSON array of strings, e.g. ["systemctl","restart","{service}"]',
  });
  return z.NEVER;
});
const serviceNameMap = z.string().transform((v, ctx) => {
  const map: Record<string, string> = {};
  for (const pair of v
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const [key, value] = pair.split('=').map((p) => p.trim());
    if (!key || !value || !(SERVICE_NAMES as readonly string[]).includes(key)) {
      ctx.addIssue({
        code: 'custom',
        message: `expected ${SERVICE_NAMES.join('|')}=NAME pairs, got "${pair}"`,
      });
      return z.NEVER;
    }
    map[key] = value;
  }
  return map as Partial<Record<KohakkuService, string>>;
});

export interface OptionSpec {
  env: string;
  group:
    | 'Temporal'
    | 'PostgreSQL'
    | 'Redis'
    | 'Object store'
    | 'Backup store'
    | 'Backup replica'
    | 'Point-in-time recovery'
    | 'Schedules'
    | 'Notifications'
    | 'Reports'
    | 'Services'
    | 'Kohakku model';
  description: string;
  /** Shown in docs and applied when the variable is unset. Undefined = required (unless optional). */
  default?: string;
  optional?: boolean;
  secret?: boolean;
  schema: z.ZodType<unknown>;
}

const BOOL = z.enum(['true', 'false']).transform((v) => v === 'true');

const DEFAULT_WORK_DIR = path.join(os.tmpdir(), 'kohakku-dr-work');

export const OPTIONS = [
  // Temporal (the DR Temporal, not Kohakku's own: a recovery must run with the cluster gone)
  {
    env: 'TEMPORAL_ADDRESS',
    group: 'Temporal',
    description: 'Temporal frontend host:port the DR worker connects to.',
    default: 'localhost:7233',
    schema: nonEmpty,
  },
  {
    env: 'TEMPORAL_NAMESPACE',
    group: 'Temporal',
    description: 'Temporal namespace.',
    default: 'default',
    schema: nonEmpty,
  },
  {
    env: 'KOHAKKU_DR_TASK_QUEUE',
    group: 'Temporal',
    description: 'Task queue the worker polls and workflows are started on.',
    default: 'kohakku-dr',
    schema: nonEmpty,
  },
  {
    env: 'WORKER_MAX_CONCURRENT_ACTIVITIES',
    group: 'Temporal',
    description:
      "Activities one worker runs at once (Temporal's maxConcurrentActivityTaskExecutions). Lower it to bound a worker's memory and leave partitions of a big mirror to other workers on the task queue.",
    default: '100',
    schema: z.coerce.number().int().min(1).max(1000),
  },
  {
    env: 'WORKER_HEAP_GROWING_PERCENT',
    group: 'Temporal',
    description:
      "How far V8 lets the worker's heap grow past what is alive after a full collection (scripts/worker passes it as node's --heap-growing-percent). 25 kept a 100,000-object mirror at 452 MiB peak; 100 peaked at 522 MiB and spent ~35 % less user CPU in it.",
    default: '25',
    schema: z.coerce.number().int().min(10).max(400),
  },
  {
    env: 'WORKER_METRICS_ADDRESS',
    group: 'Temporal',
    description:
      "host:port where the worker serves the Temporal SDK's Prometheus metrics at /metrics (activity and workflow task latencies, failures, poll results, slots); unset, no metrics endpoint.",
    optional: true,
    schema: z
      .string()
      .trim()
      .refine((v) => /^[^\s:/]+:\d{1,5}$/.test(v), 'expected host:port, e.g. 0.0.0.0:9464'),
  },
  {
    env: 'WORKER_LOG_FORMAT',
    group: 'Temporal',
    description:
      "The worker's log lines: `text` for a person, or `json` — one object per line with time, level, message and the SDK's ids (workflowId, runId, activityId, activityType, taskQueue) — for a log pipeline.",
    default: 'text',
    schema: z.enum(['text', 'json']),
  },
  {
    env: 'WORKER_LOG_LEVEL',
    group: 'Temporal',
    description:
      'Least severe log level the worker writes: TRACE, DEBUG (adds every activity start and completion), INFO, WARN or ERROR.',
    default: 'INFO',
    schema: z.enum(['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR']),
  },
  // Notifications
  {
    env: 'NOTIFY_WEBHOOK_URL',
    group: 'Notifications',
    description:
      "Incoming-webhook URL (Slack's, or any that takes Slack's JSON: Mattermost, Rocket.Chat, a chat bridge) that hears of a recovery waiting for approval, completed or failed, a failed nightly backup or verification, and a paused schedule. Only the worker holds it: it never reaches a workflow's input or history, and messages name its host only. Unset, nothing is sent.",
    optional: true,
    secret: true,
    schema: z
      .string()
      .trim()
      .refine((v) => /^https?:\/\/[^/\s]+/.test(v), 'expected an http(s):// URL'),
  },
  // Reports
  {
    env: 'REPORTS_DIR',
    group: 'Reports',
    description:
      "A folder that receives every report (JSON + Markdown) besides the backup store's `reports/`: the worker writes recoveries' and verifications' there, `kohakku-dr drill` its own; `kohakku-dr history` reads it.",
    optional: true,
    schema: nonEmpty,
  },
  {
    env: 'EVIDENCE_SIGNING_KEY_FILE',
    group: 'Reports',
    description:
      'An ed25519 private key (PKCS#8 PEM; `kohakku-dr evidence keygen` makes one) that signs every report; `kohakku-dr evidence verify REPORT --public-key KEY.pub` checks one. A file that is not such a key stops the worker at start.',
    optional: true,
    schema: nonEmpty,
  },
  // PostgreSQL
  {
    env: 'POSTGRES_HOST',
    group: 'PostgreSQL',
    description: 'PostgreSQL server host.',
    default: '127.0.0.1',
    schema: nonEmpty,
  },
  {
    env: 'POSTGRES_PORT',
    group: 'PostgreSQL',
    description: 'PostgreSQL server port.',
    default: '5432',
    schema: port,
  },
  {
    env: 'POSTGRES_USER',
    group: 'PostgreSQL',
    description: 'Role with CREATEDB that owns the Kohakku databases.',
    default: 'postgres',
    schema: nonEmpty,
  },
  {
    env: 'POSTGRES_PASSWORD',
    group: 'PostgreSQL',
    description: 'Password; given to pg_dump/pg_restore as PGPASSWORD, never on a command line.',
    optional: true,
    secret: true,
    schema: z.string(),
  },
  {
    env: 'POSTGRES_DB',
    group: 'PostgreSQL',
    description: 'Maintenance database used to create, rename and drop the Kohakku databases.',
    default: 'postgres',
    schema: nonEmpty,
  },
  {
    env: 'KOHAKKU_CONTROLLER_DB',
    group: 'PostgreSQL',
    description: "The Controller's database (target `controller`).",
    default: 'kohakku-controller',
    schema: nonEmpty,
  },
  {
    env: 'KOHAKKU_DISPATCHER_DB',
    group: 'PostgreSQL',
    description: "The Dispatcher's database (target `dispatcher`).",
    default: 'kohakku-dispatcher',
    schema: nonEmpty,
  },
  {
    env: 'PG_BIN_DIR',
    group: 'PostgreSQL',
    description:
      "Directory holding pg_dump and pg_restore (their major version must be >= the server's); PATH when unset.",
    optional: true,
    schema: nonEmpty,
  },
  {
    env: 'PG_RESTORE_JOBS',
    group: 'PostgreSQL',
    description: 'Parallel jobs for pg_restore (-j).',
    default: '2',
    schema: z.coerce.number().int().min(1).max(64),
  },
  // Redis
  {
    env: 'REDIS_HOST',
    group: 'Redis',
    description: 'Kohakku Redis host.',
    default: '127.0.0.1',
    schema: nonEmpty,
  },
  { env: 'REDIS_PORT', group: 'Redis', description: 'Kohakku Redis port.', default: '6379', schema: port },
  {
    env: 'REDIS_PASSWORD',
    group: 'Redis',
    description: 'Kohakku Redis password.',
    optional: true,
    secret: true,
    schema: z.string(),
  },
  {
    env: 'REDIS_DB',
    group: 'Redis',
    description: 'Kohakku Redis database number.',
    default: '0',
    schema: z.coerce.number().int().min(0).max(15),
  },
  {
    env: 'REDIS_BACKUP_METHOD',
    group: 'Redis',
    description:
      "`bgsave`: BGSAVE, wait until LASTSAVE moves and the save succeeded, copy the RDB file (the worker must see Redis's files); `network`: `redis-cli --rdb` over the network.",
    default: 'bgsave',
    schema: z.enum(['bgsave', 'network']),
  },
  {
    env: 'REDIS_RDB_PATH',
    group: 'Redis',
    description:
      "For `bgsave`: the RDB file as the worker sees it; Redis's own `dir`/`dbfilename` when unset.",
    optional: true,
    schema: nonEmpty,
  },
  {
    env: 'REDIS_CLI_BIN',
    group: 'Redis',
    description: 'redis-cli, for `network` backups.',
    default: 'redis-cli',
    schema: nonEmpty,
  },
  {
    env: 'REDIS_SERVER_BIN',
    group: 'Redis',
    description: 'redis-server, used to load an RDB into a scratch instance when verifying a backup.',
    default: 'redis-server',
    schema: nonEmpty,
  },
  {
    env: 'REDIS_DATA_DIR',
    group: 'Redis',
    description:
      "Redis's data directory as the worker sees it (AOF and RDB): needed by Redis loss to check a corrupt AOF with redis-check-aof and move damaged files aside.",
    optional: true,
    schema: nonEmpty,
  },
  {
    env: 'REDIS_CHECK_AOF_BIN',
    group: 'Redis',
    description: 'redis-check-aof.',
    default: 'redis-check-aof',
    schema: nonEmpty,
  },
  // Object store
  {
    env: 'S3_ENDPOINT',
    group: 'Object store',
    description: 'S3/MinIO endpoint URL holding bucket KOHAKKU_BUCKET.',
    default: 'http://127.0.0.1:9000',
    schema: z.string().url(),
  },
  {
    env: 'S3_ACCESS_KEY',
    group: 'Object store',
    description: 'S3 access key.',
    secret: true,
    schema: nonEmpty,
  },
  {
    env: 'S3_SECRET_KEY',
    group: 'Object store',
    description: 'S3 secret key.',
    secret: true,
    schema: nonEmpty,
  },
  {
    env: 'S3_REGION',
    group: 'Object store',
    description: 'S3 region.',
    default: 'us-east-1',
    schema: nonEmpty,
  },
  {
    env: 'KOHAKKU_BUCKET',
    group: 'Object store',
    description: "Kohakku's bucket (briefs/ and skills/).",
    default: 'kohakku',
    schema: nonEmpty,
  },
  {
    env: 'KOHAKKU_BACKUP_PREFIXES',
    group: 'Object store',
    description: 'Comma-separated prefixes of KOHAKKU_BUCKET that are backed up.',
    default: 'briefs/,skills/',
    schema: z.string().transform((v) =>
      v
        .split(',')
        .map((p) => p.trim())
        .filter(Boolean),
    ),
  },
  {
    env: 'OBJECT_TRANSFER_CONCURRENCY',
    group: 'Object store',
    description:
      'The most objects copied at once. Mirrors and restores start at 8 and add transfers while throughput grows (fewer when the server answers 503 SlowDown); each is streamed, so memory stays bounded whatever their size.',
    default: '32',
    schema: z.coerce.number().int().min(1).max(64),
  },
  {
    env: 'OBJECT_MIRROR_PARTITION_OBJECTS',
    group: 'Object store',
    description:
      'Objects per partition of the object mirror: a bucket with more is mirrored by several activities at once (at most 64), which any worker polling the task queue may take.',
    default: '100000',
    schema: z.coerce.number().int().min(100),
  },
  // Backup store: off Kohakku's failure domain, on its own S3 server (or a directory)
  {
    env: 'BACKUP_STORE',
    group: 'Backup store',
    description:
      '`s3`: bucket BACKUP_BUCKET on its own S3 server BACKUP_S3_ENDPOINT; `dir`: a local or mounted directory BACKUP_DIR.',
    default: 's3',
    schema: z.enum(['s3', 'dir']),
  },
  {
    env: 'BACKUP_S3_ENDPOINT',
    group: 'Backup store',
    description:
      "The backup store's S3 endpoint URL (https://… for TLS). Required when BACKUP_STORE=s3; the worker refuses one that resolves to Kohakku's S3 server (S3_ENDPOINT) unless BACKUP_STORE_ON_KOHAKKU_S3=true.",
    optional: true,
    schema: z.string().url(),
  },
  {
    env: 'BACKUP_S3_ACCESS_KEY',
    group: 'Backup store',
    description: "The backup store's S3 access key (required with BACKUP_S3_ENDPOINT).",
    optional: true,
    secret: true,
    schema: nonEmpty,
  },
  {
    env: 'BACKUP_S3_SECRET_KEY',
    group: 'Backup store',
    description: "The backup store's S3 secret key (required with BACKUP_S3_ENDPOINT).",
    optional: true,
    secret: true,
    schema: nonEmpty,
  },
  {
    env: 'BACKUP_S3_REGION',
    group: 'Backup store',
    description: "The backup store's S3 region.",
    default: 'us-east-1',
    schema: nonEmpty,
  },
  {
    env: 'BACKUP_S3_CA_FILE',
    group: 'Backup store',
    description:
      "PEM file of the CA that signed the backup store's TLS certificate (a private CA); the system's CAs when unset.",
    optional: true,
    schema: nonEmpty,
  },
  {
    env: 'BACKUP_BUCKET',
    group: 'Backup store',
    description: 'Bucket for backups when BACKUP_STORE=s3.',
    default: 'kohakku-backups',
    schema: nonEmpty,
  },
  {
    env: 'BACKUP_DIR',
    group: 'Backup store',
    description: 'Directory for backups when BACKUP_STORE=dir (required then).',
    optional: true,
    schema: nonEmpty,
  },
  {
    env: 'BACKUP_STORE_ON_KOHAKKU_S3',
    group: 'Backup store',
    description:
      "UNSAFE, for small set-ups only: accept a backup store on the same S3 server as Kohakku's bucket, so that losing that server loses the backups too. With BACKUP_S3_ENDPOINT unset, S3_ENDPOINT and its credentials are used.",
    default: 'false',
    schema: BOOL,
  },
  // Backup replica: the second copy (3-2-1)
  {
    env: 'BACKUP_REPLICA',
    group: 'Backup replica',
    description:
      '`none`; `s3`: bucket BACKUP_REPLICA_BUCKET on BACKUP_REPLICA_S3_ENDPOINT; `dir`: directory BACKUP_REPLICA_DIR. Each verified nightly set is copied there (only what it lacks), checked against the set manifest and pruned with the same retention.',
    default: 'none',
    schema: z.enum(['none', 's3', 'dir']),
  },
  {
    env: 'BACKUP_REPLICA_S3_ENDPOINT',
    group: 'Backup replica',
    description:
      "The replica's S3 endpoint URL (required when BACKUP_REPLICA=s3); never the primary's or Kohakku's server.",
    optional: true,
    schema: z.string().url(),
  },
  {
    env: 'BACKUP_REPLICA_S3_ACCESS_KEY',
    group: 'Backup replica',
    description: "The replica's S3 access key.",
    optional: true,
    secret: true,
    schema: nonEmpty,
  },
  {
    env: 'BACKUP_REPLICA_S3_SECRET_KEY',
    group: 'Backup replica',
    description: "The replica's S3 secret key.",
    optional: true,
    secret: true,
    schema: nonEmpty,
  },
  {
    env: 'BACKUP_REPLICA_S3_REGION',
    group: 'Backup replica',
    description: "The replica's S3 region.",
    default: 'us-east-1',
    schema: nonEmpty,
  },
  {
    env: 'BACKUP_REPLICA_S3_CA_FILE',
    group: 'Backup replica',
    description: "PEM file of the CA of the replica's TLS certificate; the system's CAs when unset.",
    optional: true,
    schema: nonEmpty,
  },
  {
    env: 'BACKUP_REPLICA_BUCKET',
    group: 'Backup replica',
    description: 'Bucket for the replica when BACKUP_REPLICA=s3.',
    default: 'kohakku-backups-replica',
    schema: nonEmpty,
  },
  {
    env: 'BACKUP_REPLICA_DIR',
    group: 'Backup replica',
    description: 'Directory for the replica when BACKUP_REPLICA=dir (required then).',
    optional: true,
    schema: nonEmpty,
  },
  {
    env: 'KOHAKKU_DR_WORK_DIR',
    group: 'Backup store',
    description:
      "Worker's scratch directory for downloaded dumps; kept across retries so a resumed restore does not download again.",
    default: DEFAULT_WORK_DIR,
    schema: nonEmpty,
  },
  {
    env: 'BACKUP_RETENTION_DAYS',
    group: 'Backup store',
    description:
      'Backup sets older than this are pruned after each nightly backup (7 to 30); the newest verified set and sets in use by a restore are always kept.',
    default: '14',
    schema: z.coerce
      .number()
      .int()
      .refine((d) => d >= 7 && d <= 30, 'retention must be between 7 and 30 days (the runbook’s range)'),
  },
  // Point-in-time recovery: pgBackRest's continuous WAL archive and base backups
  {
    env: 'PITR',
    group: 'Point-in-time recovery',
    description:
      '`off`, or `pgbackrest`: continuous WAL archiving and base backups with pgBackRest into the backup store (`kohakku-dr pitr setup` configures the server), and the pointInTimeRecovery workflow.',
    default: 'off',
    schema: z.enum(['off', 'pgbackrest']),
  },
  {
    env: 'PG_DATA_DIR',
    group: 'Point-in-time recovery',
    description:
      "PostgreSQL's data directory as the worker sees it (required with PITR=pgbackrest: the worker runs on the database host, or with the directory mounted). A point-in-time recovery moves it aside, never deletes it.",
    optional: true,
    schema: nonEmpty,
  },
  {
    env: 'POSTGRES_SOCKET_DIR',
    group: 'Point-in-time recovery',
    description:
      "Directory of PostgreSQL's unix socket, for pgBackRest's local connection; pgBackRest's default when unset.",
    optional: true,
    schema: nonEmpty,
  },
  {
    env: 'PITR_PGBACKREST_BIN',
    group: 'Point-in-time recovery',
    description: 'pgbackrest (Debian package pgbackrest, 2.45 or later).',
    default: 'pgbackrest',
    schema: nonEmpty,
  },
  {
    env: 'PITR_PGBACKREST_CONFIG',
    group: 'Point-in-time recovery',
    description:
      "pgBackRest's configuration file, generated from these settings by `kohakku-dr pitr setup` (mode 0600, owned by the data directory's owner: it holds the backup store's key). archive_command names it.",
    default: '/etc/pgbackrest/kohakku-dr.conf',
    schema: nonEmpty,
  },
  {
    env: 'PITR_STANZA',
    group: 'Point-in-time recovery',
    description: 'The stanza: the PostgreSQL cluster holding both Kohakku databases.',
    default: 'kohakku',
    schema: z.string().regex(/^[A-Za-z0-9_-]+$/, 'letters, digits, - and _ only'),
  },
  {
    env: 'PITR_REPO_PATH',
    group: 'Point-in-time recovery',
    description:
      "The repository's path in the backup store: a prefix of BACKUP_BUCKET, or a directory under BACKUP_DIR.",
    default: '/pgbackrest',
    schema: z.string().regex(/^\/[A-Za-z0-9_./-]*$/, 'an absolute path such as /pgbackrest'),
  },
  {
    env: 'PITR_WORK_DIR',
    group: 'Point-in-time recovery',
    description:
      "pgBackRest's log, lock and spool (asynchronous archiving) directories, on the database host.",
    default: '/var/lib/pgbackrest/kohakku-dr',
    schema: nonEmpty,
  },
  {
    env: 'PITR_PROCESS_MAX',
    group: 'Point-in-time recovery',
    description: 'Parallel processes for backup, restore and asynchronous archiving.',
    default: '2',
    schema: z.coerce.number().int().min(1).max(32),
  },
  {
    env: 'PITR_ARCHIVE_TIMEOUT_SECONDS',
    group: 'Point-in-time recovery',
    description:
      'archive_timeout: a WAL segment is archived at least this often while writes go on, so at most about this much is lost (the RPO). 5 s keeps the RPO within 10 s.',
    default: '5',
    schema: z.coerce.number().int().min(1).max(60),
  },
  // Schedules
  {
    env: 'BACKUP_SCHEDULE_CRON',
    group: 'Schedules',
    description: 'When the nightly backup runs (cron: minute hour day-of-month month day-of-week).',
    default: '0 2 * * *',
    schema: cronSchema('0 2 * * *'),
  },
  {
    env: 'PITR_FULL_BACKUP_CRON',
    group: 'Schedules',
    description:
      'With PITR=pgbackrest: when a full base backup runs (weekly by default), in BACKUP_SCHEDULE_TIMEZONE.',
    default: '30 1 * * 0',
    schema: cronSchema('30 1 * * 0'),
  },
  {
    env: 'PITR_DIFF_BACKUP_CRON',
    group: 'Schedules',
    description: 'With PITR=pgbackrest: when a differential base backup runs (the other days by default).',
    default: '30 1 * * 1-6',
    schema: cronSchema('30 1 * * 1-6'),
  },
  {
    env: 'BACKUP_SCHEDULE_TIMEZONE',
    group: 'Schedules',
    description: 'IANA time zone of BACKUP_SCHEDULE_CRON.',
    default: 'UTC',
    schema: z.string().refine((tz) => {
      try {
        new Intl.DateTimeFormat('en', { timeZone: tz });
        return true;
      } catch {
        return false;
      }
    }, 'expected an IANA time zone such as Europe/Berlin'),
  },
  {
    env: 'BACKUP_SCHEDULE_OVERLAP',
    group: 'Schedules',
    description:
      'What happens when a nightly backup is due while the last one still runs: skip, buffer_one, buffer_all, cancel_other, terminate_other, allow_all.',
    default: 'skip',
    schema: z.enum(['skip', 'buffer_one', 'buffer_all', 'cancel_other', 'terminate_other', 'allow_all']),
  },
  {
    env: 'BACKUP_SCHEDULE_CATCHUP_WINDOW',
    group: 'Schedules',
    description: 'How late a missed run (Temporal was down) may still start, e.g. 1h, 30m, 2d.',
    default: '1h',
    schema: z.string().regex(/^\d+[smhd]$/, 'expected a duration such as 30m, 1h or 2d'),
  },
  {
    env: 'BACKUP_SCHEDULE_PAUSE_ON_FAILURE',
    group: 'Schedules',
    description:
      'Pause the schedule when a nightly backup fails, so a broken backup is noticed rather than repeated.',
    default: 'true',
    schema: BOOL,
  },
  // Services
  {
    env: 'SERVICE_ADAPTER',
    group: 'Services',
    description:
      'How a Kohakku service is restarted (or stopped and started): `command` (SERVICE_RESTART_COMMAND), `compose` (docker compose restart|stop|start), `systemd` (systemctl restart|stop|start), `kubectl` (kubectl rollout restart, or scale to 0/1 replicas).',
    default: 'systemd',
    schema: z.enum(SERVICE_ADAPTERS),
  },
  {
    env: 'SERVICE_RESTART_COMMAND',
    group: 'Services',
    description:
      'For SERVICE_ADAPTER=command: a JSON argument array; `{service}` is replaced by the service name and `{action}` by restart, stop or start (stop and start: point-in-time recovery). Run without a shell.',
    optional: true,
    schema: commandTemplate,
  },
  {
    env: 'SERVICE_COMMAND_ENV',
    group: 'Services',
    description:
      "For SERVICE_ADAPTER=command: comma-separated names of worker variables the command gets (a name ending in `*` is a prefix). It gets no others but PATH, HOME, USER, LOGNAME, the locale, TZ and TMPDIR: never the worker's secrets.",
    default: '',
    schema: z.string().transform((v) =>
      v
        .split(',')
        .map((p) => p.trim())
        .filter(Boolean),
    ),
  },
  {
    env: 'COMPOSE_FILE',
    group: 'Services',
    description: 'For SERVICE_ADAPTER=compose: the compose file.',
    optional: true,
    schema: nonEmpty,
  },
  {
    env: 'KUBE_NAMESPACE',
    group: 'Services',
    description: 'For SERVICE_ADAPTER=kubectl: the namespace.',
    default: 'default',
    schema: nonEmpty,
  },
  {
    env: 'KOHAKKU_SERVICE_NAMES',
    group: 'Services',
    description: 'Unit, compose service or deployment name of each service.',
    default:
      'controller=kohakku-controller,dispatcher=kohakku-dispatcher,monitor=kohakku-monitor,redis=kohakku-redis,temporal=kohakku-temporal,objectstore=kohakku-objectstore,postgres=postgresql',
    schema: serviceNameMap,
  },
  {
    env: 'KOHAKKU_CONTROLLER_HEALTH',
    group: 'Services',
    description: 'Controller health check: http(s)://… (2xx is healthy) or tcp://host:port.',
    default: 'http://127.0.0.1:8080/healthz',
    schema: healthTarget,
  },
  {
    env: 'KOHAKKU_DISPATCHER_HEALTH',
    group: 'Services',
    description: 'Dispatcher health check.',
    default: 'http://127.0.0.1:8081/healthz',
    schema: healthTarget,
  },
  {
    env: 'KOHAKKU_TEMPORAL_HEALTH',
    group: 'Services',
    description:
      "Kohakku's own Temporal frontend (restarted by the full-cluster procedure), as tcp://host:port.",
    default: 'tcp://127.0.0.1:7233',
    schema: healthTarget,
  },
  {
    env: 'KOHAKKU_OBJECT_STORE_HEALTH',
    group: 'Services',
    description:
      "Health check of the S3 server holding Kohakku's bucket (service `objectstore`); tcp://<S3_ENDPOINT's host:port> when unset.",
    optional: true,
    schema: healthTarget,
  },
  {
    env: 'KOHAKKU_MONITOR_HEALTH',
    group: 'Services',
    description: 'Monitor health check.',
    default: 'http://127.0.0.1:8082/healthz',
    schema: healthTarget,
  },
  // Kohakku model
  {
    env: 'KOHAKKU_ACTIVE_CONTAINERS_SQL',
    group: 'Kohakku model',
    description:
      "Query on the Controller's database returning one `container` column: the containers the Monitor must register.",
    default: "SELECT container FROM tasks_task WHERE status = 'running' AND container IS NOT NULL",
    schema: nonEmpty,
  },
  {
    env: 'KOHAKKU_REDIS_CONTAINERS_KEY',
    group: 'Kohakku model',
    description: 'Redis set in which the Monitor registers active containers.',
    default: 'kohakku:containers',
    schema: nonEmpty,
  },
  {
    env: 'KOHAKKU_REDIS_PREFIX',
    group: 'Kohakku model',
    description: "Prefix of Kohakku's Redis keys; a task's state is the hash `<prefix>task:<id>`.",
    default: 'kohakku:',
    schema: nonEmpty,
  },
  {
    env: 'KOHAKKU_REDIS_QUEUE_KEY',
    group: 'Kohakku model',
    description: 'Redis list of task ids waiting to be dispatched.',
    default: 'kohakku:queue:pending',
    schema: nonEmpty,
  },
  {
    env: 'KOHAKKU_REDIS_QUEUE_DEPTH_KEY',
    group: 'Kohakku model',
    description: 'Redis counter of the queue depth.',
    default: 'kohakku:queue:depth',
    schema: nonEmpty,
  },
  {
    env: 'KOHAKKU_REDIS_AGENT_KEY_PREFIX',
    group: 'Kohakku model',
    description: 'An agent checking back sets `<prefix><container>` (with a TTL).',
    default: 'kohakku:agent:',
    schema: nonEmpty,
  },
  {
    env: 'KOHAKKU_PENDING_TASKS_SQL',
    group: 'Kohakku model',
    description: "Query on the Controller's database returning `id` of every task waiting for dispatch.",
    default: "SELECT id FROM tasks_task WHERE status = 'pending' ORDER BY id",
    schema: nonEmpty,
  },
  {
    env: 'KOHAKKU_IN_FLIGHT_TASKS_SQL',
    group: 'Kohakku model',
    description: 'Query returning `id`, `container` of every task an agent is working on.',
    default: "SELECT id, container FROM tasks_task WHERE status = 'running' ORDER BY id",
    schema: nonEmpty,
  },
  {
    env: 'KOHAKKU_REQUEUE_TASKS_SQL',
    group: 'Kohakku model',
    description:
      "Set-based statement that puts lost in-flight tasks back to pending, run per batch of up to 100,000: $1 is the array of their ids (text), $2 the array of the containers they had, in the same order; it RETURNs `id` of each task it changed. Must change nothing for a task that is no longer that container's (a retry, or an agent that checked back).",
    default:
      "UPDATE tasks_task t SET status = 'pending', container = NULL, progress = 0 FROM unnest($1::text[], $2::text[]) AS lost(id, container) WHERE t.id = lost.id::bigint AND t.status = 'running' AND t.container = lost.container RETURNING t.id",
    schema: nonEmpty,
  },
  {
    env: 'KOHAKKU_REQUEUE_TASK_SQL',
    group: 'Kohakku model',
    description:
      'Before 0.3.1: one statement per lost task ($1 its id, $2 its container). When set, it is used instead of KOHAKKU_REQUEUE_TASKS_SQL (about 8× slower at 100,000 lost tasks): rewrite it as the set-based one.',
    optional: true,
    schema: nonEmpty,
  },
  {
    env: 'KOHAKKU_REDIS_PROCESSING_KEY',
    group: 'Kohakku model',
    description:
      'Redis list a Dispatcher moves each task id into while it dispatches it (LMOVE from the queue; removed once Postgres says the task runs). Re-dispatch snapshots it with the queue, atomically, so a task being dispatched meanwhile is never queued again. A Dispatcher that pops without one leaves a task mid-dispatch exposed to that.',
    default: 'kohakku:queue:processing',
    schema: nonEmpty,
  },
  {
    env: 'KOHAKKU_COMPLETED_BRIEFS_SQL',
    group: 'Kohakku model',
    description:
      'Query returning `brief_key` of completed tasks, whose briefs an object-store restore skips.',
    default: "SELECT brief_key FROM tasks_task WHERE status = 'completed'",
    schema: nonEmpty,
  },
] as const satisfies readonly OptionSpec[];

/** An S3 server and the credentials for it (the minio client's options, plus where they came from). */
export interface S3Connection {
  endPoint: string;
  port: number;
  useSSL: boolean;
  accessKey: string;
  secretKey: string;
  region: string;
  /** PEM file of a private CA for its TLS certificate. */
  caFile?: string;
  /** The endpoint URL as configured, for messages (no credentials). */
  url: string;
}

/** A backup store's place: a bucket on an S3 server, or a directory. */
export type StoreConfig =
  | { kind: 's3'; bucket: string; s3: S3Connection; setting: string }
  | { kind: 'dir'; dir: string; setting: string };

export interface PitrConfig {
  dataDir: string;
  socketDir?: string;
  bin: string;
  configFile: string;
  stanza: string;
  repoPath: string;
  workDir: string;
  processMax: number;
  archiveTimeoutSeconds: number;
}

export interface Config {
  notify: { webhookUrl?: string };
  reports: { dir?: string; signingKeyFile?: string };
  temporal: {
    address: string;
    namespace: string;
    taskQueue: string;
    maxConcurrentActivities: number;
    heapGrowingPercent: number;
    metricsAddress?: string;
    logFormat: 'text' | 'json';
    logLevel: 'TRACE' | 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';
  };
  postgres: {
    host: string;
    port: number;
    user: string;
    password?: string;
    maintenanceDb: string;
    databases: { controller: string; dispatcher: string };
    binDir?: string;
    restoreJobs: number;
  };
  redis: {
    host: string;
    port: number;
    password?: string;
    db: number;
    dataDir?: string;
    checkAofBin: string;
    backupMethod: 'bgsave' | 'network';
    rdbPath?: string;
    cliBin: string;
    serverBin: string;
  };
  /** Kohakku's own object store (bucket KOHAKKU_BUCKET). */
  s3: S3Connection;
  kohakkuBucket: string;
  backupPrefixes: string[];
  transferConcurrency: number;
  mirrorPartitionObjects: number;
  /** Where backups are written and, by default, read from. */
  backupStore: StoreConfig;
  /** The second copy, when configured. */
  replicaStore?: StoreConfig;
  /** BACKUP_STORE_ON_KOHAKKU_S3: the unsafe acceptance of a backup store on Kohakku's S3 server. */
  backupStoreOnKohakkuS3: boolean;
  retentionDays: number;
  schedule: {
    cron: string;
    timezone: string;
    overlap: 'skip' | 'buffer_one' | 'buffer_all' | 'cancel_other' | 'terminate_other' | 'allow_all';
    catchupWindow: string;
    pauseOnFailure: boolean;
    pitrFullCron: string;
    pitrDiffCron: string;
  };
  workDir: string;
  services: {
    adapter: ServiceAdapterKind;
    restartCommand?: string[];
    /** Worker variables SERVICE_RESTART_COMMAND gets (SERVICE_COMMAND_ENV). */
    commandEnv: string[];
    composeFile?: string;
    kubeNamespace: string;
    names: Record<KohakkuService, string>;
    health: Record<KohakkuService, string>;
  };
  /** Point-in-time recovery (pgBackRest), when PITR=pgbackrest. */
  pitr?: PitrConfig;
  model: {
    activeContainersSql: string;
    redisContainersKey: string;
    redisPrefix: string;
    queueKey: string;
    queueDepthKey: string;
    pendingTasksSql: string;
    completedBriefsSql: string;
    inFlightTasksSql: string;
    requeueTasksSql: string;
    /** Per-task statement of before 0.3.1, used instead when set. */
    requeueTaskSql?: string;
    processingKey: string;
    agentKeyPrefix: string;
  };
}

/** A setting that is missing or invalid: the worker prints `message` (one line) and exits. */
export class ConfigError extends Error {
  constructor(
    readonly setting: string,
    detail: string,
  ) {
    super(`kohakku-dr: invalid setting ${setting}: ${detail}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

function readOptions(env: Env): Record<string, unknown> {
  const values: Record<string, unknown> = {};
  for (const option of OPTIONS as readonly OptionSpec[]) {
    const raw = env[option.env];
    const given = raw !== undefined && raw !== '' ? raw : option.default;
    if (given === undefined) {
      if (option.optional) continue;
      throw new ConfigError(option.env, 'required but not set');
    }
    const parsed = option.schema.safeParse(given);
    if (!parsed.success) {
      const shown = option.secret ? '(secret)' : JSON.stringify(given);
      throw new ConfigError(option.env, `${parsed.error.issues[0]?.message ?? 'invalid'} (got ${shown})`);
    }
    values[option.env] = parsed.data;
  }
  return values;
}

function s3Connection(
  url: string,
  accessKey: string,
  secretKey: string,
  region: string,
  caFile?: string,
): S3Connection {
  const endpoint = new URL(url);
  const useSSL = endpoint.protocol === 'https:';
  return {
    endPoint: endpoint.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: endpoint.port ? Number(endpoint.port) : useSSL ? 443 : 80,
    useSSL,
    accessKey,
    secretKey,
    region,
    ...(caFile ? { caFile: path.resolve(caFile) } : {}),
    url,
  };
}

/** A backup store's (or the replica's) settings, BACKUP_S3_* or BACKUP_REPLICA_S3_*, checked together. */
function storeConfig(
  v: Record<string, unknown>,
  o: {
    kind: 's3' | 'dir';
    kindSetting: string;
    prefix: 'BACKUP_' | 'BACKUP_REPLICA_';
    bucketSetting: string;
    dirSetting: string;
    fallback?: S3Connection;
    missingEndpoint: string;
  },
): StoreConfig {
  const opt = (k: string) => v[k] as string | undefined;
  if (o.kind === 'dir') {
    const dir = opt(o.dirSetting);
    if (!dir) throw new ConfigError(o.dirSetting, `required when ${o.kindSetting}=dir`);
    return { kind: 'dir', dir: path.resolve(dir), setting: o.dirSetting };
  }
  const endpointSetting = `${o.prefix}S3_ENDPOINT`;
  const url = opt(endpointSetting);
  const bucket = v[o.bucketSetting] as string;
  if (!url) {
    if (o.fallback) return { kind: 's3', bucket, s3: o.fallback, setting: 'S3_ENDPOINT' };
    throw new ConfigError(endpointSetting, o.missingEndpoint);
  }
  const access = opt(`${o.prefix}S3_ACCESS_KEY`);
  const secret = opt(`${o.prefix}S3_SECRET_KEY`);
  if (!access) throw new ConfigError(`${o.prefix}S3_ACCESS_KEY`, `required with ${endpointSetting}`);
  if (!secret) throw new ConfigError(`${o.prefix}S3_SECRET_KEY`, `required with ${endpointSetting}`);
  return {
    kind: 's3',
    bucket,
    s3: s3Connection(url, access, secret, v[`${o.prefix}S3_REGION`] as string, opt(`${o.prefix}S3_CA_FILE`)),
    setting: endpointSetting,
  };
}

/** Validates the whole environment once; throws ConfigError naming the first bad setting. */
export function loadConfig(env: Env = process.env): Config {
  const v = readOptions(env);
  const str = (k: string) => v[k] as string;
  const opt = (k: string) => v[k] as string | undefined;
  const num = (k: string) => v[k] as number;

  const s3 = s3Connection(str('S3_ENDPOINT'), str('S3_ACCESS_KEY'), str('S3_SECRET_KEY'), str('S3_REGION'));
  const backupStoreOnKohakkuS3 = v['BACKUP_STORE_ON_KOHAKKU_S3'] as boolean;
  const backupStore = storeConfig(v, {
    kind: str('BACKUP_STORE') as 's3' | 'dir',
    kindSetting: 'BACKUP_STORE',
    prefix: 'BACKUP_',
    bucketSetting: 'BACKUP_BUCKET',
    dirSetting: 'BACKUP_DIR',
    // Only with the explicit, unsafe setting does the backup store fall back to Kohakku's server.
    fallback: backupStoreOnKohakkuS3 ? s3 : undefined,
    missingEndpoint:
      "required when BACKUP_STORE=s3: the backup store needs its own S3 server, apart from Kohakku's (S3_ENDPOINT); BACKUP_STORE_ON_KOHAKKU_S3=true accepts Kohakku's (unsafe)",
  });
  const replicaKind = str('BACKUP_REPLICA') as 'none' | 's3' | 'dir';
  const replicaStore =
    replicaKind === 'none'
      ? undefined
      : storeConfig(v, {
          kind: replicaKind,
          kindSetting: 'BACKUP_REPLICA',
          prefix: 'BACKUP_REPLICA_',
          bucketSetting: 'BACKUP_REPLICA_BUCKET',
          dirSetting: 'BACKUP_REPLICA_DIR',
          missingEndpoint: 'required when BACKUP_REPLICA=s3',
        });
  let pitr: PitrConfig | undefined;
  if (str('PITR') === 'pgbackrest') {
    const dataDir = opt('PG_DATA_DIR');
    if (!dataDir) throw new ConfigError('PG_DATA_DIR', 'required when PITR=pgbackrest');
    pitr = {
      dataDir: path.resolve(dataDir),
      socketDir: opt('POSTGRES_SOCKET_DIR'),
      bin: str('PITR_PGBACKREST_BIN'),
      configFile: path.resolve(str('PITR_PGBACKREST_CONFIG')),
      stanza: str('PITR_STANZA'),
      repoPath: str('PITR_REPO_PATH'),
      workDir: path.resolve(str('PITR_WORK_DIR')),
      processMax: num('PITR_PROCESS_MAX'),
      archiveTimeoutSeconds: num('PITR_ARCHIVE_TIMEOUT_SECONDS'),
    };
  }
  const adapter = str('SERVICE_ADAPTER') as ServiceAdapterKind;
  const restartCommand = v['SERVICE_RESTART_COMMAND'] as string[] | undefined;
  if (adapter === 'command' && !restartCommand) {
    throw new ConfigError('SERVICE_RESTART_COMMAND', 'required when SERVICE_ADAPTER=command');
  }
  const names = {
    controller: 'kohakku-controller',
    dispatcher: 'kohakku-dispatcher',
    monitor: 'kohakku-monitor',
    redis: 'kohakku-redis',
    temporal: 'kohakku-temporal',
    objectstore: 'kohakku-objectstore',
    postgres: 'postgresql',
    ...(v['KOHAKKU_SERVICE_NAMES'] as Partial<Record<KohakkuService, string>>),
  };
  const controllerDb = str('KOHAKKU_CONTROLLER_DB');
  const dispatcherDb = str('KOHAKKU_DISPATCHER_DB');
  if (controllerDb === dispatcherDb) {
    throw new ConfigError('KOHAKKU_DISPATCHER_DB', 'must differ from KOHAKKU_CONTROLLER_DB');
  }

  return {
    notify: { webhookUrl: opt('NOTIFY_WEBHOOK_URL') },
    reports: { dir: opt('REPORTS_DIR'), signingKeyFile: opt('EVIDENCE_SIGNING_KEY_FILE') },
    temporal: {
      address: str('TEMPORAL_ADDRESS'),
      namespace: str('TEMPORAL_NAMESPACE'),
      taskQueue: str('KOHAKKU_DR_TASK_QUEUE'),
      maxConcurrentActivities: num('WORKER_MAX_CONCURRENT_ACTIVITIES'),
      heapGrowingPercent: num('WORKER_HEAP_GROWING_PERCENT'),
      metricsAddress: opt('WORKER_METRICS_ADDRESS'),
      logFormat: str('WORKER_LOG_FORMAT') as 'text' | 'json',
      logLevel: str('WORKER_LOG_LEVEL') as Config['temporal']['logLevel'],
    },
    postgres: {
      host: str('POSTGRES_HOST'),
      port: num('POSTGRES_PORT'),
      user: str('POSTGRES_USER'),
      password: opt('POSTGRES_PASSWORD'),
      maintenanceDb: str('POSTGRES_DB'),
      databases: { controller: controllerDb, dispatcher: dispatcherDb },
      binDir: opt('PG_BIN_DIR'),
      restoreJobs: num('PG_RESTORE_JOBS'),
    },
    redis: {
      host: str('REDIS_HOST'),
      port: num('REDIS_PORT'),
      password: opt('REDIS_PASSWORD'),
      db: num('REDIS_DB'),
      backupMethod: str('REDIS_BACKUP_METHOD') as 'bgsave' | 'network',
      rdbPath: opt('REDIS_RDB_PATH'),
      cliBin: str('REDIS_CLI_BIN'),
      serverBin: str('REDIS_SERVER_BIN'),
      dataDir: opt('REDIS_DATA_DIR'),
      checkAofBin: str('REDIS_CHECK_AOF_BIN'),
    },
    s3,
    kohakkuBucket: str('KOHAKKU_BUCKET'),
    backupPrefixes: v['KOHAKKU_BACKUP_PREFIXES'] as string[],
    transferConcurrency: num('OBJECT_TRANSFER_CONCURRENCY'),
    mirrorPartitionObjects: num('OBJECT_MIRROR_PARTITION_OBJECTS'),
    retentionDays: num('BACKUP_RETENTION_DAYS'),
    schedule: {
      cron: str('BACKUP_SCHEDULE_CRON'),
      timezone: str('BACKUP_SCHEDULE_TIMEZONE'),
      overlap: str('BACKUP_SCHEDULE_OVERLAP') as Config['schedule']['overlap'],
      catchupWindow: str('BACKUP_SCHEDULE_CATCHUP_WINDOW'),
      pauseOnFailure: v['BACKUP_SCHEDULE_PAUSE_ON_FAILURE'] as boolean,
      pitrFullCron: str('PITR_FULL_BACKUP_CRON'),
      pitrDiffCron: str('PITR_DIFF_BACKUP_CRON'),
    },
    backupStore,
    replicaStore,
    backupStoreOnKohakkuS3,
    workDir: path.resolve(str('KOHAKKU_DR_WORK_DIR')),
    services: {
      adapter,
      restartCommand,
      commandEnv: v['SERVICE_COMMAND_ENV'] as string[],
      composeFile: opt('COMPOSE_FILE'),
      kubeNamespace: str('KUBE_NAMESPACE'),
      names,
      health: {
        controller: str('KOHAKKU_CONTROLLER_HEALTH'),
        dispatcher: str('KOHAKKU_DISPATCHER_HEALTH'),
        monitor: str('KOHAKKU_MONITOR_HEALTH'),
        redis: `tcp://${str('REDIS_HOST')}:${num('REDIS_PORT')}`,
        temporal: str('KOHAKKU_TEMPORAL_HEALTH'),
        postgres: `tcp://${str('POSTGRES_HOST')}:${num('POSTGRES_PORT')}`,
        objectstore:
          opt('KOHAKKU_OBJECT_STORE_HEALTH') ??
          `tcp://${s3.endPoint.includes(':') ? `[${s3.endPoint}]` : s3.endPoint}:${s3.port}`,
      },
    },
    ...(pitr ? { pitr } : {}),
    model: {
      activeContainersSql: str('KOHAKKU_ACTIVE_CONTAINERS_SQL'),
      redisContainersKey: str('KOHAKKU_REDIS_CONTAINERS_KEY'),
      redisPrefix: str('KOHAKKU_REDIS_PREFIX'),
      queueKey: str('KOHAKKU_REDIS_QUEUE_KEY'),
      queueDepthKey: str('KOHAKKU_REDIS_QUEUE_DEPTH_KEY'),
      pendingTasksSql: str('KOHAKKU_PENDING_TASKS_SQL'),
      completedBriefsSql: str('KOHAKKU_COMPLETED_BRIEFS_SQL'),
      inFlightTasksSql: str('KOHAKKU_IN_FLIGHT_TASKS_SQL'),
      requeueTasksSql: str('KOHAKKU_REQUEUE_TASKS_SQL'),
      ...(opt('KOHAKKU_REQUEUE_TASK_SQL') ? { requeueTaskSql: opt('KOHAKKU_REQUEUE_TASK_SQL') } : {}),
      processingKey: str('KOHAKKU_REDIS_PROCESSING_KEY'),
      agentKeyPrefix: str('KOHAKKU_REDIS_AGENT_KEY_PREFIX'),
    },
  };
}

/** The options table as Markdown, for the README (`npm run docs:config`). */
export function optionsMarkdown(): string {
  const rows = (OPTIONS as readonly OptionSpec[]).map((o) => {
    const dflt =
      o.default === DEFAULT_WORK_DIR
        ? '`$TMPDIR/kohakku-dr-work`'
        : o.default !== undefined
          ? `\`${o.default}\``
          : o.optional
            ? '(unset)'
            : '**required**';
    return `| ${o.group} | \`${o.env}\` | ${dflt}${o.secret ? ' (secret)' : ''} | ${o.description.replace(/\|/g, '\\|')} |`;
  });
  return ['| group | variable | default | meaning |', '|---|---|---|---|', ...rows].join('\n');
}
