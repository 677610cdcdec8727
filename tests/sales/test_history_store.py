"""The sales history on the real storage emulator: merges, replaces, races, immutability."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
from sales_helpers import entry, keyed, rows

from salesmesh.data.source import storage_client
from salesmesh.errors import SourceError
from salesmesh.sales import HistoryStore, open_history
from salesmesh.sample import generate

SAMPLE = generate(stores=2, products=3, days=60, seed=3)


def test_a_merge_counts_rows_added_and_corrected(history: HistoryStore):
    """Later values win per (store, product, date); the report counts added and corrected."""
    first = history.merge(entry("a"), rows(SAMPLE[SAMPLE["date"] < "2024-02-01"]), replace=False)
    later = SAMPLE[SAMPLE["date"] >= "2024-01-25"].copy()
    fix = later["date"] < "2024-01-27"  # two overlapping days: some corrected, some not
    later.loc[fix & (later["store_id"] == "S01"), "sales"] += 5
    second = history.merge(entry("b"), rows(later), replace=False)

    assert first.action == second.action == "merged"
    assert (first.snapshot.added, first.snapshot.corrected) == (31 * 6, 0)
    s = second.snapshot
    assert (s.upload.rows, s.added, s.corrected, s.upload.unchanged) == (36 * 6, 29 * 6, 6, 36)
    assert (s.rows, s.series, s.date_min, s.date_max) == (60 * 6, 6, "2024-01-01", "2024-02-29")
    assert s.parent == first.snapshot.id and s.seq == 2
    assert [u.uri for u in s.uploads] == [first.snapshot.upload.uri, s.upload.uri]
    expected = keyed(SAMPLE) | keyed(later)
    assert keyed(history.rows(history.current())) == expected


def test_a_redelivered_upload_merges_nothing(history: HistoryStore):
    """The same upload generation twice: the second finds it in HEAD's lineage."""
    once = history.merge(entry("a"), rows(SAMPLE), replace=False)
    history.merge(entry("b"), rows(SAMPLE.head(6)), replace=False)
    again = history.merge(entry("a"), rows(SAMPLE), replace=False)
    assert again.action == "duplicate" and again.snapshot.seq == 2
    assert [u.correlation_id for u in history.current().uploads] == ["c-a-1", "c-b-1"]
    assert once.snapshot.id != again.snapshot.id


def test_eight_concurrent_merges_all_land_once(history: HistoryStore, settings, bucket):
    """Eight one-store-product uploads at once: every row ends in HEAD, each upload once."""
    parts = [part for _, part in SAMPLE.groupby(["store_id", "product_id"])]
    parts += [SAMPLE[SAMPLE["date"] < "2024-01-10"].assign(sales=1.0)]  # overlaps the others
    parts += [SAMPLE[(SAMPLE["store_id"] == "S02") & (SAMPLE["date"] > "2024-02-20")]]
    frames = [rows(part) for part in parts]

    def merge(i: int):
        # each thread its own store and client, as separate function instances would have
        store = open_history(settings, storage_client)
        return store.merge(entry(f"u{i}"), frames[i], replace=False)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(merge, range(len(frames))))
    head = history.current()
    assert head.seq == len(frames) and all(r.action == "merged" for r in results)
    assert sorted(u.correlation_id for u in head.uploads) == sorted(
        f"c-u{i}-1" for i in range(len(frames))
    )
    assert keyed(history.rows(head)).keys() == keyed(SAMPLE).keys()
    assert sum(r.attempts for r in results) > len(frames)  # the race did happen and was retried


def test_a_replace_upload_drops_the_rows_it_lacks(history: HistoryStore):
    """replace=True makes the upload the whole history; a late redelivery of a replaced
    upload is still recognised and merges nothing back."""
    history.merge(entry("all"), rows(SAMPLE), replace=False)
    kept = SAMPLE[SAMPLE["store_id"] == "S01"]
    replaced = history.merge(entry("only-s01"), rows(kept), replace=True)
    s = replaced.snapshot
    assert (s.mode, s.rows, s.series, s.added) == ("replace", len(kept), 3, len(kept))
    assert [u.correlation_id for u in s.uploads] == ["c-only-s01-1"]
    assert keyed(history.rows(s)) == keyed(kept)
    late = history.merge(entry("all"), rows(SAMPLE), replace=False)
    assert late.action == "duplicate" and history.current().rows == len(kept)


def test_a_full_reexport_and_a_one_store_daily_increment(history: HistoryStore):
    """A re-export of everything with one more day adds that day and corrects nothing; a
    one-store increment of one day adds that store's rows and leaves the other store alone."""
    history.merge(entry("v1"), rows(SAMPLE[SAMPLE["date"] < "2024-02-28"]), replace=False)
    reexport = history.merge(
        entry("v2"), rows(SAMPLE[SAMPLE["date"] < "2024-02-29"]), replace=False
    ).snapshot
    assert (reexport.added, reexport.corrected, reexport.upload.unchanged) == (6, 0, 58 * 6)
    day = SAMPLE[(SAMPLE["date"] == "2024-02-29") & (SAMPLE["store_id"] == "S02")]
    increment = history.merge(entry("s02-day"), rows(day), replace=False).snapshot
    assert (increment.added, increment.corrected, increment.rows) == (3, 0, 59 * 6 + 3)
    assert increment.date_max == "2024-02-29" and increment.series == 6
    held = history.rows(increment)
    assert set(held[held["date"] == "2024-02-29"]["store_id"]) == {"S02"}


def test_snapshots_are_immutable_and_checked_on_read(history: HistoryStore, bucket):
    """A retried merge reuses the stored snapshot instead of rewriting it; an altered
    Parquet file is refused on read, naming what to do."""
    first = history.merge(entry("a"), rows(SAMPLE), replace=False).snapshot
    name = f"sales/{history.model}/snapshots/{first.id}.parquet"
    generation = bucket.get_blob(name).generation
    # the same merge again (a crash after writing the snapshot, before HEAD moved): same id
    history.head.delete(history.head.read().generation)
    again = history.merge(entry("a"), rows(SAMPLE), replace=False).snapshot
    assert again.id == first.id and again.sha256 == first.sha256
    assert bucket.get_blob(name).generation == generation  # not rewritten
    manifest = json.loads(bucket.blob(name.replace(".parquet", ".json")).download_as_bytes())
    assert manifest["sha256"] == first.sha256 and manifest["rows"] == len(SAMPLE)

    altered = SAMPLE.assign(sales=SAMPLE["sales"] + 1)
    from salesmesh.sales.snapshot import encode

    bucket.blob(name).upload_from_string(encode(rows(altered)))
    with pytest.raises(SourceError, match="altered or damaged"):
        history.rows(history.current())
    with pytest.raises(SourceError, match="altered or damaged"):
        history.merge(entry("b"), rows(SAMPLE.head(3)), replace=False)


def test_merge_keeps_regressor_columns_of_both(history: HistoryStore):
    """An upload without price keeps the history's prices for the keys it does not touch."""
    history.merge(entry("a"), rows(SAMPLE), replace=False)
    newer = SAMPLE[SAMPLE["date"] == "2024-02-29"].drop(columns=["price"]).assign(sales=0.0)
    s = history.merge(entry("b"), rows(newer), replace=False).snapshot
    assert s.corrected == 6 and "price" in s.columns
    held = history.rows(s)
    old = held[held["date"] < "2024-02-29"]
    assert old["price"].notna().all()
    assert held[held["date"] == "2024-02-29"]["price"].isna().all()
    assert pd.api.types.is_datetime64_any_dtype(held["date"])
