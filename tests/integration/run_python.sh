#!/bin/sh
# Runs the Python integration suite against the plugin binary.
#   PLUGIN_BIN  binary to test (default: <repo>/dist/gpx_inhouse_linux_amd64)
# Extra arguments are passed to pytest (e.g. -k deadline, -x).
# Needs the Debian packages listed in tests/integration/DEBIAN_PACKAGES; this
# script installs nothing, it only checks that they are importable.
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
PY=/usr/bin/python3   # the python3 first on PATH may lack grpc

if ! "$PY" -c 'import grpc, google.protobuf, h2, hpack, hyperframe, pytest' 2>/dev/null; then
    echo "run_python.sh: missing Python modules; install: $(tr '\n' ' ' < "$here/DEBIAN_PACKAGES")" >&2
    "$PY" -c 'import grpc, google.protobuf, h2, hpack, hyperframe, pytest' >&2
    exit 2
fi
if ! command -v protoc >/dev/null 2>&1; then
    echo "run_python.sh: protoc not found (Debian package protobuf-compiler)" >&2
    exit 2
fi

: "${PLUGIN_BIN:=$repo/dist/gpx_inhouse_linux_amd64}"
case "$PLUGIN_BIN" in
    /*) ;;
    *) PLUGIN_BIN="$(pwd)/$PLUGIN_BIN" ;;
esac
export PLUGIN_BIN
if [ ! -x "$PLUGIN_BIN" ]; then
    echo "run_python.sh: plugin binary $PLUGIN_BIN not found or not executable" >&2
    exit 2
fi

cd "$repo" || exit 2
"$PY" -m pytest -q -p no:cacheprovider tests/integration "$@"
exit $?
