"""A fake prediction server on 127.0.0.1 for router and metrics tests (a module, not conftest:
its name is unique). Each request's first instance says how to answer: ``status`` (200 by
default) and ``sleep_ms`` before answering."""

from __future__ import annotations

import json
import socket
import threading
import time
from contextlib import suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Answer(BaseHTTPRequestHandler):
    """Answers like the prediction server; an instance may ask for a delay or a status."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # as a prediction server must, or each answer waits 40 ms
    server: Upstream

    def do_POST(self) -> None:
        instance = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["instances"][0]
        time.sleep(instance.get("sleep_ms", 0) / 1000)
        status = instance.get("status", 200)
        if status == 200:
            forecast = [{"date": "2026-01-01", "sales": 1.0}]
            body: dict[str, Any] = {"predictions": [{**instance, "forecast": forecast}]}
        else:
            body = {"error": "refused", "reasons": [{"index": 0, "reason": "unknown series"}]}
        data = json.dumps({**body, "deployedModelId": self.server.model_id}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Upstream(ThreadingHTTPServer):
    """A fake prediction server for deployed model ``model_id`` on 127.0.0.1."""

    daemon_threads = True

    def __init__(self, model_id: str, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Answer)
        self.model_id = model_id
        self.port = self.server_address[1]
        self.connections: list[socket.socket] = []
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        self.connections.append(connection)
        return connection, address

    def stop(self) -> None:
        """Stop as a dying process would: kept-alive connections are closed too."""
        self.shutdown()
        self.server_close()
        for connection in self.connections:
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
