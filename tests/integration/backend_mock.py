"""A scripted in-house backend (standard library only) for the fan-out tests.

Each query target selects what the backend does, so one request can mix
shapes and failures: see `answer()`. It records request bodies and headers,
the highest number of /query requests served at once, and how many
connections the plugin closed while the backend was still working on them
(proof that cancellation reaches the backend).
"""
import http.server
import json
import select
import threading
import time


class Backend:
    def __init__(self):
        self.bodies = []
        self.headers = []
        self.active = 0
        self.max_active = 0
        self.closed_early = 0
        self.lock = threading.Lock()
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status, body, ctype="application/json"):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _wait_or_notice_close(self, seconds):
                """Sleeps, but returns False as soon as the client hangs up."""
                end = time.time() + seconds
                while time.time() < end:
                    r, _, _ = select.select([self.connection], [], [], 0.05)
                    if r and not self.connection.recv(1, 0x2):  # MSG_PEEK: EOF
                        with backend.lock:
                            backend.closed_early += 1
                        return False
                return True

            def do_GET(self):
                with backend.lock:
                    backend.headers.append(dict(self.headers))
                mode = getattr(backend, "health_mode", "ok")
                if mode == "ok":
                    self._send(200, {"status": "ok"})
                elif mode == "401":
                    self._send(401, {"message": "bad token"})
                else:
                    self._send(500, {"error": "database is down"})

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with backend.lock:
                    backend.bodies.append(body)
                    backend.headers.append(dict(self.headers))
                if self.path != "/query":
                    self._send(200, {"path": self.path, "echo": body.decode()})
                    return
                with backend.lock:
                    backend.active += 1
                    backend.max_active = max(backend.max_active, backend.active)
                try:
                    req = json.loads(body)
                    target = req["targets"][0]["target"]
                    self.answer(target, req)
                finally:
                    with backend.lock:
                        backend.active -= 1

            def answer(self, target, req):
                name, _, arg = target.partition(":")
                if name == "series":
                    self._send(200, [{"target": "s%d" % i, "tags": {"i": str(i)},
                                      "datapoints": [[i + 0.5, 2000], [None, 1000], [i, 3000]]}
                                     for i in range(int(arg or 1))])
                elif name == "table":
                    self._send(200, [{"type": "table", "columns": [{"text": "time", "type": "time"},
                                                                    {"text": "host"}, {"text": "v"}],
                                      "rows": [[1000, "a", 1.5], [2000, "b", None]]}])
                elif name == "frame":
                    self._send(200, [{"name": "f", "fields": [{"name": "x", "values": [1, 2]},
                                                              {"name": "y", "type": "string", "values": ["p", "q"]}]}])
                elif name == "empty":
                    self._send(200, [])
                elif name == "status":
                    self._send(int(arg), {"error": "injected %s" % arg})
                elif name == "malformed":
                    self._send(200, b'[{"target":"x","datapoints":[[1,')
                elif name == "big":
                    self._send(200, [{"target": "big", "datapoints": [[1.0, t] for t in range(int(arg))]}])
                elif name == "sleep":
                    if self._wait_or_notice_close(float(arg)):
                        self._send(200, [{"target": "slept", "datapoints": [[1, 1000]]}])
                elif name == "echo":
                    self._send(200, [{"target": target, "datapoints": [[1, 1000]]}])
                else:
                    self._send(400, {"error": "unknown target %s" % target})

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
