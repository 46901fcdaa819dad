/**
 * Backups off the failure domain: the backup store must not live on the S3 server that holds
 * Kohakku's bucket (losing that server would lose the backups meant to bring it back), and the
 * replica must be neither of the two. "The same server" is the same resolved address and port,
 * so `localhost:9000` and `127.0.0.1:9000` are caught alike. The worker runs this once at start
 * and refuses to start with one line naming the setting.
 */
import { lookup } from 'node:dns/promises';
import * as path from 'node:path';
import { ConfigError, type Config, type S3Connection, type StoreConfig } from '../config';

/** Every address:port the endpoint resolves to (the name itself when it does not resolve). */
async function addressesOf(s3: S3Connection): Promise<Set<string>> {
  try {
    const found = await lookup(s3.endPoint, { all: true });
    return new Set(found.map((a) => `${a.address}:${s3.port}`));
  } catch {
    return new Set([`${s3.endPoint.toLowerCase()}:${s3.port}`]);
  }
}

async function sameServer(a: S3Connection, b: S3Connection): Promise<boolean> {
  const [x, y] = await Promise.all([addressesOf(a), addressesOf(b)]);
  return [...x].some((addr) => y.has(addr));
}

async function samePlace(a: StoreConfig, b: StoreConfig): Promise<boolean> {
  if (a.kind === 'dir' && b.kind === 'dir') {
    const [x, y] = [path.resolve(a.dir), path.resolve(b.dir)];
    return x === y || x.startsWith(y + path.sep) || y.startsWith(x + path.sep);
  }
  return a.kind === 's3' && b.kind === 's3' && (await sameServer(a.s3, b.s3));
}

/** Throws ConfigError when a backup store shares a failure domain it must not. */
export async function checkFailureDomains(config: Config): Promise<void> {
  const kohakku = config.s3;
  const primary = config.backupStore;
  if (primary.kind === 's3' && !config.backupStoreOnKohakkuS3 && (await sameServer(primary.s3, kohakku))) {
    throw new ConfigError(
      primary.setting,
      `the backup store ${primary.s3.url} is the same S3 server as Kohakku's bucket (S3_ENDPOINT ${kohakku.url}): losing that server would lose the backups too. Give the backups their own server, or accept the risk with BACKUP_STORE_ON_KOHAKKU_S3=true (unsafe)`,
    );
  }
  const replica = config.replicaStore;
  if (!replica) return;
  if (replica.kind === 's3' && (await sameServer(replica.s3, kohakku))) {
    throw new ConfigError(
      replica.setting,
      `the replica ${replica.s3.url} is the same S3 server as Kohakku's bucket (S3_ENDPOINT ${kohakku.url}): a second copy must live elsewhere`,
    );
  }
  if (await samePlace(replica, primary)) {
    throw new ConfigError(
      replica.setting,
      `the replica is in the same place as the primary backup store (${primary.kind === 's3' ? primary.s3.url : primary.dir}): a second copy must live elsewhere`,
    );
  }
}
