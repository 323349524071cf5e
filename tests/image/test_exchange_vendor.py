"""The practice software's side of docs/exchange.md, end to end: the reference client
(examples/balise_echange.py, run as the vendor would run it, with Debian's python3 and OpenSSH's
sftp) in the practice's network namespace reaches the box's exchange account — the role's real
sshd in the box's namespace, on its LAN address — drops a good lot and a bad one the documented
way, and reads what the box's intake and agent (running on the chroot's files) wrote: the
receipts (the lot id; the refusal codes), the lot status after its ARL, and etat.json, each
checked against the JSON Schema files."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from balise.sim.dovecot import DovecotServer
from tests.support.box import EMITTER, Box
from tests.support.clock import TEST_TODAY
from tests.support.exchange_schemas import validator
from tests.support.exchange_sshd import ExchangeAccount, exchange_account
from tests.support.lot_corpus import valid_lot
from tests.support.mail_fixtures import TlsCA
from tests.support.purge_support import arl_mail, configure_pop3, make_sent

pytestmark = [pytest.mark.image, pytest.mark.mail]

CLIENT = Path(__file__).resolve().parents[2] / "examples" / "balise_echange.py"
BOX_LAN, PRACTICE_LAN = "10.213.9.1", "10.213.9.2"
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable


@pytest.fixture
def lan() -> Iterator[tuple[str, str]]:
    """Two network namespaces joined by a veth pair: the box's and the practice's."""
    tag = uuid.uuid4().hex[:6]
    box, practice = f"bxv-box-{tag}", f"bxv-lan-{tag}"
    made: list[list[str]] = []
    try:
        for ns in (box, practice):
            subprocess.run(["ip", "netns", "add", ns], check=True)
            made.append(["ip", "netns", "del", ns])
        vbox, vlan = f"xvb{tag}", f"xvl{tag}"
        subprocess.run(["ip", "link", "add", "name", vbox, "netns", box, "type", "veth",
                        "peer", "name", vlan, "netns", practice], check=True)  # fmt: skip
        for ns, dev, address in ((box, vbox, BOX_LAN), (practice, vlan, PRACTICE_LAN)):
            for args in (["addr", "add", f"{address}/24", "dev", dev],
                         ["link", "set", dev, "up"], ["link", "set", "lo", "up"]):  # fmt: skip
                subprocess.run(["ip", "-n", ns, *args], check=True)
        yield box, practice
    finally:
        for argv in reversed(made):
            subprocess.run(argv, check=False, capture_output=True)


@pytest.fixture
def account(lan: tuple[str, str]) -> Iterator[ExchangeAccount]:
    with exchange_account(BOX_LAN, 22, netns=lan[0]) as made:
        yield made


def _client(account: ExchangeAccount, practice: str, *args: str) -> subprocess.Popen[str]:
    argv = [
        "ip", "netns", "exec", practice, PYTHON, str(CLIENT),
        "--hote", account.host, "--port", str(account.port), "--utilisateur", account.user,
        "--cle", str(account.key), "--hotes-connus", str(account.known_hosts()), "--json", *args,
    ]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _done(proc: subprocess.Popen[str]) -> tuple[int, list[dict[str, object]], str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, [json.loads(line) for line in out.splitlines() if line], err


def _valid(kind: str, document: object) -> None:
    errors = [f"{list(e.path)}: {e.message}" for e in validator(kind).iter_errors(document)]
    assert not errors, errors


def test_the_practice_software_drops_lots_and_reads_receipts_status_and_state(
    box: Box,
    account: ExchangeAccount,
    lan: tuple[str, str],
    mailboxes: DovecotServer,
    tls_ca: TlsCA,
    tmp_path: Path,
) -> None:
    env = {**box.env.env, "BALISE_EXCHANGE": str(account.chroot)}
    configure_pop3(box.ctx, mailboxes, tls_ca)
    vendor = tmp_path / "logiciel"
    vendor.mkdir()
    (vendor / "lot-0041.b2").write_bytes(valid_lot(TEST_TODAY, lot_number=41))
    (vendor / "lot-0042.b2").write_bytes(b"ceci n'est pas un lot\n")
    new = account.chroot / "depot" / "new"

    # The client drops both, then waits for their receipts; the box takes what arrives.
    client = _client(account, lan[1], "deposer", str(vendor / "lot-0041.b2"),
                     str(vendor / "lot-0042.b2"), "--attendre", "60")  # fmt: skip
    for _ in range(600):
        if any(new.iterdir()):
            taken = box.env.run("intake", "--once", env=env)
            assert taken.returncode == 0, taken.stdout + taken.stderr
        if client.poll() is not None:
            break
        time.sleep(0.1)
    code, receipts, err = _done(client)
    assert code == 1, err  # one file refused
    assert not list((account.chroot / "depot" / "tmp").iterdir())  # renamed, not left in tmp
    by_name = {str(r["fichier"]): r for r in receipts}
    for receipt in receipts:
        _valid("recu", receipt)
    accepted, refused = by_name["lot-0041.b2"], by_name["lot-0042.b2"]
    [lot] = box.ctx.lots.lots()
    assert accepted["resultat"] == "accepte"
    assert isinstance(accepted["lot"], dict) and accepted["lot"]["id"] == lot.id
    assert refused["resultat"] == "refuse" and refused["lot"] is None
    codes = _codes(refused)
    assert codes and all(code.startswith("LOT_") for code in codes)

    # The lot goes out and its ARL comes back: the agent purges, publishes its status, and
    # refreshes etat.json.
    make_sent(box.ctx, lot.id)
    mailboxes.deliver("bal1", arl_mail(41))
    cycle = box.env.run("agent", "--once", env=env)
    assert cycle.returncode == 0, cycle.stdout + cycle.stderr
    status_path = str(accepted["lot"]["statut"])
    assert status_path == f"retours/{EMITTER}/lot-{lot.lot_date}-041.statut.json"

    code, [listing], err = _done(_client(account, lan[1], "lister", f"retours/{EMITTER}"))
    assert code == 0, err
    assert Path(status_path).name in listing["fichiers"]  # type: ignore[operator]
    code, [status, report], err = _done(
        _client(account, lan[1], "lire", status_path, str(refused["rapport"]))
    )
    assert code == 0, err
    _valid("statut", status)
    assert status["etat"] == "acknowledged" and status["lot"] == "041"
    assert "Fichier refusé : lot-0042.b2" in str(report["contenu"])

    code, [state], err = _done(_client(account, lan[1], "etat"))
    assert code == 0, err
    _valid("etat", state)
    assert isinstance(state["praticiens"], list)
    [p1] = state["praticiens"]
    assert p1["emetteur"] == EMITTER and p1["derniere_releve"] is not None

    # The words of the client, as a secretary reads them.
    words = subprocess.run(
        ["ip", "netns", "exec", lan[1], PYTHON, str(CLIENT), "--hote", account.host,
         "--utilisateur", account.user, "--cle", str(account.key),
         "--hotes-connus", str(account.known_hosts()), "etat"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert words.returncode == 0, words.stderr
    assert "p1 : relève 20" in words.stdout


def _codes(receipt: dict[str, object]) -> set[str]:
    motifs = receipt["motifs"]
    assert isinstance(motifs, list)
    return {str(m["code"]) for m in motifs}
