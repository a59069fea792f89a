#!/usr/bin/env bash
# Footprint of each Cargo feature combination: the stripped release binary's size, and the
# resident set size of `readyloop serve` right after it printed its `listening` lines (every
# listener the build has, on port 0, no client connected). Then the runtime dependency tree of
# the default build: how many crates it has and whether any is there in two versions
# (`cargo tree -d`, which must print nothing).
#
#   bash benches/footprint.sh        # prints a Markdown table, also written to
#                                    # target/bench-footprint.md
#
# Each combination is a separate `cargo build --release` (the release profile as is: opt-level 3,
# fat LTO, panic = "abort", cold crates at opt-level "s"; the binary is stripped on a copy, the
# profile does not strip), plus one row for the `min-size` profile (opt-level "s" everywhere) of
# the smallest build.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

out=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$out"' EXIT
page=$(getconf PAGESIZE)
table=target/bench-footprint.md

# Static builds against musl, when its target is installed (`rustup target add
# x86_64-unknown-linux-musl`; the default build's `ring` also needs `musl-gcc`, Debian's
# musl-tools): no libc.so or ld.so to map, which is most of the RSS of the glibc builds.
musl=x86_64-unknown-linux-musl

# name | cargo flags | profile | serve flags | target (empty: the host's)
combos=(
  "cli (hello + line)|--no-default-features --features cli|release|--http off"
  "cli (hello + line), min-size profile|--no-default-features --features cli|min-size|--http off"
  "cli,http|--no-default-features --features cli,http|release|--http 127.0.0.1:0"
  "cli,websocket|--no-default-features --features cli,websocket|release|--http 127.0.0.1:0"
  "cli,websocket,redis|--no-default-features --features cli,websocket,redis|release|--http 127.0.0.1:0"
  "default without tls (http, websocket, redis, load, cli)|--no-default-features --features http,websocket,redis,load,cli|release|--http 127.0.0.1:0"
  "default (http, websocket, redis, load, cli, tls)||release|--http 127.0.0.1:0"
  "cli (hello + line), static musl|--no-default-features --features cli|release|--http off|$musl"
  "default without tls, static musl|--no-default-features --features http,websocket,redis,load,cli|release|--http 127.0.0.1:0|$musl"
  "default, static musl||release|--http 127.0.0.1:0|$musl"
)

rows=()
for combo in "${combos[@]}"; do
  IFS='|' read -r name flags profile serve target <<<"$combo"
  dir="target/$profile"
  if [ -n "$target" ]; then
    if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
      rows+=("| $name | \`${flags:-(none)}\` | $profile | skipped: target $target not installed | | | | |")
      continue
    fi
    if [ -z "$flags" ] && ! command -v musl-gcc >/dev/null; then
      rows+=("| $name | \`(none)\` | $profile | skipped: ring needs musl-gcc (Debian: musl-tools) | | | | |")
      continue
    fi
    flags="$flags --target $target"
    dir="target/$target/$profile"
  fi
  # shellcheck disable=SC2086 # $flags is a list of words
  cargo build --quiet --profile "$profile" $flags
  bin="$out/readyloop"
  cp "$dir/readyloop" "$bin"
  strip "$bin"
  size=$(stat -c %s "$bin")

  want=$(( $([ "$serve" = "--http off" ] && echo 2 || echo 3) ))
  log="$out/stdout"
  : >"$log"
  # shellcheck disable=SC2086 # $serve is a list of words
  RUST_LOG=warn "$bin" serve --line 127.0.0.1:0 --hello 127.0.0.1:0 $serve \
    --upload-dir "$out/uploads" >"$log" 2>"$out/stderr" &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do
    [ "$(grep -c '^listening' "$log" || true)" -ge "$want" ] && break
    sleep 0.05
  done
  if [ "$(grep -c '^listening' "$log" || true)" -lt "$want" ]; then
    echo "footprint: $name: no listening lines; stderr:" >&2
    cat "$out/stderr" >&2
    exit 1
  fi
  sleep 0.2 # let the upload worker threads (with http) settle
  rss=$(( $(awk '{print $2}' "/proc/$pid/statm") * page ))
  # RSS is mostly file pages (the binary's text, libc) that every process maps from the page
  # cache; PSS divides shared pages among their users, and the anonymous pages are the memory
  # this process alone costs (heap, stacks, statics).
  pss=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup")
  anon=$(awk '/^Anonymous:/ {print $2}' "/proc/$pid/smaps_rollup")
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  listeners=$(awk '/^listening/ {print $2}' "$log" | paste -sd, -)
  rows+=("| $name | \`${flags:-(none)}\` | $profile | $listeners | $(( size / 1024 )) KiB | $(( rss / 1024 )) KiB | $pss KiB | $anon KiB |")
done

# The runtime crates of the default build (not readyloop itself), and duplicates.
crates=$(cargo tree -e normal --prefix none --format '{p}' | sed 's/ (\*)$//; s/ (proc-macro)$//' \
  | grep -v '^readyloop ' | sort -u)
ncrates=$(printf '%s\n' "$crates" | grep -c .)
dups=$(cargo tree -d -e normal 2>/dev/null | grep -v '^$' || true)

{
  echo "| build | cargo flags | profile | listeners | stripped binary | RSS at start | PSS | anonymous |"
  echo "|---|---|---|---|---:|---:|---:|---:|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "Runtime crates of the default build (\`cargo tree -e normal\`, readyloop itself not counted): $ncrates:"
  echo "$(printf '%s\n' "$crates" | paste -sd, - | sed 's/,/, /g')."
  if [ -z "$dups" ]; then
    echo "Crates in two versions (\`cargo tree -d -e normal\`): none."
  else
    echo "Crates in two versions (\`cargo tree -d -e normal\`):"
    echo '```'
    echo "$dups"
    echo '```'
  fi
} | tee "$table"
echo
echo "written to $table"
