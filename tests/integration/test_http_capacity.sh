#!/usr/bin/env bash
# Capacity over HTTP (DESIGN §5): POST /api/v1/capacity/samples (object or
# array; 202 once stored; a retry stores nothing twice; bad samples 400 with
# the reason), GET /api/v1/capacity/trend (the fit; 404 for an unknown CI; 400
# without ci/metric or with a bad window) and GET /api/v1/capacity/risks.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/http_lib.sh"

h_setup <<'CONF'
[capacity]
rollup_interval = 1s
CONF
t_sql "INSERT INTO triaged.ci (name, aliases) VALUES ('db-01', '{db01.example}'), ('db-02', '{}')" >/dev/null

# 200 samples of db-01 (growing 5/day towards 1000) in 2 arrays, over ~16 hours ending now
body=$(python3 - <<'PY'
import json, datetime
now = datetime.datetime.now(datetime.timezone.utc).replace(second=0, microsecond=0)
s = [{"ci": "db01.example", "metric": "disk", "value": 800 + 5 * (i * 5 / 1440), "limit": 1000,
      "ts": (now - datetime.timedelta(minutes=5 * (199 - i))).strftime("%Y-%m-%dT%H:%M:%SZ")}
     for i in range(200)]
print(json.dumps(s))
PY
)
h_req POST /api/v1/capacity/samples "$H_WRITE" "$body"
h_expect 202 "j['accepted']=200"
h_req POST /api/v1/capacity/samples "$H_WRITE" "$body"   # a client's retry
h_expect 202 "j['accepted']=200"
t_expect_sql "SELECT count(*) FROM triaged.capacity_sample" 200
h_req POST /api/v1/capacity/samples "$H_WRITE" '{"ci":"db-02","metric":"conns","value":10,"limit":100}'
h_expect 202 "j['accepted']=1"
t_expect_sql "SELECT count(*) FROM triaged.capacity_sample s JOIN triaged.ci c ON c.id = s.ci_id WHERE c.name = 'db-02'" 1
# a body between the old 256 KiB message limit and max_body (1 MiB, both
# defaults now): accepted whole. (Ten days ago: samples older than the raw
# retention, 90 days, would be dropped by the next tick, which runs every
# second here.)
big=$(python3 -c '
import json, datetime
t0 = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) - datetime.timedelta(days=10)
print(json.dumps([{"ci": "db-02", "metric": "iops", "value": i % 97, "limit": 1000,
                   "ts": (t0 + datetime.timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")}
                  for i in range(5000)]))')
[ "${#big}" -gt 400000 ] && [ "${#big}" -lt 1000000 ] || t_fail "big body is ${#big} bytes"
h_req POST /api/v1/capacity/samples "$H_WRITE" "$big"
h_expect 202 "j['accepted']=5000"
t_expect_sql "SELECT count(*) FROM triaged.capacity_sample s JOIN triaged.ci c ON c.id = s.ci_id WHERE c.name = 'db-02' AND s.metric = 'iops'" 5000
h_req POST /api/v1/capacity/samples "$H_WRITE" '{"ci":"db-02","value":10}'
h_expect 400 "j['error']=missing_field"
h_req POST /api/v1/capacity/samples "$H_WRITE" '{"ci":"db-02","metric":"m","value":1,"limit":0}'
h_expect 400 "j['error']=bad_field"
h_req POST /api/v1/capacity/samples "$H_READ" '{"ci":"db-02","metric":"m","value":1}'
h_expect 403

# the trend, once the daemon rolled the samples up
t_wait_sql "SELECT sum(n) FROM triaged.capacity_series cs JOIN triaged.ci c ON c.id = cs.ci_id WHERE c.name = 'db-01'" 200 30
h_req GET "/api/v1/capacity/trend?ci=db-01&metric=disk&window=2d&horizon=90d" "$H_READ"
h_expect 200 "j['ci']=db-01" "j['status']=ok" "j['samples']=200" "round(j['slope_per_day'],6)=5.0" \
    "j['limit']=1000" "j['within_horizon']=true" "j['exhaustion_at'] is not None and j['earliest_at'] is not None=true"
h_req GET "/api/v1/capacity/trend?ci=db01.example&metric=disk" "$H_READ"
h_expect 200 "j['ci']=db-01"
h_req GET "/api/v1/capacity/trend?ci=nope&metric=disk" "$H_READ"
h_expect 404 "j['error']=not_found"
h_req GET "/api/v1/capacity/trend?ci=db-01" "$H_READ"
h_expect 400 "j['error']=bad_request"
h_req GET "/api/v1/capacity/trend?ci=db-01&metric=disk&window=forever" "$H_READ"
h_expect 400 "j['error']=bad_request"
h_req GET "/api/v1/capacity/trend?ci=db-01&metric=disk"
h_expect 401

h_req GET "/api/v1/capacity/risks?horizon=90d" "$H_READ"
h_expect 200 "j['count']=1" "j['risks'][0]['ci']=db-01" "j['risks'][0]['metric']=disk"
h_req GET "/api/v1/capacity/risks?horizon=1d" "$H_READ"
h_expect 200 "j['count']=0"
h_req GET "/api/v1/capacity/risks?limit=0" "$H_READ"
h_expect 400
t_log "PASS"
