"""The exchange contract's JSON Schema files (docs/schemas/exchange/), as the tests check the files
the box writes with them: jsonschema's Draft 2020-12 validator, with ``date-time`` checked (the
standard library parses it; jsonschema alone would ignore the format)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker  # type: ignore[import-untyped]

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas" / "exchange"
KINDS = ("recu", "statut", "etat")

_formats = FormatChecker()


def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if "T" not in value:
        raise ValueError("not a date and time")
    return datetime.fromisoformat(value).tzinfo is not None  # an offset is required


_formats.checks("date-time", raises=ValueError)(_date_time)


def validator(kind: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{kind}.schema.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=_formats)


def checked(kind: str, path: Path) -> Any:
    """The JSON document at ``path``, after it passed its schema (errors listed in the failure)."""
    document = json.loads(path.read_text(encoding="utf-8"))
    errors = sorted(validator(kind).iter_errors(document), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]
    return document
