"""A local HTTP webhook receiver for tests: records every request (headers and raw body).

`responses` is a list of statuses answered in turn (the last one repeats); `stall` makes the
next request hang for that many seconds before answering (to kill a worker mid-delivery),
`stall_all` every request.
"""
from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class WebhookReceiver:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.responses: list[int] = [200]
        self.stall = 0.0
        self.stall_all = 0.0         # every request hangs this long (a slow receiver)
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver.arrived:
                    receiver.requests.append({"headers": {k: v for k, v in self.headers.items()}, "body": body,
                                              "path": self.path, "at": time.time()})
                    status = receiver.responses.pop(0) if len(receiver.responses) > 1 else receiver.responses[0]
                    stall, receiver.stall = receiver.stall or receiver.stall_all, 0.0
                    receiver.arrived.notify_all()
                if stall:
                    time.sleep(stall)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> "WebhookReceiver":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        deadline = time.time() + timeout
        with self.arrived:
            while len(self.requests) < count:
                remaining = deadline - time.time()
                if remaining <= 0:
                    return False
                self.arrived.wait(remaining)
        return True
