"""`salesmesh data`: snapshots newest first, their uploads, HEAD, and the runs on each."""

from __future__ import annotations

import json

from sales_helpers import entry, rows

from salesmesh import cli
from salesmesh.data import Contract
from salesmesh.sales import HistoryUri
from salesmesh.sales.pending import PendingRun
from salesmesh.sales.resolve import resolve
from salesmesh.sample import generate

SAMPLE = generate(stores=2, products=2, days=60, seed=4)


def _history(history):
    first = history.merge(entry("v1"), rows(SAMPLE[SAMPLE["date"] < "2024-02-20"]), replace=False)
    resolve(HistoryUri(history.bucket, history.model, run="r-one"), history, Contract(horizon=7))
    fixed = SAMPLE[SAMPLE["date"] >= "2024-02-19"].assign(sales=3.0)
    second = history.merge(entry("v2"), rows(fixed), replace=False)
    PendingRun(history).acquire("r-two", "c-v2-1")
    return first.snapshot, second.snapshot


def test_data_json_lists_snapshots_uploads_head_and_runs(history, settings, monkeypatch, capsys):
    """--json: newest first, HEAD marked, each snapshot's uploads with rows, runs per snapshot."""
    first, second = _history(history)
    monkeypatch.setenv("SALESMESH_STATE_BUCKET", history.bucket)
    monkeypatch.setenv("SALESMESH_STATE_DIR", str(settings.state_dir))
    assert cli.main(["data", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["head"] == second.id and shown["pending_run"] == "r-two"
    assert [s["id"] for s in shown["snapshots"]] == [second.id, first.id]
    assert [s["head"] for s in shown["snapshots"]] == [True, False]
    assert [s["runs"] for s in shown["snapshots"]] == [[], ["r-one"]]
    newest = shown["snapshots"][0]
    assert [(u["uri"], u["rows"]) for u in newest["uploads"]] == [
        ("gs://data/uploads/v1#1", 50 * 4),
        ("gs://data/uploads/v2#1", 11 * 4),
    ]
    assert (newest["added"], newest["corrected"], newest["rows"]) == (10 * 4, 4, 60 * 4)
    assert "seen" not in newest


def test_data_text_and_limit(history, settings, monkeypatch, capsys):
    """The text form names HEAD, the uploads and the runs; --limit 1 says older ones exist."""
    _, second = _history(history)
    monkeypatch.setenv("SALESMESH_STATE_BUCKET", history.bucket)
    monkeypatch.setenv("SALESMESH_STATE_DIR", str(settings.state_dir))
    assert cli.main(["data", "--limit", "1"]) == 0
    text = capsys.readouterr().out
    assert f"HEAD {second.id}" in text and "240 rows, 4 series" in text
    assert "merged gs://data/uploads/v2#1: 44 rows, 40 added, 4 corrected" in text
    assert "gs://data/uploads/v1#1  200 rows" in text
    assert "older snapshots not shown" in text
    assert "pending: run r-two" in text


def test_data_on_an_empty_history_says_how_to_start_one(bucket, settings, monkeypatch, capsys):
    """No upload yet: the command says so and exits 0."""
    monkeypatch.setenv("SALESMESH_STATE_BUCKET", bucket.name)
    monkeypatch.setenv("SALESMESH_STATE_DIR", str(settings.state_dir))
    assert cli.main(["data"]) == 0
    assert "empty; upload a sales file" in capsys.readouterr().out
