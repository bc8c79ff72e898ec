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

# Sanitizer and valgrind reports of every program this test runs (triaged,
# triagectl) go to files in T_DIR, and at exit any report fails the test
# (_t_check_reports), even one written while the daemon shut down in the
# EXIT trap. ASan/UBSan options are the caller's (scripts/test sets them for
# the sanitizer build) plus this log_path; a plain build ignores them.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}log_path=$T_DIR/sanitizer"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}log_path=$T_DIR/sanitizer"
# TD_VALGRIND=1 runs triaged under valgrind memcheck (a plain build): leaks
# definitely lost and invalid accesses are errors; waits are longer.
T_VALGRIND=${TD_VALGRIND:-0}
T_SLOW=1
[ "$T_VALGRIND" = 1 ] && T_SLOW=6

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
        for _ in $(seq $((100 * T_SLOW))); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
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

# triagectl's config for the test's database ($T_DIR/c.conf); sets T_CTL to
# the command that uses it (an array: "${T_CTL[@]}" migrate).
t_ctl() {
    printf '[postgres]\nconninfo = %s\n[redis]\nurl = %s\n' "$T_PG" "$TD_TEST_REDIS_URL" \
        > "$T_DIR/c.conf"
    T_CTL=("$TD_BUILD_DIR/triagectl" -c "$T_DIR/c.conf")
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
# the mock broker holds a rebalance for session.timeout.ms - 1 s
rdkafka.session.timeout.ms = 6000
[plugins]
dir = $TD_BUILD_DIR/plugins
CONF
        [ -t 0 ] || cat
    } > "$f"
}

# Start triaged on a config; waits until it says it started. Sets T_PID.
t_start() {
    local conf=${1:-$T_DIR/triaged.conf} log=${2:-$T_DIR/triaged.log}
    local wrap=()
    [ "$T_VALGRIND" = 1 ] && wrap=(valgrind --leak-check=full --errors-for-leak-kinds=definite
        --show-leak-kinds=definite --error-exitcode=99 --num-callers=30
        "--suppressions=$TD_SOURCE_DIR/tests/valgrind.supp"
        "--log-file=$T_DIR/valgrind.%p.log")
    "${wrap[@]}" "$TD_BUILD_DIR/triaged" -c "$conf" >>"$log" 2>&1 &
    T_PID=$!
    T_PIDS+=("$T_PID")
    local deadline=$((SECONDS + 30 * T_SLOW))
    until grep -q 'msg="triaged started"' "$log" 2>/dev/null; do
        kill -0 "$T_PID" 2>/dev/null || t_fail "triaged exited at start"
        [ $SECONDS -lt $deadline ] || t_fail "triaged did not start within $((30 * T_SLOW)) s"
        sleep 0.1
    done
}

# Wait until in_kafka consumes its assigned partitions (the group joined):
# messages produced after this are read as they come.
t_wait_consuming() {
    local log=${1:-$T_DIR/triaged.log} deadline=$((SECONDS + 30 * T_SLOW))
    until grep -q 'msg="kafka: consuming from the stored positions"' "$log" 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || t_fail "in_kafka did not join its group within $((30 * T_SLOW)) s"
        sleep 0.1
    done
}

t_sql() { psql "$T_PG" -qAtX -c "$1"; }

# t_arrays_batch OPTS: the daemon's batch statement (triaged.ingest_arrays)
# on the segments in psql's variable b (a JSON array of segments as the
# engine takes them; a segment with "up"/"svc" keys also describes its CI),
# OPTS the options' JSON; prints the number of rows it returned. Pipe it to
# psql with -v b=... (or \set b `cat FILE` first: an argument holds 128 kB).
t_arrays_batch() {
    cat <<SQL
SELECT count(*) FROM (
SELECT r.* FROM (SELECT array_agg(e->>'fp' ORDER BY o) fp, array_agg(e->>'source' ORDER BY o) src,
               array_agg(e->>'resource' ORDER BY o) res, array_agg(e->>'check' ORDER BY o) chk,
               array_agg(e->>'dedup_key' ORDER BY o) dk, array_agg((e->>'ci_id')::bigint ORDER BY o) ci,
               array_agg(e->>'summary' ORDER BY o) sm, array_agg(e->'labels' ORDER BY o) lab,
               array_agg(e->>'severity' ORDER BY o) sev, array_agg(e->>'status' ORDER BY o) st,
               array_agg((e->>'n')::bigint ORDER BY o) n,
               array_agg((e->>'first')::timestamptz ORDER BY o) t0,
               array_agg((e->>'last')::timestamptz ORDER BY o) t1,
               jsonb_agg(jsonb_build_object('ci_id', e->'ci_id', 'up', e->'up', 'svc', e->'svc')
                         ORDER BY o) FILTER (WHERE e ? 'up') cis
          FROM jsonb_array_elements(:'b'::jsonb) WITH ORDINALITY t(e, o)) x,
       triaged.ingest_arrays(x.fp, x.src, x.res, x.chk, x.dk, x.ci, x.sm, x.lab, x.sev, x.st,
                             x.n, x.t0, x.t1, x.cis, NULL, '$1'::jsonb) r) y;
SQL
}

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

# ---- generic helpers for stream tests ---------------------------------------

T_EXIT_HOOKS=()

# Run CMD (a string, eval'd) at exit, before triaged is stopped and the
# databases dropped (e.g. restore a stopped PostgreSQL). Hooks must not fail.
t_on_exit() { T_EXIT_HOOKS+=("$1"); }

_t_exit() {
    local rc=$? h
    for h in "${T_EXIT_HOOKS[@]}"; do eval "$h" || true; done
    t_cleanup
    _t_check_reports || rc=1
    exit $rc
}

# Fails (prints the reports) when a sanitizer or valgrind reported anything.
_t_check_reports() {
    local f bad=0
    for f in "$T_DIR"/sanitizer.*; do
        [ -s "$f" ] || continue
        printf '%s: FAIL: sanitizer report %s:\n' "$T_NAME" "$(basename "$f")" >&2
        head -n 60 "$f" >&2
        bad=1
    done
    for f in "$T_DIR"/valgrind.*.log; do
        [ -f "$f" ] || continue
        if ! grep -q 'ERROR SUMMARY' "$f"; then
            t_log "valgrind $(basename "$f"): no summary (killed, e.g. kill -9)"
        elif ! grep -q 'ERROR SUMMARY: 0 errors' "$f"; then
            printf '%s: FAIL: valgrind %s:\n' "$T_NAME" "$(basename "$f")" >&2
            grep -A 30 -E 'Invalid|uninitialised|definitely lost in|ERROR SUMMARY' "$f" | head -n 80 >&2
            bad=1
        else
            t_log "valgrind $(basename "$f"): $(grep -o 'ERROR SUMMARY: .*' "$f")"
        fi
    done
    return $bad
}
trap _t_exit EXIT

# Another fresh database with the schema (dropped at exit); prints its
# conninfo. Usually called as x=$(t_db_extra name), in a subshell: so the
# exit hook finds them by their prefix, not by a list kept here.
_t_extra_prefix() { echo "td_${T_NAME//[^a-z0-9]/_}_$$_x_"; }
t_db_extra() {
    local db; db="$(_t_extra_prefix)${1:?name}"
    psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
    psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "CREATE DATABASE $db" >/dev/null
    echo "$TD_TEST_PG_ADMIN_CONNINFO dbname=$db"
}

# t_db_migrated NAME [TABLE...]: an extra database (t_db_extra) migrated by
# this build's triagectl; autovacuum off on the triaged tables named, so
# that no autoanalyze replaces a session's plans during a test. Prints its
# conninfo; fails the test (exit 1 from the command substitution: the
# caller adds `|| exit 1`) when a step fails.
t_db_migrated() {
    local name=${1:?name} pg t
    shift
    pg=$(t_db_extra "$name")
    printf '[postgres]\nconninfo = %s\n[redis]\nurl = redis://127.0.0.1:1/0\n' "$pg" > "$T_DIR/conf"
    "$TD_BUILD_DIR/triagectl" -c "$T_DIR/conf" migrate > "$T_DIR/migrate.log" 2>&1 \
        || t_fail "migrate: $(cat "$T_DIR/migrate.log")"
    for t in "$@"; do
        psql "$pg" -qAtX -v ON_ERROR_STOP=1 \
            -c "ALTER TABLE triaged.$t SET (autovacuum_enabled = off)" >/dev/null \
            || t_fail "autovacuum off on $t"
    done
    echo "$pg"
}

_t_drop_extra_dbs() {
    local db prefix
    [ "${TD_KEEP_DB:-0}" != 1 ] || return 0
    prefix=$(_t_extra_prefix)
    for db in $(psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc \
            "SELECT datname FROM pg_database WHERE starts_with(datname, '$prefix')" 2>/dev/null); do
        psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    done
}
t_on_exit _t_drop_extra_dbs

# A fresh topic name with N partitions, printed (t_topic sets T_TOPIC instead).
t_topic_extra() {
    local t="${1:?name}_${T_NAME//[^a-z0-9]/_}_$$_$RANDOM"
    stack_kafka_control "topic $t ${2:-8}" >/dev/null || t_fail "cannot create topic $t"
    echo "$t"
}

# t_gen FILE N ARGS...: tests/bench/gen_alerts.py N ARGS > FILE.
t_gen() {
    local f=$1
    shift
    python3 "$TD_SOURCE_DIR/tests/bench/gen_alerts.py" "$@" >"$f" || t_fail "gen_alerts.py $*"
}

# t_split FILE FROM TO OUT: lines FROM..TO (1-based, inclusive) of FILE to OUT.
t_split() { sed -n "${2},${3}p" "$1" >"$4"; }

# t_wait_until TIMEOUT DESCRIPTION CMD...: poll CMD (quietly) until it
# succeeds; fail with DESCRIPTION after TIMEOUT seconds.
t_wait_until() {
    local timeout=$1 what=$2 deadline
    shift 2
    deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || t_fail "waited ${timeout}s for: $what"
        sleep 0.2
    done
}

# t_wait_log LOG ERE [TIMEOUT]: wait until a line of LOG matches ERE.
t_wait_log() {
    t_wait_until "${3:-30}" "/$2/ in $(basename "$1")" grep -Eq -- "$2" "$1"
}

# Is process PID alive (not a zombie)?
t_alive() { _stack_alive "$1"; }

# t_kill9 PID: SIGKILL and wait until it is gone.
t_kill9() {
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    t_wait_until 10 "pid $1 to die" eval "! _stack_alive $1"
}

# t_stop PID: SIGTERM (a graceful stop: drains in-flight alerts), wait <= 30 s.
t_stop() {
    kill -TERM "$1" 2>/dev/null || true
    t_wait_until $((30 * T_SLOW)) "triaged pid $1 to stop on SIGTERM" eval "! _stack_alive $1"
    wait "$1" 2>/dev/null || true
}

# Firing messages in a key<TAB>json file (gen_alerts.py output or the like).
t_count_firing() {
    python3 - "$1" <<'PY'
import json, sys
n = 0
with open(sys.argv[1], "rb") as f:
    for line in f:
        try:
            m = json.loads(line.split(b"\t", 1)[1])
        except Exception:
            continue
        if isinstance(m, dict) and m.get("status", "firing") == "firing":
            n += 1
print(n)
PY
}

# t_topic_report TOPIC: per partition, the first offset still held and the
# number of messages; a first offset above 0 means the broker dropped some
# (the mock broker keeps only ~5 MB per partition).
t_topic_report() {
    kcat -C -b "$TD_TEST_KAFKA_BROKERS" -t "${1:-$T_TOPIC}" -o beginning -e -q \
        -f '%p %o\n' 2>/dev/null |
        awk '{ if (!($1 in lo)) lo[$1] = $2; n[$1]++ }
             END { for (p in n) { printf "partition %s: first offset %s, %d messages%s\n",
                   p, lo[p], n[p], (lo[p] > 0 ? " (LOW WATERMARK ABOVE 0: messages dropped)" : "") } }' |
        sort -n -k2
}

# t_diag_alerts MSGFILE... [-- CONNINFO]: which fingerprints' occurrences
# differ from the firing messages in the files (source, resource, check),
# with the highest seq label stored and expected; printed to stderr.
t_diag_alerts() {
    local pg=$T_PG files=()
    while [ $# -gt 0 ]; do
        if [ "$1" = -- ]; then pg=$2; break; fi
        files+=("$1")
        shift
    done
    {
        echo "--- diagnosis: occurrences per fingerprint (expected vs stored)"
        psql "$pg" -qAtX -F $'\t' -c "SELECT source, resource, check_name, occurrences,
                coalesce(labels->>'seq', '') FROM triaged.alert" 2>&1 |
            python3 -c '
import json, sys
exp, maxseq = {}, {}
for fn in sys.argv[1:]:
    with open(fn, "rb") as f:
        for line in f:
            try:
                m = json.loads(line.split(b"\t", 1)[1])
            except Exception:
                continue
            if not isinstance(m, dict) or m.get("status", "firing") != "firing":
                continue
            k = (m.get("source"), m.get("resource"), m.get("check"))
            exp[k] = exp.get(k, 0) + 1
            s = (m.get("labels") or {}).get("seq")
            if s is not None:
                maxseq[k] = max(maxseq.get(k, -1), int(s))
got = {}
for line in sys.stdin:
    p = line.rstrip("\n").split("\t")
    if len(p) < 5:
        print("  psql:", line.rstrip()); continue
    got[(p[0], p[1], p[2])] = (int(p[3]), p[4])
bad = 0
for k in sorted(set(exp) | set(got)):
    e = exp.get(k, 0); g = got.get(k, (0, ""))
    if e != g[0]:
        bad += 1
        if bad <= 20:
            print("  %s/%s/%s: expected %d, stored %d (stored seq %s, last seq sent %s)"
                  % (k + (e, g[0], g[1] or "-", maxseq.get(k, "-"))))
print("  %d of %d fingerprints differ; expected total %d, stored total %d"
      % (bad, len(exp), sum(exp.values()), sum(v[0] for v in got.values())))
' "${files[@]}"
    } >&2 || true
}

# t_check_integrity FINGERPRINTS INCIDENTS: the invariants of §4 that hold
# whatever happened: one alert row per fingerprint, as many as expected, no
# resource with two open incidents, one incident per resource, every alert in
# exactly one incident and named once in the timelines as it joined, and an
# intact audit chain. CONF (default $T_DIR/triaged.conf) is for triagectl.
t_check_integrity() {
    t_expect_sql "SELECT count(*) FROM (SELECT fingerprint FROM triaged.alert GROUP BY 1 HAVING count(*) > 1) d" "0"
    t_expect_sql "SELECT count(*), count(DISTINCT fingerprint), count(DISTINCT (source, resource, check_name)) FROM triaged.alert" "$1|$1|$1"
    t_expect_sql "SELECT count(*) FROM (SELECT resource FROM triaged.incident WHERE status IN ('new', 'acknowledged') GROUP BY 1 HAVING count(*) > 1) d" "0"
    t_expect_sql "SELECT count(*), count(DISTINCT resource) FROM triaged.incident" "$2|$2"
    t_expect_sql "SELECT count(*), count(DISTINCT alert_id) FROM triaged.incident_alert" "$1|$1"
    # the timelines name each alert once as it joined (a replayed message
    # must not attach an alert again)
    t_expect_sql "SELECT count(*), count(DISTINCT f) FROM triaged.incident_event e,
        jsonb_array_elements_text(e.detail->'fingerprints') f
        WHERE e.kind IN ('opened', 'alerts_attached')" "$1|$1"
    local out
    out=$("$TD_BUILD_DIR/triagectl" -c "${3:-$T_DIR/triaged.conf}" audit verify 2>&1) ||
        t_fail "triagectl audit verify exited $?: $out"
    t_log "ok: triagectl audit verify: $out"
}
