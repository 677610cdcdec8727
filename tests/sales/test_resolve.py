"""The trainer's side: a history URI resolves to HEAD (or a pinned snapshot) when it starts."""

from __future__ import annotations

import threading
import time

import pytest
from sales_helpers import entry, keyed, rows

from salesmesh.data import Contract
from salesmesh.errors import SourceError
from salesmesh.sales import HistoryStore, HistoryUri
from salesmesh.sales.pending import PendingRun
from salesmesh.sales.resolve import resolve, wait_until_still
from salesmesh.sample import generate

SAMPLE = generate(stores=2, products=2, days=60, seed=4)
CONTRACT = Contract(horizon=7)


def _uri(history: HistoryStore, **fields) -> HistoryUri:
    return HistoryUri(history.bucket, history.model, **fields)


def test_a_run_resolves_head_releases_its_claim_and_records_the_snapshot(history):
    """The run trains on HEAD as it is when it starts; its claim is gone; runs/<id> says which."""
    history.merge(entry("a"), rows(SAMPLE[SAMPLE["date"] < "2024-02-15"]), replace=False)
    pending = PendingRun(history)
    pending.acquire("r-1", "c-1")
    head = history.merge(entry("b"), rows(SAMPLE), replace=False).snapshot  # after the launch

    resolved = resolve(_uri(history, run="r-1"), history, CONTRACT)
    assert resolved.snapshot.id == head.id and resolved.loaded.report.ok
    assert keyed(resolved.loaded.frame) == keyed(SAMPLE)
    assert resolved.uri == _uri(history, snapshot=head.id)
    assert pending.holder()[0] is None
    [record] = history.runs()
    assert (record["run_id"], record["snapshot"], record["rows"]) == ("r-1", head.id, len(SAMPLE))
    identity = resolved.identity()
    assert identity["uri"] == str(resolved.uri) and identity["generation"] == head.id
    assert [u["uri"] for u in identity["snapshot"]["uploads"]] == [
        "gs://data/uploads/a#1",
        "gs://data/uploads/b#1",
    ]


def test_a_pinned_snapshot_is_trained_as_it_was_and_leaves_claims_alone(history):
    """``…/MODEL/SNAPSHOT`` trains on that snapshot even after HEAD moved on."""
    old = history.merge(entry("a"), rows(SAMPLE[SAMPLE["date"] < "2024-02-15"]), replace=False)
    history.merge(entry("b"), rows(SAMPLE), replace=False)
    PendingRun(history).acquire("r-other", "c-other")
    resolved = resolve(_uri(history, snapshot=old.snapshot.id), history, CONTRACT)
    assert resolved.snapshot.id == old.snapshot.id and resolved.snapshot.rows == 45 * 4
    assert PendingRun(history).holder()[0] == "r-other" and history.runs() == []


def test_the_whole_history_is_checked_against_the_contract(history):
    """Increments merged without the history rule are held to it once a run trains."""
    history.merge(entry("a"), rows(SAMPLE[SAMPLE["date"] < "2024-01-06"]), replace=False)
    resolved = resolve(_uri(history), history, CONTRACT)
    assert resolved.loaded.report.rules == ["history_length"]


def test_an_empty_history_is_refused_by_name(history):
    """Nothing merged yet: the trainer says so instead of training on nothing."""
    with pytest.raises(SourceError, match="is empty"):
        resolve(_uri(history), history, CONTRACT)


def test_the_trainer_waits_until_the_history_is_still(history):
    """Merges landing during the quiet period push the resolution back until they stop."""
    history.merge(entry("a"), rows(SAMPLE[SAMPLE["date"] < "2024-01-20"]), replace=False)
    later = [SAMPLE[SAMPLE["date"] < day] for day in ("2024-01-25", "2024-02-05", "2024-02-20")]

    def keep_merging():
        for i, part in enumerate(later):
            time.sleep(0.4)
            history.merge(entry(f"m{i}"), rows(part), replace=False)

    writer = threading.Thread(target=keep_merging)
    writer.start()
    waited = wait_until_still(history, quiet=1.0)
    writer.join()
    assert waited >= 1.0 + 0.4 * 3 - 0.3  # still for 1 s only after the last merge
    assert history.current().seq == 4


@pytest.mark.parametrize(
    "text",
    [
        "gs://b/m",
        "salesmesh-history://b",
        "salesmesh-history://b/m/not-a-snapshot",
        "salesmesh-history://b/m?run=R!",
        "salesmesh-history://b/m?quiet=-1",
        "salesmesh-history://b/m?color=red",
    ],
)
def test_a_malformed_history_uri_is_refused_with_its_form(text):
    """Each malformed URI fails with the reason; none is mistaken for a history."""
    with pytest.raises(SourceError):
        HistoryUri.parse(text)


def test_a_history_uri_round_trips():
    """What intake writes is what the trainer parses."""
    uri = HistoryUri("salesmesh-state", "salesmesh-demand", None, "r-0123", 2.5)
    assert str(uri) == "salesmesh-history://salesmesh-state/salesmesh-demand?run=r-0123&quiet=2.5"
    assert HistoryUri.parse(str(uri)) == uri
    pinned = uri.pinned("s000003-0123456789ab")
    assert HistoryUri.parse(str(pinned)) == pinned and pinned.run is None


def test_a_run_knows_where_the_runs_before_it_ended_their_data(history):
    """The last dates of earlier snapshots, newest first, each once, only those before the
    run's own: where a champion's forecasts start, for the gate to score them."""
    for name, end in (("a", "2024-02-01"), ("b", "2024-02-15"), ("c", "2024-02-15")):
        history.merge(entry(name), rows(SAMPLE[SAMPLE["date"] < end]), replace=False)
    head = history.merge(entry("d"), rows(SAMPLE), replace=False).snapshot
    resolved = resolve(_uri(history), history, CONTRACT)
    assert resolved.snapshot.id == head.id
    assert resolved.earlier_ends == ("2024-02-14", "2024-01-31")
    first = history.lineage()[-1]
    assert resolve(_uri(history, snapshot=first.id), history, CONTRACT).earlier_ends == ()
