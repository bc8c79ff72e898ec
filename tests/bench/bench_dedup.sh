#!/usr/bin/env bash
# tests/bench/bench_dedup.sh — what Redis spends a fingerprint on triaged's
# dedup script, the shipped one (daemon/dedup.c) against a previous one
# (daemon/dedup.c at git revision OLD_REV, default 5c15891: the script of
# three calls a key on a hash), called alternately on one redis-server of
# its own (loopback, a free port, no persistence), by
# tests/bench/dedup_script.py. Prints figures; asserts nothing but the hints.
#
#   bash tests/bench/bench_dedup.sh [KEYS (256) [CALLS (400) [ROUNDS (3)]]]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/bench_dedup.XXXXXX")
pid=""
cleanup() {
    [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
git -C "$root" show "${OLD_REV:-5c15891}:daemon/dedup.c" > "$work/dedup_old.c"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
    --dir "$work" > "$work/redis.log" 2>&1 &
pid=$!
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
echo "bench_dedup: $(redis-server --version | awk '{print $3}'); ${1:-256} fingerprints a call, ${2:-400} calls, ${3:-3} rounds"
python3 "$root/tests/bench/dedup_script.py" "$port" "$pid" "$work/dedup_old.c" \
    "$root/daemon/dedup.c" "${1:-256}" "${2:-400}" "${3:-3}"
