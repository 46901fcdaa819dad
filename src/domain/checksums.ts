/**
 * Table checksums hash each row's binary values where PostgreSQL can (`hash_record_extended`,
 * which no setting changes), else each row's text (`md5(t::text)`), and a row's text depends on session
 * settings: a timestamptz prints in the session's TimeZone, bytea in bytea_output, floats with
 * extra_float_digits, and so on. Every session that computes or checks a checksum pins these
 * first (overriding PGOPTIONS, ALTER DATABASE/ROLE SET and the server's defaults), so a backup
 * taken in UTC verifies on a server in Asia/Tokyo.
 */
export const CHECKSUM_SESSION_SETTINGS: readonly (readonly [name: string, value: string])[] = [
  ['TimeZone', 'UTC'],
  ['DateStyle', 'ISO, YMD'],
  ['IntervalStyle', 'postgres'],
  ['extra_float_digits', '3'],
  ['bytea_output', 'hex'],
  ['lc_monetary', 'C'],
  ['xmlbinary', 'base64'],
  ['search_path', 'pg_catalog'],
  // regclass, regtype, regproc… print through quote_identifier, which quotes every name when
  // this is on (and so would format('%I') in the table list, renaming every table).
  ['quote_all_identifiers', 'off'],
];

/** The settings as `SET` statements (`SET LOCAL` inside a transaction that must not leak them). */
export function pinChecksumSettingsSql(local = false): string {
  return CHECKSUM_SESSION_SETTINGS.map(
    ([name, value]) => `SET ${local ? 'LOCAL ' : ''}${name} = '${value.replace(/'/g, "''")}';`,
  ).join('\n');
}

/**
 * Manifests say how their checksums were computed: 3 = each table by PostgreSQL's row hash where
 * its column types allow, else by its rows' text with the pinned settings above
 * (activities/postgresKit.ts, TableChecksumMethod); 2 = every table by its rows' text, pinned;
 * absent (manifests written before 0.2) = by text, with whatever the session had.
 */
export const CHECKSUM_VERSION = 3;
