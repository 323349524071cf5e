"""A sentinel PIN goes through the real `balise sign` (SoftHSM2 token) and is then searched for
everywhere: the data dir (database, WAL), the exchange folders, the journal, the command output."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest

from balise.adapters.hardening import is_dumpable
from balise.sim.pki import TestPKI
from balise.sim.softhsm import SoftHSM
from tests.support.box import Box
from tests.support.clock import TEST_TODAY
from tests.support.lot_corpus import valid_lot
from tests.support.pki_fixtures import MakeToken

pytestmark = pytest.mark.softhsm

SENTINEL = "97531864"
WRONG_SENTINEL = "24681357"


def _needles(pin: str) -> list[bytes]:
    raw = pin.encode()
    return [raw, raw.decode().encode("utf-16-le"), base64.b64encode(raw), raw.hex().encode()]


def test_sentinel_pin_is_found_nowhere(
    box: Box, pki: TestPKI, softhsm: SoftHSM, make_token: MakeToken, tmp_path: Path
) -> None:

    info = make_token(pin=SENTINEL)
    box.ctx.params.set("mode", "demo")  # the sandbox clock is never NTP-synchronized
    box.ctx.params.set("pkcs11_module", str(softhsm.module))
    today = TEST_TODAY
    for n in (1, 2):
        assert (
            box.ctx.intake()
            .import_bytes(f"{n}.lot", valid_lot(today, lot_number=n), f"t:{n}")
            .accepted
        )
    env = dict(box.env.env, **softhsm.env())
    wrong = box.env.run("sign", "--token", info.label, stdin=WRONG_SENTINEL + "\n", env=env)
    assert wrong.returncode == 1 and "Code faux" in wrong.stderr
    good = box.env.run("sign", "--token", info.label, stdin=SENTINEL + "\n", env=env)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "2 lot(s) signé(s)" in good.stdout
    journal = box.env.run("journal", "show").stdout
    texts = [wrong.stdout, wrong.stderr, good.stdout, good.stderr, journal]
    for pin in (SENTINEL, WRONG_SENTINEL):
        for text in texts:
            assert pin not in text
        for path in [p for p in box.env.home.parent.rglob("*") if p.is_file()]:
            data = path.read_bytes()
            for needle in _needles(pin):
                assert needle not in data, f"PIN found in {path}"
    assert not list(Path.cwd().glob("core*"))


def test_signing_process_is_not_dumpable() -> None:
    code = (
        "from balise.adapters.hardening import protect_process, is_dumpable; import resource;"
        "protect_process(); print(is_dumpable(), resource.getrlimit(resource.RLIMIT_CORE))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()
    assert out == "False (0, 0)"
    assert is_dumpable()  # the test process itself was left alone
