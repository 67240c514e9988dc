#!/bin/sh
# Alertmanager's entrypoint in docker-compose.prod.yml: write its configuration with the receiver
# taken from the environment, then start it. Usage: render.sh TEMPLATE OUTPUT [alertmanager args...]
set -eu
template=$1
output=$2
shift 2
if [ -z "${ALERTMANAGER_WEBHOOK_URL:-}" ]; then
  echo "ALERTMANAGER_WEBHOOK_URL is not set: alerts would go nowhere" >&2
  exit 1
fi
# awk's index/substr, not sed or gsub: the URL may hold '&', '|' or '/' and must go in as it is.
awk -v value="$ALERTMANAGER_WEBHOOK_URL" '{
  placeholder = "${ALERTMANAGER_WEBHOOK_URL}"
  while ((i = index($0, placeholder)) > 0)
    $0 = substr($0, 1, i - 1) value substr($0, i + length(placeholder))
  print
}' "$template" > "$output"
[ "$#" -gt 0 ] || exit 0
exec "$@" --config.file="$output"
