#!/usr/bin/env bash
# Idle connections at scale: memory per idle TCP connection and per idle WebSocket, and the
# largest count this machine holds with several workers (`readyloop serve --workers N`).
#
# Not part of `cargo test` (it takes minutes and most of the machine's descriptors). Run from
# the crate root after `cargo build --release`:
#
#   benches/idle_scale.sh 1x19000 1x19000:ws 4x76000 8x152000
#
# Each argument is one run, WORKERSxCONNS[:ws]. With 1 worker the server is a plain
# `readyloop serve` (one process, one loop); otherwise `serve --workers W`. Per run:
#  1. start the server (HTTP and line listeners on port 0, RUST_LOG=warn) and read its ports;
#  2. warm up: 200 idle connections for 1 s (first-touch pages such as the read buffer are not
#     per-connection);
#  3. sample the server's RSS (all workers), /proc/meminfo Slab and MemAvailable;
#  4. `readyloop load idle --conns C` (`--ws /ws` for WebSockets) from 100 source addresses,
#     held until every connection is open on the server side, then 2 s of settling;
#  5. sample again and report the growth per connection; then stop the load and the server.
# User-space bytes per connection are the server's own (RSS). Kernel memory (socket, file and
# epoll structures) shows in Slab and MemAvailable and counts BOTH ends of each loopback
# connection, since the client runs on the same machine.
# Safety: a run is cut short if MemAvailable falls below MIN_AVAIL_KB (default 6 GiB); every
# process started here is stopped at the end of its run. Output: target/bench-scale.md.
set -uo pipefail

BIN=${BIN:-target/release/readyloop}
OUT=${OUT:-target/bench-scale.md}
RATE=${RATE:-8000}                  # connections per second asked of the load tool
SRC_IPS=${SRC_IPS:-127.0.0.2-127.0.0.101}
MIN_AVAIL_KB=${MIN_AVAIL_KB:-6291456}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

meminfo() { awk -v k="$1:" '$1 == k { print $2 }' /proc/meminfo; }
rss_kb() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $2 * 4}' "/proc/$p/statm" 2>/dev/null || echo 0))); done; echo $t; }
tcp_inuse() { awk '$1 == "TCP:" { print $3 }' /proc/net/sockstat; }
fds() { local t=0 p; for p in "$@"; do t=$((t + $(ls "/proc/$p/fd" 2>/dev/null | wc -l))); done; echo $t; }

run() {
    local spec=$1 workers conns ws="" mode=tcp
    workers=${spec%%x*}; conns=${spec#*x}
    if [[ $conns == *:ws ]]; then conns=${conns%:ws}; ws="--ws /ws"; mode=websocket; fi
    local args=(serve --http 127.0.0.1:0 --line 127.0.0.1:0 --hello off)
    ((workers > 1)) && args+=(--workers "$workers")
    RUST_LOG=warn setsid "$BIN" "${args[@]}" >"$TMP/serve.out" 2>"$TMP/serve.err" &
    local server=$!
    local i
    for i in $(seq 100); do [[ $(grep -c listening "$TMP/serve.out") -ge 2 ]] && break; sleep 0.1; done
    local http line addr
    http=$(awk '/listening http/ {print $3}' "$TMP/serve.out")
    line=$(awk '/listening line/ {print $3}' "$TMP/serve.out")
    addr=$line; [[ -n $ws ]] && addr=$http
    local pids=$server
    ((workers > 1)) && pids=$(cat "/proc/$server/task/$server/children")
    # shellcheck disable=SC2086
    "$BIN" load idle --addr "$addr" --conns 200 --duration 1 --quiet --json $ws >/dev/null
    sleep 1
    local rss0 slab0 avail0 fd0
    # shellcheck disable=SC2086
    rss0=$(rss_kb $pids); fd0=$(fds $pids); local inuse0; inuse0=$(tcp_inuse)
    slab0=$(meminfo Slab); avail0=$(meminfo MemFree)
    # The load tool holds its connections this long, then reports and exits by itself.
    local hold=$((conns * 3 / RATE / 2 + 12))
    local started=$SECONDS
    # shellcheck disable=SC2086
    setsid "$BIN" load idle --addr "$addr" --conns "$conns" --connect-rate "$RATE" --src-ips "$SRC_IPS" \
        --duration "$hold" --quiet --json $ws $( ((workers == 1)) && echo --server-pid "$server") \
        >"$TMP/load.json" 2>"$TMP/load.err" &
    local load=$!
    local held=0 ramp="" note=""
    while kill -0 "$load" 2>/dev/null; do
        # Both ends of every connection are on this machine (cheaper than counting fds).
        held=$((($(tcp_inuse) - inuse0) / 2))
        if ((held >= conns)); then ramp=$((SECONDS - started)); break; fi
        if (($(meminfo MemAvailable) < MIN_AVAIL_KB)); then note="stopped: MemAvailable under $((MIN_AVAIL_KB / 1024)) MiB"; break; fi
        if ((SECONDS - started > hold - 5)); then note="not all connected in time"; break; fi
        sleep 1
    done
    sleep 2
    local rss1 slab1 avail1 sock
    # shellcheck disable=SC2086
    rss1=$(rss_kb $pids); held=$(($(fds $pids) - fd0))
    slab1=$(meminfo Slab); avail1=$(meminfo MemFree)
    sock="estab $(ss -s | awk '/^TCP:/ {print $4}' | tr -d ,)"
    for i in $(seq $((hold * 10 + 300))); do kill -0 "$load" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$load" 2>/dev/null; wait "$load" 2>/dev/null
    local ok failed errors
    ok=$(grep -o '"conns_ok":[0-9]*' "$TMP/load.json" | tail -1 | cut -d: -f2)
    failed=$(grep -o '"conns_failed":[0-9]*' "$TMP/load.json" | tail -1 | cut -d: -f2)
    errors="$(grep -o '"errors":[0-9]*' "$TMP/load.json" | tail -1 | cut -d: -f2) $(grep -o '"errors_by_kind":{[^}]*}' "$TMP/load.json" | tail -1 | cut -d: -f2-)"
    grep -h "failed" "$TMP/load.err" | head -3 >&2
    kill -TERM "$server"; for i in $(seq 300); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$server" 2>/dev/null; wait "$server" 2>/dev/null
    local user_b slab_b avail_b
    user_b=$(( held > 0 ? (rss1 - rss0) * 1024 / held : 0 ))
    slab_b=$(( held > 0 ? (slab1 - slab0) * 1024 / held : 0 ))
    avail_b=$(( held > 0 ? (avail0 - avail1) * 1024 / held : 0 ))
    printf '| %s | %s | %s | %s | %s/%s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
        "$workers" "$mode" "$conns" "$held" "${ok:-?}" "${failed:-?}" "$errors" "$rss0" "$rss1" "$user_b" \
        "$(((slab1 - slab0) / 1024))" "$slab_b" "$avail_b" "${ramp:-–}" "${note:-$sock}" | tee -a "$TMP/rows"
}

for spec in "$@"; do run "$spec"; done
{
    echo "## Idle connections at scale ($(nproc) cores, $(($(meminfo MemTotal) / 1048576)) GiB, kernel $(uname -r))"
    echo
    echo "Command: \`benches/idle_scale.sh $*\` (RATE=$RATE, SRC_IPS=$SRC_IPS)"
    echo
    echo "| workers | kind | asked | held by server | load ok/failed | load errors | server RSS before KiB | after KiB | user B/conn | Slab Δ MiB | Slab B/conn (both ends) | MemFree drop B/conn (kernel both ends + load tool) | s to open all | ss -s / note |"
    echo "|---:|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|"
    cat "$TMP/rows"
} >"$OUT"
echo "wrote $OUT" >&2
