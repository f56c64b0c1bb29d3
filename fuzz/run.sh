#!/usr/bin/env bash
# Runs every libFuzzer target of a fuzz build and prints a summary table.
#
#   bash fuzz/run.sh BUILD_DIR SECONDS [RUNS]
#
#   SECONDS > 0         each target runs for SECONDS (-max_total_time)
#   SECONDS = 0, RUNS   each target runs RUNS inputs (-runs)
#
# Seeds from fuzz/corpus/<target>/ are copied into a scratch corpus under
# BUILD_DIR/fuzz-work/ (fuzz/corpus is never written); new inputs, crash
# artifacts and logs stay there. Targets run FUZZ_JOBS at a time (default:
# the number of CPUs). FUZZ_TARGETS="fuzz_a fuzz_b" runs only those,
# FUZZ_EXCLUDE="fuzz_c" all but those. FUZZ_TIMEOUT (default 10) is the
# seconds one input may take: wall-clock time, so a run that shares the
# machine with heavy work may want more.
# FUZZ_KEEP_CORPUS=1 keeps the scratch corpus of an
# earlier run instead of starting from the seeds again. FUZZ_WORKERS=N runs
# N processes per target on one shared corpus (libFuzzer reloads it, so
# each sees the others' finds), RUNS split between them and their counts
# summed: for a slow target that should have every CPU to itself.
#
# Exit status: 0 when every target ran clean, 1 when any crashed, leaked,
# timed out or could not run.
set -u

usage() { echo "usage: $0 BUILD_DIR SECONDS [RUNS]" >&2; exit 2; }
[ $# -ge 2 ] || usage
BUILD=$1
SECONDS_EACH=$2
RUNS=${3:-}
[[ "$SECONDS_EACH" =~ ^[0-9]+$ ]] || usage
[ -z "$RUNS" ] || [[ "$RUNS" =~ ^[0-9]+$ ]] || usage
if [ "$SECONDS_EACH" = 0 ] && [ -z "$RUNS" ]; then
  echo "$0: SECONDS=0 needs RUNS" >&2
  usage
fi

HERE=$(cd "$(dirname "$0")" && pwd)
TARGETS=(fuzz_grpc_deframer fuzz_grpc_meta fuzz_request_decoders fuzz_h2_session fuzz_convert fuzz_arrow_read fuzz_arrow_roundtrip fuzz_settings_query fuzz_gunzip fuzz_proxy fuzz_http_response)
[ -z "${FUZZ_TARGETS:-}" ] || read -r -a TARGETS <<<"$FUZZ_TARGETS"
for x in ${FUZZ_EXCLUDE:-}; do
  for i in "${!TARGETS[@]}"; do [ "${TARGETS[$i]}" != "$x" ] || unset 'TARGETS[i]'; done
done
TARGETS=("${TARGETS[@]}")
WORK=$BUILD/fuzz-work
JOBS=${FUZZ_JOBS:-$(nproc)}
mkdir -p "$WORK"

# LSan is on under libFuzzer by default; make UBSan reports fatal with a stack.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

run_one() {
  local t=$1 bin=$BUILD/fuzz/$1
  local corpus=$WORK/corpus/$t art=$WORK/artifacts/$t/ log=$WORK/$t.log
  if [ ! -x "$bin" ]; then
    echo "missing binary $bin (run make fuzz-build)" >"$log"
    echo 127 >"$WORK/$t.rc"
    return
  fi
  [ "${FUZZ_KEEP_CORPUS:-0}" = 1 ] || rm -rf "$corpus"
  rm -rf "$art"
  mkdir -p "$corpus" "$art"
  cp "$HERE/corpus/$t/"* "$corpus/" 2>/dev/null || true
  local args=(-rss_limit_mb=2048 "-timeout=${FUZZ_TIMEOUT:-10}" -print_final_stats=1 "-artifact_prefix=$art")
  if [ "$SECONDS_EACH" -gt 0 ]; then
    args+=("-max_total_time=$SECONDS_EACH")
  else
    args+=("-runs=$RUNS")
  fi
  [ -f "$HERE/$t.dict" ] && args+=("-dict=$HERE/$t.dict")
  local workers=${FUZZ_WORKERS:-1} w pids=() rc=0
  if [ "$workers" -le 1 ]; then
    "$bin" "${args[@]}" "$corpus" >"$log" 2>&1
    echo $? >"$WORK/$t.rc"
    return
  fi
  [ "$SECONDS_EACH" -gt 0 ] || args=("${args[@]/#-runs=*/-runs=$(((RUNS + workers - 1) / workers))}")
  for ((w = 1; w <= workers; w++)); do
    "$bin" "${args[@]}" "$corpus" >"$log.w$w" 2>&1 &
    pids+=($!)
  done
  for w in "${pids[@]}"; do wait "$w" || rc=$?; done
  for ((w = 1; w <= workers; w++)); do
    echo "==== worker $w of $workers"
    cat "$log.w$w"
    rm -f "$log.w$w"
  done >"$log"
  echo "$rc" >"$WORK/$t.rc"
}

echo "fuzzing ${#TARGETS[@]} targets from $BUILD ($( [ "$SECONDS_EACH" -gt 0 ] && echo "${SECONDS_EACH}s each" || echo "$RUNS runs each"), $JOBS at a time)"
running=0
for t in "${TARGETS[@]}"; do
  rm -f "$WORK/$t.rc"
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then
    wait -n
    running=$((running - 1))
  fi
done
wait

fail=0
printf '\n%-24s %12s %8s %8s %8s %8s  %s\n' target execs exec/s cov ft corpus result
printf '%-24s %12s %8s %8s %8s %8s  %s\n' ------------------------ ------------ -------- -------- -------- -------- ------
# log_max KEY LOG: the largest "KEY: N" of libFuzzer's status lines
log_max() { grep -o " $1: [0-9]*" "$2" | awk 'BEGIN {m = ""} {if ($2 > m) m = $2} END {print m}'; }
for t in "${TARGETS[@]}"; do
  log=$WORK/$t.log
  rc=$(cat "$WORK/$t.rc" 2>/dev/null || echo 127)
  # sums and maxima over the log's workers (one unless FUZZ_WORKERS)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | awk '{s += $1} END {if (NR) print s}')
  [ -n "$execs" ] || execs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#')
  persec=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | awk '{s += $1} END {if (NR) print s}')
  [ -n "$persec" ] || persec=$(grep -o 'exec/s: [0-9]*' "$log" | tail -1 | awk '{print $2}')
  cov=$(log_max cov "$log") ft=$(log_max ft "$log") corp=$(log_max corp "$log")
  result=ok
  arts=$(find "$WORK/artifacts/$t" -type f 2>/dev/null | head -3 | tr '\n' ' ')
  if [ "$rc" != 0 ] || [ -n "$arts" ]; then
    fail=1
    if grep -q 'ERROR: LeakSanitizer' "$log"; then result="LEAK"
    elif grep -q 'ERROR: libFuzzer: timeout' "$log"; then result="TIMEOUT"
    elif grep -q 'out-of-memory' "$log"; then result="OOM"
    elif [ "$rc" = 127 ]; then result="NOT RUN"
    else result="CRASH"
    fi
    result="$result (exit $rc) $arts log: $log"
  fi
  printf '%-24s %12s %8s %8s %8s %8s  %s\n' "$t" "${execs:-?}" "${persec:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result"
done

if [ "$fail" != 0 ]; then
  echo
  for t in "${TARGETS[@]}"; do
    rc=$(cat "$WORK/$t.rc" 2>/dev/null || echo 127)
    [ "$rc" = 0 ] && continue
    echo "==== $t (exit $rc): end of $WORK/$t.log"
    grep -v -E '^#[0-9]+.*(NEW|REDUCE|pulse)' "$WORK/$t.log" | tail -40
  done
  exit 1
fi
exit 0
