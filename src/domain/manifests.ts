/**
 * What the backup store holds, as types: each part's manifest, the object index, the set
 * manifest with its verification verdict. Shared by the activities that write and read them, the
 * workflows that report on them and the CLI that lists them.
 */
import type { PostgresTarget } from './targets';

export interface TableStats {
  table: string;
  rows: number;
  checksum: string;
}

/** A database's own properties: what `CREATE DATABASE`, `ALTER DATABASE` and `GRANT … ON DATABASE` set. */
export interface DatabaseProperties {
  owner: string;
  encoding: string;
  collate: string;
  ctype: string;
  localeProvider: 'libc' | 'icu';
  icuLocale: string | null;
  connectionLimit: number;
  comment: string | null;
  /** `ALTER DATABASE … SET` (role null) and `ALTER ROLE … IN DATABASE … SET`, as `name=value`. */
  settings: { role: string | null; setting: string }[];
  /** Database privileges as aclitem text (`role=CTc/grantor`); null = the defaults. */
  acl: string[] | null;
}

export interface DatabaseBackup {
  target: PostgresTarget;
  database: string;
  key: string;
  size: number;
  sha256: string;
  tables: TableStats[];
  /** Absent in manifests written before 0.2. */
  properties?: DatabaseProperties;
}

/** A role as the cluster had it (never its password: see the README). */
export interface RoleSnapshot {
  name: string;
  superuser: boolean;
  inherit: boolean;
  createRole: boolean;
  createDb: boolean;
  canLogin: boolean;
  replication: boolean;
  bypassRls: boolean;
  connectionLimit: number;
  validUntil: string | null;
  comment: string | null;
  /** `ALTER ROLE … SET` for all databases, as `name=value`. */
  settings: string[];
}

export interface RoleMembership {
  role: string;
  member: string;
  adminOption: boolean;
}

/** The cluster-wide objects a database needs on a fresh server: roles and their memberships. */
export interface PostgresGlobals {
  roles: RoleSnapshot[];
  memberships: RoleMembership[];
}

export interface PostgresManifest {
  kind: 'postgres';
  formatVersion: 1;
  id: string;
  createdAt: string;
  /** Absent in manifests written by 0.3.6 and earlier (the backup read it under the wrong column name). */
  serverVersion?: string;
  pgDumpVersion: string;
  databases: DatabaseBackup[];
  /** How table checksums were computed (src/domain/checksums.ts); absent before 0.2. */
  checksumVersion?: number;
  /** Absent in manifests written before 0.2. */
  globals?: PostgresGlobals;
}

export interface RedisBackupManifest {
  kind: 'redis';
  formatVersion: 1;
  id: string;
  createdAt: string;
  method: 'bgsave' | 'network';
  key: string;
  size: number;
  sha256: string;
  redisVersion: string;
  /** Keys in the RDB, as redis-check-rdb read them. */
  keys: number;
  expires: number;
}

/** One object of the bucket as a backup saw it. */
export interface ObjectIndexEntry {
  key: string;
  size: number;
  /** The object's ETag at backup time: a live object with this size and ETag is the same object. */
  etag: string;
  /** sha256 of the content (hex), hashed while it was mirrored; absent in 0.1 indexes. */
  sha256?: string;
  /** Where the content is in the backup store (`contentBlobKey`, or a 0.1 ETag-keyed blob). */
  blob: string;
}

export interface ObjectBackupManifest {
  kind: 'objects';
  formatVersion: 1;
  id: string;
  createdAt: string;
  bucket: string;
  prefixes: string[];
  objects: number;
  bytes: number;
  /** Objects read from the bucket by this mirror. */
  copied: number;
  /** Objects known from the previous backup's index (same key, size and ETag), not read again. */
  alreadyMirrored: number;
  /** New blobs written (content the store did not have yet); absent before 0.2. */
  blobsWritten?: number;
  indexKey: string;
}

export interface Verification {
  verifiedAt: string;
  ok: boolean;
  problems: string[];
  verifyId: string;
}

export interface BackupSetManifest {
  kind: 'backup-set';
  formatVersion: 1;
  id: string;
  createdAt: string;
  completedAt: string;
  postgres: { databases: { database: string; size: number; sha256: string; tables: number; rows: number }[] };
  redis: { size: number; sha256: string; keys: number; method: string };
  objects: { objects: number; bytes: number; copied: number };
  verification?: Verification;
  /** In a replica store: where the copy came from and what its check covered. */
  replica?: { copiedFrom: string; copiedAt: string; checked: Record<string, number> };
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

/**
 * What is wrong with a Postgres manifest read from the store, or undefined: the fields a restore
 * relies on, checked before any of them is used, so an altered or foreign manifest is refused by
 * name instead of failing later on a missing field (or restoring another set's dumps).
 */
export function postgresManifestProblem(m: unknown, id: string): string | undefined {
  if (typeof m !== 'object' || m === null || Array.isArray(m)) return 'not a JSON object';
  const o = m as Partial<Record<keyof PostgresManifest, unknown>>;
  if (o.kind !== 'postgres') return `kind is ${JSON.stringify(o.kind)}, not "postgres"`;
  if (o.id !== id) return `it names backup ${JSON.stringify(o.id)}, not ${id}`;
  if (o.serverVersion !== undefined && typeof o.serverVersion !== 'string')
    return 'serverVersion is not text';
  if (!Array.isArray(o.databases) || o.databases.length === 0) return 'it lists no databases';
  for (const [i, d] of (o.databases as Partial<Record<keyof DatabaseBackup, unknown>>[]).entries()) {
    const where = `databases[${i}]`;
    if (typeof d !== 'object' || d === null) return `${where} is not an object`;
    if (typeof d.target !== 'string' || typeof d.database !== 'string')
      return `${where} has no target/database`;
    if (typeof d.key !== 'string' || !d.key.startsWith('postgres/') || d.key.includes('..'))
      return `${where}.key ${JSON.stringify(d.key)} is not a dump in the postgres/ part`;
    if (typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || d.size < 0)
      return `${where}.size is not a byte count`;
    if (typeof d.sha256 !== 'string' || !SHA256_HEX.test(d.sha256)) return `${where}.sha256 is not a sha256`;
    if (!Array.isArray(d.tables)) return `${where}.tables is not a list`;
    for (const t of d.tables as Partial<TableStats>[])
      if (typeof t?.table !== 'string' || typeof t.rows !== 'number' || typeof t.checksum !== 'string')
        return `${where}.tables has an entry without table, rows and checksum`;
  }
  return undefined;
}

/** The major version in `SHOW server_version` or `pg_dump --version` text: 15 in "pg_dump (PostgreSQL) 15.19 (Debian …)". */
export function postgresMajor(version: string): number | undefined {
  const m = /(\d+)(?:\.\d+)*/.exec(version);
  return m ? Number(m[1]) : undefined;
}
