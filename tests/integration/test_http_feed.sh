#!/usr/bin/env bash
# The live feed, GET /api/v1/feed (Server-Sent Events), with real clients:
#   - two curl -N clients see an incident open and then resolve, in order,
#     with alert events before; ids increase;
#   - a client resuming with Last-Event-ID gets exactly the events after it;
#   - min_priority filters (alert events carry no priority: left out);
#   - a stalled client (a socket that never reads, with a small receive
#     buffer) is cut off once it is feed_buffer behind, and counted, while the
#     curl clients keep receiving every event; the daemon's memory stays
#     bounded.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/http_lib.sh"

h_setup <<'CONF'
feed_buffer = 64KiB
feed_keepalive = 500ms
[pipeline]
max_message_size = 1MiB
[incident]
resolve_grace = 0s
CONF

feed() { # feed OUTFILE [QUERY] [EXTRA CURL ARGS...]: a background SSE client
    local out=$1 q=${2:-}
    shift 2 || shift $#
    curl -sN -H "Authorization: Bearer $H_READ" "$@" "$H_URL/api/v1/feed$q" > "$out" 2>&1 &
    T_PIDS+=("$!")
}
feed "$T_DIR/a.sse"
feed "$T_DIR/b.sse"
feed "$T_DIR/p1.sse" "?min_priority=P2"
t_wait_until 10 "feed clients connected" grep -q 'triaged live feed' "$T_DIR/b.sse"
t_wait_until 10 "p1 client connected" grep -q 'triaged live feed' "$T_DIR/p1.sse"
t_wait_until 10 "keep-alive comments" grep -q '^: keep-alive' "$T_DIR/a.sse"

# events of one incident, as (id, kind, number) lines
events() {
    python3 - "$1" <<'PY'
import json, sys
ev = {}
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    line = line.rstrip("\n")
    if line == "":
        if "event" in ev:
            d = json.loads(ev.get("data", "{}"))
            print(ev["id"], ev["event"], d.get("number") or d.get("incident") or "-")
        ev = {}
    elif line.startswith(":"):
        continue
    else:
        k, _, v = line.partition(": ")
        ev[k] = ev.get(k, "") + v if k == "data" else v
PY
}

h_req POST /api/v1/alerts "$H_WRITE" '{"source":"feed","resource":"web-01","check":"down","severity":"critical"}'
h_expect 202
h_req POST /api/v1/alerts "$H_WRITE" '{"source":"feed","resource":"web-01","check":"down","status":"resolved"}'
h_expect 202
num=$(t_sql "SELECT number FROM triaged.incident")
t_wait_until 15 "incident.resolved in both feeds" eval \
    "grep -q '^event: incident.resolved' '$T_DIR/a.sse' && grep -q '^event: incident.resolved' '$T_DIR/b.sse'"
# two requests, two batches: firing opens, the resolve updates then resolves
want="alert.firing/$num incident.opened/$num alert.resolved/$num incident.updated/$num incident.resolved/$num "
for f in a b; do
    got=$(events "$T_DIR/$f.sse" | awk '{print $2 "/" $3}' | tr '\n' ' ')
    [ "$got" = "$want" ] || t_fail "client $f saw: $got"
done
t_log "ok: both clients saw the incident open, then resolve: $(events "$T_DIR/a.sse" | awk '{print $2}' | tr '\n' ' ')"
events "$T_DIR/a.sse" | awk '{print $1}' | sort -n -c || t_fail "ids do not increase"
events "$T_DIR/a.sse" | awk '{print $1}' | sort -c -n -u || t_fail "ids repeat"
got=$(events "$T_DIR/p1.sse" | awk '{print $2}' | tr '\n' ' ')
[ "$got" = "incident.opened incident.updated incident.resolved " ] || t_fail "min_priority=P2 client saw: $got"
t_log "ok: min_priority=P2 saw: $got"

# resume after the first event: exactly the ones after it
first=$(events "$T_DIR/a.sse" | awk 'NR == 1 {print $1}')
timeout 3 curl -sN -H "Authorization: Bearer $H_READ" -H "Last-Event-ID: $first" "$H_URL/api/v1/feed" > "$T_DIR/resume.sse" || true
want=$(events "$T_DIR/a.sse" | tail -n +2 | awk '{print $1, $2}')
got=$(events "$T_DIR/resume.sse" | awk '{print $1, $2}')
[ "$got" = "$want" ] || t_fail "resume after $first gave [$got], want [$want]"
t_log "ok: Last-Event-ID resume gave the $(echo "$got" | wc -l) events after $first"
h_req GET "/api/v1/feed?min_priority=9" "$H_READ"; h_expect 400 "j['error']=bad_request"

# ---- a stalled client --------------------------------------------------------
python3 - "$H_PORT" "$H_READ" "$T_DIR/stalled.flag" > "$T_DIR/stalled.out" 2>&1 <<'PY' &
import os, socket, sys, time
port, token, flag = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", port))
s.sendall(("GET /api/v1/feed HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n" % token).encode())
print("connected", flush=True)
deadline = time.time() + 120         # never outlive a failed test
while not os.path.exists(flag):      # never read until told to
    if time.time() > deadline:
        sys.exit(2)
    time.sleep(0.05)
s.settimeout(10)
n = 0
while True:
    try:
        b = s.recv(65536)
    except socket.timeout:
        print("still open after", n, "bytes"); sys.exit(1)
    except ConnectionResetError:
        print("reset after", n, "bytes"); sys.exit(0)
    if not b:
        print("closed by server after", n, "bytes"); sys.exit(0)
    n += len(b)
PY
STALLED=$!
T_PIDS+=("$STALLED")
t_wait_until 10 "stalled client connected" grep -q connected "$T_DIR/stalled.out"
t_wait_until 10 "4 feed clients" eval "curl -s -H 'Authorization: Bearer $H_READ' '$H_URL/metrics' | grep -q '^triaged_http_feed_clients 4$'"

# up to 3,000 new incidents with long resource names (~3 kB of events each),
# 100 a request, until the stalled client is cut off
python3 - "$T_DIR/flood" <<'PY'
import json, sys
for b in range(30):
    batch = [{"source": "flood", "resource": "host-%04d-" % (b * 100 + i) + "x" * 900,
              "check": "down", "severity": "major"} for i in range(100)]
    open("%s.%d" % (sys.argv[1], b), "w").write(json.dumps(batch))
PY
for b in $(seq 0 29); do
    h_req POST /api/v1/alerts "$H_WRITE" "$(cat "$T_DIR/flood.$b")"
    h_expect 202 "j['accepted']=100"
    curl -s -H "Authorization: Bearer $H_READ" "$H_URL/metrics" | grep -q '^triaged_feed_clients_cut_off_total 1$' && break
done
t_wait_until 20 "the stalled client cut off" eval \
    "curl -s -H 'Authorization: Bearer $H_READ' '$H_URL/metrics' | grep -q '^triaged_feed_clients_cut_off_total 1$'"
t_wait_log "$T_DIR/triaged.log" 'feed client too slow; disconnected' 5
touch "$T_DIR/stalled.flag"
wait "$STALLED" || t_fail "stalled client: $(cat "$T_DIR/stalled.out")"
t_log "ok: stalled client: $(tail -1 "$T_DIR/stalled.out")"

# the others keep receiving, everything
h_req POST /api/v1/alerts "$H_WRITE" '{"source":"feed","resource":"last-one","check":"down"}'
h_expect 202
last=$(t_sql "SELECT number FROM triaged.incident WHERE resource = 'last-one'")
t_wait_until 20 "the last incident in both feeds" eval \
    "grep -q '\"number\": \"$last\"' '$T_DIR/a.sse' && grep -q '\"number\": \"$last\"' '$T_DIR/b.sse'"
opened=$(t_sql "SELECT count(*) FROM triaged.incident")
for f in a b; do
    n=$(events "$T_DIR/$f.sse" | awk '$2 == "incident.opened"' | wc -l)
    [ "$n" = "$opened" ] || t_fail "client $f saw $n incident.opened of $opened"
done
t_log "ok: the reading clients saw all $opened incident.opened events"
t_wait_until 10 "3 feed clients left" eval "curl -s -H 'Authorization: Bearer $H_READ' '$H_URL/metrics' | grep -q '^triaged_http_feed_clients 3$'"
rss=$(awk '/VmRSS/ {print $2}' "/proc/$T_PID/status")
t_log "triaged RSS ${rss} kB"
t_alive "$T_PID" || t_fail "triaged died"
t_log "PASS"
