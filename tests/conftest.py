"""Shared pytest setup: every fixture module under tests/support is registered as a plugin."""

from __future__ import annotations

import pkgutil
from pathlib import Path

_SUPPORT = Path(__file__).parent / "support"
pytest_plugins = sorted(
    f"tests.support.{m.name}"
    for m in pkgutil.iter_modules([str(_SUPPORT)])
    if not m.name.startswith("_")
)
