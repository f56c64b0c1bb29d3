"""https:// to the in-house backend: the plugin binary (PLUGIN_BIN) against the
reference backend in TLS mode (tools/refbackend --tls-cert/--tls-key
[--tls-client-ca]).

Every certificate and key is made here, at test time, with the openssl CLI in
a temporary directory: a CA, a second CA nobody trusts, server certificates
(right names, other names, expired) and client certificates (trusted,
stranger). Nothing is committed.

The refbackend binary is $REFBACKEND_BIN, else the one built beside
PLUGIN_BIN (<build>/tools/refbackend/refbackend), else build-asan/ or build/.
"""
import json
import os
import subprocess
from pathlib import Path

import pytest

import pluginproc as pp
from test_faults import RefBackend, qreq  # noqa: E402

HEALTH_OK, HEALTH_ERROR = 1, 2
KEYGEN = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]


def refbackend_bin():
    env = os.environ.get("REFBACKEND_BIN")
    if env:
        return env
    beside = Path(pp.plugin_bin()).resolve().parent / "tools" / "refbackend" / "refbackend"
    candidates = [beside] + [pp.REPO / d / "tools" / "refbackend" / "refbackend" for d in ("build-asan", "build")]
    for path in candidates:
        if path.is_file() and os.access(str(path), os.X_OK):
            return str(path)
    return None


# --------------------------------------------------------------------------
# certificates


class Certs:
    def __init__(self, d):
        self.d = Path(d)

    def run(self, *args):
        subprocess.run(["openssl"] + list(args), cwd=self.d, check=True, capture_output=True)

    def ca(self, name, cn):
        self.run("req", "-x509", *KEYGEN, "-keyout", name + ".key", "-out", name + ".pem", "-subj", "/CN=" + cn,
                 "-days", "2")

    def leaf(self, name, ca, san, days=2):
        (self.d / (name + ".ext")).write_text("subjectAltName=%s\n" % san)
        self.run("req", *KEYGEN, "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + name)
        self.run("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key", "-CAcreateserial",
                 "-days", str(days), "-extfile", name + ".ext", "-out", name + ".pem")

    def path(self, name):
        return str(self.d / name)

    def text(self, name):
        return (self.d / name).read_text()


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    c = Certs(tmp_path_factory.mktemp("tls"))
    c.ca("ca", "gpx test CA")
    c.ca("other", "gpx untrusted CA")
    c.leaf("server", "ca", "DNS:localhost,IP:127.0.0.1")
    c.leaf("elsewhere", "ca", "DNS:metrics.internal")
    c.leaf("expired", "ca", "DNS:localhost,IP:127.0.0.1", days=-1)  # notAfter a day before notBefore
    c.leaf("client", "ca", "DNS:grafana-client")
    c.leaf("stranger", "other", "DNS:stranger")
    return c


# --------------------------------------------------------------------------
# the reference backend in TLS mode


class TlsBackend(RefBackend):
    def __init__(self, binary, args):
        super().__init__(binary, args, log_level="info", scheme="https")


@pytest.fixture
def start_backend(certs):
    binary = refbackend_bin()
    if binary is None:
        pytest.skip("refbackend binary not found: set REFBACKEND_BIN or build tools/refbackend")
    started = []

    def _start(cert="server", client_ca=None, tls=True):
        args = ["--tls-cert", certs.path(cert + ".pem"), "--tls-key", certs.path(cert + ".key")] if tls else []
        if client_ca:
            args += ["--tls-client-ca", certs.path(client_ca + ".pem")]
        b = TlsBackend(binary, args)
        if not tls:
            b.url = "http://" + b.hostport
        started.append(b)
        return b

    yield _start
    for b in started:
        b.stop_checked()


@pytest.fixture
def plugin(spawn):
    p = spawn(extra_env={"GF_PLUGIN_LOG_LEVEL": "debug"})
    g = pp.Grpc(p.target)
    g.wait_ready()
    yield p, g
    g.close()


# --------------------------------------------------------------------------
# requests

_uid = [0]


def ctx(url, json_data=None, secure=None):
    """A fresh data source (new uid) each time, so every call builds its own
    instance and TLS context."""
    _uid[0] += 1
    c = pp.plugin_context(url=url)
    ds = c.dataSourceInstanceSettings
    ds.uid = "ds-tls-%d" % _uid[0]
    ds.lastUpdatedMS = 1700000000000
    ds.jsonData = json.dumps(json_data or {}).encode()
    for k, v in (secure or {}).items():
        ds.decryptedSecureJsonData[k] = v
    return c


def health(g, context):
    v2 = pp.pb()["pluginv2_pb2"]
    return g.check_health(v2.CheckHealthRequest(pluginContext=context), timeout=15)


def query(g, context, targets=(("A", "sine:2"), ("B", "table:3"), ("C", "sine:1"))):
    return g.query_data(qreq(context, targets), timeout=15)


def with_ca(certs, extra=None, ca="ca"):
    jd = {"tlsAuthWithCACert": True}
    jd.update(extra or {})
    return jd, {"tlsCACert": certs.text(ca + ".pem")}


def assert_ok(g, context):
    h = health(g, context)
    assert h.status == HEALTH_OK, h.message
    resp = query(g, context)
    for ref, r in resp.responses.items():
        assert r.status == 200 and not r.error, "%s: %d %r" % (ref, r.status, r.error)
        assert len(r.frames) >= 1, ref


def assert_fails(g, context, *words):
    """CheckHealth and every query name the failure with all of words."""
    h = health(g, context)
    print("CheckHealth:", h.message)  # shown with pytest -s
    assert h.status == HEALTH_ERROR, h.message
    for w in words:
        assert w in h.message, "%r not in health message %r" % (w, h.message)
    resp = query(g, context)
    assert sorted(resp.responses) == ["A", "B", "C"]
    for ref, r in resp.responses.items():
        assert r.status == 502 and r.errorSource == "downstream", "%s: %d %r" % (ref, r.status, r.error)
        for w in words:
            assert w in r.error, "%s: %r not in error %r" % (ref, w, r.error)
    return h.message


def assert_no_secrets(p, certs, names):
    """No PEM block and no line of any key ever reaches the plugin's logs."""
    text = p.stderr_text()
    assert "-----BEGIN" not in text
    for name in names:
        body = [ln for ln in certs.text(name).splitlines() if ln and not ln.startswith("-----")]
        for ln in body:
            assert ln[:40] not in text, "material of %s found in the plugin's stderr" % name


# --------------------------------------------------------------------------
# tests


def test_tls_query_ok_with_ca(plugin, certs, start_backend):
    p, g = plugin
    b = start_backend()
    jd, sec = with_ca(certs)
    c = ctx(b.url, jd, sec)
    assert_ok(g, c)
    # The pool keeps its connections (and TLS sessions) across calls.
    for _ in range(5):
        resp = query(g, c)
        assert all(r.status == 200 for r in resp.responses.values())
    # localhost is in the certificate too.
    jd, sec = with_ca(certs)
    assert_ok(g, ctx("https://localhost:%d" % b.port, jd, sec))
    assert_no_secrets(p, certs, ["ca.pem", "server.key"])


def test_tls_unknown_ca_says_set_ca_or_skip_verify(plugin, certs, start_backend):
    p, g = plugin
    b = start_backend()
    # Verification is on by default against the system store.
    msg = assert_fails(g, ctx(b.url), b.hostport, "not signed by a trusted certificate authority",
                       "set the CA certificate", "skip-verify")
    assert "tlsCACert" in msg and "tlsSkipVerify" in msg
    # A CA that did not sign it.
    jd, sec = with_ca(certs, ca="other")
    assert_fails(g, ctx(b.url, jd, sec), "set the CA certificate or enable skip-verify")


def test_tls_skip_verify(plugin, certs, start_backend):
    p, g = plugin
    b = start_backend(cert="elsewhere")  # wrong name and unknown to the system store: both ignored
    assert_ok(g, ctx(b.url, {"tlsSkipVerify": True}))
    # skip-verify wins over a configured CA, as in Grafana.
    jd, sec = with_ca(certs, {"tlsSkipVerify": True}, ca="other")
    assert_ok(g, ctx(b.url, jd, sec))


def test_tls_hostname_mismatch_then_server_name(plugin, certs, start_backend):
    p, g = plugin
    b = start_backend(cert="elsewhere")
    jd, sec = with_ca(certs)
    msg = assert_fails(g, ctx(b.url, jd, sec), "set serverName", "metrics.internal", "127.0.0.1")
    assert "issued for metrics.internal" in msg, msg
    jd, sec = with_ca(certs, {"serverName": "metrics.internal"})
    assert_ok(g, ctx(b.url, jd, sec))
    # A serverName the certificate does not have is still refused.
    jd, sec = with_ca(certs, {"serverName": "db.internal"})
    assert_fails(g, ctx(b.url, jd, sec), "set serverName", "not for db.internal")


def test_tls_client_certificate_required_and_ok(plugin, certs, start_backend):
    p, g = plugin
    b = start_backend(client_ca="ca")
    jd, sec = with_ca(certs)
    assert_fails(g, ctx(b.url, jd, sec), "requires a client certificate", "tlsAuth", "tlsClientCert")
    # A certificate from a CA the backend does not trust.
    jd, sec = with_ca(certs, {"tlsAuth": True})
    sec.update({"tlsClientCert": certs.text("stranger.pem"), "tlsClientKey": certs.text("stranger.key")})
    assert_fails(g, ctx(b.url, jd, sec), "rejected the client certificate", "tlsClientKey")
    # The right one.
    jd, sec = with_ca(certs, {"tlsAuth": True})
    sec.update({"tlsClientCert": certs.text("client.pem"), "tlsClientKey": certs.text("client.key")})
    c = ctx(b.url, jd, sec)
    assert_ok(g, c)
    for _ in range(3):
        assert all(r.status == 200 for r in query(g, c).responses.values())
    assert_no_secrets(p, certs, ["client.key", "stranger.key", "client.pem"])


def test_tls_expired_certificate(plugin, certs, start_backend):
    p, g = plugin
    b = start_backend(cert="expired")
    jd, sec = with_ca(certs)
    assert_fails(g, ctx(b.url, jd, sec), "certificate expired on", "UTC", "renew")


def test_tls_to_a_plain_http_backend(plugin, start_backend):
    p, g = plugin
    b = start_backend(tls=False)
    url = b.url.replace("http://", "https://")
    h = health(g, ctx(url, {"tlsSkipVerify": True}))
    assert h.status == HEALTH_ERROR
    assert "does not speak TLS" in h.message and "http://" in h.message, h.message


def test_tls_bad_settings_name_the_setting_never_the_secret(plugin, certs, start_backend):
    p, g = plugin
    b = start_backend()
    cases = [
        ({"tlsAuthWithCACert": True}, {"tlsCACert": "S3CRET-NOT-A-CERT"}, ["tlsCACert", "no PEM certificate"]),
        ({"tlsAuthWithCACert": True}, {}, ["tlsAuthWithCACert is enabled but tlsCACert is empty"]),
        ({"tlsAuth": True, "tlsSkipVerify": True}, {"tlsClientCert": certs.text("client.pem")},
         ["tlsClientKey is empty"]),
        ({"tlsAuth": True, "tlsSkipVerify": True},
         {"tlsClientCert": certs.text("client.pem"), "tlsClientKey": "S3CRET-KEY"}, ["tlsClientKey", "no PEM private key"]),
        ({"tlsAuth": True, "tlsSkipVerify": True},
         {"tlsClientCert": certs.text("client.pem"), "tlsClientKey": certs.text("stranger.key")},
         ["tlsClientKey", "does not belong to the certificate"]),
        ({"tlsSkipVerify": True, "serverName": "bad name/x"}, {}, ["serverName"]),
    ]
    for jd, sec, words in cases:
        c = ctx(b.url, jd, sec)
        h = health(g, c)
        assert h.status == HEALTH_ERROR
        for w in words:
            assert w in h.message, "%r not in %r" % (w, h.message)
        assert "S3CRET" not in h.message and "-----BEGIN" not in h.message
        r = query(g, c, (("A", "sine:1"),)).responses["A"]
        assert r.status != 200 and words[0] in r.error and "S3CRET" not in r.error
    assert "S3CRET" not in p.stderr_text()
    assert_no_secrets(p, certs, ["client.key", "stranger.key"])
