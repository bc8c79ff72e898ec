#!/usr/bin/env bash
# bench_sandbox.sh [LINES] [REPS] — what the systemd unit's
# MemoryDenyWriteExecute=yes costs: the syslog rules (parse + the 14 shipped
# rules, one line in ten matching) with PCRE2's JIT, and under
# prctl(PR_SET_MDWE) where the JIT cannot get W+X memory and PCRE2
# interprets. Runs alternate; prints each run and the medians.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${TD_BUILD_DIR:-$SRC/build}
LINES=${1:-1000000}
REPS=${2:-5}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
MDWE=$(mktemp)
trap 'rm -f "$MDWE"' EXIT
cat >"$MDWE" <<'PYEOF'
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    sys.exit("prctl(PR_SET_MDWE): " + os.strerror(ctypes.get_errno()))
os.execv(sys.argv[1], sys.argv[1:])
PYEOF
run() { "$@" "$BUILD/tests/bench_rules" "$SRC/config/syslog-rules.conf" "$LINES" | sed -E 's/.*ns_per_line=([0-9]+).*/\1/'; }
jit=() mdwe=()
for _ in $(seq "$REPS"); do
    a=$(run env); b=$(run "$PY" "$MDWE")
    echo "JIT ${a} ns/line   interpreter (MDWE) ${b} ns/line"
    jit+=("$a"); mdwe+=("$b")
done
med() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
mj=$(med "${jit[@]}"); mm=$(med "${mdwe[@]}")
echo "median: JIT $mj ns/line, interpreter $mm ns/line, ratio $(awk -v a="$mm" -v b="$mj" 'BEGIN { printf "%.2f", a / b }')x ($LINES lines, load $(cut -d' ' -f1 /proc/loadavg))"
