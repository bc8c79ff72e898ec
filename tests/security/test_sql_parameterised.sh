#!/usr/bin/env bash
# test_sql_parameterised.sh — every SQL text triaged sends is constant, and
# every dynamic EXECUTE in sql/ quotes with %I/%L (tests/security/sql_params.py
# says exactly what counts). Then the same checker on a copy of the tree with
# planted violations must fail and name each one, so the proof can fail.
set -euo pipefail
SRC=${TD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
CHECK="$SRC/tests/security/sql_params.py"
fail() { echo "FAIL: $*" >&2; exit 1; }

# 1. The tree as it is: clean, and every libpq call that a plain grep finds
#    was seen and judged by the checker (it cannot skip one silently).
out=$(python3 "$CHECK" "$SRC") || { echo "$out"; fail "SQL that is not constant"; }
echo "$out"
grepped=$(grep -rEo '\bPQ(exec|execParams|prepare|sendQuery|sendQueryParams|sendPrepare)\(' \
          "$SRC/daemon" "$SRC/plugins" --include='*.c' | wc -l)
judged=$(grep -cE '^ok (daemon|plugins)/.*: PQ' <<<"$out")
[ "$grepped" -eq "$judged" ] || fail "grep finds $grepped libpq SQL calls, the checker judged $judged"
execs=$(grep -hiE '\bEXECUTE\b' "$SRC"/sql/*.sql | grep -viEc 'EXECUTE (FUNCTION|PROCEDURE)' || true)
judged_x=$(grep -cE '^ok sql/.*: EXECUTE' <<<"$out" || true)
[ "$execs" -eq "$judged_x" ] || fail "grep finds $execs dynamic EXECUTEs, the checker judged $judged_x"
echo "checked: $judged libpq calls, $judged_x EXECUTEs"

# 2. Planted violations in a copy: each must be reported.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r "$SRC/daemon" "$SRC/plugins" "$SRC/include" "$SRC/sql" "$tmp/"
cat >>"$tmp/daemon/triagectl.c" <<'C'
static void
planted_lookup(PGconn *conn, const char *name)
{
    char q[256];
    snprintf(q, sizeof(q), "SELECT id FROM triaged.ci WHERE name = '%s'", name);
    PQclear(PQexec(conn, q));
}
C
# a caller handing migrate.c's exec_ok() a run-time buffer
sed -i 's|if (exec_ok(conn, "COMMIT", e, sizeof(e)) != TD_OK)|char planted[64]; strcpy(planted, m->name); if (exec_ok(conn, planted, e, sizeof(e)) != TD_OK)|' \
    "$tmp/daemon/migrate.c"
grep -q 'exec_ok(conn, planted' "$tmp/daemon/migrate.c" || fail "could not plant the exec_ok violation"
# a statement table entry whose SQL is not a literal
sed -i 's|{"td_tick", "SELECT kind, key, payload::text FROM triaged.tick($1::jsonb)", 1}|{"td_tick", planted_sql, 1}|' \
    "$tmp/daemon/pipeline.c"
grep -q 'planted_sql' "$tmp/daemon/pipeline.c" || fail "could not plant the statement table violation"
cat >>"$tmp/sql/005_capacity.sql" <<'SQL'
CREATE FUNCTION triaged.planted(p_name text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE 'DELETE FROM triaged.ci WHERE name = ''' || p_name || '''';
  EXECUTE format('DELETE FROM triaged.ci WHERE name = %s', p_name);
  EXECUTE 'DELETE FROM triaged.ci WHERE name = $1' USING p_name;
END $$;
SQL
set +e
bad=$(python3 "$CHECK" "$tmp")
rc=$?
set -e
echo "--- planted:"
grep -v '^ok ' <<<"$bad"
[ "$rc" -eq 1 ] || fail "the checker exited $rc on planted violations (want 1)"
expect() { grep -qE "$1" <<<"$bad" || fail "planted violation not reported: $1"; }
expect '^daemon/triagectl\.c:[0-9]+: snprintf\(\) builds SQL-looking text'
expect '^daemon/triagectl\.c:[0-9]+: PQexec\(\) SQL text is not constant .*: q$'
expect '^daemon/migrate\.c:[0-9]+: exec_ok\(\) gets non-constant SQL text: planted$'
expect '^daemon/pipeline\.c:[0-9]+: td_store_stmt whose SQL is not a literal: planted_sql$'
expect '^sql/005_capacity\.sql:[0-9]+: dynamic SQL: text concatenated with \|\|'
expect '^sql/005_capacity\.sql:[0-9]+: dynamic SQL: format\(\) placeholder %s'
n=$(grep -vc '^ok \|^sql_params:' <<<"$bad")
[ "$n" -eq 7 ] || fail "expected 7 reports on the planted tree (the exec_ok caller and its PQexec both), got $n"
grep -qE '^ok sql/005_capacity\.sql:[0-9]+: EXECUTE: .DELETE FROM triaged.ci WHERE name = \$1. USING' <<<"$bad" \
    || fail "a literal with USING was not accepted"
echo "PASS"
