#!/usr/bin/env bash
# The HTML service level review renders: `triagectl report --format html` for
# three services (one breached with a burn-down below zero, one met with
# maintenance, one without SLA), opened in Debian's headless Chromium; the
# screenshot is decoded (python3 zlib) and must show the page: mostly white,
# yet with thousands of coloured pixels (charts, badges) and dark text.
# TD_SLA_SCREENSHOT=FILE keeps the PNG (docs/sla-report.png was made so).
source "$(dirname "$0")/lib.sh"

BROWSER=$(command -v chromium || command -v chromium-browser || true)
[ -n "$BROWSER" ] || t_fail "chromium is not installed (scripts/setup.sh installs it)"

t_db
t_ctl
"${T_CTL[@]}" migrate >/dev/null || t_fail "migrate"
cat > "$T_DIR/cmdb.json" <<'JSON'
{"cis": [{"name": "web-01"}, {"name": "db-01"}],
 "services": [
  {"name": "Web shop", "tier": 1, "cis": ["web-01"],
   "sla": {"target": 99.9, "service_hours": "24x7"}},
  {"name": "Payments <EU>", "tier": 1, "cis": ["db-01"],
   "sla": {"target": 99.5, "service_hours": "Mon-Fri 08:00-18:00 Europe/Berlin"}},
  {"name": "Intranet", "tier": 3}]}
JSON
"${T_CTL[@]}" cmdb import "$T_DIR/cmdb.json" >/dev/null || t_fail "import"
t_sql "INSERT INTO triaged.incident (title, resource, status, opened_at, resolved_at, acknowledged_at, urgency, priority)
SELECT 't', 'r' || k, 'resolved', o, o + d, o + interval '4 min', 1, p
  FROM (VALUES (1, timestamptz '2026-10-03 10:00Z', interval '25 min', 1), (2, '2026-10-09 14:00Z', '50 min', 2),
               (3, '2026-10-17 03:00Z', '5 min', 3), (4, '2026-10-22 09:00Z', '15 min', 2),
               (5, '2026-10-06 09:00Z', '40 min', 3), (6, '2026-10-28 13:00Z', '20 min', 4)) v(k, o, d, p);
INSERT INTO triaged.incident_service SELECT i.id, s.id FROM triaged.incident i, triaged.service s
 WHERE (i.resource IN ('r1', 'r2', 'r3', 'r4') AND s.name = 'Web shop')
    OR (i.resource IN ('r5', 'r6') AND s.name = 'Payments <EU>');
INSERT INTO triaged.maintenance (service_id, during, change_ref, reason)
SELECT id, '[2026-10-14 09:00Z, 2026-10-14 11:00Z)', 'CHG-1042', 'database upgrade'
  FROM triaged.service WHERE name = 'Payments <EU>';
INSERT INTO triaged.alert (fingerprint, source, resource, check_name, status, occurrences, first_seen,
                           last_seen, state_changed_at, resolved_at)
SELECT 'f' || i.id || s, s, 'r', 'c', 'resolved', 10 * i.id + length(s), i.opened_at, i.opened_at,
       i.opened_at, i.resolved_at
  FROM triaged.incident i, unnest(ARRAY['prometheus', 'zabbix']) s;
INSERT INTO triaged.incident_alert SELECT i.id, a.id, 'cause' FROM triaged.incident i
  JOIN triaged.alert a ON a.fingerprint LIKE 'f' || i.id || '%'" >/dev/null

# a capacity risk on db-01 (Payments): 5 a day, 125 under its limit now,
# with October's daily maxima for the sparkline
t_sql "INSERT INTO triaged.capacity_series (ci_id, metric, n, mean_t, mean_v, stt, svv, stv,
                                            last_ts, last_value, capacity_limit)
SELECT id, 'disk', 8640, triaged.capacity_t(now()) - 15, 800, 8640 * 75.0,
       25 * 8640 * 75.0 + 8640, 5 * 8640 * 75.0, now(), 875, 1000
  FROM triaged.ci WHERE name = 'db-01';
INSERT INTO triaged.capacity_hourly (ci_id, metric, hour, samples, min_value, max_value, avg_value,
                                     p95_value, last_ts, last_value, capacity_limit, mean_t, stt, svv, stv)
SELECT c.id, 'disk', h, 12, 600 + d, 610 + d, 605 + d, 609 + d, h, 605 + d, 1000,
       triaged.capacity_t(h), 0, 0, 0
  FROM triaged.ci c, generate_series(0, 30) d,
       LATERAL (SELECT timestamptz '2026-10-01 12:00Z' + d * interval '1 day' AS h) x
 WHERE c.name = 'db-01'" >/dev/null

"${T_CTL[@]}" report --period 2026-10 --format html -o "$T_DIR/report.html" || t_fail "report"
grep -q 'Capacity risks' "$T_DIR/report.html" && grep -q '<td>db-01</td><td>disk</td>' "$T_DIR/report.html" \
    && grep -q '<polyline' "$T_DIR/report.html" || t_fail "no capacity risk with its sparkline for db-01"
"${T_CTL[@]}" report --period 2026-10 --service 'Payments <EU>' --format json -o "$T_DIR/report.json" || t_fail "json report"
python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["services"][0]["capacity"][0]; assert s["ci"]=="db-01" and len(s["daily_max"])==31 and s["status"]=="ok", s' "$T_DIR/report.json" \
    || t_fail "the JSON report lacks db-01's capacity risk"
t_log "ok: capacity risks with sparklines in the HTML and JSON report"
grep -q 'Payments &lt;EU&gt;' "$T_DIR/report.html" || t_fail "names are not escaped"
grep -qi '<script' "$T_DIR/report.html" && t_fail "the report has a script"
grep -Eqi '(src|href)="(https?:)?//' "$T_DIR/report.html" && t_fail "the report loads something"
grep -q 'class="breached"' "$T_DIR/report.html" && grep -q 'class="met"' "$T_DIR/report.html" \
    || t_fail "met and breached badges missing"

PNG=${TD_SLA_SCREENSHOT:-$T_DIR/report.png}
# its own profile folder: a shared one would be locked by another instance
timeout 120 "$BROWSER" --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --user-data-dir="$T_DIR/chromium" --window-size=1100,1400 \
    --screenshot="$PNG" "file://$T_DIR/report.html" >"$T_DIR/chromium.log" 2>&1 \
    || t_fail "chromium failed: $(tail -5 "$T_DIR/chromium.log")"
[ -s "$PNG" ] || t_fail "no screenshot"
python3 - "$PNG" <<'PY' || t_fail "the screenshot looks blank"
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
pos, idat, w = 8, b"", 0
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b"IHDR":
        w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
        assert depth == 8 and ctype in (2, 6), (depth, ctype)
        bpp = 3 if ctype == 2 else 4
    elif kind == b"IDAT":
        idat += body
    pos += 12 + n
raw = zlib.decompress(idat)
stride = w * bpp
prev = bytearray(stride)
white = dark = colour = 0
for y in range(h):
    f = raw[y * (stride + 1)]
    line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    for i in range(stride):
        a = line[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        if f == 1: line[i] = (line[i] + a) & 255
        elif f == 2: line[i] = (line[i] + b) & 255
        elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    for x in range(0, stride, bpp):
        r, g, bl = line[x], line[x + 1], line[x + 2]
        if r > 245 and g > 245 and bl > 245: white += 1
        elif max(r, g, bl) < 90: dark += 1
        elif max(r, g, bl) - min(r, g, bl) > 80: colour += 1
    prev = line
total = w * h
print("%dx%d: white %.1f %%, dark %d px, coloured %d px" % (w, h, 100 * white / total, dark, colour))
assert white < 0.97 * total, "almost all white"
assert white > 0.5 * total, "not a page"
assert dark > 2000, "no text"
assert colour > 2000, "no charts or badges"
PY
t_log "PASS"
