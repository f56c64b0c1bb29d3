"""gpxhost against the real plugin binary and a small in-process HTTP backend.

Run:  /usr/bin/python3 -m pytest -q tools/gpxhost/test_gpxhost.py
Binaries: $GPXHOST_BIN (default build/tools/gpxhost/gpxhost) and $PLUGIN_BIN
(default build/gpx_inhouse), relative paths taken from the repository root.
Standard library only: the backend is http.server in a thread, fake plugins
are shell scripts.
"""
import http.server
import json
import os
import re
import signal
import socket
import stat
import subprocess
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _bin(var, default):
    path = os.environ.get(var, default)
    return path if os.path.isabs(path) else os.path.join(ROOT, path)


GPXHOST = _bin("GPXHOST_BIN", "build/tools/gpxhost/gpxhost")
PLUGIN = _bin("PLUGIN_BIN", "build/gpx_inhouse")
REFBACKEND = os.environ.get("REFBACKEND_BIN") or next(
    (p for p in (os.path.join(ROOT, d, "tools/refbackend/refbackend") for d in ("build-asan", "build"))
     if os.access(p, os.X_OK)), os.path.join(ROOT, "build/tools/refbackend/refbackend"))

T0 = 1767225600000  # 2026-01-01T00:00:00.000Z

pytestmark = pytest.mark.skipif(
    not (os.access(GPXHOST, os.X_OK) and os.access(PLUGIN, os.X_OK)),
    reason=f"build gpxhost and the plugin first ({GPXHOST}, {PLUGIN})")


# ---- the backend ---------------------------------------------------------------

class Backend(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    requests = []  # (method, path, headers, body) of every request, in order

    def log_message(self, *args):
        pass

    def _send(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _record(self, body):
        Backend.requests.append((self.command, self.path, dict(self.headers), body))

    def do_GET(self):
        self._record(None)
        if self.path == "/":
            return self._send(200, {"status": "ok"})
        return self._send(404, {"error": "not found"})

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        self._record(body)
        if self.path == "/metrics":
            return self._send(200, ["cpu", "mem"])
        if self.path != "/query":
            return self._send(404, {"error": "no such endpoint"})
        target = body["targets"][0]["target"]
        if target == "fail":
            return self._send(500, {"error": "backend exploded"})
        if target == "slow":
            time.sleep(5)
            return self._send(200, [])
        if target == "empty":
            return self._send(200, [])
        if target == "table":
            return self._send(200, [{
                "type": "table",
                "columns": [{"text": "host", "type": "string"}, {"text": "cpu", "type": "number"},
                            {"text": "up", "type": "boolean"}],
                "rows": [["web1", 0.25, True], ["web2", None, False]],
            }])
        if target == "long":
            points = [[float(i), T0 + i * 1000] for i in range(100)]
            return self._send(200, [{"target": "long", "datapoints": points}])
        # anything else: one series named after the target
        return self._send(200, [{
            "target": target,
            "datapoints": [[1.5, T0], [2.5, T0 + 60000], [None, T0 + 120000]],
            "tags": {"host": "web1", "dc": "eu"},
        }])


@pytest.fixture(scope="module")
def backend():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def private_tmpdir(tmp_path, monkeypatch):
    # gpxhost makes its socket directory under $TMPDIR: keep it per test, check it is cleaned up.
    d = tmp_path / "tmp"
    d.mkdir()
    monkeypatch.setenv("TMPDIR", str(d))
    yield d
    assert [p.name for p in d.iterdir() if p.name.startswith("gpxhost-")] == []


def gpxhost(*args, plugin=PLUGIN, timeout=60, env=None):
    cmd = [GPXHOST, *args]
    if plugin is not None:
        cmd += ["--plugin", plugin]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    # With sanitizer builds, any report (ours, or the plugin's shown as "plugin: ...") fails the test.
    assert "Sanitizer" not in p.stderr and "runtime error:" not in p.stderr, p.stderr
    return p.returncode, p.stdout, p.stderr


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def script(tmp_path, name, body):
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


# ---- query -----------------------------------------------------------------------

def test_query_prints_series_and_table(backend):
    rc, out, err = gpxhost("query", "--url", backend, "--target", "cpu.load", "--target", "table")
    assert rc == 0, err
    assert "A: status 200, 1 frame" in out
    assert "B: status 200, 1 frame" in out
    lines = out.splitlines()
    # the series: header with labels, ISO-8601 UTC times with milliseconds, %g floats, nulls
    hdr = next(l for l in lines if l.startswith("Time"))
    assert re.match(r"^Time\s+Value \{dc=eu, host=web1\}$", hdr), hdr
    rows = [l for l in lines if l.startswith("2026-")]
    assert rows[0].split() == ["2026-01-01T00:00:00.000Z", "1.5"]
    assert rows[1].split() == ["2026-01-01T00:01:00.000Z", "2.5"]
    assert rows[2].split() == ["2026-01-01T00:02:00.000Z", "null"]
    assert all(ISO_MS.match(r.split()[0]) for r in rows)
    assert '"cpu.load"' in out and "[timeseries-multi]" in out
    # columns are aligned: the value column starts at the same offset in header and rows
    col = hdr.index("Value")
    assert all(r[col - 2:col] == "  " and r[col] != " " for r in rows)
    # the table
    thdr = next(l for l in lines if l.startswith("host"))
    assert thdr.split() == ["host", "cpu", "up"]
    web1 = next(l for l in lines if l.startswith("web1"))
    web2 = next(l for l in lines if l.startswith("web2"))
    assert web1.split() == ["web1", "0.25", "true"]
    assert web2.split() == ["web2", "null", "false"]
    assert "plugin exited: exit status 0" in err


def test_query_failing_target(backend):
    rc, out, err = gpxhost("query", "--url", backend, "--target", "cpu", "--target", "fail")
    assert rc == 1
    assert "A: status 200" in out
    assert "B: status 502" in out
    assert "error: the backend answered HTTP 500: backend exploded" in out
    assert "errorSource: downstream" in out
    assert "1 of 2 queries failed" in err
    assert "plugin exited: exit status 0" in err


def test_query_request_reaches_backend(backend):
    Backend.requests.clear()
    rc, out, err = gpxhost("query", "--url", backend, "--target", "cpu", "--target", "mem",
                           "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-01T06:00:00.000Z",
                           "--interval", "30s", "--max-data-points", "500", "--payload", '{"agg":"max"}')
    assert rc == 0, err
    queries = [b for (m, p, h, b) in Backend.requests if p == "/query"]
    assert sorted(q["targets"][0]["target"] for q in queries) == ["cpu", "mem"]
    by_ref = {q["targets"][0]["refId"]: q for q in queries}
    assert by_ref["A"]["targets"][0]["target"] == "cpu"
    assert by_ref["B"]["targets"][0]["target"] == "mem"
    q = by_ref["A"]
    assert q["range"]["from"] == "2026-01-01T00:00:00.000Z"
    assert q["range"]["to"] == "2026-01-01T06:00:00.000Z"
    assert q["intervalMs"] == 30000 and q["interval"] == "30s"
    assert q["maxDataPoints"] == 500
    assert q["targets"][0]["payload"] == {"agg": "max"}


@pytest.mark.parametrize("frm,to,want_from,want_to", [
    ("1767225600000", "2026-01-01T02:00:00+01:00", "2026-01-01T00:00:00.000Z", "2026-01-01T01:00:00.000Z"),
    ("2026-01-01", "2026-01-01 00:00:01.5", "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:01.500Z"),
])
def test_query_time_notations(backend, frm, to, want_from, want_to):
    Backend.requests.clear()
    rc, out, err = gpxhost("query", "--url", backend, "--target", "cpu", "--from", frm, "--to", to)
    assert rc == 0, err
    q = [b for (m, p, h, b) in Backend.requests if p == "/query"][-1]
    assert (q["range"]["from"], q["range"]["to"]) == (want_from, want_to)


def test_query_defaults(backend):
    Backend.requests.clear()
    rc, out, err = gpxhost("query", "--url", backend, "--target", "cpu")
    assert rc == 0, err
    q = [b for (m, p, h, b) in Backend.requests if p == "/query"][-1]
    assert q["maxDataPoints"] == 1000
    assert q["intervalMs"] == 5000  # 1h / 1000 points, rounded up to a "nice" interval
    assert q["targets"][0]["payload"] == {}


def test_query_json_output(backend):
    rc, out, err = gpxhost("query", "--url", backend, "--target", "cpu", "--target", "fail", "--json")
    assert rc == 1
    doc = json.loads(out)
    a, b = doc["results"]["A"], doc["results"]["B"]
    assert a["status"] == 200
    frame = a["frames"][0]
    assert [f["name"] for f in frame["schema"]["fields"]] == ["Time", "Value"]
    assert frame["data"]["values"][0][0] == T0
    assert frame["data"]["values"][1] == [1.5, 2.5, None]
    assert b["status"] == 502 and b["errorSource"] == "downstream" and "backend exploded" in b["error"]


def test_query_long_frame_is_cut(backend):
    rc, out, err = gpxhost("query", "--url", backend, "--target", "long")
    assert rc == 0, err
    assert "100 rows" in out
    assert "... 75 more rows ..." in out
    rows = [l for l in out.splitlines() if l.startswith("2026-")]
    assert len(rows) == 25
    assert rows[0].split() == ["2026-01-01T00:00:00.000Z", "0"]
    assert rows[19].split() == ["2026-01-01T00:00:19.000Z", "19"]
    assert rows[20].split() == ["2026-01-01T00:01:35.000Z", "95"]
    assert rows[-1].split() == ["2026-01-01T00:01:39.000Z", "99"]


def test_query_no_data(backend):
    rc, out, err = gpxhost("query", "--url", backend, "--target", "empty")
    assert rc == 0, err
    assert "A: status 200, no frames (no data)" in out


def test_query_deadline(backend):
    rc, out, err = gpxhost("query", "--url", backend, "--target", "slow", "--timeout", "1s")
    assert rc == 1
    assert "A: status 504" in out
    assert "deadline" in out


def test_query_refused_backend():
    url = f"http://127.0.0.1:{free_port()}"
    rc, out, err = gpxhost("query", "--url", url, "--target", "cpu")
    assert rc == 1
    assert "A: status 502" in out
    assert "is the backend running?" in out


def test_interrupt_cancels_and_stops_plugin(backend):
    p = subprocess.Popen([GPXHOST, "query", "--url", backend, "--target", "slow", "--plugin", PLUGIN],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=20)
    assert "Sanitizer" not in err, err
    assert p.returncode == 130, err
    assert "interrupted" in err
    assert "Canceled" in err
    assert "plugin exited: exit status 0" in err


# ---- health, resource, metrics ------------------------------------------------------

def test_health_ok(backend):
    Backend.requests.clear()
    rc, out, err = gpxhost("health", "--url", backend, "--basic-auth", "alice:s3cret",
                           "--json-data", '{"timeout": 5}')
    assert rc == 0, err
    assert "health: OK" in out
    assert "details: {" in out
    gets = [h for (m, p, h, b) in Backend.requests if m == "GET" and p == "/"]
    assert gets and gets[-1].get("Authorization") == "Basic YWxpY2U6czNjcmV0"
    assert "s3cret" not in out + err


def test_health_custom_header(backend):
    Backend.requests.clear()
    rc, out, err = gpxhost("health", "--url", backend, "--json-data", '{"httpHeaderName1": "X-Api-Key"}',
                           "--secure", "httpHeaderValue1=k123")
    assert rc == 0, err
    gets = [h for (m, p, h, b) in Backend.requests if m == "GET" and p == "/"]
    assert gets and gets[-1].get("X-Api-Key") == "k123"


def test_health_refused():
    rc, out, err = gpxhost("health", "--url", f"http://127.0.0.1:{free_port()}")
    assert rc == 1
    assert "health: ERROR" in out
    assert "is the backend running?" in out + err


def test_resource_metrics(backend):
    rc, out, err = gpxhost("resource", "--url", backend, "--path", "metrics", "--body", '{"target":""}')
    assert rc == 0, err
    assert json.loads(out) == ["cpu", "mem"]
    assert "HTTP 200 application/json" in err


def test_resource_unknown_path(backend):
    rc, out, err = gpxhost("resource", "--url", backend, "--path", "nope")
    assert rc == 1
    assert "unknown resource path" in out
    assert "HTTP 404" in err


def test_metrics():
    rc, out, err = gpxhost("metrics")
    assert rc == 0, err
    assert "process_resident_memory_bytes" in out
    assert 'grpc_server_started_total{grpc_service="pluginv2.Diagnostics",grpc_method="CollectMetrics"' in out


def test_verbose_shows_plugin_logs():
    rc, out, err = gpxhost("metrics", "--verbose")
    assert rc == 0, err
    assert "plugin [info] serving" in err
    assert "handshake ok: unix" in err
    rc, out, err = gpxhost("metrics")
    assert "plugin [info]" not in err


# ---- the process and the handshake ---------------------------------------------------

def test_environment_and_handshake_as_grafana_does(tmp_path):
    dump = tmp_path / "env.txt"
    fake = script(tmp_path, "fake", f'env > "{dump}"\necho "1|2|unix|$PLUGIN_UNIX_SOCKET_DIR/none|grpc|"\n')
    rc, out, err = gpxhost("metrics", plugin=fake)
    assert rc == 3
    env = dict(l.split("=", 1) for l in dump.read_text().splitlines() if "=" in l)
    assert env["grafana_plugin_type"] == "datasource"
    assert env["PLUGIN_PROTOCOL_VERSIONS"] == "2"
    assert env["PLUGIN_MIN_PORT"] == "10000" and env["PLUGIN_MAX_PORT"] == "25000"
    assert os.path.basename(env["PLUGIN_UNIX_SOCKET_DIR"]).startswith("gpxhost-")
    assert "cannot connect to the plugin" in err


def test_bad_plugin_path(tmp_path):
    rc, out, err = gpxhost("metrics", plugin=str(tmp_path / "does-not-exist"))
    assert rc == 3
    assert "cannot start the plugin" in err and "no such file or directory" in err


def test_plugin_exits_before_handshake(tmp_path):
    fake = script(tmp_path, "fake", 'echo "This binary is a plugin, but something broke" >&2\nexit 4\n')
    rc, out, err = gpxhost("metrics", plugin=fake)
    assert rc == 3
    assert "plugin exited before handshake" in err
    assert "exit status 4" in err
    assert "This binary is a plugin, but something broke" in err


def test_plugin_without_cookie_note(tmp_path):
    # the real plugin, but with the cookie removed by a wrapper: its own note must be shown
    fake = script(tmp_path, "fake", f'unset grafana_plugin_type\nexec "{PLUGIN}"\n')
    rc, out, err = gpxhost("metrics", plugin=fake)
    assert rc == 3
    assert "plugin exited before handshake" in err
    assert "This binary is a plugin." in err


@pytest.mark.parametrize("line,message", [
    ("hello world", "unrecognized handshake line"),
    ("2|2|unix|/tmp/x|grpc|", "incompatible core API version"),
    ("1|1|unix|/tmp/x|grpc|", "incompatible API version"),
    ("1|2|udp|/tmp/x|grpc|", "unknown address type"),
    ("1|2|unix|/tmp/x|netrpc|", "unsupported plugin protocol"),
    ("1|2|unix|/tmp/x", "unsupported plugin protocol \"netrpc\""),
    ("1|2|tcp|127.0.0.1:notaport|grpc|", "invalid tcp address"),
])
def test_bad_handshake_lines(tmp_path, line, message):
    fake = script(tmp_path, "fake", f'echo "{line}"\nexec sleep 30\n')
    t = time.monotonic()
    rc, out, err = gpxhost("metrics", plugin=fake)
    assert rc == 3
    assert message in err
    assert "killed by signal 9" in err  # an unusable plugin is killed at once
    assert time.monotonic() - t < 10


def test_handshake_timeout(tmp_path):
    fake = script(tmp_path, "fake", "exec sleep 30\n")
    rc, out, err = gpxhost("metrics", "--start-timeout", "500ms", plugin=fake)
    assert rc == 3
    assert "timeout while waiting for the plugin to start" in err


def test_tcp_handshake(tmp_path):
    # the plugin's standalone mode announces tcp; a wrapper makes gpxhost use it
    fake = script(tmp_path, "fake", f'exec "{PLUGIN}" --standalone --address 127.0.0.1:0\n')
    rc, out, err = gpxhost("metrics", "--verbose", plugin=fake)
    assert rc == 0, err
    assert "handshake ok: tcp 127.0.0.1:" in err
    assert "process_open_fds" in out


# ---- usage -----------------------------------------------------------------------------

@pytest.mark.parametrize("args,message", [
    ([], "usage: gpxhost"),
    (["frobnicate"], "unknown command"),
    (["health"], "needs --url"),
    (["query", "--url", "http://x"], "at least one --target"),
    (["query", "--url", "http://x", "--target", "a", "--from", "yesterday"], "--from: not a time"),
    (["query", "--url", "http://x", "--target", "a", "--from", "now", "--to", "now-1h"], "time range is empty"),
    (["query", "--url", "http://x", "--target", "a", "--payload", "{x"], "--payload is not valid JSON"),
    (["health", "--url", "http://x", "--json-data", "[1]"], "must be a JSON object"),
    (["health", "--url", "http://x", "--target", "a"], "does not apply to the health command"),
    (["resource", "--url", "http://x"], "needs --path"),
    (["metrics", "--bogus"], "unknown flag"),
    (["metrics", "--timeout"], "needs a value"),
    (["metrics", "--timeout", "soon"], "not a duration"),
    (["health", "--url", "http://x", "--basic-auth", "nocolon"], "USER:PASSWORD"),
])
def test_usage_errors(args, message):
    rc, out, err = gpxhost(*args, plugin=None)
    assert rc == 2
    assert message in err


def test_help():
    rc, out, err = gpxhost("--help", plugin=None)
    assert rc == 0
    assert "usage: gpxhost <command>" in out


# ---- the reference backend, when another build produced it ------------------------------

@pytest.mark.skipif(not os.access(REFBACKEND, os.X_OK), reason="reference backend not built")
def test_against_reference_backend():
    port = free_port()
    rb = subprocess.Popen([REFBACKEND, "--listen", f"127.0.0.1:{port}"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            pytest.skip("reference backend did not listen (its command line may differ)")
        url = f"http://127.0.0.1:{port}"
        rc, out, err = gpxhost("health", "--url", url)
        assert rc == 0, out + err
        rc, out, err = gpxhost("query", "--url", url, "--target", "sine:2")
        assert "A: status 200" in out, out + err
    finally:
        rb.terminate()
        rb.wait(timeout=5)
