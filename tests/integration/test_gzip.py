"""Compressed answers end to end: the real plugin binary against the reference
backend (tools/refbackend) answering with `encoding=gzip|deflate|deflate-raw|br`
and `corrupt=1` (tools/refbackend/README.md).

The plugin asks for `Accept-Encoding: gzip, deflate` and inflates bodies while
they stream (src/fetch/gunzip.c); maxResponseBytes counts the decompressed
bytes, so a gzip bomb of valid JSON stops at the limit. Fixtures and helpers
(`backend`, `plugin`, `ctx`, `qreq`, `wait_for`) come from test_faults.
"""
import json
import time

import pytest

import pluginproc as pp
import test_faults
from test_faults import ctx, qreq, wait_for

# test_faults' fixtures: a refbackend of its own per test, a spawned plugin
backend = test_faults.backend
plugin = test_faults.plugin

LIMIT = 1000000


def plain(target):
    """The target without its behaviour suffix: what the frames must equal."""
    return target.split("?", 1)[0]


def frames_of(resp, ref, target):
    """The refId's frames as JSON objects, the target string normalised away
    (frame elements echo it in meta.executedQueryString)."""
    r = resp.responses[ref]
    assert r.status == 200 and not r.error, "%s (%s): %d %r" % (ref, target, r.status, r.error)
    out = []
    for f in r.frames:
        text = f.decode("utf-8")
        out.append(json.loads(text.replace(json.dumps(target)[1:-1], json.dumps(plain(target))[1:-1])))
    return out


def arrow_frames(resp, ref, target, as_ref, as_target):
    """The refId's Arrow frames, byte for byte, with the refId and the target
    string (echoed in the metadata) replaced by others of the same length."""
    r = resp.responses[ref]
    assert r.status == 200 and not r.error, "%s: %d %r" % (ref, r.status, r.error)
    assert len(ref) == len(as_ref) and len(target) == len(as_target)
    return [f.replace(target.encode(), as_target.encode()).replace(ref.encode(), as_ref.encode())
            for f in r.frames]


SHAPES = ["sine:3", "table:4", "frame:5", "points:3000", "empty"]
BASE = "latency=" + "0" * 20 + "&encoding=identity"


def padded(shape, rest):
    """shape?latency=000…&<rest>, as long as shape?BASE: the same target
    length, so Arrow frames can be compared byte for byte."""
    zeros = len(BASE) - len("latency=&") - len(rest)
    assert zeros >= 1, rest
    return "%s?latency=%s&%s" % (shape, "0" * zeros, rest)


@pytest.mark.parametrize("enc", ["gzip", "deflate", "deflate-raw"])
def test_compressed_answers_give_the_same_frames(plugin, backend, enc):
    p, g = plugin
    context = ctx(backend.url, uid="ds-gz-" + enc)
    variants = {"B": padded("%s", "encoding=identity"), "Z": padded("%s", "encoding=" + enc),
                "C": padded("%s", "encoding=%s&mode=chunked" % enc)}
    targets = []
    for i, shape in enumerate(SHAPES):
        targets.append(("P%d" % i, shape))
        for kind, v in variants.items():
            targets.append(("%s%d" % (kind, i), v.replace("%s", shape, 1)))
    tmap = dict(targets)
    # JSON frames: equal to the plain answer's once the target is normalised
    resp = g.query_data(qreq(context, targets, fmt=1), timeout=20)
    assert sorted(resp.responses) == sorted(tmap)
    for i, shape in enumerate(SHAPES):
        want = frames_of(resp, "P%d" % i, shape)
        assert len(want) == {"sine:3": 3, "empty": 0}.get(shape, 1), (shape, len(want))
        for kind in variants:
            ref = "%s%d" % (kind, i)
            got = frames_of(resp, ref, tmap[ref])
            for fr in got:
                fr["schema"]["refId"] = "P%d" % i
            assert got == want, "%s: JSON frames differ from the uncompressed answer" % tmap[ref]
    # Arrow frames: byte for byte against the uncompressed padded target
    resp = g.query_data(qreq(context, targets), timeout=20)
    for i, shape in enumerate(SHAPES):
        base = "B%d" % i
        want = arrow_frames(resp, base, tmap[base], base, tmap[base])
        for kind in "ZC":
            ref = "%s%d" % (kind, i)
            got = arrow_frames(resp, ref, tmap[ref], base, tmap[base])
            assert got == want, "%s (%s): Arrow frames differ from the uncompressed answer" % (ref, tmap[ref])
    assert p.alive()


def test_compressed_huge_under_the_limit_is_complete(plugin, backend):
    """A streamed (chunked) compressed answer of 800 KB decompressed, under the
    limit: the same frame as the uncompressed one."""
    p, g = plugin
    context = ctx(backend.url, {"maxResponseBytes": LIMIT}, uid="ds-gz-huge")
    targets = [("P", "sine:1?mode=huge&bytes=800000"), ("Z", "sine:1?mode=huge&bytes=800000&encoding=gzip"),
               ("D", "sine:1?mode=huge&bytes=800000&encoding=deflate")]
    resp = g.query_data(qreq(context, targets, fmt=1), timeout=20)
    want = frames_of(resp, "P", targets[0][1])
    n = len(want[0]["data"]["values"][0])
    assert n > 20000, n
    for ref in "ZD":
        got = frames_of(resp, ref, dict(targets)[ref])
        got[0]["schema"]["refId"] = "P"
        assert got == want, ref


@pytest.mark.parametrize("enc", ["gzip", "deflate"])
def test_bomb_stops_at_the_decompressed_limit(plugin, backend, enc):
    """50 MiB of valid JSON, about 15 MiB compressed, against a 1 MB limit: that
    refId fails with 502 naming the limit, the others in the call are fine,
    and the plugin stops reading early (the backend sees the connection
    closed before it finished)."""
    p, g = plugin
    context = ctx(backend.url, {"maxResponseBytes": LIMIT}, uid="ds-gz-bomb")
    targets = [("bomb", "sine:1?mode=huge&bytes=50m&encoding=" + enc), ("okz", "sine:2?encoding=" + enc),
               ("ok", "sine:2"), ("okhuge", "sine:1?mode=huge&bytes=500k&encoding=" + enc)]
    before = backend.stats()["closed_by_client_before_response"]
    t0 = time.monotonic()
    resp = g.query_data(qreq(context, targets), timeout=30)
    took = time.monotonic() - t0
    r = resp.responses["bomb"]
    print("bomb (%s): %.2fs, %d %r" % (enc, took, r.status, r.error))
    assert r.status == 502 and r.errorSource == "downstream" and len(r.frames) == 0, (r.status, r.error)
    for w in ("%d bytes" % LIMIT, "decompressed", enc, "%s:%d" % (backend.host, backend.port)):
        assert w in r.error, "%r not in %r" % (w, r.error)
    for ref in ("okz", "ok", "okhuge"):
        o = resp.responses[ref]
        assert o.status == 200 and not o.error and len(o.frames) == (2 if ref != "okhuge" else 1), (ref, o.error)
    assert wait_for(lambda: backend.stats()["closed_by_client_before_response"] - before >= 1, 3.0), \
        "the plugin read the whole bomb instead of stopping at the limit"
    # still serving, on the same data source
    r = g.query_data(qreq(context, [("again", "sine:1?encoding=" + enc)]), timeout=10).responses["again"]
    assert r.status == 200 and len(r.frames) == 1
    assert p.alive()


@pytest.mark.parametrize("target,enc", [
    ("sine:2?encoding=gzip&corrupt=1", "gzip"),
    ("sine:2?encoding=deflate&corrupt=1", "deflate"),
    ("sine:2?encoding=deflate-raw&corrupt=1", "deflate"),
    ("sine:1?mode=huge&bytes=2m&encoding=gzip&corrupt=1", "gzip"),
])
def test_corrupt_body_is_a_clear_error(plugin, backend, target, enc):
    p, g = plugin
    context = ctx(backend.url, {"maxResponseBytes": LIMIT}, uid="ds-gz-corrupt")
    resp = g.query_data(qreq(context, [("bad", target), ("ok", "sine:1?encoding=" + enc)]), timeout=20)
    r = resp.responses["bad"]
    print("%s: %d %r" % (target, r.status, r.error))
    assert r.status == 502 and r.errorSource == "downstream" and len(r.frames) == 0, (r.status, r.error)
    for w in ("could not be decompressed", enc, "%s:%d" % (backend.host, backend.port)):
        assert w in r.error, "%r not in %r" % (w, r.error)
    assert "invalid block type" in r.error, r.error
    o = resp.responses["ok"]
    assert o.status == 200 and len(o.frames) == 1, o.error
    assert p.alive()


@pytest.mark.parametrize("target", ["sine:2?encoding=br", "sine:1?mode=huge&bytes=5m&encoding=br"])
def test_unsupported_encoding_names_it(plugin, backend, target):
    p, g = plugin
    context = ctx(backend.url, {"maxResponseBytes": LIMIT}, uid="ds-gz-br")
    resp = g.query_data(qreq(context, [("br", target), ("ok", "sine:1")]), timeout=20)
    r = resp.responses["br"]
    print("%s: %d %r" % (target, r.status, r.error))
    assert r.status == 502 and r.errorSource == "downstream" and len(r.frames) == 0, (r.status, r.error)
    for w in ('Content-Encoding "br"', "cannot decode", "gzip and deflate", "%s:%d" % (backend.host, backend.port)):
        assert w in r.error, "%r not in %r" % (w, r.error)
    assert resp.responses["ok"].status == 200
    assert p.alive()


def test_compressed_error_status_is_read(plugin, backend):
    """An injected 503 whose JSON error body is gzip-compressed: the error
    message quotes the decompressed body."""
    p, g = plugin
    context = ctx(backend.url, uid="ds-gz-status")
    resp = g.query_data(qreq(context, [("s", "sine:1?encoding=gzip&status=503")]), timeout=20)
    r = resp.responses["s"]
    print("status: %d %r" % (r.status, r.error))
    assert r.status == 502 and "HTTP 503" in r.error and "injected 503" in r.error, r.error


def test_health_and_accept_encoding(plugin, backend):
    p, g = plugin
    v2 = pp.pb()["pluginv2_pb2"]
    context = ctx(backend.url, uid="ds-gz-health")
    h = g.check_health(v2.CheckHealthRequest(pluginContext=context), timeout=15)
    assert h.status == v2.CheckHealthResponse.OK, h.message
    s = backend.stats()
    assert s["accept_encoding_gzip"] >= 1 and "gzip" in s["last_accept_encoding"], s
    before = s["accept_encoding_gzip"]
    r = g.query_data(qreq(context, [("A", "sine:1"), ("B", "sine:1?encoding=gzip")]), timeout=10)
    assert all(x.status == 200 for x in r.responses.values())
    s = backend.stats()
    assert s["accept_encoding_gzip"] - before == 2, s
    assert s["last_accept_encoding"] == "gzip, deflate", s


@pytest.mark.parametrize("target", ["sine:3?encoding=gzip&mode=truncate",
                                    "sine:3?encoding=deflate&mode=truncate&chunked=1",
                                    "sine:3?encoding=gzip&mode=reset"])
def test_cut_compressed_body(plugin, backend, target):
    """Half of a compressed body, then FIN or RST: the connection's end is
    reported (not a decompression or JSON error)."""
    p, g = plugin
    resp = g.query_data(qreq(ctx(backend.url, uid="ds-gz-cut"), [("cut", target)]), timeout=20)
    r = resp.responses["cut"]
    print("%s: %d %r" % (target, r.status, r.error))
    assert r.status == 502 and r.errorSource == "downstream" and len(r.frames) == 0, (r.status, r.error)
    assert "%s:%d" % (backend.host, backend.port) in r.error and "closed the connection" in r.error, r.error
