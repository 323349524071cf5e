"""The exchange account's sshd configuration (role exchange), run as a private sshd on loopback.

The real template is rendered, the real OpenSSH server and clients are used: key accepted,
password refused, no shell, no forwarding, chroot holds, depot/ writable, retours/ read-only.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from balise.sim.netutil import free_tcp_port
from tests.image.roles import render

pytestmark = pytest.mark.image

ROLE = Path(__file__).resolve().parents[2] / "ansible" / "roles" / "exchange"


@dataclass
class Exchange:
    root: Path
    chroot: Path
    port: int
    user: str
    key: Path

    def ssh_args(self, *extra: str) -> list[str]:
        return [
            "-F", "/dev/null",
            "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=10",
            "-o", "LogLevel=ERROR",
            *extra,
        ]  # fmt: skip

    def sftp(self, batch: str) -> subprocess.CompletedProcess[str]:
        script = self.root / f"batch-{uuid.uuid4().hex}"
        script.write_text(batch, encoding="utf-8")
        return subprocess.run(
            [
                "sftp",
                *self.ssh_args("-o", "IdentitiesOnly=yes", "-i", str(self.key)),
                "-P",
                str(self.port),
                "-b",
                str(script),
                f"{self.user}@127.0.0.1",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def ssh(self, *args: str, key: bool = True) -> subprocess.CompletedProcess[str]:
        auth = ["-o", "IdentitiesOnly=yes", "-i", str(self.key)] if key else []
        return subprocess.run(
            ["ssh", *self.ssh_args(*auth), "-p", str(self.port), f"{self.user}@127.0.0.1", *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )


@pytest.fixture(scope="module")
def exchange() -> Iterator[Exchange]:
    # StrictModes and ChrootDirectory refuse any tree under the world-writable /tmp.
    root = Path(tempfile.mkdtemp(prefix="balise-exchange-test-", dir="/var/lib"))
    root.chmod(0o755)
    user = f"bx{uuid.uuid4().hex[:8]}"
    subprocess.run(["groupadd", "--system", user], check=True)
    proc: subprocess.Popen[str] | None = None
    try:
        # "*" not "!": a locked account is refused by sshd even with a valid key.
        subprocess.run(
            ["useradd", "--system", "-g", user, "-M", "-d", "/", "-s", "/usr/sbin/nologin",
             "-p", "*", user],
            check=True,
        )  # fmt: skip
        etc, chroot = root / "etc", root / "exchange"
        for d in (etc, chroot, chroot / "depot"):
            d.mkdir()
            d.chmod(0o755)
        for sub, mode in (("depot/tmp", 0o2770), ("depot/new", 0o2770), ("retours", 0o2750)):
            (chroot / sub).mkdir()
            shutil.chown(chroot / sub, user if sub.startswith("depot") else "root", user)
            (chroot / sub).chmod(mode)
        (chroot / "retours" / "statut-lot-1.txt").write_text("ARL positif\n", encoding="utf-8")
        (chroot / "retours" / "statut-lot-1.txt").chmod(0o640)
        shutil.chown(chroot / "retours" / "statut-lot-1.txt", "root", user)
        keys = root / "keys"
        keys.mkdir(mode=0o700)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(etc / "host")], check=True
        )
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "id")], check=True
        )
        port = free_tcp_port()
        values = {
            "exchange_listen_address": "127.0.0.1",
            "exchange_port": port,
            "exchange_host_key": str(etc / "host"),
            "exchange_user": user,
            "exchange_config_dir": str(etc),
            "exchange_chroot": str(chroot),
        }
        (etc / "sshd_config").write_text(
            render(ROLE / "templates" / "sshd_config.j2", **values), encoding="utf-8"
        )
        pub = (keys / "id.pub").read_text(encoding="utf-8").strip()
        (etc / "authorized_keys").write_text(
            render(ROLE / "templates" / "authorized_keys.j2", exchange_authorized_keys=[pub]),
            encoding="utf-8",
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        check = subprocess.run(
            ["/usr/sbin/sshd", "-t", "-f", str(etc / "sshd_config")], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stderr
        proc = subprocess.Popen(
            ["/usr/sbin/sshd", "-D", "-e", "-f", str(etc / "sshd_config")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.05)
        else:
            pytest.fail("the private sshd did not listen within 10 s")
        yield Exchange(root, chroot, port, user, keys / "id")
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        subprocess.run(["userdel", user], check=False, capture_output=True)
        subprocess.run(["groupdel", user], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


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
    assert names == {"depot", "retours"}
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
