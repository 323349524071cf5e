"""Card watcher over PC/SC (pyscard's low-level ``scard`` API): card in/out events with the ATR's kind.

A thread waits in SCardGetStatusChange with a short timeout and is woken by SCardCancel on
stop, so stopping never hangs (pyscard's CardMonitor waits up to 60 s). The ATR comes from the
reader state, so the card is never connected to here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from smartcard import scard

from balise.domain.atr import CardKind, classify_atr
from balise.domain.codes import CardCode
from balise.domain.devices import CardEvent
from balise.domain.errors import BaliseError

log = logging.getLogger(__name__)

PNP_READER: Final = "\\\\?PnP?\\Notification"
"""pcsc-lite's pseudo reader whose state changes when a reader is added or removed."""

_SERVICE_GONE: Final = frozenset(
    {scard.SCARD_E_NO_SERVICE, scard.SCARD_E_SERVICE_STOPPED, scard.SCARD_E_INVALID_HANDLE}
)
_NO_READERS: Final = frozenset(
    {scard.SCARD_E_NO_READERS_AVAILABLE, scard.SCARD_E_READER_UNAVAILABLE}
)


class PcscError(BaliseError):
    """The PC/SC service (pcscd) cannot be reached."""

    code = CardCode.PCSC_UNAVAILABLE


class _ServiceGone(Exception):
    """pcscd stopped under the watcher: drop every card and reconnect."""


def _error_text(hresult: int) -> str:
    return str(scard.SCardGetErrorMessage(hresult))


def list_readers() -> list[str]:
    """Names of the PC/SC readers pcscd knows now (e.g. "Virtual PCD 00 00"); [] if none."""
    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        raise PcscError(
            f"service carte à puce (pcscd) injoignable : {_error_text(hresult)}",
            f"smart-card service (pcscd) unreachable: {_error_text(hresult)}",
        )
    try:
        hresult, names = scard.SCardListReaders(context, [])
        if hresult in _NO_READERS:
            return []
        if hresult != scard.SCARD_S_SUCCESS:
            raise PcscError(
                f"liste des lecteurs illisible : {_error_text(hresult)}",
                f"cannot list readers: {_error_text(hresult)}",
            )
        return [str(name) for name in names]
    finally:
        scard.SCardReleaseContext(context)


@dataclass(frozen=True, slots=True)
class _Card:
    atr: bytes | None
    kind: CardKind
    counter: int  # pcsc-lite's per-reader event counter: it moves when a card goes in or out


class PcscCardWatcher:
    """Implements :class:`balise.ports.CardWatcher` over pcscd.

    ``callback`` runs on the watcher thread (post it to the UI loop from there). Cards already
    present at start are reported as "inserted", so a consumer needs nothing but the events.
    """

    def __init__(self, *, poll_timeout: float = 0.5, retry_delay: float = 1.0) -> None:
        self.poll_timeout = poll_timeout  # also the worst case for stop() if a cancel is missed
        self.retry_delay = retry_delay  # between attempts to reach a stopped pcscd
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._context: Any = None
        self._thread: threading.Thread | None = None
        self._callback: Callable[[CardEvent], None] | None = None
        self._cards: dict[str, _Card] = {}

    def start(self, callback: Callable[[CardEvent], None]) -> None:
        if self._thread is not None:
            raise RuntimeError("card watcher already started")
        self._callback = callback
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="pcsc-card-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread: wakes SCardGetStatusChange at once; idempotent."""
        self._stop.set()
        with self._lock:
            if self._context is not None:
                scard.SCardCancel(self._context)
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def present(self) -> list[CardEvent]:
        """The cards in the readers now, as "inserted" events (reader name order)."""
        with self._lock:
            cards = sorted(self._cards.items())
        return [CardEvent("inserted", reader, card.atr, card.kind) for reader, card in cards]

    def _emit(self, event: CardEvent) -> None:
        callback = self._callback
        if callback is None:
            return
        try:
            callback(event)
        except Exception:  # a consumer's bug must not end the watching
            log.exception("card watcher callback failed on %s", event)

    def _set_card(self, reader: str, card: _Card | None) -> None:
        with self._lock:
            before = self._cards.pop(reader, None)
            if card is not None:
                self._cards[reader] = card
        if before is not None:
            self._emit(CardEvent("removed", reader, before.atr, before.kind))
        if card is not None:
            self._emit(CardEvent("inserted", reader, card.atr, card.kind))

    def _run(self) -> None:
        while not self._stop.is_set():  # one pass per pcscd connection; ends on stop()
            hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
            if hresult != scard.SCARD_S_SUCCESS:
                log.debug("pcscd unreachable: %s", _error_text(hresult))
                self._stop.wait(self.retry_delay)
                continue
            with self._lock:
                self._context = context
            try:
                self._watch(context)
            except _ServiceGone:
                log.info("pcscd went away; waiting for it to come back")
            finally:
                with self._lock:
                    self._context = None
                scard.SCardReleaseContext(context)
            # Whatever happened, cards seen on that connection are no longer known.
            for reader in list(self._cards):
                self._set_card(reader, None)
            self._stop.wait(self.retry_delay)

    def _watch(self, context: Any) -> None:
        states: dict[str, int] = {}
        pnp_state = scard.SCARD_STATE_UNAWARE
        timeout_ms = max(1, int(self.poll_timeout * 1000))
        while not self._stop.is_set():  # each pass waits at most poll_timeout
            hresult, names = scard.SCardListReaders(context, [])
            if hresult in _SERVICE_GONE:
                raise _ServiceGone
            readers = [str(n) for n in names] if hresult == scard.SCARD_S_SUCCESS else []
            for gone in set(states) - set(readers):
                del states[gone]
                self._set_card(gone, None)
            query = [(r, states.get(r, scard.SCARD_STATE_UNAWARE)) for r in readers]
            query.append((PNP_READER, pnp_state))
            hresult, results = scard.SCardGetStatusChange(context, timeout_ms, query)
            if hresult in (scard.SCARD_E_TIMEOUT, scard.SCARD_E_CANCELLED):
                continue
            if hresult in _SERVICE_GONE:
                raise _ServiceGone
            if hresult != scard.SCARD_S_SUCCESS:
                # e.g. a reader vanished between the listing and the wait: list again, later.
                log.debug("SCardGetStatusChange: %s", _error_text(hresult))
                self._stop.wait(min(self.poll_timeout, 0.1))
                continue
            for name, event_state, atr in results:
                state = int(event_state) & ~scard.SCARD_STATE_CHANGED
                if name == PNP_READER:
                    pnp_state = state
                    continue
                states[str(name)] = state
                self._update(str(name), state, atr)

    def _update(self, reader: str, state: int, atr: Any) -> None:
        counter = state >> 16
        with self._lock:
            before = self._cards.get(reader)
        if not state & scard.SCARD_STATE_PRESENT:
            if before is not None:
                self._set_card(reader, None)
            return
        if state & scard.SCARD_STATE_MUTE or not atr:
            card = _Card(None, CardKind.UNKNOWN, counter)  # a card that does not answer
        else:
            raw = bytes(atr)
            card = _Card(raw, classify_atr(raw), counter)
        if before == card:
            return  # only other bits moved (e.g. another program connected): same card
        # A new ATR or a moved counter while present both times: the card was swapped between
        # two waits; say so as a removal and an insertion.
        self._set_card(reader, card)
