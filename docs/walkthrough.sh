#!/usr/bin/env bash
# The README walk-through as a script: start the service, create keys, enrol a dev speaker from
# ../shared/data/dev until ENROLLED, verify the same speaker (ACCEPT) and another one (REJECT).
# Run from the repository root after `make serve` has installed everything (it starts its own
# server on port 8765 with a throw-away data dir).
set -euo pipefail
# A data dir of our own (database, key file, log) is removed on exit; one passed in is kept.
if [ -z "${VOICEID_DATA_DIR:-}" ]; then
  VOICEID_DATA_DIR=$(mktemp -d)
  OWN_DATA_DIR=$VOICEID_DATA_DIR
fi
export VOICEID_DATA_DIR
# A weak admin key stops start-up (docs/security.md): generate a random one.
export VOICEID_ADMIN_KEY=${VOICEID_ADMIN_KEY:-$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')}
DEV=${VOICEID_DEV_DATA_DIR:-../shared/data}/dev
B=http://127.0.0.1:8765
.venv/bin/voiceid serve --port 8765 > "$VOICEID_DATA_DIR/serve.log" 2>&1 &
SERVER=$!
cleanup() {
  kill "$SERVER" 2>/dev/null || true
  wait "$SERVER" 2>/dev/null || true
  if [ -n "${OWN_DATA_DIR:-}" ]; then rm -rf "$OWN_DATA_DIR"; fi
}
trap cleanup EXIT
until curl -sf $B/readyz > /dev/null; do sleep 1; done
echo "# readyz"; curl -s $B/readyz; echo

key() { curl -s -X POST $B/v1/api-keys -H "Authorization: Bearer $VOICEID_ADMIN_KEY" \
  -H 'Content-Type: application/json' -d "{\"role\":\"$1\"}" | python3 -c 'import sys,json;print(json.load(sys.stdin)["key"])'; }
ENROL_KEY=$(key enrolment); IVR_KEY=$(key ivr)

echo "# consent"
curl -s -X PUT $B/v1/speakers/caller-1688 -H "Authorization: Bearer $ENROL_KEY" -H 'Content-Type: application/json' \
  -d '{"consent":{"granted":true,"text_version":"voiceid-consent-v1","channel":"phone"}}'; echo
echo "# enrolment audio until ENROLLED"
for f in $DEV/ls_1688/ls_1688-142285-0000.flac $DEV/ls_1688/ls_1688-142285-0001.flac; do
  curl -s -X POST $B/v1/speakers/caller-1688/enrolment-audio -H "Authorization: Bearer $ENROL_KEY" \
    -H 'Content-Type: audio/flac' --data-binary @$f; echo
done
echo "# verify: an unused file of the same speaker"
curl -s -X POST $B/v1/speakers/caller-1688/verifications -H "Authorization: Bearer $IVR_KEY" \
  -H 'Content-Type: audio/flac' --data-binary @$DEV/ls_1688/ls_1688-142285-0006.flac; echo
echo "# verify: another speaker claiming to be caller-1688"
curl -s -X POST $B/v1/speakers/caller-1688/verifications -H "Authorization: Bearer $IVR_KEY" \
  -H 'Content-Type: audio/flac' --data-binary @$DEV/ls_1998/ls_1998-15444-0001.flac; echo
