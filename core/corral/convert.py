"""The one cattrs converter: every ``--json`` document and every database column goes through it."""

from __future__ import annotations

import collections.abc
import json
import typing
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from corral.records import JSON_NAME, Category, Format

converter = cattrs.Converter(omit_if_default=False)
converter.register_unstructure_hook(Path, str)
converter.register_structure_hook(Path, lambda v, _: Path(v))
converter.register_unstructure_hook(datetime, lambda d: d.isoformat())
converter.register_structure_hook(datetime, lambda v, _: datetime.fromisoformat(v))
converter.register_unstructure_hook(type, lambda t: t.__name__)
# Open names (categories, formats) are plain strings in JSON and in the database.
for _open in (Category, Format):
    converter.register_unstructure_hook(_open, str.__str__)
    converter.register_structure_hook(_open, lambda v, t: t(v))
# Free-form mappings (settings, extra facts) are plain JSON objects; keep their values as they are.
converter.register_structure_hook_func(
    lambda t: typing.get_origin(t) is collections.abc.Mapping, lambda v, _: dict(v or {})
)


# Fields whose JSON name differs from the attribute (byte counts: ``size`` is ``size_bytes``), declared
# with ``corral.records.byte_count``; the same names are used in the database.
def _json_names(cls: type) -> dict[str, str]:
    return {a.name: a.metadata[JSON_NAME] for a in attrs.fields(cls) if JSON_NAME in a.metadata}


def _renames(cls: type) -> dict[str, Any]:
    return {name: override(rename=key) for name, key in _json_names(cls).items()}


_renamed = lambda t: attrs.has(t) and bool(_json_names(t))  # noqa: E731
converter.register_unstructure_hook_factory(
    _renamed,
    lambda cls: make_dict_unstructure_fn(cls, converter, _cattrs_omit_if_default=converter.omit_if_default,
                                         **_renames(cls)),
)


def _structure_renamed(cls: type) -> Any:
    build = make_dict_structure_fn(cls, converter, **_renames(cls))
    names = _json_names(cls)

    def structure(data: Any, _: Any) -> Any:
        # Rows written before a field got its JSON name carry the attribute's name: read them as they are.
        if isinstance(data, dict) and any(old in data and new not in data for old, new in names.items()):
            data = {names[k] if k in names and names[k] not in data else k: v for k, v in data.items()}
        return build(data, cls)

    return structure


converter.register_structure_hook_factory(_renamed, _structure_renamed)


def to_data(obj: Any) -> Any:
    """Plain JSON-ready data for any record (or list/dict of records)."""
    return converter.unstructure(obj)


def from_data(data: Any, cls: type) -> Any:
    """Rebuild a record of ``cls`` from :func:`to_data` output."""
    return converter.structure(data, cls)


def dumps(obj: Any, **kwargs: Any) -> str:
    """One JSON document for any record."""
    return json.dumps(to_data(obj), ensure_ascii=False, **kwargs)


def loads(text: str, cls: type) -> Any:
    return from_data(json.loads(text), cls)
