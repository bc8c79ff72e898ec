#!/usr/bin/env bash
# A switch failure is one incident (DESIGN §4 correlation, issue 6): three
# copies of the topology core switch -> 40 hosts -> 120 app instances (3 per
# host) in 6 services (tiers 1, 1, 2, 2, 3, 3), one per run, with the
# switch's alert first (r1: the others come once its incident is open), in the
# middle (r2) and last (r3) of a storm of 161 firing alerts (one per CI)
# produced in random order, in 4 bursts over ~2 seconds (so they span
# several batches, applied by two lanes at once). Resources are the CIs' names,
# aliases and addresses (binding). For each run, exactly: 1 open incident,
# on the switch, P1 (tier-1 services impacted x critical), its title naming
# the switch, 1 cause alert and 160 symptom alerts, the 6 services impacted,
# every other incident of the run merged into it (merged_into, with a
# 'merged' event on the survivor and a 'merged_into' event on each merged
# one) -- and when the switch's alert came first, no other incident at all
# (later alerts join it directly); and an intact audit chain.
source "$(dirname "$0")/lib.sh"

t_db
t_topic 8
t_conf
"$TD_BUILD_DIR/triagectl" -c "$T_DIR/triaged.conf" migrate >/dev/null || t_fail "migrate"

python3 - "$T_DIR/cmdb.json" <<'PY'
import json, sys
doc = {"cis": [], "relations": [], "services": []}
for r in ("r1", "r2", "r3"):
    doc["cis"].append({"name": f"{r}-sw", "kind": "switch", "addresses": [f"10.{r[1]}.0.1"]})
    for h in range(40):
        doc["cis"].append({"name": f"{r}-host-{h:02d}", "aliases": [f"{r}-host-{h:02d}.example"],
                           "addresses": [f"10.{r[1]}.1.{h + 1}"]})
        doc["relations"].append({"child": f"{r}-host-{h:02d}", "parent": f"{r}-sw",
                                 "kind": "connected_to"})
    for a in range(120):
        doc["cis"].append({"name": f"{r}-app-{a:03d}", "kind": "application"})
        doc["relations"].append({"child": f"{r}-app-{a:03d}", "parent": f"{r}-host-{a // 3:02d}",
                                 "kind": "runs_on"})
    for s, tier in enumerate((1, 1, 2, 2, 3, 3)):
        doc["services"].append({"name": f"{r}-svc-{s}", "tier": tier, "owner_team": "team-" + str(s),
                                "cis": [f"{r}-app-{a:03d}" for a in range(s * 20, s * 20 + 20)]})
json.dump(doc, open(sys.argv[1], "w"))
PY
out=$("$TD_BUILD_DIR/triagectl" -c "$T_DIR/triaged.conf" cmdb import "$T_DIR/cmdb.json") ||
    t_fail "cmdb import: $out"
t_log "cmdb import: $(tail -n 1 <<<"$out")"
t_expect_sql "SELECT count(*) FROM triaged.ci" "483"
t_start
t_wait_consuming

# r PLACE: the 161 alerts of run r, shuffled, the switch's at PLACE (first,
# middle, last), in 4 bursts
storm() {
    python3 - "$T_DIR/storm-$1" "$1" "$2" > "$T_DIR/storm-$1.n" <<'PY'
import json, random, sys
path, r, place = sys.argv[1:]
random.seed(hash(r) & 0xffff)
def alert(resource, check, sev):
    return {"source": "storm", "resource": resource, "check": check, "severity": sev}
others = [alert(f"{r}-host-{h:02d}" if h % 2 else f"10.{r[1]}.1.{h + 1}", "host_down", "major")
          for h in range(40)]
others += [alert(f"{r}-app-{a:03d}", "http_5xx", "major") for a in range(120)]
random.shuffle(others)
sw = alert(f"{r}-sw", "link_down", "critical")
# first: alone, the others once its incident is open (messages of
# different partitions produced at once have no order: several lanes or
# instances may apply them in any order, correlated by the merges checked
# below)
pos = {"first": 0, "middle": 80, "last": 160}[place]
msgs = others[:pos] + [sw] + others[pos:]
bursts = [[sw], others[:40], others[40:80], others[80:120], others[120:]] if place == "first" \
    else [msgs[i * 41:(i + 1) * 41] for i in range(4)]
for i, burst in enumerate(bursts):
    with open(f"{path}.{i}", "w") as f:
        for m in burst:
            f.write(m["resource"] + "\t" + json.dumps(m) + "\n")
print(len(bursts))
PY
    local i n
    n=$(cat "$T_DIR/storm-$1.n")
    for ((i = 0; i < n; i++)); do
        t_produce "$T_DIR/storm-$1.$i"
        # first: the others come once its incident is there
        [ "$2" != first ] || [ "$i" -gt 0 ] ||
            t_wait_sql "SELECT count(*) FROM triaged.incident i JOIN triaged.ci c ON c.id = i.ci_id WHERE c.name = '$1-sw'" 1 30
        sleep 0.5   # a storm over a few seconds, as the issue describes
    done
}

run_sql() { sed "s/RUN/$1/g" <<<"$2"; }

check_run() {
    local r=$1
    local inc="SELECT i.id FROM triaged.incident i JOIN triaged.ci c ON c.id = i.ci_id
               WHERE c.name LIKE 'RUN-%' AND i.status IN ('new', 'acknowledged') AND i.merged_into IS NULL"
    t_wait_sql "$(run_sql "$r" "SELECT count(*) FROM triaged.alert WHERE resource LIKE 'RUN-%' OR resource LIKE '10.${r:1}.%'")" "161" 60
    t_wait_sql "$(run_sql "$r" "SELECT count(*) FROM ($inc) x")" "1" 30
    t_wait_sql "$(run_sql "$r" "SELECT role, count(*) FROM triaged.incident_alert WHERE incident_id = ($inc) GROUP BY 1 ORDER BY 1")" \
        $'cause|1\nsymptom|160' 30
    t_expect_sql "$(run_sql "$r" "SELECT c.name, i.priority, i.impact, i.urgency FROM triaged.incident i JOIN triaged.ci c ON c.id = i.ci_id WHERE i.id = ($inc)")" \
        "$r-sw|1|1|1"
    # the title names the root cause CI and the first alert (one of its own)
    t_expect_sql "$(run_sql "$r" "SELECT count(*) FROM triaged.incident i JOIN triaged.incident_alert ia ON ia.incident_id = i.id
        JOIN triaged.alert a ON a.id = ia.alert_id WHERE i.id = ($inc) AND i.title = 'RUN-sw: ' || a.check_name || ' on ' || a.resource")" "1"
    t_expect_sql "$(run_sql "$r" "SELECT count(*), min(s.name), max(s.name) FROM triaged.incident_service x JOIN triaged.service s ON s.id = x.service_id WHERE x.incident_id = ($inc)")" \
        "6|$r-svc-0|$r-svc-5"
    # every alert of the run is in that incident and only there
    t_expect_sql "$(run_sql "$r" "SELECT count(*) FROM triaged.alert a WHERE (a.resource LIKE 'RUN-%' OR a.resource LIKE '10.${r:1}.%') AND a.ci_id IS NOT NULL AND a.status = 'firing'")" "161"
    t_expect_sql "$(run_sql "$r" "SELECT count(*) FROM triaged.incident_alert ia JOIN triaged.alert a ON a.id = ia.alert_id WHERE (a.resource LIKE 'RUN-%' OR a.resource LIKE '10.${r:1}.%') AND ia.incident_id <> ($inc)")" "0"
    # the others of the run were merged into it, each with its event; the survivor has one per merge
    t_expect_sql "$(run_sql "$r" "SELECT count(*) = count(*) FILTER (WHERE i.status = 'closed' AND i.merged_into IS NOT NULL
            AND EXISTS (SELECT 1 FROM triaged.incident_event e WHERE e.incident_id = i.id AND e.kind = 'merged_into'))
        FROM triaged.incident i JOIN triaged.ci c ON c.id = i.ci_id WHERE c.name LIKE 'RUN-%' AND i.id <> ($inc)")" "t"
    t_expect_sql "$(run_sql "$r" "SELECT (SELECT count(*) FROM triaged.incident_event e WHERE e.incident_id = ($inc) AND e.kind = 'merged')
        = (SELECT count(*) FROM triaged.incident i WHERE i.merged_into = ($inc))")" "t"
    local n
    n=$(t_sql "$(run_sql "$r" "SELECT count(*) FROM triaged.incident i JOIN triaged.ci c ON c.id = i.ci_id WHERE c.name LIKE 'RUN-%'")")
    t_log "run $r: $n incidents opened in all, $((n - 1)) of them merged into the switch's"
}

storm r1 first
check_run r1
# the switch's incident was there first: every other alert joined it directly
t_expect_sql "SELECT count(*) FROM triaged.incident i JOIN triaged.ci c ON c.id = i.ci_id WHERE c.name LIKE 'r1-%'" "1"
t_expect_sql "SELECT i.title FROM triaged.incident i JOIN triaged.ci c ON c.id = i.ci_id WHERE c.name = 'r1-sw'" "r1-sw: link_down on r1-sw"
storm r2 middle
check_run r2
storm r3 last
check_run r3
# the counts kept on the incidents (sql/013: merges move links) are those of a recount
t_expect_sql "SELECT count(*) FROM triaged.incident_counts_verify()" "0"
out=$("$TD_BUILD_DIR/triagectl" -c "$T_DIR/triaged.conf" audit verify 2>&1) || t_fail "audit verify: $out"
t_log "$out"
t_log "passed"
