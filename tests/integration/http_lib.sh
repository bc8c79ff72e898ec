# tests/integration/http_lib.sh — helpers for the HTTP tests (source after
# lib.sh): a config without Kafka, three tokens, and curl wrappers.
#   h_setup [EXTRA-CONFIG-LINES...]   fresh DB, tokens, config; starts triaged
#   h_req METHOD PATH [TOKEN] [BODY] [CONTENT-TYPE]   sets H_CODE and H_BODY
#   h_expect CODE [JSON-PATH=VALUE ...]  checks the last answer

# A free TCP port on 127.0.0.1.
h_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Tokens: writer (write), reader (read), boss (admin); secrets below.
H_WRITE=tok-write-$$
H_READ=tok-read-$$
H_ADMIN=tok-admin-$$

h_tokens() {
    {
        echo "# name scope sha256"
        echo "writer write $(printf %s "$H_WRITE" | sha256sum | cut -d' ' -f1)"
        echo "reader read $(printf %s "$H_READ" | sha256sum | cut -d' ' -f1)"
        echo "boss admin $(printf %s "$H_ADMIN" | sha256sum | cut -d' ' -f1)"
    } > "$T_DIR/tokens"
}

# h_conf [FILE]: the HTTP tests' config in FILE (default
# $T_DIR/triaged.conf), listening on $H_PORT with $T_DIR/tokens; stdin adds
# lines to [http], or new sections.
h_conf() {
    {
        cat <<CONF
[triaged]
instance = $T_NAME
log_level = info
[postgres]
conninfo = $T_PG
migrate = yes
[redis]
url = $TD_TEST_REDIS_URL
[plugins]
dir = $TD_BUILD_DIR/plugins
[http]
listen = 127.0.0.1:$H_PORT
tokens = $T_DIR/tokens
CONF
        [ -t 0 ] || cat
    } > "${1:-$T_DIR/triaged.conf}"
}

# h_setup: database, tokens, config (h_conf, from stdin), triaged started.
h_setup() {
    t_db
    h_tokens
    H_PORT=$(h_free_port)
    H_URL=http://127.0.0.1:$H_PORT
    h_conf
    t_start
    t_wait_until 30 "/readyz says ready" curl -sf "$H_URL/readyz"
}

# h_req METHOD PATH [TOKEN] [BODY] [CONTENT-TYPE (default application/json)]
h_req() {
    local method=$1 path=$2 token=${3:-} body=${4-} ctype=${5:-application/json}
    local args=(-s -o "$T_DIR/h_body" -w '%{http_code}' -X "$method")
    [ -n "$token" ] && args+=(-H "Authorization: Bearer $token")
    if [ -n "$body" ]; then
        printf '%s' "$body" > "$T_DIR/h_req"
        args+=(-H "Content-Type: $ctype" --data-binary "@$T_DIR/h_req")
    fi
    H_CODE=$(curl "${args[@]}" "$H_URL$path") || H_CODE=000
    H_BODY=$(cat "$T_DIR/h_body")
}

# h_json EXPR: evaluate a Python expression on the last body (as j).
h_json() {
    python3 -c 'import json,sys; j=json.loads(sys.argv[2]); v=eval(sys.argv[1]); print(v if not isinstance(v,(dict,list,bool)) and v is not None else json.dumps(v))' "$1" "$H_BODY"
}

# h_expect CODE [EXPR=VALUE ...]: status and fields of the last answer.
h_expect() {
    local code=$1 kv expr want got
    shift
    [ "$H_CODE" = "$code" ] || t_fail "expected HTTP $code, got $H_CODE: $H_BODY"
    for kv in "$@"; do
        expr=${kv%%=*}
        want=${kv#*=}
        got=$(h_json "$expr" 2>&1) || t_fail "answer is not the JSON expected ($expr): $H_BODY"
        [ "$got" = "$want" ] || t_fail "expected $expr = [$want], got [$got] in $H_BODY"
    done
    t_log "ok: HTTP $code $*"
}
