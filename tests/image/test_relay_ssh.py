"""The card relay reached by the practice software, and only by it (issue 20), with the box's own
OpenSSH (Debian 13's sshd, from the image's rootfs).

A copy of the built rootfs (test_image.py's ``built`` makes it; never changed) gets the exchange
role's sshd_config, authorized_keys and tmpfiles rendered from the repository, and the balise
role's tmpfiles (the chroot on the data partition). Inside that copy, in a mount namespace of its
own, runs what the box runs: the directory /run/balise made by systemd-tmpfiles (2750, the kiosk's
user, the exchange account's group), bound read-only at the same path inside the chroot (what
balise-exchange@.service's BindReadOnlyPaths= does), the image's sshd on a loopback port, and —
as the kiosk's user, under the kiosk's umask — the relay's door (tests/image/relay_door_in_chroot.py:
the relay's RelayServer, for the image's exchange account only; behind it each request is answered
with its request line instead of the card's TLS channel, tested in tests/image/test_relay.py).
The practice's side is this machine's OpenSSH client with the registered key, like the README's
``ssh -N -L 8443:/run/balise/relay.sock echange@box``.

What sshd does with a forwarded socket is observed, not assumed: a second sshd on the same
files, without the bind, cannot reach /run/balise/relay.sock — the session is chrooted before
channels open, so the path is the chroot's."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

from balise.sim.netutil import free_tcp_port
from tests.image.roles import render, role_defaults

pytestmark = pytest.mark.image

REPO = Path(__file__).resolve().parents[2]
ROOTFS = REPO / "build" / "image-amd64" / "rootfs"  # as test_image.py builds it
EXCHANGE = REPO / "ansible" / "roles" / "exchange"
BALISE = REPO / "ansible" / "roles" / "balise"
SOCKET = "/run/balise/relay.sock"  # app/relay_main.RELAY_SOCKET, the README's path
OTHER_SOCKET = "/run/balise/autre.sock"
CONFIG = "/etc/balise/exchange/sshd_config"
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8", "HOME": "/root"}

# Run by `unshare -m` (a mount namespace that ends with its processes): what the box has at boot
# and for each exchange connection, then the doors as the kiosk's user, then the image's sshd.
_START = """set -eu
root=$1 bind=$2 port=$3 logs=$4
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
mkdir -p "$root/run/sshd"
if [ "$bind" = yes ]; then
  chroot "$root" systemd-tmpfiles --create /etc/tmpfiles.d/balise.conf \
    /etc/tmpfiles.d/balise-relay.conf
  chroot "$root" install -d -m 0755 /var/lib/balise/exchange/run/balise
  mount --bind "$root/run/balise" "$root/var/lib/balise/exchange/run/balise"
  mount -o remount,bind,ro "$root/var/lib/balise/exchange/run/balise"
  for sock in relay autre; do
    chroot --userspec=balise:balise "$root" sh -c "umask 0027; exec env \
      PYTHONPATH=/tmp/balise-src /opt/balise/venv/bin/python /tmp/relay_door_in_chroot.py \
      /run/balise/$sock.sock echange" >"$logs/door-$sock.log" 2>&1 &
    echo $! >"$logs/door-$sock.pid"
  done
fi
sed "s/^Port .*/Port $port/" "$root/etc/balise/exchange/sshd_config" >"$root/tmp/sshd-$port"
exec chroot "$root" /usr/sbin/sshd -D -e -f "/tmp/sshd-$port"
"""


@dataclass
class Box:
    root: Path
    logs: Path
    port: int
    vendor_key: Path
    stranger_key: Path

    def ssh(
        self, *options: str, command: tuple[str, ...] = (), key: Path | None = None,
        port: int | None = None,
    ) -> subprocess.CompletedProcess[str]:  # fmt: skip
        argv = ["ssh", *_ssh_options(key or self.vendor_key), "-p", str(port or self.port),
                *options, "echange@127.0.0.1", *command]  # fmt: skip
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False,
                              stdin=subprocess.DEVNULL)  # fmt: skip

    def sshd_log(self, port: int | None = None) -> str:
        return (self.logs / f"sshd-{port or self.port}.log").read_text(errors="replace")

    def door_log(self, name: str = "relay") -> list[dict[str, object]]:
        text = (self.logs / f"door-{name}.log").read_text(errors="replace")
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _ssh_options(key: Path) -> list[str]:
    return [
        "-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR",
        "-o", "IdentitiesOnly=yes", "-i", str(key),
    ]  # fmt: skip


def _chroot(root: Path, *argv: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    spec = [f"--userspec={user}"] if user else []
    return subprocess.run(
        ["chroot", *spec, str(root), *argv],
        capture_output=True, text=True, timeout=60, env=_ENV, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _start(root: Path, logs: Path, *, bind: bool, port: int) -> subprocess.Popen[bytes]:
    script = logs / "start.sh"
    script.write_text(_START, encoding="utf-8")
    with (logs / f"sshd-{port}.log").open("wb") as log:
        proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", str(script), str(root),
             "yes" if bind else "no", str(port), str(logs)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=_ENV,
        )  # fmt: skip
    for _ in range(200):
        if _listening(port):
            return proc
        assert proc.poll() is None, (logs / f"sshd-{port}.log").read_text(errors="replace")
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("the image's sshd did not listen after 200 tries")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    if not (ROOTFS / "usr/sbin/sshd").exists():
        pytest.fail("the image's rootfs is not built (run the image tier: test_image.py first)")
    work = tmp_path_factory.mktemp("relay-ssh")
    root, logs, keys = work / "root", work / "logs", work / "keys"
    logs.mkdir()
    keys.mkdir(mode=0o700)
    subprocess.run(["cp", "-a", str(ROOTFS), str(root)], check=True, timeout=600)
    for name in ("vendor", "stranger"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name,
                        "-f", str(keys / name)], check=True)  # fmt: skip
    config_dir = root / "etc/balise/exchange"
    host_key = config_dir / "ssh_host_test"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)],
                   check=True)  # fmt: skip
    port = free_tcp_port()
    values = {
        **role_defaults(EXCHANGE),
        "exchange_listen_address": "127.0.0.1",
        "exchange_port": port,
        "exchange_host_key": "/etc/balise/exchange/ssh_host_test",
    }
    templates = EXCHANGE / "templates"
    (config_dir / "sshd_config").write_text(render(templates / "sshd_config.j2", **values))
    vendor = (keys / "vendor.pub").read_text(encoding="utf-8").strip()
    (config_dir / "authorized_keys").write_text(
        render(templates / "authorized_keys.j2", **{**values, "exchange_authorized_keys": [vendor]})
    )
    tmpfiles = root / "etc/tmpfiles.d"
    (tmpfiles / "balise-relay.conf").write_text(
        render(templates / "balise-relay.tmpfiles.j2", **values)
    )
    (tmpfiles / "balise.conf").write_text(
        render(BALISE / "templates" / "balise.tmpfiles.j2", **role_defaults(BALISE))
    )
    (root / "run/sshd").mkdir(mode=0o755, exist_ok=True)
    checked = _chroot(root, "/usr/sbin/sshd", "-t", "-f", CONFIG)
    assert checked.returncode == 0, checked.stderr
    shutil.copytree(REPO / "src", root / "tmp/balise-src")
    shutil.copy2(Path(__file__).with_name("relay_door_in_chroot.py"), root / "tmp")
    proc = _start(root, logs, bind=True, port=port)
    try:
        for _ in range(300):
            if all(any("listening" in e for e in _door(logs, n)) for n in ("relay", "autre")):
                break
            assert proc.poll() is None, (logs / f"sshd-{port}.log").read_text(errors="replace")
            time.sleep(0.1)
        else:
            raise AssertionError("the relay's door did not listen after 300 tries")
        yield Box(root, logs, port, keys / "vendor", keys / "stranger")
    finally:
        _stop(proc)
        for name in ("relay", "autre"):
            pid = logs / f"door-{name}.pid"
            if pid.exists():
                with suppress(ProcessLookupError):
                    os.kill(int(pid.read_text()), signal.SIGTERM)
        shutil.rmtree(root, ignore_errors=True)


def _door(logs: Path, name: str) -> list[dict[str, object]]:
    path = logs / f"door-{name}.log"
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.startswith("{")]


@contextmanager
def _forward(box: Box, target: str, *, port: int | None = None) -> Iterator[int]:
    """``ssh -N -L 127.0.0.1:<local>:<target>`` as the practice software runs it; the local
    port once ssh listens on it."""
    local = free_tcp_port()
    argv = ["ssh", *_ssh_options(box.vendor_key), "-p", str(port or box.port), "-N",
            "-o", "ExitOnForwardFailure=yes", "-L", f"127.0.0.1:{local}:{target}",
            "echange@127.0.0.1"]  # fmt: skip
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip
    try:
        for _ in range(200):
            if _listening(local):
                break
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
            time.sleep(0.1)
        else:
            raise AssertionError("ssh -L did not listen after 200 tries")
        yield local
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _http(port: int, *requests: tuple[str, str, bytes]) -> list[tuple[int, str] | None]:
    """The requests on ONE connection (kept alive); each answer's status and body, or None
    once the connection was closed without an answer."""
    answers: list[tuple[int, str] | None] = []
    with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
        stream = conn.makefile("rb")
        for method, path, body in requests:
            head = (
                f"{method} {path} HTTP/1.1\r\nHost: relais\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            try:
                conn.sendall(head.encode("ascii") + body)
                status_line = stream.readline(1024)
            except OSError:
                status_line = b""
            if not status_line:
                answers.append(None)
                continue
            length = 0
            while (line := stream.readline(8192)) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            answers.append((int(status_line.split()[1]), stream.read(length).decode("utf-8")))
    return answers


def _wait_for(read: Callable[[], str], marker: str) -> str:
    """``read()`` once it holds ``marker`` (sshd logs after the client saw the outcome)."""
    text = read()
    for _ in range(100):
        if marker in text:
            break
        time.sleep(0.1)
        text = read()
    return text


def test_the_practice_software_reaches_the_relay_through_the_forwarded_socket(box: Box) -> None:
    with _forward(box, SOCKET) as local:
        answers = _http(local, ("GET", "/droits?nir=1", b""), ("POST", "/tarif", b"x" * 300))
    assert answers == [
        (200, "relais atteint : GET /droits?nir=1 (0 octets)\n"),
        (200, "relais atteint : POST /tarif (300 octets)\n"),
    ]
    # The door let it through: the peer was the exchange account (SO_PEERCRED), nobody refused.
    assert not [e for e in box.door_log() if "refused_uid" in e]


def test_the_socket_is_the_kiosks_and_reachable_by_the_exchange_account_only(box: Box) -> None:
    run = box.root / "run" / "balise"
    image_uid = {line.split(":")[0]: int(line.split(":")[2])
                 for line in (box.root / "etc/passwd").read_text().splitlines()}  # fmt: skip
    image_gid = {line.split(":")[0]: int(line.split(":")[2])
                 for line in (box.root / "etc/group").read_text().splitlines()}  # fmt: skip
    for path, mode in ((run, 0o2750), (run / "relay.sock", 0o660)):
        st = path.lstat()
        assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (
            mode, image_uid["balise"], image_gid["balise-echange"],
        ), path  # fmt: skip

    probe = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n"
        "    s.connect(sys.argv[1]); s.settimeout(10)\n"
        "    print('answer' if s.recv(100) else 'closed')\n"
        "except OSError as e:\n"
        "    print(type(e).__name__)\n"
    )
    # Another account of the box cannot even enter the directory.
    nobody = _chroot(box.root, "/usr/bin/python3", "-c", probe, SOCKET, user="nobody:nogroup")
    assert nobody.stdout.strip() == "PermissionError", nobody.stdout + nobody.stderr
    # The kiosk's own user may connect (it shares the group) but is not the exchange account:
    # the relay closes the connection on its peer uid before reading a byte. The probe writes
    # nothing (a request written after that close would meet a broken pipe or not, by timing):
    # it only reads, and sees the close; a relay that let it in would leave it waiting for an
    # answer until its timeout.
    kiosk = _chroot(box.root, "/usr/bin/python3", "-c", probe, SOCKET, user="balise:balise")
    assert kiosk.stdout.strip() in {"closed", "ConnectionResetError"}, kiosk.stdout + kiosk.stderr
    log = _wait_for(lambda: json.dumps(box.door_log()), "refused_uid")
    assert {"refused_uid": image_uid["balise"]} in json.loads(log)


def test_sshd_resolves_the_forwarded_path_inside_its_chroot(box: Box) -> None:
    """The same sshd and files, without the read-only bind of the unit: the socket at
    /run/balise/relay.sock on the box is out of the chrooted session's reach."""
    port = free_tcp_port()
    proc = _start(box.root, box.logs, bind=False, port=port)
    try:
        with _forward(box, SOCKET, port=port) as local:
            assert _http(local, ("GET", "/droits", b"")) == [None]
        said = _wait_for(lambda: box.sshd_log(port), "failed")
    finally:
        _stop(proc)
    assert f"connect to {SOCKET} port -2 failed: No such file or directory" in said
    assert (box.root / SOCKET.lstrip("/")).is_socket()  # it was there, outside the chroot


def test_an_unregistered_key_is_refused(box: Box) -> None:
    result = box.ssh("-N", "-L", f"127.0.0.1:{free_tcp_port()}:{SOCKET}", key=box.stranger_key)
    assert result.returncode == 255
    assert "Permission denied (publickey)" in result.stderr


def test_no_other_unix_socket_is_forwarded(box: Box) -> None:
    """Another socket in the relay's directory (a second door, as the kiosk's user): refused by
    sshd, which forwards exactly the relay's path."""
    with _forward(box, OTHER_SOCKET) as local:
        assert _http(local, ("GET", "/droits", b"")) == [None]
    said = _wait_for(box.sshd_log, f"connect to path {OTHER_SOCKET}")
    assert f"Received request to connect to path {OTHER_SOCKET}, but the request was denied" in said
    assert not [e for e in box.door_log("autre") if "refused_uid" in e]  # nothing reached it


def test_no_tcp_port_is_forwarded(box: Box) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(0.5)
        target = listener.getsockname()[1]
        with _forward(box, f"127.0.0.1:{target}") as local:
            assert _http(local, ("GET", "/", b"")) == [None]
        stdio = box.ssh("-W", f"127.0.0.1:{target}")
        with pytest.raises(TimeoutError):
            listener.accept()  # nothing ever reached the port
    assert stdio.returncode == 255
    assert "stdio forwarding failed" in stdio.stderr
    said = _wait_for(box.sshd_log, f"port {target}, but the request was denied")
    assert f"to connect to host 127.0.0.1 port {target}, but the request was denied" in said


def test_no_remote_forwarding(box: Box) -> None:
    tcp = box.ssh(
        "-N", "-o", "ExitOnForwardFailure=yes", "-R", f"127.0.0.1:{free_tcp_port()}:127.0.0.1:22"
    )
    assert tcp.returncode == 255
    assert "remote port forwarding failed" in tcp.stderr
    unix = box.ssh(
        "-N", "-o", "ExitOnForwardFailure=yes", "-R", "/depot/tmp/pont.sock:127.0.0.1:22"
    )
    assert unix.returncode == 255
    assert "remote port forwarding failed for listen path /depot/tmp/pont.sock" in unix.stderr
    assert not list((box.root / "var/lib/balise/exchange/depot/tmp").iterdir())


def test_no_shell_and_no_terminal(box: Box) -> None:
    command = box.ssh(command=("id",))
    assert "uid=" not in command.stdout
    assert "This service allows sftp connections only." in command.stdout + command.stderr
    tty = box.ssh("-tt")
    assert tty.returncode == 255
    assert "PTY allocation request failed" in tty.stderr


def test_sftp_still_works_and_sees_the_relay_directory_read_only(box: Box) -> None:
    lot = box.logs / "lot-0001.b2"
    lot.write_bytes(b"lot de test\n")
    batch = box.logs / "batch"
    state = box.logs / "relay-status.json"
    batch.write_text(
        f"ls -1 /\nput {lot} depot/tmp/lot-0001.b2\nget /run/balise/relay-status.json {state}\n",
        encoding="utf-8",
    )
    sftp = subprocess.run(
        ["sftp", *_ssh_options(box.vendor_key), "-P", str(box.port), "-b", str(batch),
         "echange@127.0.0.1"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert sftp.returncode == 0, sftp.stderr
    listed = {x.strip().lstrip("/") for x in sftp.stdout.splitlines() if x and x[0] == "/"}
    assert listed == {"depot", "retours", "run", "sauvegardes"}
    # The channel's state, as the relay process writes it, is readable by the practice software.
    assert json.loads(state.read_text(encoding="utf-8"))["practitioner"] == "Dr Jeanne TEST"
    assert (box.root / "var/lib/balise/exchange/depot/tmp/lot-0001.b2").read_bytes() == (
        b"lot de test\n"
    )
    batch.write_text(f"put {lot} /run/balise/lot.b2\nrm /run/balise/relay.sock\n")
    refused = subprocess.run(
        ["sftp", *_ssh_options(box.vendor_key), "-P", str(box.port), "-b", str(batch),
         "echange@127.0.0.1"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    assert not (box.root / "run/balise/lot.b2").exists()
    assert (box.root / SOCKET.lstrip("/")).is_socket()
