#!/usr/bin/python3
"""Client-side helpers for bench/run.sh (Debian python3-grpcio, python3-h2).

  grpc_tool.py body FILE
      Writes the h2load request body: the 5-byte gRPC prefix + a serialized
      pluginv2.CheckHealthRequest (a realistic plugin context, no URL).
  grpc_tool.py verify PORT FILE
      One CheckHealth call with python grpc using FILE's message; prints
      "grpc_status=OK health_status=N bytes=N". Exit 1 unless status is OK.
  grpc_tool.py handled PORT METHOD
      CollectMetrics; prints the grpc_server_handled_total count for
      METHOD (e.g. CheckHealth) by code: "OK=N Internal=N ...".
  grpc_tool.py streams PORT PID CONNS PER_CONN
      Opens CONNS HTTP/2 connections with PER_CONN /plugin.GRPCStdio/StreamStdio
      streams each, waits until every stream has its response headers and is
      still open, then reads VmRSS/VmHWM of PID:
      "streams=N open=N rss_before_kib=N rss_kib=N hwm_kib=N" (before: connections
      open, no streams yet).
"""
import re
import select
import socket
import struct
import sys
import time

# ---- protobuf writer (field numbers from proto/pluginv2.proto) ------------------


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def f_varint(num, v):
    return varint(num << 3) + varint(v)


def f_bytes(num, b):
    b = b.encode() if isinstance(b, str) else b
    return varint((num << 3) | 2) + varint(len(b)) + b


def check_health_request():
    ds = f_varint(1, 3) + f_bytes(2, "In-house metrics") + f_bytes(11, "P1809F7CD0C75ACF3") + \
        f_bytes(8, b"{}") + f_varint(10, 1700000000000)
    ctx = f_varint(1, 1) + f_bytes(2, "seed-inhouse-datasource") + \
        f_bytes(3, f_bytes(1, "admin") + f_bytes(3, "admin@localhost") + f_bytes(4, "Admin")) + \
        f_bytes(5, ds) + f_bytes(7, "1.0.0") + f_bytes(8, "Grafana/11.3.0 (linux; amd64)")
    return f_bytes(1, ctx)


def cmd_body(path):
    msg = check_health_request()
    with open(path, "wb") as f:
        f.write(struct.pack(">BI", 0, len(msg)) + msg)


def read_message(path):
    data = open(path, "rb").read()
    return data[5:]


def cmd_verify(port, path):
    import grpc
    with grpc.insecure_channel("127.0.0.1:%s" % port) as ch:
        call = ch.unary_unary("/pluginv2.Diagnostics/CheckHealth")
        try:
            resp, c = call.with_call(read_message(path), timeout=5)
        except grpc.RpcError as e:
            print("grpc_status=%s message=%r" % (e.code().name, e.details()))
            return 1
        # CheckHealthResponse.status is field 1 (varint); absent means 0.
        status = resp[1] if len(resp) >= 2 and resp[0] == 0x08 else 0
        print("grpc_status=%s health_status=%d bytes=%d" % (c.code().name, status, len(resp)))
        return 0 if c.code() == grpc.StatusCode.OK else 1


def cmd_handled(port, method):
    import grpc
    with grpc.insecure_channel("127.0.0.1:%s" % port) as ch:
        call = ch.unary_unary("/pluginv2.Diagnostics/CollectMetrics")
        resp = call(f_bytes(1, b""), timeout=5)
    text = resp.decode("utf-8", "replace")
    counts = {}
    for m in re.finditer(r'grpc_server_handled_total\{[^}]*grpc_method="%s"[^}]*grpc_code="(\w+)"\} (\d+)' %
                         re.escape(method), text):
        counts[m.group(1)] = int(m.group(2))
    print(" ".join("%s=%d" % kv for kv in sorted(counts.items())) or "none")
    return 0 if counts else 1


def proc_status(pid):
    out = {}
    with open("/proc/%s/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])
    return out


def cmd_streams(port, pid, conns, per_conn):
    import h2.config
    import h2.connection
    import h2.events

    deadline = time.monotonic() + 30
    sessions = []
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", int(port)))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        c.initiate_connection()
        s.sendall(c.data_to_send())
        sessions.append({"sock": s, "h2": c, "settings": False, "heads": set(), "ended": set(), "sids": []})

    def pump(sess):
        data = sess["sock"].recv(65536)
        if not data:
            raise SystemExit("connection closed by the plugin")
        for ev in sess["h2"].receive_data(data):
            if isinstance(ev, h2.events.RemoteSettingsChanged):
                sess["settings"] = True
            elif isinstance(ev, h2.events.ResponseReceived):
                sess["heads"].add(ev.stream_id)
            elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset, h2.events.TrailersReceived)):
                sess["ended"].add(ev.stream_id)
        out = sess["h2"].data_to_send()
        if out:
            sess["sock"].sendall(out)

    def wait(cond):
        while not all(cond(x) for x in sessions):
            if time.monotonic() > deadline:
                raise SystemExit("timed out waiting for the plugin")
            ready, _, _ = select.select([x["sock"] for x in sessions], [], [], 1.0)
            for x in sessions:
                if x["sock"] in ready:
                    pump(x)

    wait(lambda x: x["settings"])  # the server's MAX_CONCURRENT_STREAMS is known
    time.sleep(0.1)
    before = proc_status(pid)["VmRSS"]  # connections open, no streams yet
    empty = struct.pack(">BI", 0, 0)
    for x in sessions:
        c = x["h2"]
        for _ in range(per_conn):
            sid = c.get_next_available_stream_id()
            c.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":path", "/plugin.GRPCStdio/StreamStdio"),
                                 (":authority", "plugin"), ("content-type", "application/grpc"), ("te", "trailers")])
            c.send_data(sid, empty, end_stream=True)
            x["sids"].append(sid)
        x["sock"].sendall(c.data_to_send())
    wait(lambda x: len(x["heads"]) == per_conn)
    time.sleep(0.2)  # let anything lazy settle before sampling
    for x in sessions:
        x["sock"].setblocking(False)
        try:
            while True:
                pump(x)
        except (BlockingIOError, socket.error):
            pass
    ended = sum(len(x["ended"]) for x in sessions)
    st = proc_status(pid)
    print("streams=%d open=%d rss_before_kib=%d rss_kib=%d hwm_kib=%d" % (
        conns * per_conn, conns * per_conn - ended, before, st["VmRSS"], st["VmHWM"]))
    for x in sessions:
        x["sock"].close()
    return 0 if ended == 0 else 1


def main(argv):
    if len(argv) >= 3 and argv[1] == "body":
        cmd_body(argv[2])
        return 0
    if len(argv) >= 4 and argv[1] == "verify":
        return cmd_verify(argv[2], argv[3])
    if len(argv) >= 4 and argv[1] == "handled":
        return cmd_handled(argv[2], argv[3])
    if len(argv) >= 6 and argv[1] == "streams":
        return cmd_streams(argv[2], argv[3], int(argv[4]), int(argv[5]))
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
