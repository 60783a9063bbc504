"""Structured output: a request's ``response_format``, and the JSON-schema check every grammar engine
needs first.

Grammar engines build a grammar from a JSON schema, and several of them skip keywords they do not
implement, which would let an answer through that breaks the schema. So every schema is walked first
against the keywords the driver's engine really enforces: the first one it lacks is a 400 naming the
keyword and where it sits (``properties.age.minimum``).
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

from attrs import field, frozen

from corral.errors import InvalidRequest

#: Keywords that only annotate a schema: no engine needs to enforce them.
ANNOTATIONS = frozenset({
    "title", "description", "$schema", "$id", "$comment", "default", "examples", "deprecated", "readOnly",
    "writeOnly", "$anchor",
})  # fmt: skip

#: Keywords whose values are schemas (a dict of them, a list of them, or one).
_SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties", "dependentSchemas")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_ONE = ("items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames",
               "unevaluatedProperties", "unevaluatedItems", "additionalItems")

#: The most nesting a schema may have (a bound on hostile input).
MAX_DEPTH = 64


@frozen
class OutputFormat:
    """What a request asks the answer to be: ``text`` (free), ``json_object`` (any JSON object) or
    ``json_schema`` (JSON matching ``schema``)."""

    type: str = "text"
    schema: Mapping[str, Any] | None = field(default=None, eq=False)
    name: str = ""
    strict: bool = False

    @property
    def constrained(self) -> bool:
        return self.type != "text"

    def json_schema(self) -> dict[str, Any]:
        """The schema a grammar is built from (``json_object``: any object)."""
        if self.type == "json_schema" and self.schema is not None:
            return dict(self.schema)
        return {"type": "object"}


def read_response_format(value: Any) -> OutputFormat:
    """The checked :class:`OutputFormat` of OpenAI's ``response_format``.

    ``{"type": "text"}``, ``{"type": "json_object"}`` or ``{"type": "json_schema", "json_schema":
    {"name", "schema", "strict", "description"}}``.
    """
    if value is None:
        return OutputFormat()
    if not isinstance(value, Mapping):
        raise InvalidRequest("field 'response_format' must be an object such as {'type': 'json_object'}")
    kind = value.get("type")
    if kind not in ("text", "json_object", "json_schema"):
        raise InvalidRequest(f"response_format.type {kind!r} is not one of text, json_object, json_schema")
    unknown = sorted(set(value) - {"type", "json_schema"})
    if unknown:
        raise InvalidRequest(f"response_format.{unknown[0]} is not a supported field")
    if kind != "json_schema":
        return OutputFormat(type=kind)
    spec = value.get("json_schema")
    if not isinstance(spec, Mapping):
        raise InvalidRequest("response_format.json_schema must be an object with a 'name' and a 'schema'")
    unknown = sorted(set(spec) - {"name", "schema", "strict", "description"})
    if unknown:
        raise InvalidRequest(f"response_format.json_schema.{unknown[0]} is not a supported field")
    schema = spec.get("schema")
    if schema is None:
        schema = {"type": "object"}
    if not isinstance(schema, Mapping):
        raise InvalidRequest("response_format.json_schema.schema must be a JSON schema object")
    strict = spec.get("strict") or False
    if not isinstance(strict, bool):
        raise InvalidRequest("response_format.json_schema.strict must be true or false")
    name = spec.get("name") or "response"
    if not isinstance(name, str):
        raise InvalidRequest("response_format.json_schema.name must be a string")
    return OutputFormat(type="json_schema", schema=dict(schema), name=name, strict=strict)


def check_schema(schema: Any, supported: Iterable[str], *, engine: str, formats: Iterable[str] | None = None,
                 where: str = "schema") -> None:
    """Refuse a schema that uses a keyword outside ``supported`` (plus :data:`ANNOTATIONS`), or a
    ``format`` outside ``formats`` (None: any format).

    :raises InvalidRequest: naming the keyword, its place in the schema and the engine.
    """
    allowed = frozenset(supported) | ANNOTATIONS
    known_formats = None if formats is None else frozenset(formats)
    _walk(schema, allowed, known_formats, engine, where, 0)


def _walk(node: Any, allowed: frozenset[str], formats: frozenset[str] | None, engine: str, where: str,
          depth: int) -> None:
    if isinstance(node, bool):
        return  # true / false are schemas too
    if not isinstance(node, Mapping):
        raise InvalidRequest(f"{where} must be a JSON schema object, got {json.dumps(node)[:40]}")
    if depth > MAX_DEPTH:
        raise InvalidRequest(f"{where}: the schema nests deeper than {MAX_DEPTH} levels")
    for key, value in node.items():
        here = f"{where}.{key}"
        if key not in allowed:
            raise InvalidRequest(f"{here}: the JSON-schema keyword {key!r} is not supported by {engine}")
        if key == "format" and formats is not None and value not in formats:
            raise InvalidRequest(
                f"{here}: format {value!r} is not supported by {engine} (supported: {', '.join(sorted(formats))})")
        if key in _SCHEMA_MAPS and isinstance(value, Mapping):
            for name, sub in value.items():
                _walk(sub, allowed, formats, engine, f"{here}.{name}", depth + 1)
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            for i, sub in enumerate(value):
                _walk(sub, allowed, formats, engine, f"{here}[{i}]", depth + 1)
        elif key in _SCHEMA_ONE and isinstance(value, (Mapping, bool)):
            _walk(value, allowed, formats, engine, here, depth + 1)
        elif key == "items" and isinstance(value, list):  # draft-4 tuple form
            for i, sub in enumerate(value):
                _walk(sub, allowed, formats, engine, f"{here}[{i}]", depth + 1)


def parse_json(text: str) -> Any:
    """The JSON value of a constrained answer (None when it does not parse, e.g. cut by max_tokens)."""
    try:
        return json.loads(text)
    except ValueError:
        return None
