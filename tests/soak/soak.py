#!/usr/bin/python3
"""Soak: mixed load against the real plugin and reference backend for a
while, watching memory and file descriptors.

  soak.py SECONDS            (PLUGIN_BIN, REFBACKEND_BIN name the binaries)

SOAK_WARMUP (seconds) and SOAK_MAX_GROWTH (percent, default 1) change the
warm-up and the RSS bound: `make test` runs 2 minutes with a 60 s warm-up
and a 5 % bound, since over a minute the quiet points differ by up to ~2 %
with what happens to be pooled at that moment (the 30-minute run holds 1 %);
one leaked allocation per call would still add well over 50 %.

Load, all at once, from python grpcio clients on one channel:
  dashboards  QueryData with 6 queries (series, table, frames, empty, points)
  alerts      every 5 s a storm of 100 calls x 4 queries, FromAlert=true
  cancels     calls whose deadline (80 ms) ends before the backend answers
              (latency 400 ms), and calls cancelled by the client
  faults      reset, 503, malformed, truncated, huge, drip and hang answers
              next to healthy queries in the same call
  changes     a data source whose settings change (lastUpdatedMS) every 2 s
              while its queries are in flight
Every outcome is checked against what the fault plan causes; anything else
is an unexpected error, and so is the plugin closing the client's connection
(its "closing connection" log lines: nghttp2's own GOAWAYs included).
VmRSS, the fd count and the heap in use are sampled every second.

Pass: no unexpected error, the plugin alive and clean at exit, and between
two quiet points (load paused, in-flight calls over and, in runs of 10
minutes or more, the pools' idle connections closed: one after the warm-up,
which is 20 % of the run, 30 s to 6 min, one at the end) RSS grown less than
the bound and the fd count at most one pool's connections higher. Prints a
summary; exit 1 on failure.
"""
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))
import pluginproc as pp  # noqa: E402
from test_faults import RefBackend, ctx, open_fds, qreq, refbackend_bin  # noqa: E402

DASH = [("A", "sine:3"), ("B", "table:20"), ("C", "frame:2"), ("D", "empty"), ("E", "points:200"),
        ("F", "sine:1?latency=5ms")]
FAULTS = [("reset", "sine:1?mode=reset"), ("s503", "sine:1?status=503"), ("malformed", "sine:1?mode=malformed"),
          ("truncate", "sine:1?mode=truncate"), ("huge", "sine:1?mode=huge&bytes=3000000"),
          ("drip", "sine:1?mode=drip"), ("hang", "sine:1?mode=hang"), ("ok", "sine:2")]
FAULT_STATUS = {"reset": 502, "s503": 502, "malformed": 502, "truncate": 502, "huge": 502, "drip": 504,
                "hang": 504, "ok": 200}
FAULT_JSON = {"maxResponseBytes": 1000000, "timeout": 1, "maxConnections": 32}
POOL_SLACK = 32 + 8  # one pool's connections, plus a few sockets in passing


class Soak:
    def __init__(self, seconds, plugin, backend):
        self.seconds = seconds
        self.plugin = plugin
        self.url = backend.url
        self.stop = threading.Event()
        self.go = threading.Event()  # cleared: workers pause (the quiet points RSS is read at)
        self.lock = threading.Lock()
        self.counts = {}
        self.unexpected = []
        self.samples = []  # (t, rss_kib, fds, heap_in_use_kib)
        self.quiet = {}    # "base"/"end": (rss_kib, fds, heap_in_use_kib) with the load paused
        self.channel = grpc.insecure_channel(plugin.target, options=[
            ("grpc.max_receive_message_length", 64 << 20)])
        v2 = pp.pb()["pluginv2_pb2"]
        self.v2 = v2
        self.query = self.channel.unary_unary("/pluginv2.Data/QueryData",
                                              request_serializer=v2.QueryDataRequest.SerializeToString,
                                              response_deserializer=v2.QueryDataResponse.FromString)

    def count(self, kind, n=1):
        with self.lock:
            self.counts[kind] = self.counts.get(kind, 0) + n

    def fail(self, what):
        with self.lock:
            if len(self.unexpected) < 50:
                self.unexpected.append(what)
            self.counts["unexpected"] = self.counts.get("unexpected", 0) + 1

    def check_all_ok(self, kind, resp, refs):
        for ref in refs:
            r = resp.responses.get(ref)
            if r is None or r.status != 200 or r.error:
                self.fail("%s %s: %r" % (kind, ref, None if r is None else (r.status, r.error)))
                return
        self.count(kind)

    def wait_go(self):
        """Blocks while the load is paused; False once the run is over."""
        while not self.go.wait(0.2):
            if self.stop.is_set():
                return False
        return not self.stop.is_set()

    # ---- workers --------------------------------------------------------
    def dashboards(self):
        req = qreq(ctx(self.url, {"maxConnections": 16}, uid="soak-dash"), DASH)
        while self.wait_go():
            try:
                self.check_all_ok("dashboard", self.query(req, timeout=10), [r for r, _ in DASH])
            except grpc.RpcError as e:
                self.fail("dashboard: %s %s" % (e.code().name, e.details()))

    def alerts(self):
        targets = [("A", "sine:1?latency=20ms"), ("B", "sine:2?latency=20ms"), ("C", "table:5"), ("D", "frame:1")]
        req = qreq(ctx(self.url, {"maxConnections": 64, "maxConcurrentQueries": 4}, uid="soak-alerts"), targets,
                   headers={"FromAlert": "true"})
        while not self.stop.wait(5) and self.wait_go():
            futs = [self.query.future(req, timeout=30) for _ in range(100)]
            for f in futs:
                try:
                    self.check_all_ok("alert", f.result(), [r for r, _ in targets])
                except grpc.RpcError as e:
                    self.fail("alert: %s %s" % (e.code().name, e.details()))

    def cancels(self):
        req = qreq(ctx(self.url, {"maxConnections": 16}, uid="soak-cancel"), [("A", "sine:1?latency=400ms")])
        n = 0
        while self.wait_go():
            n += 1
            if n % 2:
                try:
                    # The plugin ends its fetches just before the deadline so
                    # the query itself can say 504; a slower answer is the
                    # client's DEADLINE_EXCEEDED.
                    r = self.query(req, timeout=0.08).responses.get("A")
                    if r is not None and r.status == 504:
                        self.count("deadline")
                    else:
                        self.fail("deadline: want 504, got %r" % (None if r is None else (r.status, r.error)))
                except grpc.RpcError as e:
                    if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                        self.count("deadline")
                    else:
                        self.fail("deadline: %s %s" % (e.code().name, e.details()))
            else:
                f = self.query.future(req, timeout=10)
                time.sleep(0.03)
                f.cancel()
                try:
                    f.result()
                    self.fail("cancel: a cancelled call answered")
                except grpc.FutureCancelledError:
                    self.count("cancelled")
                except grpc.RpcError as e:
                    if e.code() == grpc.StatusCode.CANCELLED:
                        self.count("cancelled")
                    else:
                        self.fail("cancel: %s %s" % (e.code().name, e.details()))

    def faults(self):
        req = qreq(ctx(self.url, FAULT_JSON, uid="soak-faults"), FAULTS)
        while self.wait_go():
            try:
                resp = self.query(req, timeout=10)
            except grpc.RpcError as e:
                self.fail("faults: %s %s" % (e.code().name, e.details()))
                continue
            for ref, want in FAULT_STATUS.items():
                r = resp.responses.get(ref)
                if r is None or r.status != want or (want != 200 and not r.error):
                    self.fail("fault %s: want %d, got %r" % (ref, want, None if r is None else (r.status, r.error)))
                    break
            else:
                self.count("fault round")

    def changes(self):
        targets = [("A", "sine:1?latency=50ms"), ("B", "table:3")]
        updated = 1700000000000
        futs = []
        while self.wait_go():
            updated += 1
            req = qreq(ctx(self.url, {"maxConnections": 8}, uid="soak-change", updated=updated), targets)
            futs += [self.query.future(req, timeout=10) for _ in range(8)]
            for _ in range(20):
                if self.stop.wait(0.1):
                    break
            done, futs = [f for f in futs if f.done()], [f for f in futs if not f.done()]
            for f in done:
                try:
                    self.check_all_ok("change", f.result(), ["A", "B"])
                except grpc.RpcError as e:
                    self.fail("change: %s %s" % (e.code().name, e.details()))
        for f in futs:
            try:
                self.check_all_ok("change", f.result(), ["A", "B"])
            except grpc.RpcError as e:
                self.fail("change: %s %s" % (e.code().name, e.details()))

    def heap_kib(self, g):
        try:
            samples, _ = pp.parse_prometheus(g.metrics_text())
        except grpc.RpcError as e:  # counted, and the sampling goes on
            self.count("metrics call failed: %s" % e.code().name)
            return -1
        v = pp.metric_values(samples, "plugin_heap_in_use_bytes")
        return int(v[0] / 1024) if v else -1

    def quiet_point(self):
        """RSS, fds and heap in use with the load paused: in-flight calls
        over, and for long runs the pools' idle connections expired too
        (60 s), so both quiet points hold the same state. RSS is the lowest of
        three reads across a heap-trim tick (5 s)."""
        self.go.clear()
        time.sleep(settle_seconds(self.seconds))
        rss = []
        for _ in range(3):
            rss.append(self.plugin.rss_kib())
            time.sleep(2.6)
        g = pp.Grpc(self.plugin.target)
        v = (min(rss), open_fds(self.plugin.pid), self.heap_kib(g))
        g.close()
        return v

    def sampler(self):
        t0 = time.monotonic()
        g = pp.Grpc(self.plugin.target)
        while not self.stop.wait(1.0):
            if not self.plugin.alive():
                self.fail("the plugin exited")
                return
            if not self.go.is_set():  # a quiet point is being read: stay out of it
                continue
            self.samples.append((time.monotonic() - t0, self.plugin.rss_kib(), open_fds(self.plugin.pid),
                                 self.heap_kib(g)))
        g.close()

    def run(self):
        workers = [self.dashboards, self.dashboards, self.alerts, self.cancels, self.faults, self.changes]
        only = os.environ.get("SOAK_ONLY")  # e.g. "faults,cancels": to find who grows memory
        if only:
            workers = [w for w in workers if w.__name__ in only.split(",")]
        workers.append(self.sampler)
        threads = [threading.Thread(target=w, daemon=True) for w in workers]
        for t in threads:
            t.start()
        # Warm-up, a quiet point, the measured run, a quiet point. RSS is
        # compared at the quiet points: the load paused, in-flight calls
        # over, the plugin's 5 s heap trim done. Under load RSS breathes with
        # every storm; idle, what is left over is what a leak would show.
        warm = warmup_seconds(self.seconds)
        self.go.set()
        self.stop.wait(warm)
        self.quiet["base"] = self.quiet_point()
        self.go.set()
        self.stop.wait(self.seconds - warm)
        self.quiet["end"] = self.quiet_point()
        self.stop.set()
        for t in threads:
            t.join(60)
        self.channel.close()


def settle_seconds(seconds):
    """How long the load pauses before a quiet point: past the pools' 60 s idle
    timeout for runs of 10 minutes or more, else 7 s (SOAK_SETTLE)."""
    if os.environ.get("SOAK_SETTLE"):
        return float(os.environ["SOAK_SETTLE"])
    return 65.0 if seconds >= 600 else 7.0


def max_growth_percent():
    return float(os.environ.get("SOAK_MAX_GROWTH", "1.0"))


def warmup_seconds(seconds):
    if os.environ.get("SOAK_WARMUP"):
        return float(os.environ["SOAK_WARMUP"])
    return min(max(seconds * 0.2, 30), 360)


def verdict(s):
    problems = list(s.unexpected)
    growth = None
    if "base" in s.quiet and "end" in s.quiet:
        (rss0, fd0, heap0), (rss1, fd1, heap1) = s.quiet["base"], s.quiet["end"]
        growth = (rss1 - rss0) / rss0 * 100
        if growth >= max_growth_percent():
            problems.append("RSS grew %.2f%% after warm-up (%d -> %d KiB at the quiet points; heap in use %d -> %d KiB)"
                            % (growth, rss0, rss1, heap0, heap1))
        if fd1 > fd0 + POOL_SLACK:
            problems.append("fd count rose from %d to %d between the quiet points" % (fd0, fd1))
    else:
        problems.append("the run ended before its quiet points")
    return problems, growth


def main():
    if len(sys.argv) != 2:
        sys.stderr.write(__doc__)
        return 2
    seconds = float(sys.argv[1])
    binary = refbackend_bin()
    if not binary:
        sys.stderr.write("soak: refbackend not found (set REFBACKEND_BIN)\n")
        return 2
    pbdir = tempfile.mkdtemp(prefix="soak-pb")
    pp.generate_protos(pbdir)
    backend = RefBackend(binary)
    sockdir = pp.short_tmpdir()
    plugin = pp.PluginProcess(pp.grafana_env(sockdir, {"GF_PLUGIN_LOG_LEVEL": "info"}))
    plugin.read_handshake()
    s = Soak(seconds, plugin, backend)
    s.run()
    problems, growth = verdict(s)
    warm = warmup_seconds(seconds)
    rc = plugin.stop()
    if rc != 0:
        problems.append("plugin exit status %r" % rc)
    records = plugin.log_records()
    errors = [r for r in records if r.get("@level") == "error"]
    # The soak's one client connection is never the plugin's to close.
    for r in records:
        if "closing connection" in r.get("@message", ""):
            problems.append("the plugin closed a client connection: %s" % json.dumps(r))
    text = plugin.stderr_text()
    for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
        if marker in text:
            problems.append("sanitizer report in the plugin's stderr: %s" % text[text.index(marker):][:3000])
    backend.stop()
    shutil.rmtree(pbdir, ignore_errors=True)
    shutil.rmtree(sockdir, ignore_errors=True)
    rss = [x[1] for x in s.samples]
    fds = [x[2] for x in s.samples]
    print("soak: %.0f s (warm-up %.0f s): %s" % (seconds, warm, json.dumps(s.counts, sort_keys=True)))
    if rss:
        print("soak: under load VmRSS KiB min %d max %d, fds min %d max %d; quiet points (RSS KiB, fds, heap KiB):"
              " %s -> %s, RSS growth %s" % (min(rss), max(rss), min(fds), max(fds), s.quiet.get("base"),
                                              s.quiet.get("end"), "n/a" if growth is None else "%.2f%%" % growth))
    print("soak: plugin error log lines: %d" % len(errors))
    step = max(1, len(s.samples) // 12)
    print("soak: samples (s, VmRSS KiB, fds, heap in use KiB): %s" % " ".join(
        "%.0f/%d/%d/%d" % x for x in s.samples[::step]))
    for p in problems:
        print("soak: FAIL: %s" % p)
    print("soak: %s" % ("FAIL" if problems else "PASS"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
