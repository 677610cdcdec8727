"""What a function package imports, and whether its requirements.txt covers it.

Starting at the package's ``main.py``, :func:`closure` reads every module the package itself
provides (``salesmesh`` and anything beside ``main.py``) with :mod:`ast`, following imports to
other modules of the package. It counts every import wherever it stands (module level, inside a
function, in a ``try``), ``importlib.import_module("literal")`` and ``__import__("literal")``.
A computed ``import_module(name)`` is followed through the ``"module:attr"`` strings of the
module that makes it (``salesmesh.backends``' registry); a computed import in a module without
such strings is reported, because nothing could say what it loads. Modules the package provides
but never reaches do not count: a function pays only for what it can import.

Everything reached that is neither in the package nor in the standard library is third-party.
:func:`missing_requirements` maps each such module to the installed distribution that provides
it (``importlib.metadata.packages_distributions()`` narrows by top-level name, the candidates'
file lists decide namespace packages such as ``google.cloud``) and reports those the package's
``requirements.txt`` does not pin. A module no installed distribution provides is reported too.
"""

from __future__ import annotations

import ast
import functools
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

ENTRY = "main.py"
REQUIREMENTS = "requirements.txt"
# name[extras]==version [; marker]: the only line shape a package's requirements may have
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([^\s;]+)\s*(;.*)?$")
_REGISTRY_ENTRY = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
_IMPORTERS = ("import_module", "__import__")


@dataclass(frozen=True)
class ImportSite:
    """One import of a third-party module: ``candidates`` is what it may load, most specific
    first (``from google.cloud import storage`` may load ``google.cloud.storage``)."""

    statement: str
    candidates: tuple[str, ...]
    file: str
    line: int

    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class Closure:
    """The package's modules reached from main.py, the third-party imports they make, and
    what the analysis could not follow."""

    local: dict[str, Path] = field(default_factory=dict)
    external: list[ImportSite] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(package: Path, entry: str = ENTRY) -> Closure:
    """Every module ``package/entry`` can import, as seen by :mod:`ast` (see the module doc)."""
    found = Closure()
    pending = [(Path(entry).stem, package / entry)]
    while pending:
        name, path = pending.pop()
        if name in found.local:
            continue
        found.local[name] = path
        relative = path.relative_to(package).as_posix()
        for site in _imports(path, name, relative, found.problems):
            top = site.candidates[-1].split(".")[0]
            if _module_file(package, [top]) is not None:  # first on sys.path: it shadows all
                chain = _local_chain(package, site)
                if not chain:
                    found.problems.append(
                        f"{site.where()}: `{site.statement}` names a module the package lacks"
                    )
                pending.extend(chain)
            elif top not in sys.stdlib_module_names:
                found.external.append(site)
    found.external.sort(key=lambda site: (site.file, site.line, site.statement))
    return found


def _local_chain(package: Path, site: ImportSite) -> list[tuple[str, Path]]:
    """The package's modules ``site`` runs: its most specific candidate that is a module, and
    that module's parents (importing ``a.b`` runs ``a/__init__.py`` first)."""
    for candidate in site.candidates:
        parts = candidate.split(".")
        if _module_file(package, parts) is not None:
            prefixes = (parts[:i] for i in range(1, len(parts) + 1))
            return [
                (".".join(prefix), path)
                for prefix in prefixes
                if (path := _module_file(package, prefix)) is not None
            ]
    return []


def _module_file(package: Path, parts: list[str]) -> Path | None:
    base = package.joinpath(*parts)
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    return None


def _imports(path: Path, name: str, relative: str, problems: list[str]) -> Iterator[ImportSite]:
    """Every import ``path`` (module ``name``) makes, anywhere in it."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    parent = name if is_package else name.rpartition(".")[0]
    computed: list[int] = []
    registry: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield ImportSite(f"import {alias.name}", (alias.name,), relative, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, parent)
            if base == "__future__":
                continue
            names = tuple(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
            statement = f"from {'.' * node.level}{node.module or ''} import " + ", ".join(
                alias.name for alias in node.names
            )
            for candidate in names or (base,):
                yield ImportSite(statement, (candidate, base), relative, node.lineno)
        elif isinstance(node, ast.Call) and _importer(node.func):
            target = node.args[0] if node.args else None
            if isinstance(target, ast.Constant) and isinstance(target.value, str):
                literal = target.value
                if literal.startswith("."):
                    computed.append(node.lineno)  # relative to a runtime package argument
                    continue
                statement = f"{_importer(node.func)}({literal!r})"
                yield ImportSite(statement, (literal,), relative, node.lineno)
            else:
                computed.append(node.lineno)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and _REGISTRY_ENTRY.match(node.value)
        ):
            registry.append((node.value, node.lineno))
    if computed and not registry:
        problems.extend(
            f"{relative}:{line}: an import of a computed name, which this check cannot follow; "
            "import the module literally, or name every target as a 'module:attr' string in "
            "this module"
            for line in computed
        )
    if computed:
        for entry, line in registry:
            module = entry.partition(":")[0]
            yield ImportSite(f"{entry!r} (registry entry)", (module,), relative, line)


def _importer(func: ast.expr) -> str | None:
    """``import_module`` / ``__import__`` if ``func`` names one, however it was imported."""
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return name if name in _IMPORTERS else None


def _absolute(node: ast.ImportFrom, parent: str) -> str:
    if not node.level:
        return node.module or ""
    parts = parent.split(".") if parent else []
    base = parts[: len(parts) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def requirements(path: Path) -> tuple[dict[str, str], list[str]]:
    """Pinned distributions (normalized name -> version) and the lines that are not pins."""
    pins: dict[str, str] = {}
    problems: list[str] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        match = _PIN.match(line)
        if match is None:
            problems.append(f"{path}:{number}: {line!r} is not pinned as name==version")
            continue
        pins[normalize(match.group(1))] = match.group(3)
    return pins, problems


@functools.cache
def _top_level() -> dict[str, tuple[str, ...]]:
    return {top: tuple(dists) for top, dists in metadata.packages_distributions().items()}


@functools.cache
def _modules_of(distribution: str) -> frozenset[str]:
    """The importable modules a distribution installs (namespace folders are not modules)."""
    modules: set[str] = set()
    for file in metadata.distribution(distribution).files or ():
        parts = list(file.parts)
        if file.suffix not in (".py", ".so", ".pyd") or parts[0] == ".." or "." in parts[0]:
            continue  # scripts, data, dist-info
        stem = parts[-1].split(".", 1)[0]  # x.cpython-311-x86_64-linux-gnu.so -> x
        parts[-1:] = [] if stem == "__init__" else [stem]
        if parts:
            modules.add(".".join(parts))
    return frozenset(modules)


def providers(site: ImportSite) -> tuple[str, set[str]]:
    """(module, distributions providing it) for the most specific candidate some distribution
    provides; ("", set()) if none does."""
    for candidate in site.candidates:
        dists = {
            dist
            for dist in _top_level().get(candidate.split(".")[0], ())
            if candidate in _modules_of(dist)
        }
        if dists:
            return candidate, dists
    return "", set()


def missing_requirements(package: Path, label: str | None = None) -> list[str]:
    """Why ``package``'s requirements.txt cannot run what main.py imports; [] if it can.

    One message per missing distribution, naming the module, where it is imported and the pin
    to add."""
    label = label or package.name
    pins, problems = requirements(package / REQUIREMENTS)
    reached = closure(package)
    problems += [f"{label}: {problem}" for problem in reached.problems]
    unpinned: dict[tuple[str, ...], list[tuple[str, ImportSite]]] = {}
    for site in reached.external:
        module, dists = providers(site)
        if not dists:
            problems.append(
                f"{label}: {site.where()} `{site.statement}` loads {site.candidates[0]}, which "
                "no installed distribution provides; install it in the dev environment and pin "
                f"it in {REQUIREMENTS}"
            )
        elif not {normalize(dist) for dist in dists} & pins.keys():
            unpinned.setdefault(tuple(sorted(dists)), []).append((module, site))
    for dists, sites in sorted(unpinned.items()):
        wanted = " or ".join(f"{dist}=={metadata.version(dist)}" for dist in dists)
        shown = ", ".join(
            f"{module} at {site.where()} (`{site.statement}`)" for module, site in sites[:3]
        )
        more = f" and {len(sites) - 3} more" if len(sites) > 3 else ""
        problems.append(
            f"{label}: {REQUIREMENTS} does not pin distribution {' or '.join(dists)}, which "
            f"provides {shown}{more}; add {wanted}"
        )
    return problems
