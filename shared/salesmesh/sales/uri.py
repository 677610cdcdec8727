"""The data URI of a training run on the sales history, as the trainer's ``--data`` gets it.

``salesmesh-history://<state bucket>/<model>[/<snapshot id>][?run=<run id>&quiet=<seconds>]``

Without a snapshot id the trainer trains on whatever HEAD is when it starts, not when the run
was launched: that is what lets a burst of uploads fold into one run. ``run`` names the run
whose pending claim the trainer releases before it resolves HEAD (:mod:`.pending`); ``quiet``
is how long HEAD must stay still first, so uploads still arriving join this run. The URI
carries both because a Vertex AI job sees its command line, not the function's environment.
A scheme of its own, so nothing mistakes it for a file: ``load_sales`` refuses it by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode

from salesmesh.errors import SourceError
from salesmesh.ports import RUN_ID

SCHEME = "salesmesh-history://"
_SNAPSHOT = re.compile(r"s[0-9]{6,}-[0-9a-f]{12}")
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,62}")


@dataclass(frozen=True)
class HistoryUri:
    """Which history to train on, and how to resolve it."""

    bucket: str
    model: str
    snapshot: str | None = None
    run: str | None = None
    quiet: float = 0.0

    def __str__(self) -> str:
        path = f"{SCHEME}{self.bucket}/{self.model}"
        if self.snapshot:
            path += f"/{self.snapshot}"
        query = {}
        if self.run:
            query["run"] = self.run
        if self.quiet:
            query["quiet"] = f"{self.quiet:g}"
        return f"{path}?{urlencode(query)}" if query else path

    def pinned(self, snapshot: str) -> HistoryUri:
        """The same history at one snapshot, without the run's resolving instructions."""
        return HistoryUri(self.bucket, self.model, snapshot)

    @classmethod
    def parse(cls, text: str) -> HistoryUri:
        """The URI ``text``; SourceError saying what a history URI looks like otherwise."""
        usage = f"expected {SCHEME}BUCKET/MODEL[/SNAPSHOT][?run=RUN_ID&quiet=SECONDS]"
        if not text.startswith(SCHEME):
            raise SourceError(f"{text!r} is not a sales history URI: {usage}")
        path, _, query = text.removeprefix(SCHEME).partition("?")
        parts = path.strip("/").split("/")
        if len(parts) not in (2, 3) or not all(_NAME.fullmatch(p) for p in parts[:2]):
            raise SourceError(f"{text!r}: {usage}")
        snapshot = parts[2] if len(parts) == 3 else None
        if snapshot is not None and not _SNAPSHOT.fullmatch(snapshot):
            raise SourceError(f"{text!r}: {snapshot!r} is not a snapshot id (s000012-<12 hex>)")
        fields = {key: values[-1] for key, values in parse_qs(query).items()}
        unknown = sorted(set(fields) - {"run", "quiet"})
        if unknown:
            raise SourceError(f"{text!r}: unknown parameter(s) {unknown}; {usage}")
        run = fields.get("run")
        if run is not None and not RUN_ID.fullmatch(run):
            raise SourceError(f"{text!r}: run {run!r} is not a run id")
        try:
            quiet = float(fields.get("quiet", 0))
        except ValueError:
            quiet = -1.0
        if not 0 <= quiet <= 3600:
            raise SourceError(f"{text!r}: quiet must be seconds from 0 to 3600")
        return cls(parts[0], parts[1], snapshot, run, quiet)


def is_history(uri: str) -> bool:
    """Whether ``uri`` names a sales history rather than a file."""
    return uri.startswith(SCHEME)
