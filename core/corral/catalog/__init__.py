"""The model catalog: families, variants, hub repositories, sizes, context windows and quantizations of
popular models, for ``corral catalog`` and ``corral recommend``.

Three layers, later ones adding to earlier ones (an id is never defined twice):

* the built-in data shipped with Corral (``corral/catalog/data/models.json``);
* entries plugins add through the ``register_catalog`` hook;
* the user's own entries in ``CORRAL_HOME/catalog.json`` (``corral catalog add``).
"""

from __future__ import annotations

import json
import os
import re
import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import attrs

from corral.convert import from_data, to_data
from corral.errors import CatalogError, Conflict, NotFound
from corral.home import corral_home
from corral.records import CatalogEntry, Category, Format

if TYPE_CHECKING:
    from corral.plugins import PluginHost

USER_FILE = "catalog.json"
_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")


def parse_entries(data: Any, where: str, origin: str) -> list[CatalogEntry]:
    """Catalog entries from JSON data: one entry, a list of them, or ``{"models": [...]}``.

    :raises CatalogError: naming ``where`` and the entry, for a missing or mistyped field.
    """
    import cattrs

    if isinstance(data, dict) and "models" in data:
        data = data["models"]
    items = data if isinstance(data, list) else [data]
    entries = []
    for n, item in enumerate(items, 1):
        label = item.get("id") if isinstance(item, dict) and isinstance(item.get("id"), str) else f"#{n}"
        if not isinstance(item, dict):
            raise CatalogError(f"{where}: catalog entry {label} is not a JSON object")
        try:
            entry = from_data({**item, "origin": origin}, CatalogEntry)
        except (cattrs.BaseValidationError, ValueError, TypeError, KeyError) as exc:
            if isinstance(exc, cattrs.BaseValidationError):
                details = "; ".join(cattrs.transform_error(exc))
            else:
                details = str(exc)
            raise CatalogError(f"{where}: catalog entry {label} is invalid: {details}") from None
        known = {str(c) for c in Category} | {str(f) for f in Format}
        for value, what in ((entry.category, "category"), (entry.format, "format")):
            if str(value) not in known:
                choices = ", ".join(str(c) for c in (Category if what == "category" else Format))
                raise CatalogError(f"{where}: catalog entry {label} is invalid: unknown {what} {str(value)!r} "
                                   f"(one of: {choices})")
        entries.append(check_entry(entry, where))
    return entries


def check_entry(entry: CatalogEntry, where: str) -> CatalogEntry:
    """Refuse entries an estimate or a download could not use."""
    problems = []
    if not _ID.match(entry.id):
        problems.append(f"id {entry.id!r} must be lower-case letters, digits, '.', '_' or '-'")
    if entry.parameters <= 0:
        problems.append("parameters must be a positive count")
    if not entry.quantizations:
        problems.append("it lists no quantizations (or dtypes) to download")
    for q in entry.quantizations:
        if not q.bits or q.bits <= 0 or q.bits > 64:
            problems.append(f"quantization {q.name!r} has implausible bits per weight {q.bits}")
    if not entry.repo or "/" not in entry.repo:
        problems.append(f"repo {entry.repo!r} is not an owner/name repository id")
    if problems:
        raise CatalogError(f"{where}: catalog entry {entry.id!r}: " + "; ".join(problems))
    return entry


class Catalog:
    """Every catalog entry, in order: built-in, from plugins, the user's."""

    def __init__(self, entries: Iterable[CatalogEntry], user_path: Path | None = None) -> None:
        self.entries: list[CatalogEntry] = []
        self.user_path = user_path
        seen: set[str] = set()
        for entry in entries:
            if entry.id not in seen:  # earlier layers win; an id is never defined twice
                seen.add(entry.id)
                self.entries.append(entry)

    def get(self, entry_id: str) -> CatalogEntry:
        for entry in self.entries:
            if entry.id == entry_id.lower():
                return entry
        from corral.suggest import closest, phrase

        ids = [e.id for e in self.entries]
        close = list(dict.fromkeys([*closest(entry_id, ids), *(i for i in ids if entry_id.lower() in i)]))[:5]
        hint = f"; did you mean {phrase(close)}?" if close else "; see `corral catalog ls`"
        raise NotFound(f"no catalog entry {entry_id!r}{hint}")

    def select(self, category: Category | str | None = None, family: str | None = None) -> list[CatalogEntry]:
        out = self.entries
        if category:
            out = [e for e in out if e.category == Category(category)]
        if family:
            out = [e for e in out if e.family.lower() == family.lower()]
        return list(out)

    def _user_entries(self) -> list[CatalogEntry]:
        return [e for e in self.entries if e.origin == "user"]

    def _save_user(self, entries: list[CatalogEntry]) -> None:
        assert self.user_path is not None
        self.user_path.parent.mkdir(parents=True, exist_ok=True)
        rows = []
        for entry in entries:
            row = to_data(entry)
            row.pop("origin", None)
            rows.append(row)
        tmp = self.user_path.with_name(self.user_path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"models": rows}, indent=2, ensure_ascii=False) + "\n")
        os.replace(tmp, self.user_path)  # readers see the old file or the new one, never half of one

    def add(self, entries: Iterable[CatalogEntry]) -> list[CatalogEntry]:
        """Add user entries (saved in ``CORRAL_HOME/catalog.json``); every id must be new."""
        new = [attrs.evolve(e, origin="user") for e in entries]
        taken = {e.id: e.origin for e in self.entries}
        for entry in new:
            if entry.id in taken:
                raise Conflict(
                    f"catalog entry {entry.id!r} already exists ({taken[entry.id]}); choose another id"
                    + (" or `corral catalog rm` it first" if taken[entry.id] == "user" else "")
                )
            taken[entry.id] = "user"
        self._save_user(self._user_entries() + new)
        self.entries.extend(new)
        return new

    def remove(self, entry_id: str) -> CatalogEntry:
        """Remove one of the user's entries (built-in and plugin entries cannot be removed)."""
        entry = self.get(entry_id)
        if entry.origin != "user":
            raise Conflict(f"catalog entry {entry.id!r} comes from {entry.origin}, not from you; it cannot be removed")
        self._save_user([e for e in self._user_entries() if e.id != entry.id])
        self.entries = [e for e in self.entries if e.id != entry.id]
        return entry


def builtin_entries() -> list[CatalogEntry]:
    """The catalog shipped with Corral."""
    try:
        text = resources.files("corral.catalog").joinpath("data", "models.json").read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError(f"Corral's built-in catalog data is missing ({exc}); reinstall corral") from None
    return parse_entries(json.loads(text), "corral's built-in catalog", "builtin")


def plugin_entries(host: PluginHost) -> list[CatalogEntry]:
    """Entries plugins add through ``register_catalog``; a plugin whose entries are broken is reported."""
    found: list[CatalogEntry] = []
    for plugin in host.implementers("register_catalog"):
        added: list[CatalogEntry] = []

        def register(entry: CatalogEntry, _into: list = added, _plugin: str = plugin) -> None:
            if not isinstance(entry, CatalogEntry):
                raise TypeError(f"plugin {_plugin!r} registered {entry!r}, which is not a CatalogEntry")
            _into.append(check_entry(attrs.evolve(entry, origin=_plugin), f"plugin {_plugin!r}"))

        failed = host.call_one("register_catalog", plugin, register=register)  # a problem of the plugin
        if failed is not None:  # a broken plugin must not break the catalog
            print(f"corral: plugin {plugin!r} failed to add catalog entries: {failed}", file=sys.stderr)
            continue
        found.extend(added)
    return found


def user_entries(path: Path) -> list[CatalogEntry]:
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CatalogError(f"{path}: not valid JSON ({exc}); fix or delete the file") from None
    return parse_entries(data, str(path), "user")


def load_catalog(host: PluginHost | None = None, home: Path | None = None) -> Catalog:
    """The whole catalog: built-in, plugin and user entries."""
    from corral.plugins import get_host

    host = host or get_host()
    path = (home or corral_home()) / USER_FILE
    return Catalog([*builtin_entries(), *plugin_entries(host), *user_entries(path)], user_path=path)


__all__ = ["Catalog", "CatalogError", "load_catalog", "parse_entries"]
