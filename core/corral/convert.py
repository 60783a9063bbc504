"""The one cattrs converter: every ``--json`` document and every database column goes through it."""

from __future__ import annotations

import collections.abc
import json
import typing
from datetime import datetime
from pathlib import Path
from typing import Any

import cattrs

from corral.records import Category, Format

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
