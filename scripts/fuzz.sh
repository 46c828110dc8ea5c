#!/usr/bin/env bash
# One libFuzzer run of one of halsal's readers, with ASan + UBSan, on a corpus that persists
# between runs (so runs add up), and one line of results appended to the campaign log.
#
#   scripts/fuzz.sh TARGET SECONDS [libFuzzer flags...]
#   scripts/fuzz.sh --list             # the targets
#   scripts/fuzz.sh --summary          # the campaign so far, as the table in docs/building.md
#
#   TARGET   zip pickle pth safetensors image csv split mat checkpoint model
#   SECONDS  wall time of this run (libFuzzer's -max_total_time; the log records the time it
#            actually ran, shorter when it stops at a finding); the run also stops at
#            HALSAL_FUZZ_MAX_RUNS executions (default 10000000) counted over the whole campaign.
#
# Builds with clang (clang++-14 or clang++ from Debian's clang-14 and libclang-rt-14-dev, installed
# when missing) against Debian's libtorch-dev, in build-fuzz/. The corpus and the log live in
# $HALSAL_FUZZ_DIR (default ~/.cache/halsal/fuzz): corpus/TARGET, log.tsv; crashes land in
# findings/TARGET/ -- fix them, then commit the input under tests/fuzz/regressions/TARGET/, which
# `ctest -R fuzz` replays (with -DHALSAL_BUILD_FUZZERS=ON).
set -euo pipefail
cd "$(dirname "$0")/.."
targets=(zip pickle pth safetensors image csv split mat checkpoint model)
dir=${HALSAL_FUZZ_DIR:-$HOME/.cache/halsal/fuzz}
log=$dir/log.tsv
build=${HALSAL_FUZZ_BUILD:-build-fuzz}
max_runs=${HALSAL_FUZZ_MAX_RUNS:-10000000}

summary() {
  [ -f "$log" ] || { echo "no campaign yet ($log)"; return; }
  echo "| target | runs | seconds run | executions | edges (cov) | features (ft) | corpus | findings |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  awk -F'\t' '
    { t=$2; runs[t]++; secs[t]+=$3; execs[t]+=$4; cov[t]=$5; ft[t]=$6; corpus[t]=$7; found[t]+=$8;
      if (!(t in order)) { order[t]=++n; name[n]=t } }
    END { for (i=1;i<=n;i++) { t=name[i];
      printf "| %s | %d | %d | %d | %d | %d | %d | %d |\n", t, runs[t], secs[t], execs[t], cov[t], ft[t], corpus[t], found[t] } }' "$log"
}

case "${1:-}" in
  --list) printf '%s\n' "${targets[@]}"; exit 0 ;;
  --summary) summary; exit 0 ;;
  ""|-h|--help) sed -n "2,$(($(grep -n "^set -euo" "$0" | cut -d: -f1) - 1))p" "$0" | sed "s/^# \{0,1\}//"; exit 0 ;;
esac
target=$1
seconds=${2:?"usage: scripts/fuzz.sh TARGET SECONDS (see --help)"}
shift 2
[[ " ${targets[*]} " == *" $target "* ]] || { echo "fuzz.sh: unknown target '$target' (expected: ${targets[*]})" >&2; exit 2; }
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "fuzz.sh: SECONDS must be a whole number, got '$seconds'" >&2; exit 2; }

# --- the compiler and the build --------------------------------------------------------------
cxx=$(command -v clang++-14 || command -v clang++ || true)
if [ -z "$cxx" ] || ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
  sudo=; [ "$(id -u)" = 0 ] || sudo=sudo
  echo "fuzz.sh: installing clang-14 and libclang-rt-14-dev (libFuzzer)"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends clang-14 libclang-rt-14-dev >/dev/null
  cxx=$(command -v clang++-14)
fi
if [ ! -f "$build/build.ninja" ]; then
  bash scripts/install-deps.sh debian "$build/torch-init.cmake"
  CXX=$cxx cmake -S . -B "$build" -G Ninja -C "$build/torch-init.cmake" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DHALSAL_BUILD_FUZZERS=ON -DHALSAL_BUILD_TESTS=OFF -DHALSAL_BUILD_EXAMPLES=OFF -DHALSAL_BUILD_BENCH=OFF >/dev/null
fi
cmake --build "$build" --target "fuzz_$target"
exe=$build/tests/fuzz/fuzz_$target

# --- the corpus --------------------------------------------------------------------------------
corpus=$dir/corpus/$target
findings=$dir/findings/$target
mkdir -p "$corpus" "$findings" "$dir/logs"
seeds=()
case "$target" in
  zip|pth|safetensors) seeds+=(tests/data/io) ;;
  pickle) seeds+=(tests/fuzz/corpus/pickle) ;;
  image) seeds+=(tests/fuzz/corpus_image) ;;
  *) [ -d "tests/fuzz/corpus/$target" ] && seeds+=("tests/fuzz/corpus/$target") ;;
esac
[ -d "tests/fuzz/regressions/$target" ] && seeds+=("tests/fuzz/regressions/$target")
if [ -z "$(ls -A "$corpus")" ]; then
  # A first run: the target writes its own seeds (HALSAL_FUZZ_SEED_DIR) when it has a writer.
  HALSAL_FUZZ_SEED_DIR=$corpus "$exe" -runs=0 "$corpus" >/dev/null 2>&1 || true
fi

done_runs=0
[ -f "$log" ] && done_runs=$(awk -F'\t' -v t="$target" '$2==t {s+=$4} END {print s+0}' "$log")
left=$((max_runs - done_runs))
if ((left <= 0)); then
  echo "fuzz.sh: $target has run $done_runs executions (>= $max_runs): the campaign for it is complete"
  exit 0
fi

# --- the run -----------------------------------------------------------------------------------
stamp=$(date -u +%Y%m%dT%H%M%SZ)
run_log=$dir/logs/$target-$stamp.log
before=$(ls "$findings" | wc -l)
echo "fuzz.sh: $target for ${seconds}s (at most $left executions), corpus $corpus, log $run_log"
started=$(date +%s)
set +e
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0} \
LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp:print_suppressions=0} \
  "$exe" "$corpus" "${seeds[@]}" -max_total_time="$seconds" -runs="$left" -print_final_stats=1 \
  -rss_limit_mb=2048 -malloc_limit_mb=256 -timeout=10 -artifact_prefix="$findings/" "$@" >"$run_log" 2>&1
rc=$?
set -e
elapsed=$(( $(date +%s) - started ))
execs=$(awk '/stat::number_of_executed_units:/ {print $2}' "$run_log" | tail -1)
[ -n "$execs" ] || execs=$( (grep -oE '^#[0-9]+' "$run_log" || true) | tail -1 | tr -d '#')
last=$( (grep -E '^#[0-9]+.*cov: ' "$run_log" || true) | tail -1)
cov=$(sed -nE 's/.*cov: ([0-9]+).*/\1/p' <<<"$last")
ft=$(sed -nE 's/.*ft: ([0-9]+).*/\1/p' <<<"$last")
size=$(ls "$corpus" | wc -l)
found=$(( $(ls "$findings" | wc -l) - before ))
printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$stamp" "$target" "$elapsed" "${execs:-0}" "${cov:-0}" "${ft:-0}" "$size" "$found" >>"$log"
echo "fuzz.sh: $target: rc $rc, ${elapsed}s, ${execs:-0} executions, cov ${cov:-?}, ft ${ft:-?}, corpus $size, new findings $found"
if ((found > 0)) || ((rc != 0)); then
  grep -E 'ERROR|SUMMARY|Test unit written|exiting' "$run_log" | head -20 || true
  exit 1
fi
