"""Which file column plays which part: aliases, the configured mapping, and what is left over.

Names are compared after folding case, accents, whitespace and punctuation, so 'Preço Unit.'
and 'preco_unit' are the same name. The configured mapping wins over the aliases.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from salesmesh.data.contract import CANONICAL
from salesmesh.data.report import ContractViolationError, Finding

_ALIAS_LISTS: dict[str, tuple[str, ...]] = {
    "date": ("date", "day", "data", "dia", "fecha", "ds", "week", "month", "quarter", "period"),
    "store_id": (
        "store", "store_id", "shop", "shop_id", "location", "location_id", "loja", "filial",
        "tienda", "store_nbr", "store_code",
    ),
    "product_id": (
        "product", "product_id", "item", "item_id", "sku", "sku_id", "article", "article_id",
        "produto", "artigo", "product_code", "item_nbr",
    ),
    "sales": (
        "sales", "qty", "quantity", "units", "units_sold", "demand", "vendas", "quantidade",
        "qtd", "y", "unit_sales", "qty_sold", "quantity_sold",
    ),
    "price": ("price", "unit_price", "preco", "preco_unitario"),
    "promo": ("promo", "promotion", "on_promo", "promocao", "on_promotion"),
}  # fmt: skip
#: Folded alias -> canonical name.
ALIASES: Mapping[str, str] = MappingProxyType(
    {alias: canonical for canonical, names in _ALIAS_LISTS.items() for alias in names}
)
REQUIRED = ("date", "sales")
#: Stand-in id when a file has no store or no product column: it is one series along that axis.
SINGLE_ID = "all"


def fold(name: str) -> str:
    """'  Preço Unit. ' -> 'preco_unit': the form names are compared in."""
    decomposed = unicodedata.normalize("NFKD", name.lstrip("\ufeff"))
    plain = "".join(char for char in decomposed if not unicodedata.combining(char))
    return re.sub(r"[^0-9a-z]+", "_", plain.lower()).strip("_")


@dataclass(frozen=True)
class ColumnPlan:
    """Output name -> file position; `source` keeps the file's own name for messages."""

    roles: dict[str, int]
    regressors: dict[str, int]
    source: dict[str, str]
    explicit: frozenset[str] = frozenset()  # regressors named by the mapping: must be numeric
    warnings: list[Finding] = field(default_factory=list)

    def label(self, name: str) -> str:
        """ "'Vendas' (sales)" or "'sales'": how a message names a column."""
        original = self.source.get(name, name)
        return f"{original!r}" if fold(original) == name else f"{original!r} ({name})"


def plan_columns(header: Sequence[str], mapping: Mapping[str, str]) -> ColumnPlan:
    """Give every header column a role; raises ContractViolationError if a role is missing or
    claimed twice."""
    configured = {fold(source): target.strip() for source, target in mapping.items()}
    claims: dict[str, list[int]] = {}
    leftovers: list[int] = []
    explicit: set[str] = set()
    for position, name in enumerate(header):
        target = configured.get(fold(name))
        if target is not None and fold(target) in CANONICAL:
            target = fold(target)
        elif target is not None:
            explicit.add(target)
        else:
            target = ALIASES.get(fold(name))
        if target is None:
            leftovers.append(position)
        else:
            claims.setdefault(target, []).append(position)
    _refuse_clashes(header, claims)
    roles = {target: spots[0] for target, spots in claims.items() if target in CANONICAL}
    regressors = {target: spots[0] for target, spots in claims.items() if target not in CANONICAL}
    for position in leftovers:
        name = _unique_name(fold(header[position]) or f"column_{position + 1}", regressors)
        regressors[name] = position
    _refuse_missing(header, roles)
    source = {target: header[spot] for target, spot in (roles | regressors).items()}
    warnings = _absent_ids(roles) + _unused_mapping(header, mapping)
    return ColumnPlan(roles, regressors, source, frozenset(explicit), warnings)


def _refuse_clashes(header: Sequence[str], claims: Mapping[str, list[int]]) -> None:
    clashes = {target: spots for target, spots in claims.items() if len(spots) > 1}
    if not clashes:
        return
    parts = [
        " and ".join(repr(header[spot]) for spot in spots)
        + f" {'both' if len(spots) == 2 else 'all'} map to {target}"
        for target, spots in clashes.items()
    ]
    examples: list[dict[str, object]] = [
        {"column": header[spot], "value": target}
        for target, spots in clashes.items()
        for spot in spots
    ]
    raise ContractViolationError(
        "duplicate_columns",
        f"{'; '.join(parts)}: keep one, or map the others to another name with "
        "Contract.mapping / --map",
        examples[:5],
    )


def _refuse_missing(header: Sequence[str], roles: Mapping[str, int]) -> None:
    missing = [name for name in REQUIRED if name not in roles]
    if not missing:
        return
    accepted = "; ".join(f"{name}: {', '.join(_ALIAS_LISTS[name])}" for name in missing)
    found = ", ".join(repr(name) for name in header)
    hint = " (only one column: is the delimiter one of , ; tab |?)" if len(header) == 1 else ""
    raise ContractViolationError(
        "required_columns",
        f"missing required column{'s' if len(missing) > 1 else ''} {', '.join(missing)}; "
        f"found columns {found}{hint}. Accepted names are {accepted}; "
        "or map yours with Contract.mapping / --map",
        [{"column": name} for name in header[:5]],
    )


def _unique_name(name: str, taken: Mapping[str, int]) -> str:
    candidate, suffix = name, 2
    while candidate in taken or candidate in CANONICAL:
        candidate, suffix = f"{name}_{suffix}", suffix + 1
    return candidate


def _absent_ids(roles: Mapping[str, int]) -> list[Finding]:
    found = []
    for name, rule, noun in (
        ("store_id", "single_store", "store"),
        ("product_id", "single_product", "product"),
    ):
        if name not in roles:
            found.append(
                Finding(
                    rule,
                    f"no {noun} column (accepted: {', '.join(_ALIAS_LISTS[name])}); every row "
                    f"is treated as {noun} {SINGLE_ID!r}",
                )
            )
    return found


def _unused_mapping(header: Sequence[str], mapping: Mapping[str, str]) -> list[Finding]:
    present = {fold(name) for name in header}
    unused = [source for source in mapping if fold(source) not in present]
    if not unused:
        return []
    return [
        Finding(
            "mapping_unused",
            f"Contract.mapping names column{'s' if len(unused) > 1 else ''} "
            f"{', '.join(repr(name) for name in unused)} that the file does not have",
        )
    ]
