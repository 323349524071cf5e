"""Batch signing benchmark (issue "lots and batch signing"), all figures from one run:

(a) Balise's own cost per lot beyond the token's signature (SoftHSM2), for information;
(b) the same batch on a card-speed token (each signature held to 250 ms): Balise batch time /
    (50 × 250 ms) — target ≤ 1.02, the CMS work on the other lots hides behind the card;
(c) Balise (SoftHSM2) / `openssl cms -sign` then `openssl cms -encrypt`, one process each per lot,
    same key in a file — target ≤ 0.33;
(d) validation time for 10, 100, 1,000 and 10,000 invoices (linear).

Usage: .venv/bin/python bench/sign_batch.py [--lots 50] [--invoices 100]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from balise.adapters.clock import SystemClock
from balise.adapters.kek import create_key_file
from balise.app.context import Context, open_context
from balise.domain.lotfile import LotContext, validate_lot
from balise.services.signing import sign_with_card
from balise.sim.box import EMITTER, configure_box
from balise.sim.lotbuild import build_lot, make_invoices
from balise.sim.pki import TestPKI, build_pki
from balise.sim.softhsm import SoftHSM

CARD_SECONDS = 0.25
PIN = "1234"


class SyncedClock(SystemClock):
    def is_synchronized(self) -> bool:
        return True


class TimedSession:
    """Wraps a token session: counts the time spent in the token, optionally holds each
    signature to ``floor`` seconds (a smart card's RSA-2048 signature)."""

    def __init__(self, inner: object, floor: float = 0.0) -> None:
        self.inner = inner
        self.floor = floor
        self.token_seconds = 0.0

    def sign(self, data: bytes) -> bytes:
        start = time.perf_counter()
        signature: bytes = self.inner.sign(data)  # type: ignore[attr-defined]
        spent = time.perf_counter() - start
        if spent < self.floor:
            time.sleep(self.floor - spent)
        self.token_seconds += time.perf_counter() - start
        return signature

    def close(self) -> None:
        self.inner.close()  # type: ignore[attr-defined]


class TimedSigner:
    def __init__(self, inner: object, floor: float) -> None:
        self.inner = inner
        self.floor = floor
        self.session: TimedSession | None = None

    def identify(self) -> object:
        return self.inner.identify()  # type: ignore[attr-defined]

    def pin_state(self) -> object:
        return self.inner.pin_state()  # type: ignore[attr-defined]

    def login(
        self, pin: bytearray | None, *, allowed_signatures: int | None = None
    ) -> TimedSession:
        inner = self.inner.login(pin, allowed_signatures=allowed_signatures)  # type: ignore[attr-defined]
        self.session = TimedSession(inner, self.floor)
        return self.session


def lots_for(n_lots: int, n_invoices: int, today: date) -> list[bytes]:
    invoices = make_invoices(n_invoices, seed=1, care_date=today - timedelta(days=2))
    return [
        build_lot(EMITTER, "00000001422000", n, today - timedelta(days=1), invoices)
        for n in range(1, n_lots + 1)
    ]


def run_batch(ctx: Context, signer: TimedSigner, files: list[bytes], tag: str) -> float:
    intake = ctx.intake()
    ids = []
    for i, data in enumerate(files):
        outcome = intake.import_bytes(f"{tag}{i}.lot", data, f"bench:{tag}{i}")
        assert outcome.lot_id is not None, outcome.problems
        ids.append(outcome.lot_id)
    service = ctx.signing()
    identity = signer.identify()
    start = time.perf_counter()
    result = sign_with_card(service, signer, bytearray(PIN.encode()), identity, "p1", ids)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - start
    assert len(result.signed) == len(files), result
    return elapsed


def openssl_batch(pki: TestPKI, files: list[bytes], work: Path) -> float:
    start = time.perf_counter()
    for i, data in enumerate(files):
        lot = work / f"o{i}.lot"
        lot.write_bytes(data)
        signed = work / f"o{i}.der"
        subprocess.run(
            [
                "openssl",
                "cms",
                "-sign",
                "-binary",
                "-nodetach",
                "-md",
                "sha256",
                "-outform",
                "DER",
                "-signer",
                str(pki.practitioner.signature.cert_pem),
                "-inkey",
                str(pki.practitioner.signature.key_pem),
                "-certfile",
                str(pki.intermediate.cert_pem),
                "-in",
                str(lot),
                "-out",
                str(signed),
            ],
            check=True,
        )
        subprocess.run(
            [
                "openssl",
                "cms",
                "-encrypt",
                "-binary",
                "-aes256",
                "-outform",
                "DER",
                "-in",
                str(signed),
                "-out",
                str(work / f"o{i}.p7m"),
                str(pki.amo.cert_pem),
                str(pki.amc.cert_pem),
            ],
            check=True,
        )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lots", type=int, default=50)
    parser.add_argument("--invoices", type=int, default=100)
    args = parser.parse_args()
    os.umask(0o077)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        pki = build_pki(base / "pki")
        hsm = SoftHSM(base / "hsm")
        os.environ.update(hsm.env())
        info = hsm.create_token(
            "BENCH", pki.practitioner, pin=PIN, so_pin="87654321", intermediate=pki.intermediate
        )
        kek = base / "kek"
        create_key_file(kek)
        ctx = open_context(
            base / "data", actor="bench", env={"BALISE_KEK_FILE": str(kek)}, clock=SyncedClock()
        )
        configure_box(ctx, pki)
        ctx.params.set("pkcs11_module", str(hsm.module))
        today = datetime.now(UTC).date()
        files = lots_for(args.lots, args.invoices, today)

        soft = TimedSigner(ctx.card_signer(info.label), 0.0)
        soft_total = run_batch(ctx, soft, files, "a")
        assert soft.session is not None
        own = (soft_total - soft.session.token_seconds) / args.lots
        print(f"lots: {args.lots} × {args.invoices} invoices ({len(files[0])} bytes each)")
        print(
            f"(a) SoftHSM2 batch {soft_total:.3f} s, of which token {soft.session.token_seconds:.3f} s;"
            f" Balise's own cost {own * 1000:.2f} ms/lot"
        )

        slow_files = lots_for(args.lots, args.invoices, today - timedelta(days=1))
        card = TimedSigner(ctx.card_signer(info.label), CARD_SECONDS)
        card_total = run_batch(ctx, card, slow_files, "b")
        floor = args.lots * CARD_SECONDS
        print(
            f"(b) card-speed token: batch {card_total:.3f} s vs card floor {floor:.3f} s;"
            f" ratio Balise / (N × 250 ms) = {card_total / floor:.3f} (target ≤ 1.02)"
        )

        work = base / "openssl"
        work.mkdir()
        peer = openssl_batch(pki, files, work)
        print(
            f"(c) openssl cms -sign + -encrypt, one process each per lot: {peer:.3f} s;"
            f" ratio Balise (SoftHSM2) / openssl = {soft_total / peer:.3f} (target ≤ 0.33)"
        )

        context = LotContext(
            today=today,
            mode="test",
            known_emitters=frozenset({EMITTER}),
            organisms_with_certs=frozenset({"00000001422000"}),
        )
        print("(d) validation time:")
        base_rate = None
        for n in (10, 100, 1000, 10000):
            data = build_lot(
                EMITTER,
                "00000001422000",
                1,
                today - timedelta(days=1),
                make_invoices(n, seed=2, care_date=today - timedelta(days=2)),
            )
            reps = max(1, 2000 // n)
            start = time.perf_counter()
            for _ in range(reps):
                assert validate_lot(data, context).accepted
            per = (time.perf_counter() - start) / reps
            per_invoice = per / n
            base_rate = base_rate or per_invoice
            print(
                f"    {n:>6} invoices: {per * 1000:9.2f} ms  ({per_invoice * 1e6:6.1f} us/invoice,"
                f" ×{per_invoice / base_rate:.2f} of the 10-invoice rate)"
            )
        ctx.close()


if __name__ == "__main__":
    main()
