"""The demo's signal gate: Ctrl+C, SIGTERM and SIGHUP that come while the demo starts are held
until every component's stop is registered, then acted on; at any other time at once."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from balise.cli.demo import SignalGate, Stopped


@pytest.fixture
def gate() -> Iterator[SignalGate]:
    gate = SignalGate()
    previous = {sig: signal.signal(sig, gate.handle) for sig in SignalGate.SIGNALS}
    try:
        yield gate
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@pytest.mark.parametrize(
    ("sig", "raised"),
    [(signal.SIGTERM, Stopped), (signal.SIGHUP, Stopped), (signal.SIGINT, KeyboardInterrupt)],
)
def test_a_signal_while_starting_waits_for_the_start_to_end(
    gate: SignalGate, sig: signal.Signals, raised: type[BaseException]
) -> None:
    steps: list[str] = []
    with pytest.raises(raised):
        with gate.holding():
            steps.append("started")
            os.kill(os.getpid(), sig)  # the handler runs here, in this thread
            steps.append("stop registered")
        steps.append("after the start")
    assert steps == ["started", "stop registered"]


def test_the_first_of_two_signals_is_the_one_acted_on(gate: SignalGate) -> None:
    with pytest.raises(Stopped, match="SIGHUP"), gate.holding():
        os.kill(os.getpid(), signal.SIGHUP)
        os.kill(os.getpid(), signal.SIGINT)


def test_a_start_that_fails_keeps_its_own_error(gate: SignalGate) -> None:
    with pytest.raises(OSError, match="disque"), gate.holding():
        os.kill(os.getpid(), signal.SIGTERM)
        raise OSError("disque plein")


def test_outside_the_start_a_signal_acts_at_once(gate: SignalGate) -> None:
    with gate.holding():
        pass
    steps: list[str] = []
    with pytest.raises(Stopped, match="SIGTERM"):
        steps.append("running")
        os.kill(os.getpid(), signal.SIGTERM)
        steps.append("never")
    assert steps == ["running"]
