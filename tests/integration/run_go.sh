#!/bin/sh
# Go integration test: HashiCorp go-plugin (the library Grafana uses to spawn
# backend plugins) hosts the plugin binary and calls it over gRPC.
#
# Offline, GOPATH mode, Debian 12 packages only (golang-go, golang-github-
# hashicorp-go-plugin-dev, golang-google-grpc-dev, golang-google-protobuf-dev,
# golang-github-golang-protobuf-1-5-dev, protoc-gen-go, protoc-gen-go-grpc,
# protobuf-compiler). Go stubs are generated from proto/*.proto at test time
# into build/gopath (git-ignored); nothing generated is committed.
#
#   PLUGIN_BIN   plugin binary (default <repo>/dist/gpx_inhouse_linux_amd64)
#   GOHOST_RUN   optional -run regexp passed to go test
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build="$repo/build/gopath"
gen="$build/src/hosttest"

: "${PLUGIN_BIN:=$repo/dist/gpx_inhouse_linux_amd64}"
case "$PLUGIN_BIN" in /*) ;; *) PLUGIN_BIN="$(pwd)/$PLUGIN_BIN" ;; esac
export PLUGIN_BIN

for tool in go protoc protoc-gen-go protoc-gen-go-grpc; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "run_go.sh: '$tool' not found (apt-get install golang-go protobuf-compiler protoc-gen-go protoc-gen-go-grpc golang-github-hashicorp-go-plugin-dev golang-google-grpc-dev golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev)" >&2
        exit 2
    fi
done
if [ ! -d /usr/share/gocode/src/github.com/hashicorp/go-plugin ]; then
    echo "run_go.sh: go-plugin sources missing (apt-get install golang-github-hashicorp-go-plugin-dev)" >&2
    exit 2
fi

# Offline GOPATH-mode build; no go.mod anywhere near the test.
export GO111MODULE=off GOPROXY=off GOFLAGS= GOPATH="$build:/usr/share/gocode"
# A usable build cache even without HOME (go reports GOCACHE=off then).
case "$(go env GOCACHE 2>/dev/null)" in
    ""|off) export GOCACHE="$repo/build/gocache" ;;
esac

# Regenerate stubs from the project's own .proto files.
rm -rf "$gen/pluginv2" "$gen/goplugin" "$gen/health"
mkdir -p "$gen/pluginv2" "$gen/goplugin" "$gen/health"
M="Mpluginv2.proto=hosttest/pluginv2,Mgoplugin.proto=hosttest/goplugin,Mhealth.proto=hosttest/health"
for p in pluginv2 goplugin health; do
    protoc -I "$repo/proto" \
        --go_out="$build/src" --go_opt="$M" \
        --go-grpc_out="$build/src" --go-grpc_opt="$M" \
        "$repo/proto/$p.proto"
done

# goplugin.proto and health.proto declare the same protobuf full names
# (plugin.Empty, plugin.ConnInfo, grpc.health.v1.*) that go-plugin's internal
# stubs and grpc's health package already register; the wire format is the
# same, so tell the protobuf registry to tolerate the duplicate names.
ldflags="-X google.golang.org/protobuf/reflect/protoregistry.conflictPolicy=ignore"

cd "$here/gohost"
set +e
# stdin from /dev/null: go-plugin hands the host's stdin to the plugin.
go test -v -count=1 -timeout 100s -ldflags "$ldflags" ${GOHOST_RUN:+-run "$GOHOST_RUN"} . </dev/null
rc=$?
set -e
exit $rc
