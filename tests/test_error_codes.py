"""Error codes are types: every code is a member of one enum per area (balise.domain.codes, and the
few enums that classify a file or a message beside what they classify), spelled nowhere else, and
the failures of the mail transport, the store and the agent are told apart by type, never by the
words of a message. These tests keep it so: an AST scan of src/balise fails on a code written as a
bare string, and on a failure classified by searching an exception's text."""

from __future__ import annotations

import ast
import json
import sys
from enum import StrEnum
from pathlib import Path

from balise.cms.errors import CmsError, CmsErrorCode
from balise.domain import codes
from balise.domain.classify import UnknownReason
from balise.domain.errors import BaliseError, ValidationError
from balise.domain.lotfile import LotFault
from balise.domain.lotstate import UnknownLot
from balise.domain.relay import RelayCode
from balise.domain.returns import ReturnProblem
from balise.domain.update import UpdateCode, UpdateEvent

SRC = Path(codes.__file__).resolve().parents[1]
# The codes of a failure: the areas of domain/codes.py, and the enums a feature keeps beside it.
FAILURES: tuple[type[StrEnum], ...] = (
    *codes.AREAS,
    CmsErrorCode,
    RelayCode,
    UpdateCode,
    UpdateEvent,
)
# Where codes are spelled: the enums themselves.
DEFINED_IN = {Path(sys.modules[enum.__module__].__file__ or "").resolve() for enum in FAILURES}
# Every enum of stable codes, those that classify a file or a message too.
ALL_ENUMS: tuple[type[StrEnum], ...] = (*FAILURES, LotFault, ReturnProblem, UnknownReason)
KNOWN = {m.value for enum in FAILURES for m in enum}


def bare_codes(source: str) -> list[tuple[int, str]]:
    """(line, code) of each error code written as a string: a ``code=`` keyword or a class's
    ``code =`` given a string, and any string equal to a known code that has an underscore
    (one-word codes such as SMTP or CARD are also ordinary words, e.g. a protocol's name)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        value: ast.expr | None = None
        if isinstance(node, ast.keyword) and node.arg == "code":
            value = node.value
        elif isinstance(node, ast.ClassDef):
            for stmt in node.body:
                target: ast.expr
                if isinstance(stmt, ast.AnnAssign):
                    target, given = stmt.target, stmt.value
                elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
                    target, given = stmt.targets[0], stmt.value
                else:
                    continue
                named = isinstance(target, ast.Name) and target.id == "code"
                if named and isinstance(given, ast.Constant) and isinstance(given.value, str):
                    found.append((given.lineno, given.value))
            continue
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if "_" in node.value and node.value in KNOWN:
                found.append((node.lineno, node.value))
            continue
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            found.append((value.lineno, value.value))
        elif isinstance(value, ast.JoinedStr):
            found.append((value.lineno, ast.unparse(value)))
    return sorted(set(found))


def text_matching(source: str) -> list[tuple[int, str]]:
    """(line, expression) of each test on a caught exception's text: ``"x" in str(exc)``,
    ``... in exc.fr``, ``str(exc).startswith(...)``, ``exc.args[0] == ...`` — where ``exc`` is a
    name an ``except ... as`` binds in the module."""
    tree = ast.parse(source)
    caught = {h.name for h in ast.walk(tree) if isinstance(h, ast.ExceptHandler) and h.name}

    def texty(expr: ast.expr) -> bool:
        if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name):
            return (
                expr.func.id in {"str", "repr", "format"}
                and len(expr.args) == 1
                and isinstance(expr.args[0], ast.Name)
                and expr.args[0].id in caught
            )
        if isinstance(expr, ast.Attribute):
            return (
                isinstance(expr.value, ast.Name)
                and expr.value.id in caught
                and expr.attr in {"fr", "en", "args", "strerror", "message", "msg"}
            )
        if isinstance(expr, ast.Subscript):
            return texty(expr.value)
        return False

    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(
            isinstance(op, ast.In | ast.NotIn | ast.Eq | ast.NotEq) for op in node.ops
        ):
            if any(texty(side) for side in [node.left, *node.comparators]):
                found.append((node.lineno, ast.unparse(node)))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in {"startswith", "endswith", "find", "index", "count"}
            and texty(node.func.value)
        ):
            found.append((node.lineno, ast.unparse(node)))
    return found


def _sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_no_error_code_is_written_as_a_bare_string() -> None:
    offenders = {
        str(path.relative_to(SRC.parent)): hits
        for path in _sources()
        if path not in DEFINED_IN and (hits := bare_codes(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}, "use the member of its enum in balise.domain.codes: " + repr(offenders)


def test_the_code_scan_sees_each_way_of_writing_a_bare_code() -> None:
    planted = "\n".join(
        [
            'raise ValidationError("x", "x", code="LOT_UNKNOWN")',
            'raise StateError("x", code=f"CERT_{kind}")',
            "class Refused(BaliseError):",
            '    code = "SMTP"',
            "class Annotated(BaliseError):",
            '    code: str = "POP3"',
            'NETWORK = frozenset({"SMTP_NETWORK"})',
            'if exc.code == "DISK_FULL": pass',
        ]
    )
    assert [code for _, code in bare_codes(planted)] == [
        "LOT_UNKNOWN",
        "f'CERT_{kind}'",
        "SMTP",
        "POP3",
        "SMTP_NETWORK",
        "DISK_FULL",
    ]
    assert bare_codes('raise ValidationError("x", code=LotCode.LOT_UNKNOWN)\nname = "SMTP"') == []


def test_failures_are_never_told_apart_by_their_words() -> None:
    offenders = {
        str(path.relative_to(SRC.parent)): hits
        for path in _sources()
        if (hits := text_matching(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}, "decide on the exception's type or code: " + repr(offenders)


def test_the_text_scan_sees_each_way_of_matching_words() -> None:
    checks = [
        'if "STARTTLS extension not supported" in str(exc): pass',
        'if "locked" in exc.args[0]: pass',
        'if exc.fr == "disque plein": pass',
        'if str(exc).startswith("database is locked"): pass',
        'if "No space" not in exc.strerror: pass',
    ]
    planted = "try:\n    pass\nexcept Exception as exc:\n" + "".join(f"    {c}\n" for c in checks)
    assert len(text_matching(planted)) == len(checks)
    kept = "try:\n    pass\nexcept Exception as exc:\n    if isinstance(exc, ServerUnreachable): pass\n"
    assert text_matching(kept + '    if exc.code in BUSY or status.reason == "ok": pass\n') == []


def test_each_code_is_spelled_once_and_named_as_it_reads() -> None:
    seen: dict[str, str] = {}
    for enum in ALL_ENUMS:
        for member in enum:
            assert member.value not in seen, f"{member.value} in {enum.__name__} and {seen}"
            seen[member.value] = enum.__name__
    for enum in codes.AREAS:
        assert all(m.name == m.value for m in enum), enum.__name__


def test_a_code_reads_written_and_read_back_as_its_string() -> None:
    """The contract outside the process is the string: JSON, the journal, the exit line."""
    exc = UnknownLot(7)
    assert exc.code == "LOT_UNKNOWN" and exc.code is codes.LotCode.LOT_UNKNOWN
    assert json.dumps({"code": exc.code}) == '{"code": "LOT_UNKNOWN"}'
    assert f"[{exc.code}]" == "[LOT_UNKNOWN]" and str(exc) == "[LOT_UNKNOWN] lot 7 inconnu"
    assert (exc.fr, exc.en) == ("lot 7 inconnu", "unknown lot 7")
    assert isinstance(exc, ValidationError)
    assert codes.LotCode(json.loads('"LOT_UNKNOWN"')) is codes.LotCode.LOT_UNKNOWN
    cms = CmsError(CmsErrorCode.BAD_SIGNATURE, "signature refusée", "bad signature")
    assert cms.code == "CMS_BAD_SIGNATURE" and cms.cms_code is CmsErrorCode.BAD_SIGNATURE
    assert BaliseError("x").code == "BALISE"
