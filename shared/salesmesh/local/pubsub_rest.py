"""Pub/Sub's REST ``publish`` method: served for the in-process fallback, spoken to either.

``POST /v1/projects/P/topics/T:publish`` with ``{"messages": [{"data": <base64>, "attributes":
{...}}]}`` answers ``{"messageIds": [...]}``: the shape of Pub/Sub's REST API, which the official
emulator serves on its gRPC port too. So :class:`RestTopic`, a ``Topic`` over the standard
library alone, publishes into a running mesh from any process whichever Pub/Sub it runs, and
:class:`PublishServer` gives the in-process fallback, which no other process could otherwise
reach, the same door on 127.0.0.1. Errors come back as Pub/Sub's do:
``{"error": {"code", "message", "status"}}`` (404 ``NOT_FOUND`` for an unknown topic, 400
``INVALID_ARGUMENT`` for a malformed request).
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import re
import threading
import urllib.parse
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from salesmesh.backends.gcp_pubsub import PubSubError, PubSubNotFoundError
from salesmesh.ports import Topic

_PUBLISH = re.compile(r"/v1/projects/(?P<project>[^/]+)/topics/(?P<topic>[^/:]+):publish")
_MAX_BODY = 10 << 20  # Pub/Sub's own request limit
TIMEOUT = 30.0  # seconds; a local topic stores a message in microseconds


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: PublishServer

    def do_POST(self) -> None:
        match = _PUBLISH.fullmatch(self.path)
        length = self.headers.get("Content-Length", "")
        if not length.isdigit() or int(length) > _MAX_BODY:
            self.close_connection = True
            self._error(400, "INVALID_ARGUMENT", f"a Content-Length up to {_MAX_BODY} is needed")
            return
        body = self.rfile.read(int(length))
        topic = self.server.topics.get((match["project"], match["topic"])) if match else None
        if topic is None:
            self._error(404, "NOT_FOUND", f"Topic not found: {self.path}")
            return
        try:
            messages = _messages(body)
        except ValueError as exc:
            self._error(400, "INVALID_ARGUMENT", str(exc))
            return
        ids = [topic.publish(data, attributes) for data, attributes in messages]
        self._send(200, {"messageIds": ids})

    def _error(self, code: int, status: str, message: str) -> None:
        self._send(code, {"error": {"code": code, "message": message, "status": status}})

    def _send(self, code: int, document: Mapping[str, Any]) -> None:
        data = json.dumps(document).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the mesh logs what it delivers; an access line per publish says nothing more


def _messages(body: bytes) -> list[tuple[bytes, dict[str, str]]]:
    """The (data, attributes) of a publish request; ValueError saying what is wrong."""
    try:
        request = json.loads(body)
        messages = request["messages"]
        if not isinstance(messages, list) or not messages:
            raise ValueError("'messages' must be a non-empty list")
        parsed = []
        for message in messages:
            data = base64.b64decode(message.get("data", ""), validate=True)
            attributes = message.get("attributes") or {}
            if not all(isinstance(v, str) for v in attributes.values()):
                raise ValueError("attribute values must be strings")
            parsed.append((data, {str(k): v for k, v in attributes.items()}))
    except (KeyError, TypeError, AttributeError, binascii.Error) as exc:
        raise ValueError(f"not a publish request: {exc!r}") from exc
    return parsed


class PublishServer(ThreadingHTTPServer):
    """Pub/Sub's REST publish on 127.0.0.1 for in-process topics, keyed (project, topic id)."""

    daemon_threads = True

    def __init__(self, topics: Mapping[tuple[str, str], Topic], port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.topics = dict(topics)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self._thread: threading.Thread | None = None

    def start(self) -> PublishServer:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self.serve_forever, args=(0.5,), name="pubsub-publish", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
            self._thread = None
        self.server_close()


class RestTopic:
    """The ``Topic`` port over Pub/Sub's REST publish at ``url`` (no SDK, no credentials: for
    the emulator and the mesh's own server on 127.0.0.1)."""

    def __init__(self, url: str, project: str, topic: str) -> None:
        self.url = url.rstrip("/")
        self.path = f"projects/{project}/topics/{topic}"

    def publish(self, data: bytes, attributes: Mapping[str, str] | None = None) -> str:
        """Publish one message; its id once the topic stored it. PubSubError otherwise."""
        if not isinstance(data, bytes):
            raise TypeError(f"data must be bytes, got {type(data).__name__}")
        message: dict[str, Any] = {"data": base64.b64encode(data).decode()}
        if attributes:
            message["attributes"] = dict(attributes)
        body = json.dumps({"messages": [message]}).encode()
        parts = urllib.parse.urlsplit(self.url)
        host = parts.hostname or "127.0.0.1"
        connection = http.client.HTTPConnection(host, parts.port, timeout=TIMEOUT)
        where = f"publishing to {self.path} at {self.url}"
        try:
            headers = {"Content-Type": "application/json"}
            connection.request("POST", f"/v1/{self.path}:publish", body, headers)
            response = connection.getresponse()
            status, answer = response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise PubSubError(f"{where} failed: {exc!r}; is the mesh running?") from exc
        finally:
            connection.close()
        if status == 404:
            raise PubSubNotFoundError(f"{where}: not found ({answer[:200]!r})")
        if status != 200:
            raise PubSubError(f"{where} failed: {status} {answer[:500]!r}")
        [message_id] = json.loads(answer)["messageIds"]
        return str(message_id)
