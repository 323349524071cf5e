"""The alert screen of a stopped boot (`balise kiosk --alerte FICHIER`): what balise-firstboot
left in /run is said in French on tty1, its reason shown as plain text (never markup), and no
key leaves it. The image tier shows it on a real box after the recovery key (tests/image)."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Static

from balise.cli.kiosk import read_boot_stop
from balise.ui.screens.boot_alert import (
    MAX_REASON_BYTES,
    BootAlertApp,
    BootStop,
    parse_boot_stop,
)

HOSTILE = "clé [bold]refusée[/bold] [@click=app.quit]ici[/] {why}"


def _shown(app: BootAlertApp) -> str:
    return "\n".join(str(w.render()) for w in app.screen.query(Static))


async def test_recovery_key_boot_says_what_happened_and_shows_the_reason_literally() -> None:
    raw = f"etat=secours\nracine=V\nraison={HOSTILE}\n".encode()
    app = BootAlertApp(parse_boot_stop(raw))
    async with app.run_test(size=(100, 35)) as pilot:
        await pilot.pause()
        shown = _shown(app)
        assert "Ce boîtier a démarré avec la clé de secours du technicien" in shown, shown
        assert "la puce TPM n'a pas reconnu le système" in shown
        assert "les paramètres restent fermés" in shown
        assert "Appelez votre technicien" in shown
        # The reason as balise-firstboot wrote it, brackets and braces included.
        assert f"Raison : {HOSTILE}" in shown, shown
        assert "re-flashé" not in shown  # the root was verified: no re-flash asked
        # No key leaves it: the quit keys only say so, the app still runs.
        await pilot.press("ctrl+q", "ctrl+c", "escape", "q", "enter")
        await pilot.pause()
        assert app.is_running
        assert "Ce boîtier a démarré avec la clé de secours" in _shown(app)


async def test_root_refused_by_dm_verity_asks_for_a_re_flash_and_a_restore() -> None:
    raw = b"etat=refus\nracine=C\nraison=la puce TPM a refus\xc3\xa9 ce d\xc3\xa9marrage\n"
    app = BootAlertApp(parse_boot_stop(raw))
    async with app.run_test(size=(100, 35)) as pilot:
        await pilot.pause()
        shown = _shown(app)
        assert "Démarrage refusé par la puce TPM" in shown, shown
        assert "la partition de données reste fermée, rien n'est effacé" in shown
        assert "Le système de ce boîtier a été modifié" in shown
        assert "réinstallé (re-flashé) puis restauré depuis la dernière sauvegarde" in shown


def test_reason_file_read_with_bounds(tmp_path: Path) -> None:
    assert read_boot_stop(str(tmp_path / "absent"), MAX_REASON_BYTES) is None
    assert parse_boot_stop(None) == BootStop("echec", False, "")
    # An unknown state, control characters and a flood: read as a stop, bounded, printable.
    big = tmp_path / "raison"
    big.write_bytes(b"etat=autre\nraison=a\x1b[2Jb" + b"x" * 10_000 + b"\netat=secours\n")
    raw = read_boot_stop(str(big), MAX_REASON_BYTES)
    assert raw is not None and len(raw) == MAX_REASON_BYTES
    stop = parse_boot_stop(raw)
    assert stop.state == "echec" and not stop.root_modified
    assert stop.reason.startswith("a[2Jb") and len(stop.reason) <= 400
