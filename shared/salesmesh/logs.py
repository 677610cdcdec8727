"""Structured logs in Cloud Logging's JSON shape, one object per line, on stdout and on disk.

On Google Cloud a function's stdout is parsed by Cloud Logging: ``severity``, ``message``,
``time`` and ``logging.googleapis.com/labels`` become the entry's own fields, the rest its
jsonPayload. Locally the same lines are appended to a file under ``.salesmesh/logs/`` that
:func:`read` (and ``salesmesh logs``) reads back, following one ``correlation_id`` from the
upload to the rollback. Logging never raises into the caller: odd values are stringified and
write failures are reported on stderr.
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal, TextIO

Severity = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LABELS = "logging.googleapis.com/labels"
STDOUT: Literal["stdout"] = "stdout"  # resolved at each write: test runners swap sys.stdout
_CORE = frozenset({"severity", "message", "time", LABELS, "component", "correlation_id"})
_MAX_DEPTH = 16


class Logger:
    """Writes one JSON line per call to ``stream`` (default stdout) and, if given, ``path``."""

    def __init__(
        self,
        component: str,
        stream: TextIO | Literal["stdout"] | None = STDOUT,
        path: Path | None = None,
        labels: Mapping[str, str] | None = None,
        correlation_id: str | None = None,
    ) -> None:
        self.component = component
        self.correlation_id = correlation_id
        self.labels = {str(k): _label(v) for k, v in (labels or {}).items()}
        self.fields: dict[str, Any] = {}
        self._stream = stream
        self._path = path

    def bind(
        self,
        *,
        correlation_id: str | None = None,
        labels: Mapping[str, str] | None = None,
        **fields: Any,
    ) -> Logger:
        """A logger that adds a correlation id, labels and fields to every line it writes."""
        bound = copy.copy(self)  # shallow: a capturing logger's record list stays shared
        bound.correlation_id = correlation_id or self.correlation_id
        bound.labels = {**self.labels, **{str(k): _label(v) for k, v in (labels or {}).items()}}
        bound.fields = {**self.fields, **fields}
        return bound

    def debug(self, message: str, /, **fields: Any) -> None:
        """Log at DEBUG."""
        self.log("DEBUG", message, **fields)

    def info(self, message: str, /, **fields: Any) -> None:
        """Log at INFO."""
        self.log("INFO", message, **fields)

    def warning(self, message: str, /, **fields: Any) -> None:
        """Log at WARNING."""
        self.log("WARNING", message, **fields)

    def error(self, message: str, /, **fields: Any) -> None:
        """Log at ERROR."""
        self.log("ERROR", message, **fields)

    def critical(self, message: str, /, **fields: Any) -> None:
        """Log at CRITICAL."""
        self.log("CRITICAL", message, **fields)

    def log(self, severity: Severity, message: str, /, **fields: Any) -> None:
        """Write one line; extra fields that clash with a core key get a trailing ``_``."""
        # a per-call correlation id is what the caller means, not a clashing field
        correlation = fields.pop("correlation_id", None) or self.correlation_id
        record: dict[str, Any] = {
            "severity": severity,
            "message": _text(message),
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "component": self.component,
        }
        if correlation:
            record["correlation_id"] = _text(correlation)
        if self.labels:
            record[LABELS] = dict(self.labels)
        for key, value in {**self.fields, **fields}.items():
            record[f"{key}_" if key in _CORE else key] = _json_safe(value, 0)
        self._emit(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n", record)

    def _emit(self, line: str, record: dict[str, Any]) -> None:
        stream = sys.stdout if self._stream == STDOUT else self._stream
        try:
            if stream is not None and not isinstance(stream, str):
                stream.write(line)
                stream.flush()
            if self._path is not None:
                _append(self._path, line.encode("utf-8"))
        except (OSError, ValueError) as exc:  # ValueError: a closed stream
            print(f"salesmesh.logs: could not write a log line: {exc}", file=sys.stderr)


def _append(path: Path, data: bytes) -> None:
    # O_APPEND makes each write() land whole at the current end of file, so processes sharing
    # one log file never interleave partial lines; opening per line survives the file being
    # removed or rotated between writes.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:  # a short write is rare on regular files, but losing the tail is worse
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _label(value: object) -> str:
    # Cloud Logging labels are string to string; anything else is rejected by the API
    return value if isinstance(value, str) else _text(value)


def _text(value: object) -> str:
    try:
        return str(value)
    except Exception:  # a broken __str__ must not break the caller's logging
        return f"<unprintable {type(value).__name__}>"


def _json_safe(value: Any, depth: int) -> Any:
    """``value`` made of JSON types only; anything else becomes its string form."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)  # NaN is not JSON
    if depth >= _MAX_DEPTH:  # also ends self-referencing containers
        return _text(value)
    if isinstance(value, Mapping):
        return {_text(k): _json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=_text) if isinstance(value, set | frozenset) else value
        return [_json_safe(v, depth + 1) for v in items]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return _text(value)


class CapturingLogger(Logger):
    """A logger that keeps each line, parsed back from its JSON, in :attr:`records`."""

    def __init__(self, component: str = "test", **kwargs: Any) -> None:
        super().__init__(component, stream=None, **kwargs)
        self.records: list[dict[str, Any]] = []

    def _emit(self, line: str, record: dict[str, Any]) -> None:
        # parsed from the line, so a test sees exactly what would have been written
        self.records.append(json.loads(line))

    def messages(self, severity: Severity | None = None) -> list[str]:
        """The messages logged so far, optionally only those at ``severity``."""
        return [r["message"] for r in self.records if severity in (None, r["severity"])]


def capture(component: str = "test") -> CapturingLogger:
    """A logger for tests of other modules: nothing is printed, every record is kept."""
    return CapturingLogger(component)


class LogLines(Iterator[dict[str, Any]]):
    """The records of a log file, in order; :attr:`malformed` counts the lines skipped so far.

    Lines that are not a JSON object (a crash mid-line, a stray print) are skipped, never fatal:
    one bad line must not hide the rest of a run's story.
    """

    def __init__(self, path: Path, correlation_id: str | None, run_id: str | None) -> None:
        self.malformed = 0
        self._lines = self._records(path, correlation_id, run_id)

    def __next__(self) -> dict[str, Any]:
        return next(self._lines)

    def _records(
        self, path: Path, correlation_id: str | None, run_id: str | None
    ) -> Iterator[dict[str, Any]]:
        if not path.exists():  # nothing has logged yet
            return
        with path.open("rb") as handle:
            for raw in handle:
                try:
                    record = json.loads(raw.decode("utf-8"))
                except ValueError:  # also UnicodeDecodeError
                    record = None
                if not isinstance(record, dict):
                    if raw.strip():  # a blank line is not damage
                        self.malformed += 1
                    continue
                if _matches(record, "correlation_id", correlation_id) and _matches(
                    record, "run_id", run_id
                ):
                    yield record


def _matches(record: dict[str, Any], key: str, wanted: str | None) -> bool:
    if wanted is None:
        return True
    labels = record.get(LABELS)
    return record.get(key) == wanted or (isinstance(labels, dict) and labels.get(key) == wanted)


def story(run: str) -> tuple[str, str]:
    """The run id and the correlation id of one upload's story, given either of them.

    One upload generation gets one run, and both ids share its digest (``r-…`` the run, ``c-…``
    the upload; see :func:`salesmesh.events.run_id`), so either names the other. An id of
    neither shape is taken as both.
    """
    if run.startswith("r-"):
        return run, "c-" + run[2:]
    if run.startswith("c-"):
        return "r-" + run[2:], run
    return run, run


def in_story(record: Mapping[str, Any], run: str) -> bool:
    """Whether ``record`` belongs to the story of ``run`` (a run or a correlation id): it
    carries the run id (as a field or a label) or the upload's correlation id. Cloud Logging is
    queried with the same three terms (:mod:`salesmesh.backends.gcp_logs`)."""
    run_id, correlation_id = story(run)
    labels = record.get(LABELS)
    return (
        record.get("correlation_id") == correlation_id
        or record.get("run_id") == run_id
        or (isinstance(labels, Mapping) and labels.get("run_id") == run_id)
    )


def read(path: Path, correlation_id: str | None = None, run_id: str | None = None) -> LogLines:
    """Records from ``path`` (none if it does not exist), filtered by correlation or run id."""
    return LogLines(path, correlation_id, run_id)
