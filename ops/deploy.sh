#!/usr/bin/env bash
# Deploys and runs the production stack (docker-compose.prod.yml) on this server. See ops/RUNBOOK.md.
#
#   ops/deploy.sh deploy          check, build images tagged with the git commit, back up, roll out
#                                 with the API serving throughout, verify; roll back if anything fails
#   ops/deploy.sh rollback        return to the previous image tag, and verify
#   ops/deploy.sh status          containers, their health, the running tag, readiness
#   ops/deploy.sh scale N         run N workers
#   ops/deploy.sh backup          a Redis snapshot in BACKUP_DIR (checksum, check, retention)
#   ops/deploy.sh restore FILE    verify FILE, stop the writers, restore, restart, verify
#   ops/deploy.sh logs [SERVICE]  follow the logs (of one service)
#   ops/deploy.sh help            this text
#
# Settings come from .env (mode 600; see .env.example) and the environment: BACKUP_DIR, BACKUP_KEEP,
# READY_TIMEOUT, BASE_URL (https://DOMAIN), RELEASE_TAG (deploy another tag than the commit's),
# MIN_FREE_MEMORY_MB (300), MIN_FREE_DISK_MB (2048).
#
# The rollout's steps go through a driver: Docker Compose, or the program DEPLOY_DRIVER names (the
# native drills in make test run this script's logic on processes instead of containers).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
readonly ROOT
readonly ENV_FILE=${ENV_FILE:-$ROOT/.env}
readonly STATE_DIR=${DEPLOY_STATE_DIR:-$ROOT/var/deploy}
readonly COMPOSE_FILE=$ROOT/docker-compose.prod.yml
#: .env variables that must be set (and not left at CHANGE_ME) for a deploy (GROQ_API_KEY unless
#: LLM_PROVIDER=offline).
readonly REQUIRED=(SECRET_KEY GROQ_API_KEY REDIS_PASSWORD DOMAIN ACME_EMAIL FLOWER_BASIC_AUTH GRAFANA_ADMIN_PASSWORD ALERTMANAGER_WEBHOOK_URL)

say() { echo "deploy: $*"; }
die() {
  echo "deploy: error: $*" >&2
  exit 1
}

usage() {
  sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

# --- .env -------------------------------------------------------------------------------------

# The value of KEY in .env (the last assignment), or the environment's, or empty.
env_value() {
  local key=$1 line value=""
  if [[ -f $ENV_FILE ]]; then
    while IFS= read -r line || [[ -n $line ]]; do
      [[ $line == "$key="* ]] && value=${line#"$key="}
    done <"$ENV_FILE"
  fi
  if [[ -z $value && -n ${!key:-} ]]; then
    value=${!key}
  fi
  printf '%s' "$value"
}

check_env() {
  [[ -f $ENV_FILE ]] || die "$ENV_FILE is missing: cp .env.example .env, fill it in, chmod 600 .env"
  local mode
  mode=$(stat -c %a "$ENV_FILE")
  [[ $mode == 600 || $mode == 400 ]] || die "$ENV_FILE has mode $mode: it holds secrets, run chmod 600 $ENV_FILE"
  local problems=() name value
  for name in "${REQUIRED[@]}"; do
    # The offline generator needs no Groq key.
    [[ $name == GROQ_API_KEY && $(env_value LLM_PROVIDER) == offline ]] && continue
    value=$(env_value "$name")
    if [[ -z $value ]]; then
      problems+=("$name is not set")
    elif [[ $value == *CHANGE_ME* ]]; then
      problems+=("$name still holds a CHANGE_ME placeholder")
    fi
  done
  value=$(env_value REDIS_PASSWORD)
  [[ -z $value || $value =~ ^[A-Za-z0-9]+$ ]] || problems+=("REDIS_PASSWORD must be letters and digits only (it goes into REDIS_URL)")
  value=$(env_value FLOWER_BASIC_AUTH)
  [[ -z $value || ,$value, == *,prometheus:* ]] || problems+=("FLOWER_BASIC_AUTH must hold a prometheus:<password> entry (Prometheus scrapes Flower)")
  if ((${#problems[@]})); then
    printf 'deploy: error: %s\n' "${problems[@]}" >&2
    die "fix $ENV_FILE (see .env.example)"
  fi
}

check_host() {
  local min_memory=${MIN_FREE_MEMORY_MB:-300} min_disk=${MIN_FREE_DISK_MB:-2048} memory disk
  memory=$(awk '/^MemAvailable:/ {print int($2 / 1024)}' /proc/meminfo)
  ((memory >= min_memory)) || die "only ${memory} MB of memory available, ${min_memory} MB needed (a rollout runs old and new containers side by side)"
  disk=$(df -Pm "$ROOT" | awk 'NR == 2 {print $4}')
  ((disk >= min_disk)) || die "only ${disk} MB free on the disk of $ROOT, ${min_disk} MB needed (images, backups)"
  say "host: ${memory} MB memory available, ${disk} MB disk free"
}

backup_dir() {
  local dir
  dir=$(env_value BACKUP_DIR)
  dir=${dir:-$ROOT/var/backups}
  [[ $dir == /* ]] || dir=$ROOT/$dir
  printf '%s' "$dir"
}

base_url() {
  local url=${BASE_URL:-}
  [[ -n $url ]] || url="https://$(env_value DOMAIN)"
  printf '%s' "$url"
}

# --- the Docker Compose driver ----------------------------------------------------------------

compose() {
  docker compose --project-directory "$ROOT" -f "$COMPOSE_FILE" --env-file "$ENV_FILE" "$@"
}

version_at_least() { # version_at_least HAVE WANT
  [[ $(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1) == "$2" ]]
}

compose_prereqs() {
  command -v docker >/dev/null || die "docker is not installed (ops/RUNBOOK.md, Server preparation)"
  local engine plugin
  engine=$(docker version --format '{{.Server.Version}}' 2>/dev/null) || die "cannot talk to the Docker daemon (is it running, and is $(id -un) in the docker group?)"
  version_at_least "$engine" 20.10 || die "Docker $engine is too old: 20.10 or newer is needed"
  plugin=$(docker compose version --short 2>/dev/null) || die "the Docker Compose v2 plugin is missing (docker compose version)"
  version_at_least "${plugin#v}" 2.20 || die "Docker Compose $plugin is too old: 2.20 or newer is needed"
  say "Docker $engine, Compose $plugin"
}

compose_build() {
  IMAGE_TAG=$1 IMAGE_REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown) \
    IMAGE_SOURCE=$(git remote get-url origin 2>/dev/null | sed -E 's#://[^@/]*@#://#' || echo unknown) \
    compose build api worker
}

compose_validate() {
  IMAGE_TAG=$1 compose run --rm --no-deps -T api python -m ops.check_settings --production
}

write_proxy_files() {
  mkdir -p "$ROOT/var/caddy" "$ROOT/var/secrets/prometheus"
  chmod 700 "$ROOT/var/secrets"
  [[ -f $ROOT/var/caddy/api-upstreams ]] || echo "to api:8000" >"$ROOT/var/caddy/api-upstreams"
  # Prometheus (user nobody) reads these through a bind mount; var/secrets (700) keeps others out.
  chmod 755 "$ROOT/var/secrets/prometheus"
  env_value METRICS_TOKEN >"$ROOT/var/secrets/prometheus/metrics_token"
  env_value FLOWER_BASIC_AUTH | tr ',' '\n' | sed -n 's/^prometheus://p' >"$ROOT/var/secrets/prometheus/flower_password"
  chmod 644 "$ROOT/var/secrets/prometheus/metrics_token" "$ROOT/var/secrets/prometheus/flower_password"
}

compose_infra() {
  write_proxy_files
  mkdir -p "$(backup_dir)"
  IMAGE_TAG=$1 compose up -d --wait redis redis_exporter alertmanager prometheus grafana
}

compose_edge() {
  IMAGE_TAG=$1 compose up -d --no-deps --wait caddy
}

compose_instances() {
  compose ps -q "$1"
}

compose_tag() {
  local image
  image=$(docker inspect -f '{{.Config.Image}}' "$1")
  printf '%s\n' "${image##*:}"
}

compose_start() { # SERVICE TAG COUNT: start COUNT more beside those running; print the new ids
  local service=$1 tag=$2 count=$3 before after id
  before=$(compose ps -q "$service" | sort)
  local total=$(($(grep -c . <<<"$before" || true) + count))
  IMAGE_TAG=$tag compose up -d --no-deps --no-recreate --scale "$service=$total" "$service" >&2
  after=$(compose ps -q "$service" | sort)
  for id in $(comm -13 <(echo "$before") <(echo "$after")); do
    echo "$id"
  done
}

compose_health() {
  docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$1" 2>/dev/null || echo gone
}

compose_ready() {
  docker exec "$1" python -m ops.healthcheck ready
}

compose_route() { # route api (ID... | service): who gets the API's traffic
  local file=$ROOT/var/caddy/api-upstreams names=() id
  shift
  if [[ ${1:-service} == service ]]; then
    echo "to api:8000" >"$file"
  else
    for id in "$@"; do
      names+=("$(docker inspect -f '{{.Name}}' "$id" | sed 's#^/##'):8000")
    done
    echo "to ${names[*]}" >"$file"
  fi
  if [[ -n $(compose ps -q caddy) ]]; then
    compose exec -T caddy caddy reload --config /etc/caddy/Caddyfile --adapter caddyfile >&2
  fi
}

compose_stop() {
  (($#)) || return 0
  docker stop "$@" >/dev/null
  docker rm "$@" >/dev/null
}

compose_tool() { # ops/redis-backup.sh's verbs, in the backup container; names are relative to BACKUP_DIR
  local verb=$1 args=()
  case $verb in
    backup) args=(backup /backups "$2") ;;
    verify | restore) args=("$verb" "/backups/$2") ;;
  esac
  BACKUP_DIR=$(backup_dir) IMAGE_TAG=${IMAGE_TAG:-none} compose run --rm --no-deps -T --user "$(id -u):$(id -g)" backup "${args[@]}"
}

compose_restart() {
  IMAGE_TAG=${IMAGE_TAG:-none} compose restart "$1"
  IMAGE_TAG=${IMAGE_TAG:-none} compose up -d --no-deps --wait "$1"
}

compose_scale() {
  IMAGE_TAG=$2 compose up -d --no-deps --no-recreate --scale "worker=$1" worker
}

compose_status() {
  IMAGE_TAG=${1:-none} compose ps --format 'table {{.Service}}\t{{.Name}}\t{{.Image}}\t{{.Status}}'
}

compose_logs() {
  IMAGE_TAG=${IMAGE_TAG:-none} compose logs --follow --tail 200 "$@"
}

# Every step of a rollout goes through here: Compose, or DEPLOY_DRIVER VERB ARGS...
driver() {
  if [[ -n ${DEPLOY_DRIVER:-} ]]; then
    local program
    read -ra program <<<"$DEPLOY_DRIVER"
    "${program[@]}" "$@"
  else
    "compose_$1" "${@:2}"
  fi
}

# --- rollout ----------------------------------------------------------------------------------

current_tag() {
  cat "$STATE_DIR/current" 2>/dev/null || true
}

record() { # record NAME VALUE
  mkdir -p "$STATE_DIR"
  printf '%s\n' "$2" >"$STATE_DIR/$1"
}

wait_healthy() { # ID: until its health check passes
  local id=$1 timeout=${READY_TIMEOUT:-180} state start=$SECONDS
  while :; do
    state=$(driver health "$id")
    case $state in
      healthy) return 0 ;;
      unhealthy | exited | dead | gone)
        say "$id is $state"
        return 1
        ;;
    esac
    if ((SECONDS - start > timeout)); then
      say "$id is still $state after ${timeout}s"
      return 1
    fi
    sleep 1
  done
}

wait_ready_instance() { # ID: until that API container's own /health/ready says Redis answers
  local id=$1 timeout=${READY_TIMEOUT:-180} start=$SECONDS
  until driver ready "$id" >/dev/null 2>&1; do
    if ((SECONDS - start > timeout)); then
      say "API $id is not ready after ${timeout}s: $(driver ready "$id" 2>&1 | tail -n 1)"
      return 1
    fi
    sleep 1
  done
}

# replace SERVICE TAG: start the new beside the old, wait until healthy (the API: ready, then it
# gets the traffic), then stop the old gracefully. On failure the new are removed, the old untouched.
replace() {
  local service=$1 tag=$2 old=() new=() id count same=1
  mapfile -t old < <(driver instances "$service")
  for id in "${old[@]}"; do
    [[ $(driver tag "$id") == "$tag" ]] || same=0
  done
  if ((${#old[@]} && same)); then
    say "$service already runs $tag"
    return 0
  fi
  count=${#old[@]}
  if [[ $service == worker ]]; then
    count=$(cat "$STATE_DIR/workers" 2>/dev/null || echo "${#old[@]}")
  fi
  ((count >= 1)) || count=1
  say "$service: starting $count instance(s) of $tag beside ${#old[@]} running"
  mapfile -t new < <(driver start "$service" "$tag" "$count" || true)
  ((${#new[@]})) || {
    say "$service: nothing started"
    return 1
  }
  for id in "${new[@]}"; do
    if ! wait_healthy "$id" || { [[ $service == api ]] && ! wait_ready_instance "$id"; }; then
      say "$service: $tag did not become healthy; removing it, the running instances stay"
      driver stop "${new[@]}" || true
      return 1
    fi
  done
  if [[ $service == api ]]; then
    driver route api "${new[@]}" || return 1
  fi
  if ((${#old[@]})); then
    say "$service: $tag is healthy; stopping the ${#old[@]} old instance(s) (graceful)"
    driver stop "${old[@]}" || return 1
  fi
  if [[ $service == api ]]; then
    driver route api service || return 1
  fi
  say "$service: now on $tag"
}

wait_ready() { # /health/ready through the proxy, with at least one live worker
  local url timeout=${READY_TIMEOUT:-180} start=$SECONDS body
  url="$(base_url)/health/ready"
  while :; do
    body=$(curl -fsS --max-time 5 "$url" 2>/dev/null || true)
    if [[ $body =~ \"workers_alive\":([0-9]+) ]] && ((BASH_REMATCH[1] >= 1)); then
      say "ready: $body"
      return 0
    fi
    if ((SECONDS - start > timeout)); then
      say "$url is not ready with a live worker after ${timeout}s: ${body:-no answer}"
      return 1
    fi
    sleep 1
  done
}

verify() {
  local origin
  origin=$(env_value ALLOWED_ORIGINS | cut -d, -f1 | tr -d ' ')
  VERIFY_ORIGIN=$origin METRICS_TOKEN=$(env_value METRICS_TOKEN) VERIFY_API_KEY=$(env_value VERIFY_API_KEY) \
    "$ROOT/ops/verify.sh" "$(base_url)"
}

# Called as `if rollout ...`, where bash ignores `set -e`: every step says `|| return 1`.
rollout() { # TAG: every service on TAG, ready and verified
  local tag=$1
  driver infra "$tag" || return 1
  replace api "$tag" || return 1
  driver edge "$tag" || return 1
  replace worker "$tag" || return 1
  replace flower "$tag" || return 1
  wait_ready || return 1
  verify || return 1
}

release_tag() {
  if [[ -n ${RELEASE_TAG:-} ]]; then
    printf '%s' "$RELEASE_TAG"
    return
  fi
  git diff --quiet HEAD 2>/dev/null || die "the checkout has uncommitted changes: an image must be rebuildable from its tag (commit, or set RELEASE_TAG)"
  git rev-parse --short=12 HEAD
}

cmd_deploy() {
  check_env
  check_host
  driver prereqs
  local tag previous
  tag=$(release_tag)
  previous=$(current_tag)
  say "deploying $tag (running: ${previous:-nothing})"
  driver build "$tag" || die "building $tag failed"
  driver validate "$tag" || die "the settings in $ENV_FILE are refused by $tag (see above); nothing was changed"
  [[ -n $previous && $previous != "$tag" ]] && say "rollback target: $previous"
  if [[ -n $previous ]]; then
    driver infra "$tag"
    cmd_backup || die "the backup before deploying failed; nothing was changed"
  fi
  if rollout "$tag"; then
    # What `rollback` returns to: the release this one replaced (kept as is after a failed deploy).
    [[ -n $previous && $previous != "$tag" ]] && record previous "$previous"
    record current "$tag"
    say "deployed $tag"
    return 0
  fi
  if [[ -z $previous || $previous == "$tag" ]]; then
    die "deploying $tag failed and there is no earlier release to return to: see ops/deploy.sh logs"
  fi
  say "deploying $tag failed: rolling back to $previous"
  if rollout "$previous"; then
    record current "$previous"
    die "deploying $tag failed; rolled back to $previous, which is serving and verified"
  fi
  die "deploying $tag failed and rolling back to $previous failed too: see ops/RUNBOOK.md#rollback"
}

cmd_rollback() {
  check_env
  local previous current
  previous=$(cat "$STATE_DIR/previous" 2>/dev/null || true)
  current=$(current_tag)
  [[ -n $previous ]] || die "no previous release recorded in $STATE_DIR/previous"
  say "rolling back from ${current:-?} to $previous"
  rollout "$previous" || die "rolling back to $previous failed: see ops/RUNBOOK.md#rollback"
  record current "$previous"
  [[ -n $current ]] && record previous "$current"
  say "rolled back to $previous"
}

cmd_status() {
  check_env
  say "release: $(current_tag) (previous: $(cat "$STATE_DIR/previous" 2>/dev/null || echo none))"
  driver status "$(current_tag)"
  local body
  body=$(curl -sS --max-time 5 "$(base_url)/health/ready" 2>&1) || true
  say "readiness: $body"
}

cmd_scale() {
  local count=${1:-}
  [[ $count =~ ^[1-9][0-9]*$ ]] || die "usage: ops/deploy.sh scale N (N >= 1)"
  check_env
  local tag
  tag=$(current_tag)
  [[ -n $tag ]] || die "nothing deployed yet: run ops/deploy.sh deploy first"
  driver scale "$count" "$tag"
  record workers "$count"
  say "workers: $count (each stops with a warm shutdown when scaled down)"
}

cmd_backup() {
  check_env
  mkdir -p "$(backup_dir)"
  driver tool backup "${BACKUP_KEEP:-$(env_value BACKUP_KEEP)}"
}

cmd_restore() {
  local file=${1:-} name dir
  [[ -n $file ]] || die "usage: ops/deploy.sh restore FILE (a backup in the backup directory)"
  check_env
  dir=$(backup_dir)
  name=$(basename "$file")
  [[ -f $dir/$name ]] || die "$name is not in the backup directory $dir"
  local tag
  tag=$(current_tag)
  [[ -n $tag ]] || die "nothing deployed yet: deploy first, then restore"
  driver tool verify "$name" || die "$name failed its checks; nothing was changed"
  say "a backup of the current data first, in case this restore is a mistake"
  cmd_backup
  say "stopping the writers (API, workers, Flower)"
  local service ids=()
  for service in flower worker api; do
    mapfile -t ids < <(driver instances "$service")
    driver stop "${ids[@]}"
  done
  driver tool restore "$name" || die "restoring $name failed: the writers are stopped; see ops/RUNBOOK.md#backup-and-restore"
  say "restarting Redis: the restored data must come back from its own files"
  driver restart redis
  rollout "$tag" || die "the service did not come back after restoring $name: see ops/RUNBOOK.md#backup-and-restore"
  say "restored $name and verified"
}

cmd_logs() {
  driver logs "$@"
}

main() {
  local command=${1:-help}
  shift || true
  case $command in
    deploy) cmd_deploy "$@" ;;
    rollback) cmd_rollback "$@" ;;
    status) cmd_status "$@" ;;
    scale) cmd_scale "$@" ;;
    backup) cmd_backup "$@" ;;
    restore) cmd_restore "$@" ;;
    logs) cmd_logs "$@" ;;
    help | -h | --help) usage ;;
    *)
      usage >&2
      die "unknown command '$command'"
      ;;
  esac
}

main "$@"
