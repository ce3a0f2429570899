#!/usr/bin/env bash
# `make demo`: boot the swarm (python network.py), solve one demo task with submit_task.py, shut down.
# DEMO_TASK overrides the task; extra settings pass through RCP_* variables (e.g. RCP_NUM_NODES=3).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
TASK=${DEMO_TASK:-"Write a Python module shapes.py with two classes and a function. A class \`Rectangle(width, height)\` with \`area(self)\` (width * height) and \`perimeter(self)\` (2 * (width + height)), e.g. \`Rectangle(2, 3).area() == 6\` and \`Rectangle(2, 3).perimeter() == 10\`. A class \`Circle(radius)\` with \`area(self)\` (math.pi * radius ** 2) and \`perimeter(self)\` (2 * math.pi * radius), e.g. \`Circle(1).perimeter() == 2 * math.pi\`. Both raise ValueError when a size is negative. A function \`total_area(shapes)\` returns the sum of the areas of a list of shapes, e.g. \`total_area([Rectangle(1, 2), Rectangle(3, 1)]) == 5\` and \`total_area([]) == 0\`."}
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
