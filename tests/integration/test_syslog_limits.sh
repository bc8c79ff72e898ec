#!/usr/bin/env bash
# in_syslog's limits: max_connections, idle_timeout, and backpressure (and
# keep_unmatched, which needs nothing else). With
# a queue of 100 messages, 20,000 matching lines sent as fast as TCP takes
# them fill the pipeline again and again: in_syslog stops reading until the
# pipeline has room, and not one line is lost (occurrences exact).
source "$(dirname "$0")/lib.sh"
t_db
PORT=$(_stack_free_port) || t_fail "no free port"
t_conf <<CONF
load = in_syslog
[syslog]
tcp = 127.0.0.1:$PORT
rules = $TD_SOURCE_DIR/config/syslog-rules.conf
max_connections = 2
idle_timeout = 1s
keep_unmatched = yes
unmatched_severity = minor
[pipeline]
queue_limit = 100
batch_size = 50
CONF
t_start
L="listener=\"tcp:127.0.0.1:$PORT\""

# ---- keep_unmatched: a line no rule matches becomes a minor alert ---------
logger --rfc5424 --tcp --octet-count -n 127.0.0.1 -P "$PORT" -t myapp "just chatting" ||
    t_fail "logger"
t_wait_sql "SELECT source, resource, check_name, severity, summary FROM triaged.alert" \
    "syslog|$(hostname)|syslog:myapp|minor|just chatting" 30

# ---- max_connections and idle_timeout ---------------------------------------
python3 - "$PORT" <<'PY' || t_fail "connection limits"
import socket, sys, time
port = int(sys.argv[1])
a = socket.create_connection(("127.0.0.1", port))
b = socket.create_connection(("127.0.0.1", port))
time.sleep(0.2)                      # both accepted
c = socket.create_connection(("127.0.0.1", port))
c.settimeout(5)
assert c.recv(1) == b"", "third connection was not closed at once"
t0 = time.time()
a.settimeout(10)
assert a.recv(1) == b"", "idle connection was not closed"
waited = time.time() - t0
assert 0.2 < waited < 5, f"idle close after {waited:.1f} s"
print(f"third connection refused, idle one closed after {waited:.1f} s")
PY

# ---- backpressure: 20,000 matching lines into a queue of 100 ----------------
python3 - "$PORT" <<'PY' || t_fail "sender"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
buf = b"".join(b"<187>Nov 25 10:00:00 sw1 %%LINK-3-UPDOWN: Interface Bp%d, changed state to down\n"
               % (n % 50) for n in range(20000))
s.sendall(buf)
s.shutdown(socket.SHUT_WR)
s.settimeout(120)
while s.recv(65536):   # triaged closes once it has read everything
    pass
PY
t_wait_sql "SELECT count(*), sum(occurrences), min(occurrences), max(occurrences)
    FROM triaged.alert WHERE labels->>'interface' LIKE 'Bp%'" "50|20000|400|400" 120
t_stop "$T_PID"
metric() {
    local v
    v=$(grep -F "name=$1 plugin=\"in_syslog\"$2 value=" "$T_DIR/triaged.log" | tail -1 | sed 's/.*value=//')
    echo "${v:-0}"
}
[ "$(metric syslog_connections_rejected ",$L,reason=\"max_connections\"")" = 1 ] || t_fail "rejected != 1"
[ "$(metric syslog_connections_closed ",$L,reason=\"idle\"")" -ge 1 ] || t_fail "no idle close counted"
[ "$(metric syslog_alerts_submitted ",$L")" = 20001 ] || t_fail "submitted != 20001 (20,000 + 1 unmatched kept)"
pauses=$(metric syslog_backpressure_pauses "")
[ "$pauses" -ge 1 ] || t_fail "the pipeline never filled (pauses = $pauses)"
t_log "ok: 1 connection refused, idle closed, 20001 submitted, $pauses backpressure pauses, no loss"
t_log "passed"
