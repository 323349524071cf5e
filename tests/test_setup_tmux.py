"""A person who has never seen Balise sets up a box from its first start to the first lot sent with
only the kiosk and their CPS card: the real `balise demo --mise-en-service` (no practitioner, the
demo card in pcscd's virtual reader, Dovecot and the OCT simulator holding the BAL) in a real
terminal (tmux), driven by keys only, reading what the screen says."""

from __future__ import annotations

import shlex
import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from balise.app.demo import demo_lots, drop_lots
from balise.sim.pcscd import running_pcscd_pids
from tests.support.demo_support import BALISE, processes_mentioning
from tests.support.tmux import DEMO_MARKS, QUIT_TIMEOUT_S, START_TIMEOUT_S, Terminal

pytestmark = DEMO_MARKS


@pytest.fixture
def setup_terminal() -> Iterator[Terminal]:
    term = Terminal(f"balise-setup-test-{uuid.uuid4().hex[:12]}")
    try:
        yield term
    finally:
        if term.alive():
            term.kill()  # SIGHUP: the demo stops everything it started
            deadline = time.monotonic() + QUIT_TIMEOUT_S
            while running_pcscd_pids() and time.monotonic() < deadline:  # bounded
                time.sleep(0.2)


def sheet(base: Path) -> dict[str, str]:
    """The settings the demo's mail host handed over (its mise-en-service.txt)."""
    lines = (base / "mise-en-service.txt").read_text(encoding="utf-8").splitlines()[1:]
    return {k.strip(): v.strip() for k, _, v in (line.partition(" : ") for line in lines)}


FIELD_TRIES = 3


def field(term: Terminal, value: str, *, secret: bool = False) -> None:
    """Whatever the field holds erased (Ctrl+U: its default, the cursor being at its end), the
    value typed and seen on the screen (a secret as its dots), then Entrée. On a loaded machine
    keys sent while the focus is still moving to the field can be lost (a person would see the
    field empty and type again): typed again, at most FIELD_TRIES times."""
    shown = "•" * len(value) if secret else value
    for attempt in range(FIELD_TRIES):
        term.press("C-u")
        term.type(value)
        try:
            term.wait_for(shown, timeout=8)
            break
        except pytest.fail.Exception:
            if attempt == FIELD_TRIES - 1:
                raise
            time.sleep(0.5)
    term.press("Enter")
    time.sleep(0.5)


@pytest.mark.usefixtures("pcscd_for_demo")
def test_a_newcomer_sets_up_the_box_with_the_card_and_sends_the_first_lots(
    setup_terminal: Terminal, tmp_path: Path
) -> None:
    term = setup_terminal
    base = tmp_path / "demo"
    term.start(f"{shlex.quote(str(BALISE))} demo --mise-en-service --dir {shlex.quote(str(base))}")

    # No practitioner: the wizard is there by itself and asks for the card.
    term.wait_for("Mise en service du boîtier", "Insérez votre carte CPS", timeout=START_TIMEOUT_S)
    given = sheet(base)
    term.press("c")  # the demo's key: the virtual card goes into the reader
    term.wait_for("Carte de", "RPPS 10001234567", "Entrée : taper votre code PIN")
    term.press("Enter")
    term.wait_for("Code de la carte (PIN)")
    term.type(given["Code PIN de la carte"])
    term.press("Enter")
    term.wait_for("Carte authentifiée", "Adresse de la BAL")
    time.sleep(0.5)  # the first field takes the focus once painted

    for name in (
        "Adresse de la BAL",
        "Mot de passe de la BAL",
        "Serveur SMTP",
        "Port SMTP",
        "TLS SMTP",
        "Serveur POP3",
        "Port POP3",
        "TLS POP3",
    ):
        field(term, given[name], secret=name == "Mot de passe de la BAL")
    term.wait_for("Connexion réussie", "identifiants acceptés", "connexion acceptée")
    term.press("Enter")
    term.wait_for("Numéro d'émetteur")
    field(term, given["Numéro d'émetteur"])
    term.wait_for("Organismes déjà configurés", "cpam422")
    term.press("Enter")
    screen = term.wait_for("Récapitulatif", "Entrée : enregistrer")
    assert given["Mot de passe de la BAL"] not in screen
    term.press("Enter")
    screen = term.wait_for("Réglages enregistrés et journalisés", "plus jamais affichée")
    term.press("Enter")
    term.wait_for("Accueil", "Carte : carte CPS3")

    # The practice software drops its lots; the box signs and sends them with the same card.
    drop_lots(base / "echange", demo_lots(date.today()))
    term.wait_for("5 prêt(s) à signer", nudge=True, timeout=60)
    term.press("s")
    term.wait_for("Code de la carte (PIN)")
    term.type(given["Code PIN de la carte"])
    term.press("Enter")
    term.wait_for("Lots à signer pour p1")
    term.press("Enter")
    term.wait_for("Signer 5 lot(s)")
    term.press("Enter")
    term.wait_for("5 lot(s) signé(s)", "5 lot(s) envoyé(s)", "Retirez votre carte")

    term.press("C-q")
    deadline = time.monotonic() + QUIT_TIMEOUT_S
    while term.alive():  # bounded by the deadline
        assert time.monotonic() < deadline, term.screen()
        time.sleep(0.2)
    assert running_pcscd_pids() == []
    assert processes_mentioning(str(base)) == []
