"""Structured log lines in Cloud Logging's JSON shape, appended safely and read back."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from salesmesh import logs
from salesmesh.logs import LABELS, Logger


def lines_of(stream: io.StringIO) -> list[dict]:
    """Every line written to ``stream``, parsed."""
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_line_has_cloud_logging_shape():
    """One JSON object per line: severity, message, RFC 3339 UTC time, labels, component."""
    out = io.StringIO()
    Logger("train_trigger", stream=out, labels={"bucket": "salesmesh-data"}).info("accepted")
    assert out.getvalue().endswith("}\n") and out.getvalue().count("\n") == 1
    (record,) = lines_of(out)
    stamp = datetime.strptime(record.pop("time"), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 5
    assert record == {
        "severity": "INFO",
        "message": "accepted",
        "component": "train_trigger",
        LABELS: {"bucket": "salesmesh-data"},
    }
    assert not any(key.startswith("logging.googleapis.com/trace") for key in record)


@pytest.mark.parametrize("severity", ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
def test_each_method_writes_its_severity(severity):
    """debug/info/warning/error/critical write DEBUG/INFO/WARNING/ERROR/CRITICAL."""
    log = logs.capture()
    getattr(log, severity.lower())("m")
    assert log.records[0]["severity"] == severity


def test_extra_fields_get_their_own_keys():
    """Keyword fields become top-level keys with their JSON values."""
    log = logs.capture()
    log.info("run launched", run_id="r-1", attempt=2, metrics={"mae": 1.5}, tags=["a"])
    record = log.records[0]
    assert (record["run_id"], record["attempt"], record["metrics"], record["tags"]) == (
        "r-1",
        2,
        {"mae": 1.5},
        ["a"],
    )


def test_bind_adds_correlation_id_labels_and_fields_to_every_line():
    """A bound logger stamps its correlation id, labels and fields; the original is unchanged."""
    log = logs.capture("train_trigger")
    bound = log.bind(correlation_id="c-1", labels={"run_id": "r-1"}, source="gs://b/x.csv")
    bound.info("one")
    bound.warning("two")
    log.info("unbound")
    assert [r.get("correlation_id") for r in log.records] == ["c-1", "c-1", None]
    assert [r.get(LABELS) for r in log.records] == [{"run_id": "r-1"}, {"run_id": "r-1"}, None]
    assert [r.get("source") for r in log.records] == ["gs://b/x.csv", "gs://b/x.csv", None]


def test_nested_binds_merge_and_later_values_win():
    """Binding twice keeps earlier labels and fields unless the later bind overrides them."""
    log = logs.capture().bind(correlation_id="c-1", labels={"a": "1", "b": "1"}, x=1)
    log.bind(labels={"b": "2"}, y=2).info("m")
    record = log.records[0]
    assert (record["correlation_id"], record[LABELS], record["x"], record["y"]) == (
        "c-1",
        {"a": "1", "b": "2"},
        1,
        2,
    )


def test_correlation_id_given_per_call_overrides_the_bound_one():
    """correlation_id passed to a call is the line's correlation id, not a stray field."""
    log = logs.capture().bind(correlation_id="c-1")
    log.info("m", correlation_id="c-2")
    assert log.records[0]["correlation_id"] == "c-2"
    assert "correlation_id_" not in log.records[0]


def test_fields_clashing_with_core_keys_are_renamed_not_lost():
    """A field named like a core key (severity, message, ...) keeps the core value; it gets '_'."""
    log = logs.capture("c")
    log.error("m", severity="low", message="x", time=3, component="y")
    record = log.records[0]
    assert (record["severity"], record["message"], record["component"]) == ("ERROR", "m", "c")
    assert [record[k] for k in ("severity_", "message_", "time_", "component_")] == [
        "low",
        "x",
        3,
        "y",
    ]


def test_label_values_are_coerced_to_strings():
    """Cloud Logging labels are str -> str, so other values are stringified."""
    log = logs.capture().bind(labels={"horizon": 28, "ok": True})  # type: ignore[dict-item]
    log.info("m")
    assert log.records[0][LABELS] == {"horizon": "28", "ok": "True"}


class Unprintable:
    """An object whose __str__ raises."""

    def __str__(self) -> str:
        raise RuntimeError("no")


def test_values_that_are_not_json_are_stringified_never_raised():
    """Paths, dates, sets, bytes, NaN, non-str keys, cycles and broken __str__ all log."""
    looped: list[object] = []
    looped.append(looped)
    log = logs.capture()
    log.info(
        "m",
        path=Path("/tmp/x.csv"),
        when=datetime(2026, 11, 3, 9, 14, tzinfo=UTC),
        day=date(2026, 11, 3),
        ids={"b", "a"},
        raw=b"\x00",
        nan=float("nan"),
        inf=float("-inf"),
        keyed={1: "one", (2, 3): "pair"},
        broken=Unprintable(),
        loop=looped,
    )
    record = log.records[0]
    assert record["path"] == "/tmp/x.csv"
    assert record["when"] == "2026-11-03T09:14:00+00:00"
    assert record["day"] == "2026-11-03"
    assert record["ids"] == ["a", "b"]
    assert record["raw"] == "b'\\x00'"
    assert (record["nan"], record["inf"]) == ("nan", "-inf")
    assert record["keyed"] == {"1": "one", "(2, 3)": "pair"}
    assert record["broken"] == "<unprintable Unprintable>"
    assert isinstance(record["loop"], list)  # cut off at a fixed depth, not a RecursionError


def test_lines_are_appended_to_a_file_in_new_folders(tmp_path):
    """With a path, lines are appended there (parents created), and to the stream as well."""
    path = tmp_path / "state" / "logs" / "mesh.jsonl"
    out = io.StringIO()
    Logger("a", stream=out, path=path).info("first")
    Logger("b", stream=None, path=path).info("second")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["component"], r["message"]) for r in records] == [("a", "first"), ("b", "second")]
    assert [r["message"] for r in lines_of(out)] == ["first"]


def test_default_stream_is_stdout_at_write_time(capsys):
    """The default stream is whatever sys.stdout is when the line is written."""
    Logger("c").info("to stdout")
    assert json.loads(capsys.readouterr().out)["message"] == "to stdout"


def test_unwritable_path_is_reported_not_raised(tmp_path, capsys):
    """A log file that cannot be written does not break the caller; stderr says why."""
    Logger("c", stream=None, path=tmp_path).info("m")  # a directory, not a file
    assert capsys.readouterr().err.startswith("salesmesh.logs: could not write a log line: ")


def test_closed_stream_is_reported_not_raised(capsys):
    """Writing to a closed stream is reported on stderr, not raised."""
    out = io.StringIO()
    out.close()
    Logger("c", stream=out).info("m")
    assert "could not write a log line" in capsys.readouterr().err


def test_capture_messages_filter_by_severity():
    """The capturing logger lists messages, all or of one severity."""
    log = logs.capture()
    log.info("a")
    log.error("b")
    log.bind(correlation_id="c-1").error("c")  # a bound capture shares its records
    assert log.messages() == ["a", "b", "c"]
    assert log.messages("ERROR") == ["b", "c"]


def test_read_filters_by_correlation_and_run_id(tmp_path):
    """read() yields the lines of one correlation id or one run id, in file order."""
    path = tmp_path / "mesh.jsonl"
    log = Logger("t", stream=None, path=path)
    log.info("upload", correlation_id="c-1")
    log.info("other upload", correlation_id="c-2")
    log.bind(correlation_id="c-1", run_id="r-1").info("launched")
    log.bind(correlation_id="c-1", labels={"run_id": "r-1"}).info("labelled")
    assert [r["message"] for r in logs.read(path)] == [
        "upload",
        "other upload",
        "launched",
        "labelled",
    ]
    assert [r["message"] for r in logs.read(path, correlation_id="c-1")] == [
        "upload",
        "launched",
        "labelled",
    ]
    assert [r["message"] for r in logs.read(path, run_id="r-1")] == ["launched", "labelled"]
    assert list(logs.read(path, correlation_id="c-2", run_id="r-1")) == []


def test_read_skips_and_counts_malformed_lines(tmp_path):
    """Torn lines, non-objects and bad UTF-8 are skipped and counted; blank lines are neither."""
    path = tmp_path / "mesh.jsonl"
    good = json.dumps({"severity": "INFO", "message": "ok"})
    path.write_bytes(
        b"\n".join([good.encode(), b'{"severity": "IN', b"[1, 2]", b"\xff\xfe", b"", good.encode()])
    )
    lines = logs.read(path)
    assert [r["message"] for r in lines] == ["ok", "ok"]
    assert lines.malformed == 3


def test_read_of_a_missing_file_is_empty(tmp_path):
    """Before anything has logged there is nothing to read, not an error."""
    lines = logs.read(tmp_path / "nothing.jsonl")
    assert (list(lines), lines.malformed) == ([], 0)


WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from salesmesh.logs import Logger

    path, go, writer = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    log = Logger("writer", stream=None, path=path).bind(correlation_id=writer)
    while not go.exists():  # start together, so the appends really overlap
        time.sleep(0.001)
    for seq in range(500):
        log.info("line", seq=seq, padding=writer * 4000)
    """
)


def test_concurrent_appends_from_two_processes_stay_whole_lines(tmp_path):
    """Two processes appending 500 ~4 KB lines each to one file leave 1000 whole lines."""
    path, go = tmp_path / "logs" / "mesh.jsonl", tmp_path / "go"
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(go), name])
        for name in ("a", "b")
    ]
    go.touch()
    assert [w.wait(timeout=60) for w in writers] == [0, 0]
    lines = logs.read(path)
    records = list(lines)
    assert lines.malformed == 0
    assert len(path.read_bytes().splitlines()) == 1000
    for name in ("a", "b"):
        mine = [r for r in records if r["correlation_id"] == name]
        assert [r["seq"] for r in mine] == list(range(500))
        assert all(r["padding"] == name * 4000 for r in mine)
