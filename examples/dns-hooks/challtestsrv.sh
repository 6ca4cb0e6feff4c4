#!/bin/sh
# parachute DNS-01 hook for pebble-challtestsrv, the test DNS server the
# end-to-end tests use (test/tls-challenges.test.ts writes the same hook
# with its own address). A working model for a hook of your own, except
# that `remove` clears every value of the name (challtestsrv's API has no
# other way), where a real hook removes only the one it is given:
#   CHALLTESTSRV=http://127.0.0.1:8055 ./challtestsrv.sh add _acme-challenge.example.com value
set -eu
api=${CHALLTESTSRV:-http://127.0.0.1:8055}
case "$1" in
  add) curl -sSf -d "{\"host\":\"$2.\",\"value\":\"$3\"}" "$api/set-txt" ;;
  remove) curl -sSf -d "{\"host\":\"$2.\"}" "$api/clear-txt" ;;
  *) echo "usage: $0 add|remove FQDN VALUE" >&2; exit 2 ;;
esac
