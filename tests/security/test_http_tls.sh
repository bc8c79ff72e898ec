#!/usr/bin/env bash
# test_http_tls.sh — the HTTP API over TLS ([http] tls_cert, tls_key), with
# certificates made by the openssl command line and real clients (curl,
# openssl s_client):
#   - triaged -t names each broken setup: one key of two, a missing file, a
#     key that does not match the certificate; a key readable by others and
#     a tokens file writable by others are named in a warning at start;
#   - over https (verified against the test CA): /readyz, an alert posted
#     with a token (202, stored), the live feed streaming;
#   - cleartext HTTP on the TLS port gets no HTTP answer; a TLS 1.1 client
#     is refused in the handshake; the daemon keeps serving;
#   - SIGHUP with a renewed certificate: new connections get it; SIGHUP with
#     a broken file keeps the one in force.
source "$(dirname "$0")/../integration/lib.sh"
source "$(dirname "$0")/../integration/http_lib.sh"

C=$T_DIR/pki
mkdir -p "$C"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=triaged test CA" \
    -keyout "$C/ca.key" -out "$C/ca.pem" 2>/dev/null || t_fail "openssl: CA"
mkcert() { # NAME CN
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$2" -keyout "$C/$1.key" \
        -out "$C/$1.csr" 2>/dev/null || t_fail "openssl: $1 request"
    printf 'subjectAltName = IP:127.0.0.1, DNS:localhost\n' >"$C/$1.ext"
    openssl x509 -req -in "$C/$1.csr" -CA "$C/ca.pem" -CAkey "$C/ca.key" -CAcreateserial \
        -days 2 -extfile "$C/$1.ext" -out "$C/$1.pem" 2>/dev/null || t_fail "openssl: $1 cert"
}
mkcert first "triaged first"
mkcert second "triaged second"
cp "$C/first.pem" "$C/server.pem"
cp "$C/first.key" "$C/server.key"

t_db
h_tokens
H_PORT=$(h_free_port)
URL=https://127.0.0.1:$H_PORT

# ---- triaged -t on broken setups ------------------------------------------
check_fails() { # WHAT ERE (config lines on stdin)
    h_conf "$T_DIR/bad.conf"
    set +e
    out=$("$TD_BUILD_DIR/triaged" -t -c "$T_DIR/bad.conf" 2>&1)
    rc=$?
    set -e
    [ "$rc" -eq 1 ] && grep -Eq -- "$2" <<<"$out" || t_fail "-t on $1: rc=$rc: $out"
    t_log "ok: -t refuses $1: $(grep -E -- "$2" <<<"$out" | head -1)"
}
check_fails "a certificate without key" 'tls_cert and tls_key go together' <<CONF
tls_cert = $C/server.pem
CONF
check_fails "a missing key file" "cannot read $C/nothere.key: No such file or directory" <<CONF
tls_cert = $C/server.pem
tls_key = $C/nothere.key
CONF
check_fails "a key of another certificate" "cannot use the private key $C/second.key: .*key values mismatch" <<CONF
tls_cert = $C/server.pem
tls_key = $C/second.key
CONF
h_conf <<CONF
tls_cert = $C/server.pem
tls_key = $C/server.key
CONF
"$TD_BUILD_DIR/triaged" -t -c "$T_DIR/triaged.conf" || t_fail "-t refuses the good TLS setup"

# ---- serving over TLS --------------------------------------------------------
# Too open permissions are named at start (not refused).
chmod 0644 "$C/server.key"
chmod 0666 "$T_DIR/tokens"
t_start
t_wait_log "$T_DIR/triaged.log" "file permissions too open\" file=$C/server.key what=\"TLS private key.* mode=0644"
t_wait_log "$T_DIR/triaged.log" "file permissions too open\" file=$T_DIR/tokens what=\"tokens: writable by group or others\" mode=0666"
chmod 0600 "$C/server.key"
chmod 0644 "$T_DIR/tokens"
t_wait_log "$T_DIR/triaged.log" "http: listening.*port=$H_PORT tls=yes"
cu() { curl -s --cacert "$C/ca.pem" "$@"; }
t_wait_until 30 "/readyz over TLS" cu -f "$URL/readyz"
code=$(cu -o "$T_DIR/b" -w '%{http_code}' -H "Authorization: Bearer $H_WRITE" \
    -H 'Content-Type: application/json' --data '{"source":"tls","resource":"web-01","check":"cpu"}' \
    "$URL/api/v1/alerts")
[ "$code" = 202 ] || t_fail "alert over TLS: HTTP $code $(cat "$T_DIR/b")"
t_expect_sql "SELECT count(*) FROM triaged.alert WHERE source = 'tls'" 1
subject() { openssl s_client -connect "127.0.0.1:$H_PORT" -CAfile "$C/ca.pem" </dev/null 2>/dev/null |
            openssl x509 -noout -subject 2>/dev/null; }
subject | grep -q 'CN *= *triaged first' || t_fail "not serving the first certificate: $(subject)"

cu -N -H "Authorization: Bearer $H_READ" "$URL/api/v1/feed" >"$T_DIR/feed" &
FEED=$!
t_on_exit "kill $FEED 2>/dev/null || true"
t_wait_until 10 "the feed's greeting over TLS" grep -q 'triaged live feed' "$T_DIR/feed"
kill $FEED

# ---- what TLS refuses ----------------------------------------------------------
code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$H_PORT/healthz" || true)
t_log "cleartext HTTP on the TLS port: HTTP code $code"
[ "$code" = 000 ] || t_fail "cleartext HTTP got an answer ($code)"
set +e
old=$(openssl s_client -connect "127.0.0.1:$H_PORT" -tls1_1 -cipher 'DEFAULT@SECLEVEL=0' </dev/null 2>&1)
rc=$?
set -e
t_log "TLS 1.1 client: rc=$rc: $(grep -Eo 'alert [a-z ]+|no protocols available|unsupported protocol' <<<"$old" | head -1)"
[ "$rc" -ne 0 ] && grep -Eq 'alert protocol version|unsupported protocol' <<<"$old" \
    || t_fail "a TLS 1.1 handshake was not refused for its version: $old"
t_wait_until 10 "still serving" cu -f "$URL/healthz"

# ---- reload ---------------------------------------------------------------------
cp "$C/second.pem" "$C/server.pem"
cp "$C/second.key" "$C/server.key"
kill -HUP "$T_PID"
t_wait_log "$T_DIR/triaged.log" 'http: TLS certificate loaded'
subject | grep -q 'CN *= *triaged second' || t_fail "a reload did not apply the renewed certificate: $(subject)"
echo "not a certificate" >"$C/server.pem"
kill -HUP "$T_PID"
t_wait_log "$T_DIR/triaged.log" 'http: TLS files not valid; keeping the old ones'
subject | grep -q 'CN *= *triaged second' || t_fail "a broken file replaced the certificate: $(subject)"
cu -f "$URL/healthz" >/dev/null || t_fail "not serving after a broken reload"
t_log "PASS"
