"""flash.yml: refusal on recorded `lsblk --json` outputs (never a real disk), and a real write
to a loop device backed by a file, checked by bmaptool and read back."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.image

REPO = Path(__file__).resolve().parents[2]
CHECK = REPO / "image" / "flash-check"
RECORDED = Path(__file__).parent / "lsblk"


def _check(recording: str, device: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHECK), device, "--lsblk", str(RECORDED / recording)],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("recording", "device", "verdict"),
    [
        (
            "laptop-nvme-system.json",
            "/dev/nvme0n1",
            "holds the running system (/, /boot/efi, [SWAP])",
        ),
        ("laptop-nvme-system.json", "/dev/sdb", "in use (mounted on /media/tech/CLE)"),
        ("laptop-nvme-system.json", "/dev/sda1", "is a part, not a whole disk"),
        ("laptop-nvme-system.json", "/dev/sdz", "not a block device known to lsblk"),
        ("desktop-sata-system.json", "/dev/sda", "holds the running system (/, [SWAP])"),
    ],
)
def test_refusals_on_recorded_machines(recording: str, device: str, verdict: str) -> None:
    result = _check(recording, device)
    assert result.returncode == 1
    assert verdict in result.stdout


@pytest.mark.parametrize(
    ("recording", "device"),
    [("laptop-nvme-system.json", "/dev/sda"), ("desktop-sata-system.json", "/dev/mmcblk0")],
)
def test_free_disks_accepted(recording: str, device: str) -> None:
    result = _check(recording, device)
    assert (result.returncode, result.stdout.strip()) == (0, "ok")


def _playbook(*extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ansible-playbook", "flash.yml", *extra],
        cwd=REPO / "ansible",
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1"},
    )


def test_playbook_refuses_the_system_disk_of_a_recording() -> None:
    result = _playbook(
        "-e", "flash_device=/dev/nvme0n1",
        "-e", f"flash_lsblk_json={RECORDED / 'laptop-nvme-system.json'}",
    )  # fmt: skip
    assert result.returncode != 0
    assert "holds the running system" in result.stdout
    assert (
        "bmaptool" not in result.stdout.split("Refuse the running system")[1].split("PLAY RECAP")[0]
    )


@pytest.fixture
def small_image(tmp_path: Path) -> Path:
    image = tmp_path / "balise.img"
    with image.open("wb") as handle:
        handle.truncate(32 * 1024 * 1024)
        for offset in (0, 5 * 1024 * 1024, 31 * 1024 * 1024):
            handle.seek(offset)
            handle.write(os.urandom(512 * 1024))
    subprocess.run(["bmaptool", "-q", "create", "-o", f"{image}.bmap", str(image)], check=True)
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    (tmp_path / "balise.img.sha256").write_text(f"{digest}  balise.img\n")
    return image


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[str]:
    backing = tmp_path / "usb-stick.raw"
    with backing.open("wb") as handle:
        handle.truncate(64 * 1024 * 1024)
    device = subprocess.run(
        ["losetup", "-f", "--show", str(backing)], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        yield device
    finally:
        subprocess.run(["losetup", "-d", device], check=False)


def test_playbook_writes_and_verifies_a_loop_device(small_image: Path, loop_device: str) -> None:
    result = _playbook("-e", f"flash_device={loop_device}", "-e", f"flash_image={small_image}")
    assert result.returncode == 0, result.stdout + result.stderr
    size = small_image.stat().st_size
    with open(loop_device, "rb") as handle:
        written = handle.read(size)
    assert written == small_image.read_bytes()


def test_playbook_refuses_a_corrupted_image(small_image: Path, loop_device: str) -> None:
    data = bytearray(small_image.read_bytes()[:16])
    data[3] ^= 0xFF
    with small_image.open("r+b") as handle:
        handle.write(bytes(data))
    result = _playbook("-e", f"flash_device={loop_device}", "-e", f"flash_image={small_image}")
    assert result.returncode != 0
    with open(loop_device, "rb") as handle:
        assert handle.read(1024 * 1024) == bytes(1024 * 1024)  # nothing written
