"""Accueil while the box opens a database that takes long to prepare (the first start after an
update copies and migrates it: minutes on a ten-year database and an SD card): it says so, in
French, instead of « Chargement… », and the figures replace those words once the box is open.

The box is the real one (store, journal, vault, the kiosk's backend from its composition root);
only its opening is held by the test, as a long migration holds it, after it said it was busy —
as balise.adapters.store.Store says it through ``busy`` (test_update_migrations.py tests that)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from balise.app.kiosk import build_backend
from balise.ui.app import BaliseApp
from balise.ui.backend import KioskBackend
from balise.ui.deferred import deferred_backend
from tests.support.bounded_wait import until
from tests.support.box import Box
from tests.support.kiosk_support import ScriptedCards, ScriptedReaders

PREPARING = "Préparation de la base de données après une mise à jour"


async def test_accueil_says_the_database_is_being_prepared_then_shows_the_box(
    box: Box, tmp_path: Path
) -> None:
    migrated = threading.Event()
    opened: list[object] = []

    def build(busy: Callable[[], object]) -> KioskBackend:
        busy()  # the store copying and migrating
        assert migrated.wait(30)
        backend = build_backend(
            box.ctx,
            env={"BALISE_HOME": str(box.ctx.data_dir)},
            reader_watcher=ScriptedReaders(),
            card_watcher=ScriptedCards(),
        )
        opened.append(backend)
        return backend

    backend = deferred_backend(build)
    app = BaliseApp(backend)
    try:
        async with app.run_test(size=(110, 35)) as pilot:
            reader = app.screen.query_one("#reader")
            try:
                await until(
                    pilot, lambda: PREPARING in str(reader.render()), what="preparing words"
                )
                assert "Chargement" not in str(reader.render())
            finally:
                migrated.set()  # the box opens (also when the words did not come)
            await until(pilot, lambda: "Lecteur" in str(reader.render()), what="the box open")
            assert PREPARING not in str(reader.render())
            await pilot.pause(1.0)  # the preparing check runs again: the figures stay
            assert PREPARING not in str(reader.render())
    finally:
        migrated.set()
        backend.stop_watches()
    assert opened
