"""Returns tracking (PROFILE.md §4): ARL and NOEMIE applied only to lots this box sent for the
mailbox's own practitioner, conflicts and damage alerted, overdue lots flagged, retours/ published.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Protocol

from balise.cms import CmsError, verify_signed_data
from balise.domain.codes import ReturnsCode
from balise.domain.journal import JsonValue
from balise.domain.jsontext import dumps_indented
from balise.domain.lotrecord import LotRecord
from balise.domain.lotstate import LotState
from balise.domain.mailrecords import AlertRecord, PaymentRecord, ReturnRecord
from balise.domain.returns import Arl, Noemie, ParsedReturn, ReturnHeader, Share
from balise.domain.signed_return import looks_signed, return_stream
from balise.domain.vocabulary import PAYMENT_STATE_WORDS, lot_date, lot_state, payment_state
from balise.ports import (
    AlertBook,
    Clock,
    Exchange,
    Journal,
    LotStore,
    PaymentsLedger,
    ReturnsLedger,
    StoreTransaction,
)
from balise.services.certwatch import Expiry
from balise.services.lots import LotTransitions
from balise.services.params import ParameterService
from balise.services.settings import organism_settings
from balise.services.settings import organisms as all_organisms

S = LotState
# "Sent" for matching: handed to SMTP (its "sent" commit may have been lost) or already answered.
_SENT_STATES = frozenset({S.SENDING, S.SENT, S.ACKNOWLEDGED, S.REJECTED})
# Returns published per transaction (their files made durable together by one sync of the file
# system, then recorded): at most this many, and their payloads about this many bytes.
PUBLISH_BATCH = 1024
PUBLISH_BYTES = 8 * 1024 * 1024
# The version of the lot status files (*.statut.json) of docs/exchange.md: a new key may be added
# within a version; a key removed or changed in meaning makes the next one.
STATUS_SCHEMA = "balise.statut/1"
CERT_ALERT_KINDS = ("cert_expiring", "cert_expired")
# Who resolved an alert that ended by itself (shown in the acknowledged-by column).
AUTO_RESOLVER = "balise (résolue d'elle-même)"
# store(status, lot_id, positive) -> return id, bound to one message in TrackingService.record.
_Store = Callable[[str, int | None, bool | None], int]


@dataclass(frozen=True, slots=True)
class TrackOutcome:
    """What one return did: its stored id, its status, and the lots it touched."""

    return_id: int
    status: str
    lot_ids: tuple[int, ...]
    alert_ids: tuple[int, ...]


def _aammjj(value: date) -> str:
    # strftime("%y%m%d")'s text, without its time tuple (a purge formats a few per return)
    return f"{value.year % 100:02d}{value.month:02d}{value.day:02d}"


def _share_json(share: Share | None) -> JsonValue:
    if share is None:
        return None
    return {"asked": share.asked, "state": share.state.value, "paid": share.paid}


def _arl_reasons(arl: Arl) -> list[str]:
    return [r.words("fr") for r in arl.reasons] + [line.words("fr") for line in arl.reject_lines]


class TrackedReturns(ReturnsLedger, PaymentsLedger, AlertBook, StoreTransaction, Protocol):
    """The pieces of the returns store the tracking uses: the returns, the payments they
    report and the alerts, written together in one transaction (not the purge's dedup rows or
    unknown mail)."""


class TrackingService:
    """Applies returns to lots and keeps the alerts; every lot change goes through LotTransitions."""

    def __init__(
        self,
        repo: TrackedReturns,
        lots: LotStore,
        transitions: LotTransitions,
        journal: Journal,
        clock: Clock,
        exchange: Exchange | None = None,
        params: ParameterService | None = None,
    ) -> None:
        self._repo = repo
        self._lots = lots
        self._transitions = transitions
        self._journal = journal
        self._clock = clock
        self._exchange = exchange
        self._params = params
        # Within one record(): the lots looked up by (emitter, number, date).
        self._lots_seen: dict[tuple[str, str, str], LotRecord | None] | None = None
        # Within :meth:`organisms_read_once`: the organisms' numbers and return-signing
        # certificates as read (None outside it: read at every return).
        self._read_once = False
        self._organisms: dict[str, str] | None = None
        self._signing: dict[str, list[str] | None] = {}

    def _now(self) -> str:
        return self._clock.now().isoformat(timespec="seconds")

    # -- alerts -------------------------------------------------------------------------------

    def alert(
        self,
        kind: str,
        subject: str,
        fr: str,
        en: str,
        details: dict[str, JsonValue] | None = None,
    ) -> int:
        alert_id = self._repo.add_alert(kind, subject, (fr, en), details or {}, self._now())
        self._journal.append("alert.raised", subject, {"kind": kind, "alert": alert_id})
        return alert_id

    def alerts(self, *, include_acknowledged: bool = False) -> list[AlertRecord]:
        return self._repo.alerts(include_acknowledged=include_acknowledged)

    def acknowledge(self, alert_id: int, actor: str) -> bool:
        with self._repo.transaction():
            done = self._repo.acknowledge(alert_id, actor, self._now())
            if done:
                self._journal.append("alert.acknowledged", f"alert:{alert_id}", {"by": actor})
        return done

    def returns(self, profile: str | None = None) -> list[ReturnRecord]:
        return self._repo.returns(profile)

    def payments(self, lot_id: int | None = None) -> list[PaymentRecord]:
        return self._repo.payments(lot_id)

    # -- matching -----------------------------------------------------------------------------

    def _find_lot(self, profile: str, emitter: str, number: int, day: str) -> LotRecord | None:
        key = (emitter, f"{number:03d}", day)
        if self._lots_seen is not None and key in self._lots_seen:
            lot = self._lots_seen[key]
        else:
            lot = self._lots.find_by_key(*key)
            if self._lots_seen is not None:
                self._lots_seen[key] = lot
        return lot if lot is not None and lot.profile == profile else None

    def record(
        self,
        *,
        profile: str,
        own_emitter: str | None,
        uidl: str,
        sha256: str,
        kind: str,
        parsed: ParsedReturn,
        words: tuple[str, str],
        raw: bytes,
        payload: bytes | None,
    ) -> TrackOutcome:
        """Store one recognised or damaged return and apply it where the trust rules allow.
        Call inside a transaction (the purge commits it with the message's dedup row)."""
        # The lots it names are looked up once (for its signers, then to apply it); nothing
        # changes them before it is applied.
        self._lots_seen = {}
        try:
            return self._record(
                profile=profile,
                own_emitter=own_emitter,
                uidl=uidl,
                sha256=sha256,
                kind=kind,
                parsed=parsed,
                words=words,
                raw=raw,
                payload=payload,
            )
        finally:
            self._lots_seen = None

    def _record(
        self,
        *,
        profile: str,
        own_emitter: str | None,
        uidl: str,
        sha256: str,
        kind: str,
        parsed: ParsedReturn,
        words: tuple[str, str],
        raw: bytes,
        payload: bytes | None,
    ) -> TrackOutcome:
        header = parsed.header
        assert header is not None  # the classifier only hands over returns with a valid header
        when = self._now()
        raw_payload = payload
        base = {
            "emitter": header.emitter,
            "organism_type": header.organism_type,
            "organism_number": header.organism_number,
            "lot_number": None,
            "lot_date": None,
        }
        detail: dict[str, JsonValue] = {
            "file_id": header.file_id,
            "created": _aammjj(header.created),
            "flow_type": header.flow_type,
            "unknown_entities": parsed.unknown_entities,
        }
        alerts: list[int] = []

        def store(status: str, lot_id: int | None, positive: bool | None) -> int:
            return self._repo.add_return(
                profile=profile,
                uidl=uidl,
                sha256=sha256,
                kind=kind,
                status=status,
                header=base,
                lot_id=lot_id,
                positive=positive,
                words=words,
                detail=detail,
                size=len(raw),
                raw=raw,
                payload=payload,
                when=when,
            )

        if kind == "damaged" or (parsed.arl is None and parsed.noemie is None):
            detail["problem"] = parsed.problem.value if parsed.problem else None
            detail["where"] = parsed.detail
            rid = store("damaged", None, None)
            alerts.append(
                self.alert(
                    "return_damaged",
                    f"return:{rid}",
                    f"Retour endommagé reçu dans la BAL du profil {profile} : {words[0]} "
                    "(conservé comme preuve, non appliqué)",
                    f"Damaged return received in profile {profile}'s mailbox: {words[1]} "
                    "(kept as evidence, not applied)",
                    {"return": rid},
                )
            )
            return TrackOutcome(rid, "damaged", (), tuple(alerts))

        stream = return_stream(payload) if payload is not None else None
        signed = stream is not None and stream[1]
        if stream is not None:
            payload = stream[0]  # what is kept and published: the entity stream itself
        signers = self._return_signers(profile, header, parsed, own_emitter)
        if signers:
            problem = self._signature_problem(raw_payload, signers)
            if problem is not None:
                was, kind = kind, "damaged"  # what ``store`` writes from here on
                return self._refuse_unsigned(
                    profile, was, parsed, base, detail, store, signers, problem
                )
            detail["signature"] = "vérifiée"
        elif signed:
            detail["signature"] = "non vérifiée (aucun certificat de signature configuré)"

        if header.emitter != own_emitter:
            # Addressed to another practitioner of this box but found in this mailbox: never
            # applied (a return only changes lots of the mailbox's own practitioner).
            rid = store("unmatched", None, parsed.arl.positive if parsed.arl else None)
            alerts.append(
                self.alert(
                    "return_foreign",
                    f"return:{rid}",
                    f"Retour adressé à l'émetteur {header.emitter} trouvé dans la BAL du profil "
                    f"{profile} : non appliqué",
                    f"Return addressed to emitter {header.emitter} found in profile {profile}'s "
                    "mailbox: not applied",
                    {"return": rid},
                )
            )
            return TrackOutcome(rid, "unmatched", (), tuple(alerts))

        if parsed.arl is not None:
            return self._record_arl(profile, header.emitter, parsed.arl, base, detail, store)
        assert parsed.noemie is not None
        return self._record_noemie(
            profile, header.emitter, parsed.noemie, base, detail, store, words
        )

    # -- signed returns (PROFILE.md §3.1) ------------------------------------------------------

    @contextmanager
    def organisms_read_once(self) -> Iterator[None]:
        """Within it, the organisms' numbers and return-signing certificates are read from the
        parameters once, not for every return (a purge run: each return read them all, which was
        a third of the purge's time; the run's classification policy is fixed at its start the
        same way)."""
        self._read_once, self._organisms, self._signing = True, None, {}
        try:
            yield
        finally:
            self._read_once, self._organisms, self._signing = False, None, {}

    def _organism_numbers(self) -> dict[str, str]:
        """Each organism's number as a 000 header writes it (``000000`` + regime, caisse,
        centre)."""
        assert self._params is not None
        if self._organisms is not None:
            return self._organisms
        numbers = {
            o.id: "000000" + "".join(part or "???" for part in (o.regime, o.caisse, o.centre))
            for o in all_organisms(self._params)
        }
        if self._read_once:
            self._organisms = numbers
        return numbers

    def _signing_certs(self, ident: str) -> list[str] | None:
        assert self._params is not None
        if ident in self._signing:
            return self._signing[ident]
        pems = list(organism_settings(self._params, ident).return_signing_cert) or None
        if self._read_once:
            self._signing[ident] = pems
        return pems

    def _organisms_signing(self, ids: set[str]) -> dict[str, list[str]]:
        """The return-signing certificates (PEM) of those organisms that have one."""
        found: dict[str, list[str]] = {}
        for ident in sorted(ids):
            pems = self._signing_certs(ident)
            if pems is not None:
                found[ident] = pems
        return found

    def _return_signers(
        self, profile: str, header: ReturnHeader, parsed: ParsedReturn, own: str | None
    ) -> dict[str, list[str]]:
        """Every organism this return speaks for — the one its 000 header names, and the
        addressee of every lot of this mailbox it would touch — that signs its returns."""
        if self._params is None:
            return {}
        ids = {
            ident
            for ident, number in self._organism_numbers().items()
            if number == header.organism_number
        }
        keys: list[tuple[int, date]] = []
        if parsed.arl is not None:
            keys.append((parsed.arl.lot_number, parsed.arl.lot_date))
        if parsed.noemie is not None:
            keys += [(n.lot_number, n.lot_date) for n in parsed.noemie.lots]
        for lot_number, day in keys:
            lot = self._find_lot(profile, header.emitter, lot_number, _aammjj(day))
            if lot is not None:
                ids.add(lot.organism)
        return self._organisms_signing(ids)

    def _signature_problem(
        self, payload: bytes | None, signers: dict[str, list[str]]
    ) -> tuple[ReturnsCode, str, str] | None:
        """None when ``payload`` is a SignedData verified against one of the organisms'
        return-signing certificates, else (code, French, English)."""
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        if payload is None or not looks_signed(payload):
            return (
                ReturnsCode.RETURN_UNSIGNED,
                "retour non signé alors que l'organisme signe ses retours",
                "unsigned return from an organism that signs its returns",
            )
        ders = [
            x509.load_pem_x509_certificate(pem.encode("ascii")).public_bytes(Encoding.DER)
            for pems in signers.values()
            for pem in pems
        ]
        try:
            verified = verify_signed_data(payload, ders, at=self._clock.now())
        except CmsError as exc:
            return (
                ReturnsCode.RETURN_BAD_SIGNATURE,
                f"signature du retour refusée : {exc.fr}",
                exc.en,
            )
        if verified.signer_cert_der not in ders:
            return (
                ReturnsCode.RETURN_BAD_SIGNATURE,
                "retour signé par un autre certificat que celui de l'organisme",
                "return signed with another certificate than the organism's",
            )
        return None

    def _refuse_unsigned(
        self,
        profile: str,
        kind: str,
        parsed: ParsedReturn,
        base: dict[str, str | None],
        detail: dict[str, JsonValue],
        store: _Store,
        signers: dict[str, list[str]],
        problem: tuple[str, str, str],
    ) -> TrackOutcome:
        """Kept as damaged evidence (never published to retours/, never applied), alerted."""
        code, fr, en = problem
        if parsed.arl is not None:
            base["lot_number"] = f"{parsed.arl.lot_number:03d}"
            base["lot_date"] = _aammjj(parsed.arl.lot_date)
        organisms: list[JsonValue] = list(sorted(signers))
        detail.update(
            {"problem": "signature", "signature": code, "organisms": organisms, "was": kind}
        )
        rid = store("damaged", None, None)
        alert = self.alert(
            "return_unsigned",
            f"return:{rid}",
            f"Retour ({kind.upper()}) au nom de {', '.join(sorted(signers))} reçu dans la BAL du "
            f"profil {profile} : {fr} — conservé comme preuve, non appliqué (possible "
            "usurpation d'expéditeur)",
            f"Return ({kind.upper()}) in the name of {', '.join(sorted(signers))} received in "
            f"profile {profile}'s mailbox: {en} — kept as evidence, not applied (possible "
            "spoofed sender)",
            {"return": rid, "code": code},
        )
        return TrackOutcome(rid, "damaged", (), (alert,))

    def _record_arl(
        self,
        profile: str,
        emitter: str,
        arl: Arl,
        base: dict[str, str | None],
        detail: dict[str, JsonValue],
        store: _Store,
    ) -> TrackOutcome:
        day = _aammjj(arl.lot_date)
        base["lot_number"], base["lot_date"] = f"{arl.lot_number:03d}", day
        reasons = _arl_reasons(arl)
        detail.update(
            {
                "positive": arl.positive,
                "invoices_received": arl.invoices_received,
                "arl_date": _aammjj(arl.arl_date),
                "reasons": list(reasons),
            }
        )
        lot = self._find_lot(profile, emitter, arl.lot_number, day)
        if lot is None or lot.state not in _SENT_STATES:
            rid = store("unmatched", None, arl.positive)
            return TrackOutcome(rid, "unmatched", (), ())
        if lot.state in (S.ACKNOWLEDGED, S.REJECTED):
            same = (lot.state is S.ACKNOWLEDGED) == arl.positive
            if same:
                rid = store("duplicate", lot.id, arl.positive)
                return TrackOutcome(rid, "duplicate", (lot.id,), ())
            rid = store("conflict", lot.id, arl.positive)
            alert = self.alert(
                "return_conflict",
                f"lot:{lot.id}",
                f"Lot {lot.lot_number} du {lot_date(lot.lot_date, 'fr')} : un second ARL "
                f"contredit le premier ({'positif' if arl.positive else 'négatif'} après "
                f"« {lot_state(lot.state, 'fr')} ») ; le premier est conservé",
                f"Lot {lot.lot_number} of {lot_date(lot.lot_date, 'en')}: a second ARL "
                f"contradicts the first ({'positive' if arl.positive else 'negative'} after "
                f"'{lot_state(lot.state, 'en')}'); the first one is kept",
                {"lot": lot.id, "return": rid},
            )
            return TrackOutcome(rid, "conflict", (lot.id,), (alert,))
        rid = store("applied", lot.id, arl.positive)
        target = S.ACKNOWLEDGED if arl.positive else S.REJECTED
        fields: dict[str, object] = {} if arl.positive else {"reasons": reasons}
        self._transitions.move(
            lot.id,
            lot.state,
            target,
            note="ARL positif" if arl.positive else "ARL négatif",
            details={"return": rid},
            **fields,
        )
        return TrackOutcome(rid, "applied", (lot.id,), ())

    def _record_noemie(
        self,
        profile: str,
        emitter: str,
        noemie: Noemie,
        base: dict[str, str | None],
        detail: dict[str, JsonValue],
        store: _Store,
        words: tuple[str, str],
    ) -> TrackOutcome:
        del words
        matched: dict[tuple[int, str], int] = {}
        for nlot in noemie.lots:
            day = _aammjj(nlot.lot_date)
            lot = self._find_lot(profile, emitter, nlot.lot_number, day)
            if lot is not None and lot.state in _SENT_STATES:
                matched[(nlot.lot_number, day)] = lot.id
        if len(noemie.lots) == 1:
            only = noemie.lots[0]
            base["lot_number"], base["lot_date"] = f"{only.lot_number:03d}", _aammjj(only.lot_date)
        status = (
            "applied"
            if len(matched) == len(noemie.lots)
            else "unmatched"
            if not matched
            else "partial"
        )
        detail["lots"] = [
            {"lot_number": f"{n.lot_number:03d}", "lot_date": _aammjj(n.lot_date)}
            for n in noemie.lots
        ]
        detail["total_paid"] = noemie.total_paid
        single = next(iter(matched.values())) if len(matched) == 1 else None
        rid = store(status, single, None)
        accounting = _aammjj(noemie.accounting_date) if noemie.accounting_date else None
        payments: list[PaymentRecord] = []
        for nlot in noemie.lots:
            day = _aammjj(nlot.lot_date)
            lot_id = matched.get((nlot.lot_number, day))
            for inv in nlot.invoices:
                reasons = [r.words("fr") for r in inv.reasons] + [
                    line.words("fr") for line in inv.reject_lines
                ]
                payments.append(
                    PaymentRecord(
                        id=0,
                        return_id=rid,
                        profile=profile,
                        emitter=emitter,
                        lot_number=f"{nlot.lot_number:03d}",
                        lot_date=day,
                        lot_id=lot_id,
                        invoice_number=inv.invoice_number,
                        invoice_type=inv.invoice_type,
                        amo_asked=inv.amo.asked,
                        amo_state=inv.amo.state.value,
                        amo_paid=inv.amo.paid,
                        amc_asked=inv.amc.asked if inv.amc else None,
                        amc_state=inv.amc.state.value if inv.amc else None,
                        amc_paid=inv.amc.paid if inv.amc else None,
                        reasons=tuple(reasons),
                        accounting_date=accounting,
                        transfer_reference=noemie.transfer_reference,
                    )
                )
        self._repo.add_payments(payments)
        return TrackOutcome(rid, status, tuple(sorted(set(matched.values()))), ())

    # -- overdue ------------------------------------------------------------------------------

    def check_overdue(self, days: int) -> list[int]:
        """Alert once per lot SENT for more than ``days`` without an ARL (a flag, not a state)."""
        now = self._clock.now()
        raised: list[int] = []
        for lot in self._lots.lots(states=frozenset({S.SENT})):
            since = _parse_time(lot.state_changed)
            if since is None or now - since < timedelta(days=days):
                continue
            subject = f"lot:{lot.id}"
            # Once per sending: an acknowledged alert is not raised again until the lot is resent.
            if any(
                a.kind == "lot_overdue" and a.subject == subject and a.created >= lot.state_changed
                for a in self._repo.alerts(include_acknowledged=True)
            ):
                continue
            raised.append(
                self.alert(
                    "lot_overdue",
                    subject,
                    f"Lot {lot.lot_number} du {lot_date(lot.lot_date, 'fr')} (profil {lot.profile}) "
                    f"envoyé depuis plus de {days} jours sans ARL",
                    f"Lot {lot.lot_number} of {lot_date(lot.lot_date, 'en')} (profile "
                    f"{lot.profile}) sent more than {days} days ago without an ARL",
                    {"lot": lot.id},
                )
            )
        return raised

    def resolve_kind(self, kind: str, reason: str) -> int:
        """Resolve every open alert of ``kind`` whose cause has gone by itself (the box saw it
        go: ``reason``), journaled; how many were resolved."""
        return sum(self._resolve(a, reason) for a in self._repo.alerts() if a.kind == kind)

    def _resolve(self, alert: AlertRecord, reason: str) -> bool:
        with self._repo.transaction():
            done = self._repo.acknowledge(alert.id, AUTO_RESOLVER, self._now())
            if done:
                self._journal.append(
                    "alert.resolved", f"alert:{alert.id}", {"kind": alert.kind, "reason": reason}
                )
        return done

    def check_certificates(self, expiries: Sequence[Expiry]) -> list[int]:
        """One alert per certificate and state (expiring within 30, 7 and 1 days, then expired);
        never repeated. ``expiries`` is the whole list of what is expired or expiring now: an
        open certificate alert whose certificate is no longer in it (renewed by the mail host,
        replaced from the directory, or removed) is resolved by itself, journaled — a box left
        alone for years does not pile up alerts nobody can act on."""
        raised: list[int] = []
        known = {(a.kind, a.subject) for a in self._repo.alerts(include_acknowledged=True)}
        current = {item.fingerprint for item in expiries}
        for alert in self._repo.alerts():
            fingerprint = alert.subject.split(":")[1] if alert.subject.startswith("cert:") else ""
            if alert.kind in CERT_ALERT_KINDS and fingerprint and fingerprint not in current:
                self._resolve(alert, "certificate_renewed_or_removed")
        for item in expiries:
            kind = "cert_expired" if item.expired else "cert_expiring"
            subject = f"cert:{item.fingerprint}" if item.expired else item.subject_key
            if (kind, subject) in known:
                continue
            fr, en = item.words()
            raised.append(
                self.alert(kind, subject, fr, en, {"not_after": item.not_after.isoformat()})
            )
        return raised

    # -- publication --------------------------------------------------------------------------

    def publish_pending(self) -> int:
        """Write to retours/ what is new since the last publication: the payload of each return
        not yet published and the status file of each lot it touches, where that file changes
        (one already holding the same bytes is left alone). In batches of ``PUBLISH_BATCH``
        returns (fewer when their payloads pass ``PUBLISH_BYTES``), each one transaction whose
        files are made durable together (``Exchange.publish_batch``) before the batch is recorded
        as published: a crash in between only means they are looked at again, and nothing is
        written twice."""
        if self._exchange is None:
            return 0
        count = 0
        while True:
            with self._repo.transaction():
                listed = self._repo.returns(unpublished=True, limit=PUBLISH_BATCH)
                files: list[tuple[str, bytes]] = []
                touched: set[int] = set()
                batch: list[ReturnRecord] = []
                size = 0
                for ret in listed:
                    if size >= PUBLISH_BYTES:
                        break
                    batch.append(ret)
                    folder = ret.emitter or "inconnu"
                    if ret.kind in ("arl", "noemie"):
                        payload = self._repo.payload(ret.id)
                        if payload is not None:
                            stem = (
                                f"arl-{ret.lot_date}-{ret.lot_number}"
                                if ret.kind == "arl"
                                else f"noemie-{ret.detail.get('created')}"
                            )
                            files.append((f"{folder}/{stem}-{ret.sha256[:12]}.retour", payload))
                            size += len(payload)
                    if ret.lot_id is not None:
                        touched.add(ret.lot_id)
                    touched |= self._repo.payment_lot_ids(ret.id)
                files += [self._status_file(lot_id) for lot_id in sorted(touched)]
                if files:
                    self._exchange.publish_batch(files)
                self._repo.mark_published([ret.id for ret in batch])
            count += len(batch)
            if len(listed) < PUBLISH_BATCH and len(batch) == len(listed):
                return count

    def lot_status(self, lot_id: int) -> dict[str, JsonValue]:
        lot = self._lots.get(lot_id)
        assert lot is not None
        payments: list[JsonValue] = [
            {
                "facture": p.invoice_number,
                "type": p.invoice_type,
                "amo": {"demande": p.amo_asked, "etat": p.amo_state, "paye": p.amo_paid},
                "amc": None
                if p.amc_state is None
                else {"demande": p.amc_asked, "etat": p.amc_state, "paye": p.amc_paid},
                # A human word in a machine file: the French words, values unchanged since
                # balise.statut/1 (docs/schemas); an unknown code as it came.
                "etat": payment_state(p.amo_state, "fr")
                if p.amo_state in PAYMENT_STATE_WORDS
                else p.amo_state,
                "motifs": list(p.reasons),
                "date_comptable": p.accounting_date,
                "reference_virement": p.transfer_reference,
            }
            for p in self._repo.payments(lot_id)
        ]
        returns: list[JsonValue] = [
            {"type": r.kind, "statut": r.status, "texte": r.words_fr, "recu": r.received}
            for r in self._repo.returns_for_lot(lot_id)
        ]
        return {
            "schema": STATUS_SCHEMA,
            "lot": lot.lot_number,
            "date_lot": lot.lot_date,
            "emetteur": lot.emitter,
            "etat": lot.state.value,
            "motifs": list(lot.reasons),
            "retours": returns,
            "paiements": payments,
        }

    def _status_file(self, lot_id: int) -> tuple[str, bytes]:
        """The lot's status file under retours/: its name and its bytes."""
        status = self.lot_status(lot_id)
        name = f"{status['emetteur']}/lot-{status['date_lot']}-{status['lot']}.statut.json"
        # dumps_indented: json.dumps(..., indent=1)'s text without its pure-Python encoder.
        return name, dumps_indented(status).encode("utf-8") + b"\n"


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    if value.tzinfo is None:
        from datetime import UTC

        value = value.replace(tzinfo=UTC)
    return value
