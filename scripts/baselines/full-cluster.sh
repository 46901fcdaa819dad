#!/usr/bin/env bash
# The runbook's full-cluster recovery as an operator's shell script would run it, for the
# benchmarks (src/bench/fullCluster.ts): its commands one after another on the same stack, from
# the backups scripts/baselines/nightly-cron.sh made — nothing verified, nothing moved aside.
#   Postgres first (source of truth) → Redis (fresh) → the object store from the backup → start
#   Controller, Dispatcher, Monitor, Temporal → running agents time out, the Monitor cleans up →
#   re-dispatch the in-progress tasks that were lost, and the pending ones (the queue was lost).
# Settings come from the environment: PGHOST PGPORT PGUSER, CONTROLLER_DB DISPATCHER_DB,
# REDIS_PORT, KOHAKKU_BUCKET, BACKUP_BUCKET, STAMP, WORK_DIR, SERVICECTL (the restart command,
# taking `restart <service>`), HEALTH_URLS (space-separated), GRACE_SECONDS, QUEUE_KEY,
# QUEUE_DEPTH_KEY, AGENT_KEY_PREFIX, and rclone's remotes `src` (Kohakku's S3) and `dst` (the
# backup S3) as RCLONE_CONFIG_* variables. STEP_TIMES (optional): a file each step appends
# "<step> <seconds>" to, for the benchmark's side-by-side of where the time went.
set -euo pipefail
read -r -a servicectl <<< "$SERVICECTL"
step_started=$(date +%s.%N)
step_done() {
  local now
  now=$(date +%s.%N)
  awk -v s="$1" -v a="$now" -v b="$step_started" 'BEGIN { printf "%s %.2f\n", s, a - b }' >> "${STEP_TIMES:-/dev/null}"
  step_started=$now
}

# 1. Postgres, each database from its dump.
for db in "$CONTROLLER_DB" "$DISPATCHER_DB"; do
  rclone copyto "dst:$BACKUP_BUCKET/cron/postgres/$STAMP/$db.dump" "$WORK_DIR/$db.dump"
  createdb "$db"
  pg_restore -j 2 -d "$db" "$WORK_DIR/$db.dump"
done
step_done postgres

# 2. Redis: its files are gone, it starts empty.
"${servicectl[@]}" restart redis
step_done redis

# 3. The object store, started again and filled from the backup mirror.
"${servicectl[@]}" restart objectstore
for prefix in briefs skills; do
  rclone sync "dst:$BACKUP_BUCKET/cron/objects/$prefix" "src:$KOHAKKU_BUCKET/$prefix" --transfers 32 --checkers 32 --fast-list
done
step_done objects

# 4. The services, then their health checks.
for service in controller dispatcher monitor temporal; do
  "${servicectl[@]}" restart "$service"
done
for url in $HEALTH_URLS; do
  for _ in $(seq 1 600); do
    curl -fsS -o /dev/null "$url" && break
    sleep 0.1
  done
done
step_done services

# 5. Running agents check back or time out.
sleep "$GRACE_SECONDS"
step_done grace

# 6. Re-dispatch: in-flight tasks whose agent has no key any more go back to pending, then the
#    queue is rebuilt from every pending task.
psql -d "$CONTROLLER_DB" -AtF ' ' -c "SELECT id, container FROM tasks_task WHERE status = 'running' ORDER BY id" > "$WORK_DIR/in-flight"
awk -v p="$AGENT_KEY_PREFIX" '{ print "EXISTS " p $2 }' "$WORK_DIR/in-flight" | redis-cli -p "$REDIS_PORT" > "$WORK_DIR/alive"
paste -d ' ' "$WORK_DIR/in-flight" "$WORK_DIR/alive" | awk '$3 == 0 { print $1 "\t" $2 }' > "$WORK_DIR/lost"
psql -d "$CONTROLLER_DB" -q -v ON_ERROR_STOP=1 <<SQL
CREATE TEMP TABLE lost (id bigint, container text);
\copy lost FROM '$WORK_DIR/lost'
UPDATE tasks_task t SET status = 'pending', container = NULL, progress = 0
  FROM lost WHERE t.id = lost.id AND t.status = 'running' AND t.container = lost.container;
SQL
psql -d "$CONTROLLER_DB" -At -c "SELECT id FROM tasks_task WHERE status = 'pending' ORDER BY id" > "$WORK_DIR/pending"
{
  echo "DEL $QUEUE_KEY"
  awk -v q="$QUEUE_KEY" '{ print "RPUSH " q " " $1 }' "$WORK_DIR/pending"
  echo "SET $QUEUE_DEPTH_KEY $(wc -l < "$WORK_DIR/pending")"
} | redis-cli -p "$REDIS_PORT" > /dev/null
step_done re-dispatch
