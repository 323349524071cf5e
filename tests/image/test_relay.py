"""The card's TLS channel on the box's own system (issue 20): Debian 13's OpenSSL 3.5 with the
image's pkcs11-provider, the image's Python 3.13 and venv — what the Debian 12 CI host cannot run
(tests/test_relay.py covers the rest there with a file-held key standing in for the card).

The image's rootfs (built by test_image.py's ``built`` fixture: this module runs after it) is
copied — never changed — and the test-only tools are added to the copy with apt from
deb.debian.org, like the image build itself: SoftHSM2 (the CPS-like card: authentication +
signature keys from the test IGC-Santé chain), OpenSC's pkcs11-tool and pkcs11-spy (counts the
card's operations), nginx (the online service: client certificate required, chain and CRLs
checked). tests/image/relay_in_chroot.py runs inside with the repository's src and reports what
it saw as JSON. Cost: the copy and the apt install, about a minute."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.image

REPO = Path(__file__).resolve().parents[2]
ROOTFS = REPO / "build" / "image-amd64" / "rootfs"  # as test_image.py builds it

_TEST_PACKAGES = ("softhsm2", "opensc", "nginx")
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8", "HOME": "/root"}


def _run(root: Path, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["chroot", str(root), *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_ENV,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def chroot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if not (ROOTFS / "opt/balise/venv/bin/python").exists():
        pytest.fail("the image's rootfs is not built (run the image tier: test_image.py first)")
    root = tmp_path_factory.mktemp("relay") / "root"
    subprocess.run(["cp", "-a", str(ROOTFS), str(root)], check=True, timeout=600)
    resolv = root / "etc/resolv.conf"
    resolv.unlink(missing_ok=True)
    shutil.copy2("/etc/resolv.conf", resolv)
    mounts = [root / "proc", root / "dev"]
    subprocess.run(["mount", "-t", "proc", "proc", str(mounts[0])], check=True)
    subprocess.run(["mount", "--bind", "/dev", str(mounts[1])], check=True)
    try:
        update = _run(root, "apt-get", "update", "-q", timeout=600)
        assert update.returncode == 0, update.stderr[-3000:]
        install = _run(
            root,
            "apt-get",
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            *_TEST_PACKAGES,
            timeout=900,
        )
        assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
        shutil.copytree(REPO / "src", root / "tmp/balise-src")
        shutil.copy2(Path(__file__).with_name("relay_in_chroot.py"), root / "tmp")
        yield root
    finally:
        for mount in reversed(mounts):
            subprocess.run(["umount", "-l", str(mount)], check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def seen(chroot: Path) -> dict[str, object]:
    run = _run(
        chroot,
        "env",
        "PYTHONPATH=/tmp/balise-src",
        "/opt/balise/venv/bin/python",
        "/tmp/relay_in_chroot.py",
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    # Nothing may prompt for the PIN on the terminal (the kiosk's) when the card is logged out.
    assert "PIN" not in run.stderr, run.stderr[-2000:]
    result: dict[str, object] = json.loads(run.stdout.strip().splitlines()[-1])
    return result


def test_the_box_ships_the_pkcs11_provider() -> None:
    """Not added by the test: the image's package list brings it."""
    assert (ROOTFS / "usr/lib/x86_64-linux-gnu/ossl-modules/pkcs11.so").is_file()


def test_the_service_sees_the_practitioner_with_one_card_operation_for_the_channel(
    seen: dict[str, object],
) -> None:
    assert seen["good.statuses"] == [200]
    assert "Dr Jeanne TEST" in str(seen["good.first"])
    assert str(seen["good.last"]).endswith("n=20\n")  # 20 requests on one connection
    assert seen["good.connections"] == 1
    assert seen["good.handshakes"] == 1
    assert seen["good.logins"] == 1  # the relay's own C_Login, the provider made none
    assert seen["good.signs"] == 1  # one card operation for the whole session
    assert seen["CPS-GOOD.key_id"] == "01"  # the authentication key, never the signature key (02)


def test_a_logged_out_card_signs_no_new_handshake_and_is_never_asked_for_its_pin(
    seen: dict[str, object],
) -> None:
    """The card pulled (or the channel closed with its key): the relay logs out; a new
    connection then fails instead of the provider logging in again by itself."""
    assert seen["after_logout"] == "RELAY_CHANNEL"
    assert seen["after_logout.logins"] == 1


def test_a_revoked_card_is_refused_by_the_service(seen: dict[str, object]) -> None:
    assert isinstance(seen["revoked"], list)
    status, body = seen["revoked"]
    assert status == 400
    assert "SSL certificate error" in body


def test_the_pin_is_in_no_file_the_channel_uses(seen: dict[str, object]) -> None:
    assert seen["files_checked"] == 9  # with the relay's own run directory
    assert seen["pin_in_files"] == []


def test_the_whole_relay_serves_the_practice_software_and_closes_when_the_card_is_pulled(
    seen: dict[str, object],
) -> None:
    """balise.app.relay as the box runs it: plain HTTP over the unix socket, one handshake for
    the session, a service off the allow-list refused; the card's token deleted by another
    process (pulled) and the watchdog closes the channel and the socket."""
    assert seen["app.statuses"] == [200] * 5
    assert seen["app.who"] is True
    assert seen["app.other"] == 403
    assert seen["app.state"] == [True, "Dr Jeanne TEST", 5, 1]
    assert seen["app.closed_because"] == "card_pulled"
    assert seen["app.after_pull"] in {"BrokenPipeError", "ConnectionError", "ConnectionResetError"}
    assert seen["app.socket_left"] is False
    assert seen["app.journal_kinds"] == ["relay_close", "relay_open", "relay_requests"]


def test_the_relay_process_takes_the_pin_on_a_pipe_shows_its_state_and_ends_on_sigterm(
    seen: dict[str, object],
) -> None:
    """``python -m balise.app.relay_main`` as the kiosk starts it: the PIN on its standard input
    (a pipe), the box's own parameters (relay_services, ca_bundle, pkcs11_module) and journal;
    its state file says open, for whom, how many requests; SIGTERM (the practitioner's key)
    closes the channel and the login and ends it cleanly; the journal has no PIN."""
    assert seen["proc.statuses"] == [200, 200, 200]
    assert seen["proc.status"] == [True, "Dr Jeanne TEST", 3]
    assert seen["proc.exit"] == 0, seen["proc.stderr"]
    assert seen["proc.closed"] == [False, "practitioner"]
    assert seen["proc.socket_left"] is False
    # the three requests, each listed once (by the entries of the journal's commit windows)
    assert seen["proc.journal"] == [1, [["visio", "GET", 200, "service"]] * 3, 1]
    assert seen["proc.pin_in_journal"] is False
    assert seen["proc.pin_in_files"] == []


def test_the_relay_process_closes_at_once_when_the_kiosk_says_the_card_was_pulled(
    seen: dict[str, object],
) -> None:
    """The kiosk's card watcher saw the card pulled: SIGUSR1 (RelayLauncher.card_pulled) closes
    the channel and ends the process at once, its state saying why — the token still there, so
    not the relay's own check of the card."""
    assert seen["pulled.status"] == 200
    assert seen["pulled.closed"] == [0, False, "card_pulled"]
    assert seen["pulled.socket_left"] is False
