"""Self-updates of the appliance (issue 14) end to end: systemd-sysupdate on the box fetches the
project's signed updates (root, dm-verity hash tree, signed UKI) from an HTTPS server of the test
on this host's loopback (qemu's user network forwards the address the image names to it, and
nothing else), writes them into the inactive A/B slot, and systemd-boot's boot counting with the
health check (balise-health.service) blesses the new version or falls back to the previous one.

The versions are built the way a technician builds them (ansible/build-update.yml, from the same
rootfs: only the version, and for v3 a kiosk that never starts, differ; no debootstrap again),
each signed by the project's (test) key — v4 by a stranger's. One disk, its TPM and its EFI
variables go through the boots in turn (v3 and v5 are built and signed while the boot before runs,
into a directory of their own beside the served one, and moved there between boots):

1. v1 (first boot, data partition enrolled on the TPM) finds v2, installs it, reboots;
2. v2 boots, unlocks by TPM without re-enrolment, passes its health check, is blessed; v4 (not
   signed by the project) is refused there and nothing changes;
3. v2 installs v3, whose kiosk never starts: its health check fails, the box comes back to v2 by
   itself and says so;
4. back on v2, the power is cut (qemu killed) while v5 is being written into the inactive slot:
   v2 still boots, and its next run installs v5.
"""

from __future__ import annotations

import hashlib
import http.server
import ipaddress
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.image.vm import (
    GUEST,
    OVMF_VARS,
    ROOTFS,
    TEST_KEYS,
    UPDATE_ADDRESS,
    ansible,
    facts,
    run_guest,
)

pytestmark = pytest.mark.image

UPDATE_BOOT_TIMEOUT = 1500
# The power is cut once this much of the new version went to the disk (the root is ~650 MiB).
CUT_AFTER_MIB = 96
CMDLINE = "console=ttyS0,115200 systemd.show_status=true"
# qemu runs this for each connection the guest opens to the update address: bytes both ways
# between its stdin/stdout and the test's HTTPS server on 127.0.0.1.
RELAY = """\
import os, select, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
open_fds = [0, s.fileno()]
while open_fds:
    for fd in select.select(open_fds, [], [])[0]:
        if fd == 0:
            data = os.read(0, 65536)
            if data:
                s.sendall(data)
            else:
                s.shutdown(socket.SHUT_WR)
                open_fds.remove(0)
        else:
            data = s.recv(65536)
            if not data:
                sys.exit(0)
            view = memoryview(data)
            while view:
                view = view[os.write(1, view):]
"""


class _Handler(http.server.SimpleHTTPRequestHandler):
    requested: list[str]

    def log_message(self, format: str, *args: object) -> None:
        self.requested.append(self.path)


@dataclass
class Server:
    port: int
    requested: list[str] = field(default_factory=list)


@dataclass
class Env:
    work: Path
    rootfs: Path
    publish: Path
    stranger: Path
    disk: Path
    vars: Path
    tpm: Path
    nic: list[str]
    server: Server


def _server_context(work: Path) -> ssl.SSLContext:
    """TLS for the update address, certified by the TEST update CA the test image trusts
    (image-assemble.yml with image_test_keys)."""
    ca_cert = x509.load_pem_x509_certificate((TEST_KEYS / "update-ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key(
        (TEST_KEYS / "update-ca.key").read_bytes(), password=None
    )
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, UPDATE_ADDRESS)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(UPDATE_ADDRESS))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    (work / "server.pem").write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(work / "server.pem")
    return context


def _gpg(home: Path, *argv: str) -> None:
    subprocess.run(["gpg", "--homedir", str(home), "--batch", "--quiet", *argv],
                   check=True, capture_output=True, timeout=120)  # fmt: skip


def _sign(publish: Path, gnupg: Path) -> None:
    """SHA256SUMS of what ``publish`` holds, signed (detached) with the key of ``gnupg``."""
    sums = "".join(
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n"
        for p in sorted(publish.glob("balise_*"))
    )
    (publish / "SHA256SUMS").write_text(sums, encoding="utf-8")
    (publish / "SHA256SUMS.gpg").unlink(missing_ok=True)
    _gpg(gnupg, "--pinentry-mode", "loopback", "--passphrase", "", "--output",
         str(publish / "SHA256SUMS.gpg"), "--detach-sign", str(publish / "SHA256SUMS"))  # fmt: skip
    subprocess.run(["gpgconf", "--homedir", str(gnupg), "--kill", "all"], check=False)


def _build(env: Env, version: str, *, disk: bool = False, publish: Path | None = None) -> None:
    """Version ``version`` from the test's rootfs: its disk image (``disk``), or built, signed
    and published by build-update.yml (into ``publish``, the served directory by default)."""
    variables = {
        "image_rootfs": str(env.rootfs),
        "image_version": version,
        "image_test_keys": True,
        "image_kernel_cmdline_extra": CMDLINE,
        "image_disk_dir": str(env.work / f"disk-{version}"),
        "image_disk": disk,
        "update_publish_dir": str(publish or env.publish),
    }
    playbook = "image-assemble.yml" if disk else "build-update.yml"
    run = ansible(playbook, "-e", json.dumps(variables), timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]


def _published(env: Env, version: str) -> list[str]:
    return sorted(p.name for p in env.publish.glob(f"balise_{version}[_.]*"))


def _stage(env: Env, version: str, beside: Sequence[str], *, broken_kiosk: bool = False) -> Path:
    """Version ``version`` built, signed and published by build-update.yml into a directory of
    its own that holds (hard links to) the published files of the versions ``beside``: what the
    served directory is to become, its SHA256SUMS signed over all of them. ``broken_kiosk``: a
    kiosk that never starts (its unit's command fails)."""
    staging = env.work / f"publish-{version}"
    staging.mkdir()
    for name in [n for v in beside for n in _published(env, v)]:
        os.link(env.publish / name, staging / name)
    dropin = env.rootfs / "etc/systemd/system/balise-kiosk.service.d"
    if broken_kiosk:
        dropin.mkdir(exist_ok=True)
        (dropin / "test-broken.conf").write_text("[Service]\nExecStart=\nExecStart=/bin/false\n")
    try:
        _build(env, version, publish=staging)
    finally:
        (dropin / "test-broken.conf").unlink(missing_ok=True)
    return staging


def _publish(env: Env, staging: Path, version: str) -> None:
    """The staged version's files moved into the served directory, then its signed list."""
    for name in [*(p.name for p in staging.glob(f"balise_{version}[_.]*")),
                 "SHA256SUMS", "SHA256SUMS.gpg"]:  # fmt: skip
        os.replace(staging / name, env.publish / name)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    if not (ROOTFS / "etc/systemd/system/balise-test-sentinel.service").exists():
        pytest.fail("no configured test rootfs: run the image tier (tests/image/test_image.py)")
    work = tmp_path_factory.mktemp("update")
    rootfs = work / "rootfs"
    subprocess.run(["cp", "-a", str(ROOTFS), str(rootfs)], check=True, timeout=600)
    system = rootfs / "etc/systemd/system"
    (system / "multi-user.target.wants/balise-test-report.service").unlink(missing_ok=True)
    shutil.copy2(GUEST / "balise-test-update", rootfs / "usr/local/sbin/balise-test-update")
    shutil.copy2(GUEST / "balise-test-update.service", system / "balise-test-update.service")
    (system / "multi-user.target.wants/balise-test-update.service").symlink_to(
        "/etc/systemd/system/balise-test-update.service"
    )
    www = work / "www"
    publish = www / "balise"
    publish.mkdir(parents=True)
    stranger = work / "gnupg"
    stranger.mkdir(mode=0o700)
    _gpg(stranger, "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key",
         "Not the project <stranger@example.invalid>", "rsa3072", "sign", "never")  # fmt: skip
    subprocess.run(["gpgconf", "--homedir", str(stranger), "--kill", "all"], check=False)

    requested: list[str] = []
    handler = type("Handler", (_Handler,), {"requested": requested})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a: handler(*a, directory=str(www))
    )
    server.daemon_threads = True
    server.socket = _server_context(work).wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    relay = work / "relay.py"
    relay.write_text(RELAY, encoding="utf-8")
    port = server.server_address[1]
    nic = ["-nic", f"user,model=virtio-net-pci,restrict=on,"
           f"guestfwd=tcp:{UPDATE_ADDRESS}:443-cmd:{sys.executable} {relay} {port}"]  # fmt: skip
    (work / "tpm").mkdir()
    shutil.copy2(OVMF_VARS, work / "vars.fd")
    state = Env(work, rootfs, publish, stranger, work / "disk.img", work / "vars.fd",
                work / "tpm", nic, Server(port, requested))  # fmt: skip
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(rootfs, ignore_errors=True)


@dataclass
class Boots:
    v1: str = ""
    v2: str = ""
    v2_to_v3: str = ""
    v3: str = ""
    back_to_v2: str = ""
    after_cut: str = ""
    requested_in_v2: list[str] = field(default_factory=list)


def _boot(env: Env, name: str, **kwargs: object) -> str:
    return run_guest(env.disk, env.vars, env.tpm, env.work, name, nic=env.nic,
                     timeout=UPDATE_BOOT_TIMEOUT, **kwargs)  # type: ignore[arg-type]  # fmt: skip


def _cut_while_writing(serial: str) -> bool:
    _, started, after = serial.partition("BALISE-TEST: update-start")
    written = [int(m) for m in re.findall(r"BALISE-TEST: written-mib=(\d+)", after)]
    return bool(started) and bool(written) and max(written) >= CUT_AFTER_MIB


@pytest.fixture(scope="module")
def boots(env: Env) -> Boots:
    done = Boots()
    _build(env, "1", disk=True)
    subprocess.run(["cp", "--sparse=always", str(env.work / "disk-1" / "balise.img"),
                    str(env.disk)], check=True)  # fmt: skip
    _build(env, "2")
    done.v1 = _boot(env, "v1")
    # v4: whatever it holds, listed in a SHA256SUMS signed by a key that is not the project's.
    for name in _published(env, "2"):
        shutil.copy2(env.publish / name, env.publish / name.replace("balise_2", "balise_4", 1))
    _sign(env.publish, env.stranger)
    env.server.requested.clear()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="build") as builds:
        # v3, built while v2 boots: a kiosk that never starts, signed by the project, beside v2.
        v3 = builds.submit(_stage, env, "3", ["2"], broken_kiosk=True)
        done.v2 = _boot(env, "v2")
        done.requested_in_v2 = list(env.server.requested)
        for name in _published(env, "4"):
            (env.publish / name).unlink()
        _publish(env, v3.result(), "3")
        # v5, built while v2 installs v3 and v3 fails its health check.
        v5 = builds.submit(_stage, env, "5", ["2", "3"])
        done.v2_to_v3 = _boot(env, "v2-to-v3")
        done.v3 = _boot(env, "v3")
        _publish(env, v5.result(), "5")
    done.back_to_v2 = _boot(env, "back-to-v2", kill_when=_cut_while_writing)
    done.after_cut = _boot(env, "after-cut")
    return done


def _update_log(serial: str) -> str:
    return "\n".join(line for line in serial.splitlines()
                     if line.startswith(("BALISE-TEST-UPDATE: ", "BALISE-TEST-HEALTH: ")))  # fmt: skip


def test_update_units_timer_at_a_random_time_of_this_boxs_night() -> None:
    system = ROOTFS / "etc/systemd/system"
    timer = (system / "balise-update.timer").read_text(encoding="utf-8")
    assert re.search(r"(?m)^OnCalendar=\*-\*-\* 0[0-3]:00:00$", timer), timer
    delay = re.search(r"(?m)^RandomizedDelaySec=(\d+)h$", timer)
    assert delay and 1 <= int(delay.group(1)) <= 5, timer
    assert "FixedRandomDelay=yes" in timer  # the same moment each night for a box, not per run
    assert (system / "timers.target.wants/balise-update.timer").is_symlink()
    # The health check gates boot-complete.target (what systemd-bless-boot waits for).
    assert (system / "boot-complete.target.requires/balise-health.service").is_symlink()
    # The engine's transfers: root, verity, then the UKI with boot counting, two versions kept.
    transfers = sorted(p.name for p in (ROOTFS / "etc/sysupdate.d").glob("*.transfer"))
    assert transfers == ["10-balise-root.transfer", "20-balise-verity.transfer",
                         "30-balise-uki.transfer"]  # fmt: skip
    uki = (ROOTFS / "etc/sysupdate.d/30-balise-uki.transfer").read_text(encoding="utf-8")
    assert "MatchPattern=balise_@v+@l-@d.efi" in uki and "TriesLeft=1" in uki
    for path in (ROOTFS / "etc/sysupdate.d").glob("*.transfer"):
        text = path.read_text(encoding="utf-8")
        assert f"Path=https://{UPDATE_ADDRESS}/balise/" in text and "Verify=yes" in text
        assert "InstancesMax=2" in text and "ProtectVersion=%A" in text
    # The project's key is the only one systemd-pull accepts; the update server is in the
    # egress list; the image says its version.
    assert (ROOTFS / "etc/systemd/import-pubring.gpg").stat().st_size > 0
    extra = json.loads((ROOTFS / "etc/balise/egress-update.json").read_text(encoding="utf-8"))
    assert extra[0] | {"why": ""} == {"host": UPDATE_ADDRESS, "port": 443, "proto": "tcp",
                                      "why": ""}  # fmt: skip
    osrel = (ROOTFS / "usr/lib/os-release").read_text(encoding="utf-8")
    assert "IMAGE_ID=balise\n" in osrel and re.search(r"(?m)^IMAGE_VERSION=\S+$", osrel)
    assert (ROOTFS / "usr/lib/systemd/systemd-sysupdate").exists()
    assert (ROOTFS / "usr/bin/gpg").exists()


def test_published_update_is_three_files_and_a_signed_list(env: Env, boots: Boots) -> None:
    names = _published(env, "2")
    assert len(names) == 3, names
    # The UKI, the root and its verity tree, one each; the raw files are named by their
    # partition UUIDs (halves of the root hash), so their sorted order is the hash's.
    for pattern in (r"balise_2\.efi", r"balise_2_[0-9a-f-]{36}\.root\.raw",
                    r"balise_2_[0-9a-f-]{36}\.verity\.raw"):  # fmt: skip
        assert sum(bool(re.fullmatch(pattern, name)) for name in names) == 1, (pattern, names)
    sums = (env.publish / "SHA256SUMS").read_text(encoding="utf-8")
    assert all(name in sums for name in names)
    home = env.work / "verify-gnupg"
    home.mkdir(mode=0o700, exist_ok=True)
    verify = subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--no-default-keyring",
         "--keyring", str(TEST_KEYS / "update-pubring.gpg"), "--trust-model", "always",
         "--verify", str(env.publish / "SHA256SUMS.gpg"), str(env.publish / "SHA256SUMS")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stderr


def test_v1_updates_itself_to_v2_unlocks_by_tpm_and_blesses_it(boots: Boots) -> None:
    first = facts(boots.v1)
    assert first["image-version"] == "1", boots.v1[-4000:]
    assert first["health"] == "active", _update_log(boots.v1)
    assert first["sentinel"] == "set"
    # v2 was written into the empty slot and its UKI put on the ESP with one try, then the box
    # rebooted by itself (qemu -no-reboot ended before the report's power-off).
    assert "BALISE-TEST: done" not in boots.v1, _update_log(boots.v1)
    assert "version 2 installée" in _update_log(boots.v1), _update_log(boots.v1)
    second = facts(boots.v2)
    assert second["image-version"] == "2", boots.v2[-4000:]
    assert second["boot-count-path"].startswith("\\EFI\\Linux\\balise_2+"), second
    # Same data partition, opened by the TPM2 under the signed PCR 11 policy: no re-enrolment,
    # nothing formatted, the parameter set by v1 still there.
    assert second["mapper"] == "open" and second["mounted"] == "yes", boots.v2[-4000:]
    assert second["tpm2-tokens"] == "1" and second["formatted"] == "0"
    assert second["sentinel"] == "present"
    assert second["kiosk"] == "active"
    # Healthy, so blessed: the UKI lost its counter; v1 stays as the fallback in the other slot.
    assert second["health"] == "active" and second["boot-complete"] == "active"
    assert second["bless"] == "active"
    assert second["before-esp"].split() == ["balise_1.efi", "balise_2.efi"], second
    labels = second["before-partitions"].split()
    assert labels[0::2] == ["balise_1", "balise_1_verity", "balise_2", "balise_2_verity"]


def test_update_not_signed_by_the_projects_key_is_refused(boots: Boots) -> None:
    found = facts(boots.v2)
    assert found["update-result"] != "success", _update_log(boots.v2)
    assert found["before-esp"] == found["after-esp"]
    assert found["before-partitions"] == found["after-partitions"]
    # The list was read, its signature refused: not a byte of v4 was fetched.
    assert "/balise/SHA256SUMS" in boots.requested_in_v2, boots.requested_in_v2
    assert not [p for p in boots.requested_in_v2 if "balise_4" in p], boots.requested_in_v2
    assert "BALISE-TEST: done" in boots.v2


def test_failed_health_check_returns_to_v2_by_itself_and_says_so(boots: Boots) -> None:
    assert "version 3 installée" in _update_log(boots.v2_to_v3), _update_log(boots.v2_to_v3)
    # v3 booted (systemd-boot spent its one try: balise_3+0-1.efi below) and its health check
    # rebooted it before the test's report could run: no power-off, a reboot.
    assert "BALISE-TEST: done" not in boots.v3
    assert "reboot: Restarting system" in boots.v3, boots.v3[-4000:]
    assert "reboot: Power down" not in boots.v3
    back = facts(boots.back_to_v2)
    assert back["image-version"] == "2", boots.back_to_v2[-4000:]
    assert back["health"] == "active", _update_log(boots.back_to_v2)
    # v3 spent its try and is booted last; v2 is what runs, its data unlocked as before.
    assert "balise_3+0-1.efi" in back["before-esp"].split(), back
    assert back["mapper"] == "open" and back["sentinel"] == "present"
    # balise update health raised it (an alert for Accueil) and the journal says it.
    said = "mise à jour annulée, version 2 conservée"
    journal = "\n".join(line for line in boots.back_to_v2.splitlines()
                        if line.startswith("BALISE-TEST-JOURNAL: "))  # fmt: skip
    assert said in journal.lower(), journal


def test_power_cut_while_writing_the_inactive_slot_then_the_next_run_completes(
    boots: Boots,
) -> None:
    cut = boots.back_to_v2
    assert _cut_while_writing(cut), _update_log(cut)
    assert "BALISE-TEST: done" not in cut  # killed in the middle of the update
    after = facts(boots.after_cut)
    assert after["image-version"] == "2", boots.after_cut[-4000:]
    assert after["health"] == "active" and after["mapper"] == "open"
    assert after["kiosk"] == "active"
    # The running slot is untouched; the next run wrote v5 whole and rebooted into it.
    v2_slot = [p for p in after["before-partitions"].split() if p.startswith("balise_2")]
    assert len(v2_slot) == 2, after
    log = _update_log(boots.after_cut)
    assert "version 5 installée" in log, log
    assert "BALISE-TEST: done" not in boots.after_cut, log
