#!/usr/bin/env bash
# `make demo`: boot the swarm (python network.py), solve one demo task with submit_task.py, shut down.
# DEMO_TASK overrides the task; extra settings pass through RCP_* variables (e.g. RCP_NUM_NODES=3).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
TASK=${DEMO_TASK:-"Write a Python module textstats.py with four functions: word_count(text) returns the number of whitespace-separated words, e.g. \`word_count('a b  c') == 3\`; char_frequency(text) returns a dict mapping each character except spaces to its count, e.g. \`char_frequency('aba b') == {'a': 2, 'b': 2}\`; most_common_word(text) returns the most frequent lower-cased word, the first seen on ties, e.g. \`most_common_word('b a B a') == 'b'\`; is_palindrome(text) tells whether text reads the same backwards ignoring case, spaces and punctuation, e.g. \`is_palindrome('A man, a plan, a canal: Panama') == True\`."}
OUT=${DEMO_OUT:-demo-output}
mkdir -p .rcp
LOG=.rcp/demo-network.log

$PY network.py >"$LOG" 2>&1 &
launcher=$!
stop() {
  if kill -0 "$launcher" 2>/dev/null; then
    echo "[demo] stopping the swarm" >&2
    kill -TERM "$launcher" 2>/dev/null || true
    wait "$launcher" 2>/dev/null || true
  fi
}
trap stop EXIT INT TERM

echo "[demo] booting the swarm (log: $LOG)" >&2
for _ in $(seq 1 600); do
  if grep -q "swarm ready" "$LOG"; then break; fi
  if ! kill -0 "$launcher" 2>/dev/null; then cat "$LOG" >&2; echo "error: network.py stopped before the swarm was ready" >&2; exit 1; fi
  sleep 1
done
grep "swarm ready" "$LOG" >&2 || { echo "error: the swarm was not ready after 600 s; see $LOG" >&2; exit 1; }

echo "[demo] task: $TASK" >&2
set +e
$PY submit_task.py --out "$OUT" "$TASK"
rc=$?
set -e
echo "[demo] submit_task.py exited $rc; result files in $OUT/" >&2
exit $rc
