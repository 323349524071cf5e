"""Fixtures for a Balise data dir with its KEK, and a runner for the real `balise` command."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from balise.adapters.kek import create_key_file
from balise.app.context import Context, open_context

BALISE = str(Path(sys.executable).with_name("balise"))


@dataclass
class BaliseEnv:
    """A data dir and a KEK file, with helpers to run the CLI and open a context."""

    home: Path
    kek_file: Path

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BALISE_")}
        env.pop("CREDENTIALS_DIRECTORY", None)
        env.update(BALISE_HOME=str(self.home), BALISE_KEK_FILE=str(self.kek_file))
        return env

    def run(
        self, *args: str, stdin: str = "", env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [BALISE, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env if env is None else env,
            timeout=timeout,
            check=False,
        )

    def context(self, actor: str = "test") -> Context:
        return open_context(self.home, actor=actor, env=self.env)


@pytest.fixture
def balise_env(tmp_path: Path) -> Iterator[BaliseEnv]:
    kek = tmp_path / "balise.kek"
    create_key_file(kek)
    yield BaliseEnv(tmp_path / "data", kek)
