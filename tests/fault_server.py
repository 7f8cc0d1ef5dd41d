"""A scripted OpenAI-compatible HTTP server for *injected faults* only.

Real behaviour is tested against a real server (``transformers serve``, see conftest). This
one exists to produce the failures a real server produces rarely and unpredictably: HTTP 500,
answers slower than the client's timeout, garbage bodies, truncated JSON, replies a judge
cannot parse. Each request takes the next scripted :class:`Fault`; the last one repeats.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Fault:
    """``kind``: ok | http500 | http400 | timeout | garbage | truncated_json | empty_choices."""

    kind: str
    text: str = "ok"
    delay_s: float = 0.0
    finish_reason: str = "stop"


class FaultServer:
    def __init__(self, script: list[Fault], host: str = "127.0.0.1"):
        if not script:
            raise ValueError("FaultServer needs at least one scripted Fault")
        self.script = list(script)
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                if self.path == "/health":
                    self._send(200, b"{}")
                elif self.path == "/v1/models":
                    self._send(200, json.dumps({"data": [{"id": "default", "object": "model"}]}).encode())
                else:
                    self._send(404, b"{}")

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                fault = server._next(body | {"_path": self.path})
                if fault.delay_s or fault.kind == "timeout":
                    time.sleep(fault.delay_s or 5.0)
                if fault.kind == "http500":
                    return self._send(500, b'{"error": "injected 500"}')
                if fault.kind == "http400":
                    return self._send(400, b'{"error": "injected 400"}')
                if fault.kind == "garbage":
                    return self._send(200, b"<html>not json at all</html>")
                if fault.kind == "empty_choices":
                    return self._send(200, b'{"choices": []}')
                chat = self.path.endswith("/chat/completions")
                choice = {"index": 0, "finish_reason": fault.finish_reason}
                choice |= (
                    {"message": {"role": "assistant", "content": fault.text}}
                    if chat
                    else {"text": fault.text}
                )
                usage = {"completion_tokens": len(fault.text.split()), "prompt_tokens": 1}
                payload = json.dumps({"choices": [choice], "usage": usage}).encode()
                if fault.kind == "truncated_json":
                    payload = payload[: len(payload) // 2]
                self._send(200, payload)

            def _send(self, status: int, payload: bytes):
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

        self._httpd = ThreadingHTTPServer((host, 0), Handler)
        self._httpd.daemon_threads = True
        self.base_url = f"http://{host}:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def _next(self, body: dict) -> Fault:
        with self._lock:
            self.requests.append(body)
            index = min(len(self.requests) - 1, len(self.script) - 1)
            return self.script[index]

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
