"""Batch signing: one practitioner's confirmed lots signed by the card, each enveloped for its
organism, with per-lot progress; CMS work on the other lots overlaps the card's signature."""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from balise.cms import (
    PreparedSignature,
    build_entity,
    build_enveloped_data,
    gzip_payload,
    prepare_signature,
)
from balise.domain.card import CardError, CardIdentity, PinLocked, PinState
from balise.domain.codes import CardCode
from balise.domain.errors import StateError
from balise.domain.lotrecord import LotRecord
from balise.domain.lotstate import LotState
from balise.domain.vocabulary import day
from balise.ports import Clock, Journal, LotStore, TokenSession, TokenSigner
from balise.services.lots import LotTransitions
from balise.services.params import ParameterService
from balise.services.settings import box_settings, organism_settings
from balise.services.settings import profiles as all_profiles

COMMIT_EVERY_S = 0.5

EventKind = Literal["started", "signing", "signed", "skipped", "stopped", "finished"]


@dataclass(frozen=True, slots=True)
class BatchEvent:
    kind: EventKind
    done: int
    total: int
    lot_id: int | None = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class BatchResult:
    signed: tuple[int, ...]
    not_signed: tuple[int, ...]
    stopped_fr: str | None = None
    stopped_en: str | None = None


@dataclass(frozen=True, slots=True)
class _Work:
    lot: LotRecord
    prepared: PreparedSignature
    recipients: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class _Done:
    lot: LotRecord
    signed_cms: bytes
    envelope: bytes


def fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


@functools.lru_cache(maxsize=64)
def _pem_cert(pem: str) -> tuple[x509.Certificate, bytes]:
    cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
    return cert, cert.public_bytes(Encoding.DER)


def _pem_to_der(pem: str) -> bytes:
    return _pem_cert(pem)[1]


class SigningService:
    """Who may sign, which lots are ready, and the batch itself (the PIN never comes here)."""

    def __init__(
        self,
        lots: LotStore,
        transitions: LotTransitions,
        journal: Journal,
        clock: Clock,
        params: ParameterService,
        recipients: Callable[[str], list[str]] | None = None,
        *,
        batch_guard: Callable[[], AbstractContextManager[None]] | None = None,
    ) -> None:
        self._lots = lots
        self._transitions = transitions
        self._journal = journal
        self._clock = clock
        self._params = params
        # organism -> PEM certificates a lot is encrypted to (hand-set, else from the directory)
        self._recipient_pems = recipients
        # Held while a batch is signed; refuses to start one while the update gate holds
        # (UPDATE_IN_PROGRESS, balise.adapters.locks.batch_guard).
        self._batch_guard = batch_guard or nullcontext

    def batch(self) -> AbstractContextManager[None]:
        """What a signing batch holds from the PIN's login to its last lot."""
        return self._batch_guard()

    def profiles_for(self, identity: CardIdentity) -> list[tuple[str, str]]:
        """(profile, role) pairs whose allowed signers include this card's certificate."""
        target = fingerprint(identity.signature_cert_der)
        found: list[tuple[str, str]] = []
        for profile in all_profiles(self._params):
            for pems, role in (
                (profile.signers_titular, "titulaire"),
                (profile.signers_locums, "remplaçant"),
            ):
                if any(fingerprint(_pem_to_der(pem)) == target for pem in pems):
                    found.append((profile.id, role))
        return found

    def ready_lots(self, profile: str) -> list[LotRecord]:
        return self._lots.lots(frozenset({LotState.READY}), profile)

    def check_can_sign(self, identity: CardIdentity) -> None:
        """Clock synchronized (not checked in demo mode) and the card's certificate in date."""
        now = self._clock.now()
        if box_settings(self._params).mode != "demo" and not self._clock.is_synchronized():
            raise CardError(
                "Horloge non synchronisée : la signature attend la synchronisation NTP "
                "(un Raspberry Pi n'a pas d'horloge sauvegardée).",
                "Clock not synchronized: signing waits for NTP synchronization "
                "(a Raspberry Pi has no real-time clock).",
                code=CardCode.CLOCK_UNSYNC,
            )
        if not identity.not_before <= now <= identity.not_after:
            raise CardError(
                f"Le certificat de signature de la carte n'est pas valide aujourd'hui "
                f"(valide du {day(identity.not_before, 'fr')} au {day(identity.not_after, 'fr')}).",
                f"The card's signature certificate is not valid today "
                f"(valid {day(identity.not_before, 'en')} to {day(identity.not_after, 'en')}).",
                code=CardCode.CARD_CERT_DATES,
            )

    def _recipients(self, lot: LotRecord, now: datetime) -> tuple[bytes, ...]:
        if self._recipient_pems is not None:
            pems: Sequence[str] = self._recipient_pems(lot.organism)
        else:
            pems = organism_settings(self._params, lot.organism).recipient_certs
        ders = []
        for pem in pems:
            cert, der = _pem_cert(pem)
            if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
                raise StateError(
                    f"certificat de chiffrement de {lot.organism} hors de sa validité "
                    f"(jusqu'au {day(cert.not_valid_after_utc, 'fr')}) : le lot reste prêt",
                    f"recipient certificate of {lot.organism} outside its validity: the lot stays ready",
                    code=CardCode.RECIPIENT_CERT_EXPIRED,
                )
            ders.append(der)
        if not ders:
            raise StateError(
                f"aucun certificat de chiffrement pour {lot.organism} : le lot reste prêt",
                f"no recipient certificate for {lot.organism}: the lot stays ready",
                code=CardCode.RECIPIENT_CERT_MISSING,
            )
        return tuple(ders)

    def sign_batch(
        self,
        session: TokenSession,
        identity: CardIdentity,
        profile: str,
        lot_ids: Sequence[int],
        *,
        progress: Callable[[BatchEvent], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> BatchResult:
        """Sign the confirmed lots in order; stop cleanly at the first card error or on cancel.

        Lots already signed stay signed (each committed as soon as it is done); the lot in flight
        stays ready. While the card signs lot k (in its own thread), this thread finishes lot k-1
        (SignedData, gzip, MIME entity, EnvelopedData), commits it and prepares lot k+1.
        """
        emit = progress or (lambda _event: None)
        if not any(p == profile for p, _ in self.profiles_for(identity)):
            raise CardError(
                "Cette carte n'est pas autorisée à signer pour ce praticien.",
                "This card is not allowed to sign for this practitioner.",
                code=CardCode.SIGNER_NOT_ALLOWED,
            )
        self.check_can_sign(identity)
        now = self._clock.now()
        queue: list[LotRecord] = []
        skipped: list[int] = []
        for lot_id in lot_ids:
            lot = self._lots.get(lot_id)
            if lot is None or lot.state is not LotState.READY or lot.profile != profile:
                skipped.append(lot_id)
                continue
            queue.append(lot)
        total = len(queue)
        self._journal.append(
            "batch.started",
            f"profile:{profile}",
            {"lots": [lot.id for lot in queue], "holder_rpps": identity.rpps},
        )
        emit(BatchEvent("started", 0, total))
        signed: list[int] = []
        stop_fr: str | None = None
        stop_en: str | None = None
        # The card thread signs lot k while this thread finishes and commits lot k-1 and
        # prepares lot k+1: the card never waits for Balise, Balise only waits for the card.
        prepared: dict[int, _Work | StateError] = {}

        def prepare(index: int) -> None:
            if index < total and index not in prepared:
                lot = queue[index]
                try:
                    prepared[index] = self._prepare(lot, self._lots.content(lot.id), identity, now)
                except StateError as exc:
                    prepared[index] = exc

        pending: tuple[_Work, bytes] | None = None
        # Signed lots are committed in groups (one fsync each): a crash before the commit only
        # leaves them ready, to be signed again — nothing was sent. A card pulled or a cancel
        # still commits every signature already made.
        finished: list[_Done] = []
        last_commit = time.monotonic()
        signatures = 0

        def flush() -> None:
            nonlocal last_commit
            if finished:
                with self._lots.transaction():
                    for done in finished:
                        signed.append(self._commit(done, identity))
                finished.clear()
            last_commit = time.monotonic()

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="card") as card:
            prepare(0)
            for index in range(total):
                lot = queue[index]
                if cancel is not None and cancel.is_set():
                    stop_fr, stop_en = (
                        "Signature interrompue à votre demande.",
                        "Signing cancelled.",
                    )
                    break
                prepare(index)
                work = prepared.pop(index)
                if isinstance(work, StateError):
                    skipped.append(lot.id)
                    self._journal.append(
                        "lot.alert", f"lot:{lot.id}", {"code": work.code, "words": work.fr}
                    )
                    emit(BatchEvent("skipped", len(signed), total, lot.id, work.fr))
                    continue
                emit(BatchEvent("signing", len(signed), total, lot.id))
                future = card.submit(session.sign, work.prepared.to_be_signed)
                if pending is not None:
                    finished.append(self._finish(*pending))
                    pending = None
                    if time.monotonic() - last_commit >= COMMIT_EVERY_S:
                        flush()
                prepare(index + 1)
                try:
                    pending = (work, future.result())
                except CardError as exc:
                    stop_fr, stop_en = exc.fr, exc.en
                    break
                signatures += 1
                emit(BatchEvent("signed", signatures, total, lot.id))
            if pending is not None:
                finished.append(self._finish(*pending))
            flush()
        not_signed = tuple(lot.id for lot in queue if lot.id not in signed) + tuple(
            i for i in skipped if i not in {lot.id for lot in queue}
        )
        self._journal.append(
            "batch.finished",
            f"profile:{profile}",
            {"signed": len(signed), "not_signed": len(not_signed), "stopped": stop_fr},
        )
        emit(
            BatchEvent(
                "stopped" if stop_fr else "finished", len(signed), total, None, stop_fr or ""
            )
        )
        return BatchResult(tuple(signed), not_signed, stop_fr, stop_en)

    def _prepare(
        self, lot: LotRecord, content: bytes, identity: CardIdentity, now: datetime
    ) -> _Work:
        recipients = self._recipients(lot, now)
        prepared = prepare_signature(
            content,
            identity.signature_cert_der,
            signing_time=now,
            extra_certs_der=identity.extra_certs_der,
        )
        return _Work(lot, prepared, recipients)

    @staticmethod
    def _finish(work: _Work, signature: bytes) -> _Done:
        signed_cms = work.prepared.finish(signature)
        entity = build_entity(
            gzip_payload(signed_cms),
            emitter=work.lot.emitter,
            lot_number=work.lot.lot_number,
            test_flow=work.lot.flow in ("T", "D"),
        )
        return _Done(work.lot, signed_cms, build_enveloped_data(entity, work.recipients))

    def _commit(self, done: _Done, identity: CardIdentity) -> int:
        self._transitions.move(
            done.lot.id,
            LotState.READY,
            LotState.SIGNED,
            details={"signer_rpps": identity.rpps},
            signer=f"{identity.holder_name} ({identity.rpps})",
            signed_at=self._clock.now().isoformat(timespec="seconds"),
            signed_cms=done.signed_cms,
            envelope=done.envelope,
        )
        return done.lot.id


@dataclass(frozen=True, slots=True)
class CertVerdict:
    """The card certificate check, in words (done by an adapter: chain, dates, CRL)."""

    ok: bool
    words_fr: str
    words_en: str


CertChecker = Callable[[CardIdentity], CertVerdict]


@dataclass(frozen=True, slots=True)
class CardReport:
    """Everything shown before the PIN prompt: who, for which practitioner, tries left, and why
    signing is refused when it is."""

    identity: CardIdentity
    profiles: tuple[tuple[str, str], ...]
    pin: PinState
    cert: CertVerdict
    refusal_fr: str | None = None
    refusal_en: str | None = None

    @property
    def can_prompt(self) -> bool:
        return self.refusal_fr is None


def examine_card(
    service: SigningService, signer: TokenSigner, check_cert: CertChecker
) -> CardReport:
    """Identity without PIN, allowed profiles, certificate verdict, PIN state read fresh."""
    identity = signer.identify()
    profiles = tuple(service.profiles_for(identity))
    cert = check_cert(identity)
    pin = signer.pin_state()
    refusal: tuple[str, str] | None = None
    if not cert.ok:
        refusal = (cert.words_fr, cert.words_en)
    elif not profiles:
        refusal = (
            f"{identity.holder_name} n'est autorisé(e) à signer pour aucun praticien de ce boîtier.",
            f"{identity.holder_name} is not allowed to sign for any practitioner of this box.",
        )
    elif pin.locked:
        locked = PinLocked()
        refusal = (locked.fr, locked.en)
    else:
        try:
            service.check_can_sign(identity)
        except CardError as exc:
            refusal = (exc.fr, exc.en)
    return CardReport(
        identity,
        profiles,
        pin,
        cert,
        refusal[0] if refusal else None,
        refusal[1] if refusal else None,
    )


def sign_with_card(
    service: SigningService,
    signer: TokenSigner,
    pin: bytearray | None,
    identity: CardIdentity,
    profile: str,
    lot_ids: Sequence[int],
    *,
    progress: Callable[[BatchEvent], None] | None = None,
    cancel: threading.Event | None = None,
) -> BatchResult:
    """One login for the confirmed batch, the batch, then the session closed and the PIN buffer
    overwritten — whatever happens (a wrong PIN raises WrongPin after exactly one attempt).
    While the update gate holds, nothing starts: no login, no PIN try spent."""
    with ExitStack() as held:
        try:
            held.enter_context(service.batch())
            session = signer.login(pin, allowed_signatures=len(lot_ids))
        finally:
            if pin is not None:
                pin[:] = b"\0" * len(pin)
        try:
            return service.sign_batch(
                session, identity, profile, lot_ids, progress=progress, cancel=cancel
            )
        finally:
            session.close()
