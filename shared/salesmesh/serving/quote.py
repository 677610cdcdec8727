"""How a refusal quotes what a client sent: short, and in the client's own terms."""

from __future__ import annotations

import json
from typing import Any

SHOWN = 60  # characters of a client's value quoted back in a reason


def kind(value: Any) -> str:
    """'an object', 'a list', 'the number 7', 'null' ...: what a value is, for a reason."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"the number {show(value)}"
    return names.get(type(value), type(value).__name__)


def show(value: Any) -> str:
    """A client's value as it sent it, cut short so a reason never echoes a huge payload."""
    # ids quote like Python (store_id='S99'); other values read as the JSON that was sent
    text = repr(value) if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."
