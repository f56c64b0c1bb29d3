#!/usr/bin/env bash
# `make run`: the reference backend on a free loopback port, then the CLI host
# spawning the plugin exactly as Grafana does: health check, then a
# multi-query (series, table, data frame) shown as tables.
set -euo pipefail
plugin="${1:?plugin binary}" ; refbackend="${2:?refbackend binary}" ; host="${3:?gpxhost binary}"
out="$(mktemp)"
"$refbackend" --listen 127.0.0.1:0 >"$out" 2>/dev/null &
rb=$!
trap 'kill "$rb" 2>/dev/null; wait "$rb" 2>/dev/null; rm -f "$out"' EXIT
for _ in $(seq 100); do grep -q '^listening ' "$out" && break; sleep 0.05; done
addr="$(awk '/^listening /{print $2}' "$out")"
[ -n "$addr" ] || { echo "the reference backend did not start" >&2; exit 1; }
url="http://$addr"
echo "== reference backend on $url"
echo "== gpxhost health --url $url"
"$host" health --plugin "$plugin" --url "$url"
echo
echo "== gpxhost query --url $url --target sine:2 --target table:4 --target frame:3 --from now-5m --interval 1m"
"$host" query --plugin "$plugin" --url "$url" --target sine:2 --target table:4 --target frame:3 \
  --from now-5m --to now --interval 1m
