"""Intake: every file ends accepted as a ready lot (bytes + SHA-256 in the store), refused into
quarantine, or set aside whole in the exchange account — always with its reasons, nothing lost, and
never one file holding up the ones behind it."""

from __future__ import annotations

import errno
import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date

from balise.domain.codes import DepotCode
from balise.domain.errors import DiskFullError, UnreadableFileError
from balise.domain.journal import JsonValue
from balise.domain.lotfile import (
    MAX_FILE_SIZE,
    LotContext,
    LotFault,
    LotValidation,
    Problem,
    validate_lot,
)
from balise.domain.lotrecord import LotRecord, QuarantineProblem, QuarantineRecord
from balise.domain.lotstate import LotState
from balise.ports import Alerts, Clock, Exchange, Journal, LotStore
from balise.services.alerting import raise_once
from balise.services.params import ParameterService
from balise.services.receipts import publish_receipt, receipt_document
from balise.services.settings import box_settings
from balise.services.settings import organisms as all_organisms
from balise.services.settings import profiles as all_profiles

MAX_NAME = 120
# The shown name also names the refusal report (retours/refus/<name>.txt): far below NAME_MAX.
MAX_NAME_BYTES = 180
SET_ASIDE_ALERT = "depot_set_aside"
REFUSED_QUOTA_ALERT = "refused_quota"
DISK_FULL_ALERT = "disk_full"
ALERT_NAMES = 10
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT})

# Called with the shown name and the reasons of a refusal, before the refusal is recorded.
Refusal = Callable[[str, Sequence[QuarantineProblem]], None]


def safe_name(name: str) -> str:
    """A file name as it may be shown and journaled: printable, bounded (in characters and in
    bytes, so that it can name the refusal report)."""
    cleaned = "".join(c if c.isprintable() and c not in "/\\" else "?" for c in name)
    cleaned = cleaned[:MAX_NAME]
    while len(cleaned.encode("utf-8")) > MAX_NAME_BYTES:
        cleaned = cleaned[:-1]
    return cleaned or "?"


@dataclass(frozen=True, slots=True)
class Organism:
    ident: str
    addressee: str  # "000000" + régime + caisse + centre
    type: str
    address: str | None
    recipient_certs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class IntakeOutcome:
    """What became of one file: a lot, a quarantine record, or an earlier import of it."""

    name: str
    accepted: bool
    lot_id: int | None = None
    quarantine_id: int | None = None
    validation: LotValidation | None = None
    already: bool = False
    problems: tuple[QuarantineProblem, ...] = field(default=())
    # False when the store keeps only the refused file's metadata, hash and reasons.
    content_kept: bool = True
    # Where the file was moved in the exchange account when it was not taken.
    set_aside: str | None = None


class IntakeService:
    """Validates lot files against the box's parameters and stores them, nothing lost."""

    def __init__(
        self,
        lots: LotStore,
        params: ParameterService,
        journal: Journal,
        clock: Clock,
        exchange: Exchange | None = None,
        alerts: Alerts | None = None,
        recipients: Callable[[str], list[str]] | None = None,
        after_round: Callable[[], None] | None = None,
    ) -> None:
        self._lots = lots
        self._params = params
        self._journal = journal
        self._clock = clock
        self._exchange = exchange
        self._alerts = alerts
        # organism -> PEM certificates a lot is encrypted to (hand-set, else from the directory)
        self._recipient_pems = recipients
        # Runs after a round of scan_depot that took something (the box's state file for the
        # practice software, retours/etat.json); it must not raise.
        self._after_round = after_round

    def organisms(self) -> list[Organism]:
        found: list[Organism] = []
        for o in all_organisms(self._params):
            if o.regime is None or o.caisse is None or o.centre is None:
                continue
            certs = (
                tuple(self._recipient_pems(o.id))
                if self._recipient_pems is not None
                else o.recipient_certs
            )
            found.append(
                Organism(
                    o.id, "000000" + o.regime + o.caisse + o.centre, o.type or "", o.address, certs
                )
            )
        return found

    def emitters(self) -> dict[str, str]:
        """Emitter number → practitioner profile id."""
        out: dict[str, str] = {}
        for profile in all_profiles(self._params):
            if profile.emitter_number is not None:
                out[profile.emitter_number] = profile.id
        return out

    def _context(self, today: date) -> tuple[LotContext, dict[str, str], dict[str, Organism]]:
        emitters = self.emitters()
        organisms = {o.addressee: o for o in self.organisms()}
        ctx = LotContext(
            today=today,
            mode=box_settings(self._params).mode,
            known_emitters=frozenset(emitters),
            organisms_with_certs=frozenset(a for a, o in organisms.items() if o.recipient_certs),
            known_organisms=frozenset(organisms),
            accepted_lot_keys=self._lots.accepted_keys(),
            accepted_hashes=self._lots.accepted_hashes(),
        )
        return ctx, emitters, organisms

    def import_bytes(
        self,
        name: str,
        data: bytes,
        source: str,
        size: int | None = None,
        *,
        on_refusal: Refusal | None = None,
    ) -> IntakeOutcome:
        """Validate and store one file; an identical earlier import from the same source (or the
        same refused file under the same name, from anywhere) is reported, not stored again.

        ``on_refusal`` runs inside the transaction before a refusal is recorded: if it fails,
        nothing is recorded."""
        shown = safe_name(name)
        sha = hashlib.sha256(data).hexdigest()
        real_size = len(data) if size is None else size
        now = self._clock.now()
        with self._lots.transaction():
            previous = self._lots.find_by_hash(sha)
            if previous is not None and previous.source == source:
                return IntakeOutcome(shown, True, lot_id=previous.id, already=True)
            earlier = self._lots.find_quarantine(sha, shown)
            if earlier is not None:
                return IntakeOutcome(
                    shown,
                    False,
                    quarantine_id=earlier.id,
                    already=True,
                    problems=earlier.problems,
                    content_kept=earlier.content_kept,
                )
            ctx, emitters, organisms = self._context(now.date())
            # Over the cap only MAX_FILE_SIZE + 1 bytes were read: enough for the size fault.
            validation, problems = _validate(data, ctx, real_size)
            stamp = now.isoformat(timespec="seconds")
            lot = None if validation is None else validation.lot
            if lot is not None:
                record = LotRecord(
                    id=0,
                    profile=emitters[lot.header.emitter],
                    emitter=lot.header.emitter,
                    lot_number=lot.key[1],
                    lot_date=lot.key[2],
                    addressee=lot.header.addressee,
                    organism=organisms[lot.header.addressee].ident,
                    flow=lot.header.flow.value,
                    application=lot.header.application.value,
                    invoices=lot.invoice_count,
                    total=lot.lot.total,
                    sha256=sha,
                    size=len(data),
                    state=LotState.READY,
                    received=stamp,
                    source=source,
                    state_changed=stamp,
                )
                lot_id = self._lots.add_lot(record, data)
                self._journal.append(
                    "lot.state",
                    f"lot:{lot_id}",
                    {
                        "from": None,
                        "to": LotState.READY.value,
                        "reason": "validé à l'arrivée",
                        "file": shown,
                        "source": source.split(":", 1)[0],
                        "sha256": sha,
                        "emitter": record.emitter,
                        "lot": record.lot_number,
                        "lot_date": record.lot_date,
                        "invoices": record.invoices,
                    },
                )
                return IntakeOutcome(shown, True, lot_id=lot_id, validation=validation)
            dropped = self._drop_reason(len(data))
            keep = dropped is None
            if on_refusal is not None:
                on_refusal(shown, problems)
            quarantine_id = self._lots.add_quarantine(
                QuarantineRecord(0, stamp, source, shown, sha, real_size, problems, dropped),
                data if keep else None,
            )
            self._journal.append(
                "lot.quarantined",
                f"quarantine:{quarantine_id}",
                {
                    "file": shown,
                    "source": source.split(":", 1)[0],
                    "sha256": sha,
                    "size": real_size,
                    "codes": list[JsonValue](sorted({p.code for p in problems})),
                    "content_kept": keep,
                },
            )
        return IntakeOutcome(
            shown,
            False,
            quarantine_id=quarantine_id,
            validation=validation,
            problems=problems,
            content_kept=keep,
        )

    def scan_depot(self) -> Iterator[IntakeOutcome]:
        """Take every entry of depot/new, oldest first. A lot is accepted, or refused with its
        reasons published first; the file is removed once the store holds its bytes. What the
        box cannot or does not keep (a link, never followed; a folder, a pipe, an unreadable or
        huge file) is set aside whole with its reasons, and the next one is taken. A full disk
        stops the round with nothing half done (DISK_FULL, and an alert): the file stays in
        depot/new for a later round."""
        exchange = self._exchange
        if exchange is None:
            return
        aside: list[IntakeOutcome] = []
        taken = 0
        try:
            for name in exchange.pending():
                try:
                    outcome = self._take(exchange, name)
                except DiskFullError as exc:
                    raise self._disk_full() from exc
                except OSError as exc:
                    if exc.errno not in _NO_ROOM:
                        raise
                    raise self._disk_full() from exc
                if outcome is None:
                    continue
                if outcome.set_aside is not None:
                    aside.append(outcome)
                taken += 1
                yield outcome
        finally:
            if aside:
                self._alert_set_aside(aside)
        if taken and self._after_round is not None:
            self._after_round()

    # -- internals ----------------------------------------------------------------------------

    def _drop_reason(self, size: int) -> str | None:
        """Why a refused file's bytes are not kept, or None: over the lot size cap they are no
        lot and only a prefix was read; over the refused files' quota (the first time, an
        alert) an outsider could fill the box."""
        if size > MAX_FILE_SIZE:
            return "trop grand"
        quota = box_settings(self._params).refused_quota_mib
        if self._lots.quarantine_content_size() + size <= quota * 1024 * 1024:
            return None
        self._alert(
            REFUSED_QUOTA_ALERT,
            "quarantine",
            f"Quota des fichiers refusés atteint ({quota} Mio) : le contenu des nouveaux fichiers "
            "refusés n'est plus gardé par la boîte (leur nom, leur taille, leur empreinte SHA-256 "
            "et leurs motifs le sont ; ceux du dépôt sont mis de côté dans depot/ecartes/). "
            "Vérifiez ce que le logiciel du cabinet dépose, ou prévenez le technicien.",
            f"Refused files quota reached ({quota} MiB): the content of new refused files is no "
            "longer kept (their name, size, SHA-256 and reasons are; the depot's are set aside "
            "in depot/ecartes/). Check what the practice software drops, or call the technician.",
            {"quota_mib": quota},
        )
        return "quota"

    def _take(self, exchange: Exchange, name: str) -> IntakeOutcome | None:
        shown = safe_name(name)
        try:
            data, size = exchange.read(name, MAX_FILE_SIZE + 1)
        except FileNotFoundError:
            return None  # taken meanwhile
        except UnreadableFileError as exc:
            problems = (QuarantineProblem(exc.code, None, exc.fr, exc.en),)
            self._publish_refusal(shown, problems)
            refused = IntakeOutcome(shown, False, problems=problems, content_kept=False)
            self._publish_receipt(exchange, refused, None, None, set_aside=True)
            return self._set_aside(exchange, name, refused)
        outcome = self.import_bytes(
            name, data, f"depot:{name}", size=size, on_refusal=self._publish_refusal
        )
        if outcome.already and not outcome.accepted:
            # Refused before (a crash before the removal, or the same file from a USB key): the
            # practice software still gets its reasons here.
            self._publish_refusal(outcome.name, outcome.problems)
        keep = outcome.accepted or outcome.content_kept
        # Over the size cap only a prefix was read: no SHA-256 of the whole file to give.
        sha = hashlib.sha256(data).hexdigest() if size <= MAX_FILE_SIZE else None
        # The receipt is durable before the file leaves depot/new: a crash in between takes the
        # file again (already stored) and writes its receipt then.
        self._publish_receipt(exchange, outcome, sha, size, set_aside=not keep)
        if keep:
            exchange.remove(name)
            return outcome
        return self._set_aside(exchange, name, outcome)

    def _publish_receipt(
        self,
        exchange: Exchange,
        outcome: IntakeOutcome,
        sha: str | None,
        size: int | None,
        *,
        set_aside: bool,
    ) -> None:
        lot = self._lots.get(outcome.lot_id) if outcome.lot_id is not None else None
        document = receipt_document(
            name=outcome.name,
            sha256=sha,
            size=size,
            taken=self._clock.now().isoformat(timespec="seconds"),
            lot=lot if outcome.accepted else None,
            problems=outcome.problems,
            again=outcome.already,
            set_aside=set_aside,
        )
        publish_receipt(exchange, document)

    def _publish_refusal(self, shown: str, problems: Sequence[QuarantineProblem]) -> None:
        if self._exchange is not None:
            self._exchange.publish(f"refus/{shown}.txt", refusal_report(shown, problems))

    def _set_aside(
        self, exchange: Exchange, name: str, outcome: IntakeOutcome
    ) -> IntakeOutcome | None:
        try:
            where = exchange.set_aside(name)
        except FileNotFoundError:
            return None  # set aside meanwhile by another round
        with self._lots.transaction():
            self._journal.append(
                "depot.set_aside",
                "depot",
                {
                    "file": outcome.name,
                    "to": where,
                    "codes": list[JsonValue](sorted({p.code for p in outcome.problems})),
                },
            )
        return replace(outcome, set_aside=where)

    def _alert(
        self, kind: str, subject: str, fr: str, en: str, details: dict[str, JsonValue]
    ) -> None:
        """Raise an alert unless one of this kind and subject is still open. Best effort: when
        the full disk is the one holding the alerts, the caller's error still says it."""
        if self._alerts is None:
            return
        when = self._clock.now().isoformat(timespec="seconds")
        raise_once(
            self._alerts, self._journal, self._lots.transaction(), when, kind, subject,
            (fr, en), details,
        )  # fmt: skip

    def _alert_set_aside(self, aside: Sequence[IntakeOutcome]) -> None:
        names = ", ".join(o.name for o in aside[:ALERT_NAMES])
        more = len(aside) - ALERT_NAMES
        fr_more = f" et {more} autre(s)" if more > 0 else ""
        en_more = f" and {more} more" if more > 0 else ""
        self._alert(
            SET_ASIDE_ALERT,
            "depot",
            f"Dépôt : {len(aside)} fichier(s) mis de côté sans être pris (illisible, lien, "
            f"dossier, tube ou trop grand) : {names}{fr_more}. Ils sont dans depot/ecartes/, "
            "leurs motifs dans retours/refus/ : le logiciel du cabinet doit refaire ces lots.",
            f"Depot: {len(aside)} file(s) set aside, not taken (unreadable, link, folder, pipe "
            f"or too large): {names}{en_more}. They are in depot/ecartes/, their reasons in "
            "retours/refus/: the practice software must make these lots again.",
            {"files": list[JsonValue]([o.name for o in aside[:ALERT_NAMES]]), "count": len(aside)},
        )

    def _disk_full(self) -> DiskFullError:
        fr = (
            "Disque plein : le dépôt n'est plus traité ; les fichiers restent dans depot/new et "
            "seront pris quand il y aura de la place. Libérez de la place ou prévenez le "
            "technicien."
        )
        en = (
            "Disk full: the depot is not processed; the files stay in depot/new and will be "
            "taken when there is room. Free some space or call the technician."
        )
        self._alert(DISK_FULL_ALERT, "intake", fr, en, {})
        return DiskFullError(fr, en)


def _validate(
    data: bytes, ctx: LotContext, real_size: int
) -> tuple[LotValidation | None, tuple[QuarantineProblem, ...]]:
    """The validation and its problems as recorded (a file too large is told by its real size,
    not by the prefix read); a parser failure on hostile bytes is one more reason to refuse the
    file, never a reason to stop intake."""
    try:
        validation = validate_lot(data, ctx)
    except Exception as exc:  # noqa: BLE001 — one file's bytes must not stop the depot
        # Words for the practice software and the kiosk; the type of the failure goes to the
        # journal for the developers, never to a person.
        problem = QuarantineProblem(
            DepotCode.DEPOT_UNPARSABLE,
            None,
            "analyse impossible : le fichier n'a pas la forme d'un lot",
            f"analysis failed: the file does not have the form of a lot ({type(exc).__name__})",
        )
        return None, (problem,)
    found = [
        Problem.of(p.fault, p.record, size=real_size, limit=MAX_FILE_SIZE)
        if p.fault is LotFault.FILE_TOO_LARGE
        else p
        for p in validation.problems
    ]
    problems = tuple(
        QuarantineProblem(p.fault.value, p.record, p.message("fr"), p.message("en")) for p in found
    )
    return validation, problems


def refusal_report(name: str, problems: Sequence[QuarantineProblem]) -> bytes:
    """The words the practice software (and the secretary) get for a refused file."""
    lines = [f"Fichier refusé : {name}", ""]
    lines += [f"- [{p.code}] {p.fr}" for p in problems]
    lines += ["", f"File refused: {name}", ""]
    lines += [f"- [{p.code}] {p.en}" for p in problems]
    return ("\n".join(lines) + "\n").encode("utf-8")
