"""Structured output through llama.cpp's grammars: a JSON schema becomes GBNF (llama-cpp-python's
converter, the same as llama.cpp's ``json_schema_to_grammar``), checked first against what the
converter really enforces: it skips what it does not know (``minimum``, ``not``, most ``format``s),
which would let an answer through that breaks the schema.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from corral.api import InvalidRequest, check_schema

ENGINE = "llama.cpp's JSON-schema grammar"
#: The keywords the converter turns into grammar rules.
KEYWORDS = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "prefixItems", "minItems", "maxItems",
    "anyOf", "oneOf", "allOf", "const", "enum", "$ref", "$defs", "definitions", "pattern", "format",
    "minLength", "maxLength",
})  # fmt: skip
FORMATS = frozenset({"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4", "uuid5"})


def gbnf(schema: Mapping[str, Any]) -> str:
    """GBNF text for ``schema``; a schema outside what the converter enforces is a 400 naming the keyword."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    check_schema(schema, KEYWORDS, engine=ENGINE, formats=FORMATS)
    try:
        return json_schema_to_gbnf(json.dumps(schema))
    except (ValueError, AssertionError, KeyError, TypeError, RecursionError) as exc:
        raise InvalidRequest(f"{ENGINE} cannot compile this schema: {exc}") from None
