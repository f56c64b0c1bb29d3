#!/usr/bin/python3
"""Spawns the plugin exactly as Grafana does and calls it once per service.

Used by `make run` until the C CLI host and reference backend exist: it shows
the handshake, health, a multi-query QueryData, metrics and a clean Shutdown.
"""
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_protos(out_dir):
    proto_dir = os.path.join(ROOT, "proto")
    files = [os.path.join(proto_dir, f) for f in ("pluginv2.proto", "goplugin.proto", "health.proto")]
    subprocess.run(["protoc", "--python_out=" + out_dir, "-I", proto_dir] + files, check=True)
    sys.path.insert(0, out_dir)
    import goplugin_pb2, health_pb2, pluginv2_pb2  # noqa: E402
    return pluginv2_pb2, goplugin_pb2, health_pb2


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "dist", "gpx_inhouse_linux_amd64")
    import grpc

    with tempfile.TemporaryDirectory(prefix="gpx-demo-") as tmp:
        pb, gp, hpb = load_protos(tmp)
        env = dict(os.environ, grafana_plugin_type="datasource", PLUGIN_PROTOCOL_VERSIONS="2",
                   PLUGIN_UNIX_SOCKET_DIR=tmp)
        t0 = time.perf_counter()
        proc = subprocess.Popen([binary], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = proc.stdout.readline().decode()
        print(f"handshake ({(time.perf_counter() - t0) * 1000:.1f} ms): {line.strip()}")
        parts = line.strip().split("|")
        if len(parts) < 5:
            print("plugin did not start:", proc.stderr.read().decode(), file=sys.stderr)
            return 1
        channel = grpc.insecure_channel("unix:" + parts[3])

        def unary(path, req, resp_type):
            return channel.unary_unary(path, request_serializer=lambda m: m.SerializeToString(),
                                       response_deserializer=resp_type.FromString)(req, timeout=5)

        def ctx(url):
            return pb.PluginContext(pluginId="seed-inhouse-datasource",
                                    dataSourceInstanceSettings=pb.DataSourceInstanceSettings(uid="demo", url=url))

        for url in ("", "http://127.0.0.1:8080"):
            h = unary("/pluginv2.Diagnostics/CheckHealth", pb.CheckHealthRequest(pluginContext=ctx(url)),
                      pb.CheckHealthResponse)
            status = pb.CheckHealthResponse.HealthStatus.Name(h.status)
            print(f"CheckHealth url={url!r}: {status}: {h.message} {h.jsonDetails.decode()}")

        q = pb.QueryDataRequest(pluginContext=ctx(""), queries=[
            pb.DataQuery(refId="A", json=b'{"target":"sine:3"}'),
            pb.DataQuery(refId="B", json=b'{"target":"table:10"}')])
        r = unary("/pluginv2.Data/QueryData", q, pb.QueryDataResponse)
        for ref, resp in sorted(r.responses.items()):
            print(f"QueryData {ref}: status {resp.status} {resp.errorSource}: {resp.error} "
                  f"({len(resp.frames)} frames)")

        m = unary("/pluginv2.Diagnostics/CollectMetrics", pb.CollectMetricsRequest(), pb.CollectMetricsResponse)
        for sample in m.metrics.prometheus.decode().splitlines():
            if sample.startswith(("process_resident", "process_open_fds", "plugin_h2_connections_active")):
                print("metric", sample)

        t1 = time.perf_counter()
        unary("/plugin.GRPCController/Shutdown", gp.Empty(), gp.Empty)
        code = proc.wait(5)
        print(f"Shutdown: exit {code} after {(time.perf_counter() - t1) * 1000:.1f} ms; "
              f"socket removed: {not os.path.exists(parts[3])}")
        print("plugin log (stderr):")
        for log_line in proc.stderr.read().decode().splitlines():
            print("  " + log_line)
        return code


if __name__ == "__main__":
    sys.exit(main())
