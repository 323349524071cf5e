"""Ten years of a busy group practice: the box's daily commands and screens on it, against peers
measured in the same run (a bare SHA-256 pass over the same journal rows, the same commands and
screens on an empty box), with the peak memory of every measured process.

    .venv/bin/python bench/scale.py [--scale 0.05] [--runs 3] [--rebuild] [--cache DIR]

The box (at ``--scale 1``): 8 practitioners, 60,000 lots over ten years with their signing,
sending and ARL, 1.5 million invoices paid through 90,000 NOEMIE (150,000 returns in all), 5,000
quarantined mails with their alerts, 2,000,000 journal entries; then the default retention (three
years) applied as the agent does it. It is built once per scale and kept in the cache
(``~/.cache/balise-bench/scale-<scale>``, rebuilt when this builder changes or with ``--rebuild``);
every run measures a fresh copy of it.

How the box is built, and why it holds the rows the real paths make:
- through the real write paths: the store and its migrations, the 8 practitioner profiles and
  the organism (ParameterService, journaled), every return (SqliteReturnsStore.add_return:
  encrypted raw mail and payload), every quarantined mail (add_unknown: encrypted metadata and
  copy), every alert (add_alert, acknowledged through acknowledge), the retention
  (RetentionService.run, as the agent runs it), and the day of activity before the daily check
  (SqliteJournal.append);
- through bulk inserts (``executemany``), because the services would take hours: the lots (the
  columns SqliteLotStore.add_lot and LotTransitions.move write, content built by the domain's lot
  builder, the signature, envelope and lot mail of a sent lot as blobs of their real sizes and
  entropy, compostage, Message-ID and subject by the domain's lotmail functions), the payments (the
  columns of add_payment), the deduplication rows (those of mark_seen) and the journal: every
  entry in time order, details canonical (canonical_details) and hashes chained with the domain's
  entry_hash, so `balise journal verify` checks a valid chain of the real kinds (lot.state with
  the domain's transition words, alert.raised, alert.acknowledged, purge.run, param.set...).

Targets (issue 15): full journal verify ≤ 2× the bare pass and ≤ 100 MB; the daily incremental
check ≤ 1 s; the agent's cycle, doctor, the three --json listings, the kiosk and backup ≤ 150 MB
each; kiosk first screen ≤ 1.3× and the Lots / Retours / Alertes first paint and End ≤ 2× the
same on an empty box; the backup archive ≤ 1.2× and its time ≤ 1.5× `sqlite3 DB .dump | zstd -3`
of the same database (``--backup-runs``, default 1: a few minutes each on the full box); the
kiosk's cold start ≤ 1.2× a bare Textual app (bench/startup.py); the purge of 1,000 returns
≤ 1.25× and with its publication to retours/ ≤ 2× a bare poplib RETR+DELE loop (bench/purge.py,
a real Dovecot). Ratios against peers measured in the same run; where best and median are shown
(start-up, backup, purge: the noisiest) the verdict is on the best.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from balise.domain.journal import canonical_details, entry_hash

ROOT = Path(__file__).resolve().parent.parent
BALISE = str(Path(sys.executable).with_name("balise"))
BUILDER_VERSION = 6  # bump when the box built changes: cached boxes are rebuilt
YEARS_DAYS = 3652
PRACTITIONERS = 8
ORGANISM = ("cpam422", "CP", "01", "422", "000", "01422@422.01.rss.fr")
ADDRESSEE = "00000001422000"


# -- the shape of the box ---------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    scale: float
    lots: int
    invoices: int
    returns: int
    journal: int
    quarantined: int
    practitioners: int = PRACTITIONERS

    @classmethod
    def at(cls, scale: float) -> Shape:
        def n(full: int) -> int:
            return max(1, round(full * scale))

        return cls(scale, n(60_000), n(1_500_000), n(150_000), n(2_000_000), n(5_000))


def emitter(p: int) -> str:
    return f"{12345671 + p:014d}"


def profile(p: int) -> str:
    return f"p{p + 1}"


def configure(ctx: Any) -> None:
    """The 8 practitioners and the organism, through the parameters service (journaled)."""
    params = ctx.params
    params.set("mode", "test")
    for p in range(PRACTITIONERS):
        params.set("display_name", f"Cabinet, praticien {p + 1}", profile=profile(p))
        params.set("emitter_number", emitter(p), profile=profile(p))
        params.set("rpps", f"{10000000000 + p + 1}", profile=profile(p))
        params.set("bal_address", f"bal{p + 1}x{p + 7}@bal.example.net", profile=profile(p))
    ident, kind, regime, caisse, centre, address = ORGANISM
    for name, value in (("type", kind), ("regime", regime), ("caisse", caisse), ("centre", centre)):
        params.set(name, value, organism=ident)
    params.set("address", address, organism=ident)


# -- the builder --------------------------------------------------------------------------------


@dataclass(order=True)
class Action:
    """Something that happened at ``second`` of its day; ``journals`` entries it writes."""

    second: float
    order: int
    run: Callable[[datetime], None] = field(compare=False)
    journals: int = field(default=1, compare=False)


class Builder:
    """Writes ten years in time order, one day at a time (see the module docstring)."""

    def __init__(self, ctx: Any, shape: Shape, now: datetime) -> None:
        from balise.domain.lotstate import LotState, check_transition

        self.ctx = ctx
        self.conn = ctx.store.conn
        self.repo = ctx.returns_store
        self.shape = shape
        self.now = now
        self.days = YEARS_DAYS
        self.start = (now - timedelta(days=self.days)).replace(hour=0, minute=0, second=0)
        head = ctx.journal.head()
        self.seq: int = head.seq if head else 0
        self.prev: str = head.hash if head else "0" * 64
        self.rows: dict[str, list[tuple[Any, ...]]] = {
            "lots": [],
            "lot_blobs": [],
            "payments": [],
            "mail_seen": [],
            "journal": [],
        }
        self.pending: dict[int, list[Action]] = {}
        self.order = 0
        self.numbers = [0] * PRACTITIONERS
        self.counter = 0
        self.invoices_cache: dict[tuple[int, int], tuple[Any, ...]] = {}
        self.reason = {
            (a.value, b.value): check_transition(a, b)
            for a, b in (
                (LotState.READY, LotState.SIGNED),
                (LotState.SIGNED, LotState.SENDING),
                (LotState.SENDING, LotState.SENT),
                (LotState.SENT, LotState.ACKNOWLEDGED),
                (LotState.SENT, LotState.REJECTED),
                (LotState.READY, LotState.CANCELLED),
            )
        }
        self.cert = random.Random(1).randbytes(1500)
        self.alerts_open: list[int] = []
        self.made = {"lots": 0, "returns": 0, "payments": 0, "quarantined": 0, "alerts": 0}

    # -- journal ------------------------------------------------------------------------------

    def journal(self, when: datetime, kind: str, subject: str, details: dict[str, Any]) -> None:
        text = canonical_details(details)
        stamp = when.isoformat(timespec="microseconds")
        actor = "kiosk" if kind == "lot.state" and details.get("to") == "signed" else "agent"
        self.seq += 1
        digest = entry_hash(self.prev, self.seq, stamp, kind, actor, subject, text)
        self.rows["journal"].append(
            (self.seq, stamp, kind, actor, subject, text, self.prev, digest)
        )
        self.prev = digest

    def at(
        self, day: int, second: float, run: Callable[[datetime], None], journals: int = 1
    ) -> None:
        self.order += 1
        self.pending.setdefault(day, []).append(Action(second, self.order, run, journals))

    # -- one lot's life -----------------------------------------------------------------------

    def _invoices(self, count: int, day: int) -> tuple[Any, ...]:
        from balise.sim.lotbuild import make_invoices

        key = (count, day // 30)
        if key not in self.invoices_cache:
            care = (self.start + timedelta(days=day)).date()
            self.invoices_cache[key] = tuple(
                make_invoices(count, seed=count * 1000 + key[1], care_date=care)
            )
        return self.invoices_cache[key]

    def lot(self, i: int, day: int) -> None:
        from balise.domain.lotmail import compostage, message_id, subject
        from balise.sim.lotbuild import build_lot

        p = i % PRACTITIONERS
        self.numbers[p] = self.numbers[p] % 999 + 1
        number = self.numbers[p]
        lot_id = i + 1
        the_day = self.start + timedelta(days=day)
        lot_day = the_day.date()
        age = self.days - 1 - day
        count = 10 + (i * 7) % 31  # 10..40 invoices, 25 on average
        invoices = self._invoices(count, day)
        content = build_lot(
            emitter(p), ADDRESSEE, number, lot_day, invoices, file_id=f"F{i % 99999:05d}"
        )
        sha = hashlib.sha256(content).hexdigest()
        total = sum(inv.total for inv in invoices)
        roll = (i * 2654435761 >> 7) % 100
        fate = (
            "ready"
            if age == 0
            else "sent"
            if age == 1
            else "cancelled"
            if roll < 3
            else "rejected"
            if roll < 5
            else "acknowledged"
        )
        s_in = 8 * 3600 + (i * 7919) % (10 * 3600)
        t_in = the_day + timedelta(seconds=s_in)
        name = f"lot-{emitter(p)}-{number:03d}-{lot_day:%y%m%d}.lot"
        d6 = f"{lot_day:%y%m%d}"
        n3 = f"{number:03d}"
        rng = random.Random(i)
        signed = fate not in ("ready", "cancelled")
        t_sign = the_day + timedelta(seconds=19 * 3600 + i % 1800)
        t_send = t_sign + timedelta(minutes=30)
        t_sent = t_send + timedelta(seconds=40)
        arl_day = day + 1
        t_arl = self.start + timedelta(days=arl_day, seconds=6 * 3600 + i % 3600)
        comp = mid = subj = None
        cms = envelope = mail = None
        if signed:
            comp = compostage(t_send, i % 100_000)
            mid = message_id(comp, n3, emitter(p), "balise-cabinet")
            subj = subject("000000", emitter(p), comp, count)
            cms = zlib.compress(content, 6) + self.cert + rng.randbytes(256)
            envelope = rng.randbytes(len(cms) + 400)
            mail = f"Message-ID: {mid}\r\nSubject: {subj}\r\n\r\n".encode() + base64.encodebytes(
                envelope
            )
        state_changed = {
            "ready": t_in,
            "cancelled": t_in + timedelta(hours=1),
            "sent": t_sent,
            "acknowledged": t_arl,
            "rejected": t_arl,
        }[fate]
        reasons = json.dumps(["A02 : lot refusé par l'organisme"] if fate == "rejected" else [])

        def iso(t: datetime) -> str:
            return t.isoformat(timespec="seconds")

        def intake(when: datetime) -> None:
            self.rows["lots"].append(
                (
                    lot_id, profile(p), emitter(p), n3, d6, ADDRESSEE, ORGANISM[0], "T", "FS",
                    count, total, sha, len(content), fate, iso(t_in),
                    f"depot:{name}", iso(state_changed),
                    f"Praticien {p + 1}" if signed else None,
                    iso(t_sign) if signed else None, comp, mid, subj,
                    iso(t_sent) if signed else None, 1 if signed else 0, reasons,
                )
            )  # fmt: skip
            self.rows["lot_blobs"] += [
                (lot_id, kind, data)
                for kind, data in (
                    ("content", content), ("signed_cms", cms), ("envelope", envelope),
                    ("mail", mail),
                )
                if data is not None
            ]  # fmt: skip
            self.made["lots"] += 1
            self.journal(
                when,
                "lot.state",
                f"lot:{lot_id}",
                {
                    "from": None,
                    "to": "ready",
                    "reason": "validé à l'arrivée",
                    "file": name,
                    "source": "depot",
                    "sha256": sha,
                    "emitter": emitter(p),
                    "lot": n3,
                    "lot_date": d6,
                    "invoices": count,
                },
            )

        def move(a: str, b: str, **extra: Any) -> Callable[[datetime], None]:
            def run(when: datetime) -> None:
                details = {"from": a, "to": b, "reason": self.reason[(a, b)], **extra}
                self.journal(when, "lot.state", f"lot:{lot_id}", details)

            return run

        self.at(day, s_in, intake)
        if fate == "cancelled":
            self.at(day, s_in + 3600, move("ready", "cancelled", note="retiré"))
        if signed:
            base = (t_sign - the_day).total_seconds()
            self.at(day, base, move("ready", "signed"))
            self.at(
                day,
                base + 1800,
                move("signed", "sending", compostage=comp, message_id=mid, to=ORGANISM[5]),
            )
            self.at(day, base + 1840, move("sending", "sent", message_id=mid))
        if fate in ("acknowledged", "rejected") and arl_day < self.days:
            positive = fate == "acknowledged"
            key = (p, lot_id, n3, d6)
            self.at(
                arl_day,
                (t_arl - self.start - timedelta(days=arl_day)).total_seconds(),
                lambda when: self.arl(when, key, positive, rng),
            )
            # NOEMIE: one or two, each paying part of the invoices, days after the ARL.
            parts = (2 if i % 8 < 5 else 1) if fate == "acknowledged" else 0
            first = 0
            for k in range(parts):
                share = count // parts + (count % parts if k == parts - 1 else 0)
                nday = arl_day + 4 + 7 * k
                if nday < self.days:
                    numbers = [inv.number for inv in invoices[first : first + share]]
                    amounts = [inv.total for inv in invoices[first : first + share]]
                    self.at(
                        nday,
                        5 * 3600 + (i * 13 + k) % 3600,
                        self._noemie(key, numbers, amounts, rng),
                        journals=0,
                    )
                first += share

    def _noemie(
        self,
        key: tuple[int, int, str, str],
        numbers: list[int],
        amounts: list[int],
        rng: random.Random,
    ) -> Callable[[datetime], None]:
        return lambda when: self.noemie(when, key, numbers, amounts, rng)

    def _entry(
        self, kind: str, subject: str, details: dict[str, Any]
    ) -> Callable[[datetime], None]:
        return lambda when: self.journal(when, kind, subject, details)

    def _return(
        self, when: datetime, p: int, kind: str, lot_id: int, n3: str, d6: str,
        positive: bool | None, words: tuple[str, str], raw_size: int, rng: random.Random,
    ) -> int:  # fmt: skip
        self.counter += 1
        uidl = f"{profile(p)}-{self.counter:08d}"
        sha = hashlib.sha256(uidl.encode()).hexdigest()
        rid = int(
            self.repo.add_return(
                profile=profile(p),
                uidl=uidl,
                sha256=sha,
                kind=kind,
                status="applied",
                header={
                    "emitter": emitter(p),
                    "organism_type": "CP",
                    "organism_number": ADDRESSEE,
                    "lot_number": n3,
                    "lot_date": d6,
                },
                lot_id=lot_id,
                positive=positive,
                words=words,
                detail={
                    "file_id": f"R{self.counter % 99999:05d}",
                    "created": d6,
                    "flow_type": "ARL" if kind == "arl" else "NOEMIE",
                    "unknown_entities": 0,
                },
                size=raw_size,
                raw=rng.randbytes(raw_size),
                payload=rng.randbytes(raw_size // 3),
                when=when.isoformat(timespec="seconds"),
            )
        )
        self.rows["mail_seen"].append(
            (
                profile(p),
                uidl,
                sha,
                "return",
                rid,
                f"{when:%Y-%m-%d %H:%M:%S}",
                f"run{when:%Y%m%d%H}",
            )
        )
        self.made["returns"] += 1
        return rid

    def arl(
        self, when: datetime, key: tuple[int, int, str, str], positive: bool, rng: random.Random
    ) -> None:
        p, lot_id, n3, d6 = key
        words = (
            (f"ARL positif du lot {n3}", f"Positive ARL for lot {n3}")
            if positive
            else (f"ARL négatif du lot {n3} : A02", f"Negative ARL for lot {n3}: A02")
        )
        rid = self._return(when, p, "arl", lot_id, n3, d6, positive, words, 2600, rng)
        target = "acknowledged" if positive else "rejected"
        details = {
            "from": "sent",
            "to": target,
            "reason": self.reason[("sent", target)],
            "note": "ARL positif" if positive else "ARL négatif",
            "return": rid,
        }
        self.journal(when, "lot.state", f"lot:{lot_id}", details)

    def noemie(
        self, when: datetime, key: tuple[int, int, str, str], numbers: Sequence[int],
        amounts: Sequence[int], rng: random.Random,
    ) -> None:  # fmt: skip
        p, lot_id, n3, d6 = key
        words = (
            f"NOEMIE : {len(numbers)} facture(s) du lot {n3}",
            f"NOEMIE: {len(numbers)} invoice(s) of lot {n3}",
        )
        rid = self._return(
            when, p, "noemie", lot_id, n3, d6, None, words, 1800 + 160 * len(numbers), rng
        )
        day = f"{when:%Y%m%d}"
        for number, amount in zip(numbers, amounts, strict=True):
            state = "P" if number % 23 else ("R" if number % 2 else "D")
            self.rows["payments"].append(
                (
                    rid, profile(p), emitter(p), n3, d6, lot_id, number, "F", amount, state,
                    amount if state == "P" else 0, None, None, None,
                    '["motif 201"]' if state == "R" else "[]", day, f"VIR{rid:09d}",
                )
            )  # fmt: skip
        self.made["payments"] += len(numbers)

    # -- unknown mail, alerts, the purge runs -------------------------------------------------

    def unknown_mail(self, q: int, day: int, second: float) -> None:
        p = q % PRACTITIONERS
        age = self.days - 1 - day

        def run(when: datetime) -> None:
            self.counter += 1
            uidl = f"{profile(p)}-{self.counter:08d}"
            sha = hashlib.sha256(uidl.encode()).hexdigest()
            rng = random.Random(q)
            ref = self.repo.add_unknown(
                profile=profile(p),
                uidl=uidl,
                sha256=sha,
                digest_scope="message",
                size=4200,
                reason=("UNKNOWN_SENDER", "expéditeur inconnu", "unknown sender"),
                meta={"from": f"promo{q}@example.com", "subject": f"Offre n° {q}"},
                copy=rng.randbytes(4200) if age < 30 else None,  # older copies: dropped
                when=when.isoformat(timespec="seconds"),
            )
            self.rows["mail_seen"].append(
                (profile(p), uidl, sha, "unknown", ref, f"{when:%Y-%m-%d %H:%M:%S}", f"run{q}")
            )
            alert = self.repo.add_alert(
                "mail_unknown",
                f"profile:{profile(p)}",
                (
                    f"1 message(s) inconnu(s) retiré(s) de la BAL du profil {profile(p)} et mis "
                    "en quarantaine chiffrée, jamais ouverts : expéditeur inconnu",
                    f"1 unknown message(s) removed from profile {profile(p)}'s mailbox into "
                    "encrypted quarantine, never opened: unknown sender",
                ),
                {"profile": profile(p), "messages": [{"id": ref, "uidl": uidl, "size": 4200}]},
                when.isoformat(timespec="seconds"),
            )
            self.repo.mark_alerted([ref])
            self.journal(
                when,
                "alert.raised",
                f"profile:{profile(p)}",
                {"kind": "mail_unknown", "alert": alert},
            )
            self.made["quarantined"] += 1
            self.made["alerts"] += 1
            if age > 2 and q % 5:  # most read the next morning; one in five is never read
                self.at(day + 1, 8 * 3600 + q % 3600, lambda w: self.acknowledge(w, alert))

        self.at(day, second, run)

    def acknowledge(self, when: datetime, alert: int) -> None:
        self.repo.acknowledge(alert, "kiosk", when.isoformat(timespec="seconds"))
        self.journal(when, "alert.acknowledged", f"alert:{alert}", {"by": "kiosk"})

    def purge_runs(self, day: int, count: int) -> None:
        for k in range(count):
            p = k % PRACTITIONERS
            details = {
                "total": 0,
                "returns": 0,
                "unknown": 0,
                "duplicates": 0,
                "deleted": 0,
                "stopped": None,
            }
            self.at(
                day,
                (k + 0.5) * 86400 / count,
                self._entry("purge.run", f"profile:{profile(p)}", details),
            )

    # -- the ten years ------------------------------------------------------------------------

    def flush(self) -> None:
        conn = self.conn
        if self.rows["lots"]:
            conn.executemany(
                "INSERT INTO lots(id, profile, emitter, lot_number, lot_date, addressee, organism, "
                "flow, application, invoices, total, sha256, size, state, received, "
                "source, state_changed, signer, signed_at, compostage, "
                "message_id, subject, sent_at, attempts, reasons) VALUES "
                f"({', '.join('?' * 25)})",
                self.rows["lots"],
            )
            conn.executemany(
                "INSERT INTO lot_blobs(lot_id, kind, data) VALUES (?, ?, ?)",
                self.rows["lot_blobs"],
            )
        if self.rows["payments"]:
            conn.executemany(
                "INSERT INTO payments(return_id, profile, emitter, lot_number, lot_date, lot_id, "
                "invoice_number, invoice_type, amo_asked, amo_state, amo_paid, amc_asked, "
                "amc_state, amc_paid, reasons, accounting_date, transfer_reference) VALUES "
                f"({', '.join('?' * 17)})",
                self.rows["payments"],
            )
        if self.rows["mail_seen"]:
            conn.executemany(
                "INSERT INTO mail_seen(profile, uidl, sha256, outcome, ref_id, processed, run_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                self.rows["mail_seen"],
            )
        if self.rows["journal"]:
            conn.executemany(
                "INSERT INTO journal(seq, time, kind, actor, subject, details, prev_hash, hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                self.rows["journal"],
            )
        for rows in self.rows.values():
            rows.clear()

    def build(self, log: Callable[[str], None]) -> None:
        shape, days = self.shape, self.days
        lot_day = [i * days // shape.lots for i in range(shape.lots)]
        mail_day = [q * days // shape.quarantined for q in range(shape.quarantined)]
        next_lot = next_mail = 0
        started = time.monotonic()
        write = self.ctx.store.write()
        write.__enter__()
        for day in range(days):
            while next_lot < shape.lots and lot_day[next_lot] == day:
                self.lot(next_lot, day)
                next_lot += 1
            while next_mail < shape.quarantined and mail_day[next_mail] == day:
                self.unknown_mail(next_mail, day, 3 * 3600 + (next_mail * 311) % 7200)
                next_mail += 1
            actions = self.pending.get(day, [])
            # Fill up to the journal's pace with the purge runs of the day.
            target = shape.journal * (day + 1) // days
            self.purge_runs(day, max(0, target - self.seq - sum(a.journals for a in actions)))
            the_day = self.start + timedelta(days=day)
            for action in sorted(self.pending.pop(day, [])):
                action.run(the_day + timedelta(seconds=min(action.second, 86399.999)))
            self.flush()
            if day % 60 == 59:
                write.__exit__(None, None, None)
                log(
                    f"  {day + 1}/{days} days, {self.seq:,} journal entries ({time.monotonic() - started:.0f} s)"
                )
                write = self.ctx.store.write()
                write.__enter__()
        write.__exit__(None, None, None)


def build_box(where: Path, shape: Shape, log: Callable[[str], None]) -> dict[str, Any]:
    """The ten years, then the retention the agent applies, in ``where`` (data/ and bench.kek)."""
    from balise.adapters.clock import FixedClock
    from balise.adapters.kek import create_key_file
    from balise.app.backup import retention_service
    from balise.app.context import open_context

    now = datetime.now(UTC).replace(microsecond=0)
    kek = where / "bench.kek"
    create_key_file(kek)
    env = {"BALISE_KEK_FILE": str(kek)}
    started = time.monotonic()
    ctx = open_context(
        where / "data",
        actor="agent",
        env=env,
        clock=FixedClock(now - timedelta(days=YEARS_DAYS + 1)),
    )
    try:
        configure(ctx)
        builder = Builder(ctx, shape, now)
        builder.build(log)
        before = counts(ctx.store.conn)
        built = time.monotonic() - started
    finally:
        ctx.close()
    log(f"  built in {built:.0f} s; retention (three years, as the agent runs it)...")
    ctx = open_context(where / "data", actor="agent", env=env, clock=FixedClock(now))
    try:
        # The store's index on payments(return_id) (migration 0010, a finding of this bench)
        # keeps this first retention of seven years to about a minute instead of an hour.
        conn = ctx.store.conn
        retention_started = time.monotonic()
        outcome = retention_service(ctx).run(now)
        retention_seconds = time.monotonic() - retention_started
        after = counts(conn)
    finally:
        ctx.close()
    return {
        "version": BUILDER_VERSION,
        "shape": asdict(shape),
        "built": now.isoformat(),
        "build_seconds": round(time.monotonic() - started),
        "made": builder.made,
        "before_retention": before,
        "after_retention": after,
        "retention_removed": {**outcome.removed, "journal": outcome.journal_removed},
        "retention_seconds": round(retention_seconds),
    }


def counts(conn: Any) -> dict[str, int]:
    tables = ("lots", "returns", "payments", "mail_quarantine", "alerts", "journal", "mail_seen")
    return {t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in tables}


def empty_box(where: Path) -> None:
    """The same practitioners, no history: the peer of the screens and listings."""
    from balise.adapters.kek import create_key_file
    from balise.app.context import open_context

    kek = where / "bench.kek"
    create_key_file(kek)
    ctx = open_context(where / "data", actor="agent", env={"BALISE_KEK_FILE": str(kek)})
    try:
        configure(ctx)
    finally:
        ctx.close()


def cached_box(cache: Path, shape: Shape, rebuild: bool) -> tuple[Path, dict[str, Any]]:
    where = cache / f"scale-{shape.scale:g}"
    manifest = where / "manifest.json"
    if not rebuild and manifest.exists():
        info = json.loads(manifest.read_text())
        if info.get("version") == BUILDER_VERSION and info.get("shape") == asdict(shape):
            return where, info
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True, mode=0o700)
    print(f"building the ten-year box at scale {shape.scale:g} in {where} ...", flush=True)
    info = build_box(where, shape, lambda line: print(line, flush=True))
    manifest.write_text(json.dumps(info, indent=1))
    return where, info


def fresh_copy(box: Path, dest: Path) -> Path:
    """A copy of the cached box for this run (the checks write their checkpoint in it)."""
    shutil.copytree(box / "data", dest / "data", ignore=shutil.ignore_patterns("*-shm"))
    shutil.copy2(box / "bench.kek", dest / "bench.kek")
    return dest


# -- measuring ----------------------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    peak_kib: int
    out: str = ""
    spawned: float = 0.0


# A small launcher measures each command: ru_maxrss counts what the forking process held at the
# fork (the bench itself holds the built box's modules), so the command is spawned by this ~9 MiB
# process, which reports the wall time and the child's peak RSS (floor: about 9 MiB).
LAUNCHER = """
import json, os, sys, time
result, argv = sys.argv[1], sys.argv[2:]
spawned = time.time()
start = time.perf_counter()
pid = os.posix_spawnp(argv[0], argv, os.environ)
_, status, usage = os.wait4(pid, 0)
elapsed = time.perf_counter() - start
with open(result, "w") as out:
    json.dump({"seconds": elapsed, "peak_kib": usage.ru_maxrss, "spawned": spawned,
               "code": os.waitstatus_to_exitcode(status)}, out)
"""


def run(cmd: Sequence[str], env: dict[str, str], *, ok: Sequence[int] = (0,)) -> Run:
    """One command as a child process: wall time, peak RSS, the start of its output."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        with (Path(tmp) / "out").open("w+b") as out:
            done = subprocess.run(
                [sys.executable, "-S", "-c", LAUNCHER, str(result), *cmd],
                env=env,
                stdout=out,
                stderr=subprocess.PIPE,
                cwd=ROOT,
                check=False,
            )
            out.seek(0)
            head = out.read(200_000).decode(errors="replace")
        facts = json.loads(result.read_text()) if result.exists() else {"code": done.returncode}
    if facts["code"] not in ok:
        err = done.stderr.decode(errors="replace")
        raise SystemExit(f"{' '.join(cmd)} failed ({facts['code']}): {err[-2000:]}")
    return Run(facts["seconds"], facts["peak_kib"], head, facts["spawned"])


def box_env(box: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BALISE_")}
    env.pop("CREDENTIALS_DIRECTORY", None)
    env.update(
        BALISE_HOME=str(box / "data"),
        BALISE_KEK_FILE=str(box / "bench.kek"),
        BALISE_EXCHANGE=str(box / "echange"),
        PYTHONPATH=str(ROOT / "src"),
    )
    return env


BARE_SHA = """
import hashlib, sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
n = 0
for row in conn.execute(
    "SELECT seq, time, kind, actor, subject, details, prev_hash, hash FROM journal ORDER BY seq"
):
    hashlib.sha256(("\\n".join((row[6], str(row[0]), *row[1:6]))).encode()).hexdigest()
    n += 1
print(n)
"""

DAY_OF_ACTIVITY = """
import sys
from pathlib import Path
from balise.app.context import open_context
ctx = open_context(Path(sys.argv[1]), actor="agent")
with ctx.store.write():
    for i in range(int(sys.argv[2])):
        ctx.journal.append("purge.run", f"profile:p{i % 8 + 1}", {"total": 0, "returns": 0,
            "unknown": 0, "duplicates": 0, "deleted": 0, "stopped": None})
ctx.close()
"""

KIOSK = """
import asyncio, json, os, sys, time
from pathlib import Path

from balise.ui.app import BaliseApp
from balise.ui.backend import deferred_backend
from balise.ui.screens.home import HomeScreen

class NoDevices:  # no udev, no pcscd: the bench box has no reader
    def start(self, callback): pass
    def stop(self): pass
    def present(self): return []

opened = []

def build():  # as `balise kiosk` does: the box opens in the first worker, after the first paint
    from balise.app.context import open_context
    from balise.app.kiosk import build_backend
    opened.append(open_context(Path(os.environ["BALISE_HOME"]), actor="kiosk"))
    return build_backend(opened[0], env=os.environ, reader_watcher=NoDevices(),
                         card_watcher=NoDevices())

out = {}

async def until(pilot, condition):
    # asyncio.sleep, not pilot.pause: a pause forces a repaint at every poll, which would count
    # the painting of a full table many times over against an empty one
    while not condition():
        await asyncio.sleep(0.002)

def paint(app):
    app.screen._on_timer_update()  # the one repaint that shows what was just loaded

async def main():
    backend = deferred_backend(build)
    app = BaliseApp(backend)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, HomeScreen)
                    and str(app.screen.query_one("#lots").render()) != "")
        paint(app)
        out["home"] = time.time()
        for key, tables, end_table in (("l", ["#lots"], "#lots"),
                                       ("r", ["#returns", "#payments"], "#payments"),
                                       ("a", ["#alerts"], "#alerts")):
            started = time.perf_counter()
            await pilot.press(key)
            await until(pilot, lambda: not isinstance(app.screen, HomeScreen))
            found = [app.screen.query_one(t) for t in tables]
            await until(pilot, lambda: all(t.settled for t in found))
            paint(app)
            out[key + "_first"] = time.perf_counter() - started
            table = app.screen.query_one(end_table)
            if not table.has_focus:
                table.focus()
            await pilot.pause()  # idle, and what the focus or the first paint left drawn
            await asyncio.sleep(0.05)
            started = time.perf_counter()
            await pilot.press("end")
            await until(pilot, lambda: table.settled)
            paint(app)
            out[key + "_end"] = time.perf_counter() - started
            out[key + "_rows"] = table.total
            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, HomeScreen))
    backend.stop_watches()
    for ctx in opened:
        ctx.close()

asyncio.run(main())
print(json.dumps(out))
"""


def median(runs: Sequence[Run]) -> float:
    return statistics.median(r.seconds for r in runs)


def peak_mib(runs: Sequence[Run]) -> float:
    return max(r.peak_kib for r in runs) / 1024


@dataclass
class Row:
    figure: str
    balise: str
    peer: str
    ratio: str
    target: str
    verdict: str


def seconds(value: float) -> str:
    return f"{value:.2f} s" if value >= 0.1 else f"{value * 1000:.0f} ms"


def mib(value: float) -> str:
    return f"{value:.0f} MiB"


def verdict(ok: bool) -> str:
    return "OK" if ok else "ABOVE TARGET"


def time_row(figure: str, b: float, p: float, peer_words: str, limit: float) -> Row:
    ratio = b / p
    return Row(
        figure,
        seconds(b),
        f"{seconds(p)} ({peer_words})",
        f"{ratio:.2f}",
        f"≤ {limit:g}×",
        verdict(ratio <= limit),
    )


def memory_row(figure: str, b: float, p: float, limit: float, peer: str = "empty box") -> Row:
    return Row(
        figure,
        mib(b),
        f"{mib(p)} ({peer})",
        f"{b / p:.2f}",
        f"≤ {limit:g} MiB",
        verdict(b <= limit),
    )


def measure(ten: Path, empty: Path, runs: int, day_entries: int, backup_runs: int) -> list[Row]:
    rows: list[Row] = []
    ten_env, empty_env = box_env(ten), box_env(empty)
    py = sys.executable

    # The full check against a bare SHA-256 pass over the same rows (both as fresh processes).
    full, bare = [], []
    for _ in range(runs):
        bare.append(run([py, "-c", BARE_SHA, str(ten / "data" / "balise.db")], ten_env))
        full.append(run([BALISE, "journal", "verify", "--full"], ten_env))
    rows.append(
        time_row("journal verify --full", median(full), median(bare), "bare SHA-256 pass", 2)
    )
    rows.append(
        Row("journal verify --full, peak RSS", mib(peak_mib(full)), f"{mib(peak_mib(bare))} (bare pass)",
            f"{peak_mib(full) / peak_mib(bare):.2f}", "≤ 100 MiB", verdict(peak_mib(full) <= 100))
    )  # fmt: skip

    # The daily check: a day of activity appended after yesterday's check, then the default.
    daily, daily_empty = [], []
    for _ in range(runs):
        run([py, "-c", DAY_OF_ACTIVITY, str(ten / "data"), str(day_entries)], ten_env)
        daily.append(run([BALISE, "journal", "verify"], ten_env))
        run([py, "-c", DAY_OF_ACTIVITY, str(empty / "data"), str(day_entries)], empty_env)
        daily_empty.append(run([BALISE, "journal", "verify"], empty_env))
    assert "vérification incrémentale" in daily[-1].out, daily[-1].out
    rows.append(
        Row(f"daily check (journal verify, {day_entries} new entries)", seconds(median(daily)),
            f"{seconds(median(daily_empty))} (same on empty box)",
            f"{median(daily) / median(daily_empty):.2f}", "≤ 1 s", verdict(median(daily) <= 1.0))
    )  # fmt: skip

    commands = (
        # The agent's first cycle on the box (retention, checks, the exchange state file...).
        ("balise agent --once", ["agent", "--once"], (0, 1)),
        ("balise doctor", ["doctor"], (0, 1)),
        ("balise lots list --json", ["lots", "list", "--json"], (0,)),
        ("balise returns list --json", ["returns", "list", "--json"], (0,)),
        ("balise alerts list --all --json", ["alerts", "list", "--all", "--json"], (0,)),
    )
    for figure, args, ok in commands:
        on_ten, on_empty = [], []
        for _ in range(runs):
            on_empty.append(run([BALISE, *args], empty_env, ok=ok))
            on_ten.append(run([BALISE, *args], ten_env, ok=ok))
        rows.append(
            time_row(f"{figure}, time", median(on_ten), median(on_empty), "empty box", float("inf"))
        )
        rows[-1].target, rows[-1].verdict = "—", "info"
        rows.append(memory_row(f"{figure}, peak RSS", peak_mib(on_ten), peak_mib(on_empty), 150))

    # The kiosk: first screen from process start, then each screen's first paint and End.
    kiosk_ten: list[dict[str, float]] = []
    kiosk_empty: list[dict[str, float]] = []
    for _ in range(runs):
        for env, into in ((empty_env, kiosk_empty), (ten_env, kiosk_ten)):
            result = run([py, "-c", KIOSK], env)
            figures = json.loads(result.out.strip().splitlines()[-1])
            figures["first_screen"] = figures.pop("home") - result.spawned
            figures["peak"] = result.peak_kib / 1024
            into.append(figures)

    def med(data: list[dict[str, float]], key: str) -> float:
        return statistics.median(d[key] for d in data)

    rows.append(
        time_row(
            "kiosk first screen (Accueil with its figures)",
            med(kiosk_ten, "first_screen"),
            med(kiosk_empty, "first_screen"),
            "empty box",
            1.3,
        )
    )
    names = {"l": "Lots", "r": "Retours", "a": "Alertes"}
    for key, name in names.items():
        shown = int(kiosk_ten[-1][key + "_rows"])
        rows.append(
            time_row(
                f"{name}: first paint",
                med(kiosk_ten, key + "_first"),
                med(kiosk_empty, key + "_first"),
                "empty box",
                2,
            )
        )
        rows.append(
            time_row(
                f"{name}: End ({shown:,} rows)",
                med(kiosk_ten, key + "_end"),
                med(kiosk_empty, key + "_end"),
                "empty box",
                2,
            )
        )
    rows.append(
        memory_row(
            "kiosk, peak RSS",
            max(d["peak"] for d in kiosk_ten),
            max(d["peak"] for d in kiosk_empty),
            150,
        )
    )
    rows += cold_start_rows(runs)
    rows += backup_rows(ten, ten_env, backup_runs)
    rows += purge_rows(runs)
    return rows


def _bench_module(name: str) -> Any:
    """bench/<name>.py as a module (the purge and start-up benches measure their figures)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def best_median(b: Sequence[float], p: Sequence[float]) -> str:
    return f"{min(b) / min(p):.2f} best, {statistics.median(b) / statistics.median(p):.2f} median"


def ratio_row(figure: str, b: Sequence[float], p: Sequence[float], peer: str, limit: float) -> Row:
    """Best and median of each side; the verdict on the best (what a run costs when the shared
    machine leaves it alone), as bench/purge.py and bench/backup.py judge."""
    return Row(
        figure,
        f"{seconds(min(b))} best, {seconds(statistics.median(b))} median",
        f"{seconds(min(p))} best, {seconds(statistics.median(p))} median ({peer})",
        best_median(b, p),
        f"≤ {limit:g}×",
        verdict(min(b) / min(p) <= limit),
    )


def cold_start_rows(runs: int) -> list[Row]:
    """The kiosk's cold start (process start to first paint, empty box) against a bare Textual
    app, bench/startup.py's measure."""
    startup = _bench_module("startup")
    bare, kiosk = startup.measure(max(runs, 5))
    return [
        ratio_row(
            "kiosk cold start (bench/startup.py)",
            [t for t, _ in kiosk],
            [t for t, _ in bare],
            "bare Textual app",
            startup.TARGET,
        )
    ]


SET_RECOVERY = """
import sys
from pathlib import Path
from balise.app.context import open_context
ctx = open_context(Path(sys.argv[1]), actor="bench")
ctx.params.set("recovery_passphrase", "bench recovery passphrase, long enough")
ctx.close()
"""


def backup_rows(ten: Path, env: dict[str, str], runs: int) -> list[Row]:
    """`balise backup` of the ten-year box against `sqlite3 DB .dump | zstd -3` of the same
    database (bench/backup.py's peer), in the same run: size, time, peak memory."""
    if runs <= 0:
        return [Row("backup", "skipped (--backup-runs 0)", "—", "—", "—", "—")]
    missing = [tool for tool in ("sqlite3", "zstd") if shutil.which(tool) is None]
    if missing:
        return [Row("backup", f"not measured: needs {' and '.join(missing)}", "—", "—", "—", "—")]
    database = ten / "data" / "balise.db"
    run([sys.executable, "-c", SET_RECOVERY, str(ten / "data")], env)
    # Everything in the database file: the peer reads the file alone.
    run(["sqlite3", str(database), "PRAGMA wal_checkpoint(TRUNCATE);"], env)
    peer_times: list[float] = []
    peer_peak = 0
    peer_size = archive_size = 0
    made: list[Run] = []
    pipeline = 'sqlite3 "$1" .dump | zstd -3 -q -c > "$2"'
    for round_ in range(runs):
        dumped = ten / "peer.sql.zst"
        peer = run(["bash", "-o", "pipefail", "-c", pipeline, "peer", str(database), str(dumped)],
                   env)  # fmt: skip
        peer_times.append(peer.seconds)
        peer_peak = max(peer_peak, peer.peak_kib)
        peer_size = dumped.stat().st_size
        dumped.unlink()
        dest = ten / f"sauvegardes{round_}"
        made.append(run([BALISE, "backup", "--to", str(dest)], env))
        archive_size = sum(p.stat().st_size for p in dest.glob("*.sauvegarde"))
        shutil.rmtree(dest)
    times = [r.seconds for r in made]
    return [
        Row(
            "backup: archive size",
            f"{archive_size / 2**20:,.0f} MiB",
            f"{peer_size / 2**20:,.0f} MiB (sqlite3 .dump | zstd -3)",
            f"{archive_size / peer_size:.2f}",
            "≤ 1.2×",
            verdict(archive_size / peer_size <= 1.2),
        ),
        ratio_row("backup: time", times, peer_times, "sqlite3 .dump | zstd -3", 1.5),
        memory_row("balise backup, peak RSS", peak_mib(made), peer_peak / 1024, 150, "the peer"),
    ]


def purge_rows(runs: int) -> list[Row]:
    """bench/purge.py: 1,000 returns from a real Dovecot against the bare poplib loop (its own
    fresh boxes: the purge's cost does not depend on the box's age, its dedup read is one
    indexed query)."""
    purge = _bench_module("purge")
    figures = purge.main(1000, False, getmail=False, rounds=max(runs, 3))
    published = [a + b for a, b in zip(figures.balise, figures.publication, strict=True)]
    return [
        ratio_row("purge of 1,000 returns", figures.balise, figures.bare, "bare poplib RETR+DELE",
                  purge.PURGE_TARGET),
        ratio_row("purge of 1,000 returns + publication to retours/", published, figures.bare,
                  "bare poplib RETR+DELE", purge.PUBLISHED_TARGET),
        # The agent keeps its PurgeService, so its classifier process, from cycle to cycle.
        ratio_row("the agent's purge of 1,000 returns (classifier already running)",
                  figures.agent, figures.bare, "bare poplib RETR+DELE", purge.PURGE_TARGET),
        ratio_row("the agent's purge + publication to retours/",
                  [a + b for a, b in zip(figures.agent, figures.agent_publication, strict=True)],
                  figures.bare, "bare poplib RETR+DELE", purge.PUBLISHED_TARGET),
    ]  # fmt: skip


def print_table(rows: Sequence[Row]) -> None:
    head = Row("figure", "Balise", "peer", "ratio", "target", "verdict")
    widths = [max(len(getattr(r, f)) for r in (head, *rows)) for f in head.__dataclass_fields__]
    for r in (head, *rows):
        cells = [getattr(r, f) for f in head.__dataclass_fields__]
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=1.0, help="1 = ten years of 8 practitioners")
    parser.add_argument(
        "--runs", type=int, default=3, help="runs per figure (median time, max RSS)"
    )
    parser.add_argument("--rebuild", action="store_true", help="build the box again")
    parser.add_argument(
        "--backup-runs",
        type=int,
        default=1,
        help="backups of the ten-year box and of its peer (a minute or more each; 0: none)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "balise-bench",
    )
    options = parser.parse_args()
    os.umask(0o077)
    shape = Shape.at(options.scale)
    box, info = cached_box(options.cache, shape, options.rebuild)
    size = (box / "data" / "balise.db").stat().st_size
    print(f"\nten-year box, scale {shape.scale:g}: built {info['built'][:10]} in {info['build_seconds']} s; "
          f"database {size / 2**20:,.0f} MiB")  # fmt: skip
    print(
        f"  written     : {json.dumps(info['made'])}, journal {info['before_retention']['journal']:,}"
    )
    print(
        f"  after retention (three years kept, {info['retention_seconds']} s): "
        f"{json.dumps(info['after_retention'])}\n"
    )
    day_entries = max(1, shape.journal // YEARS_DAYS)
    with tempfile.TemporaryDirectory(prefix="balise-scale-") as tmp:
        ten = fresh_copy(box, Path(tmp) / "ten")
        empty = Path(tmp) / "empty"
        empty.mkdir()
        empty_box(empty)
        rows = measure(ten, empty, options.runs, day_entries, options.backup_runs)
    print_table(rows)


if __name__ == "__main__":
    main()
