#!/usr/bin/env bash
# The runbook's nightly backup as cron would run it, for the benchmarks (src/bench/bench.ts): the
# three entries side by side, each writing into the backup S3 server with rclone, no verification.
#   pg_dump -Fc of each database to a dated dump; BGSAVE, wait until it finished, copy the RDB;
#   mirror kohakku/briefs and kohakku/skills to the backup bucket.
# Settings come from the environment: PGHOST PGPORT PGUSER, CONTROLLER_DB DISPATCHER_DB,
# REDIS_PORT REDIS_DATA_DIR, KOHAKKU_BUCKET, BACKUP_BUCKET, STAMP, WORK_DIR, and rclone's remotes
# `src` (Kohakku's S3) and `dst` (the backup S3) as RCLONE_CONFIG_* variables.
set -euo pipefail

postgres() {
  for db in "$CONTROLLER_DB" "$DISPATCHER_DB"; do
    pg_dump -Fc -d "$db" -f "$WORK_DIR/$db-$STAMP.dump"
    rclone copyto "$WORK_DIR/$db-$STAMP.dump" "dst:$BACKUP_BUCKET/cron/postgres/$STAMP/$db.dump"
  done
}

redis() {
  local waited=0 saves reply
  saves() { redis-cli -p "$REDIS_PORT" INFO persistence | sed -n 's/^rdb_saves:\([0-9]*\).*/\1/p'; }
  local before
  before="$(saves)"
  # SCHEDULE: during an AOF rewrite (agents write while this runs) the save is started right after
  # it instead of being refused. Done when the save counter moved and no save is in progress.
  reply="$(redis-cli -p "$REDIS_PORT" BGSAVE SCHEDULE)"
  case "$reply" in
    *"Background saving started"* | *"Background saving scheduled"*) ;;
    *) echo "BGSAVE refused: $reply" >&2; exit 1 ;;
  esac
  until [ "$(saves)" != "$before" ] && ! redis-cli -p "$REDIS_PORT" INFO persistence | grep -q '^rdb_bgsave_in_progress:1'; do
    sleep 0.05
    waited=$((waited + 1))
    [ "$waited" -lt 2400 ] || { echo "BGSAVE did not finish within 120 s" >&2; exit 1; }
  done
  redis-cli -p "$REDIS_PORT" INFO persistence | grep -q '^rdb_last_bgsave_status:ok' ||
    { echo "BGSAVE failed (rdb_last_bgsave_status is not ok)" >&2; exit 1; }
  rclone copyto "$REDIS_DATA_DIR/dump.rdb" "dst:$BACKUP_BUCKET/cron/redis/$STAMP/dump.rdb"
}

objects() {
  for prefix in briefs skills; do
    rclone sync "src:$KOHAKKU_BUCKET/$prefix" "dst:$BACKUP_BUCKET/cron/objects/$prefix" --transfers 32 --checkers 32 --fast-list
  done
}

postgres & p=$!
redis & r=$!
objects & o=$!
wait $p
wait $r
wait $o
