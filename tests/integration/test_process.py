"""Process-level contract: cookie, handshake, socket, stop paths, logging,
standalone mode (docs/behaviour.md, "Process")."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

import pluginproc as pp


# ---------------------------------------------------------------- cookie

@pytest.mark.parametrize("cookie", [None, "", "panel", "DATASOURCE"])
def test_refuses_to_run_without_cookie(spawn, sockdir, cookie):
    extra = {"grafana_plugin_type": cookie} if cookie is not None else {}
    env = pp.grafana_env(sockdir, extra, cookie=False)
    if cookie is None:
        assert "grafana_plugin_type" not in env
    p = spawn(env=env, handshake=False)
    p.final_checked = True
    rc = p.wait(15)
    assert rc == 1, "exit status %r (expected 1)" % (rc,)
    out = p.proc.stdout.read()
    assert out == b"", "stdout must be empty, got %r" % out
    err = p.stderr_text()
    first = err.lstrip().split("\n", 1)[0]
    try:
        first_msg = json.loads(first).get("@message", "")
    except ValueError:
        first_msg = first
    assert first.startswith("This binary is a plugin.") or first_msg.startswith("This binary is a plugin."), \
        "stderr note must start with 'This binary is a plugin.', got %r" % err[:500]
    assert os.listdir(sockdir) == [], "no socket may be created: %r" % os.listdir(sockdir)


# ---------------------------------------------------------------- handshake and socket

def test_handshake_line_format_and_flushed_while_running(spawn, sockdir):
    p = spawn(handshake=False)
    line = p.read_handshake(timeout=15)
    # read while the process is still running: the line was flushed, not
    # written out by exit()
    assert p.alive(), "the handshake only arrived because the process exited"
    m = pp.HANDSHAKE_UNIX_RE.match(line)
    assert m, "handshake %r does not match 1|2|unix|<path>|grpc|\\n" % line
    path = m.group(1)
    assert os.path.dirname(path) == sockdir, "socket %s not in PLUGIN_UNIX_SOCKET_DIR %s" % (path, sockdir)
    assert re.fullmatch(r"plugin\d+", os.path.basename(path)), "socket name %r" % os.path.basename(path)
    assert len(path.encode()) < 108
    # the socket is listening by the time the line is printed
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect(path)
    s.close()
    # exactly one line: nothing more appears while it serves
    c = pp.Grpc(p.target)
    c.wait_ready()
    c.health_check(c.hl.HealthCheckRequest(service="plugin"), timeout=5)
    c.close()
    time.sleep(0.2)
    assert bytes(p.stdout_after) == b""


def test_socket_mode_0600(plugin):
    is_sock, mode, _ = pp.socket_mode(plugin.socket_path)
    assert is_sock, "%s is not a socket" % plugin.socket_path
    assert mode == 0o600, "socket mode %o, expected 600" % mode
    assert os.stat(plugin.socket_path).st_uid == os.geteuid()


@pytest.mark.parametrize("form", ["name", "gid"])
def test_socket_group(spawn, form):
    name, gid = pp.other_group()
    value = name if form == "name" else str(gid)
    p = spawn({"PLUGIN_UNIX_SOCKET_GROUP": value})
    is_sock, mode, sgid = pp.socket_mode(p.socket_path)
    assert is_sock
    assert mode == 0o660, "socket mode %o, expected 660 with PLUGIN_UNIX_SOCKET_GROUP=%s" % (mode, value)
    assert sgid == gid, "socket group %d, expected %d (%s)" % (sgid, gid, value)
    c = pp.Grpc(p.target)
    c.wait_ready()
    assert c.health_check(c.hl.HealthCheckRequest(service=""), timeout=5).status == 1
    c.close()


def test_socket_in_tmpdir_without_socket_dir(spawn):
    d = pp.short_tmpdir("gpxt")
    try:
        p = spawn({"TMPDIR": d}, socket_dir=None)
        assert "PLUGIN_UNIX_SOCKET_DIR" not in p.env
        assert os.path.dirname(p.socket_path) == d
        assert re.fullmatch(r"plugin\d+", os.path.basename(p.socket_path))
        rc = p.stop()
        p.final_checked = True
        assert rc == 0
        assert not os.path.lexists(p.socket_path)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_socket_in_tmp_by_default(spawn):
    p = spawn(socket_dir=None)
    assert "TMPDIR" not in p.env and "PLUGIN_UNIX_SOCKET_DIR" not in p.env
    assert os.path.dirname(p.socket_path) == "/tmp"
    assert re.fullmatch(r"plugin\d+", os.path.basename(p.socket_path))


def test_two_instances_get_distinct_sockets(spawn):
    a = spawn()
    b = spawn()
    assert a.socket_path != b.socket_path
    for p in (a, b):
        c = pp.Grpc(p.target)
        c.wait_ready()
        c.health_check(c.hl.HealthCheckRequest(service="plugin"), timeout=5)
        c.close()


# ---------------------------------------------------------------- stopping

def _open_like_grafana(c):
    """Grafana opens StreamStdio and StartStream right after connecting and
    keeps them open for the plugin's whole life."""
    stdio = c.stream_stdio(c.gp.Empty())
    stop = threading.Event()

    def conninfo():
        stop.wait()
        return
        yield  # pragma: no cover

    broker = c.start_stream(conninfo())
    return stdio, broker, stop


def test_shutdown_rpc_exits_quickly(spawn):
    p = spawn()
    c = pp.Grpc(p.target)
    c.wait_ready()
    stdio, broker, stop = _open_like_grafana(c)
    time.sleep(0.2)
    assert p.alive()
    t0 = time.monotonic()
    resp = c.shutdown(c.gp.Empty(), timeout=5)
    assert resp == c.gp.Empty()
    rc = p.wait(5)
    elapsed = time.monotonic() - t0
    p.final_checked = True
    assert rc == 0, "exit status %r after Shutdown" % (rc,)
    assert elapsed < 2.0, "exit took %.2fs after Shutdown (must be well under 2s)" % elapsed
    assert not os.path.lexists(p.socket_path), "socket file left behind"
    stop.set()
    stdio.cancel()
    broker.cancel()
    c.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_cleanly(spawn, sig):
    p = spawn()
    c = pp.Grpc(p.target)
    c.wait_ready()
    stdio, broker, stop = _open_like_grafana(c)
    time.sleep(0.2)
    t0 = time.monotonic()
    p.send_signal(sig)
    rc = p.wait(10)
    elapsed = time.monotonic() - t0
    p.final_checked = True
    assert rc == 0, "exit status %r after %s" % (rc, sig.name)
    # open streams are cancelled after the grace period (default 1500 ms)
    assert elapsed < 3.0, "exit took %.2fs after %s" % (elapsed, sig.name)
    assert not os.path.lexists(p.socket_path), "socket file left behind"
    stop.set()
    c.close()


def test_signal_stop_idle(spawn):
    p = spawn()
    t0 = time.monotonic()
    rc = p.stop(signal.SIGTERM)
    p.final_checked = True
    assert rc == 0
    assert time.monotonic() - t0 < 2.0
    assert not os.path.lexists(p.socket_path)
    assert bytes(p.stdout_after) == b""


def test_shutdown_grace_period_is_configurable(spawn):
    p = spawn({"GF_PLUGIN_SHUTDOWN_GRACE_MS": "100"})
    c = pp.Grpc(p.target)
    c.wait_ready()
    stdio = c.stream_stdio(c.gp.Empty())
    ended = threading.Event()
    result = {}

    def consume():
        try:
            for _ in stdio:
                pass
            result["code"] = "OK"
        except Exception as e:  # grpc.RpcError
            result["code"] = getattr(e, "code", lambda: e)()
        ended.set()

    threading.Thread(target=consume, daemon=True).start()
    time.sleep(0.3)
    assert not ended.is_set(), "StreamStdio ended on its own"
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    rc = p.wait(10)
    elapsed = time.monotonic() - t0
    p.final_checked = True
    assert rc == 0
    assert elapsed < 1.2, "with GF_PLUGIN_SHUTDOWN_GRACE_MS=100 the exit took %.2fs" % elapsed
    assert ended.wait(5), "the held stream never ended after the plugin stopped"
    c.close()


_INTERMEDIATE = r"""
import os, subprocess, sys, time
fd = int(sys.argv[1])
p = subprocess.Popen([sys.argv[2]], stdin=subprocess.DEVNULL, close_fds=True)
os.write(fd, b"%d\n" % p.pid)
os.close(fd)
time.sleep(600)
"""


def _proc_gone(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state in ("Z", "X")
    except (OSError, IndexError):
        return True


def test_exits_when_parent_dies(sockdir):
    env = pp.grafana_env(sockdir)
    r, w = os.pipe()
    parent = subprocess.Popen([sys.executable, "-c", _INTERMEDIATE, str(w), pp.plugin_bin()], env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              pass_fds=(w,))
    os.close(w)
    try:
        with os.fdopen(r, "rb") as f:
            pid = int(f.readline())
        line = b""
        deadline = time.monotonic() + 15
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            ch = parent.stdout.read(1)
            if not ch:
                break
            line += ch
        m = pp.HANDSHAKE_UNIX_RE.match(line.decode())
        assert m, "handshake %r" % line
        path = m.group(1)
        assert not _proc_gone(pid)
        parent.kill()
        parent.wait(5)
        deadline = time.monotonic() + 10
        while not _proc_gone(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _proc_gone(pid), "plugin %d still running 10s after its parent died" % pid
        assert pp.wait_for_path_gone(path, 2), "socket not unlinked after parent death"
        rest = parent.stdout.read()
        assert rest == b"", "stdout after handshake: %r" % rest
        err = parent.stderr.read().decode("utf-8", "replace")
        for line in err.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                rec = {"__raw__": line}
            assert not pp.check_log_record(rec), (line, pp.check_log_record(rec))
    finally:
        if parent.poll() is None:
            parent.kill()
        try:
            if not _proc_gone(pid):
                os.kill(pid, signal.SIGKILL)
        except Exception:
            pass


# ---------------------------------------------------------------- logging

def _exercise(c):
    """A mix of calls that succeed and fail, to make the plugin log."""
    import grpc
    c.health_check(c.hl.HealthCheckRequest(service="plugin"), timeout=5)
    c.check_health(pp.check_health_request(), timeout=5)
    c.query_data(pp.query_data_request(("A", "B")), timeout=5)
    list(c.call_resource(c.v2.CallResourceRequest(pluginContext=pp.plugin_context(), path="nope",
                                                  method="GET", url="nope"), timeout=5))
    for path in ("/pluginv2.Nope/Foo", "/pluginv2.Data/Nope"):
        with pytest.raises(grpc.RpcError):
            c.raw_unary(path)(b"", timeout=5)
    with pytest.raises(grpc.RpcError):
        c.raw_unary("/pluginv2.Data/QueryData")(b"\x0a\x05ab", timeout=5)
    with pytest.raises(grpc.RpcError):
        list(c.stream_stdio(c.gp.Empty(), timeout=0.2))
    c.metrics_text()


def _run_and_collect(spawn, extra):
    p = spawn(extra)
    c = pp.Grpc(p.target)
    c.wait_ready()
    _exercise(c)
    c.close()
    rc = p.stop()
    p.final_checked = True
    assert rc == 0
    recs = p.log_records()
    for rec in recs:
        bad = pp.check_log_record(rec)
        assert not bad, "stderr line %r: %s" % (rec, bad)
    assert bytes(p.stdout_after) == b""
    return recs


def test_stderr_is_hclog_json(spawn):
    recs = _run_and_collect(spawn, {})
    levels = {r["@level"] for r in recs}
    assert not levels & {"trace", "debug"}, "debug/trace lines at the default level info: %r" % levels


def test_log_level_debug(spawn):
    recs = _run_and_collect(spawn, {"GF_PLUGIN_LOG_LEVEL": "debug"})
    assert any(r["@level"] == "debug" for r in recs), "GF_PLUGIN_LOG_LEVEL=debug produced no debug line"


def test_log_level_error(spawn):
    recs = _run_and_collect(spawn, {"GF_PLUGIN_LOG_LEVEL": "error"})
    below = [r for r in recs if r["@level"] != "error"]
    assert not below, "GF_PLUGIN_LOG_LEVEL=error still logged: %r" % below[:5]


# ---------------------------------------------------------------- standalone

def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("mode", ["flag", "default", "env"])
def test_standalone_mode(spawn, mode):
    env = pp.base_env()
    assert "grafana_plugin_type" not in env
    args = ["--standalone"]
    want_port = None
    if mode == "flag":
        args += ["--address", "127.0.0.1:0"]
    elif mode == "env":
        want_port = _free_port()
        env["GF_PLUGIN_GRPC_ADDRESS_SEED_INHOUSE_DATASOURCE"] = "127.0.0.1:%d" % want_port
    p = spawn(env=env, args=args, handshake=False)
    line = p.read_handshake(timeout=15)
    m = pp.HANDSHAKE_TCP_RE.match(line)
    assert m, "standalone handshake %r does not match 1|2|tcp|127.0.0.1:<port>|grpc|" % line
    assert m.group(1) == "127.0.0.1"
    port = int(m.group(2))
    assert 0 < port < 65536
    if want_port:
        assert port == want_port
    c = pp.Grpc("127.0.0.1:%d" % port)
    c.wait_ready()
    resp = c.check_health(pp.check_health_request(), timeout=5)
    assert resp.status == c.v2.CheckHealthResponse.ERROR
    r = c.query_data(pp.query_data_request(("A",)), timeout=5)
    assert set(r.responses) == {"A"}
    c.close()
    rc = p.stop(signal.SIGTERM)
    p.final_checked = True
    assert rc == 0
    assert bytes(p.stdout_after) == b""
    for rec in p.log_records():
        assert not pp.check_log_record(rec), rec
