"""Deadlines, cancellation, request size cap: the gRPC transport rows of
docs/behaviour.md, observed through a real gRPC client and the plugin's own
metrics."""

import threading
import time

import grpc
import pytest

import pluginproc as pp


def _poll_metric(client, pred, timeout=5.0):
    """Poll CollectMetrics until pred(samples) is true; returns (ok, text)."""
    deadline = time.monotonic() + timeout
    text = ""
    while True:
        text = client.metrics_text()
        samples, _ = pp.parse_prometheus(text)
        if pred(samples):
            return True, text
        if time.monotonic() > deadline:
            return False, text
        time.sleep(0.1)


# ---------------------------------------------------------------- deadlines

def test_deadline_exceeded_stream_stdio(plugin, client):
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as ei:
        list(client.stream_stdio(client.gp.Empty(), timeout=0.3))
    assert ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - t0 < 3
    # the process keeps serving
    assert plugin.alive()
    assert client.health_check(client.hl.HealthCheckRequest(service="plugin"), timeout=5).status == 1
    assert client.check_health(pp.check_health_request(), timeout=5).status == 2

    # The grpc client cancels locally at its deadline, racing the server's own
    # timer; a raw HTTP/2 stream that never cancels shows the server's answer.
    h = pp.H2Client(plugin.socket_path)
    assert h.handshake()
    t0 = time.monotonic()
    sid = h.start_call("/plugin.GRPCStdio/StreamStdio", timeout="300m")
    h.send(sid, pp.grpc_frame(b""), end_stream=True)
    st = h.wait(sid, 5)
    elapsed = time.monotonic() - t0
    assert st.done, "the server did not end the stream at its grpc-timeout"
    assert st.reset is None, "expected trailers, got RST_STREAM %r" % st.reset
    assert st.grpc_status() == pp.DEADLINE_EXCEEDED, st.header_blocks
    assert 0.2 <= elapsed < 2.5, "deadline fired after %.2fs for grpc-timeout 300m" % elapsed
    h.close()

    ok, text = _poll_metric(client, lambda s: pp.handled_count(s, "StreamStdio", "DeadlineExceeded",
                                                               "plugin.GRPCStdio") >= 1)
    assert ok, "no grpc_server_handled_total{grpc_method=\"StreamStdio\",grpc_code=\"DeadlineExceeded\"}:\n" + text
    # the expired handlers are gone (only the CollectMetrics call itself may count)
    ok, text = _poll_metric(client, lambda s: (pp.metric_values(s, "plugin_grpc_calls_in_flight") or [99])[0] <= 1)
    assert ok, "calls still in flight after their deadline:\n" + text
    assert plugin.alive()


@pytest.mark.parametrize("timeout,ok_by", [("200m", 1.5), ("250000u", 1.5), ("1S", 2.5), ("99999999n", 1.5)])
def test_grpc_timeout_units(plugin, timeout, ok_by):
    h = pp.H2Client(plugin.socket_path)
    assert h.handshake()
    t0 = time.monotonic()
    sid = h.start_call("/plugin.GRPCStdio/StreamStdio", timeout=timeout)
    h.send(sid, pp.grpc_frame(b""), end_stream=True)
    st = h.wait(sid, 5)
    elapsed = time.monotonic() - t0
    assert st.done and st.grpc_status() == pp.DEADLINE_EXCEEDED, (timeout, st.header_blocks, st.reset)
    assert elapsed < ok_by, "grpc-timeout %s fired after %.2fs" % (timeout, elapsed)
    h.close()


def test_deadline_expiry_is_logged(spawn):
    p = spawn({"GF_PLUGIN_LOG_LEVEL": "debug"})
    h = pp.H2Client(p.socket_path)
    assert h.handshake()
    before = len(p.stderr_snapshot())
    sid = h.start_call("/plugin.GRPCStdio/StreamStdio", timeout="200m")
    h.send(sid, pp.grpc_frame(b""), end_stream=True)
    st = h.wait(sid, 5)
    assert st.grpc_status() == pp.DEADLINE_EXCEEDED
    h.close()
    deadline = time.monotonic() + 3
    found = []
    while time.monotonic() < deadline and not found:
        found = [l for l in p.stderr_snapshot()[before:] if "deadline" in l.lower()]
        time.sleep(0.1)
    assert found, "no stderr line mentions the deadline:\n" + "\n".join(p.stderr_snapshot()[before:])


def test_deadline_does_not_affect_calls_without_one(client):
    futures = [client.query_data.future(pp.query_data_request(("A",)), timeout=10) for _ in range(5)]
    with pytest.raises(grpc.RpcError):
        list(client.stream_stdio(client.gp.Empty(), timeout=0.2))
    for f in futures:
        assert set(f.result().responses) == {"A"}


# ---------------------------------------------------------------- cancellation

def test_client_cancel_one_stream_others_unaffected(plugin, client):
    calls = [client.stream_stdio(client.gp.Empty()) for _ in range(3)]
    ends = {}

    def consume(i, call):
        try:
            for _ in call:
                pass
            ends[i] = grpc.StatusCode.OK
        except grpc.RpcError as e:
            ends[i] = e.code()

    threads = [threading.Thread(target=consume, args=(i, c), daemon=True) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    assert not ends, "a StreamStdio ended early: %r" % ends
    calls[1].cancel()
    threads[1].join(5)
    assert ends.get(1) == grpc.StatusCode.CANCELLED
    time.sleep(0.3)
    assert 0 not in ends and 2 not in ends, "cancelling one stream ended others: %r" % ends
    assert calls[0].is_active() and calls[2].is_active()
    # unary calls on the same connection still complete
    r = client.query_data(pp.query_data_request(("A", "B")), timeout=5)
    assert set(r.responses) == {"A", "B"}
    assert client.check_health(pp.check_health_request(), timeout=5).status == 2

    ok, text = _poll_metric(client, lambda s: pp.handled_count(s, "StreamStdio", "Canceled",
                                                               "plugin.GRPCStdio") >= 1)
    assert ok, "no grpc_code=\"Canceled\" for StreamStdio:\n" + text
    samples, _ = pp.parse_prometheus(text)
    assert pp.handled_count(samples, "StreamStdio", "Canceled", "plugin.GRPCStdio") == 1, text
    inflight = pp.metric_values(samples, "plugin_grpc_calls_in_flight")
    assert inflight and inflight[0] >= 2, "two StreamStdio calls are still in flight:\n" + text
    assert not ends.get(0) and not ends.get(2)
    for c in (calls[0], calls[2]):
        c.cancel()
    for t in threads:
        t.join(5)
    ok, text = _poll_metric(client, lambda s: pp.handled_count(s, "StreamStdio", "Canceled",
                                                               "plugin.GRPCStdio") >= 3
                            and (pp.metric_values(s, "plugin_grpc_calls_in_flight") or [99])[0] <= 1)
    assert ok, "cancelled calls not counted or still in flight:\n" + text


def test_cancel_bidi_start_stream(client):
    stop = threading.Event()

    def reqs():
        stop.wait()
        return
        yield  # pragma: no cover

    call = client.start_stream(reqs())
    time.sleep(0.3)
    assert call.is_active()
    call.cancel()
    stop.set()
    with pytest.raises(grpc.RpcError) as ei:
        list(call)
    assert ei.value.code() == grpc.StatusCode.CANCELLED
    ok, text = _poll_metric(client, lambda s: pp.handled_count(s, "StartStream", "Canceled",
                                                               "plugin.GRPCBroker") >= 1)
    assert ok, text
    assert client.health_check(client.hl.HealthCheckRequest(), timeout=5).status == 1


def test_many_streams_cancelled_then_connection_closed(plugin):
    c = pp.Grpc(plugin.target)
    c.wait_ready()
    calls = [c.stream_stdio(c.gp.Empty()) for _ in range(50)]
    time.sleep(0.3)
    for call in calls[:25]:
        call.cancel()
    c.close()  # the rest die with the connection
    other = pp.Grpc(plugin.target)
    other.wait_ready()
    ok, text = _poll_metric(other, lambda s: (pp.metric_values(s, "plugin_grpc_calls_in_flight") or [99])[0] <= 1
                            and (pp.metric_values(s, "plugin_h2_connections_active") or [99])[0] == 1)
    assert ok, "calls/connections not released after the client went away:\n" + text
    other.close()


# ---------------------------------------------------------------- size cap

def _padded_query(total_bytes):
    pad = "x" * total_bytes
    req = pp.query_data_request(("A",), json_extra={"payload": {"pad": pad}})
    return req


def test_request_size_cap(spawn):
    p = spawn({"GF_PLUGIN_MAX_REQUEST_BYTES": "1048576"})
    c = pp.Grpc(p.target)
    c.wait_ready()
    req = _padded_query(2 * 1024 * 1024)
    size = req.ByteSize()
    assert size > 2 * 1024 * 1024
    with pytest.raises(grpc.RpcError) as ei:
        c.query_data(req, timeout=20)
    assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (ei.value.code(), ei.value.details())
    msg = ei.value.details()
    assert "GF_PLUGIN_MAX_REQUEST_BYTES" in msg, msg
    assert "1048576" in msg, "message should name the cap: %r" % msg
    assert str(size) in msg, "message should name the size %d: %r" % (size, msg)
    # under the cap still works, on the same channel
    small = _padded_query(900 * 1024)
    assert small.ByteSize() < 1048576
    r = c.query_data(small, timeout=20)
    assert r.responses["A"].status == 400
    assert c.health_check(c.hl.HealthCheckRequest(), timeout=5).status == 1
    c.close()


def test_request_20mib_accepted_by_default(client):
    req = _padded_query(20 * 1024 * 1024)
    assert req.ByteSize() > 20 * 1024 * 1024
    r = client.query_data(req, timeout=60)
    assert set(r.responses) == {"A"}
    assert r.responses["A"].status == 400
    assert "no backend configured" in r.responses["A"].error


def test_request_over_default_cap(client):
    req = _padded_query(64 * 1024 * 1024 + 1024)
    size = req.ByteSize()
    assert size > 67108864
    with pytest.raises(grpc.RpcError) as ei:
        client.query_data(req, timeout=60)
    assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (ei.value.code(), ei.value.details())
    assert "67108864" in ei.value.details() and "GF_PLUGIN_MAX_REQUEST_BYTES" in ei.value.details()
    assert client.health_check(client.hl.HealthCheckRequest(), timeout=5).status == 1


# ---------------------------------------------------------------- concurrency

def test_many_concurrent_unary_calls_on_several_connections(plugin):
    chans = [pp.Grpc(plugin.target) for _ in range(4)]
    for c in chans:
        c.wait_ready()
    futures = []
    for i in range(200):
        c = chans[i % len(chans)]
        if i % 2:
            futures.append(("q", i, c.query_data.future(pp.query_data_request(("R%d" % i,)), timeout=20)))
        else:
            futures.append(("h", i, c.check_health.future(pp.check_health_request(), timeout=20)))
    for kind, i, f in futures:
        r = f.result()
        if kind == "q":
            assert set(r.responses) == {"R%d" % i}
        else:
            assert r.status == 2
    for c in chans:
        c.close()
