/**
 * Seed-data generator for the reference Kohakku, with a size knob (a few tasks to 1,000,000).
 * Postgres rows are generated server-side (generate_series), deterministically by id:
 * 40% completed, 30% pending, 20% running with a live agent, 10% running whose agent is gone.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { Redis } from 'ioredis';
import * as Minio from 'minio';
import { Client } from 'pg';
import { CONTROLLER_SCHEMA, DISPATCHER_SCHEMA } from './schema';
import { containerName, seededStatus, type ReferenceModel } from './model';

export interface SeedOptions {
  tasks: number;
  /** Briefs uploaded to the bucket (the first N tasks'); objects are small, counts are what matter. */
  briefs?: number;
  skills?: number;
  /** Versioning on the bucket (S3 PutBucketVersioning), so it can be rewound to an instant. */
  versioning?: boolean;
}

export interface SeedSummary {
  tasks: number;
  byStatus: Record<string, number>;
  liveContainers: number;
  lostContainers: number;
  briefs: number;
  skills: number;
}

const BASE = `timestamptz '2026-01-01 00:00:00+00'`;

async function createDatabase(model: ReferenceModel, name: string, schema: string): Promise<void> {
  const admin = new Client({ ...model.postgres, database: 'postgres' });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${admin.escapeIdentifier(name)}`);
  } finally {
    await admin.end();
  }
  const db = new Client({ ...model.postgres, database: name });
  await db.connect();
  try {
    await db.query(schema);
  } finally {
    await db.end();
  }
}

export function liveAgentsFile(model: ReferenceModel): string {
  return path.join(model.stateDir, 'live-agents.json');
}

export async function seedReferenceKohakku(
  model: ReferenceModel,
  options: SeedOptions,
): Promise<SeedSummary> {
  const n = options.tasks;
  const skills = options.skills ?? 20;
  const briefs = Math.min(options.briefs ?? 200, n);
  if (!Number.isInteger(n) || n < 1 || n > 1_000_000) throw new Error(`tasks must be 1..1000000, got ${n}`);
  await fs.mkdir(model.stateDir, { recursive: true });

  await createDatabase(model, model.postgres.controllerDb, CONTROLLER_SCHEMA);
  await createDatabase(model, model.postgres.dispatcherDb, DISPATCHER_SCHEMA);

  const controller = new Client({ ...model.postgres, database: model.postgres.controllerDb });
  await controller.connect();
  try {
    await controller.query(
      `INSERT INTO tasks_skill (name, object_key, created_at)
       SELECT 'skill-' || s, 'skills/skill-' || s || '.tar', ${BASE} FROM generate_series(1, $1) s`,
      [skills],
    );
    // status by id % 10, as seededStatus() says
    await controller.query(
      `INSERT INTO tasks_task (id, title, status, container, brief_key, progress, agent_checked_in_at, created_at, updated_at, completed_at)
       SELECT i,
              'task ' || i,
              CASE WHEN i % 10 < 4 THEN 'completed' WHEN i % 10 < 7 THEN 'pending' ELSE 'running' END,
              CASE WHEN i % 10 >= 7 THEN 'agent-' || lpad(i::text, 7, '0') END,
              'briefs/task-' || i || '.md',
              CASE WHEN i % 10 < 4 THEN 100 WHEN i % 10 < 7 THEN 0 ELSE (i * 7) % 100 END,
              CASE WHEN i % 10 IN (7, 8) THEN ${BASE} + i * interval '1 second'
                   WHEN i % 10 = 9 THEN ${BASE} + i * interval '1 second' - interval '2 hours' END,
              ${BASE} + i * interval '1 second' - interval '1 day',
              ${BASE} + i * interval '1 second',
              CASE WHEN i % 10 < 4 THEN ${BASE} + i * interval '1 second' END
         FROM generate_series(1, $1) i`,
      [n],
    );
    await controller.query(`SELECT setval('tasks_task_id_seq', $1)`, [n]);
    await controller.query(
      `INSERT INTO tasks_task_skills (task_id, skill_id) SELECT i, (i % $2) + 1 FROM generate_series(1, $1) i`,
      [n, skills],
    );
    await controller.query('ANALYZE');
  } finally {
    await controller.end();
  }

  const dispatcher = new Client({ ...model.postgres, database: model.postgres.dispatcherDb });
  await dispatcher.connect();
  try {
    await dispatcher.query(
      `INSERT INTO dispatcher_agent (container, host, started_at)
       SELECT 'agent-' || lpad(i::text, 7, '0'), 'node-' || (i % 8), ${BASE} + i * interval '1 second' - interval '1 hour'
         FROM generate_series(1, $1) i WHERE i % 10 >= 7`,
      [n],
    );
    await dispatcher.query(
      `INSERT INTO dispatcher_dispatch (task_id, container, dispatched_at)
       SELECT i, 'agent-' || lpad(i::text, 7, '0'), ${BASE} + i * interval '1 second' - interval '1 hour'
         FROM generate_series(1, $1) i WHERE i % 10 >= 7`,
      [n],
    );
    await dispatcher.query('ANALYZE');
  } finally {
    await dispatcher.end();
  }

  // Redis: task state and progress of unfinished tasks, the pending queue and its depth, registrations.
  const redis = new Redis({ host: model.redis.host, port: model.redis.port, lazyConnect: true });
  await redis.connect();
  const byStatus: Record<string, number> = {};
  const live: string[] = [];
  let lost = 0;
  try {
    const p = model.redis.prefix;
    let pipe = redis.pipeline();
    let pendingDepth = 0;
    for (let id = 1; id <= n; id++) {
      const status = seededStatus(id);
      byStatus[status] = (byStatus[status] ?? 0) + 1;
      if (status === 'completed') continue;
      if (status === 'pending') {
        pipe.hset(`${p}task:${id}`, 'status', 'pending');
        pipe.rpush(`${p}queue:pending`, String(id));
        pendingDepth++;
      } else {
        const container = containerName(id);
        pipe.hset(`${p}task:${id}`, 'status', 'running', 'container', container);
        pipe.hset(`${p}progress`, String(id), String((id * 7) % 100));
        pipe.sadd(model.redis.containersKey, container);
        if (status === 'running-live') live.push(container);
        else lost++;
      }
      if (pipe.length >= 5000) {
        await pipe.exec();
        pipe = redis.pipeline();
      }
    }
    pipe.set(`${p}queue:depth`, String(pendingDepth));
    await pipe.exec();
  } finally {
    redis.disconnect();
  }
  await fs.writeFile(liveAgentsFile(model), JSON.stringify(live));

  // Object store: bucket kohakku with briefs/ and skills/.
  const s3 = new Minio.Client({
    endPoint: model.s3.endPoint,
    port: model.s3.port,
    useSSL: false,
    accessKey: model.s3.accessKey,
    secretKey: model.s3.secretKey,
  });
  if (!(await s3.bucketExists(model.s3.bucket))) await s3.makeBucket(model.s3.bucket, 'us-east-1');
  if (options.versioning) await s3.setBucketVersioning(model.s3.bucket, { Status: 'Enabled' });
  const uploads: (() => Promise<unknown>)[] = [];
  for (let id = 1; id <= briefs; id++) {
    const body = Buffer.from(`# Brief for task ${id}\n\nDo the thing numbered ${id}.\n`);
    uploads.push(() => s3.putObject(model.s3.bucket, `briefs/task-${id}.md`, body, body.length));
  }
  for (let s = 1; s <= skills; s++) {
    const body = Buffer.alloc(1024 * s, s % 256);
    uploads.push(() => s3.putObject(model.s3.bucket, `skills/skill-${s}.tar`, body, body.length));
  }
  for (let i = 0; i < uploads.length; i += 16) await Promise.all(uploads.slice(i, i + 16).map((u) => u()));

  return { tasks: n, byStatus, liveContainers: live.length, lostContainers: lost, briefs, skills };
}
