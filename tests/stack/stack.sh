#!/usr/bin/env bash
# shellcheck disable=SC2094  # a log file is both -l/--logfile and the redirect
# stack.sh -- the throwaway test stack: a real redis-server, a real
# PostgreSQL 15 and td-mockbroker (librdkafka's mock Kafka cluster), all on
# 127.0.0.1 with free ports, all data and logs under one temp folder.
#
# As a library (test scripts):
#     source tests/stack/stack.sh
#     stack_up                 # exports TD_TEST_*; traps EXIT INT TERM
#     ...                      # tests; stack_redis_restart, stack_kafka_control ...
#     stack_down               # optional: the EXIT trap does it too
#
# For humans:
#     bash tests/stack/stack.sh up [DIR]     # leaves the stack running
#     source DIR/env.sh                      # TD_TEST_* in your shell
#     bash tests/stack/stack.sh down [DIR]   # DIR defaults to $TD_TEST_DIR
#     bash tests/stack/stack.sh env [DIR]    # print the export lines
#
# What stops the servers: stack_down; the traps stack_up installs (EXIT INT
# TERM) in the calling shell; a watchdog in its own session that notices
# when the calling shell is gone (even after kill -9) or when
# TD_STACK_MAX_LIFETIME (default 7200 s) has passed; and td-mockbroker's own
# parent-death signal and lifetime. A human "up" has no caller to watch, so
# only the lifetime applies there.
#
# Settings (environment): STACK_TIMEOUT (seconds per wait, default 30),
# TD_KEEP_STACK=1 (keep the folder at stack_down), TD_STACK_MAX_LIFETIME,
# TD_STACK_PG_DURABLE=1 (fsync, synchronous_commit and full_page_writes on;
# off by default: the data is thrown away), TD_STACK_PG_STATEMENTS=1
# (pg_stat_statements loaded, tracking nested statements and planning: for
# bench_engine.sh PROFILE=1 and bench_cmdb.sh PGSS=1),
# TD_STACK_KAFKA_BROKERS (default 1), TD_STACK_KAFKA_PARTITIONS (default 8),
# TD_MOCKBROKER (binary; else $BUILD_DIR, $TD_BUILD_DIR or build/, plus
# /tests/td-mockbroker), TD_PG_BINDIR (default /usr/lib/postgresql/15/bin).
#
# Every wait polls with a deadline; nothing sleeps for a fixed long time.
# Functions return non-zero on failure (they never exit the caller), and
# work under `set -eu`.

_STACK_SELF=$(readlink -f "${BASH_SOURCE[0]}")
_STACK_ROOT=$(cd "$(dirname "$_STACK_SELF")/../.." && pwd)
_STACK_MARKER=.triaged-stack
_STACK_VARS="TD_TEST_DIR TD_TEST_REDIS_PORT TD_TEST_REDIS_URL TD_TEST_PG_PORT
TD_TEST_PG_CONNINFO TD_TEST_PG_ADMIN_CONNINFO TD_TEST_KAFKA_BROKERS
TD_TEST_KAFKA_CONTROL TD_TEST_KAFKA_PARTITIONS TD_TEST_KAFKA_TOPICS"
_STACK_TOPICS=alerts,capacity,incidents,dead-letter

_stack_log() { printf 'stack: %s\n' "$*" >&2; }

# Microseconds since the epoch, for deadlines (EPOCHREALTIME: bash >= 5).
_stack_now_us() { local t=${EPOCHREALTIME//[!0-9]/}; echo "${t:-$(date +%s%6N)}"; }

# Is PID a live process (zombies count as dead)?
_stack_alive() {
    local pid=${1:-} stat
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}

# Does live PID run a command line containing NAME? Guards against pid reuse.
_stack_pid_is() {
    local pid=$1 name=$2 cmdline
    _stack_alive "$pid" || return 1
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmdline == *"$name"* ]]
}

_stack_tail() {
    local name=$1 log=$2
    if [ -s "$log" ]; then
        printf -- '---- %s: last lines of %s ----\n' "$name" "$log" >&2
        tail -n 30 "$log" >&2
        printf -- '---- end of %s ----\n' "$log" >&2
    else
        _stack_log "$name: log $log is empty or missing"
    fi
}

# _stack_poll PID CMD...: poll CMD (output discarded) every 0.1 s until it
# succeeds; fail when STACK_TIMEOUT passes or, if PID is not empty, as soon
# as process PID has died.
_stack_poll() {
    local pid=$1 timeout=${STACK_TIMEOUT:-30} deadline
    shift
    deadline=$(( $(_stack_now_us) + timeout * 1000000 ))
    while :; do
        if "$@" >/dev/null 2>&1; then return 0; fi
        if [ -n "$pid" ] && ! _stack_alive "$pid"; then
            _stack_log "process $pid exited while waiting for: $*"
            return 1
        fi
        if (( $(_stack_now_us) >= deadline )); then
            _stack_log "timed out after ${timeout}s waiting for: $*"
            return 1
        fi
        sleep 0.1
    done
}

# stack_wait_for CMD...: run CMD (output discarded) every 0.1 s until it
# succeeds; 1 after STACK_TIMEOUT seconds (default 30).
stack_wait_for() {
    if [ $# -eq 0 ]; then _stack_log "usage: stack_wait_for CMD [ARG...]"; return 2; fi
    _stack_poll "" "$@"
}

# Send SIG to PID (if it runs NAME), then wait for it to go; SIGKILL after
# STACK_TIMEOUT. The pid file is removed.
_stack_kill_pidfile() {
    local file=$1 name=$2 sig=${3:-TERM} pid
    [ -f "$file" ] || return 0
    pid=$(cat "$file" 2>/dev/null) || true
    if _stack_pid_is "$pid" "$name"; then
        kill -s "$sig" "$pid" 2>/dev/null || true
        if ! _stack_poll "" eval "! _stack_alive $pid"; then
            _stack_log "$name (pid $pid) ignored SIG$sig, sending SIGKILL"
            kill -s KILL "$pid" 2>/dev/null || true
            STACK_TIMEOUT=5 _stack_poll "" eval "! _stack_alive $pid" || true
        fi
    fi
    rm -f "$file"
}

# A loopback TCP port nobody listens on, below the kernel's ephemeral range
# (32768+) so outgoing connections cannot take it between here and bind().
# Ports in $* are avoided. A race with another process remains; callers retry.
_stack_free_port() {
    local port i
    for ((i = 0; i < 200; i++)); do
        port=$(( 20000 + RANDOM % 12000 ))
        [[ " $* " == *" $port "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    _stack_log "no free loopback port found"
    return 1
}

_stack_pg_bindir() { echo "${TD_PG_BINDIR:-/usr/lib/postgresql/15/bin}"; }

# Run a PostgreSQL server tool as the user that owns the cluster: the
# postgres system user when we are root (initdb and postgres refuse root),
# else ourselves. Runs from the pg folder so the tool can read its cwd.
_stack_as_pg() {
    local dir=$1
    shift
    if [ "$(id -u)" -eq 0 ]; then
        (cd "$dir/pg" && runuser -u postgres -- "$@")
    else
        (cd "$dir/pg" && "$@")
    fi
}

_stack_redis_ping() {
    [ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = PONG ]
}

# ---- Redis ------------------------------------------------------------------

_stack_redis_launch() {
    local dir=$1 port=$2 pid
    mkdir -p "$dir/redis" || return 1
    redis-server --port "$port" --bind 127.0.0.1 --protected-mode yes \
        --dir "$dir/redis" --save '' --appendonly no --daemonize no \
        --logfile "$dir/redis.log" </dev/null >>"$dir/redis.log" 2>&1 &
    pid=$!
    disown "$pid" 2>/dev/null || true
    echo "$pid" >"$dir/redis.pid"
    echo "$port" >"$dir/redis.port"
    if ! _stack_poll "$pid" _stack_redis_ping "$port"; then
        _stack_tail redis "$dir/redis.log"
        _stack_kill_pidfile "$dir/redis.pid" redis-server
        return 1
    fi
}

_stack_dir_or_fail() {
    local dir=${_STACK_DIR:-${TD_TEST_DIR:-}}
    if [ -z "$dir" ] || [ ! -f "$dir/$_STACK_MARKER" ]; then
        _stack_log "no stack is up (run stack_up first)"
        return 1
    fi
    echo "$dir"
}

stack_redis_stop() {
    local dir
    dir=$(_stack_dir_or_fail) || return 1
    _stack_kill_pidfile "$dir/redis.pid" redis-server TERM
}

# Starts Redis again on the same port (empty: no persistence).
stack_redis_start() {
    local dir
    dir=$(_stack_dir_or_fail) || return 1
    if _stack_pid_is "$(cat "$dir/redis.pid" 2>/dev/null)" redis-server; then
        _stack_log "redis is already running"
        return 0
    fi
    _stack_redis_launch "$dir" "$(cat "$dir/redis.port")"
}

stack_redis_restart() { stack_redis_stop && stack_redis_start; }

# ---- PostgreSQL -------------------------------------------------------------

_stack_pg_user() {
    if [ "$(id -u)" -eq 0 ]; then echo postgres; else id -un; fi
}

_stack_pg_init() {
    local dir=$1 bindir user
    bindir=$(_stack_pg_bindir)
    user=$(_stack_pg_user)
    if [ ! -x "$bindir/initdb" ]; then
        _stack_log "postgresql: $bindir/initdb not found (apt-get install postgresql-15, or set TD_PG_BINDIR)"
        return 1
    fi
    mkdir -p "$dir/pg/run" && : >"$dir/postgres.log" || return 1
    if [ "$(id -u)" -eq 0 ]; then
        if ! id postgres >/dev/null 2>&1; then
            _stack_log "postgresql: running as root needs the postgres system user"
            return 1
        fi
        chown -R postgres:postgres "$dir/pg" "$dir/postgres.log" || return 1
        if ! runuser -u postgres -- test -w "$dir/pg"; then
            _stack_log "postgresql: the postgres user cannot reach $dir/pg (every parent folder must be traversable by others)"
            return 1
        fi
    fi
    chmod 700 "$dir/pg" || return 1
    if ! _stack_as_pg "$dir" "$bindir/initdb" -D "$dir/pg/data" -U "$user" \
            --auth=trust --encoding=UTF8 --locale=C --no-sync \
            >>"$dir/postgres.log" 2>&1; then
        _stack_log "postgresql: initdb failed"
        _stack_tail postgresql "$dir/postgres.log"
        return 1
    fi
    # Server settings live in a file we own and rewrite (the port can change
    # on a retry); postgresql.conf only includes it.
    echo "include_if_exists = 'stack.conf'" >>"$dir/pg/data/postgresql.conf" || return 1
}

_stack_pg_write_conf() {
    local dir=$1 port=$2 durable=off
    # throwaway data need not survive a power cut; TD_STACK_PG_DURABLE=1
    # makes every commit reach the disk, as in production (benchmarks)
    [ "${TD_STACK_PG_DURABLE:-0}" = 1 ] && durable=on
    cat >"$dir/pg/data/stack.conf" <<EOF || return 1
# written by tests/stack/stack.sh: a loopback-only throwaway server
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir/pg/run'
fsync = $durable
synchronous_commit = $durable
full_page_writes = $durable
max_connections = 100
EOF
    if [ "${TD_STACK_PG_STATEMENTS:-0}" = 1 ]; then
        cat >>"$dir/pg/data/stack.conf" <<EOF || return 1
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = all
pg_stat_statements.track_planning = on
EOF
    fi
    if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$dir/pg/data/stack.conf" || return 1; fi
    echo "$port" >"$dir/pg.port"
}

_stack_pg_launch() {
    local dir=$1 port=$2 bindir
    bindir=$(_stack_pg_bindir)
    _stack_pg_write_conf "$dir" "$port" || return 1
    # pg_ctl -w polls for readiness itself and notices a postmaster that
    # died; -t is the deadline.
    if ! _stack_as_pg "$dir" "$bindir/pg_ctl" start -D "$dir/pg/data" \
            -l "$dir/postgres.log" -w -t "${STACK_TIMEOUT:-30}" -s \
            >>"$dir/postgres.log" 2>&1; then
        _stack_log "postgresql: pg_ctl start failed on port $port"
        _stack_tail postgresql "$dir/postgres.log"
        _stack_pg_halt "$dir"
        return 1
    fi
    if ! _stack_poll "" "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port"; then
        _stack_tail postgresql "$dir/postgres.log"
        _stack_pg_halt "$dir"
        return 1
    fi
}

# Stops the cluster in $dir: fast shutdown, then SIGQUIT/SIGKILL if needed.
_stack_pg_halt() {
    local dir=$1 bindir pid
    bindir=$(_stack_pg_bindir)
    [ -f "$dir/pg/data/postmaster.pid" ] || return 0
    pid=$(head -n 1 "$dir/pg/data/postmaster.pid" 2>/dev/null) || true
    _stack_alive "$pid" || return 0
    if _stack_as_pg "$dir" "$bindir/pg_ctl" stop -D "$dir/pg/data" -m fast \
            -w -t "${STACK_TIMEOUT:-30}" -s >>"$dir/postgres.log" 2>&1; then
        return 0
    fi
    _stack_log "postgresql: pg_ctl stop failed, killing postmaster $pid"
    if _stack_pid_is "$pid" postgres; then
        kill -s QUIT "$pid" 2>/dev/null || true
        STACK_TIMEOUT=5 _stack_poll "" eval "! _stack_alive $pid" ||
            kill -s KILL "$pid" 2>/dev/null || true
    fi
}

stack_pg_stop() {
    local dir
    dir=$(_stack_dir_or_fail) || return 1
    _stack_pg_halt "$dir"
}

# Starts PostgreSQL again with the same port and data.
stack_pg_start() {
    local dir
    dir=$(_stack_dir_or_fail) || return 1
    _stack_pg_launch "$dir" "$(cat "$dir/pg.port")"
}

stack_pg_restart() { stack_pg_stop && stack_pg_start; }

# ---- Kafka (td-mockbroker) --------------------------------------------------

_stack_mockbroker_bin() {
    local build
    if [ -n "${TD_MOCKBROKER:-}" ]; then echo "$TD_MOCKBROKER"; return; fi
    build=${BUILD_DIR:-${TD_BUILD_DIR:-build}}
    [[ $build == /* ]] || build=$_STACK_ROOT/$build
    echo "$build/tests/td-mockbroker"
}

_stack_kafka_launch() {
    local dir=$1 detached=$2 bin pid
    local -a args
    bin=$(_stack_mockbroker_bin)
    if [ ! -x "$bin" ]; then
        _stack_log "kafka: $bin not found; build it (cmake --build build) or set TD_MOCKBROKER"
        return 1
    fi
    args=(--brokers "${TD_STACK_KAFKA_BROKERS:-1}"
          --partitions "${TD_STACK_KAFKA_PARTITIONS:-8}"
          --topics "$_STACK_TOPICS"
          --max-lifetime "${TD_STACK_MAX_LIFETIME:-7200}"
          --control "$dir/kafka.ctl")
    if [ "$detached" = 1 ]; then args+=(--no-pdeathsig); fi
    "$bin" "${args[@]}" </dev/null >"$dir/kafka.out" 2>"$dir/kafka.log" &
    pid=$!
    disown "$pid" 2>/dev/null || true
    echo "$pid" >"$dir/kafka.pid"
    # The bootstrap line is complete once it ends in a newline.
    if ! _stack_poll "$pid" eval "[ \"\$(wc -l <'$dir/kafka.out')\" -ge 1 ]"; then
        _stack_tail td-mockbroker "$dir/kafka.log"
        _stack_kill_pidfile "$dir/kafka.pid" td-mockbroker
        return 1
    fi
}

# stack_kafka_control "down 1": send one command to td-mockbroker's control
# FIFO, print its answer ("ok ..." or "error ..."), 0 only for "ok".
stack_kafka_control() {
    local dir ctl log before n reply
    dir=$(_stack_dir_or_fail) || return 1
    ctl=$dir/kafka.ctl log=$dir/kafka.log
    if [ $# -eq 0 ] || [[ "$*" == *$'\n'* ]]; then
        _stack_log "usage: stack_kafka_control 'COMMAND ARGS' (one line; see td-mockbroker --help)"
        return 2
    fi
    if [ ! -p "$ctl" ] || ! _stack_pid_is "$(cat "$dir/kafka.pid" 2>/dev/null)" td-mockbroker; then
        _stack_log "kafka: td-mockbroker is not running"
        return 1
    fi
    before=$(grep -c -E '^(ok|error) ' "$log") || true  # grep -c: 1 when none
    # A FIFO write blocks while nobody reads; never hang on a dead broker.
    # shellcheck disable=SC2016
    if ! timeout 5 bash -c 'printf "%s\n" "$1" >"$2"' _ "$*" "$ctl"; then
        _stack_log "kafka: could not write to $ctl"
        return 1
    fi
    _stack_poll "" eval "[ \"\$(grep -c -E '^(ok|error) ' '$log')\" -gt $before ]" || return 1
    n=$((before + 1))
    reply=$(grep -E '^(ok|error) ' "$log" | sed -n "${n}p")
    printf '%s\n' "$reply"
    [[ $reply == ok\ * ]]
}

# ---- watchdog ---------------------------------------------------------------

# Runs in its own session (setsid), so a signal to the caller's process
# group does not take it down with the caller. SIGUSR1 = stack_down is
# handling the stop, leave quietly; SIGTERM/SIGHUP = stop everything now.
_stack_watchdog() {
    local dir=$1 watch=$2 lifetime=$3 deadline reason=
    echo "$$" >"$dir/watchdog.pid"
    trap 'exit 0' USR1
    trap 'reason="got a stop signal"' TERM HUP INT
    deadline=$(( $(_stack_now_us) + lifetime * 1000000 ))
    while [ -z "$reason" ]; do
        if [ -n "$watch" ] && ! _stack_alive "$watch"; then
            reason="calling shell $watch is gone"
        elif (( $(_stack_now_us) >= deadline )); then
            reason="max lifetime ${lifetime}s reached"
        else
            sleep 1 &
            wait $! 2>/dev/null
        fi
    done
    trap '' USR1 TERM HUP INT
    _stack_log "watchdog: $reason, stopping the stack in $dir"
    rm -f "$dir/watchdog.pid"
    _stack_stop_dir "$dir"
}

# ---- up / down --------------------------------------------------------------

_stack_trap_prepend() {
    local sig=$1 cmd=$2 prev
    prev=$(trap -p "$sig")
    if [ -n "$prev" ]; then
        eval "set -- $prev"   # trap -- 'CMD' SIG
        prev=$3
    fi
    # The caller's own handler runs first (it may want the servers).
    # shellcheck disable=SC2064
    trap "${prev:+$prev; }$cmd" "$sig"
}

_stack_write_env() {
    local dir=$1 v
    {
        echo "# triaged test stack in $dir (tests/stack/stack.sh)"
        for v in $_STACK_VARS; do printf 'export %s=%q\n' "$v" "${!v}"; done
    } >"$dir/env.sh"
}

# stack_up [DIR]: start Redis, PostgreSQL and td-mockbroker; export TD_TEST_*.
stack_up() {
    local dir=${1:-} detached=${_STACK_DETACHED:-0} rport pport user self
    if [ -n "${_STACK_DIR:-}" ] && [ -f "$_STACK_DIR/$_STACK_MARKER" ]; then
        _stack_log "a stack is already up in $_STACK_DIR (stack_down first)"
        return 1
    fi
    local cmd
    for cmd in redis-server redis-cli runuser setsid timeout; do
        command -v "$cmd" >/dev/null 2>&1 || { _stack_log "missing command: $cmd"; return 1; }
    done
    if [ -z "$dir" ]; then
        dir=$(mktemp -d /tmp/triaged-stack.XXXXXX) || { _stack_log "mktemp failed"; return 1; }
    else
        mkdir -p "$dir" || return 1
        dir=$(cd "$dir" && pwd) || return 1
        if [ -n "$(ls -A "$dir")" ]; then
            _stack_log "$dir is not empty"
            return 1
        fi
    fi
    # Others may only traverse it: the postgres user needs to reach pg/.
    chmod 711 "$dir" || return 1
    : >"$dir/$_STACK_MARKER" || return 1
    _STACK_DIR=$dir
    export TD_TEST_DIR=$dir

    if [ "$detached" != 1 ]; then
        # $BASHPID must be read here: in the background command below it
        # would already be the child's.
        self=$BASHPID
        if [ -z "${_STACK_TRAPS:-}" ]; then
            _stack_trap_prepend EXIT 'stack_down'
            _stack_trap_prepend INT 'stack_down; exit 130'
            _stack_trap_prepend TERM 'stack_down; exit 143'
            _STACK_TRAPS=1
        fi
        setsid bash "$_STACK_SELF" __watchdog "$dir" "$self" \
            "${TD_STACK_MAX_LIFETIME:-7200}" </dev/null >>"$dir/watchdog.log" 2>&1 &
    else
        setsid bash "$_STACK_SELF" __watchdog "$dir" "" \
            "${TD_STACK_MAX_LIFETIME:-7200}" </dev/null >>"$dir/watchdog.log" 2>&1 &
    fi
    disown $! 2>/dev/null || true

    # Redis (retry: a free port can be taken before redis binds it).
    for _ in 1 2 3; do
        rport=$(_stack_free_port) || break
        _stack_redis_launch "$dir" "$rport" && break
        rport=
    done
    if [ -z "${rport:-}" ]; then _stack_log "redis did not start"; stack_down; return 1; fi

    # PostgreSQL.
    if ! _stack_pg_init "$dir"; then stack_down; return 1; fi
    for _ in 1 2 3; do
        pport=$(_stack_free_port "$rport") || break
        _stack_pg_launch "$dir" "$pport" && break
        pport=
    done
    if [ -z "${pport:-}" ]; then _stack_log "postgresql did not start"; stack_down; return 1; fi
    user=$(_stack_pg_user)
    export TD_TEST_PG_PORT=$pport
    export TD_TEST_PG_CONNINFO="host=127.0.0.1 port=$pport dbname=triaged user=$user"
    export TD_TEST_PG_ADMIN_CONNINFO="host=127.0.0.1 port=$pport dbname=postgres user=$user"
    if ! "$(_stack_pg_bindir)/psql" "$TD_TEST_PG_ADMIN_CONNINFO" -X -q -v ON_ERROR_STOP=1 \
            -c 'CREATE DATABASE triaged' >>"$dir/postgres.log" 2>&1; then
        _stack_log "postgresql: CREATE DATABASE triaged failed"
        _stack_tail postgresql "$dir/postgres.log"
        stack_down
        return 1
    fi

    # Kafka.
    if ! _stack_kafka_launch "$dir" "$detached"; then stack_down; return 1; fi

    export TD_TEST_REDIS_PORT=$rport
    export TD_TEST_REDIS_URL="redis://127.0.0.1:$rport/0"
    export TD_TEST_KAFKA_BROKERS
    TD_TEST_KAFKA_BROKERS=$(head -n 1 "$dir/kafka.out")
    export TD_TEST_KAFKA_CONTROL=$dir/kafka.ctl
    export TD_TEST_KAFKA_PARTITIONS=${TD_STACK_KAFKA_PARTITIONS:-8}
    export TD_TEST_KAFKA_TOPICS=$_STACK_TOPICS
    _stack_write_env "$dir" || { stack_down; return 1; }
    _stack_log "up in $dir: redis $TD_TEST_REDIS_PORT, postgresql $TD_TEST_PG_PORT, kafka $TD_TEST_KAFKA_BROKERS"
    return 0
}

# Stops everything started in DIR and removes DIR (kept with TD_KEEP_STACK=1).
_stack_stop_dir() {
    local dir=$1 wpid
    [ -n "$dir" ] && [ -f "$dir/$_STACK_MARKER" ] || return 0
    wpid=$(cat "$dir/watchdog.pid" 2>/dev/null) || true
    if [ -n "$wpid" ] && [ "$wpid" != "$$" ] && _stack_pid_is "$wpid" stack.sh; then
        kill -s USR1 "$wpid" 2>/dev/null || true
        STACK_TIMEOUT=5 _stack_poll "" eval "! _stack_alive $wpid" || true
    fi
    rm -f "$dir/watchdog.pid"
    _stack_kill_pidfile "$dir/kafka.pid" td-mockbroker TERM
    _stack_kill_pidfile "$dir/redis.pid" redis-server TERM
    _stack_pg_halt "$dir"
    if [ "${TD_KEEP_STACK:-0}" = 1 ]; then
        rm -f "$dir/$_STACK_MARKER"
        _stack_log "stopped; kept $dir (TD_KEEP_STACK=1)"
    else
        rm -rf "$dir"
    fi
}

# stack_down [DIR]: stop the stack this shell started (or DIR). Idempotent.
stack_down() {
    local dir=${1:-${_STACK_DIR:-}} v
    [ -n "$dir" ] || return 0
    _stack_stop_dir "$dir"
    if [ "$dir" = "${_STACK_DIR:-}" ]; then
        _STACK_DIR=
        for v in $_STACK_VARS; do unset "$v"; done
    fi
    return 0
}

# ---- command line -----------------------------------------------------------

_stack_main() {
    local dir
    case "${1:-}" in
    up)
        _STACK_DETACHED=1 stack_up "${2:-}" || return 1
        echo "export lines: $TD_TEST_DIR/env.sh (source it)"
        echo "stop with:    bash $_STACK_SELF down $TD_TEST_DIR"
        echo "stops by itself after ${TD_STACK_MAX_LIFETIME:-7200}s"
        ;;
    down)
        dir=${2:-${TD_TEST_DIR:-}}
        if [ -n "$dir" ] && [ -f "$dir/env.sh" ] && [ ! -f "$dir/$_STACK_MARKER" ]; then
            _stack_log "down: $dir is already stopped"
            return 0
        fi
        if [ -z "$dir" ] || [ ! -f "$dir/$_STACK_MARKER" ]; then
            _stack_log "down: give the stack folder (or source its env.sh first)"
            return 1
        fi
        stack_down "$dir"
        ;;
    env)
        dir=${2:-${TD_TEST_DIR:-}}
        if [ -z "$dir" ] || [ ! -f "$dir/env.sh" ]; then
            _stack_log "env: give the stack folder (or set TD_TEST_DIR)"
            return 1
        fi
        cat "$dir/env.sh"
        ;;
    __watchdog)
        _stack_watchdog "$2" "$3" "$4"
        ;;
    -h | --help | help)
        sed -n '3,/^$/s/^# \{0,1\}//p' "$_STACK_SELF"
        ;;
    *)
        echo "usage: bash $0 up [DIR] | down [DIR] | env [DIR] | --help" >&2
        return 1
        ;;
    esac
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    _stack_main "$@"
    exit $?
fi
