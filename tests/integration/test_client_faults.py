"""Client-side faults against the real plugin binary (issue 5, "Fault and load
tests"): rapid-reset storms, connections dropped mid-request, oversized and
never-ending header blocks, SETTINGS/PING floods from a client that never
reads, and zero-window abuse.

Every attack is written as raw HTTP/2 frames (by hand: h2 refuses to produce
most of them). In every test a well-behaved grpcio client on its own
connection keeps calling the plugin during and after the attack and must get
correct answers every time; afterwards the process is alive, its RSS grew by
a bounded amount, its file descriptors are back to the baseline and no call
is left in flight (plugin_grpc_calls_in_flight from CollectMetrics).
"""

import os
import select
import socket
import struct
import threading
import time

import hpack
import pytest

import pluginproc as pp

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
END_STREAM = ACK = 0x1
END_HEADERS = 0x4
CANCEL = 0x8
SETTINGS_INITIAL_WINDOW_SIZE = 0x4

HEALTH = "/grpc.health.v1.Health/Check"
CHECK_HEALTH = "/pluginv2.Diagnostics/CheckHealth"
QUERY_DATA = "/pluginv2.Data/QueryData"

# RSS growth allowed during one attack. The sanitizer build runs with a small
# ASan quarantine (below) but its allocator still caches freed chunks per size
# class; a release build must stay far below this.
RSS_GROWTH_LIMIT_KIB = 64 * 1024


# ---------------------------------------------------------------- raw HTTP/2

def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def settings_frame(pairs=()):
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def hpack_int(value, prefix_bits, first=0):
    top = (1 << prefix_bits) - 1
    if value < top:
        return bytes([first | value])
    out = [first | top]
    value -= top
    while value >= 128:
        out.append((value & 127) | 128)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_str(s):
    return hpack_int(len(s), 7) + s


def lit(name, value):
    """Literal header field without indexing, new name: no dynamic-table state."""
    return b"\x00" + hpack_str(name) + hpack_str(value)


def lit_indexed(name, value):
    """Literal with incremental indexing: becomes dynamic-table entry 62."""
    return b"\x40" + hpack_str(name) + hpack_str(value)


def request_block(path, extra=b""):
    # :method POST (static 3) and :scheme http (static 6) are indexed fields
    return (b"\x83\x86" + lit(b":path", path.encode()) + lit(b":authority", b"plugin")
            + lit(b"content-type", b"application/grpc") + lit(b"te", b"trailers") + extra)


def headers_frames(sid, block, end_stream=False, max_frame=16384):
    """HEADERS + CONTINUATION frames carrying one header block."""
    chunks = [block[i:i + max_frame] for i in range(0, len(block), max_frame)] or [b""]
    out = []
    for i, ch in enumerate(chunks):
        last = i == len(chunks) - 1
        flags = END_HEADERS if last else 0
        if i == 0:
            out.append(frame(HEADERS, flags | (END_STREAM if end_stream else 0), sid, ch))
        else:
            out.append(frame(CONTINUATION, flags, sid, ch))
    return b"".join(out)


def data_frames(sid, body, end_stream=True, max_frame=16384):
    chunks = [body[i:i + max_frame] for i in range(0, len(body), max_frame)] or [b""]
    return b"".join(frame(DATA, END_STREAM if (end_stream and i == len(chunks) - 1) else 0, sid, ch)
                    for i, ch in enumerate(chunks))


def request_frames(sid, path, message, extra_headers=b""):
    return headers_frames(sid, request_block(path, extra_headers)) + data_frames(sid, pp.grpc_frame(message))


def health_msg():
    return pp.pb()["health_pb2"].HealthCheckRequest(service="plugin").SerializeToString()


class RawConn:
    """One attacker connection speaking hand-made frames. A reader thread
    (unless read=False) parses what the plugin sends: counts per frame type,
    the GOAWAY, RST_STREAM codes and which streams got END_STREAM. With
    read=True the plugin's SETTINGS are acknowledged before the constructor
    returns, so its advertised windows (1 MiB per stream) apply."""

    def __init__(self, plugin, settings=(), read=True, preface=True):
        if plugin.socket_path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(plugin.socket_path)
        else:
            self.sock = socket.create_connection(plugin.tcp_address, timeout=5)
        self.sock.settimeout(10)
        self.lock = threading.Lock()
        self.counts = {}
        self.goaway = None          # (last stream id, error code)
        self.resets = {}            # stream id -> error code
        self.ended = set()          # streams that got END_STREAM
        self.grpc_status = {}       # stream id -> grpc-status seen in a header block (raw scan)
        self.eof = False
        self.send_failed = None
        self.ping_acks = 0
        self.send_lock = threading.Lock()
        self.remote_settings = {}
        self.decoder = hpack.Decoder()
        self._hblock = bytearray()
        self.acking = False
        self.closing = False
        self._reader = None
        if preface:
            self.send(PREFACE + settings_frame(settings))
        if read:
            self._reader = threading.Thread(target=self._read_loop, daemon=True)
            self._reader.start()
            if preface:
                # acknowledge the plugin's SETTINGS before anything else is sent
                self.wait(lambda: self.counts.get(SETTINGS) or self.eof, 5)
                self.send(frame(SETTINGS, ACK, 0))
            self.acking = True

    def send(self, data):
        if self.send_failed:
            return False
        try:
            with self.send_lock:
                self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError, socket.timeout, OSError) as e:
            self.send_failed = type(e).__name__
            return False

    def _read_loop(self):
        buf = bytearray()
        while True:
            try:
                if self.closing:
                    return
                r, _, _ = select.select([self.sock], [], [], 0.05)
                if not r:
                    continue
                chunk = self.sock.recv(1 << 20)
            except (OSError, ValueError):
                chunk = b""
            if not chunk:
                self.eof = True
                return
            buf += chunk
            pos = 0
            while len(buf) - pos >= 9:
                n = int.from_bytes(buf[pos:pos + 3], "big")
                if len(buf) - pos < 9 + n:
                    break
                t, fl = buf[pos + 3], buf[pos + 4]
                sid = int.from_bytes(buf[pos + 5:pos + 9], "big") & 0x7FFFFFFF
                payload = bytes(buf[pos + 9:pos + 9 + n])
                pos += 9 + n
                with self.lock:
                    self.counts[t] = self.counts.get(t, 0) + 1
                    if t == GOAWAY and self.goaway is None:
                        self.goaway = (int.from_bytes(payload[0:4], "big") & 0x7FFFFFFF,
                                       int.from_bytes(payload[4:8], "big"))
                    elif t == RST_STREAM:
                        self.resets[sid] = int.from_bytes(payload[:4], "big")
                    if t == SETTINGS and not fl & ACK and self.acking:
                        threading.Thread(target=self.send, args=(frame(SETTINGS, ACK, 0),), daemon=True).start()
                    elif t == PING and fl & ACK:
                        self.ping_acks += 1
                    elif t == SETTINGS and not fl & ACK:
                        for i in range(0, len(payload) - 5, 6):
                            k, v = struct.unpack(">HI", payload[i:i + 6])
                            self.remote_settings[k] = v
                    elif t in (HEADERS, DATA) and fl & END_STREAM:
                        self.ended.add(sid)
                    if t in (HEADERS, CONTINUATION):
                        if t == HEADERS:
                            hb = bytearray(payload)
                            if fl & 0x8:  # PADDED
                                hb = hb[1:len(hb) - hb[0]]
                            if fl & 0x20:  # PRIORITY
                                hb = hb[5:]
                        else:
                            hb = self._hblock + payload
                        if fl & END_HEADERS:
                            for k, v in self.decoder.decode(bytes(hb), raw=True):
                                if k == b"grpc-status":
                                    self.grpc_status[sid] = v.decode("ascii", "replace")
                            self._hblock = bytearray()
                        else:
                            self._hblock = hb
            del buf[:pos]

    def wait(self, cond, timeout):
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                return cond()
            time.sleep(0.02)
        return True

    def ping_roundtrip(self, timeout=5):
        with self.lock:
            before = self.ping_acks
        if not self.send(frame(PING, 0, 0, b"probe-01")):
            return False
        return self.wait(lambda: self.ping_acks > before, timeout)

    def close(self, rst=False):
        self.closing = True
        if self._reader:
            self._reader.join(2)
        if rst:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        try:
            self.sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------- the bystander

def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def fd_list(pid):
    out = []
    for f in os.listdir("/proc/%d/fd" % pid):
        try:
            out.append(os.readlink("/proc/%d/fd/%s" % (pid, f)))
        except OSError:
            pass
    return sorted(out)


def wait_for(cond, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


class Bystander:
    """A well-behaved grpcio client on its own connection calling the plugin
    in a loop (Health/Check, CheckHealth, QueryData) and checking every answer;
    a second thread samples the plugin's RSS."""

    def __init__(self, plugin):
        self.p = plugin
        self.g = pp.Grpc(plugin.target)
        self.g.wait_ready(10)
        self.ok = 0
        self.errors = []
        self.max_latency = 0.0
        self.stop_ev = threading.Event()
        self.rss0 = plugin.rss_kib()
        self.rss_peak = self.rss0
        self.t = threading.Thread(target=self._loop, daemon=True)
        self.s = threading.Thread(target=self._sample, daemon=True)

    def call_once(self, i):
        g = self.g
        t0 = time.monotonic()
        kind = i % 3
        if kind == 0:
            r = g.health_check(g.hl.HealthCheckRequest(service="plugin"), timeout=5)
            good = r.status == 1
        elif kind == 1:
            r = g.check_health(pp.check_health_request(), timeout=5)
            good = r.status == 2
        else:
            r = g.query_data(pp.query_data_request(("A", "B")), timeout=5)
            good = set(r.responses) == {"A", "B"}
        dt = time.monotonic() - t0
        self.max_latency = max(self.max_latency, dt)
        if not good:
            raise AssertionError("wrong answer to call kind %d: %r" % (kind, r))

    def _loop(self):
        i = 0
        while not self.stop_ev.is_set():
            try:
                self.call_once(i)
                self.ok += 1
            except Exception as e:  # grpc.RpcError or a wrong answer
                self.errors.append("%s: %s" % (type(e).__name__, str(e)[:300]))
            i += 1
            time.sleep(0.005)

    def _sample(self):
        while not self.stop_ev.is_set():
            v = self.p.rss_kib()
            if v:
                self.rss_peak = max(self.rss_peak, v)
            time.sleep(0.02)

    def start(self):
        # warm up: first answers of each kind, allocator pools, then the baselines
        for i in range(30):
            self.call_once(i)
        self.rss0 = self.p.rss_kib()
        self.rss_peak = self.rss0
        self.fds0 = open_fds(self.p.pid)
        self.fds0_list = fd_list(self.p.pid)
        self.t.start()
        self.s.start()
        return self

    def served_during(self, timeout=5):
        """At least a few more correct answers arrive within timeout (checked
        while the attack is still running)."""
        start = self.ok
        return wait_for(lambda: self.ok >= start + 3 or self.errors, timeout) and not self.errors

    def finish(self, what):
        """Stop the loop and check everything the tests promise afterwards."""
        assert self.p.alive(), "%s: the plugin died; stderr:\n%s" % (what, self.p.stderr_text()[-3000:])
        # still served after the attack
        for i in range(6):
            self.call_once(i)
        self.stop_ev.set()
        self.t.join(10)
        self.s.join(2)
        assert not self.errors, "%s: the bystander got %d errors, e.g. %s" % (what, len(self.errors), self.errors[:3])
        assert self.ok > 0
        assert self.max_latency < 5, "%s: a bystander call took %.1fs" % (what, self.max_latency)
        growth = self.rss_peak - self.rss0
        info = "%s: RSS baseline %d KiB, peak %d KiB (+%d KiB); bystander %d calls, max latency %.2fs" % (
            what, self.rss0, self.rss_peak, growth, self.ok, self.max_latency)
        print(info)
        assert growth < RSS_GROWTH_LIMIT_KIB, info
        # file descriptors back to the baseline (the attackers are gone)
        back = wait_for(lambda: open_fds(self.p.pid) <= self.fds0, 10)
        assert back, "%s: %d fds open, baseline %d:\nnow %r\nbefore %r" % (
            what, open_fds(self.p.pid), self.fds0, fd_list(self.p.pid), self.fds0_list)
        # nothing left in flight (the CollectMetrics call itself may count)
        last = [None]

        def idle():
            samples, _ = pp.parse_prometheus(self.g.metrics_text())
            last[0] = pp.metric_values(samples, "plugin_grpc_calls_in_flight")
            return last[0] and last[0][0] <= 1

        assert wait_for(idle, 10, 0.1), "%s: plugin_grpc_calls_in_flight %r" % (what, last[0])
        samples, _ = pp.parse_prometheus(self.g.metrics_text())
        conns = pp.metric_values(samples, "plugin_h2_connections_active")
        assert conns and conns[0] <= 1, "%s: plugin_h2_connections_active %r" % (what, conns)
        self.g.close()
        return info


@pytest.fixture
def target(spawn):
    p = spawn(extra_env=pp.small_quarantine_env())
    yield p


@pytest.fixture
def tcp_target(spawn):
    p = spawn(extra_env=pp.small_quarantine_env(), args=["--standalone"])
    assert p.tcp_address, p.handshake
    yield p


def hanging_backend():
    """A TCP port that accepts connections (kernel backlog) and never answers:
    calls to it stay in flight until cancelled."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(512)
    return s, "http://127.0.0.1:%d" % s.getsockname()[1]


def metric(g, name):
    samples, _ = pp.parse_prometheus(g.metrics_text())
    v = pp.metric_values(samples, name)
    return v[0] if v else None


class Attack(threading.Thread):
    """Runs one_round(i) again and again (a fresh attacker connection each
    time) for `seconds`, at least once; keeps each round's result. An
    exception in a round stops the attack and is re-raised by join_checked."""

    def __init__(self, one_round, seconds=3.0, max_rounds=None):
        super().__init__(daemon=True)
        self.one_round = one_round
        self.seconds = seconds
        self.max_rounds = max_rounds
        self.results = []
        self.error = None

    def run(self):
        end = time.monotonic() + self.seconds
        i = 0
        while True:
            try:
                self.results.append(self.one_round(i))
            except BaseException as e:  # an assertion inside a round
                self.error = e
                return
            i += 1
            if time.monotonic() >= end or (self.max_rounds and i >= self.max_rounds):
                return

    def join_checked(self, timeout=30):
        self.join(timeout)
        assert not self.is_alive(), "the attack did not finish"
        if self.error is not None:
            raise self.error
        return self.results


def attack_while_serving(by, one_round, seconds=3.0, max_rounds=None):
    """Starts the attack, proves the bystander gets correct answers while it
    is still going on, then waits for its end and returns the rounds' results."""
    a = Attack(one_round, seconds, max_rounds)
    a.start()
    time.sleep(min(0.5, seconds / 4))
    before = by.ok
    served = by.served_during()
    still = a.is_alive()
    assert served, "the bystander was not served during the attack: %s" % by.errors[:3]
    assert still or a.error, "the attack ended before the bystander's calls were checked"
    results = a.join_checked()
    assert by.ok >= before + 3
    return results


# ---------------------------------------------------------------- 1. rapid reset

@pytest.mark.parametrize("with_request", [False, True], ids=["headers-rst", "request-rst"])
def test_rapid_reset_storm(target, with_request):
    """CVE-2023-44487: a connection opens and at once resets tens of
    thousands of streams (and the attacker reconnects for more). The plugin
    keeps up or sends GOAWAY; nobody else notices."""
    p = target
    by = Bystander(p).start()
    N = 30000
    msg = pp.check_health_request().SerializeToString()
    block = request_block(CHECK_HEALTH)

    def storm(_):
        c = RawConn(p)
        batch, sent, t0 = [], 0, time.monotonic()
        for i in range(N):
            sid = 1 + 2 * i
            batch.append(frame(HEADERS, END_HEADERS, sid, block))
            if with_request:  # the handler starts, then the client cancels
                batch.append(frame(DATA, END_STREAM, sid, pp.grpc_frame(msg)))
            batch.append(frame(RST_STREAM, 0, sid, struct.pack(">I", CANCEL)))
            if len(batch) >= 3000 or i == N - 1:
                if not c.send(b"".join(batch)):
                    break
                sent, batch = i + 1, []
                if c.goaway:
                    break
        elapsed = time.monotonic() - t0
        c.wait(lambda: c.goaway is not None or c.eof, 2)
        if c.goaway is None:
            # no GOAWAY: then the connection must still be fully usable
            assert not c.eof, "connection closed without GOAWAY"
            assert c.ping_roundtrip(), "no PING ACK after the storm"
            outcome = "kept up with %d streams" % sent
        else:
            # the plugin cut the storm short well before its end
            assert c.goaway[0] < 2 * N
            outcome = "GOAWAY(last %d, error %d)" % c.goaway
        c.close()
        return outcome, sent, round(elapsed, 2)

    results = attack_while_serving(by, storm)
    print("rapid reset (%s): %d connections: %s" % ("request-rst" if with_request else "headers-rst",
                                                  len(results), sorted(set(r[0] for r in results))))
    by.finish("rapid reset")


# ---------------------------------------------------------------- 2. dropped mid-request

@pytest.mark.parametrize("variant", ["headers-only", "partial-message", "tcp-rst", "in-flight"])
def test_connections_dropped_mid_request(tcp_target, variant):
    """Many connections send a request's HEADERS (and part of its message,
    or all of it while the backend hangs) and then vanish: FIN, or RST with
    SO_LINGER 0. Nothing of them stays behind."""
    p = tcp_target
    by = Bystander(p).start()
    hang, url = hanging_backend()
    # a data source of its own: the bystander's (same uid, no URL) is cached
    big = pp.query_data_request(["R%03d" % i for i in range(200)], json_extra={"pad": "x" * 2000}, url=url)
    health_big = pp.check_health_request(url=url)
    for req in (big, health_big):
        req.pluginContext.dataSourceInstanceSettings.uid = "ds-hanging"
    big, health_big = big.SerializeToString(), health_big.SerializeToString()
    per_round = 25

    def one_round(r):
        conns = []
        for k in range(per_round):
            c = RawConn(p)
            path, msg = (QUERY_DATA, big) if k % 2 == 0 else (CHECK_HEALTH, health_big)
            if variant == "headers-only":
                c.send(headers_frames(1, request_block(path)))
            elif variant in ("partial-message", "tcp-rst"):
                body = pp.grpc_frame(msg)
                c.send(headers_frames(1, request_block(path))
                       + data_frames(1, body[:len(body) // 3], end_stream=False))
            else:  # the whole request: the handler runs (the backend hangs) when the socket goes
                c.send(request_frames(1, path, msg))
            conns.append(c)
        if variant == "in-flight":
            n = wait_for(lambda: (metric(by.g, "plugin_grpc_calls_in_flight") or 0) >= per_round, 5)
            assert n, "the hanging calls never started (in flight: %r)" % metric(by.g, "plugin_grpc_calls_in_flight")
        for c in conns:
            c.close(rst=(variant in ("tcp-rst", "in-flight")))
        return len(conns)

    try:
        results = attack_while_serving(by, one_round, seconds=3, max_rounds=8)
    finally:
        hang.close()
    print("dropped mid-request (%s): %d connections" % (variant, sum(results)))
    by.finish("dropped mid-request (%s)" % variant)


# ---------------------------------------------------------------- 3. oversized headers

def _followup_ok(c, sid):
    """A normal request on the same connection is still answered OK."""
    c.send(request_frames(sid, HEALTH, health_msg()))
    return c.wait(lambda: sid in c.ended, 5) and c.grpc_status.get(sid) == "0"


@pytest.mark.parametrize("shape", ["many-small", "hpack-bomb", "one-mib", "single-huge-field"])
def test_oversized_header_block(target, shape):
    """A header list far over the advertised SETTINGS_MAX_HEADER_LIST_SIZE
    is refused (the stream reset or the connection closed) and never
    answered as if it were fine; nothing is buffered."""
    p = target
    by = Bystander(p).start()
    if shape == "many-small":
        # one dynamic-table entry referenced 16 000 times: 576 KB decoded
        extra = lit_indexed(b"x-a", b"b") + b"\xbe" * 16000
    elif shape == "hpack-bomb":
        # a 4000-byte entry referenced 12 000 times: 48 MB decoded
        extra = lit_indexed(b"x-bomb", b"v" * 4000) + b"\xbe" * 12000
    elif shape == "one-mib":
        extra = b"".join(lit(b"x-pad-%04d" % i, b"a" * 1000) for i in range(1000))
    else:
        extra = lit(b"x-huge", b"h" * (1 << 20))

    def attempt(_):
        c = RawConn(p)
        c.send(headers_frames(1, request_block(HEALTH, extra))
               + frame(DATA, END_STREAM, 1, pp.grpc_frame(health_msg())))
        c.wait(lambda: 1 in c.resets or 1 in c.ended or c.goaway or c.eof, 10)
        assert not (1 in c.ended and c.grpc_status.get(1) == "0"), \
            "%s: a %d-byte header block was answered OK" % (shape, len(extra))
        assert 1 in c.resets or c.goaway, "%s: neither RST_STREAM nor GOAWAY (eof %r)" % (shape, c.eof)
        if c.goaway is None:
            outcome = "RST_STREAM(error %d)" % c.resets[1]
            assert _followup_ok(c, 3), "%s: the connection is unusable after the reset" % shape
        else:
            outcome = "GOAWAY(last %d, error %d)" % c.goaway
        c.close()
        return outcome

    results = attack_while_serving(by, attempt, seconds=2)
    print("oversized headers (%s): %d attempts: %s" % (shape, len(results), sorted(set(results))))
    by.finish("oversized headers (%s)" % shape)


def test_continuation_flood(target):
    """HEADERS without END_HEADERS followed by CONTINUATION frames that never
    end the block (the 2024 CONTINUATION flood), full or empty frames: the
    connection is closed early and memory stays bounded."""
    p = target
    by = Bystander(p).start()
    full = b"".join(lit(b"x-c%03d" % i, b"c" * 150) for i in range(100))[:16000]

    def flood(i):
        kind = "full" if i % 2 == 0 else "empty"
        c = RawConn(p)
        c.send(frame(HEADERS, 0, 1, request_block(HEALTH)))
        blob = frame(CONTINUATION, 0, 1, full if kind == "full" else b"") * 8
        t0 = time.monotonic()
        n = 0
        while time.monotonic() - t0 < 4 and not c.goaway and not c.eof:
            if not c.send(blob):
                break
            n += 8
        c.wait(lambda: c.goaway or c.eof, 5)
        assert c.goaway or c.eof, "%s CONTINUATION flood: %d frames accepted, connection still open" % (kind, n)
        c.close()
        return kind, n, c.goaway

    results = attack_while_serving(by, flood, seconds=2)
    print("continuation flood: %d connections, at most %d CONTINUATION frames sent before the close; %s" % (
        len(results), max(r[1] for r in results), sorted(set("%s: GOAWAY %r" % (r[0], r[2]) for r in results))))
    by.finish("continuation flood")


# ---------------------------------------------------------------- 4. SETTINGS / PING floods

@pytest.mark.parametrize("kind", ["settings", "ping", "settings-ack-spam"])
def test_control_frame_flood_from_a_client_that_never_reads(target, kind):
    """The client floods frames that each demand an ACK (or, for ACK spam,
    unsolicited SETTINGS ACKs) and never reads a byte: the plugin must not
    queue ACKs without bound; it drops that connection."""
    p = target
    by = Bystander(p).start()
    if kind == "settings":
        one = settings_frame([(SETTINGS_INITIAL_WINDOW_SIZE, 65535)])
    elif kind == "ping":
        one = frame(PING, 0, 0, b"floodflo")
    else:
        one = frame(SETTINGS, ACK, 0)
    blob = one * 4096

    def flood(_):
        c = RawConn(p, read=False)
        c.sock.settimeout(0.5)
        t0 = time.monotonic()
        sent = 0
        while time.monotonic() - t0 < 8:
            if not c.send(blob):
                if c.send_failed == "timeout":  # the plugin stopped reading us: keep pushing a little
                    c.send_failed = None
                    time.sleep(0.1)
                    continue
                break
            sent += len(blob)
        # the plugin closed the connection while ours was still open
        assert c.send_failed in ("BrokenPipeError", "ConnectionResetError"), \
            "%s flood: %d bytes in %.1fs and the plugin still holds the connection (%r)" % (
                kind, sent, time.monotonic() - t0, c.send_failed)
        c.close()
        return sent, round(time.monotonic() - t0, 2)

    results = attack_while_serving(by, flood, seconds=2)
    print("%s flood: %d connections dropped, each after at most %d bytes / %.2fs" % (
        kind, len(results), max(r[0] for r in results), max(r[1] for r in results)))
    by.finish("%s flood" % kind)


# ---------------------------------------------------------------- 5. zero window

def test_zero_window_streams(target):
    """A client announces SETTINGS_INITIAL_WINDOW_SIZE 0 and opens as many
    streams as allowed: the response headers go out, no DATA can. The
    write-stall timeout does not apply (the socket is not stalled, the
    client reads everything it is sent), so the connection stays open; what
    it costs is bounded by MAX_CONCURRENT_STREAMS answers. Memory stays
    bounded, opening the window later delivers every answer, and a client
    that leaves with everything still blocked leaves nothing behind."""
    p = target
    by = Bystander(p).start()
    c = RawConn(p, settings=[(SETTINGS_INITIAL_WINDOW_SIZE, 0)])
    assert c.wait(lambda: c.counts.get(SETTINGS), 5)
    # As many streams as the plugin allows (SETTINGS_MAX_CONCURRENT_STREAMS,
    # acknowledged: one more would be a protocol error that ends the connection).
    N = c.remote_settings.get(0x3, 1000)
    assert N <= 10000
    qmsg = pp.query_data_request(["Z%02d" % i for i in range(40)]).SerializeToString()
    cmsg = pp.check_health_request().SerializeToString()
    out = []
    for i in range(N):
        sid = 1 + 2 * i
        out.append(request_frames(sid, QUERY_DATA if i % 2 else CHECK_HEALTH, qmsg if i % 2 else cmsg))
        if len(out) >= 250:
            assert c.send(b"".join(out)), c.send_failed
            out = []
    if out:
        assert c.send(b"".join(out))
    sids = [1 + 2 * i for i in range(N)]
    # every stream is answered with headers at once (DATA waits for the window)
    c.wait(lambda: c.counts.get(HEADERS, 0) >= N or c.goaway or c.eof, 15)
    assert not c.goaway and not c.eof, (c.goaway, c.eof)
    refused = len(c.resets)
    assert by.served_during(), by.errors[:3]
    with c.lock:
        ended_early = [s for s in sids if s in c.ended and s not in c.resets]
    # Trailers-Only answers end without DATA; the rest wait for the window
    waiting = N - refused - len(ended_early)
    print("zero window: %d refused, %d ended without DATA, %d waiting; RSS +%d KiB" % (
        refused, len(ended_early), waiting, p.rss_kib() - by.rss0))
    assert waiting > 0, "nothing is waiting for the window (refused %d)" % refused
    assert refused == 0, "%d of %d streams reset" % (refused, N)
    time.sleep(1.0)
    assert c.ping_roundtrip(), "connection unusable while streams wait for window"
    # open the window: every accepted stream gets its answer
    c.send(settings_frame([(SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20)])
           + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1 << 30)))
    accepted = [s for s in sids if s not in c.resets]
    ok = c.wait(lambda: all(s in c.ended for s in accepted), 15)
    missing = [s for s in accepted if s not in c.ended]
    assert ok, "%d accepted streams never completed after the window opened, e.g. %r" % (len(missing), missing[:5])
    bad = [(s, c.grpc_status.get(s)) for s in accepted if c.grpc_status.get(s) != "0"]
    assert not bad, "accepted streams without grpc-status 0: %r" % bad[:5]
    c.close()

    # again, but the client leaves with everything still blocked
    c2 = RawConn(p, settings=[(SETTINGS_INITIAL_WINDOW_SIZE, 0)])
    assert c2.wait(lambda: c2.counts.get(SETTINGS), 5)
    c2.send(b"".join(request_frames(1 + 2 * i, QUERY_DATA, qmsg) for i in range(500)))
    c2.wait(lambda: c2.counts.get(HEADERS, 0) >= 500, 10)
    c2.close()
    by.finish("zero window")
