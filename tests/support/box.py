"""A configured box for tests: one practitioner (the golden samples' emitter) and its organisms."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import pytest

from balise.adapters.clock import FixedClock, SystemClock
from balise.app.context import Context, open_context
from balise.sim.box import BAL, EMITTER, configure_box
from balise.sim.pki import TestPKI
from tests.support.balise_env import BaliseEnv

__all__ = ["BAL", "EMITTER", "Box", "SyncedClock", "box", "box_at", "configure_box"]


@dataclass
class Box:
    env: BaliseEnv
    ctx: Context


class SyncedClock(SystemClock):
    """Real time, reported synchronized: the test machines run no NTP, so the kernel says
    "unsynchronized"; only the tests about that state use the real answer or a FixedClock."""

    def is_synchronized(self) -> bool:
        return True


@pytest.fixture
def box(balise_env: BaliseEnv, pki: TestPKI) -> Iterator[Box]:
    """A configured box whose context runs on the real time, clock reported synchronized."""
    ctx = open_context(balise_env.home, actor="test", env=balise_env.env, clock=SyncedClock())
    configure_box(ctx, pki)
    try:
        yield Box(balise_env, ctx)
    finally:
        ctx.close()


def box_at(balise_env: BaliseEnv, when: datetime) -> Context:
    """Another context on the same data dir, with a fixed clock (for dated lot files)."""
    return open_context(balise_env.home, actor="test", env=balise_env.env, clock=FixedClock(when))
