#!/bin/sh
# parachute DNS-01 hook for Amazon Route 53 (README "TLS", --tls-dns-hook).
# UNTESTED here: no AWS account is reachable from parachute's test machines.
# Read it before you use it; test it once by hand:
#   R53_HOSTED_ZONE_ID=... ./route53.sh add _acme-challenge.example.com test-value
#   R53_HOSTED_ZONE_ID=... ./route53.sh remove _acme-challenge.example.com test-value
#
# Called by parachute as `route53.sh add|remove <fqdn> <value>`; it sees
# parachute's environment, so set these where parachute runs:
#   R53_HOSTED_ZONE_ID  the hosted zone's id (Z0123456789ABCDEFGHIJ)
#   and AWS credentials as the aws CLI finds them (AWS_PROFILE, instance
#   role, ...), allowed route53:ListResourceRecordSets,
#   route53:ChangeResourceRecordSets and route53:GetChange on the zone.
# Needs the aws CLI (v2) and jq. Exits non-zero with the CLI's error on
# stderr, which parachute logs with the failed order.
set -eu
action=$1 fqdn=$2 value=$3
: "${R53_HOSTED_ZONE_ID:?set R53_HOSTED_ZONE_ID}"

# Route 53 keeps all TXT values of a name in one record set, and a change
# replaces the whole set: read it, add or drop this value, write it back.
current=$(aws route53 list-resource-record-sets --hosted-zone-id "$R53_HOSTED_ZONE_ID" \
  --start-record-name "$fqdn" --start-record-type TXT --max-items 1 --output json |
  jq -c --arg name "$fqdn." '[.ResourceRecordSets[] | select(.Name == $name and .Type == "TXT") | .ResourceRecords[].Value]')
quoted="\"$value\""

case "$action" in
  add) values=$(printf '%s' "$current" | jq -c --arg v "$quoted" '. - [$v] + [$v]') ;;
  remove) values=$(printf '%s' "$current" | jq -c --arg v "$quoted" '. - [$v]') ;;
  *)
    echo "usage: $0 add|remove FQDN VALUE" >&2
    exit 2
    ;;
esac

if [ "$values" = "[]" ]; then
  [ "$current" = "[]" ] && exit 0 # nothing there, nothing to delete
  change=$(jq -nc --arg name "$fqdn" --argjson old "$current" \
    '{Changes: [{Action: "DELETE", ResourceRecordSet: {Name: $name, Type: "TXT", TTL: 60, ResourceRecords: ($old | map({Value: .}))}}]}')
else
  change=$(jq -nc --arg name "$fqdn" --argjson new "$values" \
    '{Changes: [{Action: "UPSERT", ResourceRecordSet: {Name: $name, Type: "TXT", TTL: 60, ResourceRecords: ($new | map({Value: .}))}}]}')
fi
id=$(aws route53 change-resource-record-sets --hosted-zone-id "$R53_HOSTED_ZONE_ID" --change-batch "$change" --query ChangeInfo.Id --output text)
# Returns once Route 53's own servers have it; parachute then also polls them itself.
[ "$action" = add ] && aws route53 wait resource-record-sets-changed --id "$id"
exit 0
