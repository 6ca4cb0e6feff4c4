#!/bin/sh
# parachute DNS-01 hook for Cloudflare (README "TLS", --tls-dns-hook).
# UNTESTED here: no Cloudflare account is reachable from parachute's test
# machines. Read it before you use it; test it once by hand:
#   CF_API_TOKEN=... CF_ZONE_ID=... ./cloudflare.sh add _acme-challenge.example.com test-value
#   CF_API_TOKEN=... CF_ZONE_ID=... ./cloudflare.sh remove _acme-challenge.example.com test-value
#
# Called by parachute as `cloudflare.sh add|remove <fqdn> <value>`; it sees
# parachute's environment, so set these where parachute runs:
#   CF_API_TOKEN  an API token with Zone:DNS:Edit on the zone
#   CF_ZONE_ID    the zone's id (the zone's Overview page, "API" box)
# Needs curl and jq. Exits non-zero with the API's error on stderr, which
# parachute logs with the failed order.
set -eu
action=$1 fqdn=$2 value=$3
: "${CF_API_TOKEN:?set CF_API_TOKEN}" "${CF_ZONE_ID:?set CF_ZONE_ID}"
api="https://api.cloudflare.com/client/v4/zones/$CF_ZONE_ID/dns_records"

call() { # METHOD URL [JSON]: prints the response; fails with the API's errors
  response=$(curl -sS -X "$1" "$2" -H "Authorization: Bearer $CF_API_TOKEN" -H "Content-Type: application/json" ${3:+--data "$3"})
  if [ "$(printf '%s' "$response" | jq -r .success)" != "true" ]; then
    printf '%s\n' "$response" | jq -c '.errors // .' >&2
    exit 1
  fi
  printf '%s' "$response"
}

case "$action" in
  add)
    # A new record next to any others: a wildcard and its base name share
    # one record name, and their orders may run at once.
    call POST "$api" "$(jq -nc --arg name "$fqdn" --arg content "$value" '{type: "TXT", name: $name, content: $content, ttl: 60}')" >/dev/null
    ;;
  remove)
    # Only the record with this value.
    ids=$(call GET "$api?type=TXT&name=$fqdn&per_page=100" | jq -r --arg v "$value" '.result[] | select((.content | gsub("\""; "")) == $v) | .id')
    for id in $ids; do call DELETE "$api/$id" >/dev/null; done
    ;;
  *)
    echo "usage: $0 add|remove FQDN VALUE" >&2
    exit 2
    ;;
esac
