#!/usr/bin/env bash
# Benchmarks the plugin against bench_floor and its own goals, loopback only,
# every number measured in this run. Prints one table, then the frames
# module's table (bench_frames: Arrow encode, body -> frame conversion), then
# the QueryData table (plugin + refbackend: calls/s, CPU per call, added
# latency, alert storm; bench/query_tool.py).
#
#   bash bench/run.sh            (after `make dist` and a Release build in build/;
#                                 `make bench` does all three)
#
# Environment:
#   PLUGIN_BIN   the plugin binary       (default dist/gpx_inhouse_linux_amd64)
#   BUILD_DIR    where bench_floor, spawn_latency and bench_frames are (default build)
#   BENCH_SECS   target duration of each h2load run (default 6)
#   REF_BIN      the refbackend (default $BUILD_DIR/tools/refbackend/refbackend)
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
PACE_BIN=$BUILD_DIR/bench/bench_pace
RELAY_BIN=$BUILD_DIR/bench/bench_relay
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

# ---- 6. QueryData through plugin + refbackend (its own table, printed last) --------
# Throughput (floor 1: refbackend alone with the body the plugin sends; floor 2:
# bench_floor CheckHealth from section 1), added latency at 64 concurrent calls
# (h2load per-request log, plugin vs direct refbackend), and an alert storm.
log "QueryData: h2load throughput vs refbackend direct, added latency at 64 concurrent, alert storm (~25 s)"
QD_T0=$SECONDS
Q_RPS= R_RPS= Q_CPU_US= R_CPU_US= QR_CPU_US= Q_BUSY= R_BUSY= Q_VERIFY= Q_HANDLED= Q_N= R_N=
L_P50= L_P99= D_P50= D_P99= A_P50= A_P99= S_P50= S_DP50= S_A50= O_P50= O_P99= OD_P50= OD_P99= PACE_INFLIGHT=
OX_P50= OX_P99=
ST_TOTAL= ST_SUBMIT= ST_OK= ST_FAIL= ST_HWM= ST_BEFORE=
export PB_DIR=$WORK/pb
mkdir -p "$PB_DIR"
protoc -Iproto --python_out="$PB_DIR" proto/pluginv2.proto || missing "protoc pluginv2_pb2"
QTOOL=bench/query_tool.py
REF_BIN=${REF_BIN:-$BUILD_DIR/tools/refbackend/refbackend}
command -v curl >/dev/null || missing "curl (refbackend /_stats)"
ref_requests() { curl -s --max-time 5 "http://127.0.0.1:$1/_stats" | sed -n 's/.*"requests":\([0-9]*\).*/\1/p'; }
# h2load_run NAME ARGS... -> sets HR_RPS (empty unless every request got 2xx)
h2load_run() {
  local name=$1; shift
  local out=$WORK/h2q.$name.txt n
  HR_RPS=
  timeout 120 h2load "$@" >"$out" 2>&1 || { log "h2load $name failed: $(tail -3 "$out")"; return 1; }
  n=$(sed -n 's/^requests: \([0-9]*\) total.*/\1/p' "$out")
  HR_RPS=$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' "$out")
  grep -q "^requests: .* $n succeeded" "$out" && grep -q "^status codes: $n 2xx" "$out" || {
    HR_RPS=; log "h2load $name: not every request succeeded: $(grep -E '^(requests|status codes)' "$out" | tr '\n' ' ')"; return 1; }
}
# pcts LOGFILE -> "p50 p99" of h2load --log-file durations (us), 2xx only
pcts() { awk '$2 ~ /^2/ { print $3 }' "$1" | sort -n | awk '{ a[NR] = $1 } END {
  if (NR == 0) exit 1; i = int(NR * 0.5 + 0.5); j = int(NR * 0.99 + 0.5); if (i < 1) i = 1; if (j < 1) j = 1
  print a[i], a[j] }'; }
# start_listener NAME BIN... : starts a program that prints "listening
# 127.0.0.1:PORT" (refbackend, bench_relay), waits for that line, sets LST_PID LST_PORT
start_listener() {
  local name=$1; shift
  "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  LST_PID=$! LST_PORT=
  PIDS+=("$LST_PID")
  for _ in $(seq 1 200); do
    LST_PORT=$(sed -n 's/^listening 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$WORK/$name.out")
    [ -n "$LST_PORT" ] && return 0
    sleep 0.025
  done
  log "$name did not start: $(head -c 300 "$WORK/$name.err")"; return 1
}
start_ref() { # -> REF_PID REF_PORT
  start_listener refbackend "$REF_BIN" --log-level off
  local rc=$?
  REF_PID=$LST_PID REF_PORT=$LST_PORT
  return $rc
}
GRPC_H=(-H 'content-type: application/grpc' -H 'te: trailers')
QPATH=/pluginv2.Data/QueryData
if [ ! -x "$REF_BIN" ]; then
  missing "refbackend binary $REF_BIN"
elif start_ref && start_server plugin-qd "$PLUGIN_BIN" --standalone --address 127.0.0.1:0; then
  Q_PID=$SRV_PID Q_PORT=$SRV_PORT URL=http://127.0.0.1:$REF_PORT
  # The exact /query body the plugin sends for `points:100` (one-shot listener of ours).
  if ! v=$($PY $QTOOL capture "$Q_PORT" points:100 "$WORK/direct.json"); then missing "capture of the plugin's /query body: $v"; fi
  sed 's/"points:100"/"points:100?latency=20ms"/' "$WORK/direct.json" >"$WORK/direct20.json"
  $PY $QTOOL body "$WORK/qd.bin" "$URL" points:100 &&
    $PY $QTOOL body "$WORK/qd20.bin" "$URL" 'points:100?latency=20ms' || missing "QueryData request bodies"
  if v=$($PY $QTOOL verify "$Q_PORT" "$WORK/qd.bin"); then Q_VERIFY=$v; else missing "plugin QueryData answer: $v"; fi
  # --- throughput: warm both, size from the plugin's rate, 2 alternating rounds
  qd_load() { h2load_run "$1" -n "$2" -c 8 -m 64 -d "$WORK/qd.bin" "${GRPC_H[@]}" "http://127.0.0.1:$Q_PORT$QPATH"; }
  ref_load() { h2load_run "$1" --h1 -n "$2" -c 8 -m 1 -d "$WORK/direct.json" -H 'content-type: application/json' \
    "http://127.0.0.1:$REF_PORT/query"; }
  qd_load qwarm 20000 && qwarm=$HR_RPS
  ref_load rwarm 20000 && rwarm=$HR_RPS
  Q_N=$(awk -v r="${qwarm:-10000}" -v s="$BENCH_SECS" 'BEGIN { n = int(r * s / 10000) * 10000;
      if (n < 30000) n = 30000; if (n > 1000000) n = 1000000; print n }')
  R_N=$(awk -v r="${rwarm:-10000}" -v s="$BENCH_SECS" 'BEGIN { n = int(r * s / 3 / 10000) * 10000;
      if (n < 30000) n = 30000; if (n > 1000000) n = 1000000; print n }')
  q_calls=0 q_ticks=0 qr_ticks=0 r_calls=0 r_ticks=0 ref_seen=0
  for round in 1 2; do
    t0=$(cpu_ticks "$REF_PID")
    if ref_load "r$round" "$R_N"; then
      t1=$(cpu_ticks "$REF_PID"); r_ticks=$((r_ticks + t1 - t0)); r_calls=$((r_calls + R_N))
      R_RPS=$(awk -v a="${R_RPS:-0}" -v b="$HR_RPS" 'BEGIN { print (b > a) ? b : a }')
    fi
    t0=$(cpu_ticks "$Q_PID") u0=$(cpu_ticks "$REF_PID") s0=$(ref_requests "$REF_PORT")
    if qd_load "q$round" "$Q_N"; then
      t1=$(cpu_ticks "$Q_PID") u1=$(cpu_ticks "$REF_PID") s1=$(ref_requests "$REF_PORT")
      q_ticks=$((q_ticks + t1 - t0)); qr_ticks=$((qr_ticks + u1 - u0)); q_calls=$((q_calls + Q_N))
      ref_seen=$((ref_seen + s1 - s0 - 1))  # minus our own /_stats request
      Q_RPS=$(awk -v a="${Q_RPS:-0}" -v b="$HR_RPS" 'BEGIN { print (b > a) ? b : a }')
    fi
  done
  perus() { awk -v t="$1" -v h="$CLK_TCK" -v n="$2" 'BEGIN { printf "%.2f", t / h / n * 1e6 }'; }
  if [ "$q_calls" -gt 0 ]; then
    Q_CPU_US=$(perus "$q_ticks" "$q_calls") QR_CPU_US=$(perus "$qr_ticks" "$q_calls")
    [ "$ref_seen" = "$q_calls" ] || missing "refbackend saw $ref_seen /query requests for $q_calls QueryData calls"
  fi
  [ "$r_calls" -gt 0 ] && R_CPU_US=$(perus "$r_ticks" "$r_calls")
  Q_HANDLED=$($PY $TOOL handled "$Q_PORT" QueryData) || missing "plugin metrics unreadable"
  ok_count=$(sed -n 's/.*\bOK=\([0-9]*\).*/\1/p' <<<"$Q_HANDLED")
  want=$((2 + 20000 + q_calls))
  [ "$ok_count" = "$want" ] || missing "plugin handled QueryData OK=$ok_count, expected $want ($Q_HANDLED)"
  # --- added latency: 64 in flight on one h2 connection, per-request times from
  # h2load's log; the same client, 64 keep-alive HTTP/1.1 connections, direct.
  if h2load_run lat -n 1344 -c 1 -m 64 -d "$WORK/qd20.bin" "${GRPC_H[@]}" --log-file="$WORK/lat.plugin.log" \
       "http://127.0.0.1:$Q_PORT$QPATH" &&
     h2load_run latd --h1 -n 1344 -c 64 -m 1 -d "$WORK/direct20.json" -H 'content-type: application/json' \
       --log-file="$WORK/lat.direct.log" "http://127.0.0.1:$REF_PORT/query"; then
    read -r L_P50 L_P99 <<<"$(pcts "$WORK/lat.plugin.log")"
    read -r D_P50 D_P99 <<<"$(pcts "$WORK/lat.direct.log")"
  fi
  # --- the goal row: 64 calls in flight on average, arriving independently
  # (Poisson, open loop: bench_pace), plugin over gRPC vs the refbackend over
  # HTTP/1.1, the same schedule and the same client code for both sides. Both
  # get enough connections (256) that nobody queues for one. A third side,
  # the floor: the same HTTP/1.1 requests through bench_relay, a zero-work
  # byte relay, which costs what any process in the path costs here.
  X_PID= X_PORT=
  if [ ! -x "$RELAY_BIN" ]; then
    missing "bench_relay (the latency floor): $RELAY_BIN not built"
  elif start_listener relay "$RELAY_BIN" "127.0.0.1:$REF_PORT"; then
    X_PID=$LST_PID X_PORT=$LST_PORT
  else
    X_PID=$LST_PID
    missing "bench_relay (the latency floor)"
  fi
  if [ -x "$PACE_BIN" ] &&
     $PY $QTOOL body "$WORK/qdpace.bin" "$URL" 'points:100?latency=20ms' '{"maxConnections":256}' bench-pace; then
    pace() { timeout 120 "$PACE_BIN" "$@"; }
    pace grpc "127.0.0.1:$Q_PORT" "$QPATH" "$WORK/qdpace.bin" 3200 3200 >/dev/null  # warm: open connections
    pace http "127.0.0.1:$REF_PORT" /query "$WORK/direct20.json" 3200 3200 256 >/dev/null
    [ -z "$X_PORT" ] || pace http "127.0.0.1:$X_PORT" /query "$WORK/direct20.json" 3200 3200 256 >/dev/null
    p50s_p= p99s_p= p50s_d= p99s_d= p50s_x= p99s_x= pace_n=0
    for round in 1 2 3; do
      vp=$(pace grpc "127.0.0.1:$Q_PORT" "$QPATH" "$WORK/qdpace.bin" 3200 9600) || { log "pace plugin: $vp"; continue; }
      vd=$(pace http "127.0.0.1:$REF_PORT" /query "$WORK/direct20.json" 3200 9600 256) || { log "pace direct: $vd"; continue; }
      log "pace round $round: plugin $vp"
      log "pace round $round: direct $vd"
      p50s_p="$p50s_p $(kv "$vp" p50_us)" p99s_p="$p99s_p $(kv "$vp" p99_us)"
      p50s_d="$p50s_d $(kv "$vd" p50_us)" p99s_d="$p99s_d $(kv "$vd" p99_us)"
      PACE_INFLIGHT=$(kv "$vp" inflight_avg) pace_n=$((pace_n + 1))
      [ -n "$X_PORT" ] || continue
      if vx=$(pace http "127.0.0.1:$X_PORT" /query "$WORK/direct20.json" 3200 9600 256); then
        log "pace round $round: relay  $vx"
        p50s_x="$p50s_x $(kv "$vx" p50_us)" p99s_x="$p99s_x $(kv "$vx" p99_us)"
      else
        log "pace relay: $vx"
      fi
    done
    med() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)] }'; }
    if [ "$pace_n" -gt 0 ]; then
      O_P50=$(med "$p50s_p") O_P99=$(med "$p99s_p") OD_P50=$(med "$p50s_d") OD_P99=$(med "$p99s_d")
      OX_P50=$(med "$p50s_x") OX_P99=$(med "$p99s_x")
    fi
  fi
  [ -z "$X_PID" ] || stop_server "$X_PID"
  [ -z "$X_PORT" ] || [ -n "$OX_P50" ] || missing "latency through bench_relay"
  [ -n "$O_P50" ] || missing "QueryData added latency at 64 in flight (bench_pace)"
  # one call at a time (no queueing behind 63 others): plugin vs direct
  if h2load_run seq -n 2000 -c 1 -m 1 -d "$WORK/qd.bin" "${GRPC_H[@]}" --log-file="$WORK/seq.plugin.log" \
       "http://127.0.0.1:$Q_PORT$QPATH" &&
     h2load_run seqd --h1 -n 2000 -c 1 -m 1 -d "$WORK/direct.json" -H 'content-type: application/json' \
       --log-file="$WORK/seq.direct.log" "http://127.0.0.1:$REF_PORT/query"; then
    read -r S_P50 _ <<<"$(pcts "$WORK/seq.plugin.log")"
    read -r S_DP50 _ <<<"$(pcts "$WORK/seq.direct.log")"
  fi
  [ -n "$L_P50" ] && [ -n "$D_P50" ] || missing "QueryData added latency"
  [ -n "$S_P50" ] && [ -n "$S_DP50" ] || missing "QueryData single-call latency"
  kill -0 "$Q_PID" 2>/dev/null || missing "plugin died during the QueryData load"
  stop_server "$Q_PID"
  # --- alert storm: a fresh plugin, so VmHWM is the storm's own
  if start_server plugin-storm "$PLUGIN_BIN" --standalone --address 127.0.0.1:0; then
    ST_BEFORE=$(awk '/^VmHWM:/ { print $2 }' "/proc/$SRV_PID/status")
    v=$(timeout 100 $PY $QTOOL storm "$SRV_PORT" "$SRV_PID" "$URL" 1000 4 'sine:1?latency=50ms') ||
      log "storm: $v"
    ST_TOTAL=$(kv "$v" total_s) ST_SUBMIT=$(kv "$v" submit_s) ST_OK=$(kv "$v" ok) ST_FAIL=$(kv "$v" failures) ST_HWM=$(kv "$v" hwm_kib)
    [ -n "$ST_TOTAL" ] && [ -n "$ST_HWM" ] || missing "alert storm: $v"
    kill -0 "$SRV_PID" 2>/dev/null || missing "plugin died during the alert storm"
    stop_server "$SRV_PID"
  else
    missing "plugin (storm) did not start"
  fi
  stop_server "$REF_PID"
else
  missing "plugin or refbackend did not start for QueryData"
fi
[ -n "$Q_RPS" ] || missing "QueryData calls/s"
QD_SECS=$((SECONDS - QD_T0))
[ -n "$R_RPS" ] || missing "refbackend direct calls/s"

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

# ---- third table: QueryData (section 6) --------------------------------------------
Q_R_RATIO=$( [ -n "$Q_RPS" ] && [ -n "$R_RPS" ] && awk -v p="$Q_RPS" -v f="$R_RPS" 'BEGIN { printf "%.1f", 100 * p / f }')
Q_F_RATIO=$( [ -n "$Q_RPS" ] && [ -n "$F_RPS" ] && awk -v p="$Q_RPS" -v f="$F_RPS" 'BEGIN { printf "%.1f", 100 * p / f }')
Q_BUSY=$(busy "$Q_CPU_US" "$Q_RPS") QR_BUSY=$(busy "$QR_CPU_US" "$Q_RPS") R_BUSY=$(busy "$R_CPU_US" "$R_RPS")
sub() { [ -n "$1" ] && [ -n "$2" ] && echo $(( $1 - $2 )); }
A_P50=$(sub "$L_P50" "$D_P50") A_P99=$(sub "$L_P99" "$D_P99") S_A50=$(sub "$S_P50" "$S_DP50")
OA_P50=$(sub "$O_P50" "$OD_P50") OA_P99=$(sub "$O_P99" "$OD_P99")
OXA_P50=$(sub "$OX_P50" "$OD_P50") OXA_P99=$(sub "$OX_P99" "$OD_P99")
ST_RATIO=$( [ -n "$ST_TOTAL" ] && awk -v t="$ST_TOTAL" 'BEGIN { printf "%.3f", t / 3.15 }')
ST_FAIL_OK=$( [ -n "$ST_FAIL" ] && { [ "$ST_FAIL" = 0 ] && echo PASS || echo FAIL; } || echo n/a)
echo
echo "QueryData through plugin + refbackend ($REF_BIN), loopback, $(nproc) CPUs shared by client, plugin and backend"
echo "h2load: $Q_N calls per plugin run (-c 8 -m 64, 1 query points:100 each), $R_N per direct run"
echo "  (--h1 -c 8 -m 1, the captured /query body), best of 2 alternating runs; floor 2 = CheckHealth vs bench_floor above"
echo "check: ${Q_VERIFY:-n/a}; plugin handled QueryData: ${Q_HANDLED:-n/a}; section took ${QD_SECS:-?} s"
echo
row "metric" "plugin" "baseline" "ratio / goal" "result"
row "----------------------------------------" "--------------" "--------------" "----------------------" "------"
row "QueryData calls/s vs refbackend direct" "${Q_RPS:-n/a}" "${R_RPS:-n/a}" "${Q_R_RATIO:-?}% (floor 1)" "info"
row "QueryData calls/s vs transport floor" "${Q_RPS:-n/a}" "${F_RPS:-n/a}" "${Q_F_RATIO:-?}% (floor 2)" "info"
row "plugin CPU per QueryData call (us)" "${Q_CPU_US:-n/a}" "${F_CPU_US:-n/a}" "<= 60 us" "$(verdict "$Q_CPU_US" '<=' 60)"
row "  refbackend CPU/call (us): via, direct" "${QR_CPU_US:-n/a}" "${R_CPU_US:-n/a}" "-" "info"
row "  CPU busy: plugin | refbk via/direct" "${Q_BUSY:-n/a}" "${QR_BUSY:-n/a}/${R_BUSY:-n/a}" "-" "info"
row "64 in flight (${PACE_INFLIGHT:-?} avg), 20 ms: p50 (us)" "${O_P50:-n/a}" "${OD_P50:-n/a}" "added ${OA_P50:-?} us / < 100" "$(verdict "$OA_P50" '<=' 99.999)"
row "64 in flight, 20 ms: p99 (us)" "${O_P99:-n/a}" "${OD_P99:-n/a}" "added ${OA_P99:-?} us" "info"
row "  zero-work relay instead: p50 (us)" "${OX_P50:-n/a}" "${OD_P50:-n/a}" "added ${OXA_P50:-?} us (floor)" "info"
row "  zero-work relay instead: p99 (us)" "${OX_P99:-n/a}" "${OD_P99:-n/a}" "added ${OXA_P99:-?} us (floor)" "info"
row "64 in lockstep, 20 ms: p50 (us)" "${L_P50:-n/a}" "${D_P50:-n/a}" "added ${A_P50:-?} us" "info"
row "64 in lockstep, 20 ms: p99 (us)" "${L_P99:-n/a}" "${D_P99:-n/a}" "added ${A_P99:-?} us" "info"
row "one call at a time, points:100: p50 (us)" "${S_P50:-n/a}" "${S_DP50:-n/a}" "added ${S_A50:-?} us" "info"
row "alert storm 1000 x 4 (50 ms): total (s)" "${ST_TOTAL:-n/a}" "3.15 (ideal)" "${ST_RATIO:-?}x / <= 1.05x" "$(verdict "$ST_RATIO" '<=' 1.05)"
row "  calls failed (of 1000)" "${ST_FAIL:-n/a}" "-" "0" "$ST_FAIL_OK"
row "  client submit time for 1000 calls (s)" "${ST_SUBMIT:-n/a}" "-" "client overhead" "info"
row "  plugin VmHWM after the storm" "$(mib "${ST_HWM:-}")" "$(mib "${ST_BEFORE:-}")" "<= 16 MiB" "$(verdict "${ST_HWM:-}" '<=' 16384)"
echo
echo "Notes: floor 1 is the refbackend alone answering the exact /query body the plugin sends (captured);"
echo "through the plugin the same refbackend also does that work on the same CPUs, so floor 1 bounds the"
echo "plugin path from above. Latency rows: 'added' = plugin percentile - direct percentile (the direct"
echo "one holds the 20 ms and the backend's own time). '64 in flight': bench_pace, Poisson arrivals at"
echo "3200 calls/s (x 20 ms = 64 in flight on average), the same schedule and client code for both columns"
echo "(plugin: gRPC on one h2 connection; direct: up to 256 keep-alive HTTP/1.1 connections), median of 3"
echo "rounds of 9600 calls. 'Zero-work relay': the direct requests through bench_relay, a libuv byte relay"
echo "between client and refbackend (no parsing): what putting any process in the path costs on this"
echo "machine, the floor under the plugin's added latency. '64 in lockstep': h2load -m 64 (direct: -c 64), 1344 calls; all 64 answers"
echo "arrive in the same instant, so the added time is mostly waiting behind the other 63 calls' work on"
echo "one loop (a burst, not a steady load). Storm: python grpcio futures on one channel (the submit"
echo "row is client time), FromAlert=true in the request headers, maxConnections 64, maxConcurrentQueries 4;"
echo "baseline VmHWM = the fresh process before the storm. CPU row baseline: bench_floor per CheckHealth."

if [ "$MISSING" != 0 ]; then
  echo "bench: some measurements could not be taken (see above)" >&2
  exit 1
fi
exit 0
