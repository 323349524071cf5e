"""The balise command's tree as argparse builds it: every command that runs something, for the
tests that check each command has its JSON schema, its manual page entry, and so on."""

from __future__ import annotations

import argparse
from collections.abc import Iterator


def leaves(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every command of the parser tree that runs something: ("lots list", its parser)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                if child.get_default("func") is not None:
                    yield child.prog.removeprefix("balise "), child
                yield from leaves(child)
