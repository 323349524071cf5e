"""The provisioning window's root helper (role provisioning) for real: the kiosk's request taken
from the spool, the role's sshd configuration run as a private sshd, the hardening role's
nftables ruleset, all inside two private network namespaces joined by a veth pair (the box and
a technician's laptop on the practice LAN); never this machine's own network.

Key accepted, password and unknown keys refused, nothing forwarded; the port reachable from the
LAN only while the window is open; the early close (kiosk), the close armed from the SSH session
(provision.yml) and the deadline each stop sshd, end the sessions and empty the nftables set.
The helper runs with its "direct" runner (no systemd as PID 1 here): sshd and the closer are
plain processes instead of units, the rest is the code the box runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from balise.adapters.provisioning import SpoolWindow
from balise.sim.netutil import free_tcp_port
from tests.image.roles import render, role_defaults

pytestmark = pytest.mark.image

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "ansible" / "roles" / "provisioning"
HARDENING = REPO / "ansible" / "roles" / "hardening"
HELPER = ROLE / "files" / "balise-provisioning-window"
BOX_LAN, LAPTOP_LAN = "10.213.7.1", "10.213.7.2"  # in the hardening role's LAN sets
BOX_WAN, LAPTOP_WAN = "100.64.7.1", "100.64.7.2"  # outside them (carrier-grade NAT range)
DURATION_S = 6


def _run(*argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


@dataclass
class Window:
    root: Path
    run_dir: Path
    config: Path
    host_key: Path
    port: int
    box: str  # network namespace of the box
    laptop: str  # network namespace of the technician's laptop
    interface: str
    user: str  # a locked account ("!"), as root is on the box
    key: Path
    stranger: Path

    def helper(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return _run("ip", "netns", "exec", self.box, "/usr/bin/python3", str(HELPER),
                    "--config", str(self.config), *args, timeout=timeout)  # fmt: skip

    def ssh(self, *args: str, user: str | None = None, key: Path | None = None,
            to: str = BOX_LAN, source: str = LAPTOP_LAN, timeout: float = 30,
            ) -> subprocess.CompletedProcess[str]:  # fmt: skip
        return _run(*self.ssh_argv(*args, user=user, key=key, to=to, source=source),
                    timeout=timeout)  # fmt: skip

    def ssh_argv(self, *args: str, user: str | None = None, key: Path | None = None,
                 to: str = BOX_LAN, source: str = LAPTOP_LAN) -> list[str]:  # fmt: skip
        auth = ["-o", "IdentitiesOnly=yes", "-i", str(key or self.key)]
        return [
            "ip", "netns", "exec", self.laptop, "ssh", "-F", "/dev/null",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=3", "-o", "LogLevel=ERROR",
            "-b", source, *auth, "-p", str(self.port), f"{user or self.user}@{to}", *args,
        ]  # fmt: skip

    def reachable(self, to: str = BOX_LAN, source: str = LAPTOP_LAN) -> bool:
        """A TCP connection from the laptop to the window's port, within 2 s."""
        probe = (
            "import socket, sys\n"
            "s = socket.socket(); s.settimeout(2); s.bind((sys.argv[1], 0))\n"
            "sys.exit(s.connect_ex((sys.argv[2], int(sys.argv[3]))))\n"
        )
        result = _run("ip", "netns", "exec", self.laptop, "/usr/bin/python3", "-c", probe,
                      source, to, str(self.port))  # fmt: skip
        return result.returncode == 0

    def nft_set(self) -> str:
        result = _run("ip", "netns", "exec", self.box, "nft", "list", "set", "inet", "balise",
                      "provisioning_in")  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout

    def sshd_pid(self) -> int | None:
        try:
            pid = int((self.run_dir / "sshd.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if Path(f"/proc/{pid}").exists() else None

    def state(self) -> dict[str, object]:
        loaded: dict[str, object] = json.loads((self.run_dir / "state.json").read_text())
        return loaded

    def wait_closed(self, timeout: float) -> dict[str, object]:
        for _ in range(int(timeout / 0.1)):
            if (self.run_dir / "state.json").exists() and self.state()["state"] == "closed":
                return self.state()
            time.sleep(0.1)
        raise AssertionError(f"window still open after {timeout} s: {self.state()}")


@pytest.fixture(scope="module")
def window() -> Iterator[Window]:
    tag = uuid.uuid4().hex[:6]
    box, laptop, vbox, vlaptop = f"bpw-box-{tag}", f"bpw-lan-{tag}", f"pwb{tag}", f"pwl{tag}"
    # StrictModes refuses keys under the world-writable /tmp.
    root = Path(tempfile.mkdtemp(prefix="balise-provisioning-test-", dir="/var/lib"))
    root.chmod(0o755)
    user = f"bp{tag}"
    made: list[list[str]] = []
    try:
        for ns in (box, laptop):
            subprocess.run(["ip", "netns", "add", ns], check=True)
            made.append(["ip", "netns", "del", ns])
        subprocess.run(["ip", "link", "add", "name", vbox, "netns", box, "type", "veth",
                        "peer", "name", vlaptop, "netns", laptop], check=True)  # fmt: skip
        for ns, dev, lan, wan in ((box, vbox, BOX_LAN, BOX_WAN), (laptop, vlaptop, LAPTOP_LAN, LAPTOP_WAN)):  # fmt: skip
            for args in (["addr", "add", f"{lan}/24", "dev", dev],
                         ["addr", "add", f"{wan}/24", "dev", dev],
                         ["link", "set", dev, "up"], ["link", "set", "lo", "up"]):  # fmt: skip
                subprocess.run(["ip", "-n", ns, *args], check=True)
        # "!" as root has on the box: sshd with UsePAM no would refuse it even with a key.
        subprocess.run(["useradd", "--system", "-M", "-d", "/", "-s", "/bin/sh", "-p", "!", user],
                       check=True)  # fmt: skip
        made.append(["userdel", user])

        etc, run_dir, keys = root / "etc", root / "run", root / "keys"
        for d in (etc, run_dir):
            d.mkdir(mode=0o755)
        keys.mkdir(mode=0o700)
        # The modes of the role's tmpfiles (root's spool, the kiosk's group may write tmp, new).
        for sub, mode in (("spool", 0o750), ("spool/tmp", 0o770), ("spool/new", 0o770)):
            (run_dir / sub).mkdir()
            (run_dir / sub).chmod(mode)
        for name in ("technician", "stranger"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)],
                           check=True)  # fmt: skip
        port = free_tcp_port()
        host_key = etc / "ssh_host_ed25519_key"
        values = {
            **role_defaults(ROLE),
            "provisioning_config_dir": str(etc),
            "provisioning_run_dir": str(run_dir),
            "provisioning_host_key": str(host_key),
            # root runs the helper from the session (provision.yml's way); the locked account
            # shows a "!" password does not stop a key.
            "provisioning_user": f"root {user}",
            "provisioning_port": port,
            "provisioning_duration": DURATION_S,
            "provisioning_lan_interface": vbox,
            "provisioning_authorized_keys": [(keys / "technician.pub").read_text().strip()],
        }
        for name in ("sshd_config", "authorized_keys"):
            (etc / name).write_text(render(ROLE / "templates" / f"{name}.j2", **values))
        config = json.loads(render(ROLE / "templates" / "window.json.j2", **values))
        assert config["runner"] == "systemd"  # what the box uses
        config["runner"] = "direct"
        (etc / "window.json").write_text(json.dumps(config))
        hardening = {**role_defaults(HARDENING)}
        (root / "nftables.conf").write_text(
            render(HARDENING / "templates" / "nftables.conf.j2", **hardening)
        )
        loaded = _run("ip", "netns", "exec", box, "nft", "-f", str(root / "nftables.conf"))
        assert loaded.returncode == 0, loaded.stderr
        yield Window(root, run_dir, etc / "window.json", host_key, port, box, laptop, vbox,
                     user, keys / "technician", keys / "stranger")  # fmt: skip
    finally:
        if (root / "etc" / "window.json").exists():
            _run("ip", "netns", "exec", box, "/usr/bin/python3", str(HELPER),
                 "--config", str(root / "etc" / "window.json"), "close")  # fmt: skip
        _end_processes_of(user)  # a session a failed test left behind would keep the user
        for argv in reversed(made):
            subprocess.run(argv, check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _end_processes_of(user: str) -> None:
    """SIGKILL the processes of the test's own throwaway account (found by its uid)."""
    try:
        uid = int(_run("id", "-u", user).stdout.strip())
    except ValueError:
        return
    if uid == 0:
        return
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}").st_uid == uid:
                os.kill(int(pid), 9)
        except OSError:
            continue


def _fingerprint(public_key: Path) -> str:
    shown = _run("ssh-keygen", "-lf", str(public_key))
    assert shown.returncode == 0, shown.stderr
    return shown.stdout.split()[1]


def test_closed_until_the_kiosk_asks(window: Window) -> None:
    assert "elements" not in window.nft_set()
    assert not window.reachable()
    assert SpoolWindow(window.run_dir).read().state == "closed"


def test_kiosk_request_opens_key_only_lan_only_then_closes(window: Window) -> None:
    kiosk = SpoolWindow(window.run_dir)
    kiosk.request("open")
    applied = window.helper("apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "provision.window.open" in applied.stdout
    assert list((window.run_dir / "spool" / "new").iterdir()) == []  # request taken

    # What the kiosk shows is what the box really serves.
    state = kiosk.read()
    assert state.state == "open" and state.pending is None
    assert state.port == window.port and state.interface == window.interface
    assert set(state.addresses) == {BOX_LAN, BOX_WAN}
    assert state.fingerprint == _fingerprint(Path(f"{window.host_key}.pub"))
    assert state.deadline is not None and state.opened is not None
    assert (state.deadline - state.opened).total_seconds() == DURATION_S
    scanned = _run("ip", "netns", "exec", window.laptop, "sh", "-c",
                   f"ssh-keyscan -p {window.port} -t ed25519 {BOX_LAN} 2>/dev/null"
                   " | ssh-keygen -lf -")  # fmt: skip
    assert state.fingerprint in scanned.stdout  # the README's check from the laptop
    assert f'"{window.interface}" . {window.port}' in window.nft_set()

    # Key accepted for the locked account (a "!" password, as root has on the box).
    who = window.ssh("id", "-un")
    assert who.returncode == 0, who.stderr
    assert who.stdout.strip() == window.user
    # Password refused, unknown key refused, nothing forwarded.
    password = window.ssh("-o", "PubkeyAuthentication=no",
                          "-o", "PreferredAuthentications=password,keyboard-interactive", "true")  # fmt: skip
    assert password.returncode == 255
    assert "Permission denied (publickey)" in password.stderr
    stranger = window.ssh("true", key=window.stranger)
    assert stranger.returncode == 255 and "Permission denied" in stranger.stderr
    forward = window.ssh("-W", f"127.0.0.1:{window.port}")
    assert forward.returncode != 0 and "SSH-2.0" not in forward.stdout
    # sshd listens on the interface's other address too, but only the LAN gets through.
    assert window.reachable(BOX_LAN, LAPTOP_LAN)
    assert not window.reachable(BOX_WAN, LAPTOP_WAN)

    # A session in progress, then F on the kiosk: the session ends with the window.
    session = subprocess.Popen(window.ssh_argv("sleep", "300"), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        for _ in range(100):
            if window.sshd_pid() and _run("pgrep", "-u", window.user, "-x", "sleep").stdout:
                break
            time.sleep(0.05)
        kiosk.request("close")
        closed = window.helper("apply")
        assert closed.returncode == 0, closed.stdout + closed.stderr
        assert session.wait(timeout=10) != 0
    finally:
        if session.poll() is None:
            session.kill()
            session.wait(timeout=5)
    assert window.state()["reason"] == "kiosk"
    assert kiosk.read().state == "closed"
    assert "elements" not in window.nft_set()
    assert window.sshd_pid() is None
    assert not window.reachable()


def test_deadline_closes_no_matter_what(window: Window) -> None:
    opened = window.helper("open")
    assert opened.returncode == 0, opened.stdout + opened.stderr
    assert "timeout" in window.nft_set()  # the kernel drops the element by itself too
    assert window.ssh("true").returncode == 0
    # Nobody closes it: the closer does, at the deadline.
    state = window.wait_closed(timeout=DURATION_S + 10)
    assert state["reason"] == "deadline"
    assert state["failed"] == []
    assert "elements" not in window.nft_set()
    assert window.sshd_pid() is None
    assert not window.reachable()
    assert window.ssh("true").returncode == 255


def test_provision_playbook_closes_from_its_own_session(window: Window) -> None:
    opened = window.helper("open")
    assert opened.returncode == 0, opened.stdout + opened.stderr
    # provision.yml's last task, as root through the window: the session is not cut under it.
    last = window.ssh("/usr/bin/python3", str(HELPER), "--config", str(window.config), "close",
                      "--reason", "provision", "--after", "1", user="root")  # fmt: skip
    assert last.returncode == 0, last.stderr
    assert "close-armed" in last.stdout
    state = window.wait_closed(timeout=DURATION_S - 1)  # before the deadline
    assert state["reason"] == "provision"
    assert "elements" not in window.nft_set()
    assert window.sshd_pid() is None
    assert not window.reachable()


def test_open_twice_keeps_the_deadline_and_close_is_idempotent(window: Window) -> None:
    assert window.helper("open").returncode == 0
    first = window.state()["deadline"]
    time.sleep(1.2)
    again = window.helper("open")
    assert again.returncode == 0 and "already-open" in again.stdout
    assert window.state()["deadline"] == first  # reopening does not extend the window
    for _ in range(2):
        closed = window.helper("close", "--reason", "manual")
        assert closed.returncode == 0, closed.stdout + closed.stderr
    assert window.state()["reason"] == "manual"
    assert _closers() == []  # no closer left behind


def _closers() -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(HELPER).encode() in argv and b"--at" in argv:
            found.append(int(pid))
    return found


def test_bad_requests_are_dropped_not_followed(window: Window) -> None:
    new = window.run_dir / "spool" / "new"
    secret = window.root / "not-for-the-kiosk"
    secret.write_text("open\n")
    (new / "window").symlink_to(secret)
    (new / "stray").write_text("open\n")
    applied = window.helper("apply")
    assert applied.returncode == 0, applied.stderr
    assert "request.refused" in applied.stdout
    assert list(new.iterdir()) == []  # emptied, or the .path unit would fire again and again
    assert secret.exists()
    assert window.sshd_pid() is None
    assert "elements" not in window.nft_set()


def _credstore(window: Window) -> Path:
    """Stand-in for a root-owned directory the kiosk user must never reach through the helper
    (the KEK credential's, /etc/nftables.conf's): files, and a request word it could read."""
    target = window.root / "credstore"
    target.mkdir(mode=0o700, exist_ok=True)
    for name, text in (("balise.kek", "kek\n"), ("nftables.conf", "flush ruleset\n"),
                       ("window", "open\n")):  # fmt: skip
        (target / name).write_text(text)
    return target


def test_a_spool_swapped_for_a_link_is_refused_and_its_target_untouched(window: Window) -> None:
    new = window.run_dir / "spool" / "new"
    target = _credstore(window)
    new.rmdir()
    new.symlink_to(target)
    try:
        applied = window.helper("apply")
    finally:
        new.unlink()
        new.mkdir()
        new.chmod(0o770)
    assert "spool.refused" in applied.stdout, applied.stdout + applied.stderr
    assert sorted(p.name for p in target.iterdir()) == ["balise.kek", "nftables.conf", "window"]
    assert window.sshd_pid() is None  # the "open" read through the link was not obeyed
    assert "elements" not in window.nft_set()


def test_a_folder_dropped_in_the_spool_goes_without_its_links_being_followed(
    window: Window,
) -> None:
    new = window.run_dir / "spool" / "new"
    target = _credstore(window)
    (new / "folder" / "deeper").mkdir(parents=True)
    (new / "folder" / "credstore").symlink_to(target)
    (new / "folder" / "deeper" / "kek").symlink_to(target / "balise.kek")
    (new / "folder" / "stray").write_text("x")
    applied = window.helper("apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert list(new.iterdir()) == []  # emptied, or the .path unit would fire again and again
    assert sorted(p.name for p in target.iterdir()) == ["balise.kek", "nftables.conf", "window"]


def test_a_spool_the_kiosk_user_owns_is_refused(window: Window) -> None:
    spool = window.run_dir / "spool"
    new = spool / "new"
    (new / "window").write_text("open\n")
    os.chown(spool, 65534, 65534)  # as when the kiosk's user could rename new/ away
    try:
        applied = window.helper("apply")
    finally:
        os.chown(spool, 0, 0)
        for entry in new.iterdir():
            entry.unlink()
    assert "spool.refused" in applied.stdout, applied.stdout + applied.stderr
    assert window.sshd_pid() is None
    assert "elements" not in window.nft_set()
