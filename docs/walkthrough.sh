#!/usr/bin/env bash
# The README walk-through, run verbatim: this script takes the README's command block (the fenced
# block after `<!-- walkthrough:commands ... -->`) and runs it as it stands against a fresh server,
# then prints what it answered. With --check (`make walkthrough`, tests/docs/test_walkthrough.py)
# it compares that output with the README's shown output and fails on any difference; timestamps and
# verification ids are masked on both sides (scripts/walkthrough.py says exactly how).
#
#   bash docs/walkthrough.sh [--check]
#
# Run from anywhere after `make serve` (or `make install`) has built .venv. Around the README's
# commands, and only there, this script
#   - clears every VOICEID_* variable but VOICEID_DEV_DATA_DIR, so the run sees the defaults;
#   - gives the server a throw-away data dir (removed on exit), and names the model directories the
#     default data dir holds (they default to <data dir>/models, so they must be named once the data
#     dir moves);
#   - refuses to start when port 8765 already answers (another run's server would be the one asked);
#   - stops the server and everything the block started when it ends, or after 10 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
CHECK=false
case "${1:-}" in
  --check) CHECK=true ;;
  "") ;;
  *) echo "usage: bash docs/walkthrough.sh [--check]" >&2; exit 2 ;;
esac

for variable in $(compgen -e | grep '^VOICEID_' | grep -v '^VOICEID_DEV_DATA_DIR$' || true); do
  unset "$variable"
done
eval "$(.venv/bin/python -c '
import shlex
from voiceid.config import Settings
s = Settings()
print(f"export VOICEID_MODEL_DIR={shlex.quote(str(s.model_dir))} VOICEID_CM_MODEL_DIR={shlex.quote(str(s.cm_model_dir))}")
')"
WORK=$(mktemp -d)
export VOICEID_DATA_DIR=$WORK/data

if curl -s -o /dev/null --max-time 2 http://127.0.0.1:8765/healthz; then
  echo "port 8765 already answers: stop that server first" >&2
  exit 1
fi

.venv/bin/python scripts/walkthrough.py commands > "$WORK/commands.sh"
# timeout(1) makes itself the leader of a process group of its own, which the block and everything
# it starts (the server) join; past 10 minutes it signals the whole group, and the cleanup does too.
timeout -k 10 600 bash -euo pipefail "$WORK/commands.sh" > "$WORK/output.txt" 2> "$WORK/stderr.txt" &
BLOCK=$!
cleanup() {
  kill -- -"$BLOCK" 2>/dev/null || true
  # The server shuts down gracefully: wait (15 s at most) until it no longer answers, so nothing of
  # this run is left behind and the next run finds the port free.
  for _ in $(seq 15); do
    curl -s -o /dev/null --max-time 1 http://127.0.0.1:8765/healthz || break
    sleep 1
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

status=0
wait "$BLOCK" || status=$?
cat "$WORK/output.txt"
if [ "$status" -ne 0 ]; then
  echo "the README's commands failed (exit $status); their stderr and the server's log:" >&2
  cat "$WORK/stderr.txt" /tmp/voiceid-walkthrough.log >&2
  exit "$status"
fi
if $CHECK; then
  .venv/bin/python scripts/walkthrough.py check "$WORK/output.txt" || {
    echo "(the server's log is /tmp/voiceid-walkthrough.log)" >&2
    exit 1
  }
fi
