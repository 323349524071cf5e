"""Transmission: signed lots frozen into their lot mail (PROFILE.md §2 step 5) and sent over ONE
verified TLS session per mailbox; each 250 committed at once, failures retried with backoff.

Crash safety: the mail (Subject, Message-ID, Date, envelope) is frozen and stored in the same
transaction that moves the lot to "sending", so every later attempt sends the same bytes. A crash
between the server's 250 and the local commit leaves the lot "sending": the next run sends it
again, identical, with the same Message-ID (the organism sees a duplicate it can recognise, never
a different lot). Two processes never run ``send_pending`` for one profile at the same time: a
per-profile lock (cross-process where the composition root gives one) makes the second skip.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from balise.domain.codes import LotCode, ParamCode
from balise.domain.errors import ConfigError, StateError, ValidationError
from balise.domain.journal import JsonValue
from balise.domain.lotmail import (
    backoff,
    build_lot_mail,
    compostage,
    mail_envelope_addresses,
    message_id,
    subject,
)
from balise.domain.lotrecord import LotRecord
from balise.domain.lotstate import LotState, UnknownLot
from balise.domain.mailtransport import ServerUnreachable, SmtpError, SmtpRefused, SmtpTls
from balise.domain.vocabulary import moment
from balise.ports import Clock, Journal, LotStore, MailSender, Outbox
from balise.services.certwatch import ServerCertWatch
from balise.services.lots import LotTransitions
from balise.services.params import ParameterService
from balise.services.settings import box_settings, organism_settings, profile_settings

COUNTER_NAME = "compostage"
StatusState = Literal["ok", "waiting", "idle"]


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    host: str
    port: int
    tls: SmtpTls
    user: str
    password: str

    def __repr__(self) -> str:  # the password never shows in a log or a traceback
        return f"SmtpSettings({self.host}:{self.port}, {self.tls}, user={self.user!r})"


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """One ``send_pending`` run for a profile."""

    profile: str
    sent: tuple[int, ...] = ()
    waiting: tuple[int, ...] = ()  # back to "signed", retried at next_attempt
    error_code: StrEnum | None = None
    error_fr: str | None = None
    error_en: str | None = None
    next_attempt: datetime | None = None
    error: SmtpError | None = None  # the first failure itself (its code and words above)

    @property
    def unreachable(self) -> bool:
        """The server could not be reached: the box is waiting for the network."""
        return isinstance(self.error, ServerUnreachable)


@dataclass(frozen=True, slots=True)
class NetworkStatus:
    """What the kiosk shows about a mailbox's sending side."""

    profile: str
    state: StatusState
    fr: str
    en: str
    next_attempt: datetime | None
    waiting_lots: int


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="seconds")


class TransmissionService:
    """Freeze, send, retry and resend lot mails; every state change through LotTransitions."""

    def __init__(
        self,
        lots: LotStore,
        transitions: LotTransitions,
        journal: Journal,
        clock: Clock,
        params: ParameterService,
        sender: MailSender,
        counter_store: Outbox,
        hostname: str,
        *,
        send_lock: Callable[[str], AbstractContextManager[None]] | None = None,
        batch_guard: Callable[[], AbstractContextManager[None]] | None = None,
        server_certs: ServerCertWatch | None = None,
    ) -> None:
        self._lots = lots
        self._transitions = transitions
        self._journal = journal
        self._clock = clock
        self._params = params
        self._sender = sender
        self._outbox = counter_store
        self._hostname = hostname
        # Cross-process, per profile (raises SEND_LOCKED when held): see the module docstring.
        self._send_lock = send_lock or (lambda _profile: nullcontext())
        # Held while a batch is sent; refuses to start one while the update gate holds.
        self._batch_guard = batch_guard or nullcontext
        # Where the certificate the SMTP server presented is kept for the expiry watch.
        self._server_certs = server_certs

    # -- freezing -------------------------------------------------------------------------

    def prepare(self, lot_id: int) -> None:
        """SIGNED → SENDING. The first time, the lot mail is built and frozen with a new
        compostage (counter advanced in the same transaction); afterwards the frozen mail is
        reused as is."""
        lot = self._lot(lot_id)
        if lot.state is not LotState.SIGNED:
            raise StateError(
                f"lot {lot_id} : seul un lot signé peut partir (état « {lot.state} »)",
                f"lot {lot_id}: only a signed lot can be sent (state '{lot.state}')",
                code=LotCode.LOT_NOT_SIGNED,
            )
        delivery = self._outbox.delivery(lot_id)
        if delivery is not None and delivery.mail is not None:
            self._transitions.move(
                lot_id,
                LotState.SIGNED,
                LotState.SENDING,
                note="nouvel essai : même courrier, même Message-ID",
                details={"message_id": lot.message_id, "attempt": delivery.attempts + 1},
            )
            return
        envelope = self._lots.blob(lot_id, "envelope")
        if envelope is None:
            raise StateError(
                f"lot {lot_id} : enveloppe absente",
                f"lot {lot_id}: no envelope",
                code=LotCode.NO_ENVELOPE,
            )
        sender = profile_settings(self._params, lot.profile)
        from_addr = _needed(sender.bal_address, "bal_address", profile=lot.profile)
        organism = organism_settings(self._params, lot.organism)
        to_addr = _needed(organism.address, "address", organism=lot.organism)
        now = self._clock.now()
        with self._lots.transaction():
            comp = compostage(now, self._outbox.take_counter(COUNTER_NAME))
            mid = message_id(comp, lot.lot_number, lot.emitter, self._hostname)
            subj = subject(sender.code6, lot.emitter, comp, lot.invoices)
            mail = build_lot_mail(
                from_addr=from_addr,
                to_addr=to_addr,
                subject=subj,
                message_id=mid,
                date=now,
                envelope_der=envelope,
            )
            self._outbox.store_mail(lot_id, mail)
            self._transitions.move(
                lot_id,
                LotState.SIGNED,
                LotState.SENDING,
                details={"compostage": comp, "message_id": mid, "to": to_addr},
                compostage=comp,
                message_id=mid,
                subject=subj,
            )

    # -- sending --------------------------------------------------------------------------

    def due(self, profile: str) -> list[LotRecord]:
        """Signed lots whose next attempt is due, and lots left "sending" (a crash, or prepared)."""
        now = self._clock.now()
        out = []
        for lot in self._lots.lots(frozenset({LotState.SIGNED, LotState.SENDING}), profile):
            if lot.state is LotState.SIGNED:
                delivery = self._outbox.delivery(lot.id)
                when = delivery.next_attempt if delivery else None
                if when is not None and datetime.fromisoformat(when) > now:
                    continue
            out.append(lot)
        return out

    async def send_pending(self, profile: str) -> SendOutcome:
        """Send every due lot of ``profile`` over ONE session to its mailbox; a second caller
        while one is sending gets StateError SEND_LOCKED ("envoi déjà en cours") and sends
        nothing."""
        with self._batch_guard(), self._send_lock(profile):
            return await self._send_pending(profile)

    async def _send_pending(self, profile: str) -> SendOutcome:
        settings = self.smtp_settings(profile)  # before any lot moves: a config error moves none
        ca_pem = box_settings(self._params).ca_bundle
        for lot in self.due(profile):
            if lot.state is LotState.SIGNED:
                try:
                    self.prepare(lot.id)
                except (ValidationError, StateError, ConfigError) as exc:
                    self._journal.append(
                        "lot.alert", f"lot:{lot.id}", {"code": exc.code, "words": exc.fr}
                    )
        queue = self._lots.lots(frozenset({LotState.SENDING}), profile)
        if not queue:
            return SendOutcome(profile)
        messages: list[tuple[str, str, bytes]] = []
        for lot in queue:
            delivery = self._outbox.delivery(lot.id)
            if delivery is None or delivery.mail is None:
                raise StateError(
                    f"lot {lot.id} « en cours d'envoi » sans courrier figé : état incohérent",
                    f"lot {lot.id} 'sending' without a frozen mail: inconsistent state",
                    code=LotCode.LOT_NO_MAIL,
                )
            mail_from, rcpt = mail_envelope_addresses(delivery.mail)
            messages.append((mail_from, rcpt, delivery.mail))
        sent: list[int] = []

        def on_accepted(index: int) -> None:
            lot = queue[index]
            self._transitions.move(
                lot.id,
                LotState.SENDING,
                LotState.SENT,
                details={"message_id": lot.message_id},
                sent_at=_iso(self._clock.now()),
                next_attempt=None,
            )
            sent.append(lot.id)

        self._journal.append(
            "transmission.session",
            f"profile:{profile}",
            {"host": settings.host, "port": settings.port, "tls": settings.tls, "lots": len(queue)},
        )
        session_error: SmtpError | None = None
        refused: dict[int, SmtpRefused] = {}
        try:
            report = await self._sender.send_batch(
                settings.host,
                settings.port,
                settings.tls,
                settings.user,
                settings.password,
                ca_pem,
                messages,
                on_accepted,
            )
            refused = dict(report.refused)
            if self._server_certs is not None:
                self._server_certs.seen(
                    profile, "smtp", settings.host, settings.port, report.server_cert
                )
        except SmtpError as exc:
            session_error = exc
        waiting: list[int] = []
        next_times: list[datetime] = []
        for index, lot in enumerate(queue):
            if lot.id in sent:
                continue
            error = refused.get(index) or session_error
            if error is None:  # the session ended without a word about it: retry it later
                error = SmtpError(
                    "message non confirmé par le serveur", "message not confirmed by the server"
                )
            next_times.append(self._back_to_signed(lot, error))
            waiting.append(lot.id)
        first_error = session_error or (next(iter(refused.values())) if refused else None)
        next_attempt = min(next_times) if next_times else None
        if first_error is None:
            self._outbox.set_status(profile, None)
        else:
            self._outbox.set_status(
                profile,
                {
                    "code": first_error.code,
                    "fr": first_error.fr,
                    "en": first_error.en,
                    "at": _iso(self._clock.now()),
                },
            )
            self._journal.append(
                "transmission.failed",
                f"profile:{profile}",
                {
                    "code": first_error.code,
                    "words": first_error.fr,
                    "sent": len(sent),
                    "waiting": len(waiting),
                    "next_attempt": _iso(next_attempt) if next_attempt else None,
                },
            )
        return SendOutcome(
            profile,
            tuple(sent),
            tuple(waiting),
            first_error.code if first_error else None,
            first_error.fr if first_error else None,
            first_error.en if first_error else None,
            next_attempt,
            first_error,
        )

    def _back_to_signed(self, lot: LotRecord, error: SmtpError) -> datetime:
        delivery = self._outbox.delivery(lot.id)
        attempts = (delivery.attempts if delivery else 0) + 1
        when = self._clock.now() + backoff(attempts)
        details: dict[str, JsonValue] = {"code": error.code, "attempts": attempts}
        self._transitions.move(
            lot.id,
            LotState.SENDING,
            LotState.SIGNED,
            note=error.fr,
            details=details,
            attempts=attempts,
            next_attempt=_iso(when),
        )
        return when

    # -- explicit resend ------------------------------------------------------------------

    def resend(self, lot_id: int) -> None:
        """SENT → SENDING for an overdue lot (sent, no ARL after ``arl_overdue_days``): the same
        bytes and Message-ID go out at the next ``send_pending``."""
        lot = self._lot(lot_id)
        delivery = self._outbox.delivery(lot_id)
        if lot.state is not LotState.SENT or delivery is None or delivery.mail is None:
            raise StateError(
                f"lot {lot_id} : seul un lot envoyé peut être renvoyé (état « {lot.state} »)",
                f"lot {lot_id}: only a sent lot can be resent (state '{lot.state}')",
                code=LotCode.LOT_NOT_SENT,
            )
        overdue_after = timedelta(days=box_settings(self._params).arl_overdue_days)
        sent_at = datetime.fromisoformat(delivery.sent_at) if delivery.sent_at else None
        now = self._clock.now()
        if sent_at is not None and now < sent_at + overdue_after:
            raise StateError(
                f"lot {lot_id} envoyé le {moment(sent_at, 'fr')} : pas encore en retard "
                f"(ARL attendu sous {overdue_after.days} jour(s)), pas de renvoi",
                f"lot {lot_id} sent {moment(sent_at, 'en')}: not overdue yet, no resend",
                code=LotCode.LOT_NOT_OVERDUE,
            )
        self._transitions.move(
            lot_id,
            LotState.SENT,
            LotState.SENDING,
            note="renvoi explicite : mêmes octets, même Message-ID",
            details={"message_id": lot.message_id, "sent_at": delivery.sent_at},
        )

    # -- status ---------------------------------------------------------------------------

    def status(self, profile: str) -> NetworkStatus:
        waiting = [
            d
            for lot in self._lots.lots(frozenset({LotState.SIGNED}), profile)
            if (d := self._outbox.delivery(lot.id)) is not None and d.attempts > 0
        ]
        times = [datetime.fromisoformat(d.next_attempt) for d in waiting if d.next_attempt]
        next_attempt = min(times) if times else None
        last = self._outbox.status(profile)
        if last is not None and waiting:
            at = f" ; prochain essai à {next_attempt:%H:%M:%S} UTC" if next_attempt else ""
            at_en = f"; next attempt at {next_attempt:%H:%M:%S} UTC" if next_attempt else ""
            return NetworkStatus(
                profile,
                "waiting",
                last["fr"] + at,
                last["en"] + at_en,
                next_attempt,
                len(waiting),
            )
        pending = len(self._lots.lots(frozenset({LotState.SIGNED, LotState.SENDING}), profile))
        if pending:
            return NetworkStatus(
                profile,
                "ok",
                f"{pending} lot(s) à envoyer",
                f"{pending} lot(s) to send",
                next_attempt,
                len(waiting),
            )
        return NetworkStatus(profile, "idle", "rien à envoyer", "nothing to send", None, 0)

    # -- parameters -----------------------------------------------------------------------

    def smtp_settings(self, profile: str) -> SmtpSettings:
        s = profile_settings(self._params, profile)
        return SmtpSettings(
            host=_needed(s.smtp_host, "smtp.host", profile=profile),
            port=s.smtp_port,
            tls=s.smtp_tls,
            user=_needed(s.smtp_user, "smtp.user", profile=profile),
            password=_needed(s.smtp_password, "smtp.password", profile=profile),
        )

    def _lot(self, lot_id: int) -> LotRecord:
        lot = self._lots.get(lot_id)
        if lot is None:
            raise UnknownLot(lot_id)
        return lot


def _needed(value: str | None, name: str, *, profile: str = "", organism: str = "") -> str:
    """A setting sending needs: unset is a ConfigError PARAM_MISSING naming it."""
    if value is None:
        where = f"profil {profile}" if profile else f"organisme {organism}"
        where_en = f"profile {profile}" if profile else f"organism {organism}"
        raise ConfigError(
            f"paramètre manquant : {name} ({where})",
            f"missing parameter: {name} ({where_en})",
            code=ParamCode.PARAM_MISSING,
        )
    return value
