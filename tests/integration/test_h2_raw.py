"""Raw HTTP/2 tests with the h2 library over the plugin's unix socket: framing
errors, odd framing that must still work, stream limits and a client that
never reads."""

import gzip
import os
import select
import socket
import threading
import time

import pytest

import pluginproc as pp

from h2.exceptions import TooManyStreamsError, FlowControlError
from h2.connection import H2Connection
from h2.settings import SettingCodes

REFUSED_STREAM = 0x7
PROTOCOL_ERROR = 0x1
HEALTH = "/grpc.health.v1.Health/Check"
CHECK_HEALTH = "/pluginv2.Diagnostics/CheckHealth"
QUERY_DATA = "/pluginv2.Data/QueryData"


def assert_grpc_response(st, what=""):
    """Every answer is :status 200, content-type application/grpc, and ends
    with a header block carrying grpc-status."""
    assert st.done, "%s: no complete answer (headers %r)" % (what, st.header_blocks)
    assert st.reset is None, "%s: RST_STREAM %r instead of a gRPC answer" % (what, st.reset)
    assert st.ended
    first = st.first_headers()
    assert first.get(":status") == "200", "%s: headers %r" % (what, st.header_blocks)
    ct = first.get("content-type", "")
    assert ct == "application/grpc" or ct.startswith("application/grpc+"), "%s: content-type %r" % (what, ct)
    last = st.last_headers()
    assert "grpc-status" in last, "%s: no grpc-status in the final header block %r" % (what, st.header_blocks)
    assert last["grpc-status"].isdigit() and (last["grpc-status"] == "0" or not last["grpc-status"].startswith("0"))
    if len(st.header_blocks) > 1:
        assert ":status" not in last, "trailers must not carry :status"
    assert len(st.header_blocks) <= 2, st.header_blocks


@pytest.fixture
def splugin(shared_plugin):
    """The module's shared plugin process, which must still be running."""
    assert shared_plugin.alive(), "the shared plugin died; stderr:\n" + shared_plugin.stderr_text()[-3000:]
    return shared_plugin


@pytest.fixture
def h2c(splugin):
    h = pp.H2Client(splugin.socket_path)
    assert h.handshake(), "no SETTINGS from the server"
    yield h
    h.close()


def _health_req(service="plugin"):
    return pp.pb()["health_pb2"].HealthCheckRequest(service=service).SerializeToString()


# ---------------------------------------------------------------- sanity

def test_plain_unary_over_raw_h2(h2c):
    st = h2c.call(HEALTH, pp.grpc_frame(_health_req()))
    assert_grpc_response(st, "Health/Check")
    assert st.grpc_status() == 0
    msgs, rest = pp.parse_grpc_messages(st.data)
    assert rest == b"" and len(msgs) == 1 and msgs[0][0] == 0
    resp = pp.pb()["health_pb2"].HealthCheckResponse.FromString(msgs[0][1])
    assert resp.status == 1


def test_server_settings_and_ping(h2c):
    assert h2c.remote_settings_seen
    h2c.conn.ping(b"12345678")
    h2c.flush()
    got = []
    orig = h2c._handle

    def handle(events):
        for e in events:
            if type(e).__name__ == "PingAckReceived":
                got.append(e.ping_data)
        orig(events)

    h2c._handle = handle
    assert h2c.pump_until(lambda: got, 5), "no PING ACK"
    assert got[0] == b"12345678"


# ---------------------------------------------------------------- bad preface

@pytest.mark.parametrize("garbage", [
    b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"\x00" * 64,
    b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + b"\x00" * 32,
    os.urandom(4096),
], ids=["http1", "zeros", "almost-preface", "random"])
def test_bad_preface_closes_only_that_connection(splugin, garbage):
    plugin = splugin
    good = pp.Grpc(plugin.target)
    good.wait_ready()
    assert good.health_check(good.hl.HealthCheckRequest(service="plugin"), timeout=5).status == 1

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(plugin.socket_path)
    try:
        s.sendall(garbage)
    except (BrokenPipeError, ConnectionResetError):
        pass
    closed = False
    received = bytearray()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        r, _, _ = select.select([s], [], [], 0.2)
        if not r:
            continue
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        received += chunk
    s.close()
    assert closed, "the server kept the bad-preface connection open (got %r)" % bytes(received[:200])

    assert plugin.alive()
    assert good.health_check(good.hl.HealthCheckRequest(service=""), timeout=5).status == 1
    fresh = pp.Grpc(plugin.target)
    fresh.wait_ready()
    assert fresh.check_health(pp.check_health_request(), timeout=5).status == 2
    fresh.close()
    good.close()


def test_stalled_preface_does_not_block_others(splugin):
    plugin = splugin
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(plugin.socket_path)
    s.sendall(b"PRI * HTTP/2.0\r\n")  # half a preface, then nothing
    c = pp.Grpc(plugin.target)
    c.wait_ready(5)
    assert c.health_check(c.hl.HealthCheckRequest(), timeout=5).status == 1
    c.close()
    s.close()


# ---------------------------------------------------------------- framing errors

@pytest.mark.parametrize("path,payload", [
    (HEALTH, _health_req),
    (QUERY_DATA, lambda: pp.query_data_request(("A",)).SerializeToString()),
], ids=["health", "querydata"])
@pytest.mark.parametrize("encoding", ["gzip", None], ids=["grpc-encoding-gzip", "no-grpc-encoding"])
def test_compressed_message_unimplemented(h2c, path, payload, encoding):
    body = gzip.compress(payload())
    extra = [("grpc-encoding", encoding)] if encoding else []
    st = h2c.call(path, pp.grpc_frame(body, compressed=True), extra=extra)
    assert_grpc_response(st, "compressed")
    assert st.grpc_status() == pp.UNIMPLEMENTED, st.header_blocks
    assert "compressed messages are not supported" in st.grpc_message(), st.grpc_message()
    # the connection is still usable
    st2 = h2c.call(HEALTH, pp.grpc_frame(_health_req()))
    assert_grpc_response(st2)
    assert st2.grpc_status() == 0


@pytest.mark.parametrize("body", [
    pp.grpc_frame(b"\x0a\x06plugin" + b"\x00" * 90, length=100)[:5 + 10],
    b"\x00\x00",
    b"\x00\x00\x00\x00\x10",
    pp.grpc_frame(b"\x0a\x06plugin") + b"\x00\x00\x00",
], ids=["short-body", "short-prefix", "prefix-only", "trailing-partial-prefix"])
def test_end_stream_inside_a_message_is_internal(h2c, body):
    st = h2c.call(HEALTH, body)
    assert_grpc_response(st, "truncated")
    assert st.grpc_status() == pp.INTERNAL, st.header_blocks
    st2 = h2c.call(HEALTH, pp.grpc_frame(_health_req()))
    assert st2.grpc_status() == 0


@pytest.mark.parametrize("case", ["ok", "unknown-method", "unknown-service", "undecodable", "compressed",
                                  "truncated", "not-found", "deadline"])
def test_every_answer_is_grpc_shaped(h2c, case):
    path, body, timeout = HEALTH, pp.grpc_frame(_health_req()), None
    want = 0
    if case == "unknown-method":
        path, want = "/pluginv2.Data/Nope", 12
    elif case == "unknown-service":
        path, want = "/nope.Nope/Nope", 12
    elif case == "undecodable":
        path, body, want = QUERY_DATA, pp.grpc_frame(b"\x0a\x05ab"), 13
    elif case == "compressed":
        body, want = pp.grpc_frame(gzip.compress(_health_req()), compressed=True), 12
    elif case == "truncated":
        body, want = body[:-2], 13
    elif case == "not-found":
        body, want = pp.grpc_frame(_health_req("nope")), 5
    elif case == "deadline":
        path, body, timeout, want = "/plugin.GRPCStdio/StreamStdio", pp.grpc_frame(b""), "100m", 4
    st = h2c.call(path, body, timeout=timeout)
    assert_grpc_response(st, case)
    assert st.grpc_status() == want, (case, st.header_blocks)


# ---------------------------------------------------------------- odd but valid framing

@pytest.mark.parametrize("chunk,separate_end", [(1, False), (1, True), (7, False), (4096, True)])
def test_request_split_into_tiny_data_frames(h2c, chunk, separate_end):
    req = pp.check_health_request().SerializeToString()
    body = pp.grpc_frame(req)
    sid = h2c.start_call(CHECK_HEALTH)
    h2c.flush()
    if separate_end:
        h2c.send(sid, body, end_stream=False, chunk=chunk)
        h2c.send(sid, b"", end_stream=True)
    else:
        h2c.send(sid, body, end_stream=True, chunk=chunk)
    st = h2c.wait(sid, 10)
    assert_grpc_response(st, "split")
    assert st.grpc_status() == 0, st.header_blocks
    msgs, rest = pp.parse_grpc_messages(st.data)
    assert rest == b"" and len(msgs) == 1
    resp = pp.pb()["pluginv2_pb2"].CheckHealthResponse.FromString(msgs[0][1])
    assert resp.status == 2


def test_interleaved_streams_byte_by_byte(h2c):
    reqs = {}
    for i in range(4):
        sid = h2c.start_call(QUERY_DATA if i % 2 else CHECK_HEALTH)
        payload = (pp.query_data_request(("Q%d" % i,)) if i % 2 else pp.check_health_request()).SerializeToString()
        reqs[sid] = (i, pp.grpc_frame(payload))
    h2c.flush()
    longest = max(len(b) for _, b in reqs.values())
    for pos in range(longest):
        for sid, (i, b) in reqs.items():
            if pos < len(b):
                h2c._send_data(sid, b[pos:pos + 1], pos == len(b) - 1)
        if pos % 64 == 0:
            h2c.flush()
    h2c.flush()
    V2 = pp.pb()["pluginv2_pb2"]
    for sid, (i, _) in reqs.items():
        st = h2c.wait(sid, 10)
        assert_grpc_response(st)
        assert st.grpc_status() == 0
        msgs, _ = pp.parse_grpc_messages(st.data)
        if i % 2:
            assert set(V2.QueryDataResponse.FromString(msgs[0][1]).responses) == {"Q%d" % i}
        else:
            assert V2.CheckHealthResponse.FromString(msgs[0][1]).status == 2


# ---------------------------------------------------------------- stream limit

class _BurstConnection(H2Connection):
    """h2 counts open streams by walking all of them for every new stream,
    which is quadratic for 10 000 streams; this client exceeds the peer's
    limit on purpose anyway, so it skips that count."""

    @property
    def open_outbound_streams(self):
        return 0


def test_ten_thousand_streams_at_once(plugin):
    N = 10000
    h = pp.H2Client(plugin.socket_path, local_settings={SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20},
                    conn_cls=_BurstConnection)
    h.conn.increment_flow_control_window(1 << 28)
    h.flush()  # preface + SETTINGS now; the server's SETTINGS stay unread (and unacknowledged) until the burst is out
    hdrs = h.grpc_headers(HEALTH)
    sids = []
    for i in range(N):
        sid = 1 + 2 * i
        h.conn.send_headers(sid, hdrs, end_stream=False)
        h.streams[sid] = pp.H2Stream(sid)
        sids.append(sid)
    out = memoryview(h.conn.data_to_send())

    # Send the whole burst before acknowledging the server's SETTINGS (input
    # is buffered raw meanwhile, so that neither side blocks on the other).
    inbuf = bytearray()
    deadline = time.monotonic() + 30
    eof = False
    while out:
        assert time.monotonic() < deadline, "the server stopped reading the burst"
        r, w, _ = select.select([h.sock] if not eof else [], [h.sock], [], 0.5)
        if w:
            try:
                n = h.sock.send(out[:262144])
                out = out[n:]
            except BlockingIOError:
                pass
            except (BrokenPipeError, ConnectionResetError):
                eof = True
                break
        if r:
            try:
                chunk = h.sock.recv(1 << 20)
            except (BlockingIOError, ConnectionResetError):
                chunk = b""
            if not chunk:
                eof = True
            inbuf += chunk
    h._handle(h.conn.receive_data(bytes(inbuf)))
    assert not eof or h.goaway is None, "connection closed during the burst (GOAWAY %r)" % (h.goaway,)
    h.flush()
    assert h.pump_until(lambda: h.remote_settings_seen, 5), "no SETTINGS from the server"
    limit = h.remote_settings.get(int(SettingCodes.MAX_CONCURRENT_STREAMS))
    want_refused = max(0, N - limit) if limit is not None else 0

    def n_reset():
        return sum(1 for s in sids if h.streams[s].reset is not None)

    h.pump_until(lambda: n_reset() >= want_refused, 20)
    h.pump(0.3)
    state = "advertised MAX_CONCURRENT_STREAMS=%r, %d streams reset so far; plugin stderr:\n%s" % (
        limit, n_reset(), plugin.stderr_text()[-3000:])
    assert h.goaway is None, "the server dropped the connection (GOAWAY %r) instead of refusing streams; %s" % (
        h.goaway, state)
    assert not h.closed, "the server closed the connection; " + state
    resets = [h.streams[s].reset for s in sids if h.streams[s].reset is not None]
    assert len(resets) == want_refused, \
        "advertised MAX_CONCURRENT_STREAMS=%r: %d streams reset, expected %d" % (limit, len(resets), want_refused)
    assert all(code in (REFUSED_STREAM, PROTOCOL_ERROR) for code in resets), set(resets)

    # another connection is served while those streams are open
    other = pp.Grpc(plugin.target)
    other.wait_ready(5)
    assert other.health_check(other.hl.HealthCheckRequest(), timeout=5).status == 1

    # complete the accepted streams: each gets its answer
    accepted = [s for s in sids if h.streams[s].reset is None]
    assert len(accepted) == (N if limit is None else min(N, limit))
    body = pp.grpc_frame(_health_req())
    for i, sid in enumerate(accepted):
        h._send_data(sid, body, True)
        if i % 256 == 255:
            h.flush()
            h._read_once(0)
    h.flush()
    h.pump_until(lambda: all(h.streams[s].done for s in accepted), 60)
    bad = [s for s in accepted if not (h.streams[s].ended and h.streams[s].reset is None
                                       and h.streams[s].grpc_status() == 0)]
    assert not bad, "%d accepted streams not answered OK, e.g. %r" % (
        len(bad), (h.streams[bad[0]].header_blocks, h.streams[bad[0]].reset))
    assert_grpc_response(h.streams[accepted[-1]])
    h.close()
    assert plugin.alive()
    assert other.check_health(pp.check_health_request(), timeout=5).status == 2
    other.close()


# ---------------------------------------------------------------- a client that never reads

RSS_LIMIT_KIB = 64 * 1024


def test_client_that_never_reads(spawn):
    sanitized = pp.binary_is_sanitized()
    extra = {}
    if sanitized:
        # ASan keeps freed memory in a quarantine (256 MiB by default), which
        # would make RSS say nothing about the plugin's own buffering.
        extra["ASAN_OPTIONS"] = (os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=8").lstrip(":")
    p = spawn(extra)
    c = pp.Grpc(p.target)
    c.wait_ready()
    assert c.health_check(c.hl.HealthCheckRequest(), timeout=5).status == 1
    baseline = p.rss_kib()
    peak = [baseline]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            v = p.rss_kib()
            if v:
                peak[0] = max(peak[0], v)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()

    h = pp.H2Client(p.socket_path, local_settings={SettingCodes.INITIAL_WINDOW_SIZE: 16}, auto_ack=False)
    assert h.handshake()
    h.pump(0.3)   # the server's connection WINDOW_UPDATE, if any, and our ACK
    # From here on the client never calls recv() and never sends WINDOW_UPDATE.
    refids = ["ref-%02d-%s" % (i, "r" * 32) for i in range(20)]
    body = pp.grpc_frame(pp.query_data_request(refids).SerializeToString())
    hdrs = h.grpc_headers(QUERY_DATA)
    pending = bytearray()
    sent_bytes = 0
    n_requests = 0
    generating = True
    stalled_since = None
    t_end = time.monotonic() + 6
    why = "time budget"
    while time.monotonic() < t_end and sent_bytes < (96 << 20):
        if not pending and generating:
            try:
                if h.conn.outbound_flow_control_window < len(body):
                    generating, why = False, "server's connection window exhausted"
                else:
                    sid = h.conn.get_next_available_stream_id()
                    h.conn.send_headers(sid, hdrs)
                    if h.conn.local_flow_control_window(sid) < len(body):
                        generating, why = False, "server's stream window too small"
                        h.conn.reset_stream(sid)
                    else:
                        h.conn.send_data(sid, body, end_stream=True)
                        n_requests += 1
            except (TooManyStreamsError, FlowControlError) as e:
                generating, why = False, type(e).__name__
            pending += h.conn.data_to_send()
        if not pending:
            if not generating:
                break
            continue
        try:
            n = h.sock.send(pending)
            del pending[:n]
            sent_bytes += n
            stalled_since = None
        except BlockingIOError:
            now = time.monotonic()
            if stalled_since is None:
                stalled_since = now
            elif now - stalled_since > 2:
                why = "the server stopped reading"
                break
            select.select([], [h.sock], [], 0.05)
        except (BrokenPipeError, ConnectionResetError):
            why = "the server closed the connection"
            break
    time.sleep(0.5)

    # Another connection is served while the non-reading one is still open.
    t0 = time.monotonic()
    other = pp.Grpc(p.target)
    other.wait_ready(5)
    r = other.query_data(pp.query_data_request(("A", "B")), timeout=5)
    assert set(r.responses) == {"A", "B"}
    assert other.check_health(pp.check_health_request(), timeout=5).status == 2
    assert c.health_check(c.hl.HealthCheckRequest(), timeout=5).status == 1
    served_in = time.monotonic() - t0
    assert served_in < 5

    stop.set()
    sampler.join(2)
    now_rss = p.rss_kib()
    info = ("%d requests, %d bytes sent, stopped because %s; RSS baseline %d KiB, peak %d KiB, now %d KiB%s"
            % (n_requests, sent_bytes, why, baseline, peak[0], now_rss, " (ASan build)" if sanitized else ""))
    print(info)
    if sanitized:
        assert peak[0] - baseline < RSS_LIMIT_KIB, info
    else:
        assert peak[0] < RSS_LIMIT_KIB, info
    assert p.alive()
    h.close()
    time.sleep(0.3)
    assert other.health_check(other.hl.HealthCheckRequest(), timeout=5).status == 1
    other.close()
    c.close()
