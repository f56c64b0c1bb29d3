"""The gRPC method table of docs/behaviour.md, one method at a time."""

import json
import queue
import threading
import time

import grpc
import pytest

import pluginproc as pp


# ---------------------------------------------------------------- grpc.health.v1

@pytest.mark.parametrize("service", ["", "plugin"])
def test_health_check_serving(sclient, service):
    resp = sclient.health_check(sclient.hl.HealthCheckRequest(service=service), timeout=5)
    assert resp.status == sclient.hl.HealthCheckResponse.SERVING


@pytest.mark.parametrize("service", ["other", "pluginv2.Data", "Plugin"])
def test_health_check_unknown_service(sclient, service):
    with pytest.raises(grpc.RpcError) as ei:
        sclient.health_check(sclient.hl.HealthCheckRequest(service=service), timeout=5)
    assert ei.value.code() == grpc.StatusCode.NOT_FOUND
    assert ei.value.details() == "unknown service"


# ---------------------------------------------------------------- Diagnostics

@pytest.mark.parametrize("with_ds", [True, False], ids=["empty-url", "no-settings"])
def test_check_health_without_url(sclient, with_ds):
    resp = sclient.check_health(pp.check_health_request(with_ds=with_ds), timeout=5)
    assert resp.status == sclient.v2.CheckHealthResponse.ERROR
    assert "url" in resp.message.lower(), "message should name the missing URL: %r" % resp.message
    details = json.loads(resp.jsonDetails.decode("utf-8"))
    assert isinstance(details, dict), "jsonDetails must be a JSON object, got %r" % resp.jsonDetails


REQUIRED_METRICS = [
    "process_cpu_seconds_total", "process_resident_memory_bytes", "process_virtual_memory_bytes",
    "process_open_fds", "process_max_fds", "process_start_time_seconds",
    "grpc_server_started_total", "grpc_server_handled_total",
    "plugin_h2_connections_active", "plugin_grpc_calls_in_flight",
]


def test_collect_metrics_prometheus_text(plugin, client):
    client.check_health(pp.check_health_request(), timeout=5)
    client.query_data(pp.query_data_request(("A",)), timeout=5)
    stdio = client.stream_stdio(client.gp.Empty())
    second = pp.Grpc(plugin.target)
    second.wait_ready()
    try:
        time.sleep(0.2)
        text = client.metrics_text()
        assert text.endswith("\n"), "exposition must be newline-terminated"
        samples, types = pp.parse_prometheus(text)
        names = {n for n, _, _ in samples}
        missing = [m for m in REQUIRED_METRICS if m not in names]
        assert not missing, "missing metrics %r in:\n%s" % (missing, text)

        def one(name):
            vals = pp.metric_values(samples, name)
            assert len(vals) == 1, "%s: %r" % (name, vals)
            return vals[0]

        now = time.time()
        assert 0 <= one("process_cpu_seconds_total") < 600
        rss = one("process_resident_memory_bytes")
        assert 1 << 20 < rss < 8 << 30
        assert one("process_virtual_memory_bytes") >= rss
        fds = one("process_open_fds")
        assert 3 <= fds <= one("process_max_fds")
        start = one("process_start_time_seconds")
        assert now - 600 < start <= now + 2, "process_start_time_seconds %r vs now %r" % (start, now)
        assert one("plugin_h2_connections_active") >= 2, "two connections are open"
        assert one("plugin_grpc_calls_in_flight") >= 1, "StreamStdio is in flight"
        for name, kind in (("process_cpu_seconds_total", "counter"), ("process_open_fds", "gauge"),
                           ("grpc_server_started_total", "counter"), ("grpc_server_handled_total", "counter"),
                           ("plugin_h2_connections_active", "gauge"), ("plugin_grpc_calls_in_flight", "gauge")):
            if name in types:
                assert types[name] == kind, "# TYPE %s %s" % (name, types[name])
        for n, labels, v in samples:
            if n == "grpc_server_started_total":
                assert {"grpc_service", "grpc_method"} <= set(labels), labels
            if n == "grpc_server_handled_total":
                assert {"grpc_service", "grpc_method", "grpc_code"} <= set(labels), labels
        assert pp.handled_count(samples, "CheckHealth", "OK", "pluginv2.Diagnostics") >= 1, text
        assert pp.handled_count(samples, "QueryData", "OK", "pluginv2.Data") >= 1, text
        started = [v for n, l, v in samples if n == "grpc_server_started_total"
                   and l.get("grpc_method") == "StreamStdio"]
        assert sum(started) >= 1, "StreamStdio not counted as started:\n" + text
    finally:
        stdio.cancel()
        second.close()


# ---------------------------------------------------------------- Data

@pytest.mark.parametrize("with_ds", [True, False], ids=["empty-url", "no-settings"])
def test_query_data_without_url_one_response_per_refid(sclient, with_ds):
    refids = ("A", "B", "C", "query-with-long-ref-id")
    resp = sclient.query_data(pp.query_data_request(refids, with_ds=with_ds), timeout=5)
    assert set(resp.responses) == set(refids)
    for r in refids:
        d = resp.responses[r]
        assert d.status == 400, (r, d)
        assert "no backend configured" in d.error, (r, d.error)
        assert d.errorSource == "plugin", (r, d.errorSource)
        assert len(d.frames) == 0


def test_query_data_zero_queries(sclient):
    resp = sclient.query_data(pp.query_data_request(()), timeout=5)
    assert len(resp.responses) == 0


def test_query_data_concurrent_calls(sclient):
    futures = [sclient.query_data.future(pp.query_data_request(("R%d" % i,)), timeout=10) for i in range(50)]
    for i, f in enumerate(futures):
        r = f.result()
        assert set(r.responses) == {"R%d" % i}


# ---------------------------------------------------------------- Resource

KNOWN_PATHS = ["metrics", "metric-payload-options", "variable", "tag-keys", "tag-values", "search"]


def _resource(client, path, method, body=b""):
    req = client.v2.CallResourceRequest(pluginContext=pp.plugin_context(), path=path, method=method,
                                        url=path, body=body)
    req.headers["Content-Type"].values.append("application/json")
    msgs = list(client.call_resource(req, timeout=5))
    assert len(msgs) == 1, "CallResource must answer with exactly one message, got %d" % len(msgs)
    return msgs[0]


def _header(msg, name):
    for k, v in msg.headers.items():
        if k.lower() == name.lower():
            return list(v.values)
    return None


def _json_error(msg):
    body = json.loads(msg.body.decode("utf-8"))
    assert isinstance(body, dict) and isinstance(body.get("error"), str), body
    return body["error"]


@pytest.mark.parametrize("path,method", [("nope", "GET"), ("nope", "POST"), ("metrics/extra", "POST"),
                                         ("", "GET"), ("api/v1/query", "POST")])
def test_call_resource_unknown_path_404(sclient, path, method):
    msg = _resource(sclient, path, method)
    assert msg.code == 404
    _json_error(msg)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", KNOWN_PATHS)
def test_call_resource_wrong_method_405(sclient, path, method):
    msg = _resource(sclient, path, method)
    assert msg.code == 405
    assert _header(msg, "Allow") == ["POST"], dict(msg.headers)


@pytest.mark.parametrize("path", KNOWN_PATHS)
def test_call_resource_without_url_400(sclient, path):
    msg = _resource(sclient, path, "POST", b'{"target": "x"}')
    assert msg.code == 400
    assert "no backend configured" in _json_error(msg)


# ---------------------------------------------------------------- go-plugin infrastructure

def test_stream_stdio_held_open(client):
    call = client.stream_stdio(client.gp.Empty())
    got = queue.Queue()

    def consume():
        try:
            for m in call:
                got.put(("msg", m))
            got.put(("end", grpc.StatusCode.OK))
        except grpc.RpcError as e:
            got.put(("end", e.code()))

    md = {}
    t_md = threading.Thread(target=lambda: md.setdefault("v", call.initial_metadata()), daemon=True)
    t_md.start()
    t_md.join(3)
    assert "v" in md, "no response headers for StreamStdio"
    threading.Thread(target=consume, daemon=True).start()
    time.sleep(0.7)
    assert got.empty(), "StreamStdio must send no messages and stay open, got %r" % (got.get(),)
    assert call.is_active()
    # the connection keeps serving other calls meanwhile
    client.check_health(pp.check_health_request(), timeout=5)
    call.cancel()
    kind, code = got.get(timeout=5)
    assert kind == "end" and code == grpc.StatusCode.CANCELLED


def test_start_stream_held_open_then_ok_on_half_close(client):
    outq = queue.Queue()

    def requests():
        while True:
            item = outq.get()
            if item is None:
                return
            yield item

    call = client.start_stream(requests())
    outq.put(client.gp.ConnInfo(service_id=1, network="unix", address="/tmp/nothing",
                                knock=client.gp.ConnInfo.Knock(knock=True)))
    got = queue.Queue()

    def consume():
        try:
            for m in call:
                got.put(("msg", m))
            got.put(("end", call.code()))
        except grpc.RpcError as e:
            got.put(("end", e.code()))

    threading.Thread(target=consume, daemon=True).start()
    time.sleep(0.7)
    assert got.empty(), "StartStream ended or answered early: %r" % (got.get(),)
    outq.put(client.gp.ConnInfo(service_id=2))
    time.sleep(0.2)
    assert got.empty()
    outq.put(None)  # half-close
    kind, code = got.get(timeout=5)
    assert kind == "end", "StartStream sent a message: %r" % (code,)
    assert code == grpc.StatusCode.OK


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("path,message", [
    ("/pluginv2.Nope/Foo", "unknown service pluginv2.Nope"),
    ("/pluginv2.Stream/SubscribeStream", "unknown service pluginv2.Stream"),
    ("/pluginv2.AdmissionControl/ValidateAdmission", "unknown service pluginv2.AdmissionControl"),
    ("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
     "unknown service grpc.reflection.v1.ServerReflection"),
    ("/pluginv2.Data/Nope", "unknown method Nope for service pluginv2.Data"),
    ("/pluginv2.Data/QueryChunkedData", "unknown method QueryChunkedData for service pluginv2.Data"),
    ("/pluginv2.Diagnostics/Foo", "unknown method Foo for service pluginv2.Diagnostics"),
    ("/plugin.GRPCController/Restart", "unknown method Restart for service plugin.GRPCController"),
    ("/grpc.health.v1.Health/Watch", "unknown method Watch for service grpc.health.v1.Health"),
])
@pytest.mark.parametrize("kind", ["unary", "stream"])
def test_unimplemented(sclient, path, message, kind):
    with pytest.raises(grpc.RpcError) as ei:
        if kind == "unary":
            sclient.raw_unary(path)(b"", timeout=5)
        else:
            list(sclient.raw_stream(path)(b"", timeout=5))
    assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert ei.value.details() == message


def test_query_chunked_data_unimplemented_with_real_request(sclient):
    req = pp.query_data_request(("A",))
    call = sclient.raw_stream("/pluginv2.Data/QueryChunkedData")
    with pytest.raises(grpc.RpcError) as ei:
        list(call(req.SerializeToString(), timeout=5))
    assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert ei.value.details() == "unknown method QueryChunkedData for service pluginv2.Data"


BAD_PROTOBUF = [b"\x0a\x05ab", b"\xff\xff\xff", b"\x0a\xff\xff\xff\xff\x0f", b"\x07"]


@pytest.mark.parametrize("bad", BAD_PROTOBUF, ids=["truncated-len", "truncated-varint", "huge-len", "bad-wiretype"])
@pytest.mark.parametrize("path,typename,kind", [
    ("/pluginv2.Data/QueryData", "QueryDataRequest", "unary"),
    ("/pluginv2.Diagnostics/CheckHealth", "CheckHealthRequest", "unary"),
    ("/pluginv2.Diagnostics/CollectMetrics", "CollectMetricsRequest", "unary"),
    ("/pluginv2.Resource/CallResource", "CallResourceRequest", "stream"),
    ("/grpc.health.v1.Health/Check", "HealthCheckRequest", "unary"),
])
def test_undecodable_request_is_internal(sclient, bad, path, typename, kind):
    with pytest.raises(grpc.RpcError) as ei:
        if kind == "unary":
            sclient.raw_unary(path)(bad, timeout=5)
        else:
            list(sclient.raw_stream(path)(bad, timeout=5))
    assert ei.value.code() == grpc.StatusCode.INTERNAL, (ei.value.code(), ei.value.details())
    assert typename in ei.value.details(), "message should name %s: %r" % (typename, ei.value.details())
    # the connection and the process survive
    assert sclient.health_check(sclient.hl.HealthCheckRequest(), timeout=5).status == 1


def test_unknown_fields_are_skipped(sclient):
    # a newer host may send fields this plugin does not know
    req = pp.check_health_request().SerializeToString() + b"\xa2\x06\x03abc" + b"\xf8\x06\x01"
    raw = sclient.raw_unary("/pluginv2.Diagnostics/CheckHealth")(req, timeout=5)
    resp = sclient.v2.CheckHealthResponse.FromString(raw)
    assert resp.status == sclient.v2.CheckHealthResponse.ERROR
