#!/usr/bin/env bash
# Rejected messages on Kafka (DESIGN §3: "rejected with a reason ... counted
# per reason, logged with rate limiting, and on Kafka written to a
# dead-letter topic when dead_letter_topic is set — never a crash, never a
# silent drop"). 5,000 valid messages (500 fingerprints) with bad messages of
# every kind interleaved, each bad one with a key of its own; max_message_size
# is 2 KiB, and a valid message of exactly 2,048 bytes rides along (the limit
# is inclusive). Then:
#   - the valid ones all land: occurrences exact, the stream goes on;
#   - each bad one is in the dead-letter topic exactly once, with its key and
#     value unchanged and a triaged-reason header naming the right reason (a
#     triaged-detail naming the field where there is one), and its source
#     topic, partition and offset;
#   - the log rate-limits the warnings (at most 5 per 10 s), and counts what
#     it suppressed: the lines plus their suppressed= counts add up to every
#     bad message (checked with one more bad message after the window).
source "$(dirname "$0")/lib.sh"

t_db
t_topic 8
DLQ=$(t_topic_extra deadletter 4)
t_conf <<CONF
[kafka]
dead_letter_topic = $DLQ
[pipeline]
max_message_size = 2KiB
CONF
t_start
t_wait_log "$T_DIR/triaged.log" 'consuming from the stored positions' 30

t_gen "$T_DIR/valid" 5000 --fingerprints 500 --seq --source invalid
# Writes the interleaved stream to msgs and the bad ones' expectations to
# expect (key TAB reason TAB detail-substring, one a line).
python3 - "$T_DIR/valid" "$T_DIR/msgs" "$T_DIR/expect" <<'PY'
import json, random, sys
valid = open(sys.argv[1], "rb").read().splitlines()
rnd = random.Random(7)
A = lambda **kw: json.dumps(dict({"source": "invalid", "resource": "bad-host",
                                  "check": "bad-check"}, **kw)).encode()
def sized(n):  # a valid alert of exactly n bytes
    base = {"source": "invalid-edge", "resource": "edge-host", "check": "size", "summary": ""}
    pad = n - len(json.dumps(base).encode())
    base["summary"] = "x" * pad
    b = json.dumps(base).encode()
    assert len(b) == n, (len(b), n)
    return b
bad = []   # (kind, value, reason, detail substring)
for i in range(4):
    bad.append(("notjson", b"not json at all {%d" % i, "not_json", ""))
    bad.append(("notutf8", b'{"source":"invalid","resource":"bad-\xff\xfe%d","check":"c"}' % i,
                "not_utf8", ""))
for v in (b'"a string"', b"42", b"null", b"[1, 2]"):
    bad.append(("notobject", v, "not_object", ""))
for f in ("source", "resource", "check"):
    for i in range(2):
        m = {"source": "invalid", "resource": "bad-host", "check": "bad-check", "seq": i}
        del m[f]
        bad.append(("missing" + f, json.dumps(m).encode(), "missing_field", f))
    bad.append(("empty" + f, A(**{f: ""}), "missing_field", f))
for i in range(3):
    bad.append(("badstatus", A(status="exploded%d" % i), "bad_field", "status"))
    bad.append(("badseverity", A(severity="apocalyptic%d" % i), "bad_field", "severity"))
    bad.append(("badtime", A(occurred_at="yesterday %d" % i), "bad_field", "occurred_at"))
    bad.append(("emptyarray", b"[]" if i == 0 else b"[ ]" if i == 1 else b" [\n]".replace(b"\n", b" "),
                "empty", ""))
    bad.append(("toobig", A(summary="y" * (2100 + 500 * i)), "too_big", ""))
bad.append(("toobig", sized(2049), "too_big", ""))
for b in bad:
    assert b"\n" not in b[1] and b"\t" not in b[1]
lines = list(valid)
for n, (kind, value, reason, detail) in enumerate(bad):
    lines.insert(rnd.randrange(len(lines) + 1), b"bad-%s-%d\t" % (kind.encode(), n) + value)
lines.insert(rnd.randrange(len(lines) + 1), b"edge-host\t" + sized(2048))
with open(sys.argv[2], "wb") as f:
    f.write(b"\n".join(lines) + b"\n")
with open(sys.argv[3], "w") as f:
    for n, (kind, value, reason, detail) in enumerate(bad):
        f.write("bad-%s-%d\t%s\t%s\n" % (kind, n, reason, detail))
PY
n_bad=$(wc -l <"$T_DIR/expect")
n_msgs=$(wc -l <"$T_DIR/msgs")
t_produce "$T_DIR/msgs"
t_log "produced $n_msgs messages: 5,001 valid, $n_bad bad of $(cut -f2 "$T_DIR/expect" | sort -u | wc -l) reasons"

# The dead-letter topic, as key TAB headers TAB length TAB value.
read_dlq() {
    kcat -C -b "$TD_TEST_KAFKA_BROKERS" -t "$DLQ" -o beginning -e -q \
        -f '%k\t%h\t%S\t%s\n' >"$T_DIR/dlq.raw" 2>"$T_DIR/dlq.err"
}
dlq_count() { if read_dlq; then grep -c '^bad-' "$T_DIR/dlq.raw" || true; else echo 0; fi; }
dlq_has() { [ "$(dlq_count)" -ge "$1" ]; }
caught_up() {
    [ "$(t_sql "SELECT coalesce(sum(next_offset), 0) FROM triaged.kafka_offset WHERE topic = '$T_TOPIC'")" = "$n_msgs" ]
}
t_wait_until 60 "committed positions to cover all $n_msgs messages" caught_up
t_wait_until 30 "$n_bad dead letters in $DLQ (have $(dlq_count))" dlq_has "$n_bad"
t_alive "$T_PID" || t_fail "triaged died"

# the valid ones, exactly
t_expect_sql "SELECT count(*), sum(occurrences) FROM triaged.alert WHERE source = 'invalid'" "500|5000"
t_expect_sql "SELECT count(*), sum(occurrences), bool_and(length(summary) > 1900) FROM triaged.alert WHERE source = 'invalid-edge'" "1|1|t"
t_expect_sql "SELECT count(*) FROM triaged.alert WHERE source NOT IN ('invalid', 'invalid-edge') OR resource LIKE 'bad-%'" "0"

# the bad ones, each once, with the right reason, unchanged
read_dlq
python3 - "$T_DIR/dlq.raw" "$T_DIR/expect" "$T_DIR/msgs" "$T_TOPIC" <<'PY' || t_fail "dead-letter topic $DLQ does not hold each bad message once with its reason (above)"
import re, sys
raw = open(sys.argv[1], "rb").read()
expect = {}
for line in open(sys.argv[2]):
    k, reason, detail = line.rstrip("\n").split("\t")
    expect[k] = (reason, detail)
orig = {}
for line in open(sys.argv[3], "rb").read().splitlines():
    k, v = line.split(b"\t", 1)
    if k.startswith(b"bad-"):
        orig[k.decode()] = v
topic = sys.argv[4]
got, errors, pos = {}, [], 0
while pos < len(raw):
    k_end = raw.index(b"\t", pos); key = raw[pos:k_end].decode()
    h_end = raw.index(b"\t", k_end + 1); hdr = raw[k_end + 1:h_end].decode("utf-8", "replace")
    l_end = raw.index(b"\t", h_end + 1); n = int(raw[h_end + 1:l_end])
    val = raw[l_end + 1:l_end + 1 + n]
    assert raw[l_end + 1 + n:l_end + 2 + n] == b"\n", "kcat output out of step at %d" % pos
    pos = l_end + 2 + n
    got.setdefault(key, []).append((hdr, val))
for k, (reason, detail) in sorted(expect.items()):
    recs = got.pop(k, [])
    if len(recs) != 1:
        errors.append("%s: %d times in the dead-letter topic, expected once" % (k, len(recs)))
        if not recs:
            continue
    hdr, val = recs[0]
    m = re.search(r"(?:^|,)triaged-reason=([^,]*)", hdr)
    r = m.group(1) if m else None
    d = re.search(r"(?:^|,)triaged-detail=(.*?),triaged-source-topic=", hdr)
    d = d.group(1) if d else ""
    if r != reason:
        errors.append("%s: triaged-reason=%s, expected %s (headers: %s)" % (k, r, reason, hdr[:200]))
    if detail and not re.search(r"(^|[^a-z_])%s([^a-z_]|$)" % detail, d):
        errors.append("%s: triaged-detail=%r does not name field '%s'" % (k, d, detail))
    if ("triaged-source-topic=%s" % topic) not in hdr or not re.search(
            r"triaged-source-partition=\d+,triaged-source-offset=\d+", hdr):
        errors.append("%s: no source topic/partition/offset headers: %s" % (k, hdr[:300]))
    if val != orig[k]:
        errors.append("%s: value changed: %r..., sent %r..." % (k, val[:60], orig[k][:60]))
for k, recs in sorted(got.items()):
    errors.append("%s: in the dead-letter topic %d times, but it is not a bad message" % (k, len(recs)))
for e in errors[:25]:
    print("  " + e, file=sys.stderr)
if errors:
    print("  %d problems" % len(errors), file=sys.stderr)
    sys.exit(1)
print("%d dead letters, each once, reasons and values right" % len(expect))
PY
t_log "ok: each of the $n_bad bad messages is in $DLQ exactly once with the right triaged-reason"

# Rate-limited warnings: at most 5 lines per 10 s window, not one a message.
rejected() { grep -c 'msg="kafka: message rejected"' "$T_DIR/triaged.log" || true; }
lines=$(rejected)
[ "$lines" -ge 1 ] || t_fail "no 'kafka: message rejected' warning logged for $n_bad bad messages"
[ "$lines" -lt "$n_bad" ] || t_fail "$lines 'message rejected' lines for $n_bad bad messages: not rate-limited"
t_log "ok: $lines 'kafka: message rejected' lines for $n_bad bad messages"
# One more bad message once the 10 s window has passed: it is logged, with
# what was suppressed; then lines + suppressed = every bad message.
first=$(grep -m1 'msg="kafka: message rejected"' "$T_DIR/triaged.log" | cut -d' ' -f1)
wait_s=$(python3 -c "
import datetime, sys
t = datetime.datetime.strptime('$first', '%Y-%m-%dT%H:%M:%S.%fZ').replace(tzinfo=datetime.timezone.utc)
print(max(0.0, 10.5 - (datetime.datetime.now(datetime.timezone.utc) - t).total_seconds()))")
t_log "waiting ${wait_s}s for the warning window to pass"
sleep "$wait_s"
printf 'bad-final\tnot json either\n' >"$T_DIR/final"
t_produce "$T_DIR/final"
n_msgs=$((n_msgs + 1))
# shellcheck disable=SC2016  # evaluated later, on purpose
t_wait_until 30 "the last bad message to be logged" eval '[ "$(rejected)" -gt "$lines" ]'
t_wait_until 30 "the last bad message in $DLQ" dlq_has $((n_bad + 1))
total=$(grep 'msg="kafka: message rejected"' "$T_DIR/triaged.log" |
    sed -nE 's/.* suppressed=([0-9]+).*/\1/p' | awk '{ n += 1 + $1 } END { print n + 0 }')
[ "$total" = $((n_bad + 1)) ] ||
    t_fail "'message rejected' lines + suppressed= counts = $total, expected $((n_bad + 1)) bad messages"
t_log "ok: the warnings account for all $((n_bad + 1)) bad messages (lines + suppressed=)"
grep 'msg="kafka: message rejected"' "$T_DIR/triaged.log" | tail -n 1 | cut -c1-250 | sed 's/^/    /'

# the stream went on after the bad ones
t_gen "$T_DIR/after" 100 --fingerprints 10 --source invalid-after
t_produce "$T_DIR/after"
t_wait_sql "SELECT count(*), sum(occurrences) FROM triaged.alert WHERE source = 'invalid-after'" "10|100" 30
t_log "ok: the stream goes on"
t_alive "$T_PID" || t_fail "triaged died"
"$TD_BUILD_DIR/triagectl" -c "$T_DIR/triaged.conf" audit verify >/dev/null || t_fail "audit verify"
t_log "passed"
