#!/usr/bin/env bash
# test_kafka_check.sh — `triaged -t` checks the [kafka] rdkafka.* keys the way
# in_kafka and out_kafka apply them at start: an unknown key, a bad value and a
# key triaged owns are each named with the plugin; a good key passes. Nothing
# is contacted (the brokers, PostgreSQL and Redis addresses are unreachable).
set -euo pipefail
SRC=${TD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${TD_BUILD_DIR:-$SRC/build}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

check() { # KEY-LINE EXPECTED-RC -> output in $out
    cat > "$dir/t.conf" <<CONF
[postgres]
conninfo = host=127.0.0.1 port=1 dbname=none
[redis]
url = redis://127.0.0.1:1/0
[kafka]
brokers = 127.0.0.1:9
$1
[plugins]
dir = $BUILD/plugins
load = in_kafka, out_kafka
CONF
    local rc=0
    out=$("$BUILD/triaged" -t -c "$dir/t.conf" 2>&1) || rc=$?
    [ "$rc" = "$2" ] || fail "'$1': exit $rc, expected $2: $out"
}

check "rdkafka.fetch.wait.max.ms = 10" 0
grep -q "configuration ok" <<<"$out" || fail "good key: $out"
echo "ok: a valid rdkafka key passes"

check "rdkafka.no.such.key = 1" 1
[ "$(grep -c 'rdkafka.no.such.key: No such configuration property' <<<"$out")" = 2 ] \
    || fail "unknown key not named for both plugins: $out"
grep -q "plugin in_kafka:" <<<"$out" && grep -q "plugin out_kafka:" <<<"$out" \
    || fail "plugins not named: $out"
echo "ok: an unknown key is named, once per plugin"

check "rdkafka.fetch.wait.max.ms = often" 1
grep -q 'rdkafka.fetch.wait.max.ms: Invalid value' <<<"$out" || fail "bad value: $out"
echo "ok: a bad value is named"

check "rdkafka.enable.auto.offset.store = true" 1
grep -q 'plugin in_kafka: \[kafka\] rdkafka.enable.auto.offset.store: set by triaged itself' <<<"$out" \
    || fail "owned key: $out"
echo "ok: a key triaged owns is refused"
