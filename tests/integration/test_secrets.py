"""Security checks, as tests: secrets never leave the plugin except towards
the backend they are meant for, and the plugin's own sockets are closed to
other users.

Secrets: a basic-auth password, secure custom header values
(httpHeaderValue1..), an OAuth token and ID token forwarded by oauthPassThru,
bogus TLS CA/certificate/key texts in the secure TLS fields, and a password
written into the URL. Every service is driven at debug log level with them:
CheckHealth (OK, connection refused, 401, invalid URLs, unusable TLS
material, a plain-HTTP backend behind an https:// URL), QueryData (OK,
injected 401/500, malformed answers, refused, invalid URL, TLS), CallResource
(OK, 404, refused, invalid URL) and CollectMetrics. Then every stderr line,
every error and health message, health details, resource bodies, gRPC status
details and the metrics text are searched for each secret and its base64
forms: zero hits.

The backend is the reference backend (tools/refbackend) from $REFBACKEND_BIN,
else the one built beside PLUGIN_BIN, else build-asan/ or build/; a scripted
Python backend (backend_mock) answers 401 and shows which headers arrived, so
the test proves the secrets really were in use.
"""
import base64
import json
import os
import re
import signal
import socket
from pathlib import Path

import grpc
import pytest

import pluginproc as pp
from backend_mock import Backend
from test_faults import RefBackend  # noqa: E402

# Distinctive values: every one contains "s3cr3t", so a partial leak shows too.
BASIC_USER = "alice"
BASIC_PW = "s3cr3t-basic-pw-91f2"
HEADER_V1 = "s3cr3t-header-one-7ac3"
HEADER_V2 = "s3cr3t-header-two-55de"
OAUTH_TOKEN = "s3cr3t-oauth-token-e1d9"
ID_TOKEN = "s3cr3t-id-token-0b8c"
URL_PW = "s3cr3t-url-pw-33aa"
TLS_CA = "-----BEGIN CERTIFICATE-----\nMIIs3cr3tCAcafe0123456789\n-----END CERTIFICATE-----\n"
TLS_CERT = "-----BEGIN CERTIFICATE-----\nMIIs3cr3tCERTbeef0123456789\n-----END CERTIFICATE-----\n"
TLS_KEY = "-----BEGIN PRIVATE KEY-----\nMIIs3cr3tKEYdead0123456789\n-----END PRIVATE KEY-----\n"

T_FROM, T_TO = 1700000000000, 1700003600000


def secret_needles():
    """Every form a secret could take in text: itself, its distinctive core,
    and the base64 forms that end up in Authorization headers."""
    values = [BASIC_PW, HEADER_V1, HEADER_V2, OAUTH_TOKEN, ID_TOKEN, URL_PW,
              "MIIs3cr3tCAcafe", "MIIs3cr3tCERTbeef", "MIIs3cr3tKEYdead", "s3cr3t"]
    basic = base64.b64encode(("%s:%s" % (BASIC_USER, BASIC_PW)).encode()).decode()
    url_basic = base64.b64encode(("%s:%s" % (BASIC_USER, URL_PW)).encode()).decode()
    return values + [basic, basic[:20], url_basic[:20]]


# ---- the reference backend --------------------------------------------------

def refbackend_bin():
    env = os.environ.get("REFBACKEND_BIN")
    if env:
        return env
    beside = Path(pp.plugin_bin()).resolve().parent / "tools" / "refbackend" / "refbackend"
    for path in [beside] + [pp.REPO / d / "tools" / "refbackend" / "refbackend" for d in ("build-asan", "build")]:
        if path.is_file() and os.access(str(path), os.X_OK):
            return str(path)
    return None


@pytest.fixture
def refbackend():
    binary = refbackend_bin()
    if binary is None:
        pytest.skip("refbackend binary not found: set REFBACKEND_BIN or build tools/refbackend")
    b = RefBackend(binary)
    yield b
    b.stop_checked()


@pytest.fixture
def mock_backend():
    b = Backend()
    yield b
    b.close()


@pytest.fixture
def plugin(spawn):
    p = spawn(extra_env={"GF_PLUGIN_LOG_LEVEL": "debug"})
    g = pp.Grpc(p.target)
    g.wait_ready()
    yield p, g
    g.close()


def closed_port_url():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return "http://127.0.0.1:%d" % port


# ---- requests carrying every secret -----------------------------------------

def ctx(url, uid, oauth=False, tls=False, updated=1700000000000):
    c = pp.plugin_context(url=url)
    ds = c.dataSourceInstanceSettings
    ds.uid = uid
    ds.lastUpdatedMS = updated
    jd = {"httpHeaderName1": "X-Api-Key", "httpHeaderName2": "X-Tenant-Token", "timeout": 5}
    ds.decryptedSecureJsonData["httpHeaderValue1"] = HEADER_V1
    ds.decryptedSecureJsonData["httpHeaderValue2"] = HEADER_V2
    # The TLS material is always present (as Grafana keeps it when a toggle is
    # off); with tls=True the toggles make the plugin load it.
    ds.decryptedSecureJsonData["tlsCACert"] = TLS_CA
    ds.decryptedSecureJsonData["tlsClientCert"] = TLS_CERT
    ds.decryptedSecureJsonData["tlsClientKey"] = TLS_KEY
    if tls:
        jd.update({"tlsAuth": True, "tlsAuthWithCACert": True, "serverName": "metrics.corp"})
    if oauth:
        jd["oauthPassThru"] = True
    else:
        ds.basicAuthEnabled = True
        ds.basicAuthUser = BASIC_USER
        ds.decryptedSecureJsonData["basicAuthPassword"] = BASIC_PW
    ds.jsonData = json.dumps(jd).encode()
    return c


def oauth_headers():
    return {"Authorization": "Bearer " + OAUTH_TOKEN, "X-Id-Token": ID_TOKEN,
            "http_Authorization": "Bearer " + OAUTH_TOKEN, "http_X-Id-Token": ID_TOKEN}


class Collector:
    """Everything the plugin said, to be searched for secrets at the end."""

    def __init__(self, g):
        self.g = g
        self.texts = []   # (where, text)

    def add(self, where, text):
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        self.texts.append((where, text))

    def health(self, context, oauth=False, label=""):
        v2 = self.g.v2
        req = v2.CheckHealthRequest(pluginContext=context)
        if oauth:
            for k, v in oauth_headers().items():
                req.headers[k] = v
        try:
            r = self.g.check_health(req, timeout=15)
        except grpc.RpcError as e:
            self.add("CheckHealth %s grpc status" % label, "%s %s" % (e.code(), e.details()))
            return None
        self.add("CheckHealth %s message" % label, r.message)
        self.add("CheckHealth %s details" % label, r.jsonDetails)
        return r

    def query(self, context, targets, oauth=False, label=""):
        v2 = self.g.v2
        req = v2.QueryDataRequest(pluginContext=context)
        if oauth:
            for k, v in oauth_headers().items():
                req.headers[k] = v
        for ref, target in targets:
            req.queries.add(refId=ref, maxDataPoints=100, intervalMS=60000,
                            timeRange=v2.TimeRange(fromEpochMS=T_FROM, toEpochMS=T_TO),
                            json=json.dumps({"refId": ref, "target": target}).encode())
        try:
            r = self.g.query_data(req, timeout=15)
        except grpc.RpcError as e:
            self.add("QueryData %s grpc status" % label, "%s %s" % (e.code(), e.details()))
            return None
        for ref, resp in r.responses.items():
            self.add("QueryData %s %s error" % (label, ref), resp.error)
            self.add("QueryData %s %s errorSource" % (label, ref), resp.errorSource)
            for f in resp.frames:
                self.add("QueryData %s %s frame" % (label, ref), f)
        return r.responses

    def resource(self, context, path, oauth=False, label=""):
        v2 = self.g.v2
        req = v2.CallResourceRequest(pluginContext=context, path=path, method="POST", body=b"{}")
        req.headers["Content-Type"].values.append("application/json")
        if oauth:
            for k, v in oauth_headers().items():
                req.headers[k].values.append(v)
        try:
            msgs = list(self.g.call_resource(req, timeout=15))
        except grpc.RpcError as e:
            self.add("CallResource %s grpc status" % label, "%s %s" % (e.code(), e.details()))
            return None
        for m in msgs:
            self.add("CallResource %s body" % label, m.body)
            for k, v in m.headers.items():
                self.add("CallResource %s header %s" % (label, k), " ".join(v.values))
        return msgs

    def metrics(self):
        text = self.g.metrics_text()
        self.add("CollectMetrics", text)
        return text


def assert_no_secret(texts):
    hits = []
    for where, text in texts:
        for needle in secret_needles():
            i = text.find(needle)
            if i >= 0:
                hits.append("%s contains %r: ...%s..." % (where, needle, text[max(0, i - 80):i + 80]))
    assert not hits, "secrets leaked:\n" + "\n".join(hits[:20])


def stderr_texts(p):
    return [("stderr line %d" % i, line) for i, line in enumerate(p.stderr_snapshot())]


# ---- the tests ----------------------------------------------------------------

def test_the_secrets_really_reach_the_backend(plugin, mock_backend):
    """Sanity: the settings used below put every secret on the wire, so the
    searches for them mean something."""
    p, g = plugin
    c = Collector(g)
    r = c.query(ctx(mock_backend.url, "sane-basic"), [("A", "series:1")])
    assert r["A"].status == 200, r["A"].error
    h = mock_backend.headers[-1]
    assert h["X-Api-Key"] == HEADER_V1 and h["X-Tenant-Token"] == HEADER_V2
    assert h["Authorization"] == "Basic " + base64.b64encode(("%s:%s" % (BASIC_USER, BASIC_PW)).encode()).decode()
    r = c.query(ctx(mock_backend.url, "sane-oauth", oauth=True), [("A", "series:1")], oauth=True)
    assert r["A"].status == 200, r["A"].error
    h = mock_backend.headers[-1]
    assert h["Authorization"] == "Bearer " + OAUTH_TOKEN and h["X-Id-Token"] == ID_TOKEN
    assert_no_secret(c.texts + stderr_texts(p))


def test_no_secret_in_logs_errors_health_or_metrics(plugin, refbackend, mock_backend):
    p, g = plugin
    c = Collector(g)
    ok_url = refbackend.url
    refused = closed_port_url()
    # Invalid URLs, three of them with a password written into them (refused,
    # and never quoted back: the instance keeps a redacted copy).
    bad_urls = ["ftp://metrics.corp", "http://", "metrics.corp:8080", "http://%s:%s@metrics.corp/" % (BASIC_USER, URL_PW),
                "http://metrics .corp", "ftp://%s:%s@metrics.corp" % (BASIC_USER, URL_PW),
                "%s:%s@metrics.corp:8080" % (BASIC_USER, URL_PW), "https://%s@metrics.corp" % URL_PW]

    for oauth in (False, True):
        tag = "oauth" if oauth else "basic"
        # CheckHealth: OK, refused, 401, invalid URLs, TLS material loaded and
        # rejected, https:// against a plain-HTTP backend.
        r = c.health(ctx(ok_url, "h-ok-" + tag, oauth=oauth), oauth, "ok/" + tag)
        assert r is not None and r.status == g.v2.CheckHealthResponse.OK, r and r.message
        r = c.health(ctx(refused, "h-refused-" + tag, oauth=oauth), oauth, "refused/" + tag)
        assert r.status == g.v2.CheckHealthResponse.ERROR
        mock_backend.health_mode = "401"
        r = c.health(ctx(mock_backend.url, "h-401-" + tag, oauth=oauth), oauth, "401/" + tag)
        assert r.status == g.v2.CheckHealthResponse.ERROR and "401" in r.message
        for i, u in enumerate(bad_urls):
            r = c.health(ctx(u, "h-bad%d-%s" % (i, tag), oauth=oauth), oauth, "bad url %d/%s" % (i, tag))
            assert r.status == g.v2.CheckHealthResponse.ERROR
        https = ok_url.replace("http://", "https://")
        r = c.health(ctx(https, "h-tls-" + tag, oauth=oauth, tls=True), oauth, "tls material/" + tag)
        assert r.status == g.v2.CheckHealthResponse.ERROR
        r = c.health(ctx(https, "h-plain-" + tag, oauth=oauth), oauth, "https to http/" + tag)
        assert r.status == g.v2.CheckHealthResponse.ERROR

        # QueryData: answers and every kind of failure, several per call.
        rs = c.query(ctx(ok_url, "q-ok-" + tag, oauth=oauth),
                     [("A", "sine:2"), ("B", "table:3"), ("C", "sine:1?status=401"), ("D", "sine:1?status=500"),
                      ("E", "sine:1?mode=malformed"), ("F", "sine:1?mode=truncate"), ("G", "nosuchkind")],
                     oauth, "mixed/" + tag)
        assert rs["A"].status == 200 and rs["B"].status == 200, (rs["A"].error, rs["B"].error)
        assert all(rs[k].status >= 400 for k in "CDEFG"), {k: rs[k].status for k in "CDEFG"}
        rs = c.query(ctx(refused, "q-refused-" + tag, oauth=oauth), [("A", "sine:1")], oauth, "refused/" + tag)
        assert rs["A"].status >= 400
        for i, u in enumerate(bad_urls):
            rs = c.query(ctx(u, "q-bad%d-%s" % (i, tag), oauth=oauth), [("A", "sine:1")], oauth,
                         "bad url %d/%s" % (i, tag))
            assert rs["A"].status >= 400
        rs = c.query(ctx(https, "q-tls-" + tag, oauth=oauth, tls=True), [("A", "sine:1")], oauth, "tls/" + tag)
        assert rs["A"].status >= 400

        # CallResource: proxied OK, the backend's 404, refused, invalid URL.
        msgs = c.resource(ctx(ok_url, "r-ok-" + tag, oauth=oauth), "metrics", oauth, "ok/" + tag)
        assert msgs and msgs[0].code == 200
        msgs = c.resource(ctx(ok_url, "r-404-" + tag, oauth=oauth), "no-such-endpoint", oauth, "404/" + tag)
        assert msgs and msgs[0].code == 404
        c.resource(ctx(refused, "r-refused-" + tag, oauth=oauth), "metrics", oauth, "refused/" + tag)
        c.resource(ctx(bad_urls[3], "r-bad-" + tag, oauth=oauth), "metrics", oauth, "bad url/" + tag)

    # The mock saw the secrets of the 401 checks (they were in use).
    assert any(h.get("X-Api-Key") == HEADER_V1 for h in mock_backend.headers)
    c.metrics()

    # Debug logging was on and produced lines, so the search below is real.
    recs = p.log_records()
    assert any(r.get("@level") == "debug" for r in recs), "no debug lines: GF_PLUGIN_LOG_LEVEL=debug not applied?"
    assert_no_secret(c.texts + stderr_texts(p))


def test_no_secret_at_trace_level_and_on_shutdown(spawn, refbackend):
    """Trace is the most verbose level; the stop sequence logs too."""
    p = spawn(extra_env={"GF_PLUGIN_LOG_LEVEL": "trace"})
    g = pp.Grpc(p.target)
    g.wait_ready()
    c = Collector(g)
    c.health(ctx(refbackend.url, "t-ok"), False, "trace ok")
    c.query(ctx(refbackend.url, "t-oauth", oauth=True), [("A", "sine:1"), ("B", "sine:1?status=403")], True, "trace")
    c.resource(ctx(refbackend.url, "t-r"), "metrics", False, "trace")
    c.metrics()
    g.close()
    rc = p.stop(signal.SIGTERM)
    p.final_checked = True
    assert rc == 0
    assert any(r.get("@level") == "trace" for r in p.log_records())
    assert_no_secret(c.texts + stderr_texts(p))


# ---- sockets --------------------------------------------------------------------

def test_unix_socket_is_owner_only_even_with_a_permissive_umask(spawn):
    old = os.umask(0)
    try:
        p = spawn()
    finally:
        os.umask(old)
    is_sock, mode, _ = pp.socket_mode(p.socket_path)
    assert is_sock
    assert mode == 0o600, "socket mode %o with umask 000, expected 600" % mode
    assert os.stat(p.socket_path).st_uid == os.geteuid()


def test_unix_socket_with_group_is_0660(spawn):
    name, gid = pp.other_group()
    old = os.umask(0)
    try:
        p = spawn({"PLUGIN_UNIX_SOCKET_GROUP": name})
    finally:
        os.umask(old)
    is_sock, mode, sgid = pp.socket_mode(p.socket_path)
    assert is_sock and mode == 0o660 and sgid == gid, (oct(mode), sgid, gid)


def _listening_addresses(pid):
    """Local addresses of the TCP sockets process pid listens on, from
    /proc/<pid>/fd and /proc/net/tcp{,6}."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        m = re.fullmatch(r"socket:\[(\d+)\]", link)
        if m:
            inodes.add(m.group(1))
    found = []
    for table, fam in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 6)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] != "0A" or f[9] not in inodes:  # 0A = LISTEN
                continue
            addr_hex, port_hex = f[1].split(":")
            raw = bytes.fromhex(addr_hex)
            if fam == 4:
                addr = socket.inet_ntop(socket.AF_INET, raw[::-1])
            else:
                addr = socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
            found.append((addr, int(port_hex, 16)))
    return found


def _non_loopback_ip():
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(("192.0.2.1", 9))  # no packet is sent
        ip = s.getsockname()[0]
        s.close()
        return None if ip.startswith("127.") else ip
    except OSError:
        return None


@pytest.mark.parametrize("how", ["default", "port only"])
def test_standalone_binds_loopback_unless_told_otherwise(spawn, how):
    env = pp.base_env()
    env.pop("GF_PLUGIN_GRPC_ADDRESS_SEED_INHOUSE_DATASOURCE", None)
    args = ["--standalone"]
    if how == "port only":
        args += ["--address", ":0"]
    p = spawn(env=env, args=args, handshake=False)
    line = p.read_handshake(timeout=15)
    m = pp.HANDSHAKE_TCP_RE.match(line)
    assert m and m.group(1) == "127.0.0.1", line
    port = int(m.group(2))
    listening = _listening_addresses(p.pid)
    assert listening == [("127.0.0.1", port)], listening
    other = _non_loopback_ip()
    if other:
        s = socket.socket()
        s.settimeout(2)
        with pytest.raises(OSError):
            s.connect((other, port))
        s.close()
    rc = p.stop(signal.SIGTERM)
    p.final_checked = True
    assert rc == 0
