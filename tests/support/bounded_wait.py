"""The one bounded wait of the tests: check a condition until it holds, at most ``timeout``
seconds and at most ``timeout / step`` checks (plus one last check at the bound), then fail
saying what was awaited — the ``what`` given, else the source line of the condition.

``wait_until`` sleeps between checks (threads, processes, files); ``until`` lets a Textual
pilot run the app between checks (the kiosk tests). Neither asserts how long anything took."""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Iterator

from textual.pilot import Pilot

TIMEOUT_S = 20.0
STEP_S = 0.05


def _awaited(condition: Callable[[], object], what: str | None) -> str:
    if what is not None:
        return what
    try:
        return " ".join(inspect.getsource(condition).split())
    except (OSError, TypeError):
        return repr(condition)


def _checks(timeout: float, step: float) -> Iterator[None]:
    """One item per check still allowed: bounded in count and in (monotonic) time."""
    deadline = time.monotonic() + timeout
    for _ in range(max(1, math.ceil(timeout / step))):
        if time.monotonic() >= deadline:
            return
        yield


def _failure(condition: Callable[[], object], what: str | None, timeout: float) -> AssertionError:
    return AssertionError(f"not reached within {timeout:g} s: {_awaited(condition, what)}")


def wait_until(
    condition: Callable[[], object],
    timeout: float = TIMEOUT_S,
    *,
    what: str | None = None,
    step: float = STEP_S,
) -> None:
    """Return once ``condition()`` is true; sleep ``step`` between checks."""
    for _ in _checks(timeout, step):
        if condition():
            return
        time.sleep(step)
    if not condition():
        raise _failure(condition, what, timeout)


async def until(
    pilot: Pilot[None],
    condition: Callable[[], object],
    timeout: float = TIMEOUT_S,
    *,
    what: str | None = None,
    step: float = STEP_S,
) -> None:
    """Return once ``condition()`` is true; the pilot runs the app ``step`` between checks."""
    for _ in _checks(timeout, step):
        if condition():
            return
        await pilot.pause(step)
    if not condition():
        raise _failure(condition, what, timeout)
