"""QueryData fan-out, CheckHealth and CallResource against a scripted backend.

The plugin is the built binary spawned as Grafana spawns it; the client is
grpcio; frames are decoded by apache-arrow (tests/arrow/decode.mjs).
"""
import json
import subprocess
import time

import pytest

import pluginproc as pp
from backend_mock import Backend

ARROW_DIR = pp.REPO / "tests" / "arrow"


@pytest.fixture(scope="module")
def arrow_decoder():
    if not (ARROW_DIR / "node_modules" / "apache-arrow").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=ARROW_DIR, check=True)

    def decode(frame_bytes, tmp_path, name):
        path = tmp_path / name
        path.write_bytes(frame_bytes)
        out = subprocess.run(["node", str(ARROW_DIR / "decode.mjs"), str(path)], capture_output=True, text=True,
                             check=True)
        return json.loads(out.stdout)

    return decode


@pytest.fixture
def backend():
    b = Backend()
    yield b
    b.close()


@pytest.fixture
def plugin(spawn):
    p = spawn(extra_env={"GF_PLUGIN_LOG_LEVEL": "debug"})
    g = pp.Grpc(p.target)
    yield p, g
    g.close()


def ctx(url, json_data=None, uid="ds-fan", updated=1700000000000, secure=None, basic=None):
    c = pp.plugin_context(url=url)
    ds = c.dataSourceInstanceSettings
    ds.uid = uid
    ds.lastUpdatedMS = updated
    ds.jsonData = json.dumps(json_data or {}).encode()
    for k, v in (secure or {}).items():
        ds.decryptedSecureJsonData[k] = v
    if basic:
        ds.basicAuthEnabled = True
        ds.basicAuthUser = basic[0]
        ds.decryptedSecureJsonData["basicAuthPassword"] = basic[1]
    return c


def qreq(context, targets, **kw):
    v2 = pp.pb()["pluginv2_pb2"]
    req = v2.QueryDataRequest(pluginContext=context, **kw)
    for ref, model in targets:
        if isinstance(model, str):
            model = {"target": model}
        model = dict(model, refId=ref)
        req.queries.add(refId=ref, maxDataPoints=500, intervalMS=30000,
                        timeRange=v2.TimeRange(fromEpochMS=1700000000000, toEpochMS=1700003600000),
                        json=json.dumps(model).encode())
    return req


def test_mixed_queries_each_get_their_own_answer(plugin, backend, arrow_decoder, tmp_path):
    p, g = plugin
    req = qreq(ctx(backend.url), [
        ("A", "series:2"), ("B", "table"), ("C", "frame"), ("D", "empty"), ("E", "status:503"),
        ("F", "status:404"), ("G", "malformed"), ("H", {"payload": {}}), ("I", {"target": "series:1", "hide": True}),
    ])
    r = g.query_data(req, timeout=20).responses
    assert sorted(r) == list("ABCDEFGHI")
    assert r["A"].status == 200 and not r["A"].error and len(r["A"].frames) == 2
    s0 = arrow_decoder(r["A"].frames[0], tmp_path, "a0.arrow")
    assert s0["name"] == "s0" and s0["refId"] == "A"
    assert s0["meta"] == {"type": "timeseries-multi", "typeVersion": [0, 1], "executedQueryString": "series:2"}
    time_f, value_f = s0["fields"]
    assert (time_f["name"], time_f["type"], time_f["nullable"]) == ("Time", "timestamp[ns]", False)
    assert time_f["values"] == ["1000000000", "2000000000", "3000000000"]  # sorted ascending
    assert (value_f["name"], value_f["type"], value_f["nullable"]) == ("Value", "float64", True)
    assert value_f["values"] == [None, 0.5, 0] and value_f["labels"] == {"i": "0"}
    t = arrow_decoder(r["B"].frames[0], tmp_path, "b.arrow")
    assert [f["name"] for f in t["fields"]] == ["time", "host", "v"]
    assert [f["type"] for f in t["fields"]] == ["timestamp[ns]", "utf8", "float64"]
    assert t["fields"][2]["values"] == [1.5, None]
    f = arrow_decoder(r["C"].frames[0], tmp_path, "c.arrow")
    assert f["name"] == "f" and f["fields"][1]["values"] == ["p", "q"]
    assert r["D"].status == 200 and len(r["D"].frames) == 0 and not r["D"].error
    assert r["E"].status == 502 and r["E"].errorSource == "downstream" and "HTTP 503" in r["E"].error
    assert "injected 503" in r["E"].error
    assert r["F"].status == 404 and "injected 404" in r["F"].error
    assert r["G"].status == 502 and "could not be read" in r["G"].error and "truncated" in r["G"].error
    assert r["H"].status == 400 and "no target" in r["H"].error
    assert r["I"].status == 200 and len(r["I"].frames) == 0
    # Hidden and invalid queries never reach the backend.
    assert len(backend.bodies) == 7


def test_request_body_and_macros(plugin, backend):
    p, g = plugin
    model = {"target": "echo:$__interval/$__from/$__range_s", "payload": {"x": "$__interval_ms"}, "extra": 1}
    r = g.query_data(qreq(ctx(backend.url), [("A", model)]), timeout=20).responses["A"]
    assert r.status == 200, r.error
    body = json.loads(backend.bodies[-1])
    tgt = body["targets"][0]
    assert tgt["target"] == "echo:30s/1700000000000/3600"
    assert tgt["payload"] == {"x": "30000"} and tgt["extra"] == 1 and tgt["refId"] == "A"
    assert body["range"]["from"] == "2023-11-14T22:13:20.000Z" and body["range"]["to"] == "2023-11-14T23:13:20.000Z"
    assert body["intervalMs"] == 30000 and body["maxDataPoints"] == 500 and body["interval"] == "30s"
    assert body["scopedVars"]["__interval"] == {"text": "30s", "value": "30s"}
    hdrs = backend.headers[-1]
    assert hdrs["Content-Type"] == "application/json" and hdrs["User-Agent"].startswith("seed-inhouse-datasource/")


def test_data_source_timeout_is_504_naming_the_setting(plugin, backend):
    p, g = plugin
    r = g.query_data(qreq(ctx(backend.url, {"timeout": 1}), [("A", "sleep:3")]), timeout=20).responses["A"]
    assert r.status == 504 and r.errorSource == "downstream"
    assert "timeout" in r.error and "data source settings" in r.error


@pytest.mark.skipif(pp.under_valgrind, reason="time-bound: memcheck runs the plugin 20-50x slower")
def test_grpc_deadline_aborts_the_fetch(plugin, backend):
    p, g = plugin
    # The plugin ends the fetches just before the deadline and answers each
    # refId with 504 naming the deadline (contract §5).
    t0 = time.time()
    r = g.query_data(qreq(ctx(backend.url), [("A", "sleep:5"), ("B", "sleep:5")]), timeout=1.0).responses
    assert time.time() - t0 < 1.0
    for ref in "AB":
        assert r[ref].status == 504 and "deadline" in r[ref].error and r[ref].errorSource == "downstream"
    deadline = time.time() + 3
    while backend.closed_early < 2 and time.time() < deadline:
        time.sleep(0.05)
    assert backend.closed_early == 2  # both connections closed by the plugin


def test_client_cancel_aborts_the_fetch(plugin, backend):
    p, g = plugin
    fut = g.query_data.future(qreq(ctx(backend.url), [("A", "sleep:5")]), timeout=20)
    deadline = time.time() + 3
    while backend.active < 1 and time.time() < deadline:
        time.sleep(0.02)
    fut.cancel()
    deadline = time.time() + 3
    while backend.closed_early < 1 and time.time() < deadline:
        time.sleep(0.05)
    assert backend.closed_early == 1
    # And the plugin is fine afterwards.
    assert g.query_data(qreq(ctx(backend.url), [("A", "series:1")]), timeout=10).responses["A"].status == 200


def test_max_concurrent_queries_bounds_the_fan_out(plugin, backend):
    p, g = plugin
    targets = [(chr(65 + i), "sleep:0.3") for i in range(6)]
    t0 = time.time()
    r = g.query_data(qreq(ctx(backend.url, {"maxConcurrentQueries": 2}), targets), timeout=20).responses
    assert all(v.status == 200 for v in r.values())
    assert backend.max_active == 2
    assert time.time() - t0 >= 0.85  # three waves of 0.3 s


def test_response_limit(plugin, backend):
    p, g = plugin
    r = g.query_data(qreq(ctx(backend.url, {"maxResponseBytes": 2000}), [("A", "big:1000")]), timeout=20).responses["A"]
    assert r.status == 502 and "2000 bytes" in r.error and "maxResponseBytes" in r.error


def test_health_messages(plugin, backend):
    p, g = plugin
    v2 = g.v2
    ok = g.check_health(v2.CheckHealthRequest(pluginContext=ctx(backend.url)), timeout=10)
    assert ok.status == v2.CheckHealthResponse.OK and "working" in ok.message
    details = json.loads(ok.jsonDetails)
    assert details["url"] == backend.url and details["latencyMs"] >= 0
    backend.health_mode = "401"
    bad = g.check_health(v2.CheckHealthRequest(pluginContext=ctx(backend.url, uid="h2")), timeout=10)
    assert bad.status == v2.CheckHealthResponse.ERROR and "check credentials" in bad.message
    backend.health_mode = "500"
    down = g.check_health(v2.CheckHealthRequest(pluginContext=ctx(backend.url, uid="h3")), timeout=10)
    assert down.status == v2.CheckHealthResponse.ERROR and "HTTP 500" in down.message and "database is down" in down.message
    refused = g.check_health(v2.CheckHealthRequest(pluginContext=ctx("http://127.0.0.1:1", uid="h4")), timeout=10)
    assert refused.status == v2.CheckHealthResponse.ERROR and "is the backend running?" in refused.message
    dns = g.check_health(v2.CheckHealthRequest(pluginContext=ctx("http://no-such-host.invalid", uid="h5")), timeout=20)
    assert dns.status == v2.CheckHealthResponse.ERROR and "resolve" in dns.message
    invalid = g.check_health(v2.CheckHealthRequest(pluginContext=ctx("ftp://x", uid="h6")), timeout=10)
    assert invalid.status == v2.CheckHealthResponse.ERROR and "http://" in invalid.message


def test_resource_proxy(plugin, backend):
    p, g = plugin
    v2 = g.v2
    req = v2.CallResourceRequest(pluginContext=ctx(backend.url), path="metrics", method="POST", body=b'{"metric":"x"}')
    req.headers["Content-Type"].values.append("application/json")
    msgs = list(g.call_resource(req, timeout=10))
    assert len(msgs) == 1 and msgs[0].code == 200
    assert json.loads(msgs[0].body) == {"path": "/metrics", "echo": '{"metric":"x"}'}
    assert list(msgs[0].headers["Content-Type"].values) == ["application/json"]


def test_instance_rebuilt_when_settings_change(plugin, backend):
    p, g = plugin
    other = Backend()
    try:
        r1 = g.query_data(qreq(ctx(backend.url, updated=1), [("A", "series:1")]), timeout=10).responses["A"]
        r2 = g.query_data(qreq(ctx(other.url, updated=2), [("A", "series:1")]), timeout=10).responses["A"]
        assert r1.status == r2.status == 200
        assert len(backend.bodies) == 1 and len(other.bodies) == 1
    finally:
        other.close()


def test_credentials_are_sent_and_never_logged(plugin, backend):
    p, g = plugin
    c = ctx(backend.url, {"httpHeaderName1": "X-Api-Key"}, secure={"httpHeaderValue1": "sekret-header-4711"},
            basic=("alice", "sekret-pass-0815"))
    r = g.query_data(qreq(c, [("A", "series:1"), ("B", "status:401")]), timeout=10).responses
    assert r["A"].status == 200
    h = backend.headers[-1]
    assert h["X-Api-Key"] == "sekret-header-4711"
    assert h["Authorization"].startswith("Basic ")
    text = p.stderr_text() + r["B"].error + g.metrics_text()
    for secret in ("sekret-header-4711", "sekret-pass-0815", h["Authorization"].split()[1]):
        assert secret not in text


def test_header_injection_in_settings_is_refused(plugin, backend):
    p, g = plugin
    c = ctx(backend.url, {"httpHeaderName1": "X-Evil"}, secure={"httpHeaderValue1": "a\r\nInjected: yes"}, uid="evil")
    r = g.query_data(qreq(c, [("A", "series:1")]), timeout=10).responses["A"]
    assert r.status == 400 and "custom header 1" in r.error and "Injected" not in r.error
    assert backend.bodies == []


def test_backend_metrics_are_reported(plugin, backend):
    p, g = plugin
    g.query_data(qreq(ctx(backend.url), [("A", "series:1"), ("B", "status:500")]), timeout=10)
    samples, _ = pp.parse_prometheus(g.metrics_text())
    assert pp.metric_values(samples, "plugin_backend_requests_total", endpoint="query") == [2.0]
    assert pp.metric_values(samples, "plugin_backend_request_errors_total", endpoint="query",
                            reason="http_status") == [1.0]
    assert pp.metric_values(samples, "plugin_backend_request_duration_seconds_count", endpoint="query") == [2.0]


def test_oauth_pass_thru_forwards_the_users_identity(plugin, backend):
    p, g = plugin
    req = qreq(ctx(backend.url, {"oauthPassThru": True}, uid="oauth"), [("A", "series:1")])
    req.headers["Authorization"] = "Bearer user-token-123"
    req.headers["X-Id-Token"] = "id-token-456"
    assert g.query_data(req, timeout=10).responses["A"].status == 200
    h = backend.headers[-1]
    assert h["Authorization"] == "Bearer user-token-123" and h["X-Id-Token"] == "id-token-456"
    # Without the setting, the user's identity stays home.
    req2 = qreq(ctx(backend.url, uid="no-oauth"), [("A", "series:1")])
    req2.headers["Authorization"] = "Bearer user-token-123"
    assert g.query_data(req2, timeout=10).responses["A"].status == 200
    assert "Authorization" not in backend.headers[-1]
    assert "user-token-123" not in p.stderr_text()


def test_grafana_response_limit_applies_and_rebuilds_the_instance(plugin, backend):
    p, g = plugin
    c = ctx(backend.url, uid="limit")
    c.grafanaConfig["GF_RESPONSE_LIMIT"] = "1500"
    r = g.query_data(qreq(c, [("A", "big:1000")]), timeout=10).responses["A"]
    assert r.status == 502 and "1500 bytes" in r.error and "GF_RESPONSE_LIMIT" in r.error
    # A grafanaConfig change is a settings change: the new limit applies at once.
    c.grafanaConfig["GF_RESPONSE_LIMIT"] = "10000000"
    r = g.query_data(qreq(c, [("A", "big:1000")]), timeout=10).responses["A"]
    assert r.status == 200 and len(r.frames) == 1
