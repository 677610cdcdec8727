"""What a sales file must satisfy: the canonical columns and the limits a caller can tune."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

GiB = 1024**3

#: The columns every normalised frame starts with, in this order.
KEY_COLUMNS = ("date", "store_id", "product_id")
TARGET = "sales"
#: Regressors with their own rules.
PRICE = "price"
PROMO = "promo"
CANONICAL = (*KEY_COLUMNS, TARGET, PRICE, PROMO)
#: Regressors the model may read on the dates it forecasts, because a planner sets them ahead.
#: Any other numeric column becomes one only when declared (``Contract.regressors``,
#: ``--regressor NAME``, ``SALESMESH_REGRESSORS``); undeclared ones are ignored, since a value
#: of the forecast date that nobody knows in advance (revenue, stock) leaks the answer.
KNOWN_IN_ADVANCE = (PRICE, PROMO)

#: Periods per season by frequency family; used to ask for enough history.
SEASON_BY_FAMILY: Mapping[str, int] = MappingProxyType({"D": 7, "W": 4, "M": 12, "Q": 4})

#: Periods a series may stay silent (no rows up to the file's last date) and still be forecast:
#: a season of the year, 91 days, in each frequency. Silent for longer, it is inactive and not
#: forecast; silent for up to this, it ended recently and is forecast from its real history.
INACTIVE_AFTER: Mapping[str, int] = MappingProxyType(
    {"D": 91, "B": 65, "W": 13, "M": 3, "Q": 1, "Y": 1}
)


def inactive_after(family: str) -> int:
    """Silent periods after which a series of frequency ``family`` (D, W, M ...) is inactive."""
    return INACTIVE_AFTER.get(family[:1].upper(), INACTIVE_AFTER["D"])


def _empty_mapping() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True)
class Contract:
    """How to read a sales file and how much of it to accept.

    `mapping` maps a column name in the file (matched case-, accent- and whitespace-insensitively)
    to a canonical name (date, store_id, product_id, sales, price, promo) or to any other name,
    which makes that column a numeric regressor. It overrides the built-in aliases.

    `regressors` declares extra columns (by file or mapped name) as known in advance, on top of
    KNOWN_IN_ADVANCE: the forecaster reads them on the forecast dates. `horizon` is in periods
    of the file's frequency. `require_history` False skips the history length rule: for an
    increment merged into a sales history, whose merged whole is checked when a run trains on
    it. `date_format` forces a strptime format
    instead of detection. `max_bytes` bounds the stored object (checked from metadata before
    reading), `max_decompressed_bytes` the gunzipped content (checked while inflating),
    `max_rows` the data rows and `max_columns` the header width.
    """

    # Excluded from the hash because a mapping is not hashable; equality still compares it.
    mapping: Mapping[str, str] = field(default_factory=_empty_mapping, hash=False)
    horizon: int = 28
    date_format: str | None = None
    max_bytes: int = 2 * GiB
    max_decompressed_bytes: int = 4 * GiB
    max_rows: int = 20_000_000
    max_columns: int = 200
    require_history: bool = True
    regressors: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Programming errors, not data problems: fail loudly at construction.
        if self.horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {self.horizon}")
        for name in ("max_bytes", "max_decompressed_bytes", "max_rows", "max_columns"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        # A frozen dataclass should not share a caller's mutable dict.
        object.__setattr__(self, "mapping", MappingProxyType(dict(self.mapping)))
        object.__setattr__(self, "regressors", tuple(self.regressors))
        reserved = [
            name for name in self.regressors if name.strip().lower() in (*KEY_COLUMNS, TARGET)
        ]
        if reserved or any(not name.strip() for name in self.regressors):
            raise ValueError(
                "declared regressors must name extra columns, not "
                f"{', '.join((*KEY_COLUMNS, TARGET))}; got {list(self.regressors)}"
            )

    @property
    def known_in_advance(self) -> tuple[str, ...]:
        """Every regressor name the forecaster may read on a forecast date, defaults first."""
        extra = [name.strip() for name in self.regressors if name.strip() not in KNOWN_IN_ADVANCE]
        return (*KNOWN_IN_ADVANCE, *dict.fromkeys(extra))

    def history_needed(self, family: str) -> int:
        """Periods the longest series needs so a backtest of `horizon` periods is meaningful."""
        season = SEASON_BY_FAMILY.get(family, 1)
        return max(2 * self.horizon, self.horizon + 2 * season)


def parse_mapping(pairs: Iterable[str]) -> dict[str, str]:
    """``["Qtd Vendida=sales", ...]`` (command-line ``--map`` values) as a mapping.

    Raises ``ValueError`` naming the first pair without a ``SOURCE=TARGET`` shape.
    """
    mapping: dict[str, str] = {}
    for pair in pairs:
        source, sep, target = pair.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise ValueError(
                f"--map expects SOURCE=TARGET (e.g. 'Qtd Vendida=sales'), got {pair!r}"
            )
        mapping[source.strip()] = target.strip()
    return mapping
