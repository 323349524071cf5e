"""The tests stand on their own: no test module (nor the shared support, nor a conftest) imports a
test module or a conftest. What several tests share lives in tests/support/, one module per job,
so that running, moving or deleting one test file never changes what another one collects."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _is_test_module(dotted: str) -> bool:
    """``tests.test_x``, ``tests.image.test_y``, ``test_x``, ``conftest``, ``tests.conftest``…"""
    last = dotted.rsplit(".", 1)[-1]
    return last.startswith("test_") or last == "conftest"


def imported_test_modules(source: str) -> list[str]:
    """The test modules (and conftests) that ``source`` imports, as written."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if _is_test_module(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            if node.module and _is_test_module(node.module):
                found.append(module)
            else:  # from tests import test_x, from . import conftest
                found += [
                    f"{module}.{alias.name}".replace("..", ".")
                    for alias in node.names
                    if _is_test_module(alias.name)
                ]
    return found


def test_no_test_module_imports_another_test_module() -> None:
    offenders = {
        str(path.relative_to(TESTS.parent)): imports
        for path in sorted(TESTS.rglob("*.py"))
        if (imports := imported_test_modules(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}, "move what is shared to tests/support/: " + repr(offenders)


def test_the_scan_sees_every_way_of_importing_a_test_module() -> None:
    planted = "\n".join(
        [
            "from tests.test_kiosk_sign import until",
            "from tests.image.test_image import boot",
            "from .test_agent import wait_for",
            "from tests import test_transmission",
            "from . import conftest",
            "import tests.test_cli_json",
            "from tests.conftest import pki",
            "def later():",
            "    from tests.test_sim_oct import lot_mail",
        ]
    )
    assert len(imported_test_modules(planted)) == 8
    assert (
        imported_test_modules("from tests.support.bounded_wait import until\nimport pytest\n") == []
    )
