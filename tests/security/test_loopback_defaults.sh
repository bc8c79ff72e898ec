#!/usr/bin/env bash
# test_loopback_defaults.sh — nothing listens beyond this machine unless the
# configuration says so: [http] listen defaults to loopback, [syslog] has no
# default address (no address, no listener), and the annotated example
# (config/triaged.conf = `triaged --print-example`) shows loopback addresses
# for every listener and backend.
set -euo pipefail
SRC=${TD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${TD_BUILD_DIR:-$SRC/build}
fail() { echo "FAIL: $*" >&2; exit 1; }
loopback() { # every HOST:PORT of a list is on 127.0.0.0/8 or ::1
    for a in ${1//,/ }; do
        case "$a" in 127.*:*|\[::1\]:*|localhost:*) ;; *) return 1 ;; esac
    done
}

help=$("$BUILD/triaged" --help-config)
default() { awk -v k="$1" '$1 == k { print $3 }' <<<"$help"; }
d=$(default http.listen)
echo "http.listen default: $d"
loopback "$d" || fail "http.listen defaults to $d, not loopback"
for k in syslog.udp syslog.tcp; do
    d=$(default $k)
    echo "$k default: $d"
    [ "$d" = "-" ] || fail "$k has a default address ($d): syslog must listen only where told"
done
# http.c's own fallback, should the table lose its default
grep -q 'cfg->http_listen ? cfg->http_listen : "127.0.0.1:8080"' "$SRC/daemon/http.c" \
    || fail "daemon/http.c's fallback listen address is not loopback"

# The example file: every address shown is loopback.
ex="$SRC/config/triaged.conf"
"$BUILD/triaged" --print-example | cmp -s - "$ex" || fail "$ex differs from --print-example"
while IFS= read -r line; do
    v=${line#*= }
    echo "example: $line"
    loopback "$v" || fail "example shows a non-loopback address: $line"
done < <(grep -E '^;?(listen|udp|tcp|brokers) = ' "$ex")
grep -qE '^conninfo = host=127\.0\.0\.1 ' "$ex" || fail "example conninfo is not loopback"
grep -qE '^url = redis://127\.0\.0\.1:' "$ex" || fail "example redis url is not loopback"

# A [syslog] section without addresses is refused, not bound to a wildcard.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '[postgres]\nconninfo = host=127.0.0.1\n[redis]\nurl = redis://127.0.0.1:1/0\n[syslog]\nrules = %s\n[plugins]\ndir = %s\n' \
    "$SRC/config/syslog-rules.conf" "$BUILD/plugins" >"$tmp/t.conf"
set +e
out=$("$BUILD/triaged" -t -c "$tmp/t.conf" 2>&1)
rc=$?
set -e
echo "triaged -t on [syslog] without addresses: rc=$rc: $out"
[ "$rc" -eq 1 ] && grep -q 'neither udp nor tcp' <<<"$out" \
    || fail "a [syslog] section without addresses was not refused"
echo "PASS"
