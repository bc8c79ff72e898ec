#!/usr/bin/env bash
# Binding (DESIGN §4) and a CMDB change applied without a restart: an alert
# binds by its explicit ci, by CI name, alias, IP address, HOST:PORT, and by
# a [cmdb] bind_label; an alert nothing matches stays unbound (and still
# opens its incident, keyed by resource). Then a new alias is imported while
# triaged runs: after the NOTIFY-driven reload (seen in the log, no
# restart), the next alert with that alias binds to the CI and joins the
# CI's open incident.
source "$(dirname "$0")/lib.sh"
t_db
t_topic 4
t_conf <<'CONF'
[cmdb]
bind_label = host
CONF
CTL=("$TD_BUILD_DIR/triagectl" -c "$T_DIR/triaged.conf")
"${CTL[@]}" migrate >/dev/null || t_fail "migrate"
cat > "$T_DIR/cmdb.json" <<'JSON'
{"cis": [{"name": "web-01", "aliases": ["web-01.example"], "addresses": ["10.1.0.1"]},
         {"name": "web-02", "addresses": ["fd00::2"]},
         {"name": "db-01"}]}
JSON
"${CTL[@]}" cmdb import "$T_DIR/cmdb.json" >/dev/null || t_fail "import"
t_start
t_wait_log "$T_DIR/triaged.log" 'graph loaded" cis=3 ' 30

send() { printf '%s\t%s\n' "$1" "$2" > "$T_DIR/msg"; t_produce "$T_DIR/msg"; }
send a '{"source":"t","resource":"web-01","check":"by_name"}'
send a '{"source":"t","resource":"web-01.example","check":"by_alias"}'
send a '{"source":"t","resource":"10.1.0.1","check":"by_address"}'
send a '{"source":"t","resource":"10.1.0.1:9100","check":"by_host_port"}'
send b '{"source":"t","resource":"fd00:0:0::2","check":"by_ipv6"}'
send c '{"source":"t","resource":"something-else","check":"by_explicit_ci","ci":"db-01"}'
send c '{"source":"t","resource":"pod-7f9c","check":"by_label","labels":{"host":"db-01"}}'
send d '{"source":"t","resource":"www.example","check":"unbound"}'
t_wait_sql "SELECT count(*) FROM triaged.alert" "8"
t_expect_sql "SELECT a.check_name, coalesce(c.name, '-') FROM triaged.alert a LEFT JOIN triaged.ci c ON c.id = a.ci_id ORDER BY 1" \
    $'by_address|web-01\nby_alias|web-01\nby_explicit_ci|db-01\nby_host_port|web-01\nby_ipv6|web-02\nby_label|db-01\nby_name|web-01\nunbound|-'
t_expect_sql "SELECT coalesce(c.name, 'unbound:' || i.resource), (SELECT count(*) FROM triaged.incident_alert ia WHERE ia.incident_id = i.id)
    FROM triaged.incident i LEFT JOIN triaged.ci c ON c.id = i.ci_id ORDER BY 1" $'db-01|2\nunbound:www.example|1\nweb-01|4\nweb-02|1'

# the new alias, while triaged runs
printf '{"cis": [{"name": "web-01", "aliases": ["web-01.example", "www.example"]}]}' > "$T_DIR/alias.json"
loads=$(grep -c 'cmdb: graph loaded' "$T_DIR/triaged.log")
"${CTL[@]}" cmdb import "$T_DIR/alias.json" >/dev/null || t_fail "alias import"
t0=$(date +%s%N)
t_wait_until 10 "a CMDB reload after the import" \
    eval "[ \$(grep -c 'cmdb: graph loaded' '$T_DIR/triaged.log') -gt $loads ]"
t_log "ok: reloaded $(( ($(date +%s%N) - t0) / 1000000 )) ms after the import: $(grep 'cmdb: graph loaded' "$T_DIR/triaged.log" | tail -n 1 | grep -o 'cis=.*')"
send d '{"source":"t","resource":"www.example","check":"after_alias"}'
t_wait_sql "SELECT count(*) FROM triaged.alert" "9"
t_expect_sql "SELECT c.name FROM triaged.alert a JOIN triaged.ci c ON c.id = a.ci_id WHERE a.check_name = 'after_alias'" "web-01"
t_expect_sql "SELECT c.name, count(*) FROM triaged.incident_alert ia JOIN triaged.incident i ON i.id = ia.incident_id
    JOIN triaged.ci c ON c.id = i.ci_id JOIN triaged.alert a ON a.id = ia.alert_id
    WHERE a.check_name = 'after_alias' GROUP BY 1" "web-01|1"
# the alert that was unbound before the change stays what it was
t_expect_sql "SELECT ci_id IS NULL FROM triaged.alert WHERE check_name = 'unbound'" "t"
t_log "passed"
