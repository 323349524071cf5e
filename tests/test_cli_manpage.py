"""The man page and the bash completion the image installs, generated from the parser by
scripts/build-cli-docs: man renders the page, which names every command, and a real bash
completes `balise pa<TAB>` to `params` with the generated function."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from balise.cli import build_parser
from tests.support.cli_tree import leaves

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli-docs")
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build-cli-docs"), "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out


def test_man_renders_the_page_and_it_names_every_command(docs: Path) -> None:
    page = docs / "balise.1.gz"
    with gzip.open(page, "rt", encoding="utf-8") as handle:
        source = handle.read()
    assert source.startswith('.TH BALISE "1"')
    for tool in ("man", "groff"):
        assert shutil.which(tool), f"{tool} missing (Debian: man-db, groff-base)"
    env = dict(os.environ, MANWIDTH="100", LC_ALL="C.UTF-8", MAN_KEEP_FORMATTING="")
    shown = subprocess.run(
        ["man", "-l", str(page)], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert shown.returncode == 0 and shown.stderr == "", shown.stderr
    # groff itself, every warning on: none (an unescaped line or character would show here).
    checked = subprocess.run(
        ["groff", "-k", "-man", "-Tutf8", "-ww", "-z"],
        input=source,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0 and checked.stderr == "", checked.stderr
    text = shown.stdout
    for command, _parser in leaves(build_parser()):
        assert f"balise {command}" in text, command
    assert "ENVIRONNEMENT" in text and "BALISE_KEK_FILE" in text
    assert "CODES DE SORTIE" in text and "--allow-warnings" in text
    assert "utilisation : balise" in text


def complete(script: Path, line: str) -> list[str]:
    """What bash offers for ``line`` (the cursor at its end) with the generated function."""
    words = line.split(" ")
    program = 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _balise; '
    program += 'printf "%s\\n" "${COMPREPLY[@]}"'
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program, "bash", str(script), *words],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert done.stderr == "", done.stderr
    return [w for w in done.stdout.split("\n") if w]


def test_bash_completes_commands_options_and_values(docs: Path, tmp_path: Path) -> None:
    script = docs / "balise.bash-completion"
    assert complete(script, "balise pa") == ["params"]
    assert complete(script, "balise lots s") == ["show"]
    assert complete(script, "balise params ") == ["set", "get", "list", "rotate-key"]
    assert complete(script, "balise doctor --a") == ["--allow-warnings"]
    assert complete(script, "balise --data-dir /tmp/x lots l") == ["list"]
    assert complete(script, "balise kiosk --lang ") == ["fr", "en"]
    archive = tmp_path / "cabinet.sauvegarde"
    archive.write_bytes(b"")
    assert complete(script, f"balise backup verify {tmp_path}/cab") == [str(archive)]
    assert complete(script, f"balise backup --to {tmp_path}") == [str(tmp_path)]
