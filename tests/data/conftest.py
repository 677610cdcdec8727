"""Fixtures for the sales data contract tests: real files written to tmp_path."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, timedelta
from pathlib import Path

import pytest

WriteFile = Callable[[str, bytes | str], Path]
SalesText = Callable[..., str]


@pytest.fixture
def write_file(tmp_path: Path) -> WriteFile:
    """Write bytes (or UTF-8 text) to tmp_path/name exactly as given and return the path."""

    def write(name: str, content: bytes | str) -> Path:
        path = tmp_path / name
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return path

    return write


def _sales_text(
    days: int = 60,
    series: Sequence[tuple[str, str]] = (("S1", "P1"), ("S1", "P2")),
    start: date = date(2024, 1, 1),
    step_days: int = 1,
    date_format: str = "%Y-%m-%d",
    header: Sequence[str] = ("date", "store_id", "product_id", "sales"),
    sep: str = ",",
    newline: str = "\n",
) -> str:
    """A valid daily file: sales cycle 0..9 so values are predictable in assertions."""
    lines = [sep.join(header)]
    for store, product in series:
        for day in range(days):
            when = (start + timedelta(days=day * step_days)).strftime(date_format)
            lines.append(sep.join([when, store, product, str(day % 10)]))
    return newline.join(lines) + newline


@pytest.fixture
def sales_text() -> SalesText:
    """Builder of valid sales CSV text; keyword arguments vary one thing at a time."""
    return _sales_text
