"""Balise: teletransmission box for small French medical practices."""

from __future__ import annotations

# Declared once, in pyproject.toml; read from the installed package's metadata (the wheel on the
# box, the editable install in .venv). Looked up on first use only: importlib.metadata costs tens
# of milliseconds, which every `balise` command and the kiosk's start would otherwise pay.
_UNKNOWN = "0+inconnue"  # a source tree that was never installed (PEP 440 local version)


def __getattr__(name: str) -> str:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("balise")
        except PackageNotFoundError:
            found = _UNKNOWN
        globals()["__version__"] = found
        return found
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
