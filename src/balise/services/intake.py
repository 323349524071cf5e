"""Intake: every file ends accepted as a ready lot (bytes + SHA-256 in the store) or in quarantine."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date

from balise.domain.journal import JsonValue
from balise.domain.lotfile import MAX_FILE_SIZE, LotContext, LotValidation, Mode, validate_lot
from balise.domain.lotrecord import LotRecord, QuarantineProblem, QuarantineRecord
from balise.domain.lotstate import LotState
from balise.domain.params import Scope
from balise.ports import Clock, Exchange, Journal, LotStore
from balise.services.params import ParameterService

MAX_NAME = 120


def safe_name(name: str) -> str:
    """A file name as it may be shown and journaled: printable, bounded."""
    cleaned = "".join(c if c.isprintable() and c not in "/\\" else "?" for c in name)
    return cleaned[:MAX_NAME] or "?"


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


class IntakeService:
    """Validates lot files against the box's parameters and stores them, nothing lost."""

    def __init__(
        self,
        lots: LotStore,
        params: ParameterService,
        journal: Journal,
        clock: Clock,
        exchange: Exchange | None = None,
    ) -> None:
        self._lots = lots
        self._params = params
        self._journal = journal
        self._clock = clock
        self._exchange = exchange

    def organisms(self) -> list[Organism]:
        found: list[Organism] = []
        for ident in self._params.ids(Scope.ORGANISM):
            parts = [self._params.get(n, organism=ident) for n in ("regime", "caisse", "centre")]
            if not all(isinstance(p, str) for p in parts):
                continue
            certs = self._params.get("recipient_certs", organism=ident)
            address = self._params.get("address", organism=ident)
            found.append(
                Organism(
                    ident,
                    "000000" + "".join(str(p) for p in parts),
                    str(self._params.get("type", organism=ident) or ""),
                    address if isinstance(address, str) else None,
                    tuple(certs) if isinstance(certs, list) else (),
                )
            )
        return found

    def emitters(self) -> dict[str, str]:
        """Emitter number → practitioner profile id."""
        out: dict[str, str] = {}
        for profile in self._params.ids(Scope.PROFILE):
            number = self._params.get("emitter_number", profile=profile)
            if isinstance(number, str):
                out[number] = profile
        return out

    def _context(self, today: date) -> tuple[LotContext, dict[str, str], dict[str, Organism]]:
        emitters = self.emitters()
        organisms = {o.addressee: o for o in self.organisms()}
        ctx = LotContext(
            today=today,
            mode=typed_mode(self._params.get("mode")),
            known_emitters=frozenset(emitters),
            organisms_with_certs=frozenset(a for a, o in organisms.items() if o.recipient_certs),
            known_organisms=frozenset(organisms),
            accepted_lot_keys=self._lots.accepted_keys(),
            accepted_hashes=self._lots.accepted_hashes(),
        )
        return ctx, emitters, organisms

    def import_bytes(
        self, name: str, data: bytes, source: str, size: int | None = None
    ) -> IntakeOutcome:
        """Validate and store one file; an identical earlier import from the same source is reported."""
        shown = safe_name(name)
        sha = hashlib.sha256(data).hexdigest()
        real_size = len(data) if size is None else size
        now = self._clock.now()
        with self._lots.transaction():
            previous = self._lots.find_by_hash(sha)
            if previous is not None and previous.source == source:
                return IntakeOutcome(shown, True, lot_id=previous.id, already=True)
            earlier = self._lots.find_quarantine(sha, shown)
            if earlier is not None and earlier.source == source:
                return IntakeOutcome(
                    shown, False, quarantine_id=earlier.id, already=True, problems=earlier.problems
                )
            ctx, emitters, organisms = self._context(now.date())
            # Over the cap only MAX_FILE_SIZE + 1 bytes were read: enough for the size fault.
            validation = validate_lot(data, ctx)
            stamp = now.isoformat(timespec="seconds")
            lot = validation.lot
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
            problems = tuple(
                QuarantineProblem(p.fault.value, p.record, p.message("fr"), p.message("en"))
                for p in validation.problems
            )
            quarantine_id = self._lots.add_quarantine(
                QuarantineRecord(0, stamp, source, shown, sha, real_size, problems), data
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
                },
            )
        return IntakeOutcome(
            shown, False, quarantine_id=quarantine_id, validation=validation, problems=problems
        )

    def scan_depot(self) -> Iterator[IntakeOutcome]:
        """Take every file in depot/new; the file is removed only after its outcome is committed."""
        if self._exchange is None:
            return
        for name in self._exchange.pending():
            data, size = self._exchange.read(name, MAX_FILE_SIZE + 1)
            outcome = self.import_bytes(name, data, f"depot:{name}", size=size)
            if not outcome.accepted and not outcome.already:
                self._exchange.publish(f"refus/{outcome.name}.txt", refusal_report(outcome))
            self._exchange.remove(name)
            yield outcome


def refusal_report(outcome: IntakeOutcome) -> bytes:
    """The words the practice software (and the secretary) get for a refused file."""
    lines = [f"Fichier refusé : {outcome.name}", ""]
    lines += [f"- [{p.code}] {p.fr}" for p in outcome.problems]
    lines += ["", f"File refused: {outcome.name}", ""]
    lines += [f"- [{p.code}] {p.en}" for p in outcome.problems]
    return ("\n".join(lines) + "\n").encode("utf-8")


def typed_mode(raw: object) -> Mode:
    if raw == "production":
        return "production"
    return "demo" if raw == "demo" else "test"
