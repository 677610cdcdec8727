"""The sales history: every accepted upload merged into one versioned history per model.

An upload is a batch of rows, not the whole world. ``train_trigger`` merges each accepted
upload into the model's history (:mod:`.store`: rows keyed by store, product and date, a later
upload's value wins), which makes an immutable snapshot (:mod:`.snapshot`); training runs on a
snapshot, never on a lone upload (:mod:`.resolve`), and a burst of uploads folds into one
pending run (:mod:`.pending`). An upload under the replace prefix replaces the whole history.
``salesmesh data`` lists it (:mod:`.listing`).
"""

from salesmesh.sales.merge import MergeCounts, merge_rows
from salesmesh.sales.snapshot import Snapshot, UploadEntry
from salesmesh.sales.store import HistoryStore, Merged, open_history
from salesmesh.sales.uri import HistoryUri, is_history

__all__ = [
    "HistoryStore",
    "HistoryUri",
    "MergeCounts",
    "Merged",
    "Snapshot",
    "UploadEntry",
    "is_history",
    "merge_rows",
    "open_history",
]
