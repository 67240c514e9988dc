#!/usr/bin/env bash
# Post-deployment verification: ops/verify.sh BASE_URL (https://trips.example.com, or the native
# drills' http://127.0.0.1:PORT). Exits 0 when the service works end to end, otherwise non-zero with
# one line naming the first check that failed. ops/deploy.sh runs it after every rollout.
#
# Checks, in order: /health; /health/ready with at least one live worker; credentials (an API key
# from VERIFY_API_KEY, or a throw-away account registered and logged in, deleted at the end);
# a checklist submitted and waited for until it succeeds; a forged token refused; rate-limit
# headers; security headers (HSTS under https); CORS when VERIFY_ORIGIN names an allowed origin;
# /metrics served (with METRICS_TOKEN as its bearer token when set).
#
# Environment: VERIFY_API_KEY, VERIFY_ORIGIN, METRICS_TOKEN, VERIFY_TIMEOUT (seconds to wait for
# the checklist, 120), VERIFY_EMAIL_DOMAIN (example.com).
set -euo pipefail

BASE_URL=${1:-}
[[ -n $BASE_URL ]] || {
  echo "usage: ops/verify.sh BASE_URL" >&2
  exit 2
}
BASE_URL=${BASE_URL%/}
readonly TIMEOUT=${VERIFY_TIMEOUT:-120}
work=$(mktemp -d)
token="" registered=""

fail() {
  echo "verify: FAILED: $*" >&2
  exit 1
}

ok() {
  echo "verify: ok: $*"
}

cleanup() {
  if [[ -n $registered && -n $token ]]; then
    curl -sS -o /dev/null -X DELETE -H "Authorization: Bearer $token" "$BASE_URL/api/v1/auth/me" || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# request METHOD PATH [curl options...]: the status code; the body in $work/body, headers in $work/headers.
request() {
  local method=$1 path=$2
  shift 2
  local status
  if ! status=$(curl -sS --max-time 40 -X "$method" -o "$work/body" -D "$work/headers" -w '%{http_code}' "$@" "$BASE_URL$path" 2>"$work/error"); then
    fail "$method $path: no answer from $BASE_URL ($(cat "$work/error"))"
  fi
  echo "$status"
}

expect() {
  local want=$1 got=$2 what=$3
  [[ $got == "$want" ]] || fail "$what answered $got, expected $want: $(head -c 300 "$work/body")"
}

# The value of the first string or number field NAME in the last body.
field() {
  { grep -o "\"$1\":\"\{0,1\}[^\",}]*" "$work/body" || true; } | head -n 1 | sed "s/^\"$1\":\"\{0,1\}//"
}

# The value of a header in the last response (case-insensitive name).
header() {
  tr -d '\r' <"$work/headers" | sed -n "s/^$1: *//Ip" | tail -n 1
}

status=$(request GET /health)
expect 200 "$status" "GET /health"
ok "/health"

status=$(request GET /health/ready)
expect 200 "$status" "GET /health/ready"
workers=$(field workers_alive)
[[ ${workers:-0} =~ ^[0-9]+$ && $workers -ge 1 ]] || fail "/health/ready counts ${workers:-no} live workers: queued jobs would wait"
ok "/health/ready: Redis answers, $workers live worker(s)"

if [[ -n ${VERIFY_API_KEY:-} ]]; then
  token=$VERIFY_API_KEY
  ok "credentials: the API key from VERIFY_API_KEY"
else
  suffix=$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')
  email="verify-$suffix@${VERIFY_EMAIL_DOMAIN:-example.com}"
  password="deploy check $(od -An -tx1 -N12 /dev/urandom | tr -d ' \n') ok"
  login="{\"email\":\"$email\",\"password\":\"$password\"}"
  status=$(request POST /api/v1/auth/register -H 'Content-Type: application/json' -d "$login")
  expect 201 "$status" "POST /api/v1/auth/register"
  registered=yes
  status=$(request POST /api/v1/auth/login -H 'Content-Type: application/json' -d "$login")
  expect 200 "$status" "POST /api/v1/auth/login"
  token=$(field access_token)
  [[ -n $token ]] || fail "login answered no access_token"
  ok "register and login ($email, deleted at the end)"
fi
auth=(-H "Authorization: Bearer $token")

status=$(request GET /api/v1/auth/me "${auth[@]}")
expect 200 "$status" "GET /api/v1/auth/me"
[[ -n $(header RateLimit-Limit) && -n $(header RateLimit-Remaining) && -n $(header RateLimit-Reset) ]] \
  || fail "no RateLimit-Limit/-Remaining/-Reset headers on an authenticated answer"
ok "rate-limit headers (RateLimit-Limit: $(header RateLimit-Limit))"
for name in X-Content-Type-Options X-Frame-Options Referrer-Policy Content-Security-Policy; do
  [[ -n $(header "$name") ]] || fail "no $name header"
done
if [[ $BASE_URL == https://* ]]; then
  [[ $(header Strict-Transport-Security) == *max-age=* ]] || fail "no Strict-Transport-Security header under TLS"
fi
ok "security headers"

trip='{"location":"Lisbon, Portugal","days":3,"transport":"plane","occasion":"deployment check"}'
status=$(request POST /api/v1/checklists "${auth[@]}" -H 'Content-Type: application/json' -d "$trip")
expect 202 "$status" "POST /api/v1/checklists"
job=$(field id)
[[ -n $job ]] || fail "the submission answered no job id"
deadline=$((SECONDS + TIMEOUT))
while :; do
  status=$(request GET "/api/v1/checklists/$job?wait=20" "${auth[@]}")
  expect 200 "$status" "GET /api/v1/checklists/$job"
  state=$(field status)
  case $state in
    succeeded) break ;;
    failed | canceled) fail "checklist $job ended $state: $(head -c 300 "$work/body")" ;;
  esac
  ((SECONDS < deadline)) || fail "checklist $job still $state after ${TIMEOUT}s: are workers running?"
done
ok "checklist $job submitted and succeeded"
if [[ -n $registered ]]; then
  request DELETE "/api/v1/checklists/$job" "${auth[@]}" >/dev/null
fi

if [[ $token == *.*.* ]]; then
  forged="${token%?}$([[ ${token: -1} == A ]] && echo B || echo A)"
else
  forged="eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.forged"
fi
status=$(request GET /api/v1/auth/me -H "Authorization: Bearer $forged")
expect 401 "$status" "a forged token"
ok "a forged token is refused (401)"

if [[ -n ${VERIFY_ORIGIN:-} ]]; then
  status=$(request OPTIONS /api/v1/checklists -H "Origin: $VERIFY_ORIGIN" \
    -H 'Access-Control-Request-Method: POST' -H 'Access-Control-Request-Headers: authorization,content-type')
  [[ $status == 200 || $status == 204 ]] || fail "the CORS preflight from $VERIFY_ORIGIN answered $status"
  [[ $(header Access-Control-Allow-Origin) == "$VERIFY_ORIGIN" ]] \
    || fail "CORS: Access-Control-Allow-Origin is '$(header Access-Control-Allow-Origin)', not $VERIFY_ORIGIN"
  ok "CORS allows $VERIFY_ORIGIN"
else
  echo "verify: skipped: CORS (no VERIFY_ORIGIN; ALLOWED_ORIGINS is empty)"
fi

metrics_auth=()
[[ -n ${METRICS_TOKEN:-} ]] && metrics_auth=(-H "Authorization: Bearer $METRICS_TOKEN")
status=$(request GET /metrics "${metrics_auth[@]}")
expect 200 "$status" "GET /metrics"
grep -q '^# TYPE ' "$work/body" || fail "/metrics is not in the Prometheus text format"
ok "/metrics"

echo "verify: all checks passed against $BASE_URL"
