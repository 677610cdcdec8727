"""The functions' story read back from Cloud Logging, as records shaped like the local log's.

On Google Cloud the functions write the same JSON lines to stdout as locally
(:class:`salesmesh.logs.Logger`); this reads them with ``google.cloud.logging.Client.list_entries``
and turns each entry back into the dict :func:`salesmesh.logs.read` yields, so ``salesmesh logs``
prints the same lines for both sources.

What this relies on, from Cloud Logging's structured-logging and LogEntry references and the
Cloud Run logging pages:

- A gen2 function is a Cloud Run service: its stdout lands on resource type
  ``cloud_run_revision`` with ``resource.labels.service_name`` the service's name. Service names
  allow only lowercase letters, digits and ``-``, so a function's service is its name lowercased
  with ``_`` turned into ``-``; the Terraform names the functions that way to begin with.
  :data:`SERVICES` is the one list of them: a new function is added there.
- A stdout line that is a JSON object becomes a ``jsonPayload`` entry, except for special
  fields: ``severity`` becomes the entry's severity, ``time`` its timestamp and
  ``logging.googleapis.com/labels`` its labels (filtered as ``labels.KEY``); ``message`` stays
  in ``jsonPayload.message`` (also the summary line in the console) and so do ``component``,
  ``correlation_id`` and every other field. Should a special field be left in the payload, the
  entry's own field still wins, so the record keeps one shape.
- Any other line (a traceback from the functions framework) is a ``textPayload`` entry, request
  logs carry only ``httpRequest``, and audit logs a ``protoPayload``: the first prints its text,
  the others a one-line summary. The client returns these as ``TextEntry``, ``LogEntry`` and
  ``ProtobufEntry`` (``StructEntry`` for JSON).
- In the query language OR binds tighter than AND; every OR group is parenthesised anyway.

The newest ``limit`` entries are fetched (``DESCENDING``) and yielded oldest first: when the cap
cuts, it cuts the old end, as ``tail`` would. The client is imported on first use.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from salesmesh.errors import ConfigError
from salesmesh.logs import LABELS, story

SERVICES = ("train-trigger", "deploy-model", "alert-handler")  # Cloud Run names of the functions
SINCE = timedelta(days=1)
LIMIT = 1000
_PAGE = 1000  # the API's largest page: fewer calls against the read quota
# a project id, a project number, or a legacy domain-scoped id ("example.com:project")
_PROJECT = re.compile(r"(?:[a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]|[0-9]{1,19}")


def read(
    project: str,
    *,
    run_id: str | None = None,
    since: timedelta | None = None,
    limit: int | None = None,
    client: Any = None,
) -> Iterator[dict[str, Any]]:
    """Records of the functions' log entries in ``project`` from ``since`` ago (default a day)
    until now, oldest first, at most ``limit`` (default 1000, the newest); with ``run_id``
    (a run or a correlation id) only that upload's story. ConfigError when Cloud Logging cannot
    be read, saying what to install or grant."""
    if not _PROJECT.fullmatch(project):
        raise ConfigError(f"{project!r} is not a Google Cloud project id or number")
    limit = LIMIT if limit is None else limit
    query = build_filter(run_id=run_id, start=datetime.now(UTC) - (since or SINCE))
    sdk = _logging()
    exceptions = importlib.import_module("google.api_core.exceptions")
    auth = importlib.import_module("google.auth.exceptions")
    try:
        client = client or sdk.Client(project=project)
        entries = list(
            client.list_entries(
                resource_names=[f"projects/{project}"],
                filter_=query,
                order_by=sdk.DESCENDING,
                max_results=limit,
                page_size=min(limit, _PAGE),
            )
        )
    except (
        exceptions.PermissionDenied,
        exceptions.NotFound,
        exceptions.Unauthenticated,
        exceptions.InvalidArgument,
    ) as exc:
        raise ConfigError(
            f"cannot read Cloud Logging in project {project} ({exc.message}): it needs an "
            f"existing project and roles/logging.viewer on project {project}"
        ) from exc
    except (exceptions.GoogleAPICallError, exceptions.RetryError) as exc:
        raise ConfigError(f"Cloud Logging could not be read in project {project}: {exc}") from exc
    except auth.GoogleAuthError as exc:  # none found, or expired and not refreshable
        raise ConfigError(
            f"no usable Google credentials to read Cloud Logging: {exc}; run "
            "gcloud auth application-default login, or run as a service account"
        ) from exc
    return (record(entry) for entry in reversed(entries))


def build_filter(*, run_id: str | None, start: datetime) -> str:
    """The Logging query for the functions' entries since ``start``, about ``run_id`` if given:
    the same three terms as :func:`salesmesh.logs.in_story`."""
    services = " OR ".join(f"resource.labels.service_name = {_quote(s)}" for s in SERVICES)
    terms = [
        'resource.type = "cloud_run_revision"',
        f"({services})",
        f"timestamp >= {_quote(start.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ'))}",
    ]
    if run_id is not None:
        run, correlation = story(run_id)
        terms.append(
            f"(labels.run_id = {_quote(run)} OR jsonPayload.run_id = {_quote(run)} "
            f"OR jsonPayload.correlation_id = {_quote(correlation)})"
        )
    return " AND ".join(terms)


def record(entry: Any) -> dict[str, Any]:
    """One client entry as the local log's record: severity, message, time, component, then
    correlation_id and labels when present, then the payload's other fields."""
    sdk = _logging()
    service = str(((entry.resource and entry.resource.labels) or {}).get("service_name", ""))
    fields: dict[str, Any] = {}
    if isinstance(entry, sdk.StructEntry):
        fields = {str(k): _number(v) for k, v in (entry.payload or {}).items()}
        message = str(fields.pop("message", ""))
    elif isinstance(entry, sdk.TextEntry):
        message = str(entry.payload).rstrip("\n")
    elif isinstance(entry, sdk.ProtobufEntry):
        message = _summary(entry.payload)
    else:
        message = _request(entry.http_request)
    severity, time = fields.pop("severity", None), fields.pop("time", None)
    labels = {**_mapping(fields.pop(LABELS, None)), **(entry.labels or {})}
    out: dict[str, Any] = {
        "severity": str(entry.severity or severity or "DEFAULT"),
        "message": message,
        "time": entry.timestamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        if entry.timestamp
        else time or "",
        # text lines have no component: the function's own name stands in
        "component": fields.pop("component", None) or service.replace("-", "_"),
    }
    if (correlation := fields.pop("correlation_id", None)) is not None:
        out["correlation_id"] = correlation
    if labels:
        out[LABELS] = labels
    return out | fields


def _summary(payload: Any) -> str:
    """One line for a platform entry (an audit log): its type, method, resource and status."""
    if not isinstance(payload, Mapping):  # an Any of a type the client could not decode
        return f"[{str(getattr(payload, 'type_url', type(payload).__name__)).rsplit('/', 1)[-1]}]"
    parts = [
        f"[{str(payload.get('@type', 'protoPayload')).rsplit('/', 1)[-1]}]",
        payload.get("methodName"),
        payload.get("resourceName"),
        _mapping(payload.get("authenticationInfo")).get("principalEmail"),
        _mapping(payload.get("status")).get("message"),
    ]
    return " ".join(str(part) for part in parts if part)


def _request(http: Any) -> str:
    """One line for a request log: method, status, URL and latency."""
    request = _mapping(http)
    parts = [request.get(k) for k in ("requestMethod", "status", "requestUrl", "latency")]
    return " ".join(str(part) for part in parts if part is not None) or "(no payload)"


def _number(value: Any) -> Any:
    """``value`` with whole floats back as ints: jsonPayload is a protobuf Struct, whose only
    number is a double, so the ``3`` a function logged is read back as ``3.0``."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, Mapping):
        return {k: _number(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_number(v) for v in value]
    return value


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _quote(value: str) -> str:
    """``value`` as a query string literal: a run id from the command line ends nothing."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _logging() -> Any:
    """``google.cloud.logging``, imported on first use; ConfigError saying what to install."""
    try:
        return importlib.import_module("google.cloud.logging")
    except ImportError as exc:
        raise ConfigError(
            "reading logs from Google Cloud needs google-cloud-logging: "
            "pip install 'google-cloud-logging>=3.10' (or the project's dev extra)"
        ) from exc
