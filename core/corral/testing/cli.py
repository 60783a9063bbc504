"""Checks for ``click.testing.CliRunner`` results of ``corral`` commands, as Corral's own tests use them."""

from __future__ import annotations

import json
from typing import Any


def ok(result: Any) -> Any:
    """Assert the command succeeded (showing its output when it did not); return the result."""
    assert result.exit_code == 0, result.output + (result.stderr or "")
    return result


def as_json(result: Any) -> Any:
    """Assert the command succeeded and return its standard output parsed as JSON (``--json``)."""
    return json.loads(ok(result).stdout)


def assert_clean_error(result: Any, *fragments: str) -> None:
    """Assert the command failed the way Corral fails: a non-zero exit, exactly one ``Error: …`` line on
    stderr holding every one of ``fragments``, and no traceback anywhere."""
    assert result.exit_code != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.output + result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
