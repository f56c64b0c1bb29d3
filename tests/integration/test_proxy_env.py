"""HTTP_PROXY / HTTPS_PROXY / NO_PROXY: the plugin binary (PLUGIN_BIN) talks
to the reference backend (tools/refbackend) through a small HTTP proxy
written here (absolute-form forwarding for http://, CONNECT tunnels for
https://, optional Basic auth, every request recorded).

The rule the plugin shares with Go's net/http: "localhost" and loopback IPs
are never proxied. So the data sources here name the backend
backend.gpx-proxy.test, a name that does not resolve: only the proxy knows
it (it maps it to the refbackend on 127.0.0.1), so a successful query proves
the request went through the proxy. The NO_PROXY test also reaches the
backend directly on a non-loopback address of this machine when it has one.

Certificates for the TLS cases are made at test time with the openssl CLI
(test_tls.Certs). Proxy credentials are distinctive strings that must never
appear in logs (debug level), messages or metrics.
"""
import base64
import http.client
import socket
import threading
import time
import urllib.parse

import pytest

import pluginproc as pp
from test_faults import RefBackend, qreq  # noqa: E402
from test_tls import Certs, ctx, refbackend_bin  # noqa: E402

HEALTH_OK, HEALTH_ERROR = 1, 2
NAME = "backend.gpx-proxy.test"       # known to the proxy only
OTHER = "other.gpx-elsewhere.test"    # idem, not in any NO_PROXY below
USER, PASSWORD = "proxy-user-Qx7", "Pr0xy-S3cret-zq8K"
WRONG = "Wr0ng-Pr0xy-Pw-77"
HOP = {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te", "trailer",
       "transfer-encoding", "upgrade", "content-length"}


def basic(user, password):
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


def secrets():
    """Every form of the proxy credentials that must never leak."""
    out = [PASSWORD, WRONG]
    for pw in (PASSWORD, WRONG):
        cred = base64.b64encode(("%s:%s" % (USER, pw)).encode()).decode()
        out += [cred, cred[:16], "%s:%s" % (USER, pw)]
    return out


# --------------------------------------------------------------------------
# the proxy


class Proxy:
    def __init__(self, hosts, auth=None):
        self.hosts = dict(hosts)      # name -> IP to dial instead
        self.auth = basic(*auth) if auth else None
        self.lock = threading.Lock()
        self.requests = []            # (method, target, {header: value}) in arrival order
        self.connections = 0
        self.errors = []
        self.clients = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.running = True
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def url(self, creds=None):
        return "http://%s127.0.0.1:%d" % (creds + "@" if creds else "", self.port)

    def seen(self, method=None):
        with self.lock:
            return [r for r in self.requests if method is None or r[0] == method]

    def close(self):
        self.running = False
        self.thread.join(5)
        self.sock.close()
        with self.lock:
            for c in self.clients:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _accept(self):
        while self.running:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.settimeout(None)
            with self.lock:
                self.connections += 1
                self.clients.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, conn):
        rf = conn.makefile("rb")
        upstream = {}
        try:
            while True:
                line = rf.readline(65537)
                if not line:
                    return
                parts = line.decode("latin-1").rstrip("\r\n").split(" ")
                headers = []
                while True:
                    h = rf.readline(65537)
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers.append((k.strip(), v.strip()))
                hd = {k.lower(): v for k, v in headers}
                if len(parts) != 3:
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    return
                method, target, _ = parts
                with self.lock:
                    self.requests.append((method, target, hd))
                body = rf.read(int(hd.get("content-length", "0") or 0)) if method != "CONNECT" else b""
                if self.auth and hd.get("proxy-authorization") != self.auth:
                    conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                                 b"Proxy-Authenticate: Basic realm=\"gpx\"\r\nContent-Length: 0\r\n\r\n")
                    continue
                if method == "CONNECT":
                    self._tunnel(conn, target)
                    return
                self._forward(conn, method, target, headers, body, upstream)
        except Exception as e:  # noqa: BLE001 - reported by the tests
            if self.running:
                with self.lock:
                    self.errors.append(repr(e))
        finally:
            for hc in upstream.values():
                hc.close()
            rf.close()
            conn.close()

    def _forward(self, conn, method, target, headers, body, upstream):
        u = urllib.parse.urlsplit(target)
        if u.scheme != "http":
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return
        key = (self.hosts.get(u.hostname, u.hostname), u.port or 80)
        hc = upstream.get(key)
        if hc is None:
            hc = upstream[key] = http.client.HTTPConnection(*key, timeout=30)
        path = (u.path or "/") + ("?" + u.query if u.query else "")
        try:
            hc.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for k, v in headers:
                if k.lower() not in HOP:
                    hc.putheader(k, v)
            if body or method in ("POST", "PUT"):
                hc.putheader("Content-Length", str(len(body)))
            hc.endheaders(body)
            resp = hc.getresponse()
            data = resp.read()
        except OSError as e:
            upstream.pop(key).close()
            msg = ("upstream: %s" % e).encode()
            conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: %d\r\n\r\n%s" % (len(msg), msg))
            return
        out = ["HTTP/1.1 %d %s" % (resp.status, resp.reason)]
        out += ["%s: %s" % (k, v) for k, v in resp.getheaders() if k.lower() not in HOP]
        out += ["Content-Length: %d" % len(data), "", ""]
        conn.sendall("\r\n".join(out).encode("latin-1") + data)
        if resp.will_close:
            upstream.pop(key).close()

    def _tunnel(self, conn, target):
        host, _, port = target.rpartition(":")
        host = host.strip("[]")
        try:
            up = socket.create_connection((self.hosts.get(host, host), int(port)), timeout=10)
        except (OSError, ValueError):
            conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        up.settimeout(None)
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")

        def pump(a, b):
            try:
                while True:
                    d = a.recv(65536)
                    if not d:
                        break
                    b.sendall(d)
            except OSError:
                pass
            finally:
                try:
                    b.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

        t = threading.Thread(target=pump, args=(up, conn), daemon=True)
        t.start()
        pump(conn, up)
        t.join(30)
        up.close()


# --------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    c = Certs(tmp_path_factory.mktemp("proxy-tls"))
    c.ca("ca", "gpx proxy test CA")
    c.leaf("server", "ca", "DNS:%s,DNS:localhost,IP:127.0.0.1" % NAME)
    return c


@pytest.fixture
def start_backend(certs):
    binary = refbackend_bin()
    if binary is None:
        pytest.skip("refbackend binary not found: set REFBACKEND_BIN or build tools/refbackend")
    started = []

    def _start(tls=False, listen=None):
        args = ["--listen", listen] if listen else []
        if tls:
            args += ["--tls-cert", certs.path("server.pem"), "--tls-key", certs.path("server.key")]
        b = RefBackend(binary, args, scheme="https" if tls else "http")
        started.append(b)
        return b

    yield _start
    for b in started:
        b.stop_checked()


@pytest.fixture
def start_proxy():
    started = []

    def _start(hosts, auth=None):
        p = Proxy(hosts, auth)
        started.append(p)
        return p

    yield _start
    for p in started:
        p.close()
        assert not p.errors, p.errors


@pytest.fixture
def start_plugin(spawn):
    """A plugin process with these proxy variables (all others unset) and
    debug logs; every gRPC channel is closed at the end."""
    chans = []

    def _start(**proxy_env):
        env = {k: None for k in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY",
                                 "no_proxy", "REQUEST_METHOD")}
        env.update(proxy_env)
        env["GF_PLUGIN_LOG_LEVEL"] = "debug"
        p = spawn(extra_env=env)
        g = pp.Grpc(p.target)
        g.wait_ready()
        chans.append(g)
        return p, g

    yield _start
    for g in chans:
        g.close()


def tls_ctx(url, certs):
    return ctx(url, {"tlsAuthWithCACert": True, "timeout": 10}, {"tlsCACert": certs.text("ca.pem")})


def health(g, context):
    v2 = pp.pb()["pluginv2_pb2"]
    return g.check_health(v2.CheckHealthRequest(pluginContext=context), timeout=20)


def query(g, context, targets=(("A", "sine:2"), ("B", "table:3"))):
    return g.query_data(qreq(context, targets), timeout=20)


def assert_ok(g, context, targets=(("A", "sine:2"), ("B", "table:3"))):
    h = health(g, context)
    assert h.status == HEALTH_OK, h.message
    resp = query(g, context, targets)
    assert sorted(resp.responses) == sorted(ref for ref, _ in targets)
    for ref, r in resp.responses.items():
        assert r.status == 200 and not r.error, "%s: %d %r" % (ref, r.status, r.error)
        assert len(r.frames) >= 1, ref


def assert_fails(g, context, *words):
    """CheckHealth and every query say it is the proxy, with all of words."""
    texts = []
    h = health(g, context)
    print("CheckHealth:", h.message)  # shown with pytest -s
    assert h.status == HEALTH_ERROR, h.message
    assert h.message.startswith("proxy failure, the backend was not reached: "), h.message
    texts.append(h.message)
    resp = query(g, context)
    for ref, r in resp.responses.items():
        assert r.status == 502 and r.errorSource == "downstream", "%s: %d %r" % (ref, r.status, r.error)
        texts.append(r.error)
    for t in texts:
        for w in words:
            assert w in t, "%r not in %r" % (w, t)
    return texts


def assert_no_secrets(p, g, texts=()):
    everything = p.stderr_text() + "\n".join(texts) + g.metrics_text()
    for s in secrets():
        assert s not in everything, "proxy credentials (%r) leaked" % s


def non_loopback_ipv4():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("192.0.2.254", 9))  # no packet is sent: this only picks the route's source address
        ip = s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()
    return None if ip.startswith("127.") or ip == "0.0.0.0" else ip


def wait_for(cond, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end and not cond():
        time.sleep(0.02)
    return cond()


# --------------------------------------------------------------------------
# tests


def test_http_proxy_absolute_form_and_keepalive(start_backend, start_proxy, start_plugin):
    b = start_backend()
    px = start_proxy({NAME: b.host})
    p, g = start_plugin(HTTP_PROXY=px.url(), HTTPS_PROXY="http://127.0.0.1:1")  # https:// is not used here
    url = "http://%s:%d" % (NAME, b.port)
    c = ctx(url)
    assert_ok(g, c)
    reqs = px.seen()
    assert reqs, "the proxy saw nothing"
    for method, target, hd in reqs:
        assert target.startswith(url + "/"), target  # absolute form
        assert hd.get("host") == "%s:%d" % (NAME, b.port), hd
        assert "proxy-authorization" not in hd
    assert ("POST", url + "/query") in [(m, t) for m, t, _ in reqs]
    # Kept alive to the proxy: one more query opens no new connection.
    conns = px.connections
    n = len(reqs)
    resp = query(g, c, (("Z", "sine:1"),))
    assert resp.responses["Z"].status == 200, resp.responses["Z"].error
    assert len(px.seen()) == n + 1 and px.connections == conns
    log = p.stderr_text()
    assert "data source requests go through a proxy" in log and px.url() in log


def test_no_proxy_exempts_the_backend(start_backend, start_proxy, start_plugin):
    ip = non_loopback_ipv4()
    b = start_backend(listen="0.0.0.0:0" if ip else None)
    px = start_proxy({NAME: "127.0.0.1", OTHER: "127.0.0.1"})
    no_proxy = " Other.Example , .gpx-proxy.test" + (",%s" % ip if ip else "")
    p, g = start_plugin(http_proxy=px.url(), no_proxy=no_proxy)
    # A name under .gpx-proxy.test goes direct: the plugin itself must resolve
    # it (it cannot), and the proxy sees nothing.
    c = ctx("http://%s:%d" % (NAME, b.port), {"timeout": 5})
    resp = query(g, c, (("A", "sine:1"),))
    r = resp.responses["A"]
    assert r.status == 502 and "cannot resolve host %s" % NAME in r.error, (r.status, r.error)
    assert "the proxy" not in r.error
    assert px.seen() == []
    # A name outside NO_PROXY still goes through the proxy.
    assert_ok(g, ctx("http://%s:%d" % (OTHER, b.port)))
    assert px.seen() and all(t.startswith("http://%s:" % OTHER) for _, t, _ in px.seen())
    if ip:
        # This machine's own non-loopback address, listed in NO_PROXY: direct.
        n = len(px.seen())
        assert_ok(g, ctx("http://%s:%d" % (ip, b.port)))
        assert len(px.seen()) == n
    # Loopback is never proxied (Go's rule), NO_PROXY or not.
    n = len(px.seen())
    assert_ok(g, ctx("http://127.0.0.1:%d" % b.port))
    assert len(px.seen()) == n


def test_https_proxy_connect_tunnel(certs, start_backend, start_proxy, start_plugin):
    b = start_backend(tls=True)
    px = start_proxy({NAME: b.host})
    # HTTP_PROXY points nowhere: https:// must use HTTPS_PROXY only.
    p, g = start_plugin(HTTPS_PROXY=px.url(), HTTP_PROXY="http://127.0.0.1:1")
    c = tls_ctx("https://%s:%d" % (NAME, b.port), certs)
    assert_ok(g, c, (("A", "sine:2"), ("B", "table:3"), ("C", "sine:1")))
    connects = px.seen("CONNECT")
    assert connects and len(connects) == len(px.seen()), px.seen()
    for _, target, hd in connects:
        assert target == "%s:%d" % (NAME, b.port) and hd.get("host") == target
        assert "proxy-authorization" not in hd
    # The tunnels stay open for keep-alive: another query opens none.
    n = len(connects)
    resp = query(g, c, (("Z", "sine:1"),))
    assert resp.responses["Z"].status == 200, resp.responses["Z"].error
    assert len(px.seen("CONNECT")) == n
    # The backend's certificate is checked through the tunnel as without one.
    bad = ctx("https://%s:%d" % (NAME, b.port), {"timeout": 10})
    h = health(g, bad)
    assert h.status == HEALTH_ERROR and "TLS" in h.message and "proxy failure" not in h.message, h.message


def test_proxy_authentication(certs, start_backend, start_proxy, start_plugin):
    b = start_backend()
    bt = start_backend(tls=True)
    px = start_proxy({NAME: "127.0.0.1"}, auth=(USER, PASSWORD))
    http_url, https_url = "http://%s:%d" % (NAME, b.port), "https://%s:%d" % (NAME, bt.port)

    # No credentials: 407, and the message says where they go.
    p, g = start_plugin(HTTP_PROXY=px.url(), HTTPS_PROXY=px.url())
    texts = assert_fails(g, ctx(http_url), "the proxy %s requires authentication (407" % px.url(),
                         "put user:password@ before the host in HTTP_PROXY")
    texts += assert_fails(g, tls_ctx(https_url, certs), "requires authentication (407",
                          "put user:password@ before the host in HTTPS_PROXY")
    assert 'reason="proxy"' in g.metrics_text()
    assert_no_secrets(p, g, texts)

    # Wrong credentials: "refused the credentials", and the password never shows.
    p, g = start_plugin(HTTP_PROXY=px.url("%s:%s" % (USER, WRONG)), HTTPS_PROXY=px.url("%s:%s" % (USER, WRONG)))
    texts = assert_fails(g, ctx(http_url), "refused the credentials in HTTP_PROXY (407",
                         "check the user name and password")
    texts += assert_fails(g, tls_ctx(https_url, certs), "refused the credentials in HTTPS_PROXY (407")
    assert_no_secrets(p, g, texts)

    # The right ones: everything works, each request carried them.
    n = len(px.seen())
    creds = "%s:%s" % (USER, PASSWORD)
    p, g = start_plugin(HTTP_PROXY=px.url(creds), HTTPS_PROXY=px.url(creds))
    assert_ok(g, ctx(http_url))
    assert_ok(g, tls_ctx(https_url, certs))
    later = px.seen()[n:]
    assert later and all(hd.get("proxy-authorization") == basic(USER, PASSWORD) for _, _, hd in later)
    assert {m for m, _, _ in later} >= {"CONNECT", "POST"}
    log = p.stderr_text()
    assert "(with credentials)" in log  # the debug line says so, and nothing more
    assert_no_secrets(p, g)


def test_proxy_down_is_named(start_proxy, start_plugin):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    dead = s.getsockname()[1]
    s.close()
    creds = "%s:%s" % (USER, PASSWORD)
    p, g = start_plugin(HTTP_PROXY="http://%s@127.0.0.1:%d" % (creds, dead),
                        HTTPS_PROXY="http://127.0.0.1:%d/" % dead)
    texts = assert_fails(g, ctx("http://%s:8080" % NAME),
                         "cannot connect to the proxy http://127.0.0.1:%d (with credentials) (from HTTP_PROXY): "
                         "connection refused" % dead)
    texts += assert_fails(g, ctx("https://%s" % NAME),
                          "cannot connect to the proxy http://127.0.0.1:%d (from HTTPS_PROXY): connection refused"
                          % dead)
    assert_no_secrets(p, g, texts)


def test_unusable_proxy_value_is_the_instance_problem(start_plugin):
    p, g = start_plugin(HTTPS_PROXY="socks5://%s:%s@127.0.0.1:1080" % (USER, PASSWORD))
    h = health(g, ctx("https://%s" % NAME))
    assert h.status == HEALTH_ERROR and "HTTPS_PROXY" in h.message, h.message
    r = query(g, ctx("https://%s" % NAME)).responses["A"]
    assert r.status >= 400 and "HTTPS_PROXY" in r.error, (r.status, r.error)
    # http:// data sources are not concerned.
    assert "HTTPS_PROXY" not in query(g, ctx("http://%s:1" % NAME, {"timeout": 3})).responses["A"].error
    assert_no_secrets(p, g, [h.message, r.error])
