#!/usr/bin/env bash
# triagectl cmdb import / export (no daemon): the demo CMDB imports with
# exact counts; importing it again changes nothing (idempotent); export then
# import of the export changes nothing and exports the same bytes; a CSV of
# CIs imports; --dry-run writes nothing. Rejections exit 1, name the
# problem and change nothing: a cycle (with its path), a dangling reference,
# a duplicate name, a malformed entry, and invalid JSON.
source "$(dirname "$0")/lib.sh"
t_db
t_conf
CTL=("$TD_BUILD_DIR/triagectl" -c "$T_DIR/triaged.conf")
"${CTL[@]}" migrate >/dev/null || t_fail "migrate"

out=$("${CTL[@]}" cmdb import "$TD_SOURCE_DIR/config/demo-cmdb.json") || t_fail "demo import: $out"
[ "$(tail -n 1 <<<"$out")" = "imported: 30 created, 0 changed, 0 rejected" ] || t_fail "demo import said: $out"
t_expect_sql "SELECT (SELECT count(*) FROM triaged.ci), (SELECT count(*) FROM triaged.ci_relation),
    (SELECT count(*) FROM triaged.service), (SELECT count(*) FROM triaged.service_ci)" "11|16|3|4"
t_expect_sql "SELECT c.name, c.aliases::text, c.addresses::text, c.criticality, c.attributes->>'engine'
    FROM triaged.ci c WHERE c.name = 'db-01'" "db-01|{db-01.shop.example,pg-primary}|{10.0.3.31}|critical|postgresql-15"
t_expect_sql "SELECT s.tier, s.owner_team FROM triaged.service s WHERE s.name = 'Payments'" "1|payments"

out=$("${CTL[@]}" cmdb import "$TD_SOURCE_DIR/config/demo-cmdb.json") || t_fail "second import: $out"
[ "$out" = "imported: 0 created, 0 changed, 0 rejected" ] || t_fail "second import said: $out"
t_log "ok: importing again changes nothing"

"${CTL[@]}" cmdb export -o "$T_DIR/export1.json" || t_fail "export"
out=$("${CTL[@]}" cmdb import "$T_DIR/export1.json") || t_fail "import of the export: $out"
[ "$out" = "imported: 0 created, 0 changed, 0 rejected" ] || t_fail "import of the export said: $out"
"${CTL[@]}" cmdb export > "$T_DIR/export2.json" || t_fail "export to stdout"
cmp -s "$T_DIR/export1.json" "$T_DIR/export2.json" || t_fail "export differs after re-import"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert (len(d["cis"]), len(d["relations"]), len(d["services"])) == (11, 16, 3)' \
    "$T_DIR/export1.json" || t_fail "export counts"
t_log "ok: export round-trips"

# a change: one CI's criticality, a new alias elsewhere, a relation's kind
cat > "$T_DIR/change.json" <<'JSON'
{"cis": [{"name": "lb-01", "criticality": "critical"}, {"name": "app-01", "aliases": ["app-01.shop.example", "web-a"]}],
 "relations": [{"child": "reporting", "parent": "db-02", "kind": "connected_to"}]}
JSON
out=$("${CTL[@]}" cmdb import "$T_DIR/change.json") || t_fail "change import: $out"
[ "$(tail -n 1 <<<"$out")" = "imported: 0 created, 3 changed, 0 rejected" ] || t_fail "change import said: $out"
t_expect_sql "SELECT criticality, kind FROM triaged.ci WHERE name = 'lb-01'" "critical|load_balancer"

# CSV of CIs, and --dry-run
printf 'name,kind,aliases,addresses,criticality,attr.rack\ncache-01,cache,"cache-01.shop.example;redis-a",10.0.4.41,medium,B2\ncache-02,cache,,10.0.4.42 fd00::42,,\n' > "$T_DIR/cis.csv"
out=$("${CTL[@]}" cmdb import "$T_DIR/cis.csv" --dry-run) || t_fail "csv dry run: $out"
t_expect_sql "SELECT count(*) FROM triaged.ci WHERE name LIKE 'cache-%'" "0"
out=$("${CTL[@]}" cmdb import "$T_DIR/cis.csv") || t_fail "csv import: $out"
[ "$(tail -n 1 <<<"$out")" = "imported: 2 created, 0 changed, 0 rejected" ] || t_fail "csv import said: $out"
t_expect_sql "SELECT name, aliases::text, addresses::text, attributes::text FROM triaged.ci WHERE name LIKE 'cache-%' ORDER BY 1" \
    $'cache-01|{cache-01.shop.example,redis-a}|{10.0.4.41}|{"rack": "B2"}\ncache-02|{}|{10.0.4.42,fd00::42}|{}'

"${CTL[@]}" cmdb export > "$T_DIR/before.json"
# reject: expect exit 1, the message, and nothing changed
reject() {
    local file=$1 want=$2 out rc=0
    out=$("${CTL[@]}" cmdb import "$file" 2>&1) || rc=$?
    [ "$rc" = 1 ] || t_fail "import of $(basename "$file") exited $rc (want 1): $out"
    grep -qF -- "$want" <<<"$out" || t_fail "import of $(basename "$file"): no [$want] in: $out"
    grep -q "nothing changed" <<<"$out" || t_fail "no 'nothing changed' in: $out"
    "${CTL[@]}" cmdb export > "$T_DIR/after.json"
    cmp -s "$T_DIR/before.json" "$T_DIR/after.json" || t_fail "import of $(basename "$file") changed the CMDB"
    t_log "ok: rejected $(basename "$file"): $(grep -F -- "$want" <<<"$out" | head -n 1)"
}
# a cycle through new CIs and an existing one (core-sw-01 already depends on nothing;
# the new edge core-sw-01 -> edge-fw closes edge-fw -> lb-01 -> core-sw-01)
cat > "$T_DIR/cycle.json" <<'JSON'
{"cis": [{"name": "edge-fw", "kind": "firewall"}],
 "relations": [{"child": "edge-fw", "parent": "lb-01"}, {"child": "core-sw-01", "parent": "edge-fw"}]}
JSON
reject "$T_DIR/cycle.json" "cycle: core-sw-01 -> edge-fw -> lb-01 -> core-sw-01 (each depends on the next)"
cat > "$T_DIR/dangling.json" <<'JSON'
{"cis": [{"name": "new-app", "kind": "application"}],
 "relations": [{"child": "new-app", "parent": "no-such-host"}],
 "services": [{"name": "New", "tier": 2, "cis": ["new-app", "ghost"]}]}
JSON
reject "$T_DIR/dangling.json" "rejected relation new-app -> no-such-host: relation #1: unknown reference: no CI named 'no-such-host'"
reject "$T_DIR/dangling.json" "rejected service New: service #1: unknown reference: no CI named 'ghost'"
printf '{"cis": [{"name": "x-1"}, {"name": "x-1", "kind": "vm"}]}' > "$T_DIR/dup.json"
reject "$T_DIR/dup.json" "rejected ci x-1: duplicate name: entries #1, #2"
printf '{"cis": [{"name": "x-2", "addresses": ["not-an-ip"]}], "services": [{"name": "S", "tier": 7}]}' > "$T_DIR/bad.json"
reject "$T_DIR/bad.json" "addresses must be an array of IP addresses"
reject "$T_DIR/bad.json" "tier must be 1, 2 or 3"
printf '{"cis": [' > "$T_DIR/broken.json"
reject_json() {
    local out rc=0
    out=$("${CTL[@]}" cmdb import "$T_DIR/broken.json" 2>&1) || rc=$?
    [ "$rc" = 1 ] && grep -q "not valid JSON" <<<"$out" || t_fail "broken JSON: rc $rc: $out"
    t_log "ok: $out"
}
reject_json
t_log "passed"
