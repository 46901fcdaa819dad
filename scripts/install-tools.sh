#!/usr/bin/env bash
# Installs every real tool kohakku-dr's stack, tests and drill need, idempotently:
#  - Temporal CLI, MinIO and VersityGW, built with `go install` into $KOHAKKU_DR_TOOLS/<name>-<version>/bin
#  - tools/compose-check (compose-go: docker-compose.yml validated without a Docker engine), built
#    into $KOHAKKU_DR_TOOLS/compose-check-<hash of its sources>/bin
#  - PostgreSQL 15 server and client tools, redis-server/redis-cli/redis-check-aof, openssl, pgbackrest, chromium (the UI test) and rclone (a benchmark baseline) from Debian, when missing
#  - the npm dependencies (npm ci), when node_modules does not match package-lock.json
# Prints nothing but progress; writes $KOHAKKU_DR_TOOLS/paths.env for the other scripts.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
# shellcheck source=tool-versions.sh
source "$here/tool-versions.sh"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
mkdir -p "$KOHAKKU_DR_TOOLS"

log() { printf '[install-tools] %s\n' "$*" >&2; }

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# PostgreSQL 15: server binaries (initdb, pg_ctl, postgres) and client tools (pg_dump, pg_restore, psql).
PG_BIN_DIR=/usr/lib/postgresql/15/bin
if [ ! -x "$PG_BIN_DIR/initdb" ] || [ ! -x "$PG_BIN_DIR/pg_restore" ]; then
  apt_install postgresql-15 postgresql-client-15
  # Debian's package starts a cluster of its own on install; the machine's services are not ours to run.
fi
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null || ! command -v redis-check-aof >/dev/null; then
  apt_install redis-server redis-tools
fi
# openssl: the embedded stack generates a CA and a certificate for its TLS backup store.
if ! command -v openssl >/dev/null; then
  apt_install openssl
fi
# pgBackRest: continuous WAL archiving, base backups and point-in-time restores.
if ! command -v pgbackrest >/dev/null; then
  apt_install pgbackrest
fi
# Chromium: ui.test.ts opens the Temporal UI in it (headless, driven by playwright-core).
if ! command -v chromium >/dev/null; then
  apt_install chromium
fi
# rclone: the object mirror's baseline in the benchmarks (scripts/bench), never used by the product.
if ! command -v rclone >/dev/null; then
  apt_install rclone
fi

# go install into a version-keyed folder; a half-built install never looks finished (temp + rename).
go_tool() {
  local name="$1" pkg="$2" version="$3"
  local dest="$KOHAKKU_DR_TOOLS/$name-$version/bin"
  if [ -x "$dest/$name" ]; then
    log "$name $version: cached"
  else
    log "$name $version: building with go install (a few minutes on a cold cache)"
    local tmp
    tmp="$(mktemp -d "$KOHAKKU_DR_TOOLS/.build-$name-XXXXXX")"
    GOBIN="$tmp" go install "$pkg@$version"
    mkdir -p "$(dirname "$dest")"
    rm -rf "$dest"
    mv "$tmp" "$dest"
  fi
  printf '%s\n' "$dest/$name"
}

if ! command -v go >/dev/null; then
  log "go is required to build the Temporal CLI and MinIO (Debian: golang-go, or /usr/local/go/bin on PATH)"
  exit 1
fi
# The builds are independent; run them side by side on a cold cache.
go_tool temporal "$TEMPORAL_PKG" "$TEMPORAL_VERSION" >"$KOHAKKU_DR_TOOLS/.temporal.path" &
p1=$!
go_tool minio "$MINIO_PKG" "$MINIO_VERSION" >"$KOHAKKU_DR_TOOLS/.minio.path" &
p2=$!
go_tool versitygw "$VERSITYGW_PKG" "$VERSITYGW_VERSION" >"$KOHAKKU_DR_TOOLS/.versitygw.path" &
p3=$!
# This repository's own Go tool, keyed by a hash of its sources (go.mod, go.sum, main.go).
compose_check() {
  local src="$repo/tools/compose-check" version dest tmp
  version="$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-12)"
  dest="$KOHAKKU_DR_TOOLS/compose-check-$version/bin"
  if [ -x "$dest/compose-check" ]; then
    log "compose-check $version: cached"
  else
    log "compose-check $version: building (go build)"
    tmp="$(mktemp -d "$KOHAKKU_DR_TOOLS/.build-compose-check-XXXXXX")"
    (cd "$src" && go build -o "$tmp/compose-check" .)
    mkdir -p "$(dirname "$dest")"
    rm -rf "$dest"
    mv "$tmp" "$dest"
  fi
  printf '%s\n' "$dest/compose-check"
}
compose_check >"$KOHAKKU_DR_TOOLS/.compose-check.path" &
p4=$!
wait $p1 && wait $p2 && wait $p3 && wait $p4

cat >"$KOHAKKU_DR_TOOLS/paths.env" <<ENV
KOHAKKU_DR_TEMPORAL_BIN=$(cat "$KOHAKKU_DR_TOOLS/.temporal.path")
KOHAKKU_DR_MINIO_BIN=$(cat "$KOHAKKU_DR_TOOLS/.minio.path")
KOHAKKU_DR_VERSITYGW_BIN=$(cat "$KOHAKKU_DR_TOOLS/.versitygw.path")
KOHAKKU_DR_PG_BIN_DIR=$PG_BIN_DIR
KOHAKKU_DR_REDIS_SERVER_BIN=$(command -v redis-server)
KOHAKKU_DR_REDIS_CLI_BIN=$(command -v redis-cli)
KOHAKKU_DR_REDIS_CHECK_AOF_BIN=$(command -v redis-check-aof)
KOHAKKU_DR_COMPOSE_CHECK_BIN=$(cat "$KOHAKKU_DR_TOOLS/.compose-check.path")
ENV

# npm dependencies, only when the lock file changed since the last install.
cd "$repo"
if ! cmp -s package-lock.json node_modules/.kohakku-dr-lock 2>/dev/null; then
  log "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.kohakku-dr-lock
fi
log "build (tsc)"
npm run --silent build
log "ready: tools in $KOHAKKU_DR_TOOLS"
