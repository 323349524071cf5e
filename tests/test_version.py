"""One version, declared in pyproject.toml: the package metadata, `balise.__version__`,
`balise --version` and `python -m balise --version` all say it."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import balise

REPO = Path(__file__).resolve().parents[1]
BALISE = Path(sys.executable).with_name("balise")


def _pyproject_version() -> str:
    with (REPO / "pyproject.toml").open("rb") as f:
        declared: str = tomllib.load(f)["project"]["version"]
    return declared


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), capture_output=True, text=True, timeout=60, check=False, cwd=REPO
    )


def test_metadata_is_pyproject_version() -> None:
    # An editable install reads its metadata at install time: scripts/ensure-deps installs again
    # whenever pyproject.toml changes.
    assert version("balise") == _pyproject_version()
    assert balise.__version__ == version("balise")


def test_balise_version_command() -> None:
    result = _run(str(BALISE), "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"balise {version('balise')}\n"
    assert result.stdout.split()[-1] == _pyproject_version()


def test_python_m_balise_version() -> None:
    result = _run(sys.executable, "-m", "balise", "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"balise {version('balise')}\n"
    assert result.stdout.split()[-1] == _pyproject_version()


def test_python_m_balise_is_the_command() -> None:
    result = _run(sys.executable, "-m", "balise", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("utilisation : balise ")
    assert "--version" in result.stdout


def test_version_is_read_lazily() -> None:
    # Importing balise (every command, the kiosk) does not pay for importlib.metadata.
    code = "import sys, balise; print('importlib.metadata' in sys.modules)"
    result = _run(sys.executable, "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
