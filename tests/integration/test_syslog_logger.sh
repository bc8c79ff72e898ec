#!/usr/bin/env bash
# Syslog from util-linux logger, the real client, into in_syslog with the
# shipped rules file: RFC 5424 and RFC 3164, UDP and TCP, octet counting and
# LF framing, IPv4 and IPv6.
#   1. link down (RFC 5424, TCP, octet-counted) then up (RFC 3164, UDP):
#      one alert firing then resolved, one incident opened then resolved;
#   2. 100,000 sequenced lines over one TCP connection (logger -f,
#      octet-counted), 10,000 of them link-down lines for 100 interfaces:
#      exactly 100 alerts with exactly 100 occurrences each;
#   3. malformed input (bad PRI, invalid UTF-8, a frame over
#      max_message_size) counted per reason; structured data over UDP;
#   4. SIGHUP reloads the rules file; a broken file keeps the rules in force
#      and `triaged -t` reports it with its line;
#   5. the per-listener metrics at shutdown are exact.
source "$(dirname "$0")/lib.sh"
t_db
PORT=$(_stack_free_port) || t_fail "no free port"
HOST=$(hostname)
cp "$TD_SOURCE_DIR/config/syslog-rules.conf" "$T_DIR/rules.conf"
t_conf <<CONF
load = in_syslog
[syslog]
udp = 127.0.0.1:$PORT
tcp = 127.0.0.1:$PORT [::1]:$PORT
rules = $T_DIR/rules.conf
max_message_size = 2KiB
oversize = reject
[incident]
resolve_grace = 1s
CONF
t_start
L4="listener=\"tcp:127.0.0.1:$PORT\""
L6="listener=\"tcp:[::1]:$PORT\""
LU="listener=\"udp:127.0.0.1:$PORT\""

# ---- 1. link down, then up ----------------------------------------------
logger --rfc5424 --tcp --octet-count -n 127.0.0.1 -P "$PORT" -p local7.err -t ios \
    "%LINK-3-UPDOWN: Interface Gi0/1, changed state to down" || t_fail "logger"
t_wait_sql "SELECT status, check_name, resource, severity, labels->>'interface' FROM triaged.alert" \
    "firing|link_down|$HOST|major|Gi0/1" 30
t_wait_sql "SELECT count(*), min(status) FROM triaged.incident" "1|new" 30
logger --rfc3164 --udp -n 127.0.0.1 -P "$PORT" -p local7.notice -t ios \
    "%LINK-3-UPDOWN: Interface Gi0/1, changed state to up" || t_fail "logger"
t_wait_sql "SELECT count(*), min(status) FROM triaged.incident" "1|resolved" 30
t_expect_sql "SELECT count(*), min(status), sum(occurrences) FROM triaged.alert" "1|resolved|1"
t_expect_sql "SELECT count(*) FROM triaged.incident_event WHERE kind = 'opened'" "1"
t_expect_sql "SELECT count(*) FROM triaged.incident_event WHERE kind = 'resolved'" "1"

# ---- 2. 100,000 sequenced lines over TCP ----------------------------------
python3 - "$T_DIR/lines" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    for n in range(100000):
        if n % 10 == 0:
            f.write(f"seq {n}: %LINK-3-UPDOWN: Interface Seq{n // 10 % 100}, changed state to down\n")
        else:
            f.write(f"seq {n}: nothing to see, routine line number {n}\n")
PY
logger --rfc5424 --tcp --octet-count -n 127.0.0.1 -P "$PORT" -p local7.err -t ios \
    -f "$T_DIR/lines" || t_fail "logger -f"
t_wait_sql "SELECT count(*), sum(occurrences), min(occurrences), max(occurrences)
    FROM triaged.alert WHERE labels->>'interface' LIKE 'Seq%'" "100|10000|100|100" 120
t_expect_sql "SELECT count(DISTINCT dedup_key) FROM triaged.alert WHERE labels->>'interface' LIKE 'Seq%'" "100"

# ---- 3. malformed input, structured data, IPv6 and LF framing -----------
python3 - "$PORT" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"<999>bad pri\n")                     # bad_pri
s.sendall(b"<13>Nov 25 10:00:00 h a: caf\xe9\n")  # not_utf8 (Latin-1)
s.sendall(b"3000 " + b"x" * 3000)                # over 2 KiB: rejected, too_big
s.sendall(b"<13>fine: after all that\n")         # parsed, unmatched
s.close()
PY
logger --rfc5424 --udp -n 127.0.0.1 -P "$PORT" -p kern.err -t kernel --msgid OOM \
    --sd-id origin@32473 --sd-param 'software="logger"' \
    "Out of memory: Killed process 4242 (java) total-vm:1kB" || t_fail "logger"
logger --rfc5424=nohost --tcp -n ::1 -P "$PORT" -p daemon.err -t systemd \
    "nginx.service: Failed with result 'exit-code'." || t_fail "logger"
t_wait_sql "SELECT resource, labels->>'process' FROM triaged.alert WHERE check_name = 'oom_kill'" "$HOST|java" 30
t_wait_sql "SELECT resource, dedup_key FROM triaged.alert WHERE check_name = 'unit_failed'" \
    "::1|unit/::1/nginx.service" 30

# ---- 4. SIGHUP reload ------------------------------------------------------
printf '\n[custom]\nmessage = ^custom-marker (?<n>\\d+)$\ncheck = custom\nresource = r-${n}\n' \
    >> "$T_DIR/rules.conf"
kill -HUP "$T_PID"
t_wait_log "$T_DIR/triaged.log" 'syslog: rules loaded.* rules=15'
logger --rfc5424 --tcp --octet-count -n 127.0.0.1 -P "$PORT" -t x "custom-marker 7"
t_wait_sql "SELECT resource, occurrences FROM triaged.alert WHERE check_name = 'custom'" "r-7|1" 30
echo "[broken" >> "$T_DIR/rules.conf"
kill -HUP "$T_PID"
t_wait_log "$T_DIR/triaged.log" 'rules file has an error; keeping the rules in force'
out=$("$TD_BUILD_DIR/triaged" -t -c "$T_DIR/triaged.conf" 2>&1) && t_fail "triaged -t passed a broken rules file"
[[ "$out" == *"plugin in_syslog: $T_DIR/rules.conf:"*": a section header is [NAME]"* ]] ||
    t_fail "triaged -t said: $out"
t_log "ok: triaged -t names the broken rules line"
logger --rfc5424 --tcp --octet-count -n 127.0.0.1 -P "$PORT" -t x "custom-marker 7"
t_wait_sql "SELECT resource, occurrences FROM triaged.alert WHERE check_name = 'custom'" "r-7|2" 30

# ---- 5. metrics at shutdown ------------------------------------------------
t_stop "$T_PID"
metric() { # NAME LABELS -> value (0 when absent)
    local v
    v=$(grep -F "name=$1 plugin=\"in_syslog\",$2 value=" "$T_DIR/triaged.log" | tail -1 | sed 's/.*value=//')
    echo "${v:-0}"
}
expect_metric() {
    local got
    got=$(metric "$1" "$2")
    [ "$got" = "$3" ] || t_fail "metric $1{$2} = $got, expected $3"
    t_log "ok: $1{$2} = $3"
}
# TCP/IPv4: down (1), 100,000 lines, 4 raw (3 malformed), 2 custom
expect_metric syslog_messages_received "$L4" 100007
expect_metric syslog_messages_parsed "$L4" 100004
expect_metric syslog_messages_matched "$L4" 10003
expect_metric syslog_messages_unmatched "$L4" 90001
expect_metric syslog_messages_dropped "$L4,reason=\"unmatched\"" 90001
expect_metric syslog_messages_malformed "$L4,reason=\"bad_pri\"" 1
expect_metric syslog_messages_malformed "$L4,reason=\"not_utf8\"" 1
expect_metric syslog_messages_malformed "$L4,reason=\"too_big\"" 1
expect_metric syslog_alerts_submitted "$L4" 10003
expect_metric syslog_connections_accepted "$L4" 5
expect_metric syslog_messages_received "$LU" 2
expect_metric syslog_messages_matched "$LU" 2
expect_metric syslog_messages_resolved "$LU" 1
expect_metric syslog_messages_received "$L6" 1
expect_metric syslog_messages_matched "$L6" 1
expect_metric syslog_rule_matches 'rule="link-down"' 10001
expect_metric syslog_rules_reloads 'result="ok"' 1
expect_metric syslog_rules_reloads 'result="error"' 1
t_log "passed"
