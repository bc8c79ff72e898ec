#!/usr/bin/env bash
# Debian's rsyslog forwarding to triaged with omfwd over TCP (RFC 5424,
# octet-counted), the way a relay in front of network gear would. A private
# rsyslogd (own config, pid file and work dir in the test folder) takes
# messages from logger on its imtcp port and forwards them.
#   1. link down then up: one alert firing then resolved, one incident
#      opened then resolved;
#   2. 100,000 sequenced lines through rsyslog, every tenth a link-down line
#      for one of 100 interfaces: exactly 100 alerts with 100 occurrences
#      each, and the shutdown metrics count every line.
source "$(dirname "$0")/lib.sh"
command -v rsyslogd >/dev/null || t_fail "rsyslogd not installed (apt-get install rsyslog)"
t_db
PORT=$(_stack_free_port) || t_fail "no free port"
RPORT=$(_stack_free_port "$PORT") || t_fail "no free port"
HOST=$(hostname)
t_conf <<CONF
load = in_syslog
[syslog]
tcp = 127.0.0.1:$PORT
rules = $TD_SOURCE_DIR/config/syslog-rules.conf
[incident]
resolve_grace = 1s
CONF
t_start

mkdir -p "$T_DIR/rs"
cat > "$T_DIR/rsyslog.conf" <<CONF
global(workDirectory="$T_DIR/rs" maxMessageSize="8k")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="$RPORT")
action(type="omfwd" target="127.0.0.1" port="$PORT" protocol="tcp"
       TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format"
       queue.type="LinkedList" queue.size="200000" action.resumeRetryCount="-1")
CONF
rsyslogd -n -f "$T_DIR/rsyslog.conf" -i "$T_DIR/rsyslog.pid" >"$T_DIR/rsyslog.log" 2>&1 &
RS_PID=$!
t_on_exit "kill -TERM $RS_PID 2>/dev/null; wait $RS_PID 2>/dev/null"
t_wait_until 20 "rsyslogd listening on $RPORT" bash -c "exec 3<>/dev/tcp/127.0.0.1/$RPORT"

send() { logger --rfc5424 --tcp --octet-count -n 127.0.0.1 -P "$RPORT" -p local7.err -t ios "$@"; }

# ---- 1. link down, then up ----------------------------------------------
send "%LINK-3-UPDOWN: Interface Gi0/7, changed state to down" || t_fail "logger"
t_wait_sql "SELECT status, resource, dedup_key FROM triaged.alert" "firing|$HOST|link/$HOST/Gi0/7" 30
t_wait_sql "SELECT count(*), min(status) FROM triaged.incident" "1|new" 30
send "%LINK-3-UPDOWN: Interface Gi0/7, changed state to up" || t_fail "logger"
t_wait_sql "SELECT count(*), min(status), sum(occurrences) FROM triaged.alert" "1|resolved|1" 30
t_wait_sql "SELECT count(*), min(status) FROM triaged.incident" "1|resolved" 30
t_expect_sql "SELECT string_agg(kind, ',' ORDER BY id) FROM triaged.incident_event
    WHERE kind IN ('opened', 'resolved')" "opened,resolved"

# ---- 2. 100,000 sequenced lines ------------------------------------------
python3 - "$T_DIR/lines" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    for n in range(100000):
        if n % 10 == 0:
            f.write(f"seq {n}: %LINK-3-UPDOWN: Interface Seq{n // 10 % 100}, changed state to down\n")
        else:
            f.write(f"seq {n}: routine line {n}\n")
PY
send -f "$T_DIR/lines" || t_fail "logger -f"
t_wait_sql "SELECT count(*), sum(occurrences), min(occurrences), max(occurrences)
    FROM triaged.alert WHERE labels->>'interface' LIKE 'Seq%'" "100|10000|100|100" 180
t_stop "$T_PID"
L="listener=\"tcp:127.0.0.1:$PORT\""
for m in "syslog_messages_received $L 100002" "syslog_messages_parsed $L 100002" \
         "syslog_messages_matched $L 10002" "syslog_messages_unmatched $L 90000" \
         "syslog_messages_resolved $L 1"; do
    set -- $m
    got=$(grep -F "name=$1 plugin=\"in_syslog\",$2 value=" "$T_DIR/triaged.log" | tail -1 | sed 's/.*value=//')
    [ "${got:-0}" = "$3" ] || t_fail "metric $1{$2} = ${got:-0}, expected $3"
    t_log "ok: $1{$2} = $3"
done
t_log "passed"
