#!/usr/bin/env bash
# bench_tls.sh [REQUESTS] [CONNECTIONS] — what TLS costs the HTTP API: two
# triaged on the same stack, one plain, one with [http] tls_cert/tls_key
# (RSA-2048 made here, or ECDSA P-256 with KEY=ec), each asked (1) REQUESTS GET /healthz over one
# kept-alive connection and (2) CONNECTIONS new connections of one request
# each (so a full handshake each), by one Python client. Prints requests/s
# and triaged's CPU time per request for both, and the ratios. Starts a
# stack when none is exported. Figures only, no assertion.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
export TD_SOURCE_DIR=$SRC TD_BUILD_DIR=${TD_BUILD_DIR:-$SRC/build}
REQ=${1:-20000}
CONNS=${2:-2000}
if [ -z "${TD_TEST_PG_ADMIN_CONNINFO:-}" ]; then
    source "$SRC/tests/stack/stack.sh"
    stack_up
fi
source "$SRC/tests/integration/lib.sh"
source "$SRC/tests/integration/http_lib.sh"

C=$T_DIR/pki
mkdir -p "$C"
# KEY=ec for an ECDSA P-256 key instead of RSA-2048.
if [ "${KEY:-rsa}" = ec ]; then newkey=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1); else newkey=(-newkey rsa:2048); fi
openssl req -x509 "${newkey[@]}" -nodes -days 2 -subj "/CN=127.0.0.1" \
    -addext "subjectAltName = IP:127.0.0.1" -keyout "$C/key.pem" -out "$C/cert.pem" 2>/dev/null
t_db
P1=$(h_free_port) P2=$(h_free_port)
for mode in plain tls; do
    port=$P1; [ $mode = tls ] && port=$P2
    {
        printf '[triaged]\ninstance = bench-%s\nlog_level = info\n[postgres]\nconninfo = %s\nmigrate = yes\n' "$mode" "$T_PG"
        printf '[redis]\nurl = %s\n[plugins]\ndir = %s/plugins\n[http]\nlisten = 127.0.0.1:%s\nopen_reads = yes\nrate_limit = 0\n' \
            "$TD_TEST_REDIS_URL" "$TD_BUILD_DIR" "$port"
        [ $mode = tls ] && printf 'tls_cert = %s\ntls_key = %s\n' "$C/cert.pem" "$C/key.pem"
    } >"$T_DIR/$mode.conf"
    t_start "$T_DIR/$mode.conf" "$T_DIR/$mode.log"
    eval "PID_$mode=$T_PID"
done
cat >"$T_DIR/client.py" <<'PY'
import http.client, ssl, sys, time
host, port, tls, n, conns, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "tls", int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
ctx = ssl.create_default_context(cafile=cafile) if tls else None
def connect():
    return http.client.HTTPSConnection(host, port, context=ctx) if tls else http.client.HTTPConnection(host, port)
def get(c):
    c.request("GET", "/healthz"); r = c.getresponse(); r.read()
    assert r.status == 200, r.status
c = connect(); get(c)
t0 = time.time()
for _ in range(n): get(c)
t1 = time.time(); c.close()
for _ in range(conns):
    c = connect(); get(c); c.close()
t2 = time.time()
print(f"{n / (t1 - t0):.0f} {conns / (t2 - t1):.0f}")
PY
cpu() { awk '{ print $14 + $15 }' /proc/$1/stat; }
hz=$(getconf CLK_TCK)
per() { awk -v c="$1" -v hz="$hz" -v n="$2" 'BEGIN { printf "%.0f", c / hz * 1e6 / n }'; }
for mode in plain tls; do
    port=$P1; [ $mode = tls ] && port=$P2
    pid=$(eval echo \$PID_$mode)
    t_wait_until 30 "$mode ready" curl -sfk "$([ $mode = tls ] && echo https || echo http)://127.0.0.1:$port/readyz"
    c0=$(cpu "$pid")
    read -r ka _ < <(python3 "$T_DIR/client.py" 127.0.0.1 "$port" "$mode" "$REQ" 0 "$C/cert.pem")
    c1=$(cpu "$pid")
    read -r _ nc < <(python3 "$T_DIR/client.py" 127.0.0.1 "$port" "$mode" 1 "$CONNS" "$C/cert.pem")
    c2=$(cpu "$pid")
    ka_us=$(per $((c1 - c0)) "$REQ"); nc_us=$(per $((c2 - c1)) "$CONNS")
    eval "KA_$mode=$ka NC_$mode=$nc KAUS_$mode=$ka_us NCUS_$mode=$nc_us"
    echo "$mode: kept-alive $ka requests/s (triaged $ka_us us CPU each), new connections $nc/s (triaged $nc_us us CPU each)"
done
r() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "tls/plain: kept-alive $(r "$KA_tls" "$KA_plain")x requests/s, $(r "$KAUS_tls" "$KAUS_plain")x CPU; new connections $(r "$NC_tls" "$NC_plain")x per second, $(r "$NCUS_tls" "$NCUS_plain")x CPU (load $(cut -d' ' -f1 /proc/loadavg))"
