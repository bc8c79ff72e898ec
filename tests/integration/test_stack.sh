#!/usr/bin/env bash
# test_stack.sh -- the test stack itself works: Redis answers, PostgreSQL 15
# runs with database triaged, and the Kafka-protocol broker round-trips 1000
# messages through kcat over every partition of `alerts`.
#
# Needs the TD_TEST_* environment of tests/stack/stack.sh (stack_up); fails,
# never skips, when it is missing.
set -uo pipefail

failures=0
pass() { printf 'ok   %s\n' "$*"; }
fail() { printf 'FAIL %s\n' "$*"; failures=$((failures + 1)); }

missing=
for v in TD_TEST_DIR TD_TEST_REDIS_URL TD_TEST_PG_CONNINFO TD_TEST_KAFKA_BROKERS; do
    [ -n "${!v:-}" ] || missing="$missing $v"
done
if [ -n "$missing" ]; then
    echo "FAIL test stack environment missing:$missing" >&2
    echo "     start it first: source tests/stack/stack.sh && stack_up" >&2
    exit 1
fi
partitions=${TD_TEST_KAFKA_PARTITIONS:-8}
work=$(mktemp -d "${TMPDIR:-/tmp}/test_stack.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT

# Redis.
echo "check: redis-cli ping on $TD_TEST_REDIS_URL"
out=$(timeout 10 redis-cli -u "$TD_TEST_REDIS_URL" ping 2>&1)
if [ "$out" = PONG ]; then pass "redis answers PONG"; else fail "redis ping: $out"; fi

# PostgreSQL.
echo "check: psql select 1 on $TD_TEST_PG_CONNINFO"
out=$(timeout 10 psql "$TD_TEST_PG_CONNINFO" -X -Atc 'select 1' 2>&1)
if [ "$out" = 1 ]; then pass "postgresql answers select 1 in database triaged"; else fail "psql select 1: $out"; fi
out=$(timeout 10 psql "$TD_TEST_PG_CONNINFO" -X -Atc 'show server_version_num' 2>&1)
if [[ $out =~ ^[0-9]+$ ]] && [ "$out" -ge 150000 ]; then
    pass "postgresql server_version_num $out >= 150000"
else
    fail "postgresql server_version_num: $out"
fi

# Kafka: metadata.
echo "check: kcat -L on $TD_TEST_KAFKA_BROKERS"
if timeout 30 kcat -L -b "$TD_TEST_KAFKA_BROKERS" -t alerts >"$work/meta" 2>&1; then
    got=$(sed -n 's/.*topic "alerts" with \([0-9]*\) partitions.*/\1/p' "$work/meta")
    if [ "$got" = "$partitions" ]; then
        pass "topic alerts has $partitions partitions"
    else
        fail "topic alerts has '${got:-?}' partitions, want $partitions"; cat "$work/meta"
    fi
else
    fail "kcat -L failed"; cat "$work/meta"
fi

# Kafka: 1000 messages in, the same 1000 out. Random keys spread them over
# the partitions; each message is unique so duplicates would show.
echo "check: produce 1000 messages to alerts and consume them back"
run=$RANDOM$RANDOM
for i in $(seq 1 1000); do printf 'k%d:%s-msg-%d\n' "$i" "$run" "$i"; done >"$work/sent"
if timeout 60 kcat -P -b "$TD_TEST_KAFKA_BROKERS" -t alerts -K : -X acks=all \
        -l "$work/sent" 2>"$work/produce.err"; then
    pass "kcat produced 1000 messages"
else
    fail "kcat -P failed"; cat "$work/produce.err"
fi
# -e stops at the end of every partition; -o beginning reads them all.
# Only this run's messages count, so a rerun on the same stack still passes.
if timeout 60 kcat -C -b "$TD_TEST_KAFKA_BROKERS" -t alerts -o beginning -e -q \
        -f '%p %s\n' >"$work/recv.all" 2>"$work/consume.err"; then
    grep -F " $run-msg-" "$work/recv.all" | cut -d' ' -f2 | sort >"$work/recv"
    n=$(wc -l <"$work/recv")
    if [ "$n" -eq 1000 ] && cut -d: -f2 "$work/sent" | sort | cmp -s - "$work/recv"; then
        pass "consumed exactly the 1000 messages sent"
    else
        fail "consumed $n of this run's messages, want the 1000 sent"
    fi
    used=$(grep -F " $run-msg-" "$work/recv.all" | cut -d' ' -f1 | sort -u | wc -l)
    if [ "$used" -gt 1 ]; then
        pass "messages came from $used partitions"
    else
        fail "messages came from $used partition(s), want more than 1"
    fi
else
    fail "kcat -C failed"; cat "$work/consume.err"
fi

if [ "$failures" -ne 0 ]; then
    echo "test_stack: $failures check(s) failed"
    exit 1
fi
echo "test_stack: all checks passed"
