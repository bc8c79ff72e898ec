# tests/integration/lib.sh — helpers for integration tests that run triaged
# against the stack (tests/stack/stack.sh exports TD_TEST_*). Source it.
# Every wait polls with a deadline; nothing sleeps for a fixed time.
set -euo pipefail

: "${TD_TEST_PG_ADMIN_CONNINFO:?run under the stack: scripts/test or tests/stack/stack.sh}"
: "${TD_TEST_KAFKA_BROKERS:?run under the stack}"
: "${TD_TEST_REDIS_URL:?run under the stack}"
TD_SOURCE_DIR=${TD_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
TD_BUILD_DIR=${TD_BUILD_DIR:-$TD_SOURCE_DIR/build}
source "$TD_SOURCE_DIR/tests/stack/stack.sh"

export PGOPTIONS="-c client_min_messages=warning"
T_NAME=$(basename "${BASH_SOURCE[1]:-test}" .sh)
T_DIR=$(mktemp -d "$TD_TEST_DIR/$T_NAME.XXXXXX")
T_PIDS=()

t_log() { printf '%s: %s\n' "$T_NAME" "$*"; }
t_fail() {
    printf '%s: FAIL: %s\n' "$T_NAME" "$*" >&2
    for f in "$T_DIR"/triaged*.log; do
        [ -f "$f" ] && { echo "--- tail of $f" >&2; tail -n 30 "$f" >&2; }
    done
    exit 1
}

t_cleanup() {
    local p
    for p in "${T_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${T_PIDS[@]}"; do
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    if [ -n "${T_DB:-}" ] && [ "${TD_KEEP_DB:-0}" != 1 ]; then
        psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "DROP DATABASE IF EXISTS $T_DB WITH (FORCE)" >/dev/null 2>&1 || true
    fi
}
trap t_cleanup EXIT

# A fresh database with the schema; sets T_DB and T_PG.
t_db() {
    T_DB="td_${T_NAME//[^a-z0-9]/_}_$$"
    psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "DROP DATABASE IF EXISTS $T_DB WITH (FORCE)" >/dev/null
    psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "CREATE DATABASE $T_DB" >/dev/null
    T_PG="$TD_TEST_PG_ADMIN_CONNINFO dbname=$T_DB"
}

# A fresh topic with N partitions (default 8); sets T_TOPIC.
t_topic() {
    T_TOPIC="alerts_${T_NAME//[^a-z0-9]/_}_$$_$RANDOM"
    stack_kafka_control "topic $T_TOPIC ${1:-8}" >/dev/null || t_fail "cannot create topic"
}

# Write a config to $T_DIR/triaged.conf (or $1); extra lines from stdin.
t_conf() {
    local f=${1:-$T_DIR/triaged.conf}
    {
        cat <<CONF
[triaged]
instance = ${T_INSTANCE:-$T_NAME}
log_level = info
[postgres]
conninfo = $T_PG
migrate = yes
[redis]
url = $TD_TEST_REDIS_URL
[kafka]
brokers = $TD_TEST_KAFKA_BROKERS
group = g_$T_DB
alerts_topic = ${T_TOPIC:-alerts}
[plugins]
dir = $TD_BUILD_DIR/plugins
CONF
        [ -t 0 ] || cat
    } > "$f"
}

# Start triaged on a config; waits until it says it started. Sets T_PID.
t_start() {
    local conf=${1:-$T_DIR/triaged.conf} log=${2:-$T_DIR/triaged.log}
    "$TD_BUILD_DIR/triaged" -c "$conf" >>"$log" 2>&1 &
    T_PID=$!
    T_PIDS+=("$T_PID")
    local deadline=$((SECONDS + 30))
    until grep -q 'msg="triaged started"' "$log" 2>/dev/null; do
        kill -0 "$T_PID" 2>/dev/null || t_fail "triaged exited at start"
        [ $SECONDS -lt $deadline ] || t_fail "triaged did not start within 30 s"
        sleep 0.1
    done
}

t_sql() { psql "$T_PG" -qAtX -c "$1"; }

# Poll SQL until it prints EXPECTED, within TIMEOUT seconds (default 60).
t_wait_sql() {
    local sql=$1 want=$2 timeout=${3:-60} got=""
    local deadline=$((SECONDS + timeout))
    while [ $SECONDS -lt $deadline ]; do
        got=$(t_sql "$sql" 2>/dev/null || true)
        [ "$got" = "$want" ] && return 0
        sleep 0.2
    done
    t_fail "waited ${timeout}s for [$sql] = [$want], last got [$got]"
}

t_expect_sql() {
    local got
    got=$(t_sql "$1")
    [ "$got" = "$2" ] || t_fail "expected [$1] = [$2], got [$got]"
    t_log "ok: $1 = $2"
}

# Produce lines of a file to the topic with kcat, keyed by the text before
# the first TAB (so one fingerprint stays on one partition).
t_produce() {
    kcat -P -b "$TD_TEST_KAFKA_BROKERS" -t "${2:-$T_TOPIC}" -K $'\t' -z none < "$1" \
        || t_fail "kcat produce failed"
}
