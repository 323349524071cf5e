"""`make boot-arm64`: the arm64 image built (`make image-arm64`, TEST signing keys) and booted
once under qemu-system-aarch64 -M virt with the arm64 UEFI firmware (AAVMF, TCG), to the kiosk's
Accueil screen; prints how long the build and the boot took.

Outside CI on purpose (issue 14): under emulation the build takes tens of minutes (every
maintainer script and the initramfs run under qemu-user) and the boot minutes. Not a test module
(pytest never collects it): run with ``python -m tests.image.arm64 [--no-build]``.

As the amd64 image tests do (tests/image/test_image.py), the disk booted is the built rootfs with
one report unit added, assembled again (image-assemble.yml) with the serial console on the
kernel command line into build/image-arm64/boot/: the report waits for Accueil on tty1, prints
the screen and a few facts on the serial console (ttyAMA0 here), then powers off. No TPM2 (a
Raspberry Pi has none): the data partition is in passphrase mode, so the first boot asks twice
for the boot secret on the console, and this script types a throw-away one. Measured on the
shared 2 cores: the boot disk assembled again in 1 min 22 s, Accueil 4 min 05 s after qemu
started (236 s guest time)."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.image.vm import REPO, ansible, esp_listing, facts, screen

BUILD = REPO / "build" / "image-arm64"
ROOTFS = BUILD / "rootfs"
BOOT_DIR = BUILD / "boot"
AAVMF_CODE = Path("/usr/share/AAVMF/AAVMF_CODE.fd")
AAVMF_VARS = Path("/usr/share/AAVMF/AAVMF_VARS.fd")
CMDLINE = "console=ttyAMA0,115200 systemd.show_status=true"
BUILD_TIMEOUT = 4 * 3600
BOOT_TIMEOUT = 3600
# Only ever typed into this throw-away test disk's first boot (never a box's secret).
TEST_SECRET = "essai-arm64-jetable"
FIRST_PROMPT = "secret de démarrage"
SECOND_PROMPT = "le même secret"

REPORT = r"""#!/bin/sh
# TEST DISK ONLY (make boot-arm64, tests/image/arm64.py): once the kiosk shows Accueil on tty1,
# print the screen and a few facts on the serial console, then power off.
out=/dev/ttyAMA0
say() { echo "BALISE-TEST: $*" > "$out"; }
screen() {
  cols=$(stty -F /dev/tty1 size 2>/dev/null | cut -d' ' -f2)
  cat /dev/vcsu1 | iconv -f UTF-32LE -t UTF-8 2>/dev/null | fold -w "${cols:-160}" \
    | sed 's/[[:space:]]*$//' | grep -v '^$'
}
efivar() {
  /usr/bin/python3 -I -c 'import glob, sys
for path in glob.glob("/sys/firmware/efi/efivars/" + sys.argv[1] + "-*"):
    with open(path, "rb") as f:
        print(f.read()[4:].decode("utf-16-le").rstrip("\0"))' "$1" 2>&1 | head -n1
}
i=0
while [ "$i" -lt 450 ]; do
  if screen | grep -q "Accueil"; then break; fi
  if systemctl -q is-failed balise-firstboot.service; then break; fi
  sleep 2
  i=$((i + 1))
done
say "accueil=$(screen | grep -q Accueil && echo yes || echo no) uptime=$(cut -d' ' -f1 /proc/uptime)"
echo "BALISE-TEST-SCREEN-BEGIN" > "$out"
screen > "$out"
echo "BALISE-TEST-SCREEN-END" > "$out"
say "machine=$(uname -m)"
say "kiosk=$(systemctl is-active balise-kiosk.service)"
say "agent=$(systemctl is-active balise-agent.service)"
say "firstboot=$(systemctl is-active balise-firstboot.service)"
say "stub=$(efivar StubInfo)"
say "loader=$(efivar LoaderInfo)"
say "loader-entry=$(efivar LoaderEntrySelected)"
say "cmdline=$(cat /proc/cmdline)"
say "root-source=$(findmnt -no SOURCE /)"
say "root-options=$(findmnt -no OPTIONS /)"
say "verity-status=$(dmsetup status --target verity balise-root 2>/dev/null | awk '{print $4}')"
say "verity-check=$(systemctl is-active balise-verity-check.service)"
say "mapper=$([ -b /dev/mapper/balise-data ] && echo open || echo closed)"
say "mounted=$(mountpoint -q /var/lib/balise && echo yes || echo no)"
say "tpm=$([ -e /dev/tpmrm0 ] && echo yes || echo no)"
say "luks-mode=$(sed -n 's/^LUKS_MODE=//p' /etc/balise/luks.conf)"
journalctl -b -o cat -u balise-firstboot.service | sed 's/^/BALISE-TEST-FIRSTBOOT: /' > "$out"
systemctl --failed --no-legend --plain 2>&1 | sed 's/^/BALISE-TEST-FAILED: /' > "$out"
systemctl status balise-kiosk.service --no-pager -n 15 2>&1 | sed 's/^/BALISE-TEST-KIOSK: /' > "$out"
say "done"
systemctl poweroff
"""

UNIT = """# TEST DISK ONLY: see /usr/local/sbin/balise-test-arm64.
[Unit]
Description=Balise arm64 boot: report what tty1 shows on the serial console
After=multi-user.target balise-kiosk.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/balise-test-arm64
StandardOutput=tty
TTYPath=/dev/ttyAMA0

[Install]
WantedBy=multi-user.target
"""


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"


def build() -> float:
    """`make image-arm64` (TEST signing keys); its duration in seconds."""
    start = time.monotonic()
    result = subprocess.run(
        ["make", "--no-print-directory", "image-arm64"],
        cwd=REPO, stdin=subprocess.DEVNULL, timeout=BUILD_TIMEOUT, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        sys.exit(f"boot-arm64: make image-arm64 failed (exit {result.returncode})")
    return time.monotonic() - start


def assemble_boot_disk() -> Path:
    """The built rootfs with the report unit, assembled into BOOT_DIR with the serial console on
    the signed command line; the report unit leaves the rootfs again afterwards."""
    script = ROOTFS / "usr/local/sbin/balise-test-arm64"
    unit = ROOTFS / "etc/systemd/system/balise-test-arm64.service"
    wants = ROOTFS / "etc/systemd/system/multi-user.target.wants/balise-test-arm64.service"
    script.write_text(REPORT, encoding="utf-8")
    script.chmod(0o755)
    unit.write_text(UNIT, encoding="utf-8")
    wants.unlink(missing_ok=True)
    wants.symlink_to("/etc/systemd/system/balise-test-arm64.service")
    try:
        run = ansible(
            "image-assemble.yml",
            "-e", "image_arch=arm64",
            "-e", f'{{"image_test_keys": true, "image_kernel_cmdline_extra": "{CMDLINE}",'
                  f' "image_disk_dir": "{BOOT_DIR}"}}',
            timeout=1800,
        )  # fmt: skip
    finally:
        for path in (wants, unit, script):
            path.unlink(missing_ok=True)
    if run.returncode != 0:
        sys.exit("boot-arm64: assembling the boot disk failed:\n" + run.stdout[-4000:])
    return BOOT_DIR / "balise.img"


def boot(disk: Path) -> tuple[str, float | None, float]:
    """One boot under qemu-system-aarch64 until the guest powers off: the serial console, the
    seconds from qemu's start to the report's "accueil=yes" line (None: never), the total."""
    vars_fd = BOOT_DIR / "AAVMF_VARS.fd"
    shutil.copyfile(AAVMF_VARS, vars_fd)
    log = BOOT_DIR / "serial.log"
    typed, typed_at = 0, 0.0
    accueil_at: float | None = None
    start = time.monotonic()
    with log.open("wb") as out:
        qemu = subprocess.Popen(
            ["qemu-system-aarch64", "-M", "virt,acpi=off", "-cpu", "cortex-a72", "-accel", "tcg",
             "-m", "1536", "-smp", "1", "-display", "none", "-serial", "stdio",
             "-monitor", "none", "-no-reboot", "-nic", "none",
             "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={AAVMF_CODE}",
             "-drive", f"if=pflash,format=raw,unit=1,file={vars_fd}",
             "-drive", f"file={disk},format=raw,if=virtio"],
            stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        assert qemu.stdin is not None
        try:
            deadline = start + BOOT_TIMEOUT
            while qemu.poll() is None:
                if time.monotonic() > deadline:
                    sys.exit(f"boot-arm64: no power-off within {BOOT_TIMEOUT} s (see {log})")
                text = log.read_bytes().decode("utf-8", errors="replace")
                # The first boot's two questions (balise-firstboot, passphrase mode), asked by
                # systemd's console password agent on ttyAMA0 (the luks role masks the wall
                # agent, which would stop it after the prompt): the secret typed once for each
                # question shown, again if the agent still waits a minute later (input it may
                # have flushed before reading); both answers are the same secret.
                prompts = text.count(FIRST_PROMPT) + text.count(SECOND_PROMPT)
                last = max(text.rfind(FIRST_PROMPT), text.rfind(SECOND_PROMPT))
                waiting = last >= 0 and "\n" not in text[last:]
                now = time.monotonic()
                if prompts > typed or (waiting and now - typed_at > 60):
                    time.sleep(1)
                    qemu.stdin.write(TEST_SECRET.encode() + b"\n")
                    qemu.stdin.flush()
                    typed, typed_at = prompts, time.monotonic()
                if accueil_at is None and "BALISE-TEST: accueil=yes" in text:
                    accueil_at = time.monotonic() - start
                time.sleep(0.5)
        finally:
            if qemu.poll() is None:
                qemu.kill()
            qemu.wait(timeout=30)
    serial = log.read_bytes().decode("utf-8", errors="replace").replace("\r", "")
    return serial, accueil_at, time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--no-build", action="store_true", help="boot the rootfs already built in build/image-arm64"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("boot-arm64: run as root (chroot, mkfs, bootctl into the image's ESP)")
    build_s = None if args.no_build else build()
    start = time.monotonic()
    disk = assemble_boot_disk()
    assemble_s = time.monotonic() - start
    esp = esp_listing(disk, "EFI/BOOT") + esp_listing(disk, "EFI/Linux")
    print(f"boot-arm64: boot disk {disk}, ESP: {' '.join(esp)}")
    serial, accueil_s, total_s = boot(disk)
    found = facts(serial)
    for key in ("accueil", "machine", "stub", "loader-entry", "root-source", "verity-status",
                "firstboot", "kiosk", "mapper", "luks-mode"):  # fmt: skip
        print(f"boot-arm64: {key}={found.get(key, '?')}")
    if "BALISE-TEST-SCREEN-BEGIN" in serial:
        print("boot-arm64: tty1 showed:\n" + screen(serial))
    if build_s is not None:
        print(f"boot-arm64: build (make image-arm64) {_minutes(build_s)}")
    print(f"boot-arm64: boot disk assembled again with the report unit in {_minutes(assemble_s)}")
    if accueil_s is None:
        sys.exit(f"boot-arm64: Accueil never shown (serial console: {BOOT_DIR / 'serial.log'})")
    uptime = found["accueil"].split("uptime=")[-1]
    print(f"boot-arm64: boot to Accueil {_minutes(accueil_s)} (qemu started to the report's line;")
    print(f"boot-arm64: guest uptime {uptime} s); powered off after {_minutes(total_s)}")


if __name__ == "__main__":
    main()
