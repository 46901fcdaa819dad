/**
 * What a restore onto a fresh server needs besides the dumps: the cluster's roles and
 * memberships, and each database's own properties (owner, encoding and locale, connection
 * limit, comment, `ALTER DATABASE … SET`, `ALTER ROLE … IN DATABASE … SET`, grants). Captured
 * by the backup as JSON in the Postgres manifest; put back by `ensurePostgresGlobals` (roles,
 * before any restore), `createDatabaseFor` (encoding, locale) and `applyDatabaseProperties`
 * (the rest, after pg_restore and before the comparison). Passwords are never read nor stored
 * (README, "Roles and passwords").
 */
import type { Client } from 'pg';
import { ErrorType, fail } from '../domain/errors';
import type { DatabaseBackup, DatabaseProperties, PostgresGlobals, RoleSnapshot } from '../domain/manifests';
import { shortTag } from '../infra/hashing';
import type { PostgresKit } from './postgresKit';

export interface GlobalsReport {
  createdRoles: string[];
  existingRoles: string[];
  membershipsAdded: string[];
  skipped: { role: string; reason: string }[];
  rolesWithoutPassword: string[];
}

const ident = (client: Client, name: string) => client.escapeIdentifier(name);
const literal = (client: Client, text: string) => client.escapeLiteral(text);

/** The server's version as a number: 150019 for 15.19 (its major is this / 10000). */
export async function serverVersionNum(client: Client): Promise<number> {
  const res = await client.query<{ v: string }>(
    `SELECT pg_catalog.current_setting('server_version_num') AS v`,
  );
  return Number(res.rows[0]!.v);
}

// ---------------------------------------------------------------- capture

/** Every role but the built-in `pg_*` ones, with their memberships. Reads pg_roles only (no passwords). */
export async function readGlobals(client: Client): Promise<PostgresGlobals> {
  const roles = await client.query<{
    name: string;
    superuser: boolean;
    inherit: boolean;
    createrole: boolean;
    createdb: boolean;
    canlogin: boolean;
    replication: boolean;
    bypassrls: boolean;
    connlimit: number;
    validuntil: string | null;
    comment: string | null;
    settings: string[] | null;
  }>(
    `SELECT r.rolname AS name, r.rolsuper AS superuser, r.rolinherit AS inherit,
            r.rolcreaterole AS createrole, r.rolcreatedb AS createdb, r.rolcanlogin AS canlogin,
            r.rolreplication AS replication, r.rolbypassrls AS bypassrls, r.rolconnlimit AS connlimit,
            CASE WHEN r.rolvaliduntil IS NULL THEN NULL
                 WHEN r.rolvaliduntil = 'infinity' THEN 'infinity'
                 ELSE to_char(r.rolvaliduntil AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') END AS validuntil,
            shobj_description(r.oid, 'pg_authid') AS comment, r.rolconfig AS settings
       FROM pg_roles r WHERE r.rolname !~ '^pg_' ORDER BY r.rolname`,
  );
  const memberships = await client.query<{ role: string; member: string; admin: boolean }>(
    `SELECT r.rolname AS role, m.rolname AS member, a.admin_option AS admin
       FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid JOIN pg_roles m ON m.oid = a.member
      WHERE m.rolname !~ '^pg_' ORDER BY 1, 2`,
  );
  return {
    roles: roles.rows.map((r): RoleSnapshot => ({
      name: r.name,
      superuser: r.superuser,
      inherit: r.inherit,
      createRole: r.createrole,
      createDb: r.createdb,
      canLogin: r.canlogin,
      replication: r.replication,
      bypassRls: r.bypassrls,
      connectionLimit: r.connlimit,
      validUntil: r.validuntil,
      comment: r.comment,
      settings: r.settings ?? [],
    })),
    memberships: memberships.rows.map((m) => ({ role: m.role, member: m.member, adminOption: m.admin })),
  };
}

/** What `CREATE DATABASE`, `ALTER DATABASE` and `GRANT … ON DATABASE` set for `database`. */
export async function readDatabaseProperties(client: Client, database: string): Promise<DatabaseProperties> {
  const pg15 = (await serverVersionNum(client)) >= 150000;
  const res = await client.query<{
    owner: string;
    encoding: string;
    collate: string;
    ctype: string;
    provider: string;
    icu: string | null;
    connlimit: number;
    comment: string | null;
    acl: string[] | null;
  }>(
    `SELECT pg_get_userbyid(d.datdba) AS owner, pg_encoding_to_char(d.encoding) AS encoding,
            d.datcollate AS collate, d.datctype AS ctype,
            ${pg15 ? 'd.datlocprovider::text' : `'c'`} AS provider, ${pg15 ? 'd.daticulocale' : 'NULL'} AS icu,
            d.datconnlimit AS connlimit, shobj_description(d.oid, 'pg_database') AS comment,
            d.datacl::text[] AS acl
       FROM pg_database d WHERE d.datname = $1`,
    [database],
  );
  const row = res.rows[0];
  if (!row) throw new Error(`database ${database} vanished while it was being backed up`);
  const settings = await client.query<{ role: string | null; setting: string }>(
    `SELECT r.rolname AS role, unnest(s.setconfig) AS setting
       FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
       LEFT JOIN pg_roles r ON r.oid = s.setrole
      WHERE d.datname = $1 ORDER BY r.rolname NULLS FIRST`,
    [database],
  );
  return {
    owner: row.owner,
    encoding: row.encoding,
    collate: row.collate,
    ctype: row.ctype,
    localeProvider: row.provider === 'i' ? 'icu' : 'libc',
    icuLocale: row.icu,
    connectionLimit: row.connlimit,
    comment: row.comment,
    settings: settings.rows.map((s) => ({ role: s.role, setting: s.setting })),
    acl: row.acl,
  };
}

// ---------------------------------------------------------------- databases

/**
 * Creates an empty database `name` to restore `entry` into: with the backup's encoding and
 * locale (and ICU provider) when the manifest has them, otherwise the server's defaults.
 */
export async function createDatabaseFor(client: Client, name: string, entry: DatabaseBackup): Promise<void> {
  const p = entry.properties;
  const clauses = ['TEMPLATE template0'];
  if (p) {
    clauses.push(
      `ENCODING ${literal(client, p.encoding)}`,
      `LC_COLLATE ${literal(client, p.collate)}`,
      `LC_CTYPE ${literal(client, p.ctype)}`,
    );
    if ((await serverVersionNum(client)) >= 150000) {
      clauses.push(`LOCALE_PROVIDER ${p.localeProvider}`);
      if (p.localeProvider === 'icu' && p.icuLocale)
        clauses.push(`ICU_LOCALE ${literal(client, p.icuLocale)}`);
    } else if (p.localeProvider === 'icu') {
      throw fail(
        ErrorType.InvalidInput,
        `${entry.database} was backed up with the ICU locale provider, which this server (before PostgreSQL 15) lacks: restore onto PostgreSQL 15 or newer`,
      );
    }
  }
  try {
    await client.query(`CREATE DATABASE ${ident(client, name)} ${clauses.join(' ')}`);
  } catch (err) {
    const message = (err as Error).message;
    if (p && /locale|encoding|collation/i.test(message)) {
      // Retryable on purpose: installing the locale on the server lets the recovery carry on.
      throw new Error(
        `cannot create ${name} like ${entry.database} in the backup (encoding ${p.encoding}, collate ${p.collate}, ctype ${p.ctype}, provider ${p.localeProvider}${p.icuLocale ? ` ${p.icuLocale}` : ''}): ${message}. ` +
          'Install that locale on the database server (e.g. locale-gen), then let the recovery retry.',
      );
    }
    throw err;
  }
}

/** Roles a database's properties name: its owner, role settings, grantees. */
export function rolesNamedBy(p: DatabaseProperties): string[] {
  const names = new Set<string>([p.owner]);
  for (const s of p.settings) if (s.role) names.add(s.role);
  for (const item of p.acl ?? []) {
    const a = parseAclItem(item);
    if (a.grantee) names.add(a.grantee);
  }
  return [...names];
}

/**
 * Refuses, before anything is restored, when a role the backup's database needs is missing
 * on this server. InvalidInput, not BackupCorrupt: the backup is fine (picking another would
 * not help); the server lacks roles, and ensurePostgresGlobals is the step that adds them.
 */
export async function requireRoles(client: Client, database: string, roles: string[]): Promise<void> {
  if (roles.length === 0) return;
  const res = await client.query<{ rolname: string }>(
    'SELECT rolname FROM pg_roles WHERE rolname = ANY($1)',
    [roles],
  );
  const present = new Set(res.rows.map((r) => r.rolname));
  const missing = roles.filter((r) => !present.has(r));
  if (missing.length > 0) throw missingRoles(database, missing);
}

export function missingRoles(database: string, roles: string[]) {
  return fail(
    ErrorType.InvalidInput,
    `${database} needs role(s) ${roles.map((r) => `"${r}"`).join(', ')}, which this server does not have: ` +
      'run ensurePostgresGlobals for this backup first (it creates the backup’s roles), or create them by hand.',
  );
}

/**
 * Gives the restored database `name` the backup's owner, connection limit, comment, settings
 * and grants. Runs after pg_restore (a setting like default_transaction_read_only must not
 * reach pg_restore's own sessions) and before the comparison.
 */
export async function applyDatabaseProperties(
  client: Client,
  name: string,
  entry: DatabaseBackup,
): Promise<void> {
  const p = entry.properties;
  if (!p) return;
  await requireRoles(client, entry.database, rolesNamedBy(p));
  const db = ident(client, name);
  await client.query(`ALTER DATABASE ${db} OWNER TO ${ident(client, p.owner)}`);
  await client.query(`ALTER DATABASE ${db} CONNECTION LIMIT ${Number(p.connectionLimit)}`);
  await client.query(
    `COMMENT ON DATABASE ${db} IS ${p.comment === null ? 'NULL' : literal(client, p.comment)}`,
  );
  for (const s of p.settings) {
    const set = setClause(client, s.setting);
    if (s.role) await client.query(`ALTER ROLE ${ident(client, s.role)} IN DATABASE ${db} ${set}`);
    else await client.query(`ALTER DATABASE ${db} ${set}`);
  }
  if (p.acl) {
    // An explicit ACL replaces the defaults (PUBLIC: CONNECT, TEMPORARY; owner: all).
    await client.query(`REVOKE ALL ON DATABASE ${db} FROM PUBLIC`);
    await client.query(`REVOKE ALL ON DATABASE ${db} FROM ${ident(client, p.owner)}`);
    for (const item of p.acl) {
      const a = parseAclItem(item);
      const grantee = a.grantee ? ident(client, a.grantee) : 'PUBLIC';
      const plain = a.privileges.filter((x) => !x.grantOption).map((x) => x.name);
      const withOption = a.privileges.filter((x) => x.grantOption).map((x) => x.name);
      if (plain.length) await client.query(`GRANT ${plain.join(', ')} ON DATABASE ${db} TO ${grantee}`);
      if (withOption.length)
        await client.query(
          `GRANT ${withOption.join(', ')} ON DATABASE ${db} TO ${grantee} WITH GRANT OPTION`,
        );
    }
  }
}

/** GUCs whose list values pg_dumpall splits and quotes element by element (GUC_LIST_QUOTE). */
const LIST_QUOTED = new Set([
  'search_path',
  'temp_tablespaces',
  'session_preload_libraries',
  'shared_preload_libraries',
  'local_preload_libraries',
  'unix_socket_directories',
]);

/** `name=value` as stored in setconfig → `SET "name" TO 'value'` (as pg_dumpall writes it). */
export function setClause(client: Client, setting: string): string {
  const eq = setting.indexOf('=');
  if (eq <= 0) throw fail(ErrorType.BackupCorrupt, `setting "${setting}" in the manifest is not name=value`);
  const name = setting.slice(0, eq);
  const value = setting.slice(eq + 1);
  if (LIST_QUOTED.has(name.toLowerCase())) {
    const items = splitGucList(value);
    return `SET ${ident(client, name)} TO ${items.length ? items.map((i) => literal(client, i)).join(', ') : "''"}`;
  }
  return `SET ${ident(client, name)} TO ${literal(client, value)}`;
}

/**
 * Reads a name starting at `text[start]`: double-quoted (`""` inside is one quote) or plain up
 * to `stop`. Returns the name and where reading stopped.
 */
function readName(text: string, start: number, stop: string): [name: string, next: number] {
  let i = start;
  let out = '';
  if (text[i] !== '"') {
    while (i < text.length && text[i] !== stop) out += text[i++];
    return [out, i];
  }
  i++;
  while (i < text.length) {
    if (text[i] === '"' && text[i + 1] === '"') {
      out += '"';
      i += 2;
    } else if (text[i] === '"') {
      return [out, i + 1];
    } else out += text[i++];
  }
  return [out, i];
}

/** `"$user", public` → [`$user`, `public`]: commas outside double quotes split, quotes removed. */
export function splitGucList(value: string): string[] {
  const items: string[] = [];
  let i = 0;
  while (i < value.length) {
    while (value[i] === ' ' || value[i] === ',') i++;
    if (i >= value.length) break;
    const quoted = value[i] === '"';
    const [item, next] = readName(value, i, ',');
    items.push(quoted ? item : item.trim());
    i = next;
  }
  return items;
}

const DATABASE_PRIVILEGES: Record<string, string> = { C: 'CREATE', T: 'TEMPORARY', c: 'CONNECT' };

/** aclitem text `grantee=privs/grantor` (grantee empty = PUBLIC; names may be double-quoted). */
export function parseAclItem(item: string): {
  grantee: string | null;
  privileges: { name: string; grantOption: boolean }[];
  grantor: string | null;
} {
  const [grantee, afterGrantee] = readName(item, 0, '=');
  let i = afterGrantee;
  if (item[i] !== '=')
    throw fail(ErrorType.BackupCorrupt, `database ACL item "${item}" in the manifest is unreadable`);
  i++;
  const privileges: { name: string; grantOption: boolean }[] = [];
  while (i < item.length && item[i] !== '/') {
    const letter = item[i++]!;
    const name = DATABASE_PRIVILEGES[letter];
    if (!name)
      throw fail(ErrorType.BackupCorrupt, `database ACL item "${item}" has unknown privilege "${letter}"`);
    const grantOption = item[i] === '*';
    if (grantOption) i++;
    privileges.push({ name, grantOption });
  }
  let grantor: string | null = null;
  if (item[i] === '/') {
    i++;
    grantor = readName(item, i, '\u0000')[0];
  }
  return { grantee: grantee === '' ? null : grantee, privileges, grantor };
}

// ---------------------------------------------------------------- roles

/** The durable mark on a role this recovery created: its comment, until cleanup. */
function createdMarkPrefix(recoveryId: string): string {
  return `kohakku-dr recovery ${shortTag(recoveryId)} created this role`;
}

function createdMark(recoveryId: string, backupId: string): string {
  return `${createdMarkPrefix(recoveryId)} from backup ${backupId}; cleanupPostgresGlobals removes this mark (completed) or the role (failed)`;
}

interface WorkerPowers {
  name: string;
  superuser: boolean;
  createRole: boolean;
  createDb: boolean;
  replication: boolean;
  bypassRls: boolean;
  version: number;
}

async function workerPowers(client: Client): Promise<WorkerPowers> {
  const res = await client.query<{
    name: string;
    superuser: boolean;
    createrole: boolean;
    createdb: boolean;
    replication: boolean;
    bypassrls: boolean;
  }>(
    `SELECT rolname AS name, rolsuper AS superuser, rolcreaterole AS createrole, rolcreatedb AS createdb,
            rolreplication AS replication, rolbypassrls AS bypassrls
       FROM pg_roles WHERE rolname = current_user`,
  );
  const r = res.rows[0]!;
  return {
    name: r.name,
    superuser: r.superuser,
    createRole: r.createrole,
    createDb: r.createdb,
    replication: r.replication,
    bypassRls: r.bypassrls,
    version: await serverVersionNum(client),
  };
}

/** The attributes of `role` this worker may grant, and the ones it must leave out (with why). */
function grantableAttributes(role: RoleSnapshot, worker: WorkerPowers): { clause: string; left: string[] } {
  const left: string[] = [];
  const may = (wanted: boolean, attribute: string, allowed: boolean): boolean => {
    if (wanted && !allowed) left.push(attribute);
    return wanted && allowed;
  };
  const su = worker.superuser;
  const pg16 = worker.version >= 160000;
  // PostgreSQL 15: only a superuser grants SUPERUSER, REPLICATION, BYPASSRLS. 16: a CREATEROLE
  // role may also grant CREATEDB, REPLICATION, BYPASSRLS it has itself, and CREATEDB only then.
  const parts = [
    may(role.superuser, 'SUPERUSER', su) ? 'SUPERUSER' : 'NOSUPERUSER',
    may(role.replication, 'REPLICATION', su || (pg16 && worker.replication))
      ? 'REPLICATION'
      : 'NOREPLICATION',
    may(role.bypassRls, 'BYPASSRLS', su || (pg16 && worker.bypassRls)) ? 'BYPASSRLS' : 'NOBYPASSRLS',
    may(role.createDb, 'CREATEDB', su || !pg16 || worker.createDb) ? 'CREATEDB' : 'NOCREATEDB',
    role.createRole ? 'CREATEROLE' : 'NOCREATEROLE',
    role.inherit ? 'INHERIT' : 'NOINHERIT',
    role.canLogin ? 'LOGIN' : 'NOLOGIN',
    `CONNECTION LIMIT ${Number(role.connectionLimit)}`,
  ];
  return { clause: parts.join(' '), left };
}

export function createPostgresGlobalsActivities(kit: PostgresKit) {
  const { admin, readManifest } = kit;

  async function manifestGlobals(backupId: string): Promise<PostgresGlobals | undefined> {
    const manifest = await readManifest(backupId);
    if (!manifest)
      throw fail(
        ErrorType.BackupNotFound,
        `backup ${backupId} not found in ${kit.store.location} (kohakku-dr backups lists them)`,
      );
    return manifest.globals;
  }

  /**
   * Creates the backup's roles this server lacks (an existing role is never altered), with the
   * attributes this worker may grant, their settings and the memberships of the created ones.
   * Each role is created, marked (its comment names this recovery) and configured in one
   * transaction, so a retry — also after a SIGKILLed worker — finds it whole or absent.
   */
  async function ensurePostgresGlobals(input: {
    backupId: string;
    recoveryId: string;
  }): Promise<GlobalsReport> {
    const globals = await manifestGlobals(input.backupId);
    const report: GlobalsReport = {
      createdRoles: [],
      existingRoles: [],
      membershipsAdded: [],
      skipped: [],
      rolesWithoutPassword: [],
    };
    if (!globals) return report; // a 0.1 manifest: nothing recorded, nothing to do
    const prefix = createdMarkPrefix(input.recoveryId);
    const mark = createdMark(input.recoveryId, input.backupId);
    return admin(async (c) => {
      const worker = await workerPowers(c);
      const present = async () =>
        new Map(
          (
            await c.query<{ name: string; comment: string | null }>(
              `SELECT rolname AS name, shobj_description(oid, 'pg_authid') AS comment FROM pg_roles`,
            )
          ).rows.map((r) => [r.name, r.comment]),
        );
      const before = await present();
      const ours = new Set<string>();
      for (const role of globals.roles) {
        if (before.has(role.name)) {
          if (before.get(role.name)?.startsWith(prefix))
            ours.add(role.name); // created by an earlier attempt
          else report.existingRoles.push(role.name);
          continue;
        }
        if (!worker.superuser && !worker.createRole) {
          report.skipped.push({
            role: role.name,
            reason: `not created: the worker's role ${worker.name} has neither SUPERUSER nor CREATEROLE; create it by hand`,
          });
          continue;
        }
        const { clause, left } = grantableAttributes(role, worker);
        const validUntil = role.validUntil ? ` VALID UNTIL ${c.escapeLiteral(role.validUntil)}` : '';
        const name = ident(c, role.name);
        await c.query('BEGIN');
        try {
          await c.query(`CREATE ROLE ${name} WITH ${clause}${validUntil}`);
          await c.query(`COMMENT ON ROLE ${name} IS ${c.escapeLiteral(mark)}`);
          for (const setting of role.settings) await c.query(`ALTER ROLE ${name} ${setClause(c, setting)}`);
          await c.query('COMMIT');
        } catch (err) {
          await c.query('ROLLBACK').catch(() => undefined);
          throw err;
        }
        ours.add(role.name);
        if (left.length)
          report.skipped.push({
            role: role.name,
            reason: `created without ${left.join(', ')}: only a superuser worker may grant ${left.length > 1 ? 'them' : 'it'}; grant by hand if needed`,
          });
      }
      for (const role of globals.roles) {
        if (!ours.has(role.name)) continue;
        report.createdRoles.push(role.name);
        if (role.canLogin) report.rolesWithoutPassword.push(role.name);
      }
      const now = await present();
      for (const m of globals.memberships) {
        const label = `${m.member} in ${m.role}${m.adminOption ? ' (admin)' : ''}`;
        if (!now.has(m.role) || !now.has(m.member)) {
          const absent = [m.role, m.member].filter((r) => !now.has(r)).join(', ');
          report.skipped.push({ role: m.member, reason: `membership ${label} not added: ${absent} missing` });
          continue;
        }
        const has = await c.query(
          `SELECT 1 FROM pg_auth_members a
             WHERE a.roleid = (SELECT oid FROM pg_roles WHERE rolname = $1)
               AND a.member = (SELECT oid FROM pg_roles WHERE rolname = $2)`,
          [m.role, m.member],
        );
        if (has.rowCount) continue;
        if (!ours.has(m.member)) {
          // Granting a role to an existing member would change what that existing role may do.
          report.skipped.push({
            role: m.member,
            reason: `membership ${label} not added: ${m.member} existed already, and existing roles are never changed; GRANT it by hand if wanted`,
          });
          continue;
        }
        await c.query(
          `GRANT ${ident(c, m.role)} TO ${ident(c, m.member)}${m.adminOption ? ' WITH ADMIN OPTION' : ''}`,
        );
        report.membershipsAdded.push(label);
      }
      return report;
    });
  }

  /**
   * After the recovery: `failed` drops the roles this recovery created (a role that owns or
   * holds something by now is kept and said why); `completed` turns their marks back into the
   * backup's comments. Safe to repeat.
   */
  async function cleanupPostgresGlobals(input: {
    recoveryId: string;
    backupId: string;
    outcome: 'completed' | 'failed';
  }): Promise<{ droppedRoles: string[]; kept: { role: string; reason: string }[] }> {
    const prefix = createdMarkPrefix(input.recoveryId);
    const result = { droppedRoles: [] as string[], kept: [] as { role: string; reason: string }[] };
    const marked = await admin(async (c) =>
      (
        await c.query<{ name: string }>(
          `SELECT rolname AS name FROM pg_roles
              WHERE left(coalesce(shobj_description(oid, 'pg_authid'), ''), $2) = $1 ORDER BY 1`,
          [prefix, prefix.length],
        )
      ).rows.map((r) => r.name),
    );
    if (marked.length === 0) return result;
    if (input.outcome === 'completed') {
      const globals = (await readManifest(input.backupId))?.globals;
      await admin(async (c) => {
        for (const name of marked) {
          const comment = globals?.roles.find((r) => r.name === name)?.comment ?? null;
          await c.query(
            `COMMENT ON ROLE ${ident(c, name)} IS ${comment === null ? 'NULL' : c.escapeLiteral(comment)}`,
          );
        }
      });
      return result;
    }
    await admin(async (c) => {
      for (const name of marked) {
        try {
          await c.query(`DROP ROLE ${ident(c, name)}`);
          result.droppedRoles.push(name);
        } catch (err) {
          const e = err as Error & { detail?: string };
          result.kept.push({
            role: name,
            reason: `${e.message}${e.detail ? ` (${e.detail.replace(/\n/g, '; ')})` : ''}; it still carries this recovery's mark in its comment`,
          });
        }
      }
    });
    return result;
  }

  return { ensurePostgresGlobals, cleanupPostgresGlobals };
}
