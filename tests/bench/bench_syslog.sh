#!/usr/bin/env bash
# tests/bench/bench_syslog.sh — syslog over TCP into triaged, against Debian's
# rsyslog (imtcp -> omfile) taking the same stream in the same run. Prints its
# figures; asserts nothing.
#
#   bash tests/bench/bench_syslog.sh [LINES]      (default 1,000,000)
#
# The stream is generated beforehand: LF-framed RFC 3164 and RFC 5424 lines
# of 90-130 bytes from 200 hosts (web access logs, sshd, cron, kernel,
# systemd); one line in ten is a Cisco %LINK-3-UPDOWN "down" line for one of
# 1,000 interfaces, which the shipped rules (config/syslog-rules.conf, 14
# rules, all tried on every line) turn into an alert; the other nine match
# nothing. The last line is a marker. One sender (python, 1 MiB sendall
# calls on one connection) pushes the file as fast as the receiver takes it,
# and for triaged half-closes and waits for triaged to close, which it does
# once it has read every byte.
#   rsyslog:  from connect until its output file holds every line (each
#             parsed and written).
#   triaged:  "taken": from connect until triaged closed the connection:
#             every line read, parsed and run through the rules, every alert
#             handed to the pipeline (which stops reading when full, so its
#             backpressure is included); "committed": until the marker's alert
#             is committed in PostgreSQL, so every earlier alert is too
#             (batches commit in order): + Redis + PostgreSQL.
# BATCH_TIME=250ms (env) sets [pipeline] batch_time for triaged.
# Uses a running stack when TD_TEST_* is set, else starts one (Redis and
# PostgreSQL are all triaged needs here).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${TD_BUILD_DIR:-$root/build}
lines=${1:-1000000}
export PGOPTIONS="-c client_min_messages=warning"
source "$root/tests/stack/stack.sh"
if [ -z "${TD_TEST_PG_ADMIN_CONNINFO:-}" ]; then
    stack_up
fi
command -v rsyslogd >/dev/null || { echo "rsyslogd not installed (apt-get install rsyslog)" >&2; exit 1; }
work=$(mktemp -d "$TD_TEST_DIR/bench_syslog.XXXXXX")
pid="" rs_pid=""
cleanup() {
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null
    [ -n "$rs_pid" ] && kill -TERM "$rs_pid" 2>/dev/null
    wait 2>/dev/null || true
}
trap cleanup EXIT
now() { date +%s.%N; }
cpu_s() { awk '{ printf "%.1f", ($14 + $15) / 100 }' "/proc/$1/stat"; }

echo "generating $lines lines..."
python3 - "$work/stream" "$lines" <<'PY'
import random, sys
random.seed(7)
path, n = sys.argv[1], int(sys.argv[2])
hosts = [f"web-{i:03d}" for i in range(200)]
paths = ["/api/v1/items/", "/static/app.js?v=", "/login?next=/cart/", "/api/v1/orders/"]
with open(path, "w") as f:
    for i in range(n - 1):
        h = hosts[i % 200]
        sec = i // 20000
        ts = f"Nov 26 {sec // 3600 % 24:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}"
        k = i % 10
        if k == 0:
            sw = i // 10 % 1000
            f.write(f"<187>{ts} sw-{sw // 48:03d} %LINK-3-UPDOWN: Interface "
                    f"Gi1/0/{sw % 48}, changed state to down\n")
        elif k in (1, 2, 3, 4):
            f.write(f"<190>{ts} {h} nginx[{1000 + i % 7}]: 10.{i % 250}.{i % 7}.{i % 13} - - "
                    f"\"GET {random.choice(paths)}{i} HTTP/1.1\" 200 {i % 9000}\n")
        elif k == 5:
            f.write(f"<86>1 2026-11-26T00:00:00.{i % 1000000:06d}Z {h} sshd {2000 + i % 50} - - "
                    f"Accepted publickey for deploy from 10.0.{i % 200}.{i % 250} port {30000 + i % 30000}\n")
        elif k == 6:
            f.write(f"<78>{ts} {h} CRON[{3000 + i % 100}]: (root) CMD (run-parts /etc/cron.hourly {i})\n")
        elif k == 7:
            f.write(f"<6>{ts} {h} kernel: [{i / 1000:.3f}] TCP: request_sock_TCP: Possible SYN flooding? no, fine {i}\n")
        elif k == 8:
            f.write(f"<30>1 2026-11-26T00:00:00.{i % 1000000:06d}Z {h} systemd 1 - - "
                    f"Started session-{i}.scope - Session {i} of User deploy.\n")
        else:
            f.write(f"<14>{ts} {h} app[{i % 300}]: request id={i:08x} user={i % 977} took {i % 500} ms\n")
    f.write("<14>1 - bench bench - - - BENCH-END-MARKER\n")
PY
bytes=$(stat -c %s "$work/stream")
echo "stream: $lines lines, $bytes bytes"

send() { # port [wait]
    python3 - "$work/stream" "$1" "${2:-}" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
with open(sys.argv[1], "rb") as f:
    while True:
        b = f.read(1 << 20)
        if not b:
            break
        s.sendall(b)
if sys.argv[3] == "wait":
    # Half-close, then wait for the receiver to close: triaged does so once
    # it has read, parsed, matched and submitted every byte. (Not used with
    # rsyslog, whose output then missed the last lines in a trial.)
    s.shutdown(socket.SHUT_WR)
    while s.recv(65536):
        pass
s.close()
PY
}

# ---- rsyslog: imtcp -> omfile ------------------------------------------
RPORT=$(_stack_free_port)
mkdir -p "$work/rs"
cat > "$work/rsyslog.conf" <<CONF
global(workDirectory="$work/rs" maxMessageSize="8k")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="$RPORT")
action(type="omfile" file="$work/rsyslog-out.log")
CONF
rsyslogd -n -f "$work/rsyslog.conf" -i "$work/rsyslog.pid" >"$work/rsyslog.log" 2>&1 &
rs_pid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$RPORT") 2>/dev/null && break; sleep 0.1; done
t0=$(now)
send "$RPORT"
# rsyslog may write lines slightly out of order (imtcp worker threads), so
# the end is when the file holds every line, not when the marker shows.
until [ "$(wc -l < "$work/rsyslog-out.log" 2>/dev/null || echo 0)" -ge "$lines" ]; do sleep 0.02; done
t1=$(now)
rs_cpu=$(cpu_s "$rs_pid")
kill -TERM "$rs_pid"; wait "$rs_pid" 2>/dev/null || true; rs_pid=""
rs_lines=$(wc -l < "$work/rsyslog-out.log")
rm -f "$work/rsyslog-out.log"
rs_rate=$(python3 -c "print(f'{$lines / ($t1 - $t0):.0f}')")
echo "rsyslog imtcp->omfile: $rs_rate lines/s ($(python3 -c "print(f'{$t1 - $t0:.2f}')") s, $rs_lines lines written, rsyslogd ${rs_cpu} CPU-s)"

# ---- triaged: in_syslog -> rules -> Redis -> PostgreSQL -----------------
db="bench_syslog_$$"
psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)"
psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "CREATE DATABASE $db"
pg="$TD_TEST_PG_ADMIN_CONNINFO dbname=$db"
cp "$root/config/syslog-rules.conf" "$work/rules.conf"
printf '\n[bench-end]\nmessage = ^BENCH-END-MARKER$\ncheck = bench_end\n' >> "$work/rules.conf"
TPORT=$(_stack_free_port "$RPORT")
cat > "$work/triaged.conf" <<CONF
[triaged]
instance = bench
[postgres]
conninfo = $pg
migrate = yes
[redis]
url = $TD_TEST_REDIS_URL
[syslog]
tcp = 127.0.0.1:$TPORT
rules = $work/rules.conf
[pipeline]
${BATCH_TIME:+batch_time = $BATCH_TIME}
[plugins]
dir = $build/plugins
load = in_syslog
CONF
redis-cli -u "$TD_TEST_REDIS_URL" flushdb >/dev/null
"$build/triaged" -c "$work/triaged.conf" > "$work/triaged.log" 2>&1 &
pid=$!
until grep -q 'msg="triaged started"' "$work/triaged.log" 2>/dev/null; do sleep 0.05; done
until psql "$pg" -qAtc "SELECT 1 FROM triaged.alert LIMIT 1" >/dev/null 2>&1; do sleep 0.05; done
t0=$(now)
send "$TPORT" wait
t_sent=$(now)
until [ "$(psql "$pg" -qAtc "SELECT count(*) FROM triaged.alert WHERE check_name = 'bench_end'" 2>/dev/null)" = 1 ]; do
    sleep 0.05
done
t1=$(now)
td_cpu=$(cpu_s "$pid")
got=$(psql "$pg" -qAtc "SELECT count(*) || ' alerts, occurrences ' || sum(occurrences) FROM triaged.alert WHERE check_name = 'link_down'")
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=""
rate() { python3 -c "print(f'{$lines / ($2 - $1):.0f}')"; }
secs() { python3 -c "print(f'{$2 - $1:.2f}')"; }
taken=$(rate "$t0" "$t_sent") committed=$(rate "$t0" "$t1")
echo "triaged in_syslog:     $taken lines/s taken ($(secs "$t0" "$t_sent") s), $committed lines/s committed ($(secs "$t0" "$t1") s); $got; triaged ${td_cpu} CPU-s; batch_time ${BATCH_TIME:-0ms (default)}"
echo "ratio triaged/rsyslog: taken $(python3 -c "print(f'{$taken / $rs_rate:.2f}')")x, committed $(python3 -c "print(f'{$committed / $rs_rate:.2f}')")x"
psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)"
