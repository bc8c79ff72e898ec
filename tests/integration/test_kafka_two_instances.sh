#!/usr/bin/env bash
# Two triaged instances in one consumer group (DESIGN §4 Delivery): instances
# "a" and "b" (different [triaged] instance, same group, same database) share
# a 30,000-message stream over 16 partitions (3,000 fingerprints over 300
# resources). The result must be exactly what one instance makes of the same
# stream (replayed into a second database by a single instance): the same
# alerts with the same occurrences and times, the same incidents with the
# same alerts. And both instances must have taken part: each was assigned
# partitions, each committed positions, each wrote incident timelines.
source "$(dirname "$0")/lib.sh"
N=30000 F=3000 R=300 CHUNK=2000

t_db
t_topic 16
T_INSTANCE=${T_NAME}_a t_conf "$T_DIR/a.conf"
T_INSTANCE=${T_NAME}_b t_conf "$T_DIR/b.conf"
t_start "$T_DIR/a.conf" "$T_DIR/triaged-a.log"
pid_a=$T_PID
t_start "$T_DIR/b.conf" "$T_DIR/triaged-b.log"
pid_b=$T_PID

# The partitions (alerts: 16; capacity: the stack's auto-created topic,
# TD_TEST_KAFKA_PARTITIONS) each instance holds now, from its latest
# assignment (0 when its latest rebalance event is a revoke).
want_held=$((16 + ${TD_TEST_KAFKA_PARTITIONS:-8}))
held() {
    grep -E 'msg="kafka: partitions (assigned|revoked)' "$1" | tail -n 1 |
        sed -nE 's/.*msg="kafka: partitions assigned[^"]*".* partitions=([0-9]+).*/\1/p' |
        grep . || echo 0
}
shared() {
    local a b
    a=$(held "$T_DIR/triaged-a.log") b=$(held "$T_DIR/triaged-b.log")
    [ "$a" -gt 0 ] && [ "$b" -gt 0 ] && [ $((a + b)) -eq "$want_held" ]
}
t_wait_until 60 "both instances to hold partitions (a: $(held "$T_DIR/triaged-a.log"), b: $(held "$T_DIR/triaged-b.log"))" shared
t_log "ok: the group shares the partitions: a holds $(held "$T_DIR/triaged-a.log"), b holds $(held "$T_DIR/triaged-b.log") (of $want_held)"

t_gen "$T_DIR/msgs" $N --fingerprints $F --seq --source twoinst
total=$(t_count_firing "$T_DIR/msgs")
for ((i = 1; i <= N; i += CHUNK)); do
    t_split "$T_DIR/msgs" $i $((i + CHUNK - 1)) "$T_DIR/chunk"
    t_produce "$T_DIR/chunk"
done
t_log "produced $N messages in chunks of $CHUNK"

# wait_caught_up CONNINFO GROUP: the committed positions cover the topic.
wait_caught_up() {
    local pg=$1 group=$2 got deadline=$((SECONDS + 90))
    while :; do
        got=$(psql "$pg" -qAtX -c "SELECT coalesce(sum(next_offset), 0) FROM triaged.kafka_offset
                                   WHERE group_id = '$group' AND topic = '$T_TOPIC'" 2>/dev/null || true)
        [ "$got" = $N ] && break
        if [ $SECONDS -ge $deadline ]; then
            t_diag_alerts "$T_DIR/msgs" -- "$pg"
            t_topic_report >&2
            t_fail "group $group: committed positions reached [$got], not $N, within 90 s"
        fi
        sleep 0.2
    done
}
wait_caught_up "$T_PG" "g_$T_DB"
t_log "ok: the two instances committed positions for all $N messages"
t_alive "$pid_a" || t_fail "instance a died"
t_alive "$pid_b" || t_fail "instance b died"
got=$(t_sql "SELECT coalesce(sum(occurrences), 0) FROM triaged.alert")
if [ "$got" != "$total" ]; then
    t_diag_alerts "$T_DIR/msgs"
    t_fail "two instances: sum(occurrences) = $got, expected exactly $total"
fi
t_log "ok: sum(occurrences) = $total (exact)"
t_check_integrity $F $R "$T_DIR/a.conf"

# Both took part, as recorded by the daemon itself in PostgreSQL.
t_expect_sql "SELECT string_agg(DISTINCT instance, ',' ORDER BY instance) FROM triaged.kafka_offset
              WHERE topic = '$T_TOPIC'" "triaged@${T_NAME}_a,triaged@${T_NAME}_b"
t_expect_sql "SELECT string_agg(DISTINCT actor, ',' ORDER BY actor) FROM triaged.incident_event" \
    "triaged@${T_NAME}_a,triaged@${T_NAME}_b"

# The same stream through one instance, into a database of its own.
ref_pg=$(t_db_extra ref)
T_PG=$ref_pg T_DB=${T_DB}_ref T_INSTANCE=${T_NAME}_ref t_conf "$T_DIR/ref.conf"
t_start "$T_DIR/ref.conf" "$T_DIR/triaged-ref.log"
wait_caught_up "$ref_pg" "g_${T_DB}_ref"
t_log "ok: a single instance consumed the same $N messages into a second database"

# shellcheck disable=SC2034  # the *_sql are read through ${!name}
alerts_sql="SELECT fingerprint, source, resource, check_name, status, severity, occurrences,
                   first_seen, last_seen, fired_at, resolved_at, labels
            FROM triaged.alert ORDER BY fingerprint"
# shellcheck disable=SC2034
incidents_sql="SELECT i.resource, i.title, i.status, i.priority, i.severity, i.opened_at, i.resolved_at,
                      i.reopen_count, string_agg(a.fingerprint, ',' ORDER BY a.fingerprint) AS alerts
               FROM triaged.incident i JOIN triaged.incident_alert ia ON ia.incident_id = i.id
               JOIN triaged.alert a ON a.id = ia.alert_id
               GROUP BY i.id ORDER BY i.resource, i.opened_at"
# shellcheck disable=SC2034
history_sql="SELECT a.fingerprint, h.at, h.from_status, h.to_status, h.severity
             FROM triaged.alert_history h JOIN triaged.alert a ON a.id = h.alert_id
             ORDER BY 1, 2, 3, 4"
# compare WHAT: the rows of ${WHAT}_sql in both databases, reporting which
# columns differ in how many rows, and the first differing rows.
differ=()
compare() {
    local what=$1 sql_var=${1}_sql
    psql "$T_PG" -qAtX -F $'\t' -c "${!sql_var}" >"$T_DIR/$what.two"
    psql "$ref_pg" -qAtX -F $'\t' -c "${!sql_var}" >"$T_DIR/$what.one"
    psql "$ref_pg" -qAX -F $'\t' -c "${!sql_var} LIMIT 0" | sed -n 1p >"$T_DIR/$what.cols"
    if cmp -s "$T_DIR/$what.two" "$T_DIR/$what.one"; then
        t_log "ok: $what identical to one instance's ($(wc -l <"$T_DIR/$what.one") rows)"
        return 0
    fi
    python3 - "$what" "$T_DIR/$what.cols" "$T_DIR/$what.one" "$T_DIR/$what.two" >&2 <<'PY'
import collections, sys
what, cols = sys.argv[1], open(sys.argv[2]).read().rstrip("\n").split("\t")
one = [l.rstrip("\n").split("\t") for l in open(sys.argv[3])]
two = [l.rstrip("\n").split("\t") for l in open(sys.argv[4])]
print("--- %s: one instance %d rows, two instances %d rows" % (what, len(one), len(two)))
c, shown, rows = collections.Counter(), 0, 0
for a, b in zip(one, two):
    d = [cols[i] for i in range(min(len(a), len(b))) if a[i] != b[i]]
    if d:
        rows += 1
        c.update(d)
        if shown < 4:
            shown += 1
            print("  one: " + " | ".join(a)[:300])
            print("  two: " + " | ".join(b)[:300])
print("  %d rows differ; by column: %s" % (rows, dict(c)))
PY
    differ+=("$what")
}
compare alerts
compare incidents
compare history
if [ ${#differ[@]} -gt 0 ]; then
    # A clue: an alert that never resolved has one firing episode, which
    # started at its first firing message.
    t_log "alerts never resolved whose fired_at is after first_seen: two instances $(t_sql \
        "SELECT count(*) FROM triaged.alert WHERE status = 'firing' AND fired_at <> first_seen"), one instance $(psql "$ref_pg" -qAtX -c \
        "SELECT count(*) FROM triaged.alert WHERE status = 'firing' AND fired_at <> first_seen")" >&2
    t_fail "two instances made different $(IFS=,; echo "${differ[*]}") than one instance from the same $N messages"
fi
# the counts kept on the incidents (sql/013) are those of a recount, with two
# instances writing as with one
t_expect_sql "SELECT count(*) FROM triaged.incident_counts_verify()" "0"
[ "$(psql "$ref_pg" -qAtX -c "SELECT count(*) FROM triaged.incident_counts_verify()")" = 0 ] \
    || t_fail "one instance: kept counts differ from a recount"
t_log "passed"
