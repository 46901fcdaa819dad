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

export interface DatabaseBackup {
  target: PostgresTarget;
  database: string;
  key: string;
  size: number;
  sha256: string;
  tables: TableStats[];
}

export interface PostgresManifest {
  kind: 'postgres';
  formatVersion: 1;
  id: string;
  createdAt: string;
  serverVersion: string;
  pgDumpVersion: string;
  databases: DatabaseBackup[];
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

export interface ObjectIndexEntry {
  key: string;
  size: number;
  etag: string;
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
  copied: number;
  alreadyMirrored: number;
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
}
