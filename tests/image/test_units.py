"""The Balise units as the roles render them, checked by this machine's systemd (Debian 12, the
box's version) without booting anything: `systemd-analyze verify` (every setting known, every
command and dependency found) and `systemd-analyze security --offline` (how exposed each
service is). The qemu image test runs them for real."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.image.roles import render, role_defaults

pytestmark = pytest.mark.image

REPO = Path(__file__).resolve().parents[2]
ROLES = REPO / "ansible" / "roles"
UNITS = {
    "balise": ("balise-agent.service", "balise-kiosk.service", "balise-alert.service",
               "balise-usb-import@.service", "balise-usb-backup@.service"),
    "luks": ("balise-firstboot.service",),
}  # fmt: skip
# The most exposed each may be (systemd-analyze's scale, 0 to 10): the agent and the USB keys'
# commands read hostile input (mail, files from a key); the kiosk keeps tty1 and the card readers.
EXPOSURE = {
    "balise-agent.service": 2.0,
    "balise-kiosk.service": 2.5,
    # The alert screen of a stopped boot: tty1 only, no network, no data.
    "balise-alert.service": 2.0,
    "balise-usb-import@sdb1.service": 1.5,
    "balise-usb-backup@sdb1.service": 1.5,
}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A root with the rendered units, the provisioning and exchange roles' kiosk drop-ins,
    stand-ins for the commands they run, and this machine's own systemd units (targets and
    services)."""
    root = tmp_path_factory.mktemp("units-root")
    system = root / "etc" / "systemd" / "system"
    system.mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", root / "usr" / "lib" / "systemd" / "system",
                    symlinks=True)  # fmt: skip
    for role, names in UNITS.items():
        values = role_defaults(ROLES / role)
        for name in names:
            (system / name).write_text(render(ROLES / role / "templates" / f"{name}.j2", **values))
    dropin = system / "balise-kiosk.service.d"
    dropin.mkdir()
    provisioning = ROLES / "provisioning"
    template = provisioning / "templates" / "balise-kiosk-provisioning.conf.j2"
    (dropin / "provisioning.conf").write_text(render(template, **role_defaults(provisioning)))
    exchange = ROLES / "exchange"
    template = exchange / "templates" / "balise-kiosk-relay.conf.j2"
    (dropin / "relay.conf").write_text(render(template, **role_defaults(exchange)))
    for unit in system.rglob("*.service*"):
        if unit.is_file():
            for command in re.findall(r"^Exec\w+=[-+!@:]*(/\S+)", unit.read_text(), re.M):
                stub = root / command.lstrip("/")
                stub.parent.mkdir(parents=True, exist_ok=True)
                stub.write_text("#!/bin/sh\n")
                stub.chmod(0o755)
    yield root


def _analyze(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", *args, f"--root={root}"],
        capture_output=True, text=True, timeout=120, cwd=root,
    )  # fmt: skip


def test_units_verify_without_a_warning(root: Path) -> None:
    result = _analyze(root, "verify", *EXPOSURE)
    said = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, said
    assert said == "", said  # an unknown or misspelt setting would be ignored with a warning


@pytest.mark.parametrize("unit", sorted(EXPOSURE))
def test_services_are_sandboxed(root: Path, unit: str) -> None:
    result = _analyze(root, "security", "--offline=yes", "--no-pager", unit)
    assert result.returncode == 0, result.stdout + result.stderr
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert found, result.stdout[-2000:]
    failed = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("✗")]
    assert float(found.group(1)) <= EXPOSURE[unit], f"{unit}: {found.group(1)}; not set: {failed}"
