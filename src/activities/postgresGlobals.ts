/**
 * The database-level facts a restore onto a fresh server needs besides the dump: how a database
 * is created (encoding, locale) and its properties. Today only the creation itself; roles,
 * owners, settings and grants follow here.
 */
import type { Client } from 'pg';
import type { DatabaseBackup } from '../domain/manifests';

/** Creates an empty database `name` to restore `entry` into. */
export async function createDatabaseFor(client: Client, name: string, _entry: DatabaseBackup): Promise<void> {
  await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)} TEMPLATE template0`);
}
