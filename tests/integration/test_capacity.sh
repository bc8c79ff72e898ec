#!/usr/bin/env bash
# Capacity samples through the daemon (Kafka capacity_topic, DESIGN §3):
#   - 4,000 samples of 8 series land exactly once across a SIGKILL and a
#     restart of triaged (offsets in PostgreSQL; a replayed sample is a no-op)
#   - the rollup runs in the daemon: hourly rows and series sums appear, and
#     a growing series raises one capacity_warning, produced to the incidents
#     topic by out_kafka
#   - a sample at its limit fires a capacity_limit alert and opens an
#     incident; back under the limit, the alert resolves
#   - invalid samples are rejected by reason; samples for unknown CIs are
#     counted, not stored
source "$(dirname "$0")/lib.sh"

t_db
t_topic 8
CAP=$(t_topic_extra cap 8)
OUT=$(t_topic_extra inc 1)
t_conf <<CONF
[kafka]
capacity_topic = $CAP
incidents_topic = $OUT
[capacity]
rollup_interval = 1s
[incident]
resolve_grace = 0s
CONF
t_start
t_wait_log "$T_DIR/triaged.log" 'consuming from the stored positions' 30
t_sql "INSERT INTO triaged.ci (name) SELECT 'vol-' || i FROM generate_series(1, 8) i; INSERT INTO triaged.ci (name) VALUES ('pool-1')" >/dev/null

# 8 series x 500 samples, 5 minutes apart, ending now: vol-1 grows towards its
# limit (reached in ~20 days), the others are flat
python3 - "$T_DIR/samples" <<'PY'
import sys, json, datetime
now = datetime.datetime.now(datetime.timezone.utc).replace(second=0, microsecond=0)
with open(sys.argv[1], "w") as f:
    for i in range(500):
        ts = now - datetime.timedelta(minutes=5 * (499 - i))
        for s in range(1, 9):
            v = 600 + 10 * (i * 5 / 1440) if s == 1 else 400 + (i % 7)
            m = {"ci": f"vol-{s}", "metric": "used_gb", "value": v, "limit": 1000,
                 "ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ")}
            f.write(f"vol-{s}\t{json.dumps(m)}\n")
PY
t_split "$T_DIR/samples" 1 1500 "$T_DIR/part1"
t_split "$T_DIR/samples" 1501 4000 "$T_DIR/part2"
t_produce "$T_DIR/part1" "$CAP"
stored() { t_sql "SELECT count(*) FROM triaged.capacity_sample"; }
some_stored() { [ "$(stored)" -gt 0 ]; }
t_wait_until 30 "some samples stored" some_stored
t_kill9 "$T_PID"
t_log "SIGKILL with $(stored) of 1500 samples stored"
t_produce "$T_DIR/part2" "$CAP"
t_start "$T_DIR/triaged.conf" "$T_DIR/triaged-2.log"
t_wait_sql "SELECT count(*) FROM triaged.capacity_sample" 4000 60
t_expect_sql "SELECT count(DISTINCT (ci_id, metric)) FROM triaged.capacity_sample" 8

# the rollup in the daemon: every series in capacity_series with all its samples
t_wait_sql "SELECT count(*) || ' ' || sum(n) FROM triaged.capacity_series" "8 4000" 60
t_expect_sql "SELECT sum(samples) FROM triaged.capacity_hourly" 4000
t_expect_sql "SELECT ci || ' ' || status FROM triaged.capacity_trend WHERE ci = 'vol-1'" "vol-1 ok"
t_expect_sql "SELECT string_agg(ci, ',') FROM triaged.capacity_risks('90 days')" "vol-1"
warnings() { kcat -C -b "$TD_TEST_KAFKA_BROKERS" -t "$OUT" -o beginning -e -q 2>/dev/null | grep -c '"metric" *: *"used_gb"' || true; }
has_warning() { [ "$(warnings)" -ge 1 ]; }
t_wait_until 30 "a capacity_warning on $OUT" has_warning
t_expect_sql "SELECT count(*) FROM triaged.capacity_series WHERE warned_exhaustion_at IS NOT NULL" 1

# the limit: pool-1 reaches it, then goes back under
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
printf 'pool-1\t{"ci":"pool-1","metric":"conns","value":100,"limit":100,"ts":"%s"}\n' "$now" > "$T_DIR/over"
t_produce "$T_DIR/over" "$CAP"
t_wait_sql "SELECT status || ' ' || resource FROM triaged.alert WHERE source = 'capacity'" "firing pool-1" 30
t_wait_sql "SELECT status FROM triaged.incident WHERE resource = 'pool-1'" new 30
sleep 1 # the next sample must carry a later second (ts below has whole seconds)
later=$(date -u +%Y-%m-%dT%H:%M:%SZ)
printf 'pool-1\t{"ci":"pool-1","metric":"conns","value":60,"limit":100,"ts":"%s"}\n' "$later" > "$T_DIR/under"
t_produce "$T_DIR/under" "$CAP"
t_wait_sql "SELECT status FROM triaged.alert WHERE source = 'capacity'" resolved 30
t_expect_sql "SELECT labels->>'metric' FROM triaged.alert WHERE source = 'capacity'" conns

# bad and unknown
{
    printf 'x\t{"ci":"vol-1","value":1}\n'
    printf 'x\tnot json\n'
    printf 'x\t{"ci":"vol-1","metric":"m","value":"high"}\n'
    printf 'x\t{"ci":"ghost","metric":"m","value":1}\n'
    # same key, same partition, after the others: when it is stored, they were read
    printf 'x\t{"ci":"vol-2","metric":"last","value":1}\n'
} > "$T_DIR/bad"
t_produce "$T_DIR/bad" "$CAP"
t_wait_sql "SELECT count(*) FROM triaged.capacity_sample WHERE metric = 'last'" 1 30
t_stop "$T_PID"
for want in 'name=messages_invalid reason="missing_field" value=1' \
            'name=messages_invalid reason="not_json" value=1' \
            'name=messages_invalid reason="bad_field" value=1' \
            'name=capacity_samples_unknown_ci value=1'; do
    grep -qF "$want" "$T_DIR/triaged-2.log" || t_fail "no [$want] in the shutdown metrics"
    t_log "ok: $want"
done
t_expect_sql "SELECT count(*) FROM triaged.capacity_sample s JOIN triaged.ci c ON c.id = s.ci_id WHERE c.name = 'ghost'" 0
t_log "PASS"
