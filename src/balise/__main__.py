"""`python -m balise`: the `balise` command."""

from __future__ import annotations

from balise.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
