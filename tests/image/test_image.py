"""The appliance image end to end: ansible-lint (production profile), the roles applied to a
mmdebstrap rootfs through the chroot connection twice (the second run changes nothing),
assertions on the rootfs, then the GPT disk image booted by its own systemd-boot under OVMF with
qemu/TCG (never KVM) and a software TPM: first boot formats the LUKS2 data partition and enrols
the TPM2, second boot unlocks it through crypttab; each time what tty1 shows is printed on the
serial console by a test-only unit, and the kiosk's first screen must be there. The second boot
also plugs USB keys (lots, backup, and a key of lots on ext4 the box must never mount); the raw
disk is searched for secrets in clear (a parameter, the LUKS recovery key); the agent and the
classifier's child run under the agent's sandbox; the kiosk's user cannot swap the provisioning
spool. Every boot runs on the read-only root verified by dm-verity, writing only to tmpfs and the
encrypted data partition. Then copies of the same disk, each tampered with offline (command
line, unsigned UKI, a unit edited in the root partition, a file added to it), get nothing from the
TPM2, and a newer signed UKI does; these five boots run two at a time."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.image.vm import (
    ANSIBLE,
    BUILD,
    BUILDER,
    GUEST,
    MIB,
    MTOOLS_ENV,
    OVMF_VARS,
    REPO,
    ROOTFS,
    TEST_KEYS,
    UPDATE_VARS,
    concurrently,
    run_guest,
)
from tests.image.vm import ansible as _ansible
from tests.image.vm import esp_listing as _esp_listing
from tests.image.vm import facts as _facts
from tests.image.vm import in_builder as _in_builder
from tests.image.vm import screen as _screen
from tests.support.lot_corpus import valid_lot

pytestmark = pytest.mark.image

LINT_VENV = Path(os.environ.get("BALISE_LINT_VENV", REPO / "build" / "ansible-lint-venv"))
# The sentinel is set as a mailbox password inside the guest and must appear nowhere on the disk.
# The guest script builds it from octal escapes, so the plain bytes are in no file of the image.
SENTINEL = "BALISE-SENTINEL-pop3-3f9c1d"
# Set by the guest's balise-test-practice at first boot; the archive on the key opens with it.
RECOVERY = "phrase de secours du test image"
ARCHIVE_MAGIC = b"BALSAV\x00\x01"
# The box's disk is larger than the image (flashed on 16-256 GB): the guest's disk file gets this
# much more, sparse, and the first boot must give it to the data partition.
DISK_GROWTH = 1024 * 1024 * 1024


def _layout() -> dict[str, int]:
    text = (REPO / "image" / "layout.env").read_text(encoding="utf-8")
    return {k: int(v) for k, v in re.findall(r"^([A-Z_]+)=(\d+)$", text, re.M)}


def _recap(output: str) -> dict[str, int]:
    match = re.search(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", output)
    assert match, output[-3000:]
    ok, changed, unreachable, failed = (int(g) for g in match.groups())
    return {"ok": ok, "changed": changed, "unreachable": unreachable, "failed": failed}


@dataclass
class Built:
    first: dict[str, int]
    second: dict[str, int]
    second_log: str
    disk: Path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    rootfs_run = _ansible("image-rootfs.yml", timeout=1200)
    assert rootfs_run.returncode == 0, rootfs_run.stdout[-4000:] + rootfs_run.stderr[-2000:]
    inventory = tmp_path_factory.mktemp("inventory") / "image.yml"
    inventory.write_text(
        "all:\n  children:\n    image:\n      hosts:\n"
        f"        {ROOTFS}:\n"
        "          ansible_connection: community.general.chroot\n"
        "          ansible_python_interpreter: /usr/bin/python3\n",
        encoding="utf-8",
    )
    runs = []
    for _ in range(2):
        run = _ansible("image-configure.yml", "-i", str(inventory), "-e", UPDATE_VARS)
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
        runs.append(run)
    first, second = _recap(runs[0].stdout), _recap(runs[1].stdout)
    # Test-only additions, after the roles and their assertions' subject: the report unit.
    for name in ("report", "sentinel", "practice"):
        script = f"balise-test-{name}"
        shutil.copy2(GUEST / script, ROOTFS / "usr/local/sbin" / script)
        shutil.copy2(GUEST / f"{script}.service", ROOTFS / "etc/systemd/system")
    shutil.copy2(GUEST / "balise-test-sandbox", ROOTFS / "usr/local/sbin" / "balise-test-sandbox")
    share = ROOTFS / "usr/local/share/balise-test"
    share.mkdir(parents=True, exist_ok=True)
    (share / "cpam.pem").write_bytes(_recipient_certificate())
    wants = ROOTFS / "etc/systemd/system/multi-user.target.wants"
    (wants / "balise-test-report.service").unlink(missing_ok=True)
    (wants / "balise-test-report.service").symlink_to(
        "/etc/systemd/system/balise-test-report.service"
    )
    assemble = _ansible(
        "image-assemble.yml",
        "-e",
        '{"image_kernel_cmdline_extra": "console=ttyS0,115200 systemd.show_status=true",'
        ' "image_test_keys": true}',
        timeout=900,
    )
    assert assemble.returncode == 0, assemble.stdout[-4000:] + assemble.stderr[-2000:]
    return Built(first, second, runs[1].stdout, BUILD / "balise.img")


def test_ansible_lint_production_profile() -> None:
    files = sorted(str(p.relative_to(ANSIBLE)) for p in ANSIBLE.glob("*.yml"))
    result = subprocess.run(
        [str(LINT_VENV / "bin" / "ansible-lint"), "--profile", "production", "--offline",
         *files, "roles/"],
        cwd=ANSIBLE,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
        # ansible-lint's own ansible-core finds the collections of Debian's ansible package.
        env={**os.environ, "ANSIBLE_COLLECTIONS_PATH": "/usr/lib/python3/dist-packages",
             "NO_COLOR": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "Profile 'production' was required, and it passed" in result.stdout + result.stderr


def test_second_run_changes_nothing(built: Built) -> None:
    assert built.first["changed"] > 0
    assert built.second["changed"] == 0, built.second_log[-4000:]
    assert built.second["failed"] == 0


def _enabled(target: str, unit: str) -> bool:
    return (ROOTFS / "etc/systemd/system" / f"{target}.wants" / unit).is_symlink()


def test_rootfs_policy(built: Built) -> None:
    # nftables: default drop both ways, loaded at boot, and a valid ruleset.
    ruleset = (ROOTFS / "etc/nftables.conf").read_text()
    for chain in ("input", "forward", "output"):
        assert f"hook {chain} priority filter; policy drop;" in ruleset
    check = subprocess.run(
        ["nft", "-c", "-f", str(ROOTFS / "etc/nftables.conf")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    assert _enabled("sysinit.target", "nftables.service")
    # No administration sshd: Debian's units masked, the exchange socket off until provisioning.
    for unit in ("ssh.service", "ssh.socket"):
        assert os.readlink(ROOTFS / "etc/systemd/system" / unit) == "/dev/null"
    assert not _enabled("sockets.target", "balise-exchange.socket")
    # No enabled socket unit listens on the network (only local AF_UNIX paths).
    for socket_unit in (ROOTFS / "etc/systemd/system").glob("*.wants/*.socket"):
        text = socket_unit.resolve().read_text() if socket_unit.resolve().exists() else ""
        if not text and socket_unit.is_symlink():
            target = os.readlink(socket_unit)
            text = (ROOTFS / target.lstrip("/")).read_text()
        for line in text.splitlines():
            if line.startswith(("ListenStream=", "ListenDatagram=", "ListenSequentialPacket=")):
                assert line.split("=", 1)[1].startswith(("/", "@")), f"{socket_unit.name}: {line}"
    # The Balise units.
    for unit in ("balise-kiosk.service", "balise-agent.service", "balise-firstboot.service"):
        assert _enabled("multi-user.target", unit), unit
    assert _enabled("timers.target", "balise-egress.timer")
    assert _enabled("paths.target", "balise-egress.path")
    assert os.readlink(ROOTFS / "etc/systemd/system/getty@tty1.service") == "/dev/null"
    # Root locked.
    shadow = {
        line.split(":")[0]: line.split(":")[1]
        for line in (ROOTFS / "etc/shadow").read_text().splitlines()
    }
    assert shadow["root"].startswith("!")
    # No secret in clear: no key, no credential, no database, no shared SSH host key.
    secrets = [
        p for p in ROOTFS.rglob("*")
        if p.is_file() and not p.is_symlink()
        and (p.name.startswith("ssh_host_") or p.suffix == ".kek" or p.name in {"balise.db", "credential.secret"})
    ]  # fmt: skip
    assert secrets == []
    # Debian 13's systemd ships the credential stores empty (0700): nothing in them in the image.
    assert not any((ROOTFS / "etc/credstore.encrypted").glob("*"))
    assert not (ROOTFS / "opt/balise/wheels").exists()


def test_boot_chain_is_one_signed_unified_kernel_image(built: Built) -> None:
    ukis = _esp_listing(built.disk, "EFI/Linux")
    assert len(ukis) == 1 and re.fullmatch(r"::/EFI/Linux/balise_[0-9][^/+]*\.efi", ukis[0]), ukis
    # No loader entry: nothing on the ESP sets a command line beside the UKI's own.
    assert _esp_listing(built.disk, "loader/entries") == []
    uki = BUILD / ukis[0].rsplit("/", 1)[1]
    # Signed for Secure Boot with the build's key, checked by sbverify against its certificate.
    verify = _in_builder(
        "sbverify", "--cert", "/tmp/balise-test/db.crt", f"/tmp/balise-test/{uki.name}",
        files=[uki, TEST_KEYS / "db.crt"],
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # One image holds the kernel, the initrd, the command line and the signed PCR 11 values.
    inspect = _in_builder("ukify", "inspect", f"/tmp/balise-test/{uki.name}", files=[uki])
    assert inspect.returncode == 0, inspect.stderr
    for section in (".linux:", ".initrd:", ".cmdline:", ".pcrsig:", ".pcrpkey:", ".uname:"):
        assert section in inspect.stdout, inspect.stdout
    # The read-only root and its dm-verity root hash are in the signed command line.
    roothash = (BUILD / "balise.roothash").read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{64}", roothash)
    assert "root=/dev/mapper/balise-root ro " in inspect.stdout, inspect.stdout
    assert f"balise.roothash={roothash}" in inspect.stdout


def _uuid(hexdigits: str) -> str:
    h = hexdigits
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


ROOT_TYPE = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"  # Discoverable Partitions: x86-64 root
VERITY_TYPE = "2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5"  # ... and its dm-verity hash tree


def test_disk_has_a_verified_root_slot_and_an_empty_one_for_updates(built: Built) -> None:
    listing = subprocess.run(
        ["sfdisk", "--json", str(built.disk)], capture_output=True, text=True, check=True
    )
    table = json.loads(listing.stdout)["partitiontable"]["partitions"]
    roothash = (BUILD / "balise.roothash").read_text().strip()
    layout = _layout()
    named = [(p.get("name"), p["type"].upper(), p["size"] * 512 // MIB) for p in table]
    version = named[1][0].removeprefix("balise_")
    assert named == [
        ("esp", "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", layout["ESP_MIB"]),
        (f"balise_{version}", ROOT_TYPE, layout["ROOT_MIB"]),
        (f"balise_{version}_verity", VERITY_TYPE, layout["VERITY_MIB"]),
        ("_empty", ROOT_TYPE, layout["ROOT_MIB"]),
        ("_empty", VERITY_TYPE, layout["VERITY_MIB"]),
        ("balise-data", "0FC63DAF-8483-4772-8E79-3D69D8477DE4", layout["DATA_MIB"]),
    ], named
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", version), version
    # systemd-repart's and systemd-sysupdate's naming: the halves of the root hash.
    assert table[1]["uuid"].lower() == _uuid(roothash[:32])
    assert table[2]["uuid"].lower() == _uuid(roothash[32:])


def test_booted_through_the_signed_unified_kernel_image(boots: tuple[str, str]) -> None:
    for serial in boots:
        facts = _facts(serial)
        assert facts["stub"].startswith("systemd-stub"), serial[-4000:]
        assert re.fullmatch(r"balise_[0-9].*\.efi", facts["loader-entry"]), facts
        assert facts["cmdline"].startswith("root=/dev/mapper/balise-root ro "), facts


def _rw_mounts(serial: str) -> list[tuple[str, str, str, str]]:
    prefix = "BALISE-TEST-RW-MOUNT: "
    rows = [line.removeprefix(prefix).split() for line in serial.splitlines()
            if line.startswith(prefix)]  # fmt: skip
    return [(r[0], r[1], r[2], r[3]) for r in rows if len(r) == 4]


# Kernel and memory file systems: gone at power-off, nothing in them survives to the next boot.
VOLATILE = {"tmpfs", "proc", "sysfs", "devtmpfs", "devpts", "cgroup2", "securityfs", "pstore",
            "efivarfs", "bpf", "debugfs", "tracefs", "configfs", "fusectl", "mqueue",
            "hugetlbfs", "autofs", "binfmt_misc", "ramfs", "nsfs"}  # fmt: skip


def test_root_is_read_only_and_verified_and_only_the_data_partition_persists_writes(
    boots: tuple[str, str],
) -> None:
    for serial in boots:
        facts = _facts(serial)
        assert facts["root-source"] == "/dev/mapper/balise-root", serial[-4000:]
        assert facts["root-options"].split(",")[0] == "ro", facts
        assert facts["root-writable"] == "no"
        assert facts["verity-status"] == "V", serial[-4000:]
        assert facts["verity-check"] == "active"
        assert any("racine vérifiée (dm-verity)" in line for line in serial.splitlines())
        assert facts["tpm-signed-policy"] == "open", facts
        rw = _rw_mounts(serial)
        assert ("/var/lib/balise", "/dev/mapper/balise-data") in {(t, s) for t, s, _, _ in rw}
        persistent = [m for m in rw if m[2] not in VOLATILE]
        for target, source, fstype, options in persistent:
            # Written to and kept: the encrypted data partition, where nothing may be run (the
            # ESP, mounted only when asked, holds signed UKIs: a loader entry there is the
            # edited command line test's business).
            if target == "/boot/efi":
                assert fstype == "vfat"
                continue
            if target.startswith("/run/balise-usb-"):  # a USB key, while its unit runs
                assert {"noexec", "nosuid", "nodev"} <= set(options.split(",")), options
                continue
            assert (target, source, fstype) == ("/var/lib/balise", "/dev/mapper/balise-data",
                                                "ext4"), persistent  # fmt: skip
            assert {"noexec", "nosuid", "nodev"} <= set(options.split(",")), options
        # Where the system writes at run time: tmpfs, never code for the next boot.
        for target in ("/var/tmp", "/var/log", "/var/cache", "/var/lib/systemd"):
            assert any(t == target and f == "tmpfs" for t, _, f, _ in rw), (target, rw)


# The application's core tests, run by the image's own Python against the package the balise role
# installed in /opt/balise/venv (its Python 3.13, its locked libraries): the same files as
# `make test` runs on this host, with the test tools of requirements/test.lock (for CPython 3.13,
# hash-checked) installed beside the venv in a folder of the rootfs's /tmp, removed afterwards.
CORE_TESTS = ("test_journal.py", "test_store.py", "test_vault_params.py", "test_cms.py",
              "test_lotfile.py", "test_classify.py", "test_tracking.py", "test_returns.py")  # fmt: skip
# What running them needs of test.lock besides runtime.lock (the linters and mypy are not needed).
CORE_TEST_TOOLS = ("pytest", "iniconfig", "packaging", "pytest-asyncio", "hypothesis",
                   "sortedcontainers", "trustme", "aiosmtpd", "atpublic", "jsonschema",
                   "jsonschema-specifications", "referencing", "rpds-py", "syrupy",
                   "pytest-textual-snapshot", "jinja2", "markupsafe")  # fmt: skip


def _lock_entries(lock: Path, names: Sequence[str]) -> str:
    """The entries of ``names`` in a hashed lock file, as they are written there."""
    wanted = {n.lower() for n in names}
    pattern = r"(?ms)^([A-Za-z0-9][A-Za-z0-9._-]*)==\S+.*?(?=^\S|\Z)"
    found = [m for m in re.finditer(pattern, lock.read_text(encoding="utf-8"))]
    assert {m.group(1).lower() for m in found} >= wanted, wanted
    return "".join(m.group(0) for m in found if m.group(1).lower() in wanted)


def test_core_tests_pass_with_the_images_python_and_libraries(built: Built) -> None:
    work = ROOTFS / "tmp" / "balise-core-tests"
    shutil.rmtree(work, ignore_errors=True)
    (work / "wheels").mkdir(parents=True)
    try:
        lock = work / "tools.lock"
        lock.write_text(_lock_entries(REPO / "requirements" / "test.lock", CORE_TEST_TOOLS))
        platforms = [f"--platform=manylinux_2_{m}_x86_64" for m in range(17, 42)]
        download = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--require-hashes", "--no-deps",
             "--only-binary=:all:", "--python-version=3.13", "--implementation=cp",
             "--abi=cp313", *platforms, "--index-url=https://pypi.org/simple",
             "--dest", str(work / "wheels"), "--requirement", str(lock)],
            capture_output=True, text=True, timeout=600,
            env={**{k: v for k, v in os.environ.items() if not k.startswith("PIP_")},
                 "PIP_CONFIG_FILE": os.devnull},
        )  # fmt: skip
        assert download.returncode == 0, download.stderr[-3000:]
        shutil.copytree(REPO / "tests", work / "tree" / "tests",
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        shutil.copy2(REPO / "pyproject.toml", work / "tree" / "pyproject.toml")
        inside = "/tmp/balise-core-tests"
        script = (
            f"set -e; cd {inside}; /opt/balise/venv/bin/python -I -m pip install --quiet"
            " --no-index --no-deps --disable-pip-version-check --target site wheels/*.whl;"
            f" cd tree; export PYTHONPATH={inside}/site:{inside}/tree HOME={inside};"
            ' /opt/balise/venv/bin/python -c \'import balise, sys; print("tested:", balise.__file__,'
            " sys.version_info[:2])';"
            " /opt/balise/venv/bin/python -m pytest -q -p no:cacheprovider"
            " -m 'not softhsm and not pcsc and not mail and not image'"
            + "".join(f" tests/{name}" for name in CORE_TESTS)
        )
        subprocess.run(["mount", "-t", "proc", "proc", str(ROOTFS / "proc")], check=True)
        try:
            run = subprocess.run(
                ["chroot", str(ROOTFS), "/bin/sh", "-c", script],
                capture_output=True, text=True, timeout=900,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8",
                     "PIP_CONFIG_FILE": "/dev/null"},
            )  # fmt: skip
        finally:
            subprocess.run(["umount", str(ROOTFS / "proc")], check=False)
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
        # The package tested is the venv's, with Debian 13's Python, not the repository's source.
        assert "tested: /opt/balise/venv/lib/python3.13/site-packages/balise/" in run.stdout
        assert "(3, 13)" in run.stdout
        assert re.search(r"\d+ passed", run.stdout), run.stdout[-2000:]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _recipient_certificate() -> bytes:
    """A self-signed stand-in for the CPAM's encryption certificate: the intake only needs the
    organism to hold one for the lot of the test key to be accepted."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CPAM 01 422 000 (test image)")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        # Far from its end: an expiry warning would be a problem the agent's journal test did
        # not set up.
        .not_valid_after(now + timedelta(days=400))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def _vfat_key(path: Path, label: str, files: dict[str, bytes]) -> Path:
    """A USB key's file system as a plain file (mkfs.vfat + mcopy, no loop mount)."""
    subprocess.run(
        ["mkfs.vfat", "-n", label, "-C", str(path), str(32 * 1024)], check=True, capture_output=True
    )
    for name, data in files.items():
        source = path.with_name(name)
        source.write_bytes(data)
        subprocess.run(
            ["mcopy", "-i", str(path), str(source), f"::/{name}"], check=True, env=MTOOLS_ENV
        )
        source.unlink()
    return path


def _ext4_key(path: Path, label: str, files: dict[str, bytes]) -> Path:
    """A USB key of another file system (ext4, filled by mke2fs -d: no mount needed)."""
    content = path.with_suffix(".d")
    content.mkdir()
    for name, data in files.items():
        (content / name).write_bytes(data)
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-L", label, "-d", str(content), str(path), "32M"],
        check=True, capture_output=True,
    )  # fmt: skip
    shutil.rmtree(content)
    return path


@dataclass
class Guest:
    disk: Path
    vars: Path
    tpm: Path
    logs: Path
    lots_key: Path
    backup_key: Path
    foreign_key: Path


@pytest.fixture(scope="module")
def guest(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Guest:
    work = tmp_path_factory.mktemp("guest")
    disk = work / "disk.img"
    subprocess.run(["cp", "--sparse=always", str(built.disk), str(disk)], check=True)
    os.truncate(disk, disk.stat().st_size + DISK_GROWTH)  # a hole: costs no disk space
    shutil.copy2(OVMF_VARS, work / "vars.fd")
    (work / "tpm").mkdir()
    lots = _vfat_key(
        work / "lots-key.img", "BALISE-LOTS", {"lot042.lot": valid_lot(date.today(), lot_number=42)}
    )
    backup = _vfat_key(
        work / "backup-key.img", "BALISE-SAUV", {"LISEZMOI.TXT": b"cle du cabinet\n"}
    )
    # The label of the key of lots on a file system the box must never mount (ext4 here): its lot
    # would be accepted if it were read.
    foreign = _ext4_key(
        work / "foreign-key.img",
        "BALISE-LOTS",
        {"lot043.lot": valid_lot(date.today(), lot_number=43)},
    )
    return Guest(disk, work / "vars.fd", work / "tpm", work, lots, backup, foreign)


def _usb_keys(guest: Guest) -> list[str]:
    """The keys as USB mass-storage devices on the xHCI bus (the CCID reader's bus)."""
    args = []
    keys = (("lotskey", guest.lots_key), ("backupkey", guest.backup_key),
            ("foreignkey", guest.foreign_key))  # fmt: skip
    for ident, image in keys:
        args += ["-drive", f"if=none,id={ident},format=raw,file={image}",
                 "-device", f"usb-storage,drive={ident}"]  # fmt: skip
    return args


def _boot(
    guest: Guest, name: str, extra: Sequence[str] = (), answers: Sequence[tuple[str, str]] = ()
) -> str:
    """One boot until the guest powers itself off; the serial console as text (``answers``:
    typed at its console, see :func:`run_guest`)."""
    return run_guest(guest.disk, guest.vars, guest.tpm, guest.logs, name, extra, answers=answers)


@pytest.fixture(scope="module")
def boots(guest: Guest) -> Iterator[tuple[str, str]]:
    first = _boot(guest, "first")
    second = _boot(guest, "second", _usb_keys(guest))
    yield first, second


def test_first_boot_enrols_the_tpm_and_shows_the_kiosk(boots: tuple[str, str]) -> None:
    serial = boots[0]
    facts = _facts(serial)
    assert "formatage LUKS2 (mode tpm2)" in serial
    assert facts["tpm2-tokens"] == "1", serial[-4000:]
    # The signed policy: PCR 11 as signed by the project's key, PCRs 7 and 12 as at enrolment.
    assert facts["tpm2-pubkey-pcrs"] == "11", facts
    assert facts["tpm2-hash-pcrs"] == "7+12", facts
    assert facts["pcr-signature"] == "present"
    assert facts["kek-decrypts"] == "yes"
    # The data partition took the disk's free space before it was formatted.
    assert "partition de données agrandie jusqu'à la fin du disque" in serial
    built = _layout()["DATA_MIB"] * MIB
    assert int(facts["data-partition-bytes"]) >= built + DISK_GROWTH - 2 * MIB, facts
    assert int(facts["data-mapper-bytes"]) > built + DISK_GROWTH - 64 * MIB, facts
    assert facts["mapper"] == "open" and facts["mounted"] == "yes"
    assert facts["kek-credential"] == "present"
    screen = _screen(serial)
    assert "Accueil" in screen, screen
    assert facts["kiosk"] == "active"
    assert facts["sentinel"] == "set"


def test_second_boot_unlocks_through_crypttab_with_the_tpm(boots: tuple[str, str]) -> None:
    serial = boots[1]
    facts = _facts(serial)
    assert "formatage" not in serial and "agrandie" not in serial  # the data partition is kept
    assert facts["data-partition-bytes"] == _facts(boots[0])["data-partition-bytes"]
    assert facts["cryptsetup-unit"] == "active", serial[-4000:]
    assert facts["mapper"] == "open" and facts["mounted"] == "yes"
    assert "Accueil" in _screen(serial)
    assert facts["sentinel"] == "present"  # the parameter set at first boot survived, encrypted


def test_running_box_policy(boots: tuple[str, str]) -> None:
    facts = _facts(boots[1])
    assert facts["listening"] == "0"  # no listening socket before the exchange is provisioned
    assert facts["nft-input"] == "policy drop" and facts["nft-output"] == "policy drop"
    assert facts["root-shadow"].startswith("root:!")
    assert facts["agent"] == "enabled"
    assert facts["ccid-group"] == "balise"  # qemu's usb-ccid reader, matched by interface class


def _on_disk(disk: Path, *needles: bytes) -> list[bytes]:
    """Which of ``needles`` the raw disk image holds, anywhere (root, ESP, data, free space)."""
    chunk = 64 * 1024 * 1024
    overlap = max(len(n) for n in needles)
    found = set()
    with disk.open("rb") as handle:
        tail = b""
        while block := handle.read(chunk):
            found |= {n for n in needles if n in tail + block}
            tail = block[-overlap:]
    return sorted(found)


def test_no_plaintext_parameter_on_the_disk(guest: Guest, boots: tuple[str, str]) -> None:
    assert _on_disk(guest.disk, SENTINEL.encode()) == []


def test_recovery_key_kept_for_the_technician_never_in_clear_on_the_disk(
    guest: Guest, boots: tuple[str, str]
) -> None:
    first, second = (_facts(serial) for serial in boots)
    key = first.get("recovery-key", "")
    # systemd-cryptenroll's recovery key: 8 groups of 8 modhex characters.
    assert re.fullmatch(r"[cbdefghijklnrtuv]{8}(-[cbdefghijklnrtuv]{8}){7}", key), first
    assert first["recovery-key-unlocks"] == "yes"  # the real key of the data partition
    # Kept for provision.yml on the encrypted data partition, still there after a reboot.
    assert first["recovery-key-fs"] == "/dev/mapper/balise-data", first
    assert second.get("recovery-key") == key
    # Not a byte of it in clear anywhere on the disk (root file system, journal, free blocks).
    assert _on_disk(guest.disk, key.encode(), key.replace("-", "").encode()) == []


def test_usb_keys_plugged_import_the_lot_and_take_a_sealed_backup(
    guest: Guest, boots: tuple[str, str]
) -> None:
    first, second = (_facts(serial) for serial in boots)
    assert first["practice"] == "configured", boots[0][-4000:]
    facts = second
    # On failure, what the keys' units said (their journals, printed earlier in the boot than
    # the tail of the serial log reaches) and the agent's lines around them.
    usb_log = "\n".join(
        line
        for line in boots[1].splitlines()
        if line.startswith(("BALISE-TEST-USB", "BALISE-TEST: balise-usb")) or "balise-agent" in line
    )[-8000:]
    # BALISE-LOTS: mounted read-only, the lot validated and journaled, then unmounted.
    assert facts["balise-usb-import"].startswith("success"), usb_log
    assert facts["balise-usb-import-mounted"] == "no"
    assert facts["lots-ready"] == "1", boots[1][-6000:]
    assert re.search(r"BALISE-TEST-PRACTICE: lots: .*lot 042 du", boots[1])
    # BALISE-SAUV: one archive written and journaled on the key, synced, unmounted.
    assert facts["balise-usb-backup"].startswith("success"), usb_log
    assert facts["balise-usb-backup-mounted"] == "no"
    assert facts["key-backups"] == "1", usb_log
    listing = subprocess.run(
        ["mdir", "-b", "-i", str(guest.backup_key), "::/"],
        capture_output=True, text=True, check=True, env=MTOOLS_ENV,
    ).stdout.split()  # fmt: skip
    archives = [n for n in listing if re.fullmatch(r"::/balise-[0-9a-f]+-\w+\.sauvegarde", n)]
    assert len(archives) == 1, listing
    assert "::/LISEZMOI.TXT" in listing  # the key's own files are left alone
    copy = guest.logs / "from-key.sauvegarde"
    subprocess.run(
        ["mcopy", "-n", "-i", str(guest.backup_key), archives[0], str(copy)],
        check=True, env=MTOOLS_ENV,
    )  # fmt: skip
    data = copy.read_bytes()
    assert data.startswith(ARCHIVE_MAGIC) and not data.startswith(b"SQLite format 3")
    assert SENTINEL.encode() not in data
    # ... and it is a whole archive the technician opens with the recovery passphrase.
    env = {k: v for k, v in os.environ.items() if not k.startswith("BALISE_")}
    verified = subprocess.run(
        [str(Path(sys.executable).with_name("balise")), "backup", "verify", "--json", str(copy)],
        input=RECOVERY + "\n", capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert '"lots"' in verified.stdout


def test_usb_key_of_another_file_system_is_never_mounted(boots: tuple[str, str]) -> None:
    facts = _facts(boots[1])
    # The ext4 key labelled BALISE-LOTS: udev hands it to no unit...
    assert facts["foreign-BALISE-LOTS-ext4-started"] == "no", boots[1][-6000:]
    assert facts["foreign-BALISE-LOTS-ext4-mounted"] == "no"
    # ... and its unit, started by hand, refuses it before any mount.
    assert facts["foreign-BALISE-LOTS-ext4-by-hand"] != "success"
    assert facts["foreign-BALISE-LOTS-ext4-mounted-after"] == "no"
    assert re.search(r"BALISE-TEST-USB-FOREIGN: .*refusée : système de fichiers ext4", boots[1]), (
        boots[1][-6000:]
    )
    # Its lot was never read: only the vfat key's lot is in the box.
    assert facts["lots-ready"] == "1"
    assert not re.search(r"BALISE-TEST-PRACTICE: lots: .*lot 043", boots[1])


def test_units_sandboxed_and_still_working(boots: tuple[str, str]) -> None:
    for serial in boots:
        facts = _facts(serial)
        assert facts["agent-active"] == "active", serial[-4000:]
        assert facts["agent-restarts"] == "0", serial[-4000:]
    # The classifier's child process under the agent's own seccomp filter, limits and mounts.
    verdict = _facts(boots[1])["classifier-in-agent-sandbox"]
    assert verdict.startswith("unknown SENDER_NOT_ALLOWED child-started 1"), boots[1][-4000:]


def _agent_warnings(serial: str) -> list[str]:
    prefix = "BALISE-TEST-AGENT-WARNING: "
    return [line.removeprefix(prefix) for line in serial.splitlines() if line.startswith(prefix)]


def test_agent_journal_shows_exactly_the_problems_provoked(boots: tuple[str, str]) -> None:
    """`journalctl -u balise-agent -p warning`: first boot, the backup without a recovery
    passphrase (set later in that boot); second boot, p1's mailbox where nothing listens."""
    expected = ({"BACKUP_NO_PASSPHRASE"}, {"POP3_UNREACHABLE"})
    for serial, codes in zip(boots, expected, strict=True):
        facts = _facts(serial)
        assert facts["agent-type"] == "notify"
        lines = _agent_warnings(serial)
        found = [re.search(r"\[([A-Z][A-Z0-9_]+)\]", line) for line in lines]
        assert lines and all(found), serial[-6000:]
        assert {m.group(1) for m in found if m} == codes, lines
        # Words and a code, never a Python repr.
        assert not any(re.search(r"\b[A-Z][A-Za-z]+\([a-z_]+=", line) for line in lines), lines
        assert facts["journal-sentinel"] == "0"
    first, second = (_facts(serial) for serial in boots)
    assert any("sauvegarde vers " in line for line in _agent_warnings(boots[0]))
    # `systemctl status balise-agent`: last purge, last send, alerts waiting (and what fails).
    assert "aucun envoi" in first["agent-status"], first["agent-status"]
    assert "alerte(s) en attente" in first["agent-status"]
    assert "en échec : purge:p1" in second["agent-status"], second["agent-status"]


def test_the_watchdog_restarts_a_stopped_agent(boots: tuple[str, str]) -> None:
    serial = boots[1]
    facts = _facts(serial)
    assert facts["agent-watchdog-usec"] == "20s"  # the test's drop-in (shipped: 10min)
    assert facts["agent-watchdog-restarted"].startswith("yes"), serial[-6000:]
    assert facts["agent-watchdog-restarts"] == "1"
    assert facts["agent-watchdog-old-gone"] == "yes"
    said = [line for line in serial.splitlines() if line.startswith("BALISE-TEST-AGENT-WATCHDOG: ")]
    assert any("Watchdog timeout" in line for line in said), said


def test_provisioning_spool_cannot_be_swapped_by_the_kiosk_user(boots: tuple[str, str]) -> None:
    facts = _facts(boots[1])
    assert facts["spool-new-owner"] == "root"
    assert facts["spool-new-replaceable"] == "no"
    # The kiosk still drops its request, and the root helper takes it.
    assert facts["kiosk-request"] == "written"
    assert facts["kiosk-request-taken"] == "yes", boots[1][-4000:]


# --- Measured boot: the same disk, tampered with offline, then updated with a newer signed UKI ---


def _uki_name(disk: Path) -> str:
    (uki,) = _esp_listing(disk, "EFI/Linux")
    return uki.rsplit("/", 1)[1]


def _build_uki(
    out: Path, cmdline: str, uname: str, *, pcr_signed: bool, image_version: str | None = None
) -> Path:
    """A UKI of the image's kernel and initrd, built by the build chroot's ukify; with
    ``pcr_signed`` its PCR 11 values are signed with the build's PCR key (what a release of the
    project does), without it they are not (what anybody else can build). ``image_version``: the
    IMAGE_VERSION its os-release says (systemd-boot boots the newest)."""
    stage = "/tmp/balise-test"
    kver = next((ROOTFS / "lib/modules").iterdir()).name
    osrel = out.with_name("os-release")
    text = (ROOTFS / "usr/lib/os-release").read_text(encoding="utf-8")
    if image_version is not None:
        text = re.sub(r"(?m)^IMAGE_VERSION=.*$", f"IMAGE_VERSION={image_version}", text)
    osrel.write_text(text, encoding="utf-8")
    files = [ROOTFS / f"boot/vmlinuz-{kver}", ROOTFS / f"boot/initrd.img-{kver}",
             osrel, TEST_KEYS / "db.key", TEST_KEYS / "db.crt",
             TEST_KEYS / "pcr-signing.key", TEST_KEYS / "pcr-signing.pub.pem"]  # fmt: skip
    argv = ["ukify", "build", "--linux", f"{stage}/vmlinuz-{kver}",
            "--initrd", f"{stage}/initrd.img-{kver}", "--cmdline", cmdline,
            "--os-release", f"@{stage}/os-release", "--uname", uname, "--signtool", "sbsign",
            "--secureboot-private-key", f"{stage}/db.key",
            "--secureboot-certificate", f"{stage}/db.crt"]  # fmt: skip
    if pcr_signed:
        argv += ["--pcr-private-key", f"{stage}/pcr-signing.key",
                 "--pcr-public-key", f"{stage}/pcr-signing.pub.pem",
                 "--phases", _pcr_phases()]  # fmt: skip
    argv += ["--output", f"{stage}/{out.name}"]
    # _in_builder removes its stage afterwards: copy the result out from inside the same call.
    result = _in_builder("sh", "-c", '"$@" && cp "$0" /tmp/balise-uki-out.efi',
                         f"{stage}/{out.name}", *argv, files=files)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    shutil.move(BUILDER / "tmp" / "balise-uki-out.efi", out)
    return out


def _pcr_phases() -> str:
    """The boot phases a release's UKI signs the PCR 11 values of (image/measured-boot.env)."""
    text = (REPO / "image" / "measured-boot.env").read_text(encoding="utf-8")
    match = re.search(r'^PCR_PHASES="([^"]+)"$', text, re.M)
    assert match, text
    return match.group(1)


def _esp_put(disk: Path, source: Path | bytes, target: str) -> None:
    """``source`` (a file, or these bytes) written to ``target`` on the disk image's ESP."""
    if isinstance(source, bytes):
        path = disk.with_name("esp-put.tmp")
        path.write_bytes(source)
        source = path
    folder = target.rsplit("/", 1)[0]
    subprocess.run(["mmd", "-D", "s", "-i", f"{disk}@@1M", f"::/{folder}"],
                   capture_output=True, env=MTOOLS_ENV)  # fmt: skip
    subprocess.run(["mcopy", "-o", "-i", f"{disk}@@1M", str(source), f"::/{target}"],
                   check=True, capture_output=True, env=MTOOLS_ENV)  # fmt: skip


def _esp_del(disk: Path, target: str) -> None:
    subprocess.run(["mdel", "-i", f"{disk}@@1M", f"::/{target}"],
                   check=True, capture_output=True, env=MTOOLS_ENV)  # fmt: skip


def _esp_get(disk: Path, target: str, dest: Path) -> Path:
    subprocess.run(["mcopy", "-n", "-i", f"{disk}@@1M", f"::/{target}", str(dest)],
                   check=True, capture_output=True, env=MTOOLS_ENV)  # fmt: skip
    return dest


def _root_spec(disk: Path) -> str:
    """The root partition of slot A (it follows the ESP) as debugfs and dumpe2fs open it."""
    return f"{disk}?offset={(1 + _layout()['ESP_MIB']) * MIB}"


def _debugfs(spec: str, request: str, *options: str) -> str:
    run = subprocess.run(["debugfs", *options, "-R", request, spec],
                         capture_output=True, text=True)  # fmt: skip
    # debugfs says what failed on stderr (after its version line) and still exits 0.
    said = [line for line in run.stderr.splitlines() if line and not line.startswith("debugfs ")]
    assert run.returncode == 0 and not said, run.stderr
    return run.stdout


def _ext4_field(header: str, name: str) -> int:
    match = re.search(rf"^{name}:\s+(\d+)", header, re.M)
    assert match, (name, header[:2000])
    return int(match.group(1))


def _edit_root_file(disk: Path, path: str, old: bytes, new: bytes) -> None:
    """``old`` replaced by ``new`` (same length) in ``path`` of the disk's root partition, written
    straight into the file's first data block as a thief with the disk on a bench would (ext4
    has no checksum over file contents)."""
    assert len(old) == len(new)
    spec = _root_spec(disk)
    offset = int(spec.rsplit("=", 1)[1])
    size = _ext4_field(_debugfs(spec, "stats"), "Block size")
    block = int(_debugfs(spec, f"blocks {path}").split()[0])
    where = offset + block * size
    with disk.open("r+b") as handle:
        handle.seek(where)
        original = handle.read(size)
        assert old in original, original[:400]
        handle.seek(where)
        handle.write(original.replace(old, new, 1))


def _add_root_file(disk: Path, path: str, content: bytes) -> None:
    """A new file ``path`` holding ``content`` in the disk's root partition, added with debugfs
    as a careful thief with the disk on a bench would: its inode alone in its inode-table block
    (the free inodes before that block marked used), and the superblock and group descriptors,
    which every mount reads, put back as they were. The blocks that differ are then only the ones
    of the new file and of its directory (and the bitmaps, never read on a read-only root): the
    box mounts its root and boots as far as an added file can take it."""
    spec = _root_spec(disk)
    offset = int(spec.rsplit("=", 1)[1])
    header = subprocess.run(["dumpe2fs", spec], capture_output=True, text=True, check=True).stdout
    block_size = _ext4_field(header, "Block size")
    per_block = block_size // _ext4_field(header, "Inode size")
    groups = -(-_ext4_field(header, "Block count") // _ext4_field(header, "Blocks per group"))
    read_at_mount = block_size * (1 + -(-groups * _ext4_field(header, "Group descriptor size")
                                        // block_size))  # fmt: skip
    free = [(int(a), int(b or a)) for a, b in re.findall(r"(\d+)(?:-(\d+))?",
            " ".join(re.findall(r"^\s+Free inodes: (.*)$", header, re.M)))]  # fmt: skip
    # The first inode-table block whose inodes are all free (inodes count from 1).
    start = next(s for a, b in free
                 for s in [a + (-(a - 1)) % per_block] if s + per_block - 1 <= b)  # fmt: skip
    used = [(a, min(b, start - 1)) for a, b in free if a < start]
    with disk.open("r+b") as handle:
        handle.seek(offset)
        original = handle.read(read_at_mount)
    source = disk.with_name("added-file")
    source.write_bytes(content)
    requests = [f"seti <{a}> {b - a + 1}" for a, b in used] + [f"write {source} {path}"]
    for request in requests:
        _debugfs(spec, request, "-w")
    inode = int(_debugfs(spec, f"stat {path}").split()[1])
    assert start <= inode < start + per_block, (start, inode)
    with disk.open("r+b") as handle:
        handle.seek(offset)
        handle.write(original)
    # The file is there, as written (-n: the bitmaps' checksums are the group descriptors' again).
    assert _debugfs(spec, f"cat {path}", "-n").encode() == content


@dataclass
class Measured:
    edited: str
    unsigned: str
    tampered_root: str
    added_file: str
    newer: str
    newer_uki: str


# What balise-firstboot asks on the console when the TPM2 refuses a boot, and a key typed wrong.
RECOVERY_QUESTION = "Clé de secours du technicien ("
WRONG_KEY = "pas-la-bonne-cle-de-secours"
# The thief's added file: a drop-in that would run the kiosk as root.
ADDED_FILE = "/etc/systemd/system/balise-kiosk.service.d/zz-local.conf"


def _copy(guest: Guest, name: str, state: Guest | None = None) -> Guest:
    """The box as the first two boots left it (``state``: the EFI variables and the TPM2 of that
    one instead), copied for the boot ``name``: a sparse copy of the disk, its own EFI variables
    and TPM2 state; serial logs stay beside the others."""
    work = guest.logs / name
    work.mkdir()
    disk = work / "disk.img"
    subprocess.run(["cp", "--sparse=always", str(guest.disk), str(disk)], check=True)
    shutil.copy2((state or guest).vars, work / "vars.fd")
    shutil.copytree((state or guest).tpm, work / "tpm")
    return replace(guest, disk=disk, vars=work / "vars.fd", tpm=work / "tpm")


@pytest.fixture(scope="module")
def measured(guest: Guest, boots: tuple[str, str]) -> Measured:
    """Five more boots of the box's disk as the first two left it, each on its own copy (disk,
    EFI variables, TPM2), run two at a time: four tamperings a thief would try, then the update,
    on the TPM2 and EFI variables the first try (the edited command line) left behind."""
    name = _uki_name(guest.disk)
    cmdline = _facts(boots[1])["cmdline"]
    kver = next((ROOTFS / "lib/modules").iterdir()).name
    # 1. The command line edited: a loader entry of the thief's beside the signed UKI, chosen.
    edited = _copy(guest, "edited-cmdline")
    loader = _esp_get(edited.disk, "loader/loader.conf", guest.logs / "loader.conf").read_bytes()
    entry = f"title Balise\nefi /EFI/Linux/{name}\noptions {cmdline} balise.edited=1\n"
    _esp_put(edited.disk, entry.encode(), "loader/entries/balise-edited.conf")
    assert b"default balise_*" in loader, loader  # the image's default entry, replaced
    _esp_put(edited.disk, loader.replace(b"default balise_*", b"default balise-edited.conf"),
             "loader/loader.conf")  # fmt: skip
    # 2. A UKI nobody signed the PCR values of (same kernel, initrd and command line).
    unsigned = _copy(guest, "unsigned-uki")
    _esp_put(unsigned.disk, _build_uki(guest.logs / "unsigned.efi", cmdline, kver,
                                       pcr_signed=False), f"EFI/Linux/{name}")  # fmt: skip
    # 3. The root edited offline: the kiosk's unit made to run it as root (its first block).
    tampered = _copy(guest, "tampered-root")
    _edit_root_file(tampered.disk, "/etc/systemd/system/balise-kiosk.service",
                    b"User=balise\n", b"User=root\n#\n")  # fmt: skip
    # 4. A file added to the root offline: a drop-in running the kiosk as root.
    added = _copy(guest, "added-file")
    _add_root_file(added.disk, ADDED_FILE, b"[Service]\nUser=root\n")
    # 5. An update: a second UKI, signed, with a newer kernel version string, beside the first,
    # booted once the edited command line's boot is over, on the TPM2 and EFI variables it left.
    version = re.fullmatch(r"(\d+)\.(\d+)(.*)", kver)
    assert version, kver
    major, minor, rest = version.groups()
    newer_kver = f"{major}.{int(minor) + 1}{rest}"
    newer_version = name.removeprefix("balise_").removesuffix(".efi") + ".1"
    newer_name = f"balise_{newer_version}.efi"
    newer_uki = _build_uki(guest.logs / newer_name, cmdline, newer_kver, pcr_signed=True,
                           image_version=newer_version)  # fmt: skip
    newer_disk = guest.logs / "newer-uki.img"
    subprocess.run(["cp", "--sparse=always", str(guest.disk), str(newer_disk)], check=True)
    _esp_put(newer_disk, newer_uki, f"EFI/Linux/{newer_name}")

    serial: dict[str, str] = {}
    # The technician's recovery key, asked on the console when the TPM2 refuses a boot: in the
    # edited command line's boot a wrong key then the right one (boots[0] printed it), in the
    # unsigned UKI's Enter alone (the question passed). Asked in neither boot dm-verity refused.
    key = _facts(boots[0])["recovery-key"]

    def edited_then_newer() -> str:
        serial["edited-cmdline"] = _boot(
            edited, "edited-cmdline",
            answers=[(RECOVERY_QUESTION, WRONG_KEY), (RECOVERY_QUESTION, key)],
        )  # fmt: skip
        return _boot(replace(edited, disk=newer_disk), "newer-uki")

    try:
        serial |= concurrently({
            "newer-uki": edited_then_newer,  # the longest first
            "unsigned-uki": lambda: _boot(unsigned, "unsigned-uki",
                                          answers=[(RECOVERY_QUESTION, "")]),
            "tampered-root": lambda: _boot(tampered, "tampered-root"),
            "added-file": lambda: _boot(added, "added-file"),
        })  # fmt: skip
    finally:
        for disk in (edited.disk, unsigned.disk, tampered.disk, added.disk, newer_disk):
            disk.unlink(missing_ok=True)  # ~1 GB each; the serial logs stay
    return Measured(
        serial["edited-cmdline"],
        serial["unsigned-uki"],
        serial["tampered-root"],
        serial["added-file"],
        serial["newer-uki"],
        newer_name,
    )


def _alert_screen(serial: str) -> str:
    """What tty1 showed with every blank taken out: the screen's rows are cut at its width, in
    the middle of a word too, and padded with blanks, so a sentence is found by
    :func:`_squeezed` of it, never by its spaces."""
    return _squeezed(_screen(serial))


def _squeezed(text: str) -> str:
    return "".join(text.split())


def _locked_out(serial: str) -> None:
    """The TPM2 refused the boot: the data partition stays closed, nothing is formatted, the
    kiosk and the agent do not start, and tty1 says what happened (the alert screen)."""
    facts = _facts(serial)
    assert "BALISE-TEST: done" in serial, serial[-4000:]  # the box did boot, up to the report
    assert facts["mapper"] == "closed", serial[-4000:]
    assert facts["kek-decrypts"] == "no", facts
    assert "la clé de secours du technicien est nécessaire" in serial, serial[-4000:]
    # Never formatted again: the data stays for the technician's recovery key.
    assert "formatage" not in serial and facts["tpm2-tokens"] == "1"
    # balise-firstboot ended failed with its reason in /run (root's, words only), and the alert
    # screen it starts on failure (as the kiosk's user, in place of the kiosk) says it in French.
    assert facts["firstboot"] == "failed", facts
    assert facts["kiosk"] != "active" and facts["agent-active"] != "active", facts
    assert facts["alert-state"] == "refus" and facts["alert-file"] == "root 644", facts
    assert facts["alert"].startswith("active") and facts["alert-user"] == "balise", facts
    screen = _alert_screen(serial)
    assert _squeezed("Démarrage refusé par la puce TPM") in screen, screen
    assert _squeezed("la partition de données reste fermée, rien n'est effacé") in screen, screen
    assert _squeezed("Appelez votre technicien") in screen and "Accueil" not in screen, screen
    # balise-firstboot's own words, shown as they are.
    assert _squeezed("Raison : la puce TPM a refusé ce démarrage") in screen, screen


def test_edited_command_line_gets_no_key_from_the_tpm_and_the_recovery_key_opens_the_data(
    measured: Measured, boots: tuple[str, str]
) -> None:
    serial = measured.edited
    facts = _facts(serial)
    key = _facts(boots[0])["recovery-key"]
    assert "balise.edited=1" in facts["cmdline"], facts  # the thief's command line did boot
    assert "formatage" not in serial and facts["tpm2-tokens"] == "1"
    # The recovery key asked on the console, tries left shown: a wrong one refused, the right
    # one opened the data partition, mounted, with what the first boot wrote there...
    assert "(3 essai(s) ; Entrée seule : passer)" in serial, serial[-4000:]
    assert "clé de secours refusée (2 essai(s) restant(s))" in serial
    assert "(2 essai(s) ; Entrée seule : passer)" in serial
    assert "partition de données ouverte par la clé de secours du technicien" in serial
    assert facts["mapper"] == "open" and facts["mounted"] == "yes", facts
    assert facts["recovery-key-fs"] == "/dev/mapper/balise-data" and facts["recovery-key"] == key
    # ... but the parameters stay closed (their KEK is sealed to the policy this boot does not
    # meet, and none is made for it), so nothing of Balise starts: the alert screen says so.
    assert facts["kek-decrypts"] == "no" and "sentinel" not in facts, facts
    assert "création de la clé des paramètres" not in serial
    assert facts["firstboot"] == "failed", facts
    assert facts["kiosk"] != "active" and facts["agent-active"] != "active", facts
    assert facts["alert-state"] == "secours" and facts["alert-root"] == "V", facts
    screen = _alert_screen(serial)
    assert _squeezed("Démarrage avec la clé de secours") in screen, screen
    assert _squeezed("Les données sont là, mais les paramètres restent fermés") in screen, screen
    assert _squeezed("Appelez votre technicien") in screen and "Accueil" not in screen, screen
    assert "re-flashé" not in screen  # the root itself was not changed: no blank in the word
    # Neither key typed is shown or written anywhere (the test's own report prints the real
    # one, read from the data partition, on its one line).
    assert WRONG_KEY not in serial
    shown = [line for line in serial.splitlines() if key in line]
    assert shown == [f"BALISE-TEST: recovery-key={key}"], shown


def test_uki_without_the_projects_pcr_signature_gets_no_key(measured: Measured) -> None:
    facts = _facts(measured.unsigned)
    assert facts["stub"].startswith("systemd-stub") and facts["pcr-signature"] == "absent"
    # The recovery key asked, Enter alone: the question passed, the boot stopped as refused.
    assert "(3 essai(s) ; Entrée seule : passer)" in measured.unsigned
    assert "clé de secours : question passée" in measured.unsigned
    _locked_out(measured.unsigned)
    assert facts["alert-root"] == "V"


def test_root_edited_offline_gets_no_key_from_the_tpm(measured: Measured) -> None:
    serial = measured.tampered_root
    facts = _facts(serial)
    # dm-verity refused the edited block: systemd could not even read the unit, the kiosk never
    # ran (as root or otherwise), and the check measured no "sysinit" into PCR 11...
    assert facts["verity-status"] == "C", serial[-4000:]
    assert facts["verity-check"] == "failed", facts
    assert "système modifié hors ligne (bloc refusé par dm-verity)" in serial, serial[-4000:]
    assert facts["kiosk"] != "active"
    # ... so the TPM2 refuses anything sealed to the signed policy in this boot: data partition
    # closed, nothing formatted, the technician's recovery key asked.
    assert facts["tpm-signed-policy"] == "refused", facts
    _locked_out(serial)
    # The alert screen says the system was changed: re-flash, then restore; no recovery key is
    # asked on a system changed on the disk.
    assert facts["alert-root"] == "C", facts
    assert RECOVERY_QUESTION not in serial
    assert "la clé de secours n'est pas demandée" in serial
    assert _squeezed("réinstallé (re-flashé) puis restauré depuis la dernière sauvegarde") in (
        _alert_screen(serial)
    )


def test_file_added_to_the_root_offline_gets_no_key_from_the_tpm(
    measured: Measured, boots: tuple[str, str]
) -> None:
    serial = measured.added_file
    facts = _facts(serial)
    # The genuine box reads the kiosk's drop-ins (the provisioning spool's)...
    genuine = _facts(boots[1])
    assert "/balise-kiosk.service.d/provisioning.conf" in genuine["kiosk-drop-ins"], genuine
    assert genuine["kiosk-user"] == "balise"
    # ... but the directory the thief added a drop-in to is a block dm-verity refuses: systemd
    # never read it (the kiosk is not run as root, nor at all), and the check measured no
    # "sysinit" into PCR 11...
    assert facts["verity-status"] == "C", serial[-4000:]
    assert facts["verity-check"] == "failed", facts
    assert "système modifié hors ligne (bloc refusé par dm-verity)" in serial, serial[-4000:]
    assert ADDED_FILE not in facts["kiosk-drop-ins"] and facts["kiosk-user"] == "balise", facts
    assert facts["kiosk"] != "active"
    # ... so the TPM2 gives nothing sealed to the signed policy: the data partition stays closed,
    # nothing is formatted, the technician's recovery key is asked.
    assert facts["tpm-signed-policy"] == "refused", facts
    _locked_out(serial)
    # The alert screen says the system was changed: re-flash, then restore; no recovery key is
    # asked on a system changed on the disk.
    assert facts["alert-root"] == "C", facts
    assert RECOVERY_QUESTION not in serial
    assert "la clé de secours n'est pas demandée" in serial
    assert _squeezed("réinstallé (re-flashé) puis restauré depuis la dernière sauvegarde") in (
        _alert_screen(serial)
    )


def test_newer_signed_uki_unlocks_without_re_enrolment(measured: Measured) -> None:
    facts = _facts(measured.newer)
    assert facts["loader-entry"] == measured.newer_uki, facts  # systemd-boot took the newest
    assert facts["mapper"] == "open" and facts["mounted"] == "yes", measured.newer[-4000:]
    assert facts["tpm2-tokens"] == "1" and facts["tpm2-pubkey-pcrs"] == "11"
    assert "formatage" not in measured.newer and "secours" not in measured.newer
    assert facts["kek-decrypts"] == "yes"
    assert facts["sentinel"] == "present"  # the parameter set at first boot, still there
    assert "Accueil" in _screen(measured.newer)
