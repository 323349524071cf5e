"""A full disk fails closed and is said on Accueil. During sending, no lot is marked sent that
did not leave, the journal loses nothing, and once there is room again every lot leaves (the same
frozen bytes, the same Message-ID when it had already left). A real ENOSPC: the data dir on a
filled tmpfs (tests/support/small_fs.py), a real SMTP server (aiosmtpd, implicit TLS, AUTH)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from balise.adapters.kek import create_key_file
from balise.adapters.smtp import SmtpSender
from balise.app.agent import Agent
from balise.app.context import Context
from balise.app.kiosk import build_backend
from balise.domain.errors import DiskFullError
from balise.domain.lotstate import LotState
from balise.sim.pki import TestPKI
from balise.sim.smtpd import SmtpServer
from balise.ui.app import BaliseApp
from tests.support.balise_env import BaliseEnv
from tests.support.bounded_wait import until
from tests.support.box import configure_box
from tests.support.clock import TEST_TODAY
from tests.support.kiosk_support import ScriptedCards, ScriptedReaders
from tests.support.lot_corpus import valid_lot
from tests.support.mail_fixtures import TlsCA
from tests.support.signed_lots import configure_smtp, sign_lots
from tests.support.small_fs import SmallFs
from tests.support.transmission import HOST, HookedSender, frozen_mail, service

pytestmark = pytest.mark.mail


@pytest.fixture
def small_box(
    small_fs: Callable[[int], SmallFs], pki: TestPKI, tmp_path: Path
) -> Iterator[tuple[Context, SmallFs]]:
    """A configured box whose data dir lies on a 16 MiB tmpfs (the KEK stays outside)."""
    fs = small_fs(16 * 1024)
    kek = tmp_path / "balise.kek"
    create_key_file(kek)
    ctx = BaliseEnv(fs.root / "data", kek).context()
    configure_box(ctx, pki)
    try:
        yield ctx, fs
    finally:
        ctx.close()


def _states(ctx: Context, ids: list[int]) -> list[LotState]:
    return [ctx.lots.get(i).state for i in ids]  # type: ignore[union-attr]


async def test_a_full_disk_before_sending_sends_nothing_and_marks_nothing(
    small_box: tuple[Context, SmallFs], pki: TestPKI, smtp_implicit: SmtpServer, tls_ca: TlsCA
) -> None:
    ctx, fs = small_box
    configure_smtp(ctx, smtp_implicit, tls_ca)
    ids = sign_lots(ctx, pki, [1, 2])
    entries = [e.hash for e in ctx.journal.entries()]
    fs.fill()
    with pytest.raises(DiskFullError) as err:
        await service(ctx).send_pending("p1")
    assert err.value.code == "DISK_FULL" and "Disque plein" in err.value.message("fr")
    assert _states(ctx, ids) == [LotState.SIGNED] * 2
    assert smtp_implicit.received == []
    fs.free()
    outcome = await service(ctx).send_pending("p1")
    assert outcome.sent == tuple(ids)
    assert _states(ctx, ids) == [LotState.SENT] * 2
    assert len(smtp_implicit.wait_received(2)) == 2
    assert ctx.journal.verify().ok
    assert [e.hash for e in ctx.journal.entries()][: len(entries)] == entries  # nothing lost


class FillAfterFirst250(HookedSender):
    """A real SmtpSender; the disk fills up right after the server's first 250 (as another
    writer could fill it), before Balise records the lot as sent."""

    def __init__(self, inner: SmtpSender, fs: SmallFs) -> None:
        super().__init__(inner)
        self._fs = fs

    def accepted(self, index: int, on_accepted: Callable[[int], None]) -> None:
        if index == 0:
            self._fs.fill()
        on_accepted(index)


async def test_a_disk_filling_after_the_250_never_marks_sent_then_resends_the_same_mail(
    small_box: tuple[Context, SmallFs], pki: TestPKI, smtp_implicit: SmtpServer, tls_ca: TlsCA
) -> None:
    ctx, fs = small_box
    configure_smtp(ctx, smtp_implicit, tls_ca)
    [lot_id] = sign_lots(ctx, pki, [1])
    sender = FillAfterFirst250(SmtpSender(local_hostname=HOST, timeout=5), fs)
    with pytest.raises(DiskFullError):
        await service(ctx, sender=sender).send_pending("p1")
    [first] = smtp_implicit.wait_received(1)
    assert _states(ctx, [lot_id]) == [LotState.SENDING]  # left, but not recorded: never "sent"
    fs.free()
    outcome = await service(ctx).send_pending("p1")
    assert outcome.sent == (lot_id,)
    assert _states(ctx, [lot_id]) == [LotState.SENT]
    second = smtp_implicit.wait_received(2)[1]
    assert second.data == first.data == frozen_mail(ctx, lot_id)  # same bytes, same Message-ID
    assert ctx.journal.verify().ok


async def test_accueil_says_the_disk_is_full_and_stops_saying_it_when_room_is_back(
    small_box: tuple[Context, SmallFs], tmp_path: Path
) -> None:
    ctx, fs = small_box
    backend = build_backend(
        ctx,
        env={"BALISE_HOME": str(ctx.data_dir), "BALISE_KEK_FILE": str(tmp_path / "balise.kek")},
        reader_watcher=ScriptedReaders(),
        card_watcher=ScriptedCards(),
    )
    app = BaliseApp(backend)
    try:
        async with app.run_test(size=(100, 35)) as pilot:
            warnings = app.screen.query_one("#warnings")
            await until(
                pilot, lambda: "prêt(s) à signer" in str(app.screen.query_one("#lots").render())
            )
            assert "Disque plein" not in str(warnings.render())
            fs.fill()
            app.screen.refresh_summary()  # type: ignore[attr-defined]
            await until(pilot, lambda: "Disque plein" in str(warnings.render()), timeout=20)
            fs.free()
            app.screen.refresh_summary()  # type: ignore[attr-defined]
            await until(pilot, lambda: "Disque plein" not in str(warnings.render()), timeout=20)
    finally:
        backend.stop_watches()


def test_a_command_on_a_full_disk_with_the_database_closed_says_so_without_a_traceback(
    small_fs: Callable[[int], SmallFs], pki: TestPKI, tmp_path: Path
) -> None:
    fs = small_fs(16 * 1024)
    kek = tmp_path / "balise.kek"
    create_key_file(kek)
    env = BaliseEnv(fs.root / "data", kek)
    ctx = env.context()
    configure_box(ctx, pki)
    ctx.close()  # nobody holds the database: SQLite must create its -wal and -shm files
    fs.fill()
    listed = env.run("lots", "list")
    assert listed.returncode != 0
    assert "Disque plein" in listed.stderr + listed.stdout
    assert "Traceback" not in listed.stderr
    fs.free()
    assert env.run("lots", "list").returncode == 0


def test_the_agent_keeps_cycling_on_a_full_disk_and_takes_the_lot_once_there_is_room(
    small_box: tuple[Context, SmallFs], tmp_path: Path
) -> None:
    ctx, fs = small_box
    depot = ctx.data_dir / "echange" / "depot"
    (depot / "tmp").mkdir(parents=True, exist_ok=True)
    (depot / "new").mkdir(parents=True, exist_ok=True)
    (depot / "tmp" / "lot7.lot").write_bytes(valid_lot(TEST_TODAY, lot_number=7))
    (depot / "tmp" / "lot7.lot").rename(depot / "new" / "lot7.lot")
    env = {"BALISE_HOME": str(ctx.data_dir), "BALISE_KEK_FILE": str(tmp_path / "balise.kek")}
    logged: list[str] = []
    agent = Agent(ctx, env=env, interval_scale=0.001, log=logged.append)
    try:
        fs.fill()
        first = agent.cycle()  # every step fails on the disk; none stops the loop
        second = agent.cycle()
        assert "intake" in first.failed and not ctx.lots.lots()
        assert second is not None
        assert (depot / "new" / "lot7.lot").exists()  # nothing taken, nothing lost
        assert any("Disque plein" in line for line in logged)
        fs.free()
        time.sleep(0.2)  # past the step's backoff (scaled down)
        agent.cycle()
        assert [lot.lot_number for lot in ctx.lots.lots()] == ["007"]
        assert ctx.journal.verify().ok
    finally:
        agent.close()


def test_the_disk_full_alert_ends_by_itself_once_there_is_room(
    small_box: tuple[Context, SmallFs], tmp_path: Path
) -> None:
    from balise.services.alerting import raise_once
    from balise.services.tracking import AUTO_RESOLVER

    ctx, fs = small_box
    tracking = ctx.tracking()
    # A service met the full disk while the database could still take its alert.
    alerts = ctx.returns_store
    raised = raise_once(
        alerts,
        ctx.journal,
        alerts.transaction(),
        ctx.clock.now().isoformat(),
        "disk_full",
        "intake",
        ("Disque plein : le dépôt n'est pas traité", "Disk full: the depot is not processed"),
        {},
    )
    assert raised is not None
    env = {"BALISE_HOME": str(ctx.data_dir), "BALISE_KEK_FILE": str(tmp_path / "balise.kek")}
    agent = Agent(ctx, env=env, interval_scale=0.001, log=lambda _line: None)
    try:
        fs.fill()
        agent.cycle()  # still full: the alert stays, Accueil keeps counting it
        assert [a.id for a in tracking.alerts() if a.kind == "disk_full"] == [raised]
        fs.free()
        agent.cycle()
    finally:
        agent.close()
    assert not [a for a in tracking.alerts() if a.kind == "disk_full"]
    [alert] = [a for a in tracking.alerts(include_acknowledged=True) if a.id == raised]
    assert alert.acknowledged_by == AUTO_RESOLVER
    resolved = [e for e in ctx.journal.entries() if e.kind == "alert.resolved"]
    assert [json.loads(e.details)["reason"] for e in resolved] == ["space_recovered"]
