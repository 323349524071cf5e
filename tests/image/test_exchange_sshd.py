"""The exchange account's sshd configuration (role exchange), run as a private sshd on loopback.

The real template is rendered, the real OpenSSH server and clients are used: key accepted,
password refused, no shell, no TCP forwarding, chroot holds, depot/ writable, retours/ read-only.
The one forward the account has, to the card relay's socket, is tested with the image's own sshd
in tests/image/test_relay_ssh.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.support.exchange_sshd import ExchangeAccount as Exchange
from tests.support.exchange_sshd import exchange_account

pytestmark = pytest.mark.image


@pytest.fixture(scope="module")
def exchange() -> Iterator[Exchange]:
    with exchange_account() as account:
        status = account.chroot / "retours" / "statut-lot-1.txt"
        status.write_text("ARL positif\n", encoding="utf-8")
        status.chmod(0o640)
        shutil.chown(status, "root", account.user)
        yield account


def test_key_accepted_lot_dropped_maildir_style(exchange: Exchange) -> None:
    lot = exchange.root / "lot-0001.b2"
    lot.write_bytes(b"lot de test\n")
    result = exchange.sftp(
        f"put {lot} depot/tmp/lot-0001.b2\nrename depot/tmp/lot-0001.b2 depot/new/lot-0001.b2\n"
    )
    assert result.returncode == 0, result.stderr
    assert (exchange.chroot / "depot" / "new" / "lot-0001.b2").read_bytes() == b"lot de test\n"


def test_password_refused(exchange: Exchange) -> None:
    result = exchange.ssh(
        "-o", "PubkeyAuthentication=no",
        "-o", "PreferredAuthentications=password,keyboard-interactive",
        "true", key=False,
    )  # fmt: skip
    assert result.returncode == 255
    assert "Permission denied (publickey)" in result.stderr


def test_shell_and_commands_refused(exchange: Exchange) -> None:
    result = exchange.ssh("echo", "shell-reached")
    assert "shell-reached" not in result.stdout
    assert "sftp connections only" in (result.stdout + result.stderr)
    tty = exchange.ssh("-tt")
    assert tty.returncode != 0


def test_forwarding_refused(exchange: Exchange) -> None:
    result = exchange.ssh("-W", f"127.0.0.1:{exchange.port}")
    assert result.returncode != 0
    assert "SSH-2.0" not in result.stdout  # nothing reached the forwarded address


def test_chroot_holds(exchange: Exchange) -> None:
    listing = exchange.sftp("cd /../../..\nls -1 /\n")
    assert listing.returncode == 0, listing.stderr
    names = {
        line.strip().lstrip("/")
        for line in listing.stdout.splitlines()
        if line.strip() and not line.startswith("sftp>")
    }
    assert names == {"depot", "retours", "sauvegardes"}  # the balise role's tmpfiles
    outside = exchange.sftp(f"get /etc/passwd {exchange.root / 'stolen'}\n")
    assert outside.returncode != 0
    assert not (exchange.root / "stolen").exists()


def test_retours_read_only(exchange: Exchange) -> None:
    got = exchange.sftp(f"get retours/statut-lot-1.txt {exchange.root / 'statut.txt'}\n")
    assert got.returncode == 0, got.stderr
    assert (exchange.root / "statut.txt").read_text(encoding="utf-8") == "ARL positif\n"
    forged = exchange.root / "forged.txt"
    forged.write_text("ARL positif (faux)\n", encoding="utf-8")
    put = exchange.sftp(f"put {forged} retours/statut-lot-2.txt\n")
    assert put.returncode != 0
    assert "Permission denied" in put.stderr
    assert not (exchange.chroot / "retours" / "statut-lot-2.txt").exists()
    removed = exchange.sftp("rm retours/statut-lot-1.txt\n")
    assert removed.returncode != 0
    assert (exchange.chroot / "retours" / "statut-lot-1.txt").exists()
