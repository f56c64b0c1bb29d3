#!/usr/bin/env bash
# Arrow checks judged by apache-arrow (npm): the SDK's golden frame, re-encoded
# from its JSON form by our writer, must decode to the same content; our JSON
# writer must reproduce the golden JSON exactly.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
conv="${FRAME_CONVERT:?set FRAME_CONVERT to the frame_convert binary}"
golden="${TESTDATA_DIR:-$here/../../../shared/testdata}"
[ -d "$here/node_modules/apache-arrow" ] || (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
check() { # name, command...
  local name="$1"; shift
  if out="$("$@" 2>&1)"; then pass=$((pass+1)); echo "ok   $name: ${out##*$'\n'}"
  else fail=$((fail+1)); echo "FAIL $name"; echo "$out" | sed 's/^/     /'; fi
}
check "golden frame: our Arrow decodes like the SDK's" \
  bash -c "'$conv' arrow '$golden/all_types.golden.json' '$tmp/ours.arrow' && cd '$here' && node compare.mjs '$golden/all_types.golden.arrow' '$tmp/ours.arrow'"
check "golden frame: our JSON equals the SDK's" \
  bash -c "'$conv' json '$golden/all_types.golden.json' '$tmp/ours.json' && /usr/bin/python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); b=json.load(open(sys.argv[2])); sys.exit(0 if a==b else \"JSON frames differ\")' '$golden/all_types.golden.json' '$tmp/ours.json' && echo identical"
check "round trips: every type x nullable x 0/1/many rows" \
  bash -c "cd '$here' && node roundtrip.mjs '$conv' '$tmp'"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
