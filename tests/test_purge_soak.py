"""Issue 12, the mail part, done: a BAL of 2,000 messages mixing genuine returns for lots the box
sent with every hostile class known (huge headers over a big body, quadratic Content-Type,
tens of thousands of parameters, lone-dot lines, and the whole hostile corpus: spam, phishing,
bad base64, gzip bomb, deep MIME, part floods, oversize...) is drained by at most two runs of the
real `balise purge --once`, against the real Dovecot and the real classifier worker: every
genuine return applied, every hostile message quarantined with its reason, in bounded memory
(peak RSS of the purge and its worker) and within a generous safety timeout."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from balise.domain.lotstate import LotState
from balise.sim.dovecot import DovecotServer
from tests.support.balise_env import BALISE
from tests.support.box import Box
from tests.support.mail_corpus import hostile_corpus
from tests.support.mail_fixtures import TlsCA
from tests.support.poison_mail import (
    arl_mail,
    dot_lines_mail,
    huge_headers_mail,
    many_parameters_mail,
    noemie_mail,
    quadratic_content_type_mail,
)
from tests.support.purge_support import configure_pop3, fresh_lot

pytestmark = pytest.mark.mail

TOTAL = 2000
LOTS = 120  # lots sent, each gets its ARL (every tenth negative)
PAID = 60  # lots 1..PAID also get a NOEMIE payment
HEAVY_COPIES = 8  # copies of each costly hostile mail (the light ones fill the rest)
RUNS_AT_MOST = 2
RUN_TIMEOUT_S = 240.0  # a safety timeout per run, not a speed target
PEAK_RSS_BOUND = 400 * 1024 * 1024

# Runs the CLI and reports the peak RSS of it and of every process it waited for (its worker).
MEASURE = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[2:])\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "open(sys.argv[1], 'w').write(str(peak * 1024))\n"
    "raise SystemExit(done.returncode)\n"
)


def _mailbox() -> tuple[list[bytes], Counter[str]]:
    """The 2,000 messages, and the quarantine reasons the hostile ones must get."""
    genuine = [arl_mail(n, positive=n % 10 != 0) for n in range(1, LOTS + 1)]
    genuine += [noemie_mail(n) for n in range(1, PAID + 1)]
    heavy: list[tuple[bytes, str]] = []
    for i in range(HEAVY_COPIES):
        tag = f"-{i}"
        heavy += [
            (huge_headers_mail(tag=tag), "HEADERS_TOO_LARGE"),
            (quadratic_content_type_mail(tag=tag), "HEADER_TOO_COMPLEX"),
            (many_parameters_mail(tag=tag), "HEADER_TOO_COMPLEX"),
            (dot_lines_mail(tag=tag), "SENDER_NOT_ALLOWED"),
        ]
    corpus = hostile_corpus(test_mode=True)
    costly = {"oversize", "gzip_bomb", "deep_mime_3000", "part_flood"}
    heavy += [(m.raw, m.reason.value) for m in corpus if m.name in costly] * HEAVY_COPIES
    light = [(m.raw, m.reason.value) for m in corpus if m.name not in costly]
    hostile = list(heavy)
    while len(genuine) + len(hostile) < TOTAL:
        hostile.append(light[len(hostile) % len(light)])
    # Interleaved: genuine returns sit behind hostile mail all along the mailbox.
    mails: list[bytes] = []
    step = len(hostile) // len(genuine)
    for i, raw in enumerate(genuine):
        mails += [h for h, _ in hostile[i * step : (i + 1) * step]]
        mails.append(raw)
    mails += [h for h, _ in hostile[len(genuine) * step :]]
    assert len(mails) == TOTAL
    return mails, Counter(reason for _, reason in hostile)


def test_a_hostile_mailbox_of_2000_messages_drains_in_two_cli_runs_in_bounded_memory(
    box: Box, mailboxes: DovecotServer, tls_ca: TlsCA, tmp_path: Path
) -> None:
    ctx = box.ctx
    configure_pop3(ctx, mailboxes, tls_ca)
    lots = {n: fresh_lot(ctx, n) for n in range(1, LOTS + 1)}
    mails, reasons = _mailbox()
    for raw in mails:
        mailboxes.deliver("bal1", raw)

    runs: list[tuple[int, float, int]] = []  # (exit code, seconds, peak RSS bytes)
    while mailboxes.maildir_count("bal1") and len(runs) < RUNS_AT_MOST:
        peak_file = tmp_path / f"peak-{len(runs)}"
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-c", MEASURE, str(peak_file), BALISE, "purge", "--once"],
            env=box.env.env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )
        took = time.monotonic() - started
        assert done.returncode in (0, 1), done.stdout[-2000:] + done.stderr[-2000:]
        assert "Traceback" not in done.stderr
        runs.append((done.returncode, took, int(peak_file.read_text())))
    print(f"\nsoak: {[(code, round(s, 1), peak // 2**20) for code, s, peak in runs]}")

    assert mailboxes.maildir_count("bal1") == 0, runs
    assert max(peak for _, _, peak in runs) < PEAK_RSS_BOUND, runs
    # Every genuine return applied, once.
    states = {n: ctx.lots.get(i).state for n, i in lots.items()}  # type: ignore[union-attr]
    assert states == {n: LotState.REJECTED if n % 10 == 0 else LotState.ACKNOWLEDGED for n in lots}
    returns = ctx.tracking().returns()
    assert Counter((r.kind, r.status) for r in returns) == {
        ("arl", "applied"): LOTS,
        ("noemie", "applied"): PAID,
    }
    assert len(ctx.tracking().payments()) == 3 * PAID
    # Every hostile message quarantined with its own reason, listed in a grouped alert.
    quarantine = ctx.returns_store.mail_quarantine()
    assert Counter(q.reason_code for q in quarantine) == reasons
    seen = ctx.store.conn.execute(
        "SELECT count(*), count(DISTINCT uidl) FROM mail_seen WHERE profile = 'p1'"
    ).fetchone()
    assert tuple(seen) == (TOTAL, TOTAL)
    alerts = ctx.tracking().alerts()
    assert {a.kind for a in alerts} == {"mail_unknown"}
    listed = [
        m
        for a in alerts
        for m in a.details["messages"]  # type: ignore[union-attr]
    ]
    assert len(listed) == len(quarantine)
    assert box.env.run("journal", "verify").returncode == 0
    ack = [e for e in ctx.journal.entries() if e.kind == "lot.state"]
    assert sum(json.loads(e.details).get("to") in ("acknowledged", "rejected") for e in ack) == LOTS
