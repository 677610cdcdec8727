"""`salesmesh logs --project` against the installed google-cloud-logging, Cloud Logging faked.

Only ``google.cloud.logging.Client.list_entries`` is patched (autospec, so a wrong keyword
fails). The fake answers with the library's own entry objects, made the way its gRPC path makes
them: a real ``LogEntry`` proto, ``MessageToDict``, then ``entry_from_resource``
(``StructEntry``, ``TextEntry``, ``ProtobufEntry`` or a bare ``LogEntry``). It honours the
filter's ``timestamp >=``, ``order_by`` and ``max_results``; the rest of the filter is asserted
as text. Stdout lines become entries as Cloud Run parses them (see ``as_cloud_run_parses``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest

# hard imports: the SDK is a dev dependency, and this suite must never skip quietly
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.auth.exceptions import DefaultCredentialsError, RefreshError
from google.cloud.audit import audit_log_pb2
from google.cloud.logging import DESCENDING, Client, ProtobufEntry, StructEntry, TextEntry
from google.cloud.logging_v2._helpers import entry_from_resource
from google.cloud.logging_v2.types import LogEntry
from google.protobuf import any_pb2
from google.protobuf.json_format import MessageToDict

from salesmesh import logs
from salesmesh.backends import gcp_logs
from salesmesh.cli import main
from salesmesh.errors import ConfigError

PROJECT = "salesmesh-test"
NOW = datetime.now(UTC)


def client() -> Client:
    return Client(project=PROJECT, credentials=AnonymousCredentials())


def entry(at: datetime, service: str = "deploy-model", **fields: Any) -> Any:
    """An entry of ``service``'s revision as ``list_entries`` yields it over gRPC."""
    pb = LogEntry(
        log_name=f"projects/{PROJECT}/logs/run.googleapis.com%2Fstdout",
        resource={
            "type": "cloud_run_revision",
            "labels": {
                "project_id": PROJECT,
                "service_name": service,
                "revision_name": f"{service}-00001-xuv",
                "location": "europe-west1",
                "configuration_name": service,
            },
        },
        timestamp=at,
        receive_timestamp=at + timedelta(seconds=1),
        insert_id=f"{at.timestamp():.6f}",
        **fields,
    )
    return entry_from_resource(MessageToDict(LogEntry.pb(pb)), client(), loggers={})


def as_cloud_run_parses(line: str, service: str = "deploy-model") -> Any:
    """One stdout JSON line as Cloud Run stores it: severity, time and the labels move to the
    entry, everything else (message included) stays in jsonPayload."""
    payload = json.loads(line)
    at = datetime.strptime(payload.pop("time"), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return entry(
        at,
        service,
        severity=payload.pop("severity"),
        labels=payload.pop(logs.LABELS, {}),
        json_payload=payload,
    )


class FakeLogging:
    """What ``list_entries`` was asked, and the entries of the project it answers from."""

    def __init__(self) -> None:
        self.entries: list[Any] = []
        self.calls: list[dict[str, Any]] = []
        self.error: Exception | None = None

    def list_entries(self, client: Client, **request: Any) -> Iterator[Any]:
        self.calls.append(request)
        return self._pages(**request)

    def _pages(self, *, filter_: str, order_by: str, max_results: int, **_: Any) -> Iterator[Any]:
        if self.error is not None:  # the API answers on the first page fetch, not at the call
            raise self.error
        assert re.search(r'timestamp >= "', filter_), "every query must bound its time"
        found = sorted(
            (e for e in self.entries if matches(filter_, e.to_api_repr())),
            key=lambda e: e.timestamp,
            reverse=order_by == DESCENDING,
        )
        yield from found[:max_results]

    @property
    def filter(self) -> str:
        return str(self.calls[-1]["filter_"])


_COMPARISON = re.compile(r'([\w.]+) (=|>=) "((?:[^"\\]|\\.)*)"')


def matches(query: str, entry: dict[str, Any]) -> bool:
    """The subset of the Logging query language this module sends: comparisons of a field path
    with a quoted value, ANDed, OR groups in parentheses. Anything else fails the test."""
    for clause in _split(query, " AND "):
        group = clause[1:-1] if clause.startswith("(") else clause
        if not any(_compare(term, entry) for term in _split(group, " OR ")):
            return False
    return True


def _compare(term: str, entry: dict[str, Any]) -> bool:
    found = _COMPARISON.fullmatch(term)
    assert found is not None, f"unexpected query term {term!r}"
    path, operator, value = found.group(1), found.group(2), _unquote(found.group(3))
    field: Any = entry
    for key in path.split("."):
        field = field.get(key) if isinstance(field, dict) else None
    if operator == ">=":
        return bool(field) and _instant(field) >= _instant(value)
    return field == value


def _split(text: str, separator: str) -> list[str]:
    """``text`` cut at ``separator`` outside quotes and parentheses."""
    parts, depth, quoted, start, i = [], 0, False, 0, 0
    while i < len(text):
        char = text[i]
        if quoted:
            if char == "\\":  # an escaped character never ends the string
                i += 1
            quoted = char != '"'
        elif char == '"':
            quoted = True
        elif char in "()":
            depth += 1 if char == "(" else -1
        elif depth == 0 and text.startswith(separator, i):
            parts.append(text[start:i])
            i = start = i + len(separator)
            continue
        i += 1
    return [*parts, text[start:]]


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _unquote(literal: str) -> str:
    return re.sub(r"\\(.)", r"\1", literal)


@pytest.fixture
def cloud() -> Iterator[FakeLogging]:
    fake = FakeLogging()
    with (
        mock.patch.object(Client, "list_entries", autospec=True, side_effect=fake.list_entries),
        mock.patch(
            "google.auth.default", autospec=True, return_value=(AnonymousCredentials(), PROJECT)
        ),
    ):
        yield fake


def test_query_names_the_functions_the_run_and_the_start(cloud):
    """The filter pins Cloud Run, the three functions' services, the run's story and the start."""
    before = datetime.now(UTC).replace(microsecond=0)
    list(gcp_logs.read(PROJECT, run_id="r-0123abcd", since=timedelta(hours=2)))
    after = datetime.now(UTC)
    call = cloud.calls[-1]
    assert call["resource_names"] == [f"projects/{PROJECT}"]
    assert call["order_by"] == DESCENDING
    assert call["max_results"] == 1000 and call["page_size"] == 1000
    query = cloud.filter
    assert 'resource.type = "cloud_run_revision"' in query
    services = re.findall(r'resource\.labels\.service_name = "([^"]+)"', query)
    assert services == ["train-trigger", "deploy-model", "alert-handler"]
    assert (
        '(labels.run_id = "r-0123abcd" OR jsonPayload.run_id = "r-0123abcd" '
        'OR jsonPayload.correlation_id = "c-0123abcd")'
    ) in query
    start = re.search(r'timestamp >= "([^"]+)"', query)
    assert start is not None
    at = datetime.strptime(start.group(1), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before - timedelta(hours=2, seconds=1) <= at <= after - timedelta(hours=2)


def test_query_by_correlation_id_finds_the_run_too(cloud):
    """--run with the upload's correlation id asks for its run's label as well."""
    list(gcp_logs.read(PROJECT, run_id="c-77"))
    assert 'labels.run_id = "r-77"' in cloud.filter
    assert 'jsonPayload.correlation_id = "c-77"' in cloud.filter


def test_query_without_run_has_no_run_term_and_defaults_to_a_day(cloud):
    """Without --run every function line is asked for, from one day ago."""
    list(gcp_logs.read(PROJECT))
    assert "run_id" not in cloud.filter and "correlation_id" not in cloud.filter
    start = re.search(r'timestamp >= "([^"]+)"', cloud.filter)
    assert start is not None
    at = datetime.strptime(start.group(1), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - timedelta(days=1) - at) < timedelta(seconds=5)


def test_a_run_id_cannot_break_out_of_its_quotes(cloud):
    """Quotes and backslashes in --run are escaped, so the value reads back whole."""
    nasty = 'r-x" OR severity>="DEBUG\\'
    list(gcp_logs.read(PROJECT, run_id=nasty))
    literal = re.search(r'labels\.run_id = "((?:[^"\\]|\\.)*)"', cloud.filter)
    assert literal is not None and _unquote(literal.group(1)) == nasty


def test_newest_entries_are_kept_and_yielded_oldest_first(cloud):
    """With a limit the newest entries win, and they come out in time order."""
    for minutes in (50, 10, 30):
        at = NOW - timedelta(minutes=minutes)
        cloud.entries.append(entry(at, json_payload={"message": f"{minutes} min ago"}))
    cloud.entries.append(entry(NOW - timedelta(days=2), json_payload={"message": "too old"}))
    messages = [r["message"] for r in gcp_logs.read(PROJECT, limit=2)]
    assert messages == ["30 min ago", "10 min ago"]
    assert cloud.calls[-1]["page_size"] == 2
    assert [r["message"] for r in gcp_logs.read(PROJECT)] == [
        "50 min ago",
        "30 min ago",
        "10 min ago",
    ]


def test_struct_entry_becomes_the_local_record_shape(cloud):
    """Entry fields and jsonPayload fold back into one record, core keys first."""
    cloud.entries.append(
        entry(
            NOW,
            severity="WARNING",
            labels={"run_id": "r-1", "instanceId": "00f4"},
            json_payload={
                "message": "canary slow",
                "component": "deploy_model",
                "correlation_id": "c-1",
                "p99_ms": 812.5,
                "requests": 40,
            },
        )
    )
    (record,) = gcp_logs.read(PROJECT)
    assert isinstance(cloud.entries[0], StructEntry)
    assert list(record)[:6] == [
        "severity",
        "message",
        "time",
        "component",
        "correlation_id",
        logs.LABELS,
    ]
    assert record == {
        "severity": "WARNING",
        "message": "canary slow",
        "time": NOW.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "component": "deploy_model",
        "correlation_id": "c-1",
        logs.LABELS: {"run_id": "r-1", "instanceId": "00f4"},
        "p99_ms": 812.5,
        "requests": 40,
    }
    assert isinstance(record["requests"], int)  # a Struct number is a double: 40.0 over the wire


def test_text_entry_prints_its_text(cloud, capsys):
    """A traceback the framework wrote as text prints whole, under the function's name."""
    trace = 'Traceback (most recent call last):\n  File "main.py", line 9\nKeyError: x\n'
    cloud.entries.append(entry(NOW, "train-trigger", severity="ERROR", text_payload=trace))
    assert isinstance(cloud.entries[0], TextEntry)
    assert main(["logs", "--project", PROJECT]) == 0
    out = capsys.readouterr().out
    stamp = NOW.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert out == f"{stamp} ERROR    train_trigger: {trace}"


def test_platform_entries_get_one_line(cloud, capsys):
    """An audit log (protoPayload) and a request log (httpRequest only) print one line each."""
    audit = audit_log_pb2.AuditLog(
        service_name="run.googleapis.com",
        method_name="google.cloud.run.v2.Services.UpdateService",
        resource_name=f"projects/{PROJECT}/locations/europe-west1/services/deploy-model",
    )
    audit.authentication_info.principal_email = "ci@example.com"
    packed = any_pb2.Any()
    packed.Pack(audit)
    cloud.entries.append(entry(NOW - timedelta(seconds=2), severity="NOTICE", proto_payload=packed))
    cloud.entries.append(
        entry(
            NOW,
            "alert-handler",
            severity="ERROR",
            http_request={
                "request_method": "POST",
                "status": 500,
                "latency": timedelta(milliseconds=250),
            },
        )
    )
    assert isinstance(cloud.entries[0], ProtobufEntry)
    assert main(["logs", "--project", PROJECT]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(
        "NOTICE   deploy_model: [google.cloud.audit.AuditLog] "
        "google.cloud.run.v2.Services.UpdateService "
        f"projects/{PROJECT}/locations/europe-west1/services/deploy-model ci@example.com"
    )
    assert lines[1].endswith("ERROR    alert_handler: POST 500 0.250s")


def test_cloud_and_local_print_the_same_lines(cloud, capsys, monkeypatch, tmp_path):
    """One logged line reads back the same from the local file and from Cloud Logging."""
    monkeypatch.setenv("SALESMESH_STATE_DIR", str(tmp_path))
    path = tmp_path / "logs" / "mesh.jsonl"
    log = logs.Logger("deploy_model", stream=None, path=path)
    story = log.bind(correlation_id="c-5e", labels={"run_id": "r-5e", "version": "2"})
    story.warning("rolled back to version 1", incident={"id": "0.x", "p99_ms": 912}, rows=1200)
    story.info("traffic restored", split={"1": 100})
    log.info("unrelated")
    for line in path.read_text().splitlines():
        cloud.entries.append(as_cloud_run_parses(line))

    for flags in ([], ["--json"]):
        assert main(["logs", "--run", "r-5e", *flags]) == 0
        local = capsys.readouterr().out.splitlines()
        assert main(["logs", "--run", "r-5e", "--project", PROJECT, *flags]) == 0
        remote = capsys.readouterr().out.splitlines()
        assert len(local) == 2
        if flags:  # a Struct keeps no key order; 1200 and 1200.0 must still differ
            assert [_canonical(x) for x in remote] == [_canonical(x) for x in local]
            assert json.loads(local[0]) == next(iter(logs.read(path)))
        else:
            assert remote == local
            assert local[0].endswith(" WARNING  deploy_model [r-5e]: rolled back to version 1")


def _canonical(line: str) -> str:
    return json.dumps(json.loads(line), sort_keys=True)


def test_local_run_filter_follows_the_correlation_id(capsys, monkeypatch, tmp_path):
    """Locally too, --run finds lines that carry only the upload's correlation id."""
    monkeypatch.setenv("SALESMESH_STATE_DIR", str(tmp_path))
    log = logs.Logger("alert_handler", stream=None, path=tmp_path / "logs" / "mesh.jsonl")
    log.bind(correlation_id="c-9").warning("incident opened")
    log.bind(labels={"run_id": "r-9"}).info("run labelled")
    log.bind(correlation_id="c-8").info("another upload")
    for run in ("r-9", "c-9"):
        assert main(["logs", "--run", run]) == 0
        out = capsys.readouterr().out
        assert "incident opened" in out and "run labelled" in out
        assert "another upload" not in out


def test_limit_reached_is_said_on_stderr(cloud, capsys):
    """When --limit cuts, stderr says so; the lines shown are the newest."""
    for seconds in range(3):
        at = NOW - timedelta(seconds=seconds)
        cloud.entries.append(entry(at, json_payload={"message": f"m{seconds}"}))
    assert main(["logs", "--project", PROJECT, "--limit", "2", "--since", "1h30m"]) == 0
    captured = capsys.readouterr()
    assert [line.rsplit(": ", 1)[1] for line in captured.out.splitlines()] == ["m1", "m0"]
    assert "only the newest 2 lines" in captured.err


@pytest.mark.parametrize(
    "error",
    [
        exceptions.PermissionDenied("The caller does not have permission"),
        exceptions.NotFound("Project not found"),
        exceptions.InvalidArgument("Invalid resource name"),
    ],
)
def test_refusals_are_one_clear_line(cloud, capsys, error):
    """A refused read exits 1 with one line naming the role to grant, no traceback."""
    cloud.error = error
    assert main(["logs", "--project", PROJECT]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert f"roles/logging.viewer on project {PROJECT}" in captured.err
    assert error.message in captured.err and "Traceback" not in captured.err


def test_no_credentials_say_how_to_get_them(capsys):
    """Without application default credentials the command says how to log in."""
    with mock.patch(
        "google.auth.default", autospec=True, side_effect=DefaultCredentialsError("none found")
    ):
        assert main(["logs", "--project", PROJECT]) == 1
    assert "gcloud auth application-default login" in capsys.readouterr().err


def test_expired_credentials_say_how_to_renew_them(cloud, capsys):
    """Credentials that no longer refresh end in the same one line, not a traceback."""
    cloud.error = RefreshError("Reauthentication is needed")
    assert main(["logs", "--project", PROJECT]) == 1
    err = capsys.readouterr().err
    assert "Reauthentication is needed" in err and "application-default login" in err
    assert err.count("\n") == 1


def test_malformed_project_is_refused_before_any_call(cloud, capsys):
    """A project id that cannot exist is refused without asking Cloud Logging."""
    assert main(["logs", "--project", "Not A Project"]) == 1
    assert "'Not A Project' is not a Google Cloud project id" in capsys.readouterr().err
    assert cloud.calls == []


def test_missing_package_says_what_to_install(monkeypatch):
    """Without google-cloud-logging the error names the package to install."""
    monkeypatch.setitem(sys.modules, "google.cloud.logging", None)
    with pytest.raises(ConfigError, match=r"pip install 'google-cloud-logging>=3.10'"):
        gcp_logs.read(PROJECT, client=client())


@pytest.mark.parametrize(
    "argv",
    [
        ["logs", "--project", PROJECT, "--follow"],
        ["logs", "--since", "2h"],
        ["logs", "--limit", "5"],
        ["logs", "--project", PROJECT, "--since", "2 hours"],
    ],
)
def test_usage_errors_exit_2(cloud, capsys, argv):
    """--follow is local only, --since/--limit need --project, durations must parse."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert cloud.calls == []
    assert capsys.readouterr().err.strip()


def test_the_sdk_is_imported_only_when_cloud_logs_are_read(tmp_path):
    """Local `salesmesh logs` never imports google.cloud.logging."""
    code = (
        "import sys\n"
        "from salesmesh import cli\n"
        "import salesmesh.backends.gcp_logs\n"
        "assert cli.main(['logs']) == 0\n"
        "assert 'google.cloud.logging' not in sys.modules, 'imported'\n"
    )
    env = {"SALESMESH_STATE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
