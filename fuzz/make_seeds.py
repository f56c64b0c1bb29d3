#!/usr/bin/python3
"""Writes the seed corpora under fuzz/corpus/<target>/ (deterministic output).

    /usr/bin/python3 fuzz/make_seeds.py

The HTTP/2 seeds are produced by the `h2` client state machine (Debian
python3-h2), so frames and HPACK blocks are well-formed; protobuf messages are
encoded by the small writer below (field numbers from proto/*.proto), so no
generated Python code is needed. Input layouts are documented at the top of
each fuzz_*.c file.

The fuzz_arrow_read seeds are Arrow files written by our own writer: JSON
frames below go through tests/arrow/frame_convert (from a test build:
$FRAME_CONVERT, else build-asan/tests/frame_convert or build/tests/frame_convert;
`make asan` builds it). Without that binary the existing fuzz_arrow_read seeds
are left as they are.
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import h2.config
import h2.connection

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
DELIM = b"\xFE\xED\xFA\xCE"  # fuzz_h2_session's read separator

# ---- protobuf writer --------------------------------------------------------


def varint(n):
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def f_varint(num, v):
    return varint(num << 3) + varint(v)


def f_bytes(num, b):
    if isinstance(b, str):
        b = b.encode()
    return varint((num << 3) | 2) + varint(len(b)) + b


def f_map_entry(num, k, v):
    return f_bytes(num, f_bytes(1, k) + (f_bytes(2, v) if not isinstance(v, bytes) or v else b""))


def ds_settings(url, name="in-house", uid="abc123"):
    return f_varint(1, 7) + f_bytes(2, name) + f_bytes(3, url) + f_bytes(8, b'{"timeout":30}') + \
        f_map_entry(9, "apiKey", "s3cret") + f_varint(10, 1700000000000) + f_bytes(11, uid)


def plugin_context(url=None):
    ctx = f_varint(1, 1) + f_bytes(2, "seed-inhouse-datasource") + \
        f_bytes(3, f_bytes(1, "admin") + f_bytes(4, "Admin")) + f_map_entry(6, "GF_SQL_MAX_OPEN_CONNS", "100") + \
        f_bytes(7, "1.0.0") + f_bytes(8, "Grafana/11.0.0")
    if url is not None:
        ctx += f_bytes(5, ds_settings(url))
    return ctx


def data_query(ref, json=b'{"target":"cpu"}'):
    return f_bytes(1, ref) + f_varint(2, 1000) + f_varint(3, 15000) + \
        f_bytes(4, f_varint(1, 1700000000000) + f_varint(2, 1700003600000)) + f_bytes(5, json) + \
        f_bytes(6, "timeseries")


def query_data_request(url=None, refs=("A", "B")):
    return f_bytes(1, plugin_context(url)) + f_map_entry(2, "http_X-Grafana-Org-Id", "1") + \
        b"".join(f_bytes(3, data_query(r)) for r in refs)


def check_health_request(url=None):
    return f_bytes(1, plugin_context(url)) + f_map_entry(2, "http_Accept", "*/*")


def collect_metrics_request():
    return f_bytes(1, plugin_context())


def call_resource_request(path, method="POST", url=None, body=b'{"target":""}'):
    return f_bytes(1, plugin_context(url)) + f_bytes(2, path) + f_bytes(3, method) + \
        f_bytes(4, path) + f_bytes(5, f_bytes(1, "Content-Type") + f_bytes(2, f_bytes(1, "application/json"))) + \
        f_bytes(6, body)


def health_check_request(service=""):
    return f_bytes(1, service) if service else b""


def conn_info(service_id=1, knock=True):
    return f_varint(1, service_id) + f_bytes(2, "unix") + f_bytes(3, "/tmp/plugin123") + \
        f_bytes(4, f_varint(1, 1 if knock else 0))


def grpc_frame(msg, flag=0):
    return struct.pack(">BI", flag, len(msg)) + msg


# ---- HTTP/2 client ------------------------------------------------------------


class Client:
    """An h2 client whose bytes are collected into separate reads."""

    def __init__(self, keep_preface=False):
        self.c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.c.initiate_connection()
        first = self.c.data_to_send()
        # The harness sends the preface + an empty SETTINGS itself (flag bit0 off).
        self.chunks = [first] if keep_preface else []
        self.cur = b""

    def take(self):
        self.cur += self.c.data_to_send()

    def cut(self):
        """Ends the current read: what follows arrives in a later on_recv."""
        self.take()
        if self.cur:
            self.chunks.append(self.cur)
        self.cur = b""

    def raw(self, b):
        self.take()
        self.cur += b

    def headers(self, sid, path, extra=(), end_stream=False, method="POST", ctype="application/grpc"):
        hdrs = [(":method", method), (":scheme", "http"), (":path", path), (":authority", "plugin"),
                ("content-type", ctype), ("te", "trailers"), ("user-agent", "grpc-go/1.62.0")]
        hdrs += list(extra)
        self.c.send_headers(sid, hdrs, end_stream=end_stream)
        self.take()

    def data(self, sid, payload, end_stream=True):
        self.c.send_data(sid, payload, end_stream=end_stream)
        self.take()

    def unary(self, sid, path, msg, extra=()):
        self.headers(sid, path, extra)
        self.data(sid, grpc_frame(msg))

    def seed(self, flags=0):
        self.cut()
        for ch in self.chunks:
            assert DELIM not in ch, "delimiter inside a frame; change the seed"
        return bytes([flags]) + DELIM.join(self.chunks)


def session_seeds():
    s = {}

    c = Client()
    c.unary(1, "/pluginv2.Data/QueryData", query_data_request())
    s["querydata_no_url"] = c.seed()

    c = Client()
    c.unary(1, "/pluginv2.Data/QueryData", query_data_request("http://metrics.internal:8080", ("A", "B", "C")))
    c.unary(3, "/pluginv2.Data/QueryData", query_data_request("ftp://nope"))
    s["querydata_with_url"] = c.seed()

    c = Client()
    c.unary(1, "/pluginv2.Diagnostics/CheckHealth", check_health_request())
    s["checkhealth"] = c.seed()

    c = Client()
    c.unary(1, "/pluginv2.Diagnostics/CheckHealth", check_health_request("http://user:pw@host:99999/x"))
    c.unary(3, "/grpc.health.v1.Health/Check", health_check_request(""))
    c.unary(5, "/grpc.health.v1.Health/Check", health_check_request("other"))
    s["health_both"] = c.seed()

    c = Client()
    c.unary(1, "/pluginv2.Data/NoSuchMethod", b"")
    c.unary(3, "/no.such.Service/Call", b"")
    c.unary(5, "not-a-grpc-path", b"")
    s["unknown_method"] = c.seed()

    c = Client()
    c.headers(1, "/pluginv2.Data/QueryData", [("grpc-encoding", "gzip")])
    c.data(1, grpc_frame(query_data_request(), flag=1))
    s["compressed_flag"] = c.seed()

    # One message split across DATA frames and across reads.
    c = Client()
    msg = grpc_frame(query_data_request("http://metrics.internal", ("A",)))
    c.headers(1, "/pluginv2.Data/QueryData")
    c.data(1, msg[:3], end_stream=False)
    c.data(1, msg[3:20], end_stream=False)
    c.cut()
    c.data(1, msg[20:], end_stream=True)
    s["split_message"] = c.seed()

    # The request ends inside a message; then two messages on a unary call.
    c = Client()
    c.headers(1, "/pluginv2.Diagnostics/CheckHealth")
    c.data(1, grpc_frame(check_health_request())[:-4])
    c.headers(3, "/pluginv2.Diagnostics/CheckHealth")
    c.data(3, grpc_frame(b"") + grpc_frame(b""))
    s["truncated_and_two_messages"] = c.seed()

    # Held-open stdio stream, then the client resets it in a later read.
    c = Client()
    c.unary(1, "/plugin.GRPCStdio/StreamStdio", b"")
    c.cut()
    c.c.reset_stream(1)
    s["rst_stream_stdio"] = c.seed()

    # CollectMetrics runs on the threadpool; the reset arrives meanwhile.
    c = Client()
    c.unary(1, "/pluginv2.Diagnostics/CollectMetrics", collect_metrics_request())
    c.c.reset_stream(1)
    c.unary(3, "/pluginv2.Diagnostics/CollectMetrics", collect_metrics_request())
    s["rst_stream_metrics"] = c.seed()

    c = Client()
    c.unary(1, "/pluginv2.Diagnostics/CollectMetrics", collect_metrics_request())
    s["collect_metrics"] = c.seed()

    c = Client()
    c.unary(1, "/pluginv2.Resource/CallResource", call_resource_request("metrics"))
    c.unary(3, "/pluginv2.Resource/CallResource", call_resource_request("/tag-keys", method="GET"))
    c.unary(5, "/pluginv2.Resource/CallResource", call_resource_request("nope", url="http://h"))
    c.unary(7, "/pluginv2.Resource/CallResource", call_resource_request("search", url="https://h/api"))
    s["call_resource"] = c.seed()

    # Bidi broker stream: messages, then half-close in a later read.
    c = Client()
    c.headers(1, "/plugin.GRPCBroker/StartStream")
    c.data(1, grpc_frame(conn_info(1)) + grpc_frame(conn_info(2, False)), end_stream=False)
    c.cut()
    c.data(1, grpc_frame(conn_info(3)), end_stream=True)
    s["broker_bidi"] = c.seed()

    # Shutdown with a held stream: drain cancels it, then the conn closes.
    c = Client()
    c.unary(1, "/plugin.GRPCStdio/StreamStdio", b"")
    c.unary(3, "/plugin.GRPCController/Shutdown", b"")
    c.cut()
    c.unary(5, "/pluginv2.Diagnostics/CheckHealth", check_health_request())
    s["shutdown"] = c.seed()

    # Deadlines: 0n fires on the next loop turn; 1H never does.
    c = Client()
    c.unary(1, "/plugin.GRPCStdio/StreamStdio", b"", [("grpc-timeout", "0n")])
    c.unary(3, "/pluginv2.Diagnostics/CollectMetrics", collect_metrics_request(), [("grpc-timeout", "1H")])
    c.unary(5, "/pluginv2.Diagnostics/CheckHealth", check_health_request(), [("grpc-timeout", "bogus")])
    s["grpc_timeout"] = c.seed()

    # Wrong method / content type, missing body, PING, window update, GOAWAY.
    c = Client()
    c.headers(1, "/pluginv2.Diagnostics/CheckHealth", method="GET", end_stream=True)
    c.headers(3, "/pluginv2.Diagnostics/CheckHealth", ctype="application/json", end_stream=True)
    c.headers(5, "/pluginv2.Diagnostics/CheckHealth", end_stream=True)
    c.c.ping(b"12345678")
    c.c.increment_flow_control_window(1 << 20)
    c.cut()
    c.c.close_connection()
    s["odd_requests_goaway"] = c.seed()

    # Tight limits (flag bit2): a request over 1 KiB, more streams than allowed.
    c = Client()
    big = query_data_request("http://h", tuple("Q%d" % i for i in range(40)))
    c.unary(1, "/pluginv2.Data/QueryData", big)
    for sid in (3, 5, 7, 9, 11):
        c.unary(sid, "/plugin.GRPCStdio/StreamStdio", b"")
    s["tight_limits"] = c.seed(flags=4)

    # Drain (bit1) and cancel-all (bit3) with work in flight.
    c = Client()
    c.unary(1, "/plugin.GRPCStdio/StreamStdio", b"")
    c.unary(3, "/pluginv2.Diagnostics/CollectMetrics", collect_metrics_request())
    c.headers(5, "/plugin.GRPCBroker/StartStream")
    s["drain_cancel_all"] = c.seed(flags=2 | 8)

    # Slow peer (bit4): ~30 KiB of answers back up past the connection's
    # high-water mark; a reset and a ping arrive meanwhile.
    c = Client()
    for i in range(6):
        c.unary(1 + 2 * i, "/pluginv2.Diagnostics/CollectMetrics", collect_metrics_request())
    for i in range(6, 12):
        c.unary(1 + 2 * i, "/pluginv2.Data/QueryData", query_data_request(None, ("A", "B", "C", "D")))
    c.cut()
    c.c.reset_stream(5)
    c.c.ping(b"87654321")
    c.cut()
    c.c.increment_flow_control_window(1 << 24)
    s["slow_peer_metrics"] = c.seed(flags=16)

    # Two connections (bit5): reads alternate between them; a held stream on
    # one, a Shutdown on the other drains both.
    a, b = Client(), Client()
    a.unary(1, "/plugin.GRPCStdio/StreamStdio", b"")
    b.unary(1, "/pluginv2.Diagnostics/CollectMetrics", collect_metrics_request())
    a.cut()
    b.cut()
    a.headers(3, "/pluginv2.Data/QueryData")
    a.data(3, grpc_frame(query_data_request())[:30], end_stream=False)
    b.unary(3, "/plugin.GRPCController/Shutdown", b"")
    a.cut()
    b.cut()
    chunks = [x for pair in zip(a.chunks, b.chunks) for x in pair]
    for ch in chunks:
        assert DELIM not in ch
    s["two_connections_shutdown"] = bytes([32]) + DELIM.join(chunks)

    # The input brings its own preface (bit0) ...
    c = Client(keep_preface=True)
    c.unary(1, "/grpc.health.v1.Health/Check", health_check_request("plugin"))
    s["own_preface"] = c.seed(flags=1)
    # ... or a bad one.
    s["bad_preface"] = bytes([1]) + b"GET / HTTP/1.1\r\nHost: plugin\r\n\r\n"
    return s


def deframer_seeds():
    def seed(max_msg, plan, payload):
        return struct.pack(">HB", max_msg, len(plan)) + bytes(plan) + payload

    two = grpc_frame(b"hello") + grpc_frame(b"")
    return {
        "two_messages": seed(100, [3, 4, 1], two),
        "split_prefix": seed(100, [1, 1, 1, 1, 1, 1], grpc_frame(b"x" * 40) + grpc_frame(b"y")),
        "partial_tail": seed(64, [2], grpc_frame(b"abc") + b"\x00\x00\x00"),
        "too_large": seed(10, [], grpc_frame(b"z" * 11)),
        "compressed": seed(100, [5], grpc_frame(b"a") + grpc_frame(b"b", flag=1)),
        "bad_flag": seed(100, [0, 6], grpc_frame(b"a", flag=7)),
        "grow_buffer": seed(2000, [200, 255, 255, 255], grpc_frame(bytes(range(256)) * 7)),
    }


def meta_seeds():
    return {
        "timeout_ms": b"\x00" + b"100m",
        "timeout_hours_max": b"\x00" + b"99999999H",
        "timeout_bad_unit": b"\x00" + b"12x",
        "percent_ascii": b"\x01" + bytes([64]) + b"unknown service foo.Bar",
        "percent_mixed": b"\x01" + bytes([20]) + b"50% caf\xc3\xa9\n\x01\x7f done",
        "hclog_utf8": b"\x02" + struct.pack(">H", 300) + "path /pluginv2.Data/QueryData \u00e9\u4e2d\U0001F600".encode(),
        "hclog_controls": b"\x02" + struct.pack(">H", 0) + b"\"quote\" \\ \n\t\r\x01\x7f\xff\xc0\xaf" * 12,
        "status_name": b"\x03" + struct.pack("<i", 4),
    }


def decoder_seeds():
    return {
        "querydata": b"\x00" + query_data_request("http://metrics.internal:8080/api?x=1"),
        "querydata_ipv6": b"\x00" + query_data_request("http://[::1]:9090"),
        "checkhealth": b"\x01" + check_health_request("https://h"),
        "collectmetrics": b"\x02" + collect_metrics_request(),
        "callresource": b"\x03" + call_resource_request("tag-values", url="http://x:1"),
        "healthcheck": b"\x04" + health_check_request("plugin"),
        "conninfo": b"\x05" + conn_info(),
    }


# ---- frames: converter bodies, Arrow files, round-trip layouts ---------------


def convert_seeds():
    def j(v):
        return json.dumps(v, separators=(",", ":")).encode()

    series = [{"target": "cpu", "datapoints": [[1.5, 1700000000000], [None, 1700000001000], ["NaN", 1700000002000],
                                               ["+Inf", 1700000003000], ["-Inf", 1700000004000], [7, 1699999999000.5]],
               "tags": {"host": "a", "dc": "x", "n": 3, "b": True}, "unit": "ms", "title": "CPU"},
              {"target": "mem", "points": [[2, "2026-11-25T10:00:00.123Z"], [3, "2026-11-25T10:00:01+01:00"]]}]
    table = [{"type": "table", "columns": [{"text": "time", "type": "time"}, {"text": "host", "type": "string"},
                                           {"text": "v"}, {"text": "ok", "type": "boolean"}, "extra"],
              "rows": [[1700000000000, "a", 1.5, True, None], ["2026-01-02", "b", None, False],
                       [1700000002000, None, "NaN", None, "x", "long"]]}]
    frame = [{"name": "f1", "meta": {"type": "table", "typeVersion": [0, 1], "custom": {"k": [1, 2, {"x": None}]}},
              "fields": [{"name": "Time", "type": "time", "values": [1700000000000, 1700000001000]},
                         {"name": "v", "type": "number", "values": [None, 2.5], "labels": {"b": "2", "a": "1"},
                          "config": {"unit": "bytes", "decimals": 2, "links": [{"title": "t", "url": "u"}]}},
                         {"name": "s", "values": ["x", "caf\u00e9 \ud83e\udda5"]},
                         {"name": "n", "values": [None, None]}]}]
    mixed = series[:1] + table + frame + [{"target": "empty", "datapoints": []}]
    return {
        "series": j(series),
        "series_pretty": json.dumps(series, indent=2).encode(),
        "table": j(table),
        "frame": j(frame),
        "mixed": j(mixed),
        "empty_array": b"[]",
        "empty_body": b"",
        "not_array": b'{"target":"x"}',
        "truncated": j(mixed)[:-17],
        "bad_point": b'[{"target":"x","datapoints":[[1,{"a":1}]]}]',
        "bad_time": b'[{"target":"x","datapoints":[[1,"yesterday"]]}]',
        "mixed_shapes": b'[{"datapoints":[],"fields":[]}]',
        "unknown_shape": b'[{"foo":1}]',
        "table_type_clash": b'[{"columns":[{"text":"a","type":"number"}],"rows":[["x"]]}]',
        "frame_len_mismatch": b'[{"fields":[{"name":"a","values":[1,2]},{"name":"b","values":[1]}]}]',
        "unknown_type": b'[{"columns":[{"text":"a","type":"decimal"}],"rows":[]}]',
        "nested_cell": b'[{"columns":["a"],"rows":[[[1]]]}]',
        "trailing_garbage": b'[] x',
        "bad_utf8": b'[{"target":"\xc3\x28","datapoints":[]}]',
        "deep_skip": b'[{"target":"x","junk":{"a":[[[{"b":[1,2,{"c":null}]}]]]},"datapoints":[[1,2]]}]',
    }


# JSON frames (Grafana's format, read by frame_from_json) for the Arrow seeds.
def json_frame(fields, values, name="", ref="A", meta=None, entities=None, nanos=None):
    schema = {"fields": fields}
    if name:
        schema["name"] = name
    if ref:
        schema["refId"] = ref
    if meta is not None:
        schema["meta"] = meta
    data = {"values": values}
    if entities:
        data["entities"] = entities
    if nanos:
        data["nanos"] = nanos
    return {"schema": schema, "data": data}


def fld(name, frame_type, ts, nullable=False, **extra):
    f = {"name": name, "type": ts, "typeInfo": {"frame": frame_type}}
    if nullable:
        f["typeInfo"]["nullable"] = True
    f.update(extra)
    return f


def arrow_frames():
    return {
        "timeseries": json_frame(
            [fld("Time", "time.Time", "time"), fld("Value", "float64", "number", True, labels={"host": "a"})],
            [[1700000000000, 1700000001000, 1700000002000], [1.5, None, 2.5]],
            meta={"type": "timeseries-multi", "typeVersion": [0, 1]}),
        "zero_rows": json_frame([fld("t", "time.Time", "time"), fld("s", "string", "string", True)], [[], []]),
        "zero_fields": json_frame([], [], name="nothing"),
        "ints": json_frame(
            [fld("i8", "int8", "number"), fld("i16", "int16", "number", True), fld("i32", "int32", "number"),
             fld("i64", "int64", "number", True), fld("u8", "uint8", "number"), fld("u16", "uint16", "number"),
             fld("u32", "uint32", "number", True), fld("u64", "uint64", "number")],
            [[-128, 127], [None, 32767], [-2147483648, 1], [-9223372036854775808, None], [0, 255], [65535, 0],
             [4294967295, None], [18446744073709551615, 1]]),
        "floats_bools": json_frame(
            [fld("f32", "float32", "number"), fld("f64", "float64", "number", True), fld("b", "bool", "boolean"),
             fld("nb", "bool", "boolean", True, config={"displayName": "B"})],
            [[1.5, None, 0], [None, 5e-324, None], [True, False, True], [None, True, False]],
            entities=[{"NaN": [1]}, {"Inf": [2]}, None, None]),
        "strings_json_enum": json_frame(
            [fld("s", "string", "string", True), fld("j", "json.RawMessage", "other"),
             fld("e", "enum", "enum", True, config={"type": {"enum": {"text": ["", "ONE", "TWO"]}}})],
            [["caf\u00e9", None, ""], [{"a": 1}, [1, 2], "x"], [1, None, 2]]),
        "time_nanos": json_frame([fld("t", "time.Time", "time", True)], [[0, None, 9223372036854]],
                                 nanos=[[5, 0, 775807]]),
    }


def find_frame_convert():
    cands = [os.environ.get("FRAME_CONVERT", "")]
    root = os.path.dirname(HERE)
    cands += [os.path.join(root, d, "tests", "frame_convert") for d in ("build-asan", "build")]
    for c in cands:
        if c and os.access(c, os.X_OK):
            return c
    return None


def arrow_seeds():
    conv = find_frame_convert()
    if not conv:
        return None
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, frame in sorted(arrow_frames().items()):
            src, dst = os.path.join(tmp, name + ".json"), os.path.join(tmp, name + ".arrow")
            with open(src, "w") as f:
                json.dump(frame, f)
            subprocess.run([conv, "arrow", src, dst], check=True)
            with open(dst, "rb") as f:
                out[name] = f.read()
    ts = out["timeseries"]
    out["damaged_truncated"] = ts[:len(ts) // 2] + ts[-10:]
    out["damaged_footer_len"] = ts[:-10] + struct.pack("<i", len(ts)) + b"ARROW1"
    flipped = bytearray(ts)
    for i in range(64, len(flipped) - 16, 97):
        flipped[i] ^= 0x5A
    out["damaged_flipped"] = bytes(flipped)
    golden = os.path.join(os.path.dirname(os.path.dirname(HERE)), "shared", "testdata", "all_types.golden.arrow")
    if os.path.exists(golden):
        with open(golden, "rb") as f:
            out["sdk_golden"] = f.read()
    return out


def roundtrip_seeds():
    def lstr(b):
        return bytes([len(b)]) + b

    def field(ftype, flags, name=b"f"):
        return bytes([ftype, flags]) + lstr(name)

    # flags, nfields, rows (16-bit LE), frame name, refId, meta text, per field: type, flags, name, ...
    every_type = bytes([2 | 4, 15]) + struct.pack("<H", 20) + lstr(b"frame") + lstr(b"A") + lstr(b"q") + \
        b"".join(field(t, 1 | 2 | 4 | (3 << 3), b"n%d" % t) + b"\x02" + lstr(b"k") + lstr(b"v") + lstr(b"u")
                 for t in range(15))
    return {
        "every_type": every_type + bytes(range(256)) * 4,
        "zero_rows": bytes([0, 3, 0, 0]) + lstr(b"") + lstr(b"") + field(12, 0) + field(11, 1) + field(10, 0),
        "zero_fields": bytes([2, 0, 9, 0]) + lstr(b"empty") + lstr(b"B") + lstr(b"meta"),
        "raw_strings": bytes([1 | 8, 2, 40, 0]) + lstr(b"\xff\xfe") + lstr(b"\x00") +
        field(11, 1 | (2 << 3)) + field(13, 1 | 2) + bytes(range(255, 0, -1)),
        "late_nulls_sorted": bytes([4, 3, 200, 0]) + lstr(b"s") + lstr(b"A") +
        field(12, 0) + field(9, 1 | (4 << 3) | 64) + field(1, 1 | (7 << 3) | 64) + bytes(range(256)) * 3,
        "max_rows": bytes([4, 4, 0, 1]) + lstr(b"") + lstr(b"") + field(7, 0) + field(10, 1 | (1 << 3)) +
        field(11, 0) + field(14, 1 | (5 << 3)),
    }


def write(target, seeds):
    d = os.path.join(CORPUS, target)
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    total = 0
    for name, blob in sorted(seeds.items()):
        with open(os.path.join(d, name), "wb") as f:
            f.write(blob)
        total += len(blob)
    print("%-24s %3d seeds %7d bytes" % (target, len(seeds), total))
    return total


def main():
    total = 0
    total += write("fuzz_h2_session", session_seeds())
    total += write("fuzz_grpc_deframer", deframer_seeds())
    total += write("fuzz_grpc_meta", meta_seeds())
    total += write("fuzz_request_decoders", decoder_seeds())
    total += write("fuzz_convert", convert_seeds())
    total += write("fuzz_arrow_roundtrip", roundtrip_seeds())
    arrow = arrow_seeds()
    if arrow is None:
        print("fuzz_arrow_read: no frame_convert binary (make asan, or set FRAME_CONVERT); seeds left as they are")
        d = os.path.join(CORPUS, "fuzz_arrow_read")
        total += sum(os.path.getsize(os.path.join(d, n)) for n in os.listdir(d)) if os.path.isdir(d) else 0
    else:
        total += write("fuzz_arrow_read", arrow)
    print("total %d bytes" % total)
    if total > 200 * 1024:
        sys.exit("seed corpus is over 200 KiB")


if __name__ == "__main__":
    main()
