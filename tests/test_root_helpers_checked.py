"""The Python scripts outside src/ are linted and type-checked like the rest: the root helpers the
box runs with its /usr/bin/python3 (egress list, provisioning window), the flash guard and the
image's build scripts. They have no .py extension, so neither ruff nor mypy finds them in a folder:
the Makefile names them in PY_SCRIPTS, and a script missing from that list would go unchecked."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Where the scripts that are not part of the balise package live.
SCRIPT_DIRS = ("ansible", "image", "scripts", "udev")
PYTHON_SHEBANG = re.compile(rb"#![^\n]*\bpython[0-9.]*\b")


def _makefile() -> str:
    return (ROOT / "Makefile").read_text(encoding="utf-8")


def _listed() -> list[str]:
    """The words of `PY_SCRIPTS := ...`, backslash continuations included."""
    found = re.search(r"^PY_SCRIPTS\s*:=((?:[^\n]*\\\n)*[^\n]*)$", _makefile(), re.MULTILINE)
    assert found is not None, "the Makefile has no PY_SCRIPTS list"
    return found.group(1).replace("\\\n", " ").split()


def _recipe(target: str) -> list[str]:
    """The command lines of a Makefile target."""
    found = re.search(rf"^{target}:[^\n]*\n((?:\t[^\n]*\n)*)", _makefile(), re.MULTILINE)
    assert found is not None, f"the Makefile has no {target} target"
    return [line.strip() for line in found.group(1).splitlines()]


def _is_python(path: Path) -> bool:
    if path.suffix == ".py":
        return True
    with path.open("rb") as handle:
        return PYTHON_SHEBANG.match(handle.readline(256)) is not None


def _python_scripts() -> set[str]:
    found = set()
    for top in SCRIPT_DIRS:
        for path in (ROOT / top).rglob("*"):
            if path.is_file() and not path.is_symlink() and _is_python(path):
                found.add(path.relative_to(ROOT).as_posix())
    return found


def test_every_python_script_is_in_the_checked_list() -> None:
    scripts = _python_scripts()
    # The four known today: a search that finds nothing would pass whatever the list says.
    assert "ansible/roles/hardening/files/balise-egress-apply" in scripts
    assert "image/flash-check" in scripts
    missing = sorted(scripts - set(_listed()))
    assert not missing, f"Python scripts missing from the Makefile's PY_SCRIPTS: {missing}"


def test_the_list_names_only_python_scripts_that_exist() -> None:
    listed = _listed()
    assert len(listed) == len(set(listed)), "a script is listed twice"
    stale = [name for name in listed if not (ROOT / name).is_file() or not _is_python(ROOT / name)]
    assert not stale, f"PY_SCRIPTS names files that are not Python scripts: {stale}"


def test_lint_and_typecheck_cover_the_list() -> None:
    lint = _recipe("lint")
    assert any(line.startswith("$(BIN)/ruff check ") and "$(PY_SCRIPTS)" in line for line in lint)
    assert any(
        line.startswith("$(BIN)/ruff format --check ") and "$(PY_SCRIPTS)" in line for line in lint
    )
    typecheck = [line.split() for line in _recipe("typecheck")]
    assert any(
        words[0] == "$(BIN)/mypy"
        and "--strict" in words
        and "--scripts-are-modules" in words
        and "$(PY_SCRIPTS)" in words
        for words in typecheck
    ), "make typecheck does not run mypy --strict on PY_SCRIPTS"
