"""Tests of the reference in-house backend (tools/refbackend).

Run: /usr/bin/python3 -m pytest tools/refbackend/test_refbackend.py
The binary comes from $REFBACKEND_BIN, else the first that exists of
build/, build-asan/, build-ref/ and build-ref-rel/ (tools/refbackend/refbackend).
Only the standard library talks to the server: http.client and socket.
"""

import datetime
import gzip
import http.client
import json
import math
import os
import re
import signal
import socket
import subprocess
import threading
import time
import zlib

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CANDIDATES = [os.path.join(ROOT, d, "tools", "refbackend", "refbackend")
              for d in ("build", "build-asan", "build-ref", "build-ref-rel")]

FROM = "2026-11-25T10:00:00.000Z"
TO = "2026-11-25T11:00:00.000Z"


def iso_ms(s):
    d = datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
    return int(d.timestamp() * 1000)


FROM_MS, TO_MS = iso_ms(FROM), iso_ms(TO)


def binary():
    env = os.environ.get("REFBACKEND_BIN")
    if env:
        return env
    for c in CANDIDATES:
        if os.access(c, os.X_OK):
            return c
    pytest.fail("refbackend binary not found: build it (cmake --build build --target refbackend) "
                "or set REFBACKEND_BIN")


class Server:
    def __init__(self, *args):
        self.proc = subprocess.Popen([binary(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = self.proc.stdout.readline().decode()
        m = re.fullmatch(r"listening (\S+):(\d+)\n", line)  # [v6]:port keeps its brackets
        assert m, f"unexpected first line {line!r}"
        self.host, self.port = m.group(1), int(m.group(2))
        self.stderr = b""
        self._t = threading.Thread(target=self._drain, daemon=True)
        self._t.start()

    def _drain(self):
        self.stderr = self.proc.stderr.read()

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=30)
        self._t.join(timeout=10)
        rest = self.proc.stdout.read()
        return rc, rest

    def rss_kb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


@pytest.fixture(scope="module")
def srv():
    s = Server()
    yield s
    rc, rest = s.stop()
    err = s.stderr.decode(errors="replace")
    assert rc == 0, f"exit status {rc}; stderr:\n{err[-4000:]}"
    assert rest == b"", "more than one line on stdout"
    for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
        assert bad not in err, err[-4000:]


def conn(srv, timeout=10):
    return http.client.HTTPConnection(srv.host, srv.port, timeout=timeout)


def query_body(*targets, **kw):
    body = {
        "range": {"from": kw.get("frm", FROM), "to": kw.get("to", TO), "raw": {"from": "now-1h", "to": "now"}},
        "rangeRaw": {"from": "now-1h", "to": "now"},
        "interval": "30s",
        "intervalMs": kw.get("interval_ms", 30000),
        "maxDataPoints": kw.get("max_points", 1000),
        "targets": [t if isinstance(t, dict) else {"refId": chr(65 + i), "target": t, "payload": {}}
                    for i, t in enumerate(targets)],
        "scopedVars": {"__interval": {"text": "30s", "value": "30s"}},
        "filters": [],
    }
    return json.dumps(body).encode()


def request(srv, method, path, body=None, headers=None, timeout=10):
    c = conn(srv, timeout)
    try:
        h = {"Content-Type": "application/json", "Accept": "application/json"}
        h.update(headers or {})
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
    finally:
        c.close()


def query(srv, *targets, timeout=10, **kw):
    return request(srv, "POST", "/query", query_body(*targets, **kw), timeout=timeout)


def stats(srv):
    st, _, body = request(srv, "GET", "/_stats")
    assert st == 200
    return json.loads(body)


def sine(ts, i):
    return math.sin(2 * math.pi * (ts % 3600000) / 3600000 + (i % 16) * (math.pi / 8))


def exchange_until_close(srv, data):
    """Sends raw bytes on a new connection and returns all the server sends
    until it closes."""
    s = socket.create_connection((srv.host, srv.port), timeout=5)
    s.sendall(data)
    got = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        got += b
    s.close()
    return got


def raw_request(path, body, extra=""):
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def read_response(sock_file):
    """One response from a raw socket's file: (status, headers, body)."""
    line = sock_file.readline()
    assert line.startswith(b"HTTP/1.1 "), line
    status = int(line.split()[1])
    headers = {}
    while True:
        h = sock_file.readline()
        if h in (b"\r\n", b""):
            break
        k, v = h.decode().split(":", 1)
        headers[k.strip().lower()] = v.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size = int(sock_file.readline().strip(), 16)
            if size == 0:
                sock_file.readline()
                break
            body += sock_file.read(size)
            sock_file.readline()
    else:
        body = sock_file.read(int(headers["content-length"]))
    return status, headers, body


# ---- process -----------------------------------------------------------------


def test_listening_line_and_loopback_default(srv):
    assert srv.host == "127.0.0.1"
    assert 0 < srv.port < 65536


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_exits_zero_on_signal_with_connections_open(sig):
    s = Server("--listen", "127.0.0.1:0")
    held = socket.create_connection((s.host, s.port))
    hung = socket.create_connection((s.host, s.port))
    hung.sendall(raw_request("/query", query_body("sine:1?mode=hang")))
    time.sleep(0.2)
    rc, rest = s.stop(sig)
    held.close()
    hung.close()
    assert rc == 0, s.stderr.decode(errors="replace")[-3000:]
    assert rest == b""


def test_listen_option_and_bad_listen():
    s = Server("--listen", "localhost:0")
    assert s.host == "127.0.0.1"
    assert s.stop()[0] == 0
    p = subprocess.run([binary(), "--listen", "nonsense"], capture_output=True, timeout=10)
    assert p.returncode == 2 and p.stdout == b""


# ---- health, stats, routing -----------------------------------------------------------


def test_health(srv):
    st, h, body = request(srv, "GET", "/")
    assert st == 200
    assert h["content-type"] == "application/json"
    assert json.loads(body) == {"status": "ok"}


def test_stats_shape(srv):
    s = stats(srv)
    assert set(s) == {"requests", "open_connections", "connections_total", "closed_by_client_before_response",
                      "accept_encoding_gzip", "last_accept_encoding"}
    assert s["open_connections"] >= 1 and s["requests"] >= 1


def test_unknown_path_and_wrong_method(srv):
    st, _, body = request(srv, "GET", "/nope")
    assert st == 404 and "not found" in json.loads(body)["error"]
    st, h, body = request(srv, "GET", "/query")
    assert st == 405 and h["allow"] == "POST" and "error" in json.loads(body)
    st, h, _ = request(srv, "POST", "/", b"{}")
    assert st == 405


def test_keep_alive_reuses_one_connection(srv):
    before = stats(srv)["connections_total"]
    c = conn(srv)
    for _ in range(5):
        c.request("POST", "/query", body=query_body("sine:1"), headers={"Content-Type": "application/json"})
        r = c.getresponse()
        assert r.status == 200
        json.loads(r.read())
    c.request("GET", "/_stats")
    r = c.getresponse()
    s = json.loads(r.read())
    c.close()
    assert s["connections_total"] == before + 1  # the 5 queries and this /_stats shared one connection


def test_pipelined_requests_answer_in_order(srv):
    s = socket.create_connection((srv.host, srv.port), timeout=10)
    f = s.makefile("rb")
    reqs = [raw_request("/query", query_body("sine:1?latency=200ms")),
            raw_request("/query", query_body("table:2")),
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            raw_request("/query", query_body("sine:2?mode=chunked")),
            raw_request("/query", query_body("empty?status=418"))]
    t0 = time.monotonic()
    s.sendall(b"".join(reqs))
    got = [read_response(f) for _ in reqs]
    assert time.monotonic() - t0 >= 0.2
    assert got[0][0] == 200 and json.loads(got[0][2])[0]["target"] == "sine-0"
    assert json.loads(got[1][2])[0]["type"] == "table"
    assert json.loads(got[2][2]) == {"status": "ok"}
    assert got[3][1]["transfer-encoding"] == "chunked" and len(json.loads(got[3][2])) == 2
    assert got[4][0] == 418 and json.loads(got[4][2]) == {"error": "injected 418"}
    s.close()


def test_pipelined_burst_with_backpressure(srv):
    """Many pipelined requests in one write while the client reads slowly."""
    s = socket.create_connection((srv.host, srv.port), timeout=20)
    f = s.makefile("rb")
    one = raw_request("/query", query_body("points:20000"))
    n = 300
    sender = threading.Thread(target=lambda: s.sendall(one * n))
    sender.start()
    time.sleep(0.5)
    for _ in range(n):
        st, _, body = read_response(f)
        assert st == 200
        assert body.endswith(b'"tags":{"shape":"points"}}]')
    sender.join()
    s.close()


def test_http10_closes(srv):
    data = exchange_until_close(srv, b"GET / HTTP/1.0\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200") and b"Connection: close" in data and data.endswith(b'{"status":"ok"}')


def test_expect_100_continue(srv):
    body = query_body("sine:1")
    s = socket.create_connection((srv.host, srv.port), timeout=5)
    s.sendall((f"POST /query HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode())
    assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
    s.sendall(body)
    f = s.makefile("rb")
    st, _, out = read_response(f)
    assert st == 200 and json.loads(out)[0]["target"] == "sine-0"
    s.close()


# ---- request bodies and limits -----------------------------------------------------------


def test_chunked_request_body(srv):
    c = conn(srv)
    body = query_body("sine:2")
    chunks = [body[i:i + 7] for i in range(0, len(body), 7)]
    c.request("POST", "/query", body=iter(chunks), headers={"Content-Type": "application/json"},
              encode_chunked=True)
    r = c.getresponse()
    assert r.status == 200
    assert [e["target"] for e in json.loads(r.read())] == ["sine-0", "sine-1"]
    c.close()


def test_body_over_limit_is_413(srv):
    big = b'{"targets":[],"pad":"' + b"x" * (2 * 1024 * 1024) + b'"}'
    st, h, body = request(srv, "POST", "/query", big)
    assert st == 413 and "larger than" in json.loads(body)["error"]
    assert h.get("connection") == "close"


def test_chunked_body_over_limit_is_413():
    s = Server("--max-body", "1000")
    try:
        c = http.client.HTTPConnection(s.host, s.port, timeout=10)
        c.request("POST", "/query", body=iter([b"{" + b" " * 600, b" " * 600 + b"}"]), encode_chunked=True)
        r = c.getresponse()
        assert r.status == 413
        c.close()
        st, _, _ = request(s, "POST", "/query", query_body("sine:1"))  # small bodies still fine
        assert st == 200
    finally:
        assert s.stop()[0] == 0


def test_request_head_too_large_is_431(srv):
    st, _, body = request(srv, "GET", "/", headers={"X-Big": "y" * 70000})
    assert st == 431 and "error" in json.loads(body)


def test_bad_request_line_is_400_and_closes(srv):
    data = exchange_until_close(srv, b"THIS IS NOT HTTP\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 400 ")
    assert "bad request" in json.loads(data.split(b"\r\n\r\n", 1)[1])["error"]


@pytest.mark.parametrize("body", [
    b"garbage", b"", b"[1,2]", b'{"targets":', b'{"targets":5}', b'{"targets":[5]}', b'{"range":[]}',
    b'{"targets":[{"refId":"A"}]}', b'{"targets":[{"target":7}]}', b'{"targets":[{"target":"bogus:1"}]}',
    b'{"targets":[{"target":"sine:x"}]}', b'{"targets":[{"target":"sine:1?warp=9"}]}',
    b'{"targets":[{"target":"sine:1?latency=soon"}]}', b'{"targets":[{"target":"sine:1?status=99"}]}',
    b'{"targets":[{"target":"sine:1?mode=explode"}]}', b'{"range":{"from":"yesterday"},"targets":[]}',
    b'{"intervalMs":"fast","targets":[]}', b'{"targets":[{"target":"sine:10000"}],"maxDataPoints":1000}',
    b'{"targets":[]}\x00', b'{"targets":[]} {}', b'\xff\xfe', b'{"range":{"from":"-"},"targets":[]}',
    b'{"range":{"from":"2026-13-01T00:00:00Z"},"targets":[]}', b'{"targets":[{"target":"sine:1?bytes=12q"}]}',
])
def test_garbage_query_bodies_are_400_json(srv, body):
    st, h, out = request(srv, "POST", "/query", body)
    assert st == 400, out
    assert h["content-type"] == "application/json"
    assert isinstance(json.loads(out)["error"], str)


def test_error_names_the_target(srv):
    st, _, out = request(srv, "POST", "/query", b'{"targets":[{"refId":"A","target":"sine:1"},'
                                                b'{"refId":"Q","target":"bogus:2"}]}')
    msg = json.loads(out)["error"]
    assert st == 400 and "targets[1]" in msg and "refId Q" in msg and "bogus" in msg


def test_random_garbage_never_hurts(srv):
    import random
    rnd = random.Random(1234)
    valid = query_body("sine:2?latency=1ms", "table:2")
    for i in range(300):
        kind = i % 3
        if kind == 0:  # mangled JSON bodies
            b = bytearray(valid)
            for _ in range(rnd.randint(1, 8)):
                b[rnd.randrange(len(b))] = rnd.randrange(256)
            st, _, out = request(srv, "POST", "/query", bytes(b))
            assert st in (200, 400), (st, out)
            if st == 400:
                json.loads(out)
        elif kind == 1:  # random bytes as a whole request
            s = socket.create_connection((srv.host, srv.port), timeout=5)
            s.sendall(bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 300))) + b"\r\n\r\n")
            s.settimeout(2)
            try:
                s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                pass
            s.close()
        else:  # a valid request cut at a random point, then closed
            req = raw_request("/query", valid)
            s = socket.create_connection((srv.host, srv.port), timeout=5)
            s.sendall(req[:rnd.randrange(len(req))])
            s.close()
    st, _, out = request(srv, "GET", "/")
    assert st == 200


# ---- /query answers -----------------------------------------------------------


def test_sine_series_shape_and_values(srv):
    st, _, body = query(srv, "sine:3")
    assert st == 200
    out = json.loads(body)
    assert [e["target"] for e in out] == ["sine-0", "sine-1", "sine-2"]
    for i, e in enumerate(out):
        assert e["tags"] == {"series": str(i), "shape": "sine"}
        ts = [p[1] for p in e["datapoints"]]
        assert ts == list(range(FROM_MS, TO_MS + 1, 30000))
        for v, t in e["datapoints"]:
            assert abs(v - sine(t, i)) <= 1e-6


def test_sine_respects_max_data_points(srv):
    st, _, body = query(srv, "sine:1", interval_ms=1000, max_points=50)
    pts = json.loads(body)[0]["datapoints"]
    assert 1 <= len(pts) <= 50
    step = pts[1][1] - pts[0][1]
    assert step % 1000 == 0 and pts[0][1] == FROM_MS and pts[-1][1] <= TO_MS < pts[-1][1] + step
    # a range shorter than the interval still gives one point
    st, _, body = query(srv, "sine:1", frm=FROM, to=FROM, interval_ms=60000)
    assert len(json.loads(body)[0]["datapoints"]) == 1


def test_time_formats(srv):
    for frm, to in [("2026-11-25T10:00:00Z", "2026-11-25T11:00:00Z"),
                    ("2026-11-25T12:00:00.000+02:00", "2026-11-25T13:00:00+0200"),
                    (str(FROM_MS), str(TO_MS))]:
        st, _, body = query(srv, "sine:1", frm=frm, to=to)
        assert st == 200, body
        pts = json.loads(body)[0]["datapoints"]
        assert pts[0][1] == FROM_MS and pts[-1][1] == TO_MS


def test_deterministic(srv):
    a = query(srv, "sine:2", "table:4", "frame:3", "points:7")[2]
    b = query(srv, "sine:2", "table:4", "frame:3", "points:7")[2]
    assert a == b
    c = query(srv, "sine:2", "table:4", "frame:3", "points:7", interval_ms=60000)[2]
    assert c != a


def test_table(srv):
    out = json.loads(query(srv, "table:5")[2])
    assert len(out) == 1
    t = out[0]
    assert t["type"] == "table"
    assert t["columns"] == [{"text": "time", "type": "time"}, {"text": "host", "type": "string"},
                            {"text": "value", "type": "number"}, {"text": "up", "type": "boolean"}]
    assert len(t["rows"]) == 5
    for r, row in enumerate(t["rows"]):
        assert row[0] == FROM_MS + r * 30000 and row[1] == f"host-{r}"
        assert isinstance(row[2], float) and isinstance(row[3], bool)


def test_frame(srv):
    out = json.loads(query(srv, {"refId": "Z", "target": "frame:4"})[2])
    assert len(out) == 1
    f = out[0]
    assert f["meta"]["executedQueryString"] == "frame:4"
    names = [x["name"] for x in f["fields"]]
    assert names == ["time", "value"]
    tf, vf = f["fields"]
    assert tf["type"] == "time" and tf["values"] == [FROM_MS + k * 30000 for k in range(4)]
    assert vf["type"] == "number" and len(vf["values"]) == 4
    assert vf["labels"] == {"series": "0", "shape": "frame"} and vf["config"]["unit"] == "percent"


def test_empty_points_and_hide(srv):
    out = json.loads(query(srv, "empty", "points:123", {"refId": "H", "target": "sine:5", "hide": True},
                           {"refId": "I", "hide": True})[2])
    assert len(out) == 1
    assert out[0]["target"] == "points" and len(out[0]["datapoints"]) == 123
    assert json.loads(query(srv, "empty")[2]) == []
    assert json.loads(request(srv, "POST", "/query", b'{"targets":[]}')[2]) == []


def test_points_exact_count_large(srv):
    out = json.loads(query(srv, "points:100000")[2])
    assert len(out[0]["datapoints"]) == 100000


# ---- behaviours ----------------------------------------------------------------------


def test_status_injection(srv):
    for code in (500, 503, 404, 401, 429):
        st, _, body = query(srv, f"sine:3?status={code}")
        assert st == code and json.loads(body) == {"error": f"injected {code}"}


def test_first_behaviour_decides(srv):
    st, _, body = query(srv, "sine:1", "table:1?status=502", "sine:1?status=500", "points:1?mode=hang")
    assert st == 502
    # hidden targets do not decide
    st, _, body = query(srv, {"refId": "A", "target": "sine:1?status=500", "hide": True}, "table:2?status=503")
    assert st == 503


def test_behaviour_keeps_other_targets_data(srv):
    st, h, body = query(srv, "sine:1", "table:2?mode=chunked")
    assert st == 200 and h["transfer-encoding"] == "chunked"
    out = json.loads(body)
    assert out[0]["target"] == "sine-0" and out[1]["type"] == "table"


def test_latency_delays_without_blocking(srv):
    result = {}

    def slow():
        t0 = time.monotonic()
        result["st"], _, result["body"] = query(srv, "sine:2?latency=1s")
        result["dt"] = time.monotonic() - t0

    th = threading.Thread(target=slow)
    th.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    st, _, _ = query(srv, "sine:1")
    fast = time.monotonic() - t0
    th.join()
    assert st == 200 and fast < 0.5
    assert result["st"] == 200 and result["dt"] >= 1.0 and len(json.loads(result["body"])) == 2
    t0 = time.monotonic()
    st, _, _ = query(srv, "empty?latency=250ms&status=503")
    assert st == 503 and time.monotonic() - t0 >= 0.25


def test_malformed(srv):
    st, h, body = query(srv, "sine:2?mode=malformed")
    assert st == 200 and int(h["content-length"]) == len(body)
    with pytest.raises(ValueError):
        json.loads(body)
    st, _, body = query(srv, "empty?mode=malformed")
    with pytest.raises(ValueError):
        json.loads(body)


def test_truncate(srv):
    c = conn(srv)
    c.request("POST", "/query", body=query_body("sine:2?mode=truncate"), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    assert r.status == 200
    declared = int(r.getheader("Content-Length"))
    with pytest.raises(http.client.IncompleteRead) as ei:
        r.read()
    got = len(ei.value.partial)
    assert 0 < got < declared
    c.close()
    # the full answer would have been declared
    full = query(srv, "sine:2")[2]
    assert declared == len(full) and ei.value.partial == full[:got]


def test_truncate_chunked(srv):
    data = exchange_until_close(srv, raw_request("/query", query_body("sine:1?mode=truncate&chunked=1")))
    assert b"Transfer-Encoding: chunked" in data and not data.endswith(b"0\r\n\r\n")


def test_reset(srv):
    c = conn(srv)
    c.request("POST", "/query", body=query_body("sine:3?mode=reset"), headers={"Content-Type": "application/json"})
    r = c.getresponse()  # the head arrives whole
    assert r.status == 200 and int(r.getheader("Content-Length")) > 0
    with pytest.raises(ConnectionResetError):
        r.read()
    c.close()


def test_reset_is_a_real_rst(srv):
    s = socket.create_connection((srv.host, srv.port), timeout=5)
    s.sendall(raw_request("/query", query_body("sine:1?mode=reset")))
    data = b""
    with pytest.raises(ConnectionResetError):
        while True:
            b = s.recv(65536)
            if not b:
                break  # an orderly FIN would end here, failing the test
            data += b
    s.close()
    assert data.startswith(b"HTTP/1.1 200 OK")


def test_hang_never_answers(srv):
    s = socket.create_connection((srv.host, srv.port), timeout=1.0)
    s.sendall(raw_request("/query", query_body("sine:1?mode=hang")))
    t0 = time.monotonic()
    with pytest.raises(socket.timeout):
        s.recv(1)
    assert time.monotonic() - t0 >= 0.95
    # still open: nothing arrives, no EOF
    s.settimeout(0.2)
    with pytest.raises(socket.timeout):
        s.recv(1)
    s.close()


def test_drip(srv):
    s = socket.create_connection((srv.host, srv.port), timeout=10)
    s.sendall(raw_request("/query", query_body("sine:1?mode=drip&drip_bytes=64", frm=FROM,
                                               to="2026-11-25T10:02:00.000Z")))
    t0 = time.monotonic()
    arrivals = []
    data = b""
    while True:
        b = s.recv(65536)
        assert b
        arrivals.append(time.monotonic() - t0)
        data += b
        if b"\r\n\r\n" in data:
            head, body = data.split(b"\r\n\r\n", 1)
            n = int(re.search(rb"Content-Length: (\d+)", head).group(1))
            if len(body) >= n:
                break
    s.close()
    out = json.loads(body)
    assert out[0]["target"] == "sine-0"
    pieces = math.ceil(n / 64)
    assert pieces >= 3
    assert arrivals[-1] >= (pieces - 1) * 0.1 * 0.9


def test_drip_chunked_default_rate(srv):
    t0 = time.monotonic()
    st, h, body = query(srv, "empty?mode=drip&chunked=1")
    assert st == 200 and h["transfer-encoding"] == "chunked" and json.loads(body) == []
    st, h, body = query(srv, "points:2?mode=drip")  # ~60 bytes at 16 bytes per 100 ms
    assert st == 200 and len(json.loads(body)[0]["datapoints"]) == 2
    assert time.monotonic() - t0 >= 0.3


def test_chunked(srv):
    st, h, body = query(srv, "sine:3?mode=chunked")
    assert st == 200 and h["transfer-encoding"] == "chunked" and "content-length" not in h
    assert body == query(srv, "sine:3")[2]
    s = socket.create_connection((srv.host, srv.port), timeout=5)
    s.sendall(raw_request("/query", query_body("sine:3?mode=chunked")))
    f = s.makefile("rb")
    f.readline()
    while f.readline() != b"\r\n":
        pass
    sizes = []
    while True:
        n = int(f.readline().strip(), 16)
        sizes.append(n)
        if n == 0:
            break
        f.read(n + 2)
    assert len(sizes) >= 3  # several data chunks and the terminator
    s.close()


def test_huge_valid_and_sized(srv):
    st, h, body = query(srv, "sine:1?mode=huge&bytes=3m")
    assert st == 200
    n = 3 * 1024 * 1024
    assert int(h["content-length"]) == len(body) and n - 64 <= len(body) <= n
    out = json.loads(body)
    assert out[0]["target"] == "huge"
    ts = [p[1] for p in out[0]["datapoints"]]
    assert ts == sorted(ts) and len(set(ts)) == len(ts)
    st, h, body = query(srv, "sine:1?mode=huge&bytes=200000&chunked=1")
    assert h["transfer-encoding"] == "chunked" and 199900 <= len(body) <= 200000
    json.loads(body)


def test_huge_is_streamed_not_buffered(srv):
    """A 1 GiB answer read slowly: the server's memory must not grow with it."""
    rss0 = srv.rss_kb()
    s = socket.create_connection((srv.host, srv.port), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(raw_request("/query", query_body("sine:1?mode=huge&bytes=1g")))
    got = 0
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(65536)
    assert re.search(rb"Content-Length: 10737\d{5}\r\n", head)
    while got < 8 * 1024 * 1024:
        got += len(s.recv(65536))
    time.sleep(0.3)
    rss1 = srv.rss_kb()
    assert rss1 - rss0 < 64 * 1024, f"RSS grew by {rss1 - rss0} kB"
    s.close()


# ---- encoding= (compressed answers) --------------------------------------------


def inflate(enc, data):
    """Decompresses a body the way the header says (deflate: zlib format)."""
    if enc == "gzip":
        return gzip.decompress(data)
    if enc == "deflate":
        return zlib.decompress(data)
    raise AssertionError(f"unexpected encoding {enc!r}")


@pytest.mark.parametrize("target", ["sine:3", "table:4", "points:500"])
@pytest.mark.parametrize("enc", ["gzip", "deflate"])
def test_encoding_same_answer_compressed(srv, enc, target):
    plain = query(srv, target)[2]
    st, h, body = query(srv, f"{target}?encoding={enc}")
    assert st == 200 and h["content-encoding"] == enc and h["content-type"] == "application/json"
    assert int(h["content-length"]) == len(body) and len(body) < len(plain)
    assert inflate(enc, body) == plain
    if enc == "gzip":
        assert body[:3] == b"\x1f\x8b\x08"
    else:
        assert body[0] & 0x0f == 8 and (body[0] << 8 | body[1]) % 31 == 0  # a zlib header


def test_encoding_deflate_raw_and_identity(srv):
    plain = query(srv, "sine:2")[2]
    st, h, body = query(srv, "sine:2?encoding=deflate-raw")
    assert st == 200 and h["content-encoding"] == "deflate"
    assert zlib.decompress(body, -15) == plain
    with pytest.raises(zlib.error):
        zlib.decompress(body)
    st, h, body = query(srv, "sine:2?encoding=identity")
    assert st == 200 and "content-encoding" not in h and body == plain


def test_encoding_only_when_asked(srv):
    """Accept-Encoding alone changes nothing (benchmarks compare against plain
    answers); /_stats counts the requests that asked for gzip."""
    before = stats(srv)
    for target in ("sine:2", "sine:2?latency=1ms"):
        st, h, body = request(srv, "POST", "/query", query_body(target),
                              headers={"Accept-Encoding": "gzip, deflate"})
        assert st == 200 and "content-encoding" not in h
        json.loads(body)
    after = stats(srv)
    assert after["accept_encoding_gzip"] - before["accept_encoding_gzip"] == 2
    assert request(srv, "GET", "/", headers={"Accept-Encoding": 'x"\\y'})[0] == 200
    s = stats(srv)
    assert s["last_accept_encoding"] == "x??y"  # kept JSON-safe; /_stats itself is not noted
    assert s["accept_encoding_gzip"] == after["accept_encoding_gzip"]


def test_encoding_with_other_behaviours(srv):
    plain = query(srv, "sine:3")[2]
    st, h, body = query(srv, "sine:3?encoding=gzip&mode=chunked")
    assert st == 200 and h["transfer-encoding"] == "chunked" and h["content-encoding"] == "gzip"
    assert gzip.decompress(body) == plain
    st, h, body = query(srv, "sine:1?encoding=deflate&status=503")
    assert st == 503 and h["content-encoding"] == "deflate"
    assert json.loads(zlib.decompress(body)) == {"error": "injected 503"}
    st, h, body = query(srv, "sine:1?encoding=gzip&mode=malformed")
    assert st == 200
    with pytest.raises(ValueError):
        json.loads(gzip.decompress(body))
    st, h, body = query(srv, "sine:1?encoding=gzip&mode=drip&drip_bytes=4096&drip_ms=1")
    assert st == 200 and gzip.decompress(body) == query(srv, "sine:1")[2]
    # truncate: half of the compressed body, under the full compressed length
    c = conn(srv)
    c.request("POST", "/query", body=query_body("sine:3?mode=truncate&encoding=gzip"))
    r = c.getresponse()
    declared = int(r.getheader("Content-Length"))
    with pytest.raises(http.client.IncompleteRead) as ei:
        r.read()
    c.close()
    full = query(srv, "sine:3?encoding=gzip")[2]
    assert declared == len(full) and ei.value.partial == full[:len(ei.value.partial)]


@pytest.mark.parametrize("enc", ["gzip", "deflate", "deflate-raw"])
def test_encoding_corrupt(srv, enc):
    for target in (f"sine:3?encoding={enc}&corrupt=1", f"sine:1?mode=huge&bytes=300k&encoding={enc}&corrupt=1"):
        st, h, body = query(srv, target)
        assert st == 200 and h["content-encoding"] == ("gzip" if enc == "gzip" else "deflate")
        d = zlib.decompressobj({"gzip": 16 + 15, "deflate": 15, "deflate-raw": -15}[enc])
        with pytest.raises(zlib.error, match="invalid block type"):
            d.decompress(body)
        assert len(body) > 100  # the rest of the stream is still sent


def test_encoding_br_is_garbage(srv):
    for target in ("sine:2?encoding=br", "sine:1?mode=huge&bytes=10m&encoding=br"):
        st, h, body = query(srv, target)
        assert st == 200 and h["content-encoding"] == "br" and int(h["content-length"]) == len(body)
        assert 0 < len(body) < 200
        with pytest.raises(ValueError):
            json.loads(body)


def test_encoding_bad_parameters(srv):
    st, _, body = query(srv, "sine:1?encoding=zstd")
    assert st == 400 and "encoding=zstd" in json.loads(body)["error"]
    st, _, body = query(srv, "sine:1?corrupt=1")
    assert st == 400 and "corrupt=1 needs encoding" in json.loads(body)["error"]
    st, _, body = query(srv, "sine:1?corrupt=1&encoding=br")
    assert st == 400


@pytest.mark.parametrize("enc", ["gzip", "deflate"])
def test_huge_compressed_is_chunked_and_identical(srv, enc):
    plain = query(srv, "sine:1?mode=huge&bytes=3m")[2]
    st, h, body = query(srv, f"sine:1?mode=huge&bytes=3m&encoding={enc}")
    assert st == 200 and h["content-encoding"] == enc
    assert h["transfer-encoding"] == "chunked" and "content-length" not in h
    assert len(body) < len(plain) // 2
    assert inflate(enc, body) == plain


def test_huge_gzip_bomb_is_valid_json(srv):
    """The decompression bomb of the integration tests: 50 MiB of valid JSON."""
    st, h, body = query(srv, "sine:1?mode=huge&bytes=50m&encoding=gzip", timeout=120)
    assert st == 200
    raw = gzip.decompress(body)
    n = 50 * 1024 * 1024
    assert n - 64 <= len(raw) <= n and len(body) < n // 2
    assert raw.startswith(b'[{"target":"huge","datapoints":[[') and raw.endswith(b'"tags":{"shape":"huge"}}]')
    out = json.loads(raw)
    assert out[0]["target"] == "huge" and len(out[0]["datapoints"]) > 1000000


def test_huge_compressed_http10_ends_with_close(srv):
    s = socket.create_connection((srv.host, srv.port), timeout=20)
    body = query_body("sine:1?mode=huge&bytes=1m&encoding=gzip")
    s.sendall(b"POST /query HTTP/1.0\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    head, payload = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200") and b"Connection: close" in head
    assert b"Content-Length" not in head and b"Transfer-Encoding" not in head
    assert gzip.decompress(payload) == query(srv, "sine:1?mode=huge&bytes=1m")[2]


def test_huge_compressed_is_streamed_not_buffered(srv):
    """A 1 GiB gzip answer read slowly: compressed as it goes, memory flat."""
    rss0 = srv.rss_kb()
    s = socket.create_connection((srv.host, srv.port), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(raw_request("/query", query_body("sine:1?mode=huge&bytes=1g&encoding=gzip")))
    got = 0
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(65536)
    assert b"Content-Encoding: gzip\r\n" in head and b"Transfer-Encoding: chunked\r\n" in head
    while got < 4 * 1024 * 1024:
        got += len(s.recv(65536))
    time.sleep(0.3)
    rss1 = srv.rss_kb()
    assert rss1 - rss0 < 64 * 1024, f"RSS grew by {rss1 - rss0} kB"
    s.close()


def test_stats_counts_client_gone_while_waiting(srv):
    before = stats(srv)
    s = socket.create_connection((srv.host, srv.port), timeout=5)
    s.sendall(raw_request("/query", query_body("sine:1?latency=2s")))
    time.sleep(0.3)
    mid = stats(srv)
    assert mid["open_connections"] == before["open_connections"] + 1
    s.close()
    deadline = time.monotonic() + 1.5  # well before the 2 s answer would be due
    while True:
        after = stats(srv)
        if after["closed_by_client_before_response"] == before["closed_by_client_before_response"] + 1:
            break
        assert time.monotonic() < deadline, after
        time.sleep(0.05)
    assert after["open_connections"] == before["open_connections"]


def test_stats_counts_client_gone_while_hanging(srv):
    before = stats(srv)["closed_by_client_before_response"]
    s = socket.create_connection((srv.host, srv.port), timeout=5)
    s.sendall(raw_request("/query", query_body("sine:1?mode=hang")))
    time.sleep(0.2)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()  # an abortive close this time
    deadline = time.monotonic() + 2
    while stats(srv)["closed_by_client_before_response"] != before + 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_answered_clients_are_not_counted(srv):
    before = stats(srv)["closed_by_client_before_response"]
    for _ in range(3):
        query(srv, "sine:1")
    time.sleep(0.2)
    assert stats(srv)["closed_by_client_before_response"] == before


# ---- editor endpoints -------------------------------------------------------------


def post_json(srv, path, obj):
    st, h, body = request(srv, "POST", path, json.dumps(obj).encode() if obj is not None else b"")
    return st, json.loads(body)


def test_metrics(srv):
    st, out = post_json(srv, "/metrics", {"metric": "sine", "payload": {}})
    assert st == 200 and isinstance(out, list) and out
    for m in out:
        assert isinstance(m["value"], str) and isinstance(m["payloads"], list)
        for p in m["payloads"]:
            assert isinstance(p["name"], str)
            assert p.get("type", "input") in ("select", "multi-select", "input", "textarea")
            for o in p.get("options", []):
                assert "value" in o
    assert {m["value"] for m in out} >= {"sine", "table", "frame", "points", "empty"}
    assert post_json(srv, "/metrics", None) == (200, out)  # an empty body is fine
    assert post_json(srv, "/metrics", {"metric": "x"})[1] == out  # deterministic


def test_metric_payload_options(srv):
    st, out = post_json(srv, "/metric-payload-options", {"metric": "sine", "payload": {}, "name": "host"})
    assert st == 200 and [o["value"] for o in out] == ["host-0", "host-1", "host-2"]
    st, out = post_json(srv, "/metric-payload-options", {"metric": "sine", "payload": {}, "name": "series"})
    assert all(set(o) == {"label", "value"} for o in out)
    st, out = post_json(srv, "/metric-payload-options", {"metric": "sine", "payload": {}})
    assert st == 400 and "name" in out["error"]


def test_variable(srv):
    st, out = post_json(srv, "/variable", {"payload": {"target": "dc:4", "variables": {}},
                                           "range": {"from": FROM, "to": TO}})
    assert st == 200 and [v["__value"] for v in out] == ["dc-0", "dc-1", "dc-2", "dc-3"]
    assert all(v["__text"] == v["text"] == v["value"] == v["__value"] for v in out)
    st, out = post_json(srv, "/variable", {"payload": {"target": "region"}})
    assert [v["text"] for v in out] == ["region-0", "region-1", "region-2"]


def test_tag_keys_and_values(srv):
    st, keys = post_json(srv, "/tag-keys", {})
    assert st == 200 and all(k["type"] == "string" for k in keys)
    assert [k["text"] for k in keys] == ["host", "series", "shape"]
    st, vals = post_json(srv, "/tag-values", {"key": "host"})
    assert st == 200 and vals == [{"text": "host-0"}, {"text": "host-1"}, {"text": "host-2"}]
    assert post_json(srv, "/tag-values", {"key": "nope"}) == (200, [])
    st, out = post_json(srv, "/tag-values", {})
    assert st == 400


def test_search(srv):
    st, out = post_json(srv, "/search", {"target": ""})
    assert st == 200 and "sine:1" in out and all(isinstance(x, str) for x in out)
    st, out = post_json(srv, "/search", {"target": "table"})
    assert out == ["table:5"]


@pytest.mark.parametrize("path", ["/metrics", "/metric-payload-options", "/variable", "/tag-keys",
                                  "/tag-values", "/search"])
def test_editor_endpoints_reject_garbage(srv, path):
    st, h, body = request(srv, "POST", path, b"{nope")
    assert st == 400 and "error" in json.loads(body)
    st, h, body = request(srv, "POST", path, b"[1]")
    assert st == 400
    st, h, body = request(srv, "GET", path)
    assert st == 405


# ---- odds and ends ------------------------------------------------------------------


def test_head_health(srv):
    c = conn(srv)
    c.request("HEAD", "/")
    r = c.getresponse()
    assert r.status == 200 and r.read() == b""
    c.request("GET", "/")  # the connection is still in step
    assert json.loads(c.getresponse().read()) == {"status": "ok"}
    c.close()


def test_combined_behaviours(srv):
    c = conn(srv)
    t0 = time.monotonic()
    c.request("POST", "/query", body=query_body("sine:3?latency=50ms&status=503&mode=truncate"))
    r = c.getresponse()
    assert r.status == 503 and time.monotonic() - t0 >= 0.05
    with pytest.raises(http.client.IncompleteRead) as ei:
        r.read()
    assert b'{"error":"injected 503"}'.startswith(ei.value.partial)
    c.close()


def test_no_cache_gives_the_same_answers(srv):
    s = Server("--no-cache")
    try:
        for targets in (("sine:2", "table:3"), ("frame:5",), ("points:50", "empty"), ("sine:2", "table:3")):
            assert query(s, *targets)[2] == query(srv, *targets)[2]
    finally:
        assert s.stop()[0] == 0


def test_ipv6_listen():
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    s = Server("--listen", "[::1]:0")
    try:
        assert s.host == "[::1]"
        c = http.client.HTTPConnection("::1", s.port, timeout=5)
        c.request("GET", "/")
        assert c.getresponse().status == 200
        c.close()
    finally:
        assert s.stop()[0] == 0


# ---- TLS mode (--tls-cert / --tls-key / --tls-client-ca) ---------------------------
# Certificates are made here with the openssl CLI; nothing is committed.

@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    keygen = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]

    def ossl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ossl("req", "-x509", *keygen, "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=refbackend test CA", "-days", "2")
    for name, san in (("server", "DNS:localhost,IP:127.0.0.1"), ("client", "DNS:client")):
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        ossl("req", *keygen, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        ossl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem")
    return {n: str(d / n) for n in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


def tls_server(files, client_ca=False):
    args = ["--tls-cert", files["server.pem"], "--tls-key", files["server.key"]]
    if client_ca:
        args += ["--tls-client-ca", files["ca.pem"]]
    return Server(*args)


def https(s, files, with_cert=False, timeout=10):
    import ssl
    ctx = ssl.create_default_context(cafile=files["ca.pem"])
    if with_cert:
        ctx.load_cert_chain(files["client.pem"], files["client.key"])
    return http.client.HTTPSConnection(s.host, s.port, context=ctx, timeout=timeout)


def stop_clean(s):
    rc, rest = s.stop()
    err = s.stderr.decode(errors="replace")
    assert rc == 0 and rest == b"", err[-4000:]
    for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
        assert bad not in err, err[-4000:]
    return err


def test_tls_mode_serves_every_behaviour(tls_files):
    s = tls_server(tls_files)
    try:
        c = https(s, tls_files)
        for _ in range(3):  # keep-alive through the TLS front
            c.request("GET", "/")
            r = c.getresponse()
            assert r.status == 200 and json.loads(r.read()) == {"status": "ok"}
        c.request("POST", "/query", body=query_body("sine:2", "table:3"))
        r = c.getresponse()
        assert r.status == 200 and len(json.loads(r.read())) == 3
        c.request("POST", "/query", body=query_body("sine:1?mode=huge&bytes=8m"))
        r = c.getresponse()
        assert r.status == 200 and len(r.read()) == int(r.getheader("Content-Length")) > 8_000_000
        c.request("GET", "/_stats")
        st = json.loads(c.getresponse().read())
        assert st["requests"] == 6 and st["open_connections"] == 1
        c.close()
        c = https(s, tls_files)
        c.request("POST", "/query", body=query_body("sine:50?mode=truncate"))
        with pytest.raises(http.client.IncompleteRead):
            c.getresponse().read()
        c.close()
        c = https(s, tls_files)
        c.request("POST", "/query", body=query_body("sine:50?mode=reset"))
        with pytest.raises((ConnectionResetError, http.client.IncompleteRead, OSError)):
            c.getresponse().read()
        c.close()
    finally:
        stop_clean(s)


def test_tls_client_ca_requires_a_client_certificate(tls_files):
    import ssl
    s = tls_server(tls_files, client_ca=True)
    try:
        c = https(s, tls_files)
        with pytest.raises((ssl.SSLError, ConnectionResetError, http.client.RemoteDisconnected)):
            c.request("GET", "/")
            c.getresponse().read()
        c.close()
        c = https(s, tls_files, with_cert=True)
        c.request("GET", "/")
        assert c.getresponse().status == 200
        c.close()
    finally:
        err = stop_clean(s)
    assert "TLS handshake with a client failed" in err


def test_tls_options_are_checked(tls_files, tmp_path):
    def run(*args):
        p = subprocess.run([binary(), *args], capture_output=True, text=True, timeout=30)
        return p.returncode, p.stderr

    rc, err = run("--tls-cert", tls_files["server.pem"])
    assert rc == 2 and "--tls-key" in err
    rc, err = run("--tls-cert", str(tmp_path / "missing.pem"), "--tls-key", tls_files["server.key"])
    assert rc == 2 and "cannot open" in err
    rc, err = run("--tls-cert", tls_files["server.pem"], "--tls-key", tls_files["client.key"])
    assert rc == 2 and "does not belong" in err
    (tmp_path / "junk.pem").write_text("junk\n")
    rc, err = run("--tls-cert", str(tmp_path / "junk.pem"), "--tls-key", tls_files["server.key"])
    assert rc == 2 and "no PEM certificate" in err
