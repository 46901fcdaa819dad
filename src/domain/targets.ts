/**
 * What a recovery can name: the Postgres targets and the Kohakku services. Plain constants shared
 * by workflows, activities, configuration and the CLI; the worker maps them to real names.
 */
export const POSTGRES_TARGETS = ['controller', 'dispatcher'] as const;
export type PostgresTarget = (typeof POSTGRES_TARGETS)[number];

/**
 * `objectstore` is the S3 server holding Kohakku's bucket (S3_ENDPOINT), started again after it
 * was lost; `postgres` the PostgreSQL server itself, stopped and started by point-in-time recovery.
 */
export const SERVICE_NAMES = [
  'controller',
  'dispatcher',
  'monitor',
  'redis',
  'temporal',
  'objectstore',
  'postgres',
] as const;
export type KohakkuService = (typeof SERVICE_NAMES)[number];
