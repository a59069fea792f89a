#!/usr/bin/env bash
# The load scenarios of issue 5 against one `readyloop serve`, measured by `readyloop load`:
#  (a) idle       10,000 line connections held, server RSS sampled → bytes per idle connection;
#  (b) echo       50 line connections, 64 B ping-pong          → msgs/s, p50/p99;
#  (c) ws-echo    50 WebSocket /echo connections, 64 B         → round trips/s, p50/p99;
#  (d) ws-broadcast 1,000 /ws connections, 4 senders, 2,000 msgs/s in total
#                                                              → deliveries/s, p50/p99, errors.
# The largest count of idle connections held (with --workers) is benches/idle_scale.sh's job.
#
# Not part of `cargo test`. Run from the crate root; it builds the release binary first
# (BUILD=0 to use the one already in target/release):
#
#   benches/load_scenarios.sh            # SECS=5 per measured scenario
#   SECS=10 IDLE_CONNS=19000 benches/load_scenarios.sh
#
# One server for all four scenarios: `serve --http 127.0.0.1:0 --line 127.0.0.1:0 --hello off`
# (line echo, RUST_LOG=warn), loopback only. Before the idle run, 200 connections are held for
# 1 s so first-touch pages (the loop's read buffer, the pool) are not counted per connection.
# Every `readyloop load` stops by itself after --duration and is also bounded by `timeout`;
# the server and anything left running are stopped on exit (trap). Output: a Markdown table on
# stdout and in target/bench-load.md.
set -uo pipefail

BIN=${BIN:-target/release/readyloop}
OUT=${OUT:-target/bench-load.md}
SECS=${SECS:-5}                     # measured seconds of each scenario
IDLE_CONNS=${IDLE_CONNS:-10000}
BCAST_CONNS=${BCAST_CONNS:-1000}
BUILD=${BUILD:-1}
TMP=$(mktemp -d)
server=""

cleanup() {
    if [[ -n $server ]] && kill -0 "$server" 2>/dev/null; then
        kill -TERM "$server" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$server" 2>/dev/null
        wait "$server" 2>/dev/null
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ((BUILD)); then
    cargo build --release --quiet || exit 1
fi
[[ -x $BIN ]] || { echo "no $BIN (cargo build --release)" >&2; exit 1; }

RUST_LOG=warn setsid "$BIN" serve --http 127.0.0.1:0 --line 127.0.0.1:0 --hello off \
    --upload-dir "$TMP/uploads" >"$TMP/serve.out" 2>"$TMP/serve.err" &
server=$!
for _ in $(seq 100); do [[ $(grep -c listening "$TMP/serve.out") -ge 2 ]] && break; sleep 0.1; done
LINE=$(awk '/listening line/ {print $3}' "$TMP/serve.out")
HTTP=$(awk '/listening http/ {print $3}' "$TMP/serve.out")
[[ -n $LINE && -n $HTTP ]] || { echo "server did not start:" >&2; cat "$TMP/serve.err" >&2; exit 1; }

# field NAME FILE: a number from the load tool's JSON line (the last line of its stdout).
field() { tail -1 "$2" | grep -o "\"$1\":[0-9.]*" | head -1 | cut -d: -f2; }
kinds() { tail -1 "$1" | grep -o '"errors_by_kind":{[^}]*}' | cut -d: -f2-; }
# int N: a number with thousands separators and no decimals.
int() { [[ -n ${1:-} ]] || { echo "?"; return; }; printf '%.0f' "$1" | sed ':a; s/\B[0-9]\{3\}\>/,&/; ta'; }

# scenario NAME WHAT ARGS...: one `readyloop load` run; ARGS are shown in the table with the
# addresses and the pid written as $LINE, $HTTP and $SERVER_PID.
scenario() {
    local name=$1 what=$2; shift 2
    local shown="readyloop load $*"
    shown=${shown//$LINE/\$LINE}; shown=${shown//$HTTP/\$HTTP}; shown=${shown//--server-pid $server/--server-pid \$SERVER_PID}
    echo "== $name: $shown" >&2
    timeout -k 5 $((SECS + 60)) "$BIN" load "$@" --json --quiet >"$TMP/$name.json" 2>"$TMP/$name.err"
    local rc=$?
    ((rc == 0)) || { echo "$name: readyloop load exited with $rc" >&2; cat "$TMP/$name.err" >&2; }
    local ok failed open errors rate p50 p99 bpc
    ok=$(field conns_ok "$TMP/$name.json"); failed=$(field conns_failed "$TMP/$name.json")
    open=$(field conns_peak "$TMP/$name.json"); errors=$(field errors "$TMP/$name.json")
    rate=$(field msgs_per_s "$TMP/$name.json")
    p50=$(tail -1 "$TMP/$name.json" | grep -o '"latency_us":{[^}]*}' | grep -o '"p50":[0-9]*' | cut -d: -f2)
    p99=$(tail -1 "$TMP/$name.json" | grep -o '"latency_us":{[^}]*}' | grep -o '"p99":[0-9]*' | cut -d: -f2)
    bpc=$(field server_bytes_per_conn "$TMP/$name.json")
    [[ $(kinds "$TMP/$name.json") != "{}" ]] && errors="${errors:-?} $(kinds "$TMP/$name.json")"
    if [[ $name == idle ]]; then rate="–"; what=""; p50="–"; p99="–"; else rate=$(int "$rate"); fi
    printf '| %s | `%s` | %s/%s | %s | %s | %s | %s | %s | %s |\n' \
        "$name" "$shown" "$(int "$ok")" "${failed:-?}" "$(int "$open")" "${rate}${what:+ $what}" \
        "${p50:-?}" "${p99:-?}" "${errors:-?}" "${bpc:-–}" | tee -a "$TMP/rows" >&2
}

# Warm-up, not reported.
timeout -k 5 30 "$BIN" load idle --addr "$LINE" --conns 200 --duration 1 --json --quiet >/dev/null 2>&1
sleep 1

# Idle: the ramp (--connect-rate 5000 by default) must fit in the hold, and RSS is sampled at the end.
idle_secs=$((SECS > IDLE_CONNS / 2500 + 2 ? SECS : IDLE_CONNS / 2500 + 2))
scenario idle "" idle --addr "$LINE" --conns "$IDLE_CONNS" --duration "$idle_secs" --server-pid "$server"
sleep 1
scenario echo "msgs/s" echo --addr "$LINE" --conns 50 --size 64 --duration "$SECS"
scenario ws-echo "round trips/s" ws-echo --addr "$HTTP" --conns 50 --size 64 --duration "$SECS"
scenario ws-broadcast "deliveries/s" ws-broadcast --addr "$HTTP" --conns "$BCAST_CONNS" --senders 4 \
    --msg-rate 2000 --duration "$SECS"

if [[ -s $TMP/serve.err ]]; then
    echo "server stderr (RUST_LOG=warn):" >&2
    head -20 "$TMP/serve.err" >&2
fi

{
    echo "## Load scenarios ($(nproc) cores, $(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1048576)) GiB, kernel $(uname -r), $(date -u +%Y-%m-%d))"
    echo
    echo "\`benches/load_scenarios.sh\` (SECS=$SECS). One server:"
    echo "\`RUST_LOG=warn readyloop serve --http 127.0.0.1:0 --line 127.0.0.1:0 --hello off\`"
    echo "(line echo); \$LINE and \$HTTP are the addresses of its \`listening\` lines, \$SERVER_PID its pid."
    echo "Each \`readyloop load\` command also has \`--json --quiet\`; the load tool runs on the same"
    echo "machine, over loopback. Latencies are send-to-receive, in µs."
    echo
    echo "| scenario | command | conns ok/failed | held | rate | p50 µs | p99 µs | errors | server B per idle conn |"
    echo "|---|---|---:|---:|---:|---:|---:|---|---:|"
    cat "$TMP/rows"
    echo
    echo "The largest count held (several workers, many source addresses) comes from"
    echo "\`benches/idle_scale.sh\`; see \`docs/bench/scale.md\`."
} >"$OUT"
echo >&2
cat "$OUT"
echo "wrote $OUT" >&2
