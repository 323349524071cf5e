"""The tests stand on their own: no test module (nor the shared support, nor a conftest) imports a
test module or a conftest. What several tests share lives in tests/support/, one module per job,
so that running, moving or deleting one test file never changes what another one collects; and
each support module is loaded before any other support module imports it."""

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


def late_support_imports(name: str, source: str) -> list[str]:
    """The support modules that support module ``name`` imports when loaded (at module level)
    but that sort after it; an import inside a function runs once every plugin is loaded."""
    found = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tests.support."):
            imported = (node.module or "").removeprefix("tests.support.")
            if imported > name:
                found.append(imported)
    return found


def test_support_modules_import_only_modules_loaded_before_them() -> None:
    # tests/conftest.py registers the support modules as plugins in name order, and pytest
    # rewrites the asserts of a plugin only when it is the first to import it: a support module
    # that imports a later one would leave that one's asserts without their explanations.
    support = TESTS / "support"
    late = {
        path.stem: imports
        for path in sorted(support.glob("*.py"))
        if (imports := late_support_imports(path.stem, path.read_text(encoding="utf-8")))
    }
    assert late == {}, "rename so that what is imported sorts first: " + repr(late)
    assert late_support_imports("passphrase", "from tests.support.wait import until\n") == ["wait"]
