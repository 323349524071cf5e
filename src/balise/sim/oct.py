"""The OCT simulator (demo and tests): an implicit-TLS SMTP receiver with AUTH that decrypts each lot
mail, verifies and validates the lot, and answers ARL (and NOEMIE) returns into the Dovecot BAL."""

from __future__ import annotations

import email
import email.policy
import hashlib
import itertools
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.message import Message
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Any, Final, Literal

from asn1crypto import cms as asn1_cms
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from balise.cms import (
    CmsError,
    gunzip_payload,
    open_enveloped_data,
    parse_entity,
    verify_signed_data,
)
from balise.cms import content_description as lot_description
from balise.domain.codes import SimCode
from balise.domain.errors import BaliseError
from balise.domain.lotfile import (
    ApplicationType,
    LotContext,
    LotFault,
    LotKey,
    LotValidation,
    ParsedLot,
    format_aammjj,
    parse_aammjj,
    validate_lot,
)
from balise.domain.returns import (
    ORGANISM_TYPES,
    InvoicePayment,
    NoemieLot,
    OrganismType,
    PaymentState,
    Reason,
    Share,
)
from balise.sim.dovecot import DovecotServer
from balise.sim.returnfile import build_arl, build_noemie
from balise.sim.returnmail import phishing_mail, return_mail, sign_return, spam_mail
from balise.sim.smtpd import Received, SmtpServer

__all__ = [
    "REASON_DUPLICATE",
    "REASON_INVALID",
    "REASON_SIGNATURE",
    "Handled",
    "OctSimulator",
    "OctSimulatorError",
    "OrganismKey",
]

Verdict = Literal["arl+", "arl-"]

# 290 entities of the ARL− (code 10, label 80): printable ASCII, the organisms' upper-case words.
REASON_SIGNATURE: Final = Reason("SIGNATURE", "SIGNATURE NON VERIFIEE")
REASON_DUPLICATE: Final = Reason("DOUBLON", "LOT EN DOUBLE")
REASON_INVALID: Final = Reason("LOT-INV", "LOT INVALIDE")
_DUPLICATE_FAULTS: Final = frozenset({LotFault.DUPLICATE_LOT, LotFault.DUPLICATE_CONTENT})
_SOFTWARE_ID: Final = "OCTSIM"
_RECORD: Final = 128
_STOP_JOIN_S: Final = 5.0


class OctSimulatorError(BaliseError):
    """The OCT simulator could not be set up."""

    code = SimCode.SIM_OCT


@dataclass(frozen=True, slots=True)
class OrganismKey:
    """The recipient key of an organism mail address (the lot's To) and its certificate."""

    address: str
    key_pem: Path
    cert_pem: Path


@dataclass(frozen=True, slots=True)
class Handled:
    """One lot mail answered: ``lot_number`` is ``NNN``, ``lot_date`` AAMMJJ (as in the lot file);
    ``reason`` is the 290 label of an ARL− (empty for an ARL+)."""

    message_id: str
    emitter: str
    lot_number: str
    lot_date: str
    verdict: Verdict
    reason: str


@dataclass(frozen=True, slots=True)
class _Recipient:
    key: rsa.RSAPrivateKey
    cert_der: bytes


@dataclass(frozen=True, slots=True)
class _LotId:
    """What names a lot, read from its records even when the file does not validate."""

    emitter: str
    lot_number: int
    lot_date: date
    organism_type: OrganismType
    organism_number: str


class _NoAnswer(Exception):
    """The mail cannot be tied to a lot or a mailbox: recorded, not answered."""


class OctSimulator:
    """An OCT on loopback: SMTP over implicit TLS with AUTH (users ``smtp_users``), recipient keys
    per organism address, answers delivered into ``dovecot`` (BAL address → user: ``mailbox_for``).

    For each lot mail: decrypt the ``smime.p7m`` part with the key of the To address, read the
    MIME entity, gunzip, verify the SignedData against ``trusted_roots_der``, validate the lot
    (test mode when ``test_flow``), detect duplicates (same emitter, lot number and date, or same
    content, already answered positively), then answer an ARL+ (and, with ``send_noemie``, a
    NOEMIE paying every invoice in full) or an ARL− whose 290 says why; an organism listed in
    ``return_signers`` (its address, signing key and certificate) signs its returns (CMS
    SignedData around the payload, PROFILE.md §3.1). The SMTP client always
    gets a 250: a bad lot is answered, never refused. Mail that names no lot or no known mailbox
    is not answered and is listed in ``errors``. With ``answer_delay`` > 0 the answers arrive
    that many seconds later (from a timer thread); :meth:`wait_answers` waits for them.
    """

    def __init__(
        self,
        *,
        directory: Path,
        host: str,
        port: int,
        tls_cert_pem: Path,
        tls_key_pem: Path,
        smtp_users: Mapping[str, str],
        dovecot: DovecotServer,
        mailbox_for: Mapping[str, str],
        organisms: Sequence[OrganismKey],
        trusted_roots_der: Sequence[bytes],
        test_flow: bool = True,
        send_noemie: bool = True,
        answer_delay: float = 0.0,
        return_signers: Sequence[OrganismKey] = (),
    ) -> None:
        if answer_delay < 0:
            raise OctSimulatorError("Délai de réponse négatif.", "Negative answer delay.")
        if not trusted_roots_der:
            raise OctSimulatorError(
                "Aucune racine de confiance pour vérifier les signatures.",
                "No trusted root to verify signatures against.",
            )
        self.directory = directory
        self.host = host
        self.port = port
        self._dovecot = dovecot
        self._mailbox_for = {a.lower(): u for a, u in mailbox_for.items()}
        self._roots = tuple(trusted_roots_der)
        self._test_flow = test_flow
        self._send_noemie = send_noemie
        self._delay = answer_delay
        # Organisms that sign their returns (PROFILE.md §3.1): address → its signing key.
        self._signers = {o.address.lower(): o for o in return_signers}
        self._recipients: dict[str, list[_Recipient]] = {}
        for organism in organisms:
            self._recipients.setdefault(organism.address.lower(), []).append(_load(organism))
        self._lock = threading.Lock()
        self._answered_keys: set[LotKey] = set()
        self._answered_hashes: set[str] = set()
        self._counter = itertools.count(1)
        self._timers: list[threading.Timer] = []
        self.handled: list[Handled] = []
        self.errors: list[str] = []
        self._smtp = SmtpServer(
            host=host,
            port=port,
            cert_pem=tls_cert_pem,
            key_pem=tls_key_pem,
            users=smtp_users,
            tls="implicit",
            handler_hook=self._on_message,
        )

    @property
    def smtp(self) -> SmtpServer:
        """The underlying SMTP server (its ``received`` and ``commands`` records)."""
        return self._smtp

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._smtp.start()

    def stop(self) -> None:
        """Stop receiving; answers still waiting on ``answer_delay`` are dropped. Safe twice."""
        self._smtp.stop()
        with self._lock:
            timers, self._timers = self._timers, []
        for timer in timers:
            timer.cancel()
            timer.join(_STOP_JOIN_S)

    def wait_answers(self, count: int, *, timeout: float = 5.0) -> list[Handled]:
        """Wait (bounded) until ``count`` lot mails were answered and every delayed answer is in
        the mailbox; return a copy of ``handled``."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                pending = any(t.is_alive() for t in self._timers)
                if len(self.handled) >= count and not pending:
                    return list(self.handled)
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{len(self.handled)} lot(s) answered, {count} expected")
            time.sleep(0.005)

    def drop_spam(self, bal_address: str) -> None:
        """Deliver a spam into the BAL of ``bal_address`` (the purge must delete and alert)."""
        self._deliver(bal_address, spam_mail(bal_address, date=_now_header()))

    def drop_phishing(self, bal_address: str) -> None:
        """Deliver a phishing mail made to look like an organism into the BAL of ``bal_address``."""
        self._deliver(bal_address, phishing_mail(to=bal_address, date=_now_header()))

    # -- the SMTP hook ------------------------------------------------------------------------

    def _on_message(self, received: Received) -> None:
        # Runs in the SMTP server's thread; nothing may escape into aiosmtpd (it would answer 451
        # and the box would retry a lot the OCT already holds).
        try:
            self._handle(received)
        except _NoAnswer as exc:
            self._error(str(exc))
        except Exception as exc:  # noqa: BLE001 - a simulator bug: keep serving, report it
            self._error(f"unexpected {type(exc).__name__}: {exc}")

    def _handle(self, received: Received) -> None:
        msg = email.message_from_bytes(received.data, policy=email.policy.compat32)
        message_id = str(msg.get("Message-ID", "")).strip()
        bal = parseaddr(str(msg.get("From", "")))[1].lower() or received.mail_from.lower()
        to = parseaddr(str(msg.get("To", "")))[1].lower()
        if not to and received.rcpt_tos:
            to = received.rcpt_tos[0].lower()
        if bal not in self._mailbox_for:
            raise _NoAnswer(f"{message_id}: no mailbox for sender {bal!r}")
        entity = self._decrypt(_smime_part(msg, message_id), to, message_id)
        try:
            headers, payload = parse_entity(entity)
            signed_der = gunzip_payload(payload)
        except CmsError as exc:
            raise _NoAnswer(f"{message_id}: unreadable entity: {exc}") from exc
        content = _unverified_content(signed_der, message_id)
        ident = _identify(content, message_id)
        self._write_copy(ident, content)

        reason: Reason | None = None
        validation: LotValidation | None = None
        try:
            verified = verify_signed_data(signed_der, self._roots)
            if verified.content != content:  # pragma: no cover - one parse, one content
                reason = REASON_SIGNATURE
        except CmsError:
            reason = REASON_SIGNATURE
        with self._lock:
            if reason is None:
                validation = validate_lot(content, self._context(ident))
                faults = set(validation.faults)
                expected = lot_description(test_flow=self._test_flow)
                if faults & _DUPLICATE_FAULTS:
                    reason = REASON_DUPLICATE
                elif faults or headers.get("content-description") != expected:
                    reason = REASON_INVALID
            key = (ident.emitter, f"{ident.lot_number:03d}", format_aammjj(ident.lot_date))
            if reason is None:
                self._answered_keys.add(key)
                self._answered_hashes.add(hashlib.sha256(content).hexdigest())
            self.handled.append(
                Handled(
                    message_id=message_id,
                    emitter=ident.emitter,
                    lot_number=key[1],
                    lot_date=key[2],
                    verdict="arl+" if reason is None else "arl-",
                    reason="" if reason is None else reason.label,
                )
            )
        lot = validation.lot if validation is not None else None
        mails = [self._arl_mail(ident, bal, to, reason, lot)]
        if reason is None and lot is not None and self._send_noemie:
            mails.append(self._noemie_mail(ident, bal, to, lot))
        self._answer(bal, mails)

    def _decrypt(self, der: bytes, to: str, message_id: str) -> bytes:
        recipients = self._recipients.get(to)
        if not recipients:
            raise _NoAnswer(f"{message_id}: no organism key for {to!r}")
        failures = []
        for recipient in recipients:
            try:
                return open_enveloped_data(der, recipient.key, recipient.cert_der)
            except CmsError as exc:
                failures.append(str(exc))
        raise _NoAnswer(f"{message_id}: cannot decrypt for {to!r}: {'; '.join(failures)}")

    def _context(self, ident: _LotId) -> LotContext:
        # The lot's own emitter and organism are "known": the simulator stands for any OCT.
        today = datetime.now(UTC).date()
        # A box east of UTC may date a lot "tomorrow" in UTC terms around midnight.
        tomorrow = today + timedelta(days=1)
        return LotContext(
            today=tomorrow,
            mode="test" if self._test_flow else "production",
            known_emitters=frozenset({ident.emitter}),
            organisms_with_certs=frozenset({ident.organism_number}),
            accepted_lot_keys=frozenset(self._answered_keys),
            accepted_hashes=frozenset(self._answered_hashes),
        )

    # -- answers ------------------------------------------------------------------------------

    def _arl_mail(
        self, ident: _LotId, bal: str, organism: str, reason: Reason | None, lot: ParsedLot | None
    ) -> bytes:
        today = datetime.now(UTC).date()
        n = next(self._counter)
        payload = build_arl(
            ident.organism_type,
            ident.organism_number,
            ident.emitter,
            ident.lot_number,
            ident.lot_date,
            reason is None,
            len(lot.lot.invoices) if lot is not None else 0,
            today,
            () if reason is None else (reason,),
            file_id=f"A{n % 100_000:05d}",
            software_id=_SOFTWARE_ID,
            flow_type="T" if self._test_flow else "R",
        )
        return self._mail(payload, "ARL", bal, organism, n)

    def _noemie_mail(self, ident: _LotId, bal: str, organism: str, lot: ParsedLot) -> bytes:
        today = datetime.now(UTC).date()
        n = next(self._counter)
        kind: Literal["F", "D"] = "F" if lot.header.application is ApplicationType.FSE else "D"
        invoices = tuple(
            InvoicePayment(
                invoice_number=int(invoice.number),
                lot_number=lot.lot.number,
                lot_date=lot.lot.date,
                invoice_type=kind,
                amo=Share(invoice.total, PaymentState.PAID, invoice.total),
            )
            for invoice in lot.lot.invoices
        )
        payload = build_noemie(
            ident.organism_type,
            ident.organism_number,
            ident.emitter,
            today,
            (NoemieLot(lot.lot.number, lot.lot.date, invoices),),
            transfer_reference=f"VIR{today:%Y%m%d}{n:08d}",
            file_id=f"N{n % 100_000:05d}",
            software_id=_SOFTWARE_ID,
            flow_type="T" if self._test_flow else "R",
        )
        return self._mail(payload, "NOEMIE", bal, organism, n)

    def _mail(self, payload: bytes, kind: str, bal: str, organism: str, n: int) -> bytes:
        prefix = "IRISTEST" if self._test_flow else "IRIS"
        # The box trusts only organism domains (*.rss.fr by default): answer from the organism's
        # own address, as the real OCTs do.
        domain = organism.rpartition("@")[2] or "oct.rss.fr"
        signer = self._signers.get(organism.lower())
        if signer is not None:
            payload = sign_return(payload, signer.key_pem, signer.cert_pem)
        return return_mail(
            payload,
            f"{prefix}/{kind}/Z",
            sender=organism,
            to=bal,
            message_id=f"<{kind.lower()}.{time.time_ns()}.{n}@{domain}>",
            date=_now_header(),
            gzip_mtime=int(time.time()),
        )

    def _answer(self, bal: str, mails: list[bytes]) -> None:
        if self._delay <= 0:
            for raw in mails:
                self._deliver(bal, raw)
            return

        def later() -> None:
            try:
                for raw in mails:
                    self._deliver(bal, raw)
            except Exception as exc:  # noqa: BLE001 - a timer thread must not die silently
                self._error(f"delayed delivery failed: {type(exc).__name__}: {exc}")

        timer = threading.Timer(self._delay, later)
        timer.daemon = True
        with self._lock:
            self._timers = [t for t in self._timers if t.is_alive()]
            self._timers.append(timer)
        timer.start()

    def _deliver(self, bal: str, raw: bytes) -> None:
        user = self._mailbox_for.get(bal.lower())
        if user is None:
            raise OctSimulatorError(
                f"Aucune boîte de test pour {bal}.", f"No test mailbox for {bal}."
            )
        self._dovecot.deliver(user, raw)

    def _write_copy(self, ident: _LotId, content: bytes) -> None:
        # What the OCT received, in clear, for the demo and for debugging a test.
        name = f"{ident.emitter}_{ident.lot_number:03d}_{format_aammjj(ident.lot_date)}"
        folder = self.directory / "received"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.{next(self._counter)}.lot").write_bytes(content)

    def _error(self, text: str) -> None:
        with self._lock:
            self.errors.append(text)


# -- helpers ------------------------------------------------------------------------------------


def _load(organism: OrganismKey) -> _Recipient:
    try:
        key = serialization.load_pem_private_key(organism.key_pem.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(organism.cert_pem.read_bytes())
    except (OSError, ValueError) as exc:
        raise OctSimulatorError(
            f"Clé ou certificat d'organisme illisible pour {organism.address}.",
            f"Unreadable organism key or certificate for {organism.address}: {exc}",
        ) from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise OctSimulatorError(
            f"Clé d'organisme non RSA pour {organism.address}.",
            f"Organism key is not RSA for {organism.address}.",
        )
    return _Recipient(key, cert.public_bytes(serialization.Encoding.DER))


def _smime_part(msg: Message, message_id: str) -> bytes:
    for part in msg.walk():
        if part.get_content_type() == "application/pkcs7-mime":
            body = part.get_payload(decode=True)
            if isinstance(body, bytes) and body:
                return body
    raise _NoAnswer(f"{message_id}: no smime.p7m part")


def _unverified_content(signed_der: bytes, message_id: str) -> bytes:
    """The lot inside a SignedData before any check: an ARL− must still name the lot."""
    try:
        info: Any = asn1_cms.ContentInfo.load(signed_der)
        if info["content_type"].native != "signed_data":
            raise ValueError("not a SignedData")
        content = info["content"]["encap_content_info"]["content"].native
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise _NoAnswer(f"{message_id}: unreadable SignedData: {exc}") from exc
    if not isinstance(content, bytes) or not content:
        raise _NoAnswer(f"{message_id}: SignedData without content")
    return content


def _identify(content: bytes, message_id: str) -> _LotId:
    """Emitter, lot number and date, organism: from the 000 and lot-start records (PROFILE §1),
    read by position so that an invalid lot can still get its ARL−."""
    try:
        header = content[:_RECORD].decode("ascii")
        start = content[_RECORD : 2 * _RECORD].decode("ascii")
    except UnicodeDecodeError as exc:
        raise _NoAnswer(f"{message_id}: lot header not ASCII") from exc
    emitter, kind, organism = header[5:19], header[25:27], header[27:41]
    number, when = start[1:4], parse_aammjj(start[4:10])
    if (
        not header.startswith("000")
        or not start.startswith("1")
        or not (emitter.isdigit() and len(emitter) == 14)
        or not (number.isdigit() and number != "000")
        or when is None
    ):
        raise _NoAnswer(f"{message_id}: lot without a readable header and lot start")
    organism_type: OrganismType = "CP"
    for known in ORGANISM_TYPES:
        if kind == known:
            organism_type = known
    if not (organism.isdigit() and len(organism) == 14):
        organism = "0" * 14
    return _LotId(emitter, int(number), when, organism_type, organism)


def _now_header() -> str:
    return format_datetime(datetime.now(UTC), usegmt=True)
