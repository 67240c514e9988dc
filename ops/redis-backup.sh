#!/usr/bin/env bash
# Backs up and restores the service's Redis through a connection, nothing else: the same script runs
# in the compose file's `backup` container (ops/deploy.sh backup|restore) and against the native
# Redis of the drills in make test.
#
#   redis-backup.sh backup DIR [KEEP]   a snapshot as DIR/redis-<UTC time>.rdb, its .sha256, checked
#                                       with redis-check-rdb; only the newest KEEP (7) are kept
#   redis-backup.sh verify FILE         the checksum and redis-check-rdb
#   redis-backup.sh restore FILE        verify, then make Redis hold exactly FILE's data
#
# The connection: REDIS_HOST (127.0.0.1), REDIS_PORT (6379), REDISCLI_AUTH (the password, read by
# redis-cli itself, so it never shows in a process list), REDIS_USER (an ACL user; it needs the
# admin commands). RESTORE_ANNOUNCE_HOST: the address at which that Redis reaches this machine
# during a restore (default: 127.0.0.1 for a local Redis, else this host's first address).
#
# Backup: redis-cli --rdb has the server fork and write a point-in-time RDB snapshot, as BGSAVE
# does, and streams it here; it returns once the whole file has arrived. Restore: a temporary
# redis-server loads FILE, the service's Redis replicates it in full (replacing every database),
# is made a primary again, and rewrites its append-only file from the restored data. Stop the
# writers (API, workers) first: ops/deploy.sh restore does.
set -euo pipefail

readonly HOST=${REDIS_HOST:-127.0.0.1}
readonly PORT=${REDIS_PORT:-6379}
readonly TIMEOUT=${RESTORE_TIMEOUT:-120}
work="" source_pid="" previous_auth=""

die() {
  echo "redis-backup: error: $*" >&2
  exit 1
}

say() {
  echo "redis-backup: $*"
}

cli() {
  local user=()
  [[ -n ${REDIS_USER:-} ]] && user=(--user "$REDIS_USER")
  redis-cli -h "$HOST" -p "$PORT" "${user[@]}" --no-auth-warning "$@"
}

# One field of INFO (e.g. `info_field persistence aof_enabled`), from the service's Redis.
info_field() {
  cli INFO "$1" | tr -d '\r' | sed -n "s/^$2://p"
}

check_rdb() {
  local file=$1 report
  if ! report=$(redis-check-rdb "$file" 2>&1); then
    echo "$report" >&2
    die "$file is not a sound RDB file (redis-check-rdb failed)"
  fi
  grep -q 'RDB looks OK' <<<"$report" || die "redis-check-rdb did not find $file OK: $report"
}

cmd_backup() {
  local dir=${1:?usage: redis-backup.sh backup DIR [KEEP]} keep=${2:-7}
  [[ $keep =~ ^[1-9][0-9]*$ ]] || die "KEEP must be a positive number, got '$keep'"
  [[ -d $dir && -w $dir ]] || die "backup directory $dir does not exist or is not writable"
  [[ $(cli PING 2>&1) == PONG ]] || die "Redis at $HOST:$PORT does not answer PING: $(cli PING 2>&1)"
  local name tmp
  name="redis-$(date -u +%Y%m%dT%H%M%SZ).rdb"
  tmp="$dir/.$name.partial"
  trap 'rm -f "$tmp"' EXIT
  cli --rdb "$tmp" >/dev/null 2>&1 || die "the snapshot from $HOST:$PORT failed (redis-cli --rdb)"
  check_rdb "$tmp"
  mv "$tmp" "$dir/$name"
  (cd "$dir" && sha256sum "$name" >"$name.sha256")
  trap - EXIT
  say "backup $dir/$name ($(stat -c %s "$dir/$name") bytes, sha256 $(cut -d' ' -f1 "$dir/$name.sha256"))"
  # Retention: the newest KEEP snapshots (names sort by time) and their checksums.
  local old
  while IFS= read -r old; do
    rm -f "$old" "$old.sha256"
    say "removed old backup $old"
  done < <(find "$dir" -maxdepth 1 -name 'redis-*.rdb' | sort | head -n "-$keep")
}

cmd_verify() {
  local file=${1:?usage: redis-backup.sh verify FILE}
  [[ -f $file ]] || die "no such backup: $file"
  [[ -f $file.sha256 ]] || die "no checksum beside the backup: $file.sha256"
  (cd "$(dirname "$file")" && sha256sum --quiet --check "$(basename "$file").sha256") \
    || die "checksum mismatch: $file is not the file that was backed up"
  check_rdb "$file"
  say "verified $file"
}

# Keys per database, as `db0:keys=12 db3:keys=1`, from INFO keyspace of redis-cli "$@".
keyspace() {
  "$@" INFO keyspace | tr -d '\r' | sed -n 's/^\(db[0-9]*\):keys=\([0-9]*\).*/\1:keys=\2/p' | paste -sd' ' -
}

cmd_restore() {
  local file=${1:?usage: redis-backup.sh restore FILE}
  cmd_verify "$file"
  file=$(cd "$(dirname "$file")" && pwd)/$(basename "$file")
  [[ $(cli PING 2>&1) == PONG ]] || die "Redis at $HOST:$PORT does not answer PING: $(cli PING 2>&1)"
  local clients
  clients=$(info_field clients connected_clients)
  ((clients <= 2)) || say "warning: $((clients - 1)) other client(s) connected; writes they make now are lost"

  local announce=${RESTORE_ANNOUNCE_HOST:-}
  if [[ -z $announce ]]; then
    case $HOST in
      127.* | localhost | ::1) announce=127.0.0.1 ;;
      *) announce=$(hostname -i | awk '{print $1}') ;;
    esac
  fi
  # Globals, not locals: the EXIT trap runs after this function has returned.
  work=$(mktemp -d)
  password=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
  port=$((30000 + RANDOM % 20000))
  ln -s "$file" "$work/dump.rdb"
  # Whatever happens from here on, the service's Redis ends as a primary with its master password.
  previous_auth=$(cli CONFIG GET masterauth | sed -n 2p)
  cleanup() {
    cli REPLICAOF NO ONE >/dev/null 2>&1 || true
    cli CONFIG SET masterauth "$previous_auth" >/dev/null 2>&1 || true
    if [[ -n $source_pid ]]; then
      kill "$source_pid" 2>/dev/null || true
      wait "$source_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
  }
  trap cleanup EXIT

  redis-server --bind "$announce" --port "$port" --dir "$work" --dbfilename dump.rdb --requirepass "$password" \
    --appendonly no --save "" --repl-diskless-sync yes --repl-diskless-sync-delay 0 \
    --logfile "$work/source.log" --daemonize no &
  source_pid=$!
  local source=(env REDISCLI_AUTH="$password" redis-cli -h "$announce" -p "$port" --no-auth-warning)
  local waited=0
  until [[ $("${source[@]}" PING 2>/dev/null) == PONG ]]; do
    kill -0 "$source_pid" 2>/dev/null || die "the temporary server for $file did not start: $(tail -n 5 "$work/source.log")"
    ((waited++ < TIMEOUT * 10)) || die "the temporary server did not load $file within ${TIMEOUT}s"
    sleep 0.1
  done
  local expected
  expected=$(keyspace "${source[@]}")
  say "restoring $file (${expected:-no keys}) into $HOST:$PORT"

  cli CONFIG SET masterauth "$password" >/dev/null
  cli REPLICAOF "$announce" "$port" >/dev/null || die "REPLICAOF was refused by $HOST:$PORT"
  waited=0
  until [[ $(info_field replication master_link_status) == up && $(info_field replication master_sync_in_progress) == 0 ]]; do
    ((waited++ < TIMEOUT * 10)) || die "Redis did not copy the backup within ${TIMEOUT}s (master_link_status: $(info_field replication master_link_status))"
    sleep 0.1
  done
  cli REPLICAOF NO ONE >/dev/null
  cli CONFIG SET masterauth "$previous_auth" >/dev/null

  local restored
  restored=$(keyspace cli)
  [[ $restored == "$expected" ]] || die "the restored keys ($restored) differ from the backup's ($expected)"
  if [[ $(info_field persistence aof_enabled) == 1 ]]; then
    # The append-only file is rewritten from the restored data; wait for it, so a restart keeps it.
    waited=0
    while [[ $(info_field persistence aof_rewrite_in_progress) != 0 || $(info_field persistence aof_rewrite_scheduled) != 0 ]]; do
      ((waited++ < TIMEOUT * 10)) || die "the append-only file was not rewritten within ${TIMEOUT}s"
      sleep 0.1
    done
    [[ $(info_field persistence aof_last_bgrewrite_status) == ok ]] || die "rewriting the append-only file failed: see the Redis log"
  fi
  say "restored $file: ${restored:-no keys}"
}

usage() {
  sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
}

case ${1:-} in
  backup) cmd_backup "${@:2}" ;;
  verify) cmd_verify "${@:2}" ;;
  restore) cmd_restore "${@:2}" ;;
  help | -h | --help) usage ;;
  *)
    usage >&2
    exit 2
    ;;
esac
