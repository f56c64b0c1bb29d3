"""Fixtures: generated protobuf modules, a per-test socket directory, and a
factory that spawns the plugin like Grafana does and checks on teardown that
it exits 0, kept stdout silent after the handshake and wrote only hclog JSON
on stderr."""

import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pluginproc as pp  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def protos(tmp_path_factory):
    binary = pp.plugin_bin()
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        pytest.exit("plugin binary %s not found or not executable (set PLUGIN_BIN)" % binary, returncode=3)
    return pp.generate_protos(tmp_path_factory.mktemp("pb"))


@pytest.fixture
def sockdir():
    d = pp.short_tmpdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def spawn(sockdir):
    """spawn(extra_env=None, args=(), cookie=True, socket_dir=<sockdir>,
    handshake=True, env=None) -> PluginProcess.

    On teardown every process still running gets SIGTERM; unless the test set
    p.final_checked, its exit status must be p.expected_exit (0), nothing may
    follow the handshake on stdout and every stderr line must be hclog JSON."""
    procs = []

    def _spawn(extra_env=None, args=(), cookie=True, socket_dir=sockdir, handshake=True, env=None):
        if env is None:
            env = pp.grafana_env(socket_dir, extra_env, cookie)
        p = pp.PluginProcess(env, args)
        procs.append(p)
        if handshake:
            p.read_handshake()
        return p

    yield _spawn
    _finish(procs)


def _finish(procs):
    problems = []
    for p in procs:
        rc = p.stop()
        if p.final_checked:
            continue
        if rc != p.expected_exit:
            problems.append("pid %d: exit status %r, expected %r; stderr tail:\n%s"
                            % (p.pid, rc, p.expected_exit, p.stderr_text()[-3000:]))
        if p.handshake is not None and p.stdout_after:
            problems.append("pid %d: stdout after the handshake line: %r" % (p.pid, bytes(p.stdout_after[:500])))
        for rec in p.log_records():
            bad = pp.check_log_record(rec)
            if bad:
                problems.append("pid %d: stderr line %r: %s" % (p.pid, rec, "; ".join(bad)))
                break
    if problems:
        pytest.fail("plugin process check on teardown:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture(scope="module")
def shared_plugin(protos):
    """One plugin process for a whole module of stateless checks (keeps the
    suite fast); the same exit/stdout/stderr checks apply when it stops."""
    d = pp.short_tmpdir()
    p = pp.PluginProcess(pp.grafana_env(d))
    try:
        p.read_handshake()
        yield p
    finally:
        try:
            _finish([p])
        finally:
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def sclient(shared_plugin):
    """A fresh connection to the shared plugin, which must still be running."""
    assert shared_plugin.alive(), "the shared plugin process died; stderr:\n" + shared_plugin.stderr_text()[-3000:]
    c = pp.Grpc(shared_plugin.target)
    c.wait_ready()
    yield c
    c.close()


@pytest.fixture
def plugin(spawn):
    return spawn()


@pytest.fixture
def client(plugin):
    c = pp.Grpc(plugin.target)
    c.wait_ready()
    yield c
    c.close()
