#!/usr/bin/env bash
# Benchmarks the plugin against bench_floor and its own goals, loopback only,
# every number measured in this run. Prints one table, then the frames
# module's table (bench_frames: Arrow encode, body -> frame conversion).
#
#   bash bench/run.sh            (after `make dist` and a Release build in build/;
#                                 `make bench` does all three)
#
# Environment:
#   PLUGIN_BIN   the plugin binary       (default dist/gpx_inhouse_linux_amd64)
#   BUILD_DIR    where bench_floor, spawn_latency and bench_frames are (default build)
#   BENCH_SECS   target duration of each h2load run (default 6)
#
# Exit status: 0 when every measurement was taken (goals missed or not: this
# is a report), 1 when one could not be taken, 2 on a setup problem.
set -u
cd "$(dirname "$0")/.."

ARCH=$(uname -m | sed -e 's/x86_64/amd64/' -e 's/aarch64/arm64/')
PLUGIN_BIN=${PLUGIN_BIN:-dist/gpx_inhouse_linux_amd64}
[ -e "$PLUGIN_BIN" ] || PLUGIN_BIN=dist/gpx_inhouse_linux_$ARCH
BUILD_DIR=${BUILD_DIR:-build}
FLOOR_BIN=$BUILD_DIR/bench/bench_floor
SPAWN_BIN=$BUILD_DIR/bench/spawn_latency
FRAMES_BIN=$BUILD_DIR/bench/bench_frames
BENCH_SECS=${BENCH_SECS:-6}
PY=/usr/bin/python3
TOOL=bench/grpc_tool.py
METHOD_PATH=/pluginv2.Diagnostics/CheckHealth

for f in "$PLUGIN_BIN" "$FLOOR_BIN" "$SPAWN_BIN" "$FRAMES_BIN"; do
  [ -x "$f" ] || { echo "bench: missing $f (run: make bench)" >&2; exit 2; }
done
command -v h2load >/dev/null || { echo "bench: h2load missing (apt-get install nghttp2-client)" >&2; exit 2; }
$PY -c 'import grpc, h2' 2>/dev/null || { echo "bench: needs python3-grpcio and python3-h2" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpx-bench.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

MISSING=0
missing() { echo "bench: could not measure: $*" >&2; MISSING=1; }
log() { echo "bench: $*" >&2; }

# start_server NAME BIN... : starts it, waits for the handshake, sets SRV_PID, SRV_PORT
start_server() {
  local name=$1; shift
  "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  SRV_PID=$!
  PIDS+=("$SRV_PID")
  SRV_PORT=
  for _ in $(seq 1 200); do
    SRV_PORT=$(sed -n 's/^1|2|tcp|127\.0\.0\.1:\([0-9]*\)|grpc|$/\1/p' "$WORK/$name.out")
    [ -n "$SRV_PORT" ] && return 0
    kill -0 "$SRV_PID" 2>/dev/null || break
    sleep 0.025
  done
  log "$name did not print a handshake line: $(head -c 300 "$WORK/$name.out" "$WORK/$name.err")"
  return 1
}

stop_server() {
  kill "$1" 2>/dev/null
  wait "$1" 2>/dev/null
}

# cpu_ticks PID -> utime+stime in clock ticks
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null; }

# run_h2load PORT N -> sets H2_RPS H2_OK H2_2XX (empty on failure)
run_h2load() {
  local out=$WORK/h2load.$1.$2.txt
  H2_RPS= H2_OK= H2_2XX=
  timeout 120 h2load -n "$2" -c 8 -m 64 -d "$WORK/checkhealth.bin" \
    -H 'content-type: application/grpc' -H 'te: trailers' \
    "http://127.0.0.1:$1$METHOD_PATH" >"$out" 2>&1 || { log "h2load failed: $(tail -3 "$out")"; return 1; }
  H2_RPS=$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' "$out")
  H2_OK=$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' "$out")
  H2_2XX=$(sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' "$out")
  [ -n "$H2_RPS" ] && [ "$H2_OK" = "$2" ] && [ "$H2_2XX" = "$2" ] || {
    log "h2load: not every request succeeded: $(grep -E '^(requests|status codes)' "$out" | tr '\n' ' ')"; return 1; }
}

$PY $TOOL body "$WORK/checkhealth.bin" || exit 2
CLK_TCK=$(getconf CLK_TCK)

# ---- 1. unary calls/s: plugin vs floor ---------------------------------------
log "unary throughput: h2load -c 8 -m 64, CheckHealth, ~${BENCH_SECS}s per run"
P_RPS= F_RPS= P_CPU_US= F_CPU_US= GRPC_CHECK= N=
if start_server plugin "$PLUGIN_BIN" --standalone --address 127.0.0.1:0; then
  P_PID=$SRV_PID P_PORT=$SRV_PORT
  if start_server floor "$FLOOR_BIN" --address 127.0.0.1:0; then
    F_PID=$SRV_PID F_PORT=$SRV_PORT
    # h2load counts only :status; the gRPC status is checked with a real client.
    if v=$($PY $TOOL verify "$P_PORT" "$WORK/checkhealth.bin"); then GRPC_CHECK="plugin $v"
    else missing "plugin CheckHealth is not grpc-status 0: $v"; fi
    if v=$($PY $TOOL verify "$F_PORT" "$WORK/checkhealth.bin"); then GRPC_CHECK="$GRPC_CHECK; floor $v"
    else missing "floor answer is not grpc-status 0: $v"; fi
    # Warm up both, and size the runs from the floor's rate.
    run_h2load "$F_PORT" 20000 && warm=$H2_RPS
    run_h2load "$P_PORT" 20000
    N=$(awk -v r="${warm:-50000}" -v s="$BENCH_SECS" 'BEGIN { n = int(r * s / 10000) * 10000;
        if (n < 50000) n = 50000; if (n > 3000000) n = 3000000; print n }')
    # Two alternating rounds; the best of each is reported.
    p_calls=0 p_ticks=0 f_calls=0 f_ticks=0
    for round in 1 2; do
      t0=$(cpu_ticks "$F_PID")
      if run_h2load "$F_PORT" "$N"; then
        t1=$(cpu_ticks "$F_PID"); f_ticks=$((f_ticks + t1 - t0)); f_calls=$((f_calls + N))
        F_RPS=$(awk -v a="${F_RPS:-0}" -v b="$H2_RPS" 'BEGIN { print (b > a) ? b : a }')
      fi
      t0=$(cpu_ticks "$P_PID")
      if run_h2load "$P_PORT" "$N"; then
        t1=$(cpu_ticks "$P_PID"); p_ticks=$((p_ticks + t1 - t0)); p_calls=$((p_calls + N))
        P_RPS=$(awk -v a="${P_RPS:-0}" -v b="$H2_RPS" 'BEGIN { print (b > a) ? b : a }')
      fi
    done
    [ "$p_calls" -gt 0 ] && P_CPU_US=$(awk -v t="$p_ticks" -v h="$CLK_TCK" -v n="$p_calls" 'BEGIN { printf "%.2f", t / h / n * 1e6 }')
    [ "$f_calls" -gt 0 ] && F_CPU_US=$(awk -v t="$f_ticks" -v h="$CLK_TCK" -v n="$f_calls" 'BEGIN { printf "%.2f", t / h / n * 1e6 }')
    # Every h2load request must have been answered OK by the plugin's handler.
    HANDLED=$($PY $TOOL handled "$P_PORT" CheckHealth) || missing "plugin metrics unreadable"
    want=$((1 + 20000 + p_calls))
    ok_count=$(sed -n 's/.*\bOK=\([0-9]*\).*/\1/p' <<<"$HANDLED")
    if [ "$ok_count" != "$want" ]; then missing "plugin handled CheckHealth OK=$ok_count, expected $want ($HANDLED)"; fi
    kill -0 "$P_PID" 2>/dev/null || missing "plugin died during the load"
    stop_server "$F_PID"
  else
    missing "bench_floor did not start"
  fi
  stop_server "$P_PID"
else
  missing "plugin did not start in --standalone mode"
fi
[ -n "$P_RPS" ] || missing "plugin calls/s"
[ -n "$F_RPS" ] || missing "floor calls/s"

# ---- 2 + 3. spawn -> handshake latency, idle RSS, binary size ------------------
log "spawn -> handshake: 50 spawns each of plugin, floor and /bin/echo (interleaved, C timer); idle RSS 200 ms after"
mkdir -p "$WORK/sock"
SPAWN=$("$SPAWN_BIN" -n 50 -r 200 -e grafana_plugin_type=datasource -e PLUGIN_PROTOCOL_VERSIONS=2 \
  -e PLUGIN_MIN_PORT=10000 -e PLUGIN_MAX_PORT=25000 -e "PLUGIN_UNIX_SOCKET_DIR=$WORK/sock" \
  -- "$PLUGIN_BIN" -- "$FLOOR_BIN" --any /bin/echo '1|2|unix|/tmp/plugin0|grpc|') ||
  missing "spawn latency: $SPAWN"
kv() { sed -n "s/.*\b$2=\([0-9.-]*\).*/\1/p" <<<"$1" | head -1; }
SPAWN_P=$(grep '^spawn idx=0 ' <<<"$SPAWN") SPAWN_F=$(grep '^spawn idx=1 ' <<<"$SPAWN")
SPAWN_E=$(grep '^spawn idx=2 ' <<<"$SPAWN")
P_SPAWN_MED=$(kv "$SPAWN_P" median_ms) P_SPAWN_P90=$(kv "$SPAWN_P" p90_ms)
F_SPAWN_MED=$(kv "$SPAWN_F" median_ms) F_SPAWN_P90=$(kv "$SPAWN_F" p90_ms)
E_SPAWN_MED=$(kv "$SPAWN_E" median_ms) E_SPAWN_P90=$(kv "$SPAWN_E" p90_ms)
P_IDLE_KIB=$(kv "$(grep '^idle_rss idx=0 ' <<<"$SPAWN")" rss_kib)
F_IDLE_KIB=$(kv "$(grep '^idle_rss idx=1 ' <<<"$SPAWN")" rss_kib)
[ -n "$P_SPAWN_MED" ] && [ -n "$P_IDLE_KIB" ] && [ "$P_IDLE_KIB" -gt 0 ] 2>/dev/null || missing "plugin spawn/idle RSS"
[ -z "$(ls -A "$WORK/sock")" ] || missing "plugin left a socket behind after SIGTERM: $(ls "$WORK/sock")"
P_SIZE=$(stat -c %s "$PLUGIN_BIN")
cp "$FLOOR_BIN" "$WORK/floor.stripped" && strip "$WORK/floor.stripped" && F_SIZE=$(stat -c %s "$WORK/floor.stripped")

# ---- 4. RSS with 512 held-open streams -----------------------------------------
log "RSS with 512 open StreamStdio streams (1x512 and 8x64, fresh process each)"
streams_rss() { # CONNS PER_CONN -> "rss hwm"
  start_server "plugin-streams-$1" "$PLUGIN_BIN" --standalone --address 127.0.0.1:0 || return 1
  local pid=$SRV_PID out
  out=$($PY $TOOL streams "$SRV_PORT" "$pid" "$1" "$2") || { log "streams $1x$2: $out"; stop_server "$pid"; return 1; }
  stop_server "$pid"
  echo "$(kv "$out" rss_kib) $(kv "$out" hwm_kib) $(kv "$out" rss_before_kib)"
}
read -r S1_RSS S1_HWM S1_BEFORE <<<"$(streams_rss 1 512)" || true
read -r S8_RSS S8_HWM S8_BEFORE <<<"$(streams_rss 8 64)" || true
[ -n "${S1_RSS:-}" ] || missing "RSS with 1x512 streams"
[ -n "${S8_RSS:-}" ] || missing "RSS with 8x64 streams"

# ---- 5. frames: Arrow encode, body -> frame (its own table, printed after ours) ----
log "frames: Arrow encode vs memcpy, body -> frame vs a jansson baseline (bench_frames, ~10 s)"
"$FRAMES_BIN" >"$WORK/frames.txt" || missing "bench_frames (see its messages above)"

# ---- the table -------------------------------------------------------------------
mib() { [ -n "$1" ] && awk -v k="$1" 'BEGIN { printf "%.2f MiB", k / 1024 }' || echo "n/a"; }
row() { printf '%-40s | %14s | %14s | %-22s | %s\n' "$@"; }
# verdict VALUE OP LIMIT -> PASS / FAIL / n/a
verdict() { [ -n "$1" ] && awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN {
  ok = (op == "<=") ? (v <= l) : (v >= l); print ok ? "PASS" : "FAIL" }' || echo "n/a"; }
RATIO=$( [ -n "$P_RPS" ] && [ -n "$F_RPS" ] && awk -v p="$P_RPS" -v f="$F_RPS" 'BEGIN { printf "%.1f", 100 * p / f }')
CPU_RATIO=$( [ -n "$P_CPU_US" ] && [ -n "$F_CPU_US" ] && awk -v p="$P_CPU_US" -v f="$F_CPU_US" 'BEGIN { if (f > 0) printf "%.2fx", p / f; else print "-" }')
# Server CPU share while h2load ran, and what one core would sustain if the
# server were the bottleneck (1e6 / CPU-us per call).
busy() { [ -n "$1" ] && [ -n "$2" ] && awk -v c="$1" -v r="$2" 'BEGIN { printf "%.0f%%", c * r / 1e4 }'; }
cap() { [ -n "$1" ] && awk -v c="$1" 'BEGIN { if (c > 0) printf "%.0f", 1e6 / c }'; }
P_BUSY=$(busy "$P_CPU_US" "$P_RPS") F_BUSY=$(busy "$F_CPU_US" "$F_RPS")
P_CAP=$(cap "$P_CPU_US") F_CAP=$(cap "$F_CPU_US")
CAP_RATIO=$( [ -n "$P_CAP" ] && [ -n "$F_CAP" ] && awk -v p="$P_CAP" -v f="$F_CAP" 'BEGIN { printf "%.1f", 100 * p / f }')
SPAWN_OWN=$( [ -n "$P_SPAWN_MED" ] && [ -n "$E_SPAWN_MED" ] && awk -v p="$P_SPAWN_MED" -v e="$E_SPAWN_MED" 'BEGIN { printf "%.2f", p - e }')

echo
echo "gpx_inhouse benchmark  $(date -u +%Y-%m-%dT%H:%M:%SZ)  $(nproc) CPUs  $(uname -r)"
echo "plugin: $PLUGIN_BIN   baseline: $FLOOR_BIN (same loop layer, fixed gRPC answer)"
echo "h2load: $N calls per run, -c 8 -m 64, POST $METHOD_PATH (best of 2 alternating runs)"
echo "gRPC check: ${GRPC_CHECK:-n/a}; plugin handled CheckHealth: ${HANDLED:-n/a}"
echo
row "metric" "plugin" "baseline" "ratio / goal" "result"
row "----------------------------------------" "--------------" "--------------" "----------------------" "------"
row "unary calls/s (CheckHealth)" "${P_RPS:-n/a}" "${F_RPS:-n/a}" "${RATIO:-?}% / >= 50%" "$(verdict "$RATIO" '>=' 50)"
row "server CPU busy during the run" "${P_BUSY:-n/a}" "${F_BUSY:-n/a}" "< 100%: client-bound" "info"
row "CPU time per call (us, utime+stime)" "${P_CPU_US:-n/a}" "${F_CPU_US:-n/a}" "${CPU_RATIO:-?} / -" "info"
row "CPU-bound capacity (calls/s per core)" "${P_CAP:-n/a}" "${F_CAP:-n/a}" "${CAP_RATIO:-?}% / >= 50%" "$(verdict "$CAP_RATIO" '>=' 50)"
row "spawn -> handshake, median (ms)" "${P_SPAWN_MED:-n/a}" "${F_SPAWN_MED:-n/a}" "<= 5 ms" "$(verdict "$P_SPAWN_MED" '<=' 5)"
row "spawn -> handshake, p90 (ms)" "${P_SPAWN_P90:-n/a}" "${F_SPAWN_P90:-n/a}" "-" "info"
row "  exec floor: /bin/echo line, med/p90" "${E_SPAWN_MED:-n/a}" "${E_SPAWN_P90:-n/a}" "plugin - echo: ${SPAWN_OWN:-?} ms" "info"
row "idle RSS after handshake" "$(mib "$P_IDLE_KIB")" "$(mib "$F_IDLE_KIB")" "<= 4 MiB" "$(verdict "$P_IDLE_KIB" '<=' 4096)"
row "stripped binary size" "$(awk -v b="$P_SIZE" 'BEGIN { printf "%.0f KiB", b / 1024 }')" \
  "$(awk -v b="${F_SIZE:-0}" 'BEGIN { printf "%.0f KiB", b / 1024 }')" "<= 1 MiB" "$(verdict "$P_SIZE" '<=' 1048576)"
per_stream() { [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f KiB/stream", (a - b) / 512 }'; }
row "VmRSS, 512 open streams (1 conn x 512)" "$(mib "${S1_RSS:-}")" "$(mib "${S1_BEFORE:-}")" "<= 16 MiB" "$(verdict "${S1_RSS:-}" '<=' 16384)"
row "  (baseline: same process, 0 streams)" "" "" "$(per_stream "${S1_RSS:-}" "${S1_BEFORE:-}")" "info"
row "VmHWM, 512 open streams (1 conn x 512)" "$(mib "${S1_HWM:-}")" "-" "<= 16 MiB" "$(verdict "${S1_HWM:-}" '<=' 16384)"
row "VmRSS, 512 open streams (8 conn x 64)" "$(mib "${S8_RSS:-}")" "$(mib "${S8_BEFORE:-}")" "<= 16 MiB" "$(verdict "${S8_RSS:-}" '<=' 16384)"
row "  (baseline: same process, 0 streams)" "" "" "$(per_stream "${S8_RSS:-}" "${S8_BEFORE:-}")" "info"
row "VmHWM, 512 open streams (8 conn x 64)" "$(mib "${S8_HWM:-}")" "-" "<= 16 MiB" "$(verdict "${S8_HWM:-}" '<=' 16384)"
echo
echo "Notes: h2load runs one client thread; when the server is < 100% busy the calls/s row measures the"
echo "client, and the CPU-bound capacity row (1e6 / CPU-us per call) is the fairer server comparison."
echo "Spawn timing: C posix_spawn + pipe, env grafana_plugin_type=datasource, PLUGIN_UNIX_SOCKET_DIR=<tmp>;"
echo "each child is stopped with SIGTERM and must exit 0. /bin/echo of a handshake line is the cost of"
echo "exec on this machine. Baseline binary size is bench_floor stripped."
cat "$WORK/frames.txt"

if [ "$MISSING" != 0 ]; then
  echo "bench: some measurements could not be taken (see above)" >&2
  exit 1
fi
exit 0
