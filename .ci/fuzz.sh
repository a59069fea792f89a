#!/usr/bin/env bash
# Fuzzes every target of fuzz/ (whatever `cargo fuzz list` prints) for a bounded time each,
# under AddressSanitizer (and LeakSanitizer) with debug assertions and overflow checks on.
# Fails on any crash, failed property, leak, timeout or out-of-memory, and prints the input that
# did it, ready to keep as a regression test.
#
# usage: .ci/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      (default 30 s, every target)
#   FUZZ_JOBS=N        targets fuzzed at once (default: the CPU count, at most 4)
#   FUZZ_FLAGS="..."   more libFuzzer flags, after ours (e.g. -max_len=65536)
#   FUZZ_TOOLCHAIN=T   the toolchain (default: nightly if rustup has it, else stable with
#                      RUSTC_BOOTSTRAP=1, which lets stable take the -Z flags cargo-fuzz passes)
#
# The committed seeds (fuzz/corpus/<target>/) are read, never written: what a run finds goes to
# a scratch corpus, so a run leaves the checkout as it was. A longer campaign by hand: README,
# "Fuzzing".
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

seconds=${1:-30}
shift || true

if [[ -n "${FUZZ_TOOLCHAIN:-}" ]]; then
  toolchain=$FUZZ_TOOLCHAIN
elif rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=nightly
else
  toolchain=stable
fi
if [[ $toolchain != nightly* ]]; then
  export RUSTC_BOOTSTRAP=1
fi
fuzz() { cargo "+$toolchain" fuzz "$@"; }
replay="cargo +$toolchain fuzz run -a"
[[ -n ${RUSTC_BOOTSTRAP:-} ]] && replay="RUSTC_BOOTSTRAP=1 $replay"

if (($# > 0)); then
  targets=("$@")
else
  mapfile -t targets < <(fuzz list)
fi
jobs=${FUZZ_JOBS:-$(nproc)}
((jobs > 4)) && jobs=4
((jobs < 1)) && jobs=1

scratch=$(mktemp -d "${TMPDIR:-/tmp}/readyloop-fuzz.XXXXXX")
echo "fuzzing ${#targets[@]} targets for ${seconds} s each, $jobs at a time, toolchain $toolchain;" \
  "scratch in $scratch"

# One build for every target (`-a`: debug assertions and overflow checks, on top of ASan).
fuzz build -a

run_one() {
  local target=$1
  mkdir -p "$scratch/corpus/$target" "$scratch/artifacts/$target"
  # -timeout: an input that takes over 10 s is a failure (a slow input is a hang to a server).
  # -rss_limit_mb / -malloc_limit_mb: a peer must not make us hold that much.
  local rc=0
  fuzz run -a "$target" "$scratch/corpus/$target" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
    -print_final_stats=1 -artifact_prefix="$scratch/artifacts/$target/" ${FUZZ_FLAGS:-} \
    >"$scratch/$target.log" 2>&1 || rc=$?
  echo "$rc" >"$scratch/$target.rc"
}

running=0
for target in "${targets[@]}"; do
  run_one "$target" &
  running=$((running + 1))
  if ((running >= jobs)); then
    wait -n || true
    running=$((running - 1))
  fi
done
wait || true

failed=0
printf '\n%-16s %12s %10s  %s\n' target "inputs run" "corpus" result
for target in "${targets[@]}"; do
  log=$scratch/$target.log
  rc=$(cat "$scratch/$target.rc" 2>/dev/null || echo "?")
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  corpus=$(find "$scratch/corpus/$target" -type f | wc -l)
  result=ok
  [[ $rc == 0 ]] || { result="FAILED (exit $rc)"; failed=1; }
  printf '%-16s %12s %10s  %s\n' "$target" "${execs:-?}" "$corpus" "$result"
done

if ((failed)); then
  for target in "${targets[@]}"; do
    [[ $(cat "$scratch/$target.rc" 2>/dev/null) == 0 ]] && continue
    echo
    echo "==== $target failed; the end of its log:"
    tail -n 60 "$scratch/$target.log"
    for input in "$scratch/artifacts/$target"/*; do
      [[ -f $input ]] || continue
      echo
      echo "---- reproducer $(basename "$input") ($(wc -c <"$input") bytes), base64:"
      base64 -w 76 "$input"
      echo "---- to reproduce: $replay $target $input"
      echo "---- to keep it as a regression test (replayed by cargo test):"
      echo "     mkdir -p fuzz/regressions/$target && cp $input fuzz/regressions/$target/"
    done
  done
  echo
  echo "fuzzing FAILED"
  exit 1
fi
rm -rf "$scratch"
echo
echo "fuzzing passed"
