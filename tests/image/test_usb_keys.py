"""The root helper that mounts Balise's USB keys (role balise, files/balise-usb-key), on key
images made here (mkfs, no mount), with a stand-in systemd-mount on PATH that records what it
was asked: FAT and exFAT only, their type named to the kernel, never another file system, never
under a directory that is not root's. The qemu image test plugs real keys into the box."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.image

REPO = Path(__file__).resolve().parents[2]
HELPER = REPO / "ansible" / "roles" / "balise" / "files" / "balise-usb-key"
OPTIONS = "ro,nosuid,nodev,noexec"


def _key(path: Path, kind: str) -> Path:
    if kind == "vfat":
        argv = ["mkfs.vfat", "-n", "BALISE-LOTS", "-C", str(path), "8192"]
    elif kind == "ext4":
        argv = ["mkfs.ext4", "-q", "-F", "-L", "BALISE-LOTS", str(path), "8M"]
    elif kind == "minix":
        path.write_bytes(b"\0" * 8 * 1024 * 1024)
        argv = ["mkfs.minix", str(path)]
    else:
        path.write_bytes(b"\0" * 8 * 1024 * 1024)
        return path
    subprocess.run(argv, check=True, capture_output=True)
    return path


def _helper(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], str]:
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    calls = tmp_path / "calls.txt"
    for tool in ("systemd-mount", "systemd-umount"):
        (fake / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {calls}\n')
        (fake / tool).chmod(0o755)
    result = subprocess.run(
        ["/bin/sh", str(HELPER), *args],
        capture_output=True, text=True, timeout=60,
        env={"PATH": f"{fake}:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
    )  # fmt: skip
    return result, calls.read_text() if calls.exists() else ""


def test_a_fat_key_is_mounted_with_its_type_named(tmp_path: Path) -> None:
    key = _key(tmp_path / "sdb1", "vfat")
    where = tmp_path / "run" / "balise-usb" / "sdb1" / "cle"
    (tmp_path / "run").mkdir()
    result, calls = _helper(tmp_path, "mount", str(key), str(where), OPTIONS)
    assert result.returncode == 0, result.stderr
    assert "--type=vfat" in calls.split() and f"--options={OPTIONS}" in calls.split()
    assert calls.split()[-2:] == [str(key), str(where)]
    assert where.is_dir() and where.stat().st_uid == 0


@pytest.mark.parametrize(
    ("kind", "said"),
    [
        ("ext4", "système de fichiers ext4"),
        ("minix", "système de fichiers minix"),
        ("blank", "aucun système de fichiers reconnu"),
    ],
)
def test_another_file_system_is_refused_before_any_mount(
    tmp_path: Path, kind: str, said: str
) -> None:
    if kind == "minix" and shutil.which("mkfs.minix") is None:
        pytest.skip("mkfs.minix (util-linux) missing")
    key = _key(tmp_path / "sdb1", kind)
    (tmp_path / "run").mkdir()
    where = tmp_path / "run" / "balise-usb" / "sdb1" / "cle"
    result, calls = _helper(tmp_path, "mount", str(key), str(where), OPTIONS)
    assert result.returncode == 1
    assert said in result.stderr and "refusée" in result.stderr
    assert calls == ""  # systemd-mount never asked
    assert not (tmp_path / "run" / "balise-usb").exists()


def test_a_mount_point_under_a_link_is_refused(tmp_path: Path) -> None:
    key = _key(tmp_path / "sdb1", "vfat")
    run = tmp_path / "run"
    elsewhere = tmp_path / "etc"
    (run / "balise-usb").mkdir(parents=True)
    elsewhere.mkdir()
    (run / "balise-usb" / "sdb1").symlink_to(elsewhere)
    result, calls = _helper(tmp_path, "mount", str(key), str(run / "balise-usb/sdb1/cle"), OPTIONS)
    assert result.returncode == 1 and "n'est pas un répertoire de root" in result.stderr
    assert calls == ""
    assert list(elsewhere.iterdir()) == []


def test_a_mount_point_not_roots_is_refused(tmp_path: Path) -> None:
    key = _key(tmp_path / "sdb1", "vfat")
    parent = tmp_path / "run" / "balise-usb" / "sdb1"
    parent.mkdir(parents=True)
    os.chown(parent, 65534, 65534)
    result, calls = _helper(tmp_path, "mount", str(key), str(parent / "cle"), OPTIONS)
    assert result.returncode == 1 and "n'est pas un répertoire de root" in result.stderr
    assert calls == ""


def test_unmount_leaves_no_mount_point(tmp_path: Path) -> None:
    where = tmp_path / "run" / "balise-usb" / "sdb1" / "cle"
    where.mkdir(parents=True)
    result, _ = _helper(tmp_path, "umount", "/dev/sdb1", str(where))
    assert result.returncode == 0, result.stderr
    assert not where.parent.exists()
