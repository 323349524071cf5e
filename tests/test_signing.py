"""Batch signing with the card stand-in (REAL SoftHSM2 through the PKCS#11 adapter), each lot
checked with the openssl command line; card pulled mid-batch with the REAL pcscd + virtual card."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pkcs11
import pytest

from balise.adapters.clock import FixedClock
from balise.adapters.pcsc import PcscCardWatcher
from balise.adapters.pkcs11 import Pkcs11Signer
from balise.domain.card import CardError, WrongPin
from balise.domain.devices import CardEvent
from balise.domain.lotstate import LotState
from balise.services.signing import BatchEvent, CertVerdict, examine_card, sign_with_card
from balise.sim.pki import LEAF_LIFETIME, TestPKI
from balise.sim.softhsm import SoftHSM, TokenInfo
from balise.sim.vcard import ATR_CPS3
from tests.support.balise_env import BaliseEnv
from tests.support.box import Box, box_at, configure_box
from tests.support.clock import TEST_NOW, TEST_TODAY
from tests.support.fake_token import RemovableSigner
from tests.support.lot_corpus import valid_lot
from tests.support.pki_fixtures import TEST_PIN, MakeToken
from tests.support.signing_support import openssl_open_lot

pytestmark = pytest.mark.softhsm


def _signer(softhsm: SoftHSM, info: TokenInfo) -> Pkcs11Signer:
    return Pkcs11Signer(pkcs11.lib(str(softhsm.module)), token_label=info.label)


def _import(box: Box, count: int) -> list[int]:
    today = TEST_TODAY
    ids = []
    for n in range(1, count + 1):
        outcome = box.ctx.intake().import_bytes(
            f"{n}.lot", valid_lot(today, lot_number=n), f"t:{n}"
        )
        assert outcome.accepted and outcome.lot_id is not None, outcome.problems
        ids.append(outcome.lot_id)
    return ids


def _ok(_identity: object) -> CertVerdict:
    return CertVerdict(True, "certificat vérifié", "certificate checked")


def test_batch_signed_with_the_token_opens_with_openssl(
    box: Box, pki: TestPKI, token: tuple[SoftHSM, TokenInfo], tmp_path: Path
) -> None:
    softhsm, info = token
    ids = _import(box, 3)
    service = box.ctx.signing()
    signer = _signer(softhsm, info)
    report = examine_card(service, signer, box.ctx.cert_checker())
    assert report.can_prompt, report.refusal_fr
    assert report.identity.rpps == pki.practitioner.rpps
    assert report.profiles == (("p1", "titulaire"),)
    assert report.pin.tries_left == 3
    events: list[BatchEvent] = []
    pin = bytearray(TEST_PIN.encode())
    result = sign_with_card(
        service, signer, pin, report.identity, "p1", ids, progress=events.append
    )
    assert pin == bytearray(len(pin))  # overwritten after use
    assert result.signed == tuple(ids) and not result.stopped_fr
    assert [e.done for e in events if e.kind == "signed"] == [1, 2, 3]
    assert signer.open_sessions == 0
    for lot_id in ids:
        lot = box.ctx.lots.get(lot_id)
        assert lot is not None and lot.state is LotState.SIGNED
        envelope = box.ctx.lots.blob(lot_id, "envelope")
        assert envelope is not None
        for recipient in ("amo", "amc"):
            assert openssl_open_lot(envelope, pki, tmp_path, recipient) == box.ctx.lots.content(
                lot_id
            )
    kinds = [e.kind for e in box.ctx.journal.entries()]
    assert kinds.count("lot.state") == 6 and "batch.started" in kinds and "batch.finished" in kinds
    assert box.ctx.journal.verify().ok


def test_wrong_pin_makes_one_attempt_and_changes_nothing(
    box: Box, token: tuple[SoftHSM, TokenInfo]
) -> None:
    softhsm, info = token
    ids = _import(box, 2)
    service = box.ctx.signing()
    signer = _signer(softhsm, info)
    identity = signer.identify()
    with pytest.raises(WrongPin) as caught:
        sign_with_card(service, signer, bytearray(b"999999"), identity, "p1", ids)
    assert caught.value.tries_left == 2  # SoftHSM2 sets COUNT_LOW after a wrong PIN
    assert "999999" not in str(caught.value)
    assert signer.open_sessions == 0
    assert all(lot.state is LotState.READY for lot in box.ctx.lots.lots())


def test_card_of_another_practitioner_cannot_sign(
    box: Box, pki: TestPKI, make_token: MakeToken, softhsm: SoftHSM
) -> None:
    _import(box, 1)
    other = pki.issue_practitioner("10009999999", "Dr Autre TEST")
    signer = _signer(softhsm, make_token(other))
    report = examine_card(box.ctx.signing(), signer, _ok)
    assert not report.can_prompt
    assert report.refusal_fr is not None and "autorisé" in report.refusal_fr


def test_unsynchronized_clock_blocks_signing(
    balise_env: BaliseEnv, pki: TestPKI, token: tuple[SoftHSM, TokenInfo]
) -> None:
    softhsm, info = token
    ctx = box_at(balise_env, TEST_NOW)
    configure_box(ctx, pki)
    ctx.close()
    ctx = balise_env.context()
    try:
        ctx.clock = FixedClock(TEST_NOW, synchronized=False)
        report = examine_card(ctx.signing(), _signer(softhsm, info), _ok)
        assert report.refusal_fr is not None and "Horloge non synchronisée" in report.refusal_fr
    finally:
        ctx.close()


def test_cancel_stops_between_lots(box: Box, token: tuple[SoftHSM, TokenInfo]) -> None:
    softhsm, info = token
    ids = _import(box, 6)
    cancel = threading.Event()

    def progress(event: BatchEvent) -> None:
        if event.kind == "signed" and event.done == 2:
            cancel.set()

    signer = _signer(softhsm, info)
    result = sign_with_card(
        box.ctx.signing(),
        signer,
        bytearray(TEST_PIN.encode()),
        signer.identify(),
        "p1",
        ids,
        progress=progress,
        cancel=cancel,
    )
    assert result.stopped_fr is not None
    states = [box.ctx.lots.get(i).state for i in ids]  # type: ignore[union-attr]
    assert states.count(LotState.SIGNED) == len(result.signed) >= 2
    assert states.count(LotState.READY) == len(ids) - len(result.signed)


@pytest.mark.pcsc
def test_card_pulled_mid_batch_keeps_signed_lots(
    box: Box, token: tuple[SoftHSM, TokenInfo], virtual_card: object
) -> None:
    """The virtual card (pcscd) and SoftHSM2 are not linked: the RemovableSigner makes the token
    answer "device removed" once the card watcher has seen the REAL virtual card leave."""
    softhsm, info = token
    ids = _import(box, 20)
    removed = threading.Event()

    def on_card(event: CardEvent) -> None:
        if event.action == "removed":
            removed.set()
        elif event.action == "inserted":
            removed.clear()

    virtual_card.insert(ATR_CPS3)  # type: ignore[attr-defined]
    watcher = PcscCardWatcher()
    watcher.start(on_card)
    try:
        inner = _signer(softhsm, info)
        signer = RemovableSigner(inner, removed)
        identity = signer.identify()

        def progress(event: BatchEvent) -> None:
            if event.kind == "signed" and event.done == 5:
                virtual_card.remove(wait=False)  # type: ignore[attr-defined]
                assert removed.wait(5), "the card watcher did not see the removal"

        result = sign_with_card(
            box.ctx.signing(),
            signer,
            bytearray(TEST_PIN.encode()),
            identity,
            "p1",
            ids,
            progress=progress,
        )
        assert result.stopped_fr is not None and "retirée" in result.stopped_fr
        signed = set(result.signed)
        assert 5 <= len(signed) < 20
        for lot_id in ids:
            lot = box.ctx.lots.get(lot_id)
            assert lot is not None
            assert lot.state is (LotState.SIGNED if lot_id in signed else LotState.READY)
        assert inner.open_sessions == 0
        # Card back: the next batch opens a new session and signs the rest.
        virtual_card.insert(ATR_CPS3)  # type: ignore[attr-defined]
        deadline = threading.Event()
        for _ in range(50):
            if not removed.is_set():
                break
            deadline.wait(0.1)
        assert not removed.is_set()
        rest = [i for i in ids if i not in signed]
        again = sign_with_card(
            box.ctx.signing(), signer, bytearray(TEST_PIN.encode()), identity, "p1", rest
        )
        assert set(again.signed) == set(rest)
        assert inner.open_sessions == 0
    finally:
        watcher.stop()


def test_expired_recipient_certificate_keeps_the_lot_ready(
    box: Box, pki: TestPKI, token: tuple[SoftHSM, TokenInfo]
) -> None:
    softhsm, info = token
    ids = _import(box, 1)
    ctx = box_at(box.env, TEST_NOW + LEAF_LIFETIME + timedelta(days=1))  # organism certs expired
    try:
        signer = _signer(softhsm, info)
        identity = signer.identify()
        with pytest.raises(CardError):
            sign_with_card(ctx.signing(), signer, bytearray(TEST_PIN.encode()), identity, "p1", ids)
        assert ctx.lots.get(ids[0]).state is LotState.READY  # type: ignore[union-attr]
    finally:
        ctx.close()
