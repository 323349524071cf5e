"""The exchange account as the box serves it, for the image tier: the role exchange's real
sshd_config and authorized_keys templates rendered, the real OpenSSH server started privately
(``sshd -D``) over a chroot laid out like the balise role's tmpfiles, a throwaway system account.
Root only (useradd, a root-owned chroot under /var/lib, network namespaces).

``netns`` (optional): the name of a network namespace (made by the caller) to run sshd in, so
that it listens on a LAN address there rather than on loopback."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.image.roles import render, role_defaults

ROLE = Path(__file__).resolve().parents[2] / "ansible" / "roles" / "exchange"
# (folder, owner is the exchange user, mode) as the balise role's tmpfiles make them.
LAYOUT = (
    ("depot", False, 0o755),
    ("depot/tmp", True, 0o2770),
    ("depot/new", True, 0o2770),
    ("depot/ecartes", True, 0o2770),
    ("retours", False, 0o2750),
    ("sauvegardes", False, 0o2750),
)


@dataclass
class ExchangeAccount:
    root: Path
    chroot: Path
    host: str
    port: int
    user: str
    key: Path
    host_key: Path
    netns: str | None = None

    def known_hosts(self) -> Path:
        """A known_hosts file pinning the box's host key (what the practice software keeps)."""
        path = self.root / "known_hosts"
        public = (self.host_key.parent / f"{self.host_key.name}.pub").read_text().split()
        where = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        path.write_text(f"{where} {public[0]} {public[1]}\n", encoding="utf-8")
        return path

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
                f"{self.user}@{self.host}",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def ssh(self, *args: str, key: bool = True) -> subprocess.CompletedProcess[str]:
        auth = ["-o", "IdentitiesOnly=yes", "-i", str(self.key)] if key else []
        return subprocess.run(
            ["ssh", *self.ssh_args(*auth), "-p", str(self.port), f"{self.user}@{self.host}", *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )


def _listening(host: str, port: int, netns: str | None) -> bool:
    if netns is None:
        with socket.socket() as s:
            return s.connect_ex((host, port)) == 0
    probe = f"import socket; s = socket.socket(); s.settimeout(2); s.connect(({host!r}, {port}))"
    done = subprocess.run(
        ["ip", "netns", "exec", netns, "/usr/bin/python3", "-c", probe],
        capture_output=True,
        timeout=10,
        check=False,
    )
    return done.returncode == 0


@contextmanager
def exchange_account(
    host: str = "127.0.0.1", port: int | None = None, netns: str | None = None
) -> Iterator[ExchangeAccount]:
    """The account, its chroot and its private sshd; everything removed afterwards."""
    from balise.sim.netutil import free_tcp_port

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
        for d in (etc, chroot):
            d.mkdir()
            d.chmod(0o755)
        for sub, owned, mode in LAYOUT:
            (chroot / sub).mkdir()
            shutil.chown(chroot / sub, user if owned else "root", user if mode & 0o2000 else "root")
            (chroot / sub).chmod(mode)
        keys = root / "keys"
        keys.mkdir(mode=0o700)
        for path in (etc / "host", keys / "id"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                           check=True)  # fmt: skip
        port = port or free_tcp_port()
        values = {
            **role_defaults(ROLE),
            "exchange_listen_address": host,
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
            ["/usr/sbin/sshd", "-t", "-f", str(etc / "sshd_config")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert check.returncode == 0, check.stderr
        inside = ["ip", "netns", "exec", netns] if netns else []
        proc = subprocess.Popen(
            [*inside, "/usr/sbin/sshd", "-D", "-e", "-f", str(etc / "sshd_config")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(100):
            if _listening(host, port, netns):
                break
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.1)
        else:
            raise AssertionError("the private sshd did not listen after 100 tries")
        yield ExchangeAccount(root, chroot, host, port, user, keys / "id", etc / "host", netns)
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
