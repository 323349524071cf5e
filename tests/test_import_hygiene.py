"""The headless core never imports UI or device libraries (backs the import-linter contracts)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import balise

FORBIDDEN = (
    "textual",
    "rich",
    "pyudev",
    "pkcs11",
    "smartcard",
    "aiosmtplib",
    "poplib",
    "sqlite_utils",
)
CORE = ("balise.domain", "balise.cms", "balise.services", "balise.ports")


def _core_modules() -> list[str]:
    names = ["balise.ports"]
    for package in CORE[:-1]:
        module = __import__(package, fromlist=["_"])
        names.append(package)
        names += [f"{package}.{m.name}" for m in pkgutil.iter_modules(module.__path__)]
    return names


@pytest.mark.parametrize("module", _core_modules())
def test_core_module_imports_no_forbidden_library(module: str) -> None:
    code = (
        "import sys, importlib; importlib.import_module(sys.argv[1]); "
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in sys.argv[2].split(','))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, module, ",".join(FORBIDDEN)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    assert out == "", f"{module} pulls in {out}"


def test_lint_imports_contracts_hold() -> None:
    exe = __import__("pathlib").Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert balise.__version__
