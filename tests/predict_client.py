"""Requests to an in-process prediction app (werkzeug's test client), shared by serving tests."""

from __future__ import annotations

from typing import Any

from werkzeug.test import Client


def post(client: Client, *instances: Any) -> tuple[int, Any]:
    """(status, body) of one request holding ``instances``."""
    response = client.post("/predict", json={"instances": list(instances)})
    return response.status_code, response.get_json()


def reason(client: Client, good: dict[str, Any], instance: Any) -> str:
    """Why the server refuses ``instance`` sent second, after a ``good`` one: a whole request is
    refused for one bad instance, and the reason names it by index."""
    status, body = post(client, good, instance)
    assert status == 400, body
    [found] = body["reasons"]
    assert found["index"] == 1
    text: str = found["reason"]
    return text
