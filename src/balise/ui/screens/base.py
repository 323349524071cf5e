"""Shared pieces of the kiosk screens: blocking calls in thread workers, forgetting typed text."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar, cast

from textual.dom import DOMNode
from textual.screen import ModalScreen, Screen
from textual.widgets import Input
from textual.worker import WorkerFailed

from balise.ui.i18n import t

if TYPE_CHECKING:
    from balise.ui.app import BaliseApp
    from balise.ui.backend import KioskBackend

T = TypeVar("T")


async def in_thread(screen: Screen[Any], fn: Callable[[], T], group: str = "call") -> T:
    """Run one blocking call in a thread worker and wait for it without blocking the screen;
    the call's own exception comes back as is."""
    worker = screen.run_worker(fn, thread=True, exit_on_error=False, group=group)
    try:
        return await worker.wait()
    except WorkerFailed as failed:
        raise failed.error from None


def translate_bindings(node: DOMNode) -> None:
    """Binding descriptions are catalogue keys ("key.sign"): shown in the chosen language."""
    bindings = node._bindings.copy()
    for key, found in bindings.key_to_bindings.items():
        bindings.key_to_bindings[key] = [
            replace(b, description=t(b.description)) if b.description.startswith("key.") else b
            for b in found
        ]
    node._bindings = bindings


class KioskScreen(Screen[None]):
    """A full screen of the kiosk."""

    def __init__(self) -> None:
        super().__init__()
        translate_bindings(self)

    @property
    def kiosk(self) -> BaliseApp:
        from balise.ui.app import BaliseApp

        return cast(BaliseApp, self.app)

    @property
    def backend(self) -> KioskBackend:
        return self.kiosk.backend

    def forget(self) -> None:
        """Idle timeout: clear every field typed on this screen."""
        for field in self.query(Input):
            field.value = ""


class KioskDialog(ModalScreen[T]):
    """A typed dialog of the guided flows (dismiss gives its answer)."""

    def __init__(self) -> None:
        super().__init__()
        translate_bindings(self)

    @property
    def backend(self) -> KioskBackend:
        from balise.ui.app import BaliseApp

        return cast(BaliseApp, self.app).backend

    def forget(self) -> None:
        for field in self.query(Input):
            field.value = ""
