# scripts/setup.sh — sourced by scripts/demo and scripts/test: installs what
# is missing from Debian's packages (as root, with apt), then builds.
#   TD_BUILD_DIR  build folder (default: build)
#   TD_SANITIZE   1 builds with ASan+UBSan (default 0)
set -euo pipefail

TD_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TD_BUILD_DIR=${TD_BUILD_DIR:-$TD_ROOT/build}
export TD_ROOT TD_BUILD_DIR

# Every package the build, the stack and the tests use, and why:
td_packages=(
    build-essential cmake pkg-config   # compiler and build
    libevent-dev                       # the event loop, evhttp
    librdkafka-dev                     # Kafka client + mock cluster (test broker)
    libhiredis-dev                     # Redis client with libevent adapter
    libjansson-dev                     # JSON
    libpq-dev                          # PostgreSQL client, pipeline mode
    libsystemd-dev                     # sd_notify: readiness and watchdog
    libcriterion-dev                   # unit tests
    libssl-dev                         # libcrypto: SHA-256 of API tokens, CRYPTO_memcmp
    prometheus prometheus-alertmanager # promtool check metrics; a real Alertmanager in tests
    redis-server redis-tools           # the stack's Redis and redis-cli
    postgresql-15 postgresql-client-15 # the stack's PostgreSQL
    kcat                               # real Kafka client for the tests
    curl procps psmisc                 # HTTP client; pgrep/pkill; fuser
    libpcre2-dev                       # syslog rules: regular expressions (JIT)
    rsyslog bsdutils                   # syslog tests: rsyslogd relay, logger
    clang                              # libFuzzer targets (tests/fuzz)
    valgrind                           # TD_VALGRIND=1: integration tests under memcheck
    chromium                           # headless screenshot of the SLA report (tests)
    systemd openssl util-linux         # security tests: systemd-analyze, test certificates, setpriv/unshare
    iproute2                           # ss: the fault suite sees a connection the daemon closed
)

td_install_packages() {
    local missing=()
    for p in "${td_packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" \
            || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "setup: missing packages: ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
        return 1
    fi
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    # The postgresql package would start a cluster on port 5432 that we do not
    # use; policy-rc.d 101 keeps package scripts from starting services.
    local prc=/usr/sbin/policy-rc.d created=0
    if [ ! -e $prc ]; then printf '#!/bin/sh\nexit 101\n' > $prc; chmod +x $prc; created=1; fi
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    [ $created = 1 ] && rm -f $prc
    return 0
}

td_build() {
    local san=OFF
    [ "${TD_SANITIZE:-0}" = 1 ] && san=ON
    cmake -S "$TD_ROOT" -B "$TD_BUILD_DIR" -DTRIAGED_SANITIZE=$san >/dev/null
    cmake --build "$TD_BUILD_DIR" -j"$(nproc)"
}
