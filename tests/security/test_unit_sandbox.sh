#!/usr/bin/env bash
# test_unit_sandbox.sh — triaged works under the restrictions of
# systemd/triaged.service that can be reproduced without systemd as PID 1:
#   ProtectSystem=strict      the whole file system read-only (a private
#                             mount namespace with / remounted read-only)
#   NoNewPrivileges=yes       setpriv --no-new-privs
#   CapabilityBoundingSet=    setpriv: empty bounding, inheritable and ambient
#   AmbientCapabilities=      sets (so uid 0 runs without any capability)
#   MemoryDenyWriteExecute=   prctl(PR_SET_MDWE, REFUSE_EXEC_GAIN): no W+X
#                             memory, so PCRE2's JIT falls back to its
#                             interpreter
# With HTTP and syslog (the shipped rules) against PostgreSQL and Redis:
# ready, an alert over HTTP (202, stored), a link down over TCP and its link
# up over UDP (alert firing then resolved: the rules' regexes run), a SIGHUP
# reload, a clean stop, and no error logged. Not reproduced here (they need
# systemd): the system call filter, address families, Protect* of kernel
# interfaces, PrivateTmp/PrivateDevices. Skipped with a message where the
# namespace or PR_SET_MDWE is not available.
source "$(dirname "$0")/../integration/lib.sh"
source "$(dirname "$0")/../integration/http_lib.sh"

PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)
cat >"$T_DIR/mdwe.py" <<'EOF'
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
    sys.exit("prctl(PR_SET_MDWE): " + os.strerror(ctypes.get_errno()))
os.execv(sys.argv[1], sys.argv[1:])
EOF
if ! "$PY" "$T_DIR/mdwe.py" /bin/true 2>/dev/null; then
    echo "SKIP: prctl(PR_SET_MDWE) is not available (Linux >= 6.3 needed)"
    exit 0
fi
if ! unshare -m --propagation private sh -c 'mount -o remount,bind,ro / && ! touch /.td_ro_probe' 2>/dev/null; then
    echo "SKIP: cannot make a read-only mount namespace here (needs root)"
    exit 0
fi

t_db
H_PORT=$(h_free_port)
H_URL=http://127.0.0.1:$H_PORT
SPORT=$(_stack_free_port) || t_fail "no free port"
h_tokens
cat >"$T_DIR/triaged.conf" <<CONF
[triaged]
instance = $T_NAME
[postgres]
conninfo = $T_PG
migrate = yes
[redis]
url = $TD_TEST_REDIS_URL
[plugins]
dir = $TD_BUILD_DIR/plugins
load = in_syslog in_http
[http]
listen = 127.0.0.1:$H_PORT
tokens = $T_DIR/tokens
[syslog]
tcp = 127.0.0.1:$SPORT
udp = 127.0.0.1:$SPORT
rules = $TD_SOURCE_DIR/config/syslog-rules.conf
[incident]
resolve_grace = 0s
CONF
LOG=$T_DIR/triaged.log
unshare -m --propagation private -- sh -c '
    mount -o remount,bind,ro / || exit 97
    exec setpriv --no-new-privs --bounding-set -all --inh-caps -all --ambient-caps -all \
        -- "$0" "$1" "$2" -c "$3"' "$PY" "$T_DIR/mdwe.py" "$TD_BUILD_DIR/triaged" "$T_DIR/triaged.conf" \
    >"$LOG" 2>&1 &
T_PID=$!
T_PIDS+=("$T_PID")
t_wait_until 30 "/readyz says ready" curl -sf "$H_URL/readyz"
pid=$(pgrep -f "^$TD_BUILD_DIR/triaged -c $T_DIR/triaged.conf" | head -1)
[ -n "$pid" ] || t_fail "cannot find the sandboxed triaged"
status=$(cat /proc/$pid/status)
grep -q '^NoNewPrivs:[[:space:]]*1' <<<"$status" || t_fail "NoNewPrivs is not set"
grep -q '^CapEff:[[:space:]]*0000000000000000' <<<"$status" || t_fail "it has effective capabilities"
grep -q '^CapBnd:[[:space:]]*0000000000000000' <<<"$status" || t_fail "its bounding set is not empty"
touch_out=$(nsenter -t "$pid" -m touch /.td_ro_probe 2>&1 || true)
grep -q 'Read-only file system' <<<"$touch_out" || t_fail "its file system is writable: $touch_out"
t_log "sandbox: no new privileges, no capabilities, read-only /, no W+X memory"

h_req POST /api/v1/alerts "$H_WRITE" '{"source":"api","resource":"web-01","check":"cpu"}'
h_expect 202 "j['accepted']=1"
t_expect_sql "SELECT count(*) FROM triaged.alert WHERE source = 'api'" 1

logger --rfc5424 --tcp --octet-count -n 127.0.0.1 -P "$SPORT" -p local7.err -t ios \
    "%LINK-3-UPDOWN: Interface Gi0/9, changed state to down" || t_fail "logger"
t_wait_sql "SELECT status, check_name, labels->>'interface' FROM triaged.alert WHERE source = 'syslog'" \
    "firing|link_down|Gi0/9" 30
logger --rfc3164 --udp -n 127.0.0.1 -P "$SPORT" -p local7.notice -t ios \
    "%LINK-3-UPDOWN: Interface Gi0/9, changed state to up" || t_fail "logger"
t_wait_sql "SELECT status FROM triaged.alert WHERE source = 'syslog'" "resolved" 30

kill -HUP "$pid"
t_wait_log "$LOG" 'msg="reloaded" restart_needed=no' 10
kill -TERM "$pid"
for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && t_fail "triaged did not stop"
wait "$T_PID" || t_fail "triaged exited $? in the sandbox"
if grep -E 'level=error|Sanitizer|runtime error' "$LOG"; then
    t_fail "errors logged in the sandbox"
fi
t_log "PASS"
