#!/usr/bin/env bash
# The Debian packages the tests use: pebble (a real ACME server, with
# pebble-challtestsrv) for the TLS suites, openssl for its certificates, curl
# for HTTPS/HTTP2 checks, chromium for the status page's browser test
# (test/status-browser.test.ts, driven by puppeteer-core). Installed when
# missing; shared by `make test` and CI. Without root or sudo the suites that
# need a missing tool are skipped with a warning, except in CI (CI set), where
# a missing tool fails the run.
set -euo pipefail
need=()
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v pebble >/dev/null 2>&1 || need+=(pebble)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ "${#need[@]}" -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${need[@]}"
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo apt-get update -qq && sudo apt-get install -y -qq "${need[@]}"
elif [ -n "${CI:-}" ]; then
  echo "error: the tests need ${need[*]} (apt-get install ${need[*]})" >&2
  exit 1
else
  echo "warning: ${need[*]} missing and cannot be installed here: the suites that need them (TLS, the status page in a browser) will be skipped (apt-get install ${need[*]})" >&2
fi
