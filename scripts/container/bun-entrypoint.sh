#!/bin/sh
# The stand-in's entrypoint, behaving like the official image's: a command
# that exists runs as given; anything else (an option such as --version, or a
# script name) is handed to bun.
set -e
case "${1:-}" in
  -*) set -- /usr/local/bin/bun "$@" ;;
  *) if [ -z "${1:-}" ] || ! command -v "$1" >/dev/null 2>&1; then set -- /usr/local/bin/bun "$@"; fi ;;
esac
exec "$@"
