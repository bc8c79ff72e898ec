# tests/bench/bench_lib.sh — helpers shared by the benchmark scripts (sourced
# after tests/stack/stack.sh's environment is set).

# pg_cpu DB [DECIMALS (1)]: CPU seconds (utime + stime) the PostgreSQL
# backends connected to database DB have used, from the server's live
# children: read before the client disconnects, it is what the client's
# connections cost PostgreSQL.
pg_cpu() {
    local pm; pm=$(head -1 "$TD_TEST_DIR/pg/data/postmaster.pid" 2>/dev/null) || { echo 0; return; }
    for c in $(ps --ppid "$pm" -o pid=); do
        if tr '\0' ' ' < "/proc/$c/cmdline" 2>/dev/null | grep -q " $1 "; then
            cat "/proc/$c/stat" 2>/dev/null || true
        fi
    done | awk -v hz="$(getconf CLK_TCK)" -v d="${2:-1}" \
        '{sub(/^.*\) /, ""); t += $12 + $13} END {printf "%.*f", d, t / hz}'
}

# proc_ticks PID: the CPU (utime + stime, clock ticks) process PID has used;
# fails, printing nothing, when there is no such process.
proc_ticks() {
    awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null
}
