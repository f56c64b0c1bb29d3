"""Helpers for the integration tests: spawn the plugin binary the way Grafana
does, talk gRPC to it (grpcio generic API), talk raw HTTP/2 to it (h2), parse
its Prometheus metrics and its hclog JSON stderr.

The contract checked here is docs/behaviour.md.
"""

import grp
import json
import os
import re
import select
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROTO_DIR = REPO / "proto"
PLUGIN_ID = "seed-inhouse-datasource"
LOG_MODULE = "plugin." + PLUGIN_ID

HANDSHAKE_UNIX_RE = re.compile(r"^1\|2\|unix\|(/[^|\n]*)\|grpc\|\n$")
HANDSHAKE_TCP_RE = re.compile(r"^1\|2\|tcp\|([0-9.]+):(\d+)\|grpc\|\n$")
TIMESTAMP_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)$")
LEVELS = ("trace", "debug", "info", "warn", "error")

# gRPC status codes used by the contract.
OK, CANCELLED, UNKNOWN, INVALID_ARGUMENT, DEADLINE_EXCEEDED, NOT_FOUND = 0, 1, 2, 3, 4, 5
RESOURCE_EXHAUSTED, UNIMPLEMENTED, INTERNAL = 8, 12, 13

# Variables the harness controls itself; an inherited value must not leak
# into the child (PYTHONUNBUFFERED & co would also mask a missing fflush).
_SCRUB_EXACT = {
    "PYTHONUNBUFFERED", "PYTHONIOENCODING", "PYTHONDONTWRITEBYTECODE",
    "grafana_plugin_type", "TMPDIR", "_STDBUF_I", "_STDBUF_O", "_STDBUF_E",
}
_SCRUB_PREFIXES = ("PLUGIN_", "GF_PLUGIN")


def plugin_bin():
    return os.environ.get("PLUGIN_BIN") or str(REPO / "dist" / "gpx_inhouse_linux_amd64")


# For tests whose assertions are about time (a deadline met, a storm's
# duration): memcheck runs the plugin some 20-50x slower, so under
# `make valgrind` they are skipped; every other test still runs there.
under_valgrind = os.environ.get("VALGRIND") == "1"


def small_quarantine_env():
    """Extra env for a plugin whose RSS a test measures. ASan keeps freed
    memory in a quarantine (256 MiB by default), so every freed buffer shows
    up as RSS growth until that fills up; a small one keeps use-after-free
    detection for recent frees while making RSS a leak signal again. None for
    release builds and under valgrind."""
    if under_valgrind or not binary_is_sanitized():
        return None
    opts = os.environ.get("ASAN_OPTIONS", "")
    return {"ASAN_OPTIONS": (opts + ":" if opts else "") + "quarantine_size_mb=4"}


def binary_is_sanitized(path=None):
    """True when the binary carries the AddressSanitizer runtime, or runs
    under valgrind (`make valgrind`): either inflates RSS, so memory checks
    measure growth instead of absolute size."""
    if os.environ.get("VALGRIND") == "1":
        return True
    path = path or plugin_bin()
    try:
        data = Path(path).read_bytes()
    except OSError:
        return False
    if b"__asan_init" in data or b"AddressSanitizer" in data:
        return True
    try:
        out = subprocess.run(["ldd", path], capture_output=True, text=True, timeout=10).stdout
    except Exception:
        return False
    return "libasan" in out


def base_env():
    env = {}
    for k, v in os.environ.items():
        if k in _SCRUB_EXACT or k.startswith(_SCRUB_PREFIXES):
            continue
        if k == "LD_PRELOAD" and "stdbuf" in v:
            continue
        env[k] = v
    return env


def grafana_env(socket_dir=None, extra=None, cookie=True):
    """The environment Grafana gives a data source plugin."""
    env = base_env()
    if cookie:
        env["grafana_plugin_type"] = "datasource"
    env["PLUGIN_PROTOCOL_VERSIONS"] = "2"
    env["PLUGIN_MIN_PORT"] = "10000"
    env["PLUGIN_MAX_PORT"] = "25000"
    if socket_dir is not None:
        env["PLUGIN_UNIX_SOCKET_DIR"] = str(socket_dir)
    for k, v in (extra or {}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def short_tmpdir(prefix="gpx"):
    """A short directory path: sun_path is limited to 108 bytes."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


def other_group():
    """(name, gid) of an existing group that differs from our effective gid
    when possible, so that chgrp is observable."""
    egid = os.getegid()
    candidates = []
    if os.geteuid() == 0:
        for g in grp.getgrall():
            candidates.append((g.gr_name, g.gr_gid))
        preferred = [c for c in candidates if c[0] == "daemon"]
        candidates = preferred + candidates
    else:
        for gid in os.getgroups():
            try:
                candidates.append((grp.getgrgid(gid).gr_name, gid))
            except KeyError:
                pass
    for name, gid in candidates:
        if gid != egid:
            return name, gid
    return grp.getgrgid(egid).gr_name, egid


# --------------------------------------------------------------------------
# protobuf modules generated at session start

_PB = None


def generate_protos(outdir):
    global _PB
    outdir = str(outdir)
    protos = sorted(str(p.name) for p in PROTO_DIR.glob("*.proto"))
    subprocess.run(["protoc", "--python_out=" + outdir, "-I", str(PROTO_DIR)] + protos,
                   check=True, cwd=str(REPO))
    if outdir not in sys.path:
        sys.path.insert(0, outdir)
    import importlib
    mods = {name: importlib.import_module(name) for name in ("pluginv2_pb2", "goplugin_pb2", "health_pb2")}
    _PB = mods
    return mods


def pb():
    assert _PB is not None, "protobuf modules not generated yet"
    return _PB


# --------------------------------------------------------------------------
# the plugin process

class PluginProcess:
    """One running plugin binary with pipes for stdout and stderr."""

    def __init__(self, env, args=(), binary=None):
        self.binary = binary or plugin_bin()
        self.env = env
        self.args = list(args)
        self.stderr_lines = []          # decoded lines without the newline
        self.stderr_raw = bytearray()
        self.stdout_after = bytearray()  # anything after the handshake line
        self.handshake = None           # the raw first stdout line (str)
        self.socket_path = None
        self.tcp_address = None
        self.final_checked = False      # the test checked the exit status itself
        self.expected_exit = 0
        self._lock = threading.Lock()
        self._stdout_buf = bytearray()
        self.proc = subprocess.Popen(
            [self.binary] + self.args, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=True)
        self.pid = self.proc.pid
        self._err_thread = threading.Thread(target=self._read_stderr, daemon=True)
        self._err_thread.start()
        self._out_thread = None

    # -- pipes ---------------------------------------------------------------
    def _read_stderr(self):
        f = self.proc.stderr
        while True:
            line = f.readline()
            if not line:
                break
            with self._lock:
                self.stderr_raw += line
                self.stderr_lines.append(line.rstrip(b"\n").decode("utf-8", "replace"))

    def _drain_stdout(self):
        fd = self.proc.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            with self._lock:
                self.stdout_after += chunk

    def read_handshake(self, timeout=15.0):
        """Read the first stdout line without relying on EOF; returns it (str)
        or raises AssertionError. Anything after the newline is kept as
        stdout_after."""
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._stdout_buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    "no handshake line within %.1fs (stdout so far %r, stderr %r)"
                    % (timeout, bytes(self._stdout_buf), self.stderr_text()[-2000:]))
            r, _, _ = select.select([fd], [], [], min(left, 0.2))
            if not r:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                time.sleep(0.1)
                raise AssertionError(
                    "stdout closed before a handshake line (got %r, exit %r, stderr %r)"
                    % (bytes(self._stdout_buf), self.proc.poll(), self.stderr_text()[-2000:]))
            self._stdout_buf += chunk
        idx = self._stdout_buf.index(b"\n")
        line = bytes(self._stdout_buf[:idx + 1]).decode("utf-8", "replace")
        with self._lock:
            self.stdout_after += self._stdout_buf[idx + 1:]
        self.handshake = line
        m = HANDSHAKE_UNIX_RE.match(line)
        if m:
            self.socket_path = m.group(1)
        m = HANDSHAKE_TCP_RE.match(line)
        if m:
            self.tcp_address = (m.group(1), int(m.group(2)))
        self._out_thread = threading.Thread(target=self._drain_stdout, daemon=True)
        self._out_thread.start()
        return line

    def stderr_text(self):
        with self._lock:
            return bytes(self.stderr_raw).decode("utf-8", "replace")

    def stderr_snapshot(self):
        with self._lock:
            return list(self.stderr_lines)

    def log_records(self):
        """Parsed stderr records; a non-JSON line becomes {'__raw__': line}."""
        out = []
        for line in self.stderr_snapshot():
            try:
                rec = json.loads(line)
            except ValueError:
                rec = {"__raw__": line}
            out.append(rec)
        return out

    # -- lifecycle -------------------------------------------------------------
    @property
    def target(self):
        if self.socket_path:
            return "unix:" + self.socket_path
        host, port = self.tcp_address
        return "%s:%d" % (host, port)

    def alive(self):
        return self.proc.poll() is None

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        """Wait for exit; returns the exit status or None on timeout. Also
        waits for the pipe readers so collected output is complete."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self.join_pipes()
        return rc

    def join_pipes(self, timeout=5.0):
        self._err_thread.join(timeout)
        if self._out_thread is not None:
            self._out_thread.join(timeout)

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        """Stop with a signal and return the exit status (SIGKILL after
        timeout; then the status is reported as such)."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
            rc = self.wait(timeout)
            if rc is None:
                self.proc.kill()
                self.proc.wait(5)
                self.join_pipes()
                return "did not exit within %.0fs of %s (killed)" % (timeout, sig.name)
            return rc
        self.join_pipes()
        return self.proc.returncode

    def rss_kib(self):
        """VmRSS of the process in KiB (None if unavailable)."""
        try:
            with open("/proc/%d/status" % self.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None


def check_log_record(rec):
    """Return a list of problems with one hclog JSON stderr record."""
    problems = []
    if "__raw__" in rec:
        return ["not a JSON object: %r" % rec["__raw__"][:300]]
    if not isinstance(rec, dict):
        return ["not a JSON object: %r" % (rec,)]
    lvl = rec.get("@level")
    if not isinstance(lvl, str) or lvl not in LEVELS:
        problems.append("bad @level %r" % (lvl,))
    if not isinstance(rec.get("@message"), str):
        problems.append("@message missing or not a string: %r" % (rec.get("@message"),))
    ts = rec.get("@timestamp")
    if not isinstance(ts, str) or not TIMESTAMP_RE.match(ts):
        problems.append("bad @timestamp %r" % (ts,))
    if rec.get("@module") != LOG_MODULE:
        problems.append("@module %r != %r" % (rec.get("@module"), LOG_MODULE))
    return problems


def wait_for_path_gone(path, timeout):
    deadline = time.monotonic() + timeout
    while os.path.lexists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def socket_mode(path):
    st = os.stat(path)
    return stat.S_ISSOCK(st.st_mode), stat.S_IMODE(st.st_mode), st.st_gid


# --------------------------------------------------------------------------
# gRPC client (grpcio generic API)

def _identity(x):
    return x


class Grpc:
    """A channel plus typed callables for every method of the contract."""

    MAX = 2 ** 31 - 1

    def __init__(self, target, max_msg=None):
        import grpc
        self.grpc = grpc
        opts = [("grpc.max_send_message_length", max_msg or -1),
                ("grpc.max_receive_message_length", max_msg or -1),
                ("grpc.enable_retries", 0),
                # a channel of its own: every Grpc object is its own connection
                ("grpc.use_local_subchannel_pool", 1)]
        self.channel = grpc.insecure_channel(target, options=opts)
        P = pb()
        v2, gp, hl = P["pluginv2_pb2"], P["goplugin_pb2"], P["health_pb2"]
        self.v2, self.gp, self.hl = v2, gp, hl

        def uu(path, req, resp):
            return self.channel.unary_unary(path, request_serializer=req.SerializeToString,
                                            response_deserializer=resp.FromString)

        def us(path, req, resp):
            return self.channel.unary_stream(path, request_serializer=req.SerializeToString,
                                             response_deserializer=resp.FromString)

        self.health_check = uu("/grpc.health.v1.Health/Check", hl.HealthCheckRequest, hl.HealthCheckResponse)
        self.shutdown = uu("/plugin.GRPCController/Shutdown", gp.Empty, gp.Empty)
        self.stream_stdio = us("/plugin.GRPCStdio/StreamStdio", gp.Empty, gp.StdioData)
        self.start_stream = self.channel.stream_stream(
            "/plugin.GRPCBroker/StartStream", request_serializer=gp.ConnInfo.SerializeToString,
            response_deserializer=gp.ConnInfo.FromString)
        self.check_health = uu("/pluginv2.Diagnostics/CheckHealth", v2.CheckHealthRequest, v2.CheckHealthResponse)
        self.collect_metrics = uu("/pluginv2.Diagnostics/CollectMetrics", v2.CollectMetricsRequest,
                                  v2.CollectMetricsResponse)
        self.query_data = uu("/pluginv2.Data/QueryData", v2.QueryDataRequest, v2.QueryDataResponse)
        self.call_resource = us("/pluginv2.Resource/CallResource", v2.CallResourceRequest,
                                v2.CallResourceResponse)

    def raw_unary(self, path):
        return self.channel.unary_unary(path, request_serializer=_identity, response_deserializer=_identity)

    def raw_stream(self, path):
        return self.channel.unary_stream(path, request_serializer=_identity, response_deserializer=_identity)

    def wait_ready(self, timeout=10.0):
        self.grpc.channel_ready_future(self.channel).result(timeout=timeout)

    def metrics_text(self, timeout=10.0):
        resp = self.collect_metrics(self.v2.CollectMetricsRequest(
            pluginContext=self.v2.PluginContext(pluginId=PLUGIN_ID)), timeout=timeout)
        return resp.metrics.prometheus.decode("utf-8")

    def close(self):
        self.channel.close()


def plugin_context(url="", with_ds=True):
    v2 = pb()["pluginv2_pb2"]
    ctx = v2.PluginContext(orgId=1, pluginId=PLUGIN_ID, pluginVersion="0.1.0",
                           userAgent="Grafana/11.2.0 (linux; amd64)",
                           user=v2.User(login="admin", name="admin", role="Admin"))
    if with_ds:
        ctx.dataSourceInstanceSettings.CopyFrom(v2.DataSourceInstanceSettings(
            id=7, uid="ds-test", name="In-house", url=url, jsonData=b"{}", lastUpdatedMS=1700000000000))
    return ctx


def check_health_request(**kw):
    v2 = pb()["pluginv2_pb2"]
    return v2.CheckHealthRequest(pluginContext=plugin_context(**kw))


def query_data_request(refids=("A",), json_extra=None, **kw):
    v2 = pb()["pluginv2_pb2"]
    req = v2.QueryDataRequest(pluginContext=plugin_context(**kw))
    for r in refids:
        model = {"refId": r, "target": "cpu.load"}
        if json_extra:
            model.update(json_extra)
        req.queries.add(refId=r, maxDataPoints=1000, intervalMS=1000,
                        timeRange=v2.TimeRange(fromEpochMS=1700000000000, toEpochMS=1700003600000),
                        json=json.dumps(model).encode())
    return req


# --------------------------------------------------------------------------
# Prometheus text exposition parsing

_SAMPLE_RE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)(\s+-?\d+)?$')
_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')


def _parse_labels(text):
    labels = {}
    body = text[1:-1]
    pos = 0
    while pos < len(body):
        m = _LABEL_RE.match(body, pos)
        if not m:
            raise ValueError("bad label set %r" % text)
        val = m.group(2).replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
        labels[m.group(1)] = val
        pos = m.end()
    return labels


def parse_prometheus(text):
    """Parse text exposition 0.0.4; returns (samples, types) where samples is
    a list of (name, labels dict, float value). Raises ValueError on syntax
    errors."""
    samples, types = [], {}
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 2 and parts[1] == "TYPE":
                if len(parts) < 4 or parts[3].strip() not in ("counter", "gauge", "histogram", "summary", "untyped"):
                    raise ValueError("line %d: bad TYPE line %r" % (n, line))
                types[parts[2]] = parts[3].strip()
            continue
        m = _SAMPLE_RE.match(line)
        if not m:
            raise ValueError("line %d: not a sample: %r" % (n, line))
        labels = _parse_labels(m.group(2)) if m.group(2) else {}
        raw = m.group(3)
        try:
            value = float(raw)
        except ValueError:
            raise ValueError("line %d: bad value %r" % (n, raw))
        samples.append((m.group(1), labels, value))
    return samples, types


def metric_values(samples, name, **labels):
    return [v for (n, l, v) in samples if n == name and all(l.get(k) == val for k, val in labels.items())]


def handled_count(samples, method, code, service_suffix=None):
    """Sum of grpc_server_handled_total for a method/code; the service label
    may be the full proto name or end with it."""
    total = 0.0
    for n, l, v in samples:
        if n != "grpc_server_handled_total":
            continue
        if l.get("grpc_method") != method or l.get("grpc_code") != code:
            continue
        if service_suffix and not (l.get("grpc_service", "") == service_suffix
                                   or l.get("grpc_service", "").endswith("." + service_suffix)
                                   or service_suffix.endswith("." + l.get("grpc_service", "\0"))):
            continue
        total += v
    return total


# --------------------------------------------------------------------------
# gRPC framing helpers

def grpc_frame(payload, compressed=False, length=None):
    n = len(payload) if length is None else length
    return bytes([1 if compressed else 0]) + n.to_bytes(4, "big") + payload


def parse_grpc_messages(data):
    msgs, pos = [], 0
    while pos + 5 <= len(data):
        flag = data[pos]
        n = int.from_bytes(data[pos + 1:pos + 5], "big")
        msgs.append((flag, bytes(data[pos + 5:pos + 5 + n])))
        pos += 5 + n
    return msgs, bytes(data[pos:])


# --------------------------------------------------------------------------
# raw HTTP/2 client on h2

class H2Stream:
    def __init__(self, sid):
        self.sid = sid
        self.header_blocks = []   # list of lists of (name, value)
        self.data = bytearray()
        self.ended = False
        self.reset = None         # error code if RST_STREAM received

    @property
    def done(self):
        return self.ended or self.reset is not None

    def all_headers(self):
        out = {}
        for block in self.header_blocks:
            for k, v in block:
                out.setdefault(k, v)
        return out

    def first_headers(self):
        return dict(self.header_blocks[0]) if self.header_blocks else {}

    def last_headers(self):
        return dict(self.header_blocks[-1]) if self.header_blocks else {}

    def grpc_status(self):
        st = self.last_headers().get("grpc-status")
        return None if st is None else int(st)

    def grpc_message(self):
        from urllib.parse import unquote
        return unquote(self.last_headers().get("grpc-message", ""))


class H2Client:
    """A minimal h2c (prior knowledge) client over a unix socket or TCP."""

    def __init__(self, socket_path, local_settings=None, auto_ack=True, connect_timeout=5.0, conn_cls=None):
        import h2.config
        import h2.connection
        import h2.settings
        import h2.events
        self.h2 = h2.events
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(connect_timeout)
        self.sock.connect(socket_path)
        self.sock.setblocking(False)
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = (conn_cls or h2.connection.H2Connection)(cfg)
        if local_settings:
            values = {h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100,
                      h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 65536}
            values.update(local_settings)
            self.conn.local_settings = h2.settings.Settings(client=True, initial_values=values)
        self.auto_ack = auto_ack
        self.streams = {}
        self.remote_settings_seen = False
        self.remote_settings = {}
        self.goaway = None
        self.closed = False
        self.conn.initiate_connection()

    # -- output ------------------------------------------------------------------
    def flush(self, timeout=10.0):
        data = self.conn.data_to_send()
        self._sendall(data, timeout)

    def _sendall(self, data, timeout=10.0):
        view = memoryview(data)
        deadline = time.monotonic() + timeout
        while view:
            try:
                n = self.sock.send(view)
                view = view[n:]
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError("peer is not reading")
                # keep reading while we wait so that neither side deadlocks
                self._read_once(0.05)
            except (BrokenPipeError, ConnectionResetError):
                self.closed = True
                raise

    def grpc_headers(self, path, timeout=None, extra=None):
        hdrs = [(":method", "POST"), (":scheme", "http"), (":path", path),
                (":authority", "unused"), ("content-type", "application/grpc"),
                ("te", "trailers"), ("user-agent", "pytest-h2")]
        if timeout:
            hdrs.append(("grpc-timeout", timeout))
        hdrs.extend(extra or [])
        return hdrs

    def start_call(self, path, timeout=None, extra=None, end_stream=False):
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, self.grpc_headers(path, timeout, extra), end_stream=end_stream)
        self.streams[sid] = H2Stream(sid)
        return sid

    def send(self, sid, data, end_stream=False, chunk=None):
        if chunk:
            for i in range(0, len(data), chunk):
                last = i + chunk >= len(data)
                self._send_data(sid, data[i:i + chunk], end_stream and last)
            if not data and end_stream:
                self._send_data(sid, b"", True)
        else:
            self._send_data(sid, data, end_stream)
        self.flush()

    def _send_data(self, sid, data, end_stream):
        # respect flow control: pump input until the window opens
        deadline = time.monotonic() + 10
        while len(data) > self.conn.local_flow_control_window(sid):
            if time.monotonic() > deadline:
                raise TimeoutError("flow-control window stays closed")
            self.flush()
            self._read_once(0.05)
        self.conn.send_data(sid, data, end_stream=end_stream)

    def call(self, path, payload, timeout=None, extra=None, wait=10.0):
        sid = self.start_call(path, timeout, extra)
        self.send(sid, payload, end_stream=True)
        return self.wait(sid, wait)

    # -- input -------------------------------------------------------------------
    def _read_once(self, timeout):
        if self.closed:
            return False
        r, _, _ = select.select([self.sock], [], [], timeout)
        if not r:
            return False
        try:
            data = self.sock.recv(1 << 20)
        except BlockingIOError:
            return False
        except ConnectionResetError:
            self.closed = True
            return True
        if not data:
            self.closed = True
            return True
        self._handle(self.conn.receive_data(data))
        out = self.conn.data_to_send()
        if out:
            try:
                self._sendall(out)
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                pass
        return True

    def _handle(self, events):
        ev = self.h2
        for e in events:
            sid = getattr(e, "stream_id", None)
            st = self.streams.get(sid) if sid else None
            if isinstance(e, (ev.ResponseReceived, ev.TrailersReceived, ev.InformationalResponseReceived)):
                if st:
                    st.header_blocks.append(list(e.headers))
            elif isinstance(e, ev.DataReceived):
                if st:
                    st.data += e.data
                if self.auto_ack and e.flow_controlled_length:
                    try:
                        self.conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
                    except Exception:
                        pass
            elif isinstance(e, ev.StreamEnded):
                if st:
                    st.ended = True
            elif isinstance(e, ev.StreamReset):
                if st:
                    st.reset = int(e.error_code)
            elif isinstance(e, ev.RemoteSettingsChanged):
                self.remote_settings_seen = True
                for code, cs in e.changed_settings.items():
                    self.remote_settings[int(code)] = cs.new_value
            elif isinstance(e, ev.ConnectionTerminated):
                self.goaway = e

    def pump(self, timeout):
        """Read and process whatever arrives within timeout."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._read_once(min(left, 0.1))

    def pump_until(self, cond, timeout):
        deadline = time.monotonic() + timeout
        while not cond():
            if self.closed or time.monotonic() > deadline:
                return cond()
            self.flush()
            self._read_once(min(0.1, max(0.0, deadline - time.monotonic())))
        return True

    def wait(self, sid, timeout=10.0):
        st = self.streams[sid]
        self.pump_until(lambda: st.done, timeout)
        return st

    def handshake(self, timeout=5.0):
        self.flush()
        self.pump_until(lambda: self.remote_settings_seen, timeout)
        return self.remote_settings_seen

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
