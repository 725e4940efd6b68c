#!/usr/bin/env bash
# Loopback PostgreSQL and Redis for the db test tier and the benchmarks.
#
#   scripts/services.sh up                 install (apt) when missing, start both, write .run/services.env
#   scripts/services.sh down               stop both (data is kept under .run/services/)
#   scripts/services.sh status             say what runs
#   scripts/services.sh restart-postgres   fast restart of PostgreSQL (failure tests)
#   scripts/services.sh stop-redis|start-redis
#
# Idempotent: `up` on running services only rewrites the env file. Robust to a
# killed earlier run: a pid file whose process is gone (or is not ours) is removed.
# PostgreSQL listens on 127.0.0.1:55432 (no Unix socket), Redis on 127.0.0.1:56379;
# both use generated passwords kept (mode 600) under .run/services/.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
run="$here/.run/services"
pg_port=${YUXI_PG_PORT:-55432}
redis_port=${YUXI_REDIS_PORT:-56379}
env_file="$here/.run/services.env"

log() { printf 'services: %s\n' "$*" >&2; }
die() { printf 'services: error: %s\n' "$*" >&2; exit 1; }

# A process counts as alive when it exists, is not a zombie (PID 1 here may not
# reap) and its command name matches: a reused pid is not ours.
proc_alive() { # proc_alive PID COMM-REGEX
  local pid=$1 stat
  [[ -n $pid && -r /proc/$pid/stat ]] || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ $stat =~ ^[0-9]+\ \((.*)\)\ ([A-Za-z]) ]] || return 1
  [[ ${BASH_REMATCH[2]} != Z && ${BASH_REMATCH[1]} =~ $2 ]]
}

new_secret() { head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

secret() { # secret NAME -> prints the stored secret, creating it once
  local f="$run/$1.secret"
  if [[ ! -s $f ]]; then (umask 077 && new_secret >"$f"); fi
  cat "$f"
}

# --- installation ----------------------------------------------------------
apt_install() {
  [[ $(id -u) -eq 0 ]] || die "missing $*; install them (as root: apt-get install $*)"
  log "installing $* from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

pg_bindir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [[ -x $d/initdb && -x $d/pg_ctl ]] && { echo "$d"; return 0; }
  done
  command -v pg_ctl >/dev/null && { dirname "$(readlink -f "$(command -v pg_ctl)")"; return 0; }
  return 1
}

ensure_installed() {
  local want=()
  pg_bindir >/dev/null || want+=(postgresql)
  command -v redis-server >/dev/null || want+=(redis-server)
  if ((${#want[@]})); then apt_install "${want[@]}"; fi
  PGBIN=$(pg_bindir) || die "PostgreSQL binaries not found after installing"
}

# --- PostgreSQL --------------------------------------------------------------
# initdb refuses root: as root the server runs as the `postgres` user, which must
# be able to reach its data directory. When the clone lives somewhere that user
# cannot traverse, the data goes under /var/lib/yuxi-k8s-services instead (one per clone;
# not under the cluster's /var/lib/yuxi-k8s, which `cluster down` may remove).
as_pg() { # from / : the postgres user may not be allowed into the current directory
  if [[ $(id -u) -eq 0 ]]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

pg_root() {
  if [[ $(id -u) -ne 0 ]]; then echo "$run/pg"; return; fi
  id postgres >/dev/null 2>&1 || die "no 'postgres' user; reinstall the postgresql package"
  mkdir -p "$run"
  chmod o+x "$here/.run" "$run" 2>/dev/null || true
  if runuser -u postgres -- test -x "$run"; then
    echo "$run/pg"
  else
    echo "/var/lib/yuxi-k8s-services/$(printf '%s' "$here" | sha1sum | cut -c1-12)/pg"
  fi
}

pg_ready() { "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$pg_port" -t 1; }

psql_admin() { # psql_admin DB SQL...
  local db=$1; shift
  PGPASSWORD=$(secret pg-superuser) "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 \
    -h 127.0.0.1 -p "$pg_port" -U postgres -d "$db" "$@"
}

clear_stale_postmaster_pid() {
  local pidfile=$PGROOT/data/postmaster.pid pid
  [[ -f $pidfile ]] || return 0
  pid=$(head -n1 "$pidfile" 2>/dev/null || true)
  if proc_alive "$pid" '^(postgres|postmaster)'; then
    return 0 # a live server of ours
  fi
  log "removing stale $pidfile (pid ${pid:-?} is gone)"
  rm -f "$pidfile"
}

pg_init() {
  [[ -f $PGROOT/data/PG_VERSION ]] && return 0
  log "initialising PostgreSQL data in $PGROOT/data"
  rm -rf "$PGROOT/data"
  mkdir -p "$PGROOT"
  local pwfile="$PGROOT/superuser.pw"
  (umask 077 && secret pg-superuser >"$pwfile")
  [[ $(id -u) -eq 0 ]] && chown -R postgres: "$PGROOT"
  as_pg "$PGBIN/initdb" -D "$PGROOT/data" -U postgres --pwfile="$pwfile" \
    --auth-host=scram-sha-256 --auth-local=peer -E UTF8 --locale=C.UTF-8 >"$PGROOT/initdb.log" 2>&1 ||
    { cat "$PGROOT/initdb.log" >&2; die "initdb failed (log: $PGROOT/initdb.log)"; }
  rm -f "$pwfile"
  cat >>"$PGROOT/data/postgresql.conf" <<EOF

# yuxi-k8s test services: loopback only, no Unix socket, room for the
# multi-process tests (each process holds a pool and a listener connection).
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = ''
max_connections = 300
password_encryption = 'scram-sha-256'
EOF
}

pg_start() {
  PGROOT=$(pg_root)
  pg_init
  clear_stale_postmaster_pid
  if ! pg_ready; then
    log "starting PostgreSQL on 127.0.0.1:$pg_port"
    as_pg "$PGBIN/pg_ctl" -D "$PGROOT/data" -l "$PGROOT/server.log" -w -t 60 start >/dev/null ||
      { tail -n 20 "$PGROOT/server.log" >&2 || true; die "PostgreSQL did not start (log: $PGROOT/server.log)"; }
  fi
  if ! psql_admin postgres -c 'select 1' >/dev/null 2>&1; then
    local pid
    pid=$(head -n1 "$PGROOT/data/postmaster.pid" 2>/dev/null || true)
    proc_alive "$pid" '^(postgres|postmaster)' ||
      die "something else answers on 127.0.0.1:$pg_port (not this clone's PostgreSQL); stop it or set YUXI_PG_PORT"
    # Our data directory, but made by an earlier checkout at the same path with other secrets
    # (the /var/lib fallback outlives a clone). Test data is disposable: start afresh.
    log "PostgreSQL data in $PGROOT was made with other credentials; re-initialising it"
    as_pg "$PGBIN/pg_ctl" -D "$PGROOT/data" -m immediate -w -t 60 stop >/dev/null || true
    rm -rf "$PGROOT/data"
    pg_init
    as_pg "$PGBIN/pg_ctl" -D "$PGROOT/data" -l "$PGROOT/server.log" -w -t 60 start >/dev/null ||
      die "PostgreSQL did not start (log: $PGROOT/server.log)"
    psql_admin postgres -c 'select 1' >/dev/null
  fi
  pg_ensure_test_db
}

pg_ensure_test_db() {
  local pw; pw=$(secret pg-test)
  psql_admin postgres <<EOF
SELECT format('CREATE ROLE yuxi_test LOGIN CREATEDB PASSWORD %L', '$pw')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'yuxi_test') \gexec
ALTER ROLE yuxi_test LOGIN CREATEDB PASSWORD '$pw';
SELECT 'CREATE DATABASE yuxi_test OWNER yuxi_test'
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'yuxi_test') \gexec
EOF
}

pg_stop() {
  PGROOT=$(pg_root)
  [[ -f $PGROOT/data/PG_VERSION ]] || return 0
  clear_stale_postmaster_pid
  if [[ -f $PGROOT/data/postmaster.pid ]]; then
    log "stopping PostgreSQL"
    as_pg "$PGBIN/pg_ctl" -D "$PGROOT/data" -m fast -w -t 60 stop >/dev/null
  fi
}

pg_restart() {
  PGROOT=$(pg_root)
  log "restarting PostgreSQL (fast)"
  as_pg "$PGBIN/pg_ctl" -D "$PGROOT/data" -l "$PGROOT/server.log" -m fast -w -t 60 restart >/dev/null
}

# --- Redis -------------------------------------------------------------------
redis_cli() { REDISCLI_AUTH=$(secret redis) redis-cli -h 127.0.0.1 -p "$redis_port" "$@"; }

redis_pid_alive() {
  local pidfile=$run/redis/redis.pid pid
  [[ -f $pidfile ]] || return 1
  pid=$(cat "$pidfile" 2>/dev/null || true)
  if proc_alive "$pid" '^redis-server'; then
    return 0
  fi
  log "removing stale $pidfile"
  rm -f "$pidfile"
  return 1
}

redis_ours_answers() { [[ $(redis_cli ping 2>/dev/null) == PONG ]]; } # our password: our server

# A redis-server on our port whose working directory is our run dir (possibly deleted) was
# started by an earlier checkout at this same path, with another password: it is ours to stop.
redis_kill_previous_checkout() {
  local pid cwd
  for pid in $(ss -ltnpH "sport = :$redis_port" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); do
    cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null || true)
    if [[ ${cwd% (deleted)} == "$run/redis" ]] && proc_alive "$pid" '^redis-server'; then
      log "stopping the Redis (pid $pid) left by an earlier checkout of this path"
      kill -9 "$pid" || true
      sleep 0.2
    fi
  done
}

redis_start() {
  mkdir -p "$run/redis"
  if redis_ours_answers; then
    redis_pid_alive || redis_cli info server 2>/dev/null | sed -n 's/^process_id:\([0-9]*\).*/\1/p' >"$run/redis/redis.pid"
    return 0
  fi
  redis_pid_alive && { log "Redis pid $(cat "$run/redis/redis.pid") does not answer; killing it"; kill -9 "$(cat "$run/redis/redis.pid")" || true; sleep 0.2; }
  redis_kill_previous_checkout
  rm -f "$run/redis/redis.pid"
  log "starting Redis on 127.0.0.1:$redis_port"
  redis-server --bind 127.0.0.1 --port "$redis_port" --daemonize yes \
    --pidfile "$run/redis/redis.pid" --dir "$run/redis" --logfile "$run/redis/redis.log" \
    --requirepass "$(secret redis)" --appendonly yes --save '' >/dev/null
  local i
  for i in $(seq 1 50); do
    redis_ours_answers && return 0
    sleep 0.1
  done
  tail -n 20 "$run/redis/redis.log" >&2 || true
  die "Redis did not answer on 127.0.0.1:$redis_port (something else on the port?)"
}

redis_stop() {
  if redis_ours_answers; then
    log "stopping Redis"
    redis_cli shutdown nosave >/dev/null 2>&1 || true
  elif redis_pid_alive; then
    log "stopping Redis (pid $(cat "$run/redis/redis.pid"), not answering)"
    kill "$(cat "$run/redis/redis.pid")" 2>/dev/null || true
  else
    return 0
  fi
  local i
  for i in $(seq 1 50); do
    if ! redis_ours_answers && ! redis_pid_alive 2>/dev/null; then rm -f "$run/redis/redis.pid"; return 0; fi
    sleep 0.1
  done
  die "Redis did not stop"
}

write_env() {
  local tmp="$env_file.tmp"
  local pw; pw=$(secret pg-test)
  (umask 077 && cat >"$tmp" <<EOF
# Written by scripts/services.sh up; source it before the db tests.
export YUXI_TEST_DATABASE_URL='postgresql+psycopg://yuxi_test:$pw@127.0.0.1:$pg_port/yuxi_test'
export YUXI_TEST_DATABASE_DSN='postgresql://yuxi_test:$pw@127.0.0.1:$pg_port/yuxi_test'
export YUXI_TEST_REDIS_URL='redis://:$(secret redis)@127.0.0.1:$redis_port/0'
export YUXI_TEST_SERVICES_SCRIPT='$here/scripts/services.sh'
EOF
  )
  mv -f "$tmp" "$env_file"
}

cmd=${1:-up}
mkdir -p "$run"
case $cmd in
  up)
    ensure_installed
    pg_start
    redis_start
    write_env
    log "up: PostgreSQL 127.0.0.1:$pg_port, Redis 127.0.0.1:$redis_port ($env_file)"
    ;;
  down)
    PGBIN=$(pg_bindir) || exit 0
    redis_stop
    pg_stop
    ;;
  status)
    PGBIN=$(pg_bindir) || die "PostgreSQL is not installed"
    if pg_ready; then echo "postgres: up (127.0.0.1:$pg_port)"; else echo "postgres: down"; fi
    if [[ $(redis_cli ping 2>/dev/null) == PONG ]]; then echo "redis: up (127.0.0.1:$redis_port)"; else echo "redis: down"; fi
    ;;
  restart-postgres) ensure_installed; pg_restart ;;
  stop-redis) redis_stop ;;
  start-redis) ensure_installed; redis_start ;;
  *) die "usage: $0 up|down|status|restart-postgres|stop-redis|start-redis" ;;
esac
