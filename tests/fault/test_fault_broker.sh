#!/usr/bin/env bash
# Fault: the Kafka broker fails under a sequenced stream (td-mockbroker's
# control FIFO drives librdkafka's mock cluster fault injection). 40,000
# messages at 2,500/s (tests/fault/seq.py); while they flow:
#   1. request errors (rd_kafka_mock_push_request_errors) at a random
#      moment (FAULT_SEED): 10 Fetch NOT_LEADER_FOR_PARTITION, 3 Fetch
#      _TRANSPORT (connection dropped), 10 OffsetCommit
#      COORDINATOR_NOT_AVAILABLE, 30 Produce NOT_LEADER_FOR_PARTITION and 3
#      Produce _TRANSPORT (they hit kcat's producer and out_kafka's alike:
#      both are idempotent, but the mock broker keeps twice a Produce it
#      had appended before a _TRANSPORT error; the checks allow for it);
#   2. once 2,500 more are committed, the broker down for 4 s
#      (rd_kafka_mock_broker_set_down: connections closed, new ones
#      refused; kcat -E rides it out) and up again: the consumer's session
#      times out, it rejoins and resumes from PostgreSQL's positions.
# triaged must stay up, consume everything exactly once (every seq once,
# nothing doubled), and deliver every event it published to the incidents
# topic (the topic holds events_published messages, one incident.opened per
# incident; a record the mock broker appended twice for a retried Produce
# counted once).
source "$(dirname "$0")/../integration/lib.sh"
source "$(dirname "$0")/fault_lib.sh"

ctl() { stack_kafka_control "$*" >/dev/null || t_fail "td-mockbroker: $* refused"; }
# the broker is shared with the tests after this one: leave it clean
t_on_exit 'stack_kafka_control "up all" >/dev/null 2>&1; for a in Fetch OffsetCommit Produce; do stack_kafka_control "clear $a" >/dev/null 2>&1; done'

f_setup
f_stream broker 40000 2500
t_wait_until 60 "some committed" f_occ_at_least 1000
f_sleep_random 0 2000 >/dev/null
for e in "Fetch NOT_LEADER_FOR_PARTITION 10" "Fetch _TRANSPORT 3" \
         "OffsetCommit COORDINATOR_NOT_AVAILABLE 10" \
         "Produce NOT_LEADER_FOR_PARTITION 30" "Produce _TRANSPORT 3"; do
    ctl error $e
done
t_log "request errors injected with $(f_occ) occurrences committed"
t_wait_until 60 "commits after the errors" f_occ_at_least $(( $(f_occ) + 2500 ))
ctl down all
t_log "broker down with $(f_occ) occurrences committed"
sleep 4    # the outage itself
t_alive "$T_PID" || t_fail "triaged died with the broker down"
ctl up all
t_log "broker up again with $(f_occ) occurrences committed"
f_stream_wait
f_caught_up 120
f_check broker
f_integrity

# Every published event delivered: out_kafka's idempotent producer. The
# mock broker does not deduplicate a Produce retried after an injected
# _TRANSPORT error that it had already appended (seq.py's check meets the
# same with kcat's producer): such a record is on the topic twice, identical
# (partition, kind, key, payload). So the topic must hold exactly the
# published events, or, counting identical records once, exactly them.
events_in_topic() { # one record a line: partition, headers, key, payload
    kcat -C -b "$TD_TEST_KAFKA_BROKERS" -t "$F_INCIDENTS" -o beginning -e -q \
        -f '%p\t%h\t%k\t%s\n' 2>/dev/null
}
# (all read again each turn: the tick keeps publishing, e.g. resolves after
# the grace, so a count read once can fall behind the topic for good)
deadline=$((SECONDS + 30))
until pub=$(f_metric triaged_events_published_total) && events_in_topic > "$T_DIR/events" &&
      n=$(wc -l < "$T_DIR/events") && distinct=$(sort -u "$T_DIR/events" | wc -l) &&
      { [ "$n" = "$pub" ] || [ "$distinct" = "$pub" ]; }; do
    [ $SECONDS -lt $deadline ] ||
        t_fail "after 30 s the incidents topic holds $n events ($distinct distinct records), $pub published"
    sleep 0.5
done
[ "$n" = "$pub" ] ||
    t_log "the topic holds $((n - distinct)) records twice (a Produce retried after an injected error)"
opened=$(sort -u "$T_DIR/events" | awk -F'\t' '$2 ~ /triaged-kind=incident.opened/ { print $3 }' | sort)
[ "$(printf '%s\n' "$opened" | wc -l)" = 50 ] && [ "$(printf '%s\n' "$opened" | sort -u | wc -l)" = 50 ] ||
    t_fail "incident.opened events on the topic: $(printf '%s\n' "$opened" | wc -l) ($(printf '%s\n' "$opened" | sort -u | wc -l) distinct), want 50"
t_log "ok: the incidents topic holds the $pub published events, one incident.opened for each of the 50 incidents"
f_finish
t_log "passed"
