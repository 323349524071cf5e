"""Years of a busy practice in seconds, for the backup tests and bench/backup.py.

A box filled through the real write paths (``fill_box``: lots in every state, a NOEMIE with its
payments, alerts, journal entries) is multiplied by bulk inserts that keep what makes a real
database big and hard to compress:

- lots, ACKNOWLEDGED, whose content is one of ``templates`` real lot files of ``invoices``
  invoices each (built by the domain's lot builder, so text of the profile's fixed records); the
  signature (the content, random signature bytes, a certificate repeated on every lot), the
  envelope (random bytes: encrypted) and the frozen lot mail (the envelope in base64 lines);
- per lot an ARL and, every other lot, a NOEMIE (encrypted raw mail and payload: random bytes),
  each with its deduplication row, and the NOEMIE's payments (one row per invoice);
- per lot seven journal entries, chained like the real ones (a restore verifies the chain).

Rows are copies of the real rows, varied where the schema wants unique values."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta

from balise.domain.journal import canonical_details, entry_hash
from balise.sim.lotbuild import build_lot, make_invoices
from tests.support.box import Box
from tests.support.clock import TEST_NOW, TEST_TODAY
from tests.support.lot_corpus import ADDRESSEE, EMITTER
from tests.support.sauvegarde_support import fill_box

# Lot dates: three lots a day, going back from yesterday.
LOTS_PER_DAY = 3
JOURNAL_PER_LOT = 7
_KINDS = (
    "lot.received",
    "lot.signed",
    "lot.sending",
    "lot.sent",
    "return.received",
    "lot.acknowledged",
    "returns.published",
)


@dataclass(frozen=True, slots=True)
class Years:
    """What was added on top of ``fill_box``."""

    lots: int
    returns: int
    payments: int
    journal: int


def _mail(envelope: bytes) -> bytes:
    """A lot mail as Balise freezes it: headers, then the envelope in base64 lines."""
    head = (
        "From: bal@balise.test\r\nTo: oct@rss.fr\r\nSubject: IRIS/1/A/01422000\r\n"
        "MIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n"
    )
    return head.encode() + base64.encodebytes(envelope).replace(b"\n", b"\r\n")


def busy_years(box: Box, *, lots: int, invoices: int = 30, templates: int = 48) -> Years:
    """``fill_box`` then ``lots`` more lots with their returns, payments and journal entries."""
    filled = fill_box(box)
    ctx = box.ctx
    conn = ctx.store.conn
    first_day = TEST_TODAY - timedelta(days=1 + lots // LOTS_PER_DAY)
    contents = [
        build_lot(
            EMITTER,
            ADDRESSEE,
            k + 1,
            first_day,
            make_invoices(invoices, seed=k, care_date=first_day),
            file_id=f"F{k:05d}",
        )
        for k in range(templates)
    ]
    certificate = os.urandom(1600)  # one certificate, repeated in every signature
    conn.create_function("b64mail", 1, _mail, deterministic=True)
    noemie = conn.execute(
        "SELECT id FROM returns WHERE kind = 'noemie' ORDER BY id LIMIT 1"
    ).fetchone()[0]
    with ctx.store.write():
        conn.execute("CREATE TEMP TABLE _tpl(k INTEGER PRIMARY KEY, content BLOB NOT NULL)")
        conn.executemany("INSERT INTO _tpl VALUES (?, ?)", enumerate(contents))
        first_lot = int(conn.execute("SELECT max(id) FROM lots").fetchone()[0]) + 1
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ? - 1) "
            "INSERT INTO lots(profile, emitter, lot_number, lot_date, addressee, organism, flow, "
            "application, invoices, total, sha256, size, state, received, source, "
            "state_changed, signer, signed_at, compostage, message_id, "
            "subject, sent_at, attempts, reasons) "
            "SELECT l.profile, l.emitter, printf('%03d', i % 1000), "
            "substr(strftime('%Y%m%d', ?, '+' || (i / ?) || ' days'), 3), l.addressee, "
            "l.organism, l.flow, l.application, ?, l.total + i, lower(hex(randomblob(32))), "
            "length(t.content), 'acknowledged', l.received, 'depot:' || i, "
            "l.state_changed, l.signer, l.signed_at, "
            "printf('%09d', i), '<an' || i || '@balise.test>', l.subject, l.sent_at, 1, '[]' "
            "FROM n JOIN lots l ON l.id = ? JOIN _tpl t ON t.k = i % ?",
            (
                lots,
                first_day.isoformat(),
                LOTS_PER_DAY,
                invoices,
                filled.sample_lot,
                templates,
            ),
        )
        # Each lot's bytes (lot_blobs): its template's content, a signed CMS of that content and
        # the certificate, an envelope of random bytes of a real one's size, the mail of it.
        conn.execute(
            "INSERT INTO lot_blobs(lot_id, kind, data) SELECT l.id, k.kind, CASE k.kind "
            "WHEN 'content' THEN t.content "
            "WHEN 'signed_cms' THEN x'3082' || t.content || randomblob(256) || ? "
            "ELSE randomblob(length(t.content) + 700) END "
            "FROM lots l JOIN _tpl t ON t.k = CAST(substr(l.source, 7) AS INTEGER) % ? "
            "JOIN (SELECT 'content' AS kind UNION ALL SELECT 'signed_cms' UNION ALL "
            "SELECT 'envelope') k WHERE l.id >= ? ORDER BY l.id, k.kind",
            (certificate, templates, first_lot),
        )
        conn.execute(
            "INSERT INTO lot_blobs(lot_id, kind, data) SELECT lot_id, 'mail', b64mail(data) "
            "FROM lot_blobs WHERE kind = 'envelope' AND lot_id >= ? ORDER BY lot_id",
            (first_lot,),
        )
        conn.execute("DROP TABLE _tpl")
        first_return = int(conn.execute("SELECT max(id) FROM returns").fetchone()[0]) + 1
        # An ARL for every lot, a NOEMIE for every other one: copies of the stored NOEMIE,
        # their encrypted mail and payload random bytes of a real one's size.
        conn.execute(
            "INSERT INTO returns(profile, uidl, sha256, kind, status, emitter, organism_type, "
            "organism_number, lot_number, lot_date, lot_id, positive, words_fr, words_en, "
            "detail, received, size, raw_enc, payload_enc, published) "
            "SELECT r.profile, 'u' || k.kind || l.id, lower(hex(randomblob(32))), k.kind, "
            "'applied', r.emitter, r.organism_type, r.organism_number, l.lot_number, "
            "l.lot_date, l.id, CASE k.kind WHEN 'arl' THEN 1 END, r.words_fr, r.words_en, "
            "r.detail, r.received, r.size + 200 * (k.kind = 'noemie'), "
            "randomblob(r.size + 600), randomblob(400 + 60 * l.invoices * (k.kind = 'noemie')), "
            "1 FROM lots l JOIN returns r ON r.id = ? "
            "JOIN (SELECT 'arl' AS kind UNION ALL SELECT 'noemie') k "
            "WHERE l.id >= ? AND (k.kind = 'arl' OR l.id % 2 = 0) ORDER BY l.id, k.kind",
            (noemie, first_lot),
        )
        conn.execute(
            "INSERT INTO mail_seen(profile, uidl, sha256, outcome, ref_id, processed, run_id) "
            "SELECT profile, uidl, sha256, 'return', id, received, 'run-' || (id / 50) "
            "FROM returns WHERE id >= ?",
            (first_return,),
        )
        template_payment = conn.execute(
            "SELECT id FROM payments WHERE return_id = ? ORDER BY id LIMIT 1", (noemie,)
        ).fetchone()[0]
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ? - 1) "
            "INSERT INTO payments(return_id, profile, emitter, lot_number, lot_date, lot_id, "
            "invoice_number, invoice_type, amo_asked, amo_state, amo_paid, amc_asked, amc_state, "
            "amc_paid, reasons, accounting_date, transfer_reference) "
            "SELECT r.id, p.profile, p.emitter, r.lot_number, r.lot_date, r.lot_id, "
            "100000 + i, p.invoice_type, p.amo_asked + i, p.amo_state, p.amo_paid + i, "
            "p.amc_asked, p.amc_state, p.amc_paid, p.reasons, p.accounting_date, "
            "'VIR ' || printf('%06d', r.id) "
            "FROM returns r JOIN n JOIN payments p ON p.id = ? "
            "WHERE r.id >= ? AND r.kind = 'noemie'",
            (invoices, template_payment, first_return),
        )
        head = ctx.journal.head()
        assert head is not None
        seq, prev = head.seq, head.hash
        rows = []
        start = TEST_NOW - timedelta(days=1 + lots // LOTS_PER_DAY)
        for lot_id in range(first_lot, first_lot + lots):
            day = start + timedelta(hours=8 * (lot_id - first_lot))
            for step, kind in enumerate(_KINDS):
                seq += 1
                when = (day + timedelta(minutes=step)).isoformat(timespec="microseconds")
                details = canonical_details(
                    {
                        "lot": lot_id,
                        "sha256": os.urandom(32).hex(),
                        "step": step,
                        "profile": "p1",
                    }
                )
                subject = f"lot:{lot_id}"
                digest = entry_hash(prev, seq, when, kind, "agent", subject, details)
                rows.append((seq, when, kind, "agent", subject, details, prev, digest))
                prev = digest
        conn.executemany(
            "INSERT INTO journal(seq, time, kind, actor, subject, details, prev_hash, hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        n_returns, n_payments = conn.execute(
            "SELECT (SELECT count(*) FROM returns WHERE id >= ?), "
            "(SELECT count(*) FROM payments WHERE return_id >= ?)",
            (first_return, first_return),
        ).fetchone()
    return Years(lots, int(n_returns), int(n_payments), len(rows))


_MEASURE = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:])\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "print(f'peak-rss-kib {peak}', file=sys.stderr)\n"
    "sys.exit(done.returncode)\n"
)


def run_measured(
    argv: list[str], env: dict[str, str], stdin: str = "", timeout: float = 300
) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run ``argv`` as the only child of a small parent that reports the child's peak resident
    memory; returns the completed process (its last stderr line removed) and that peak in
    bytes."""
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, *argv],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    rest, _, last = done.stderr.rstrip("\n").rpartition("\n")
    assert last.startswith("peak-rss-kib "), done.stderr
    done.stderr = rest
    return done, int(last.split()[1]) * 1024
