"""The prediction server's WSGI app: Vertex AI's health and predict routes, JSON in and out.

A plain WSGI callable, no framework: two routes do not need one, and every microsecond per
request counts toward the latency budget. Any WSGI server runs it; ``salesmesh.serve`` uses
gunicorn, tests call it directly.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Iterable
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from salesmesh.serving.predictor import Predictor
from salesmesh.serving.settings import ServeSettings

# 1000 instances take about 80 KB; anything near this cap is not a prediction request
MAX_BODY_BYTES = 1 << 20
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    500: "Internal Server Error",
}


def create_app(predictor: Predictor, settings: ServeSettings) -> WSGIApplication:
    """A WSGI app answering ``settings``' health (GET) and predict (POST) routes."""
    deployed = settings.deployed_model_id
    # the health answer never changes while the process lives: encode it once
    health = _encode({**predictor.health(), "deployedModelId": deployed})
    methods = {settings.health_route: "GET", settings.predict_route: "POST"}

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "")
        allowed = methods.get(path)
        if allowed is None:
            reason = (
                f"no route {path!r}: GET {settings.health_route} for health, "
                f"POST {settings.predict_route} for predictions"
            )
            return _send(start_response, 404, _encode({"error": reason, "reasons": []}))
        if method != allowed:
            reason = f"{path} takes {allowed}, not {method}"
            body = _encode({"error": reason, "reasons": []})
            return _send(start_response, 405, body, [("Allow", allowed)])
        if path == settings.health_route:
            return _send(start_response, 200, health)
        try:
            status, payload = _predict(predictor, environ)
        except Exception:  # a bug must cost one request a 500, not the worker thread
            print(f"salesmesh.serve: error answering {method} {path}", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
            status, payload = 500, {"error": "internal error; see the server log", "reasons": []}
        if status == 200:
            payload["deployedModelId"] = deployed
        return _send(start_response, status, _encode(payload))

    return app


def _predict(predictor: Predictor, environ: WSGIEnvironment) -> tuple[int, dict[str, Any]]:
    """Read and decode the request body, then let the predictor answer it."""
    declared = environ.get("CONTENT_LENGTH") or ""
    stream = environ["wsgi.input"]
    if declared:
        if not declared.isdigit():
            return 400, _refusal(f"Content-Length {declared!r} is not a number of bytes")
        if int(declared) > MAX_BODY_BYTES:
            return 413, _too_large()
        raw = stream.read(int(declared))
    elif environ.get("wsgi.input_terminated"):
        # a chunked body: the server ends the stream, so reading one byte past the cap is safe
        raw = stream.read(MAX_BODY_BYTES + 1)
        if len(raw) > MAX_BODY_BYTES:
            return 413, _too_large()
    else:
        raw = b""  # PEP 3333: without a length the stream may never end; read nothing
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        detail = str(exc) if raw else "the body is empty"
        return 400, _refusal(f"the request body is not valid JSON: {detail}")
    return predictor.predict(body)


def _too_large() -> dict[str, Any]:
    return _refusal(
        f"the request body exceeds the limit of {MAX_BODY_BYTES:,} bytes: "
        "send fewer instances per request"
    )


def _refusal(reason: str) -> dict[str, Any]:
    return {"error": reason, "reasons": []}


def _encode(payload: dict[str, Any]) -> bytes:
    # allow_nan=False: the predictor never produces NaN, and if it did the client must not
    # receive a body no strict JSON parser accepts
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def _send(
    start_response: StartResponse,
    status: int,
    body: bytes,
    extra: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        *(extra or []),
    ]
    start_response(f"{status} {_REASONS[status]}", headers)
    return [body]
