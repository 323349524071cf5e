"""What the image-tier tests share to build and boot the appliance's disk: the build tree's
paths, the Debian 13 build chroot's tools, the ESP read and written with mtools, and one boot of
a disk under qemu/TCG with OVMF and swtpm (serial console as text, facts the guest's test units
print there)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "ansible"
BUILD = REPO / "build" / "image-amd64"
ROOTFS = BUILD / "rootfs"
BUILDER = BUILD / "builder"
TEST_KEYS = BUILD / "test-keys"
GUEST = Path(__file__).parent / "guest"
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
MTOOLS_ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
BOOT_TIMEOUT = 600
# The update server the test images name (role update): qemu's user network forwards this guest
# address to a loopback server of the test (tests/image/test_update.py); one try for a new
# version, so a failing one falls back at its first failed boot.
UPDATE_ADDRESS = "10.0.2.100"
UPDATE_VARS = f'{{"update_url": "https://{UPDATE_ADDRESS}/balise/", "update_tries": 1}}'
MIB = 1024 * 1024
# Boots that do not depend on each other run this many at a time: one TCG vCPU each (see
# run_guest) on the host's two cores.
BOOTS_AT_ONCE = 2


class BootTimeout(AssertionError):
    """The guest did not power off (or reboot) within the bound."""


def ansible(playbook: str, *extra: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ansible-playbook", playbook, *extra],
        cwd=ANSIBLE,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"},
    )


def in_builder(*argv: str, files: Sequence[Path] = ()) -> subprocess.CompletedProcess[str]:
    """A command of the Debian 13 build chroot (ukify, sbverify: not on this Debian 12 host), with
    ``files`` copied into its /tmp/balise-test/ first."""
    stage = BUILDER / "tmp" / "balise-test"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    for path in files:
        shutil.copy2(path, stage / path.name)
    try:
        return subprocess.run(
            ["chroot", str(BUILDER), *argv], capture_output=True, text=True, timeout=300,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"},
        )  # fmt: skip
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def esp_listing(disk: Path, folder: str) -> list[str]:
    """The names in ``folder`` of the disk image's ESP (its partition starts at 1 MiB)."""
    result = subprocess.run(
        ["mdir", "-b", "-i", f"{disk}@@1M", f"::/{folder}"],
        capture_output=True, text=True, env=MTOOLS_ENV,
    )  # fmt: skip
    return result.stdout.split() if result.returncode == 0 else []


def run_guest(
    disk: Path,
    vars_fd: Path,
    tpm: Path,
    logs: Path,
    name: str,
    extra: Sequence[str] = (),
    *,
    nic: Sequence[str] = ("-nic", "none"),
    kill_when: Callable[[str], bool] | None = None,
    answers: Sequence[tuple[str, str]] = (),
    timeout: float = BOOT_TIMEOUT,
) -> str:
    """One boot until the guest powers itself off or reboots (-no-reboot), or — ``kill_when`` —
    until the serial console so far satisfies it, when qemu is killed (a power cut); the serial
    console as text.

    ``answers``: what a person types at the guest's console (the serial line, its kernel console
    in the test images), each (question, text) in turn: once the serial console shows
    ``question`` past the previous answer's, ``text`` and Enter go in.

    One vCPU: with two, TCG on a busy 2-core host starved one vCPU while the other spun on a
    lock (guest soft lockups, no power-off) — seen once in a fresh-clone run."""
    sock = logs / f"swtpm-{name}.sock"
    swtpm = subprocess.Popen(
        ["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={tpm}",
         "--ctrl", f"type=unixio,path={sock}", "--terminate"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    log = logs / f"serial-{name}.log"
    qemu: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        with log.open("wb") as out:
            qemu = subprocess.Popen(
                ["qemu-system-x86_64", "-accel", "tcg", "-m", "1536", "-smp", "1",
                 "-nographic", "-no-reboot", *nic,
                 "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                 "-drive", f"if=pflash,format=raw,unit=1,file={vars_fd}",
                 "-drive", f"file={disk},format=raw,if=virtio",
                 "-chardev", f"socket,id=chrtpm,path={sock}",
                 "-tpmdev", "emulator,id=tpm0,chardev=chrtpm", "-device", "tpm-tis,tpmdev=tpm0",
                 "-device", "qemu-xhci", "-device", "usb-ccid", *extra],
                stdin=subprocess.PIPE if answers else subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
            deadline = time.monotonic() + timeout
            pending = list(answers)
            seen = 0  # where the next question is looked for
            while qemu.poll() is None:
                if time.monotonic() > deadline:
                    text = log.read_text(errors="replace")
                    raise BootTimeout(f"{name}: no power-off within {timeout} s:\n{text[-4000:]}")
                watched = kill_when is not None or pending
                text = log.read_text(errors="replace") if watched else ""
                if kill_when is not None and kill_when(text):
                    qemu.kill()
                    break
                if pending and (at := text.find(pending[0][0], seen)) >= 0:
                    assert qemu.stdin is not None
                    time.sleep(1)  # a person reads the question first: the agent is reading
                    qemu.stdin.write(pending.pop(0)[1].encode() + b"\r")
                    qemu.stdin.flush()
                    seen = at + 1
                time.sleep(0.5)
    finally:
        for proc in (qemu, swtpm):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    return log.read_bytes().decode("utf-8", errors="replace").replace("\r", "")


def concurrently(runs: Mapping[str, Callable[[], str]]) -> dict[str, str]:
    """Independent boots (each on its own copy of the disk, EFI variables and TPM state; each
    still bounded by its own timeout), BOOTS_AT_ONCE at a time, started in the order given: what
    each returned, by name. All of them end before the first failure is raised."""
    with ThreadPoolExecutor(max_workers=BOOTS_AT_ONCE, thread_name_prefix="boot") as pool:
        futures = {name: pool.submit(run) for name, run in runs.items()}
    return {name: future.result() for name, future in futures.items()}


def facts(serial: str) -> dict[str, str]:
    """The ``BALISE-TEST: key=value`` lines of a boot (the last value of a key wins)."""
    found = {}
    for line in serial.splitlines():
        if line.startswith("BALISE-TEST: ") and "=" in line:
            key, _, value = line.removeprefix("BALISE-TEST: ").partition("=")
            found[key] = value.strip()
    return found


def screen(serial: str) -> str:
    """What tty1 showed (the kiosk), as the guest's report printed it."""
    match = re.search(r"BALISE-TEST-SCREEN-BEGIN\n(.*?)BALISE-TEST-SCREEN-END", serial, re.S)
    assert match, serial[-4000:]
    return match.group(1)
