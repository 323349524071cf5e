"""The purge killed with SIGKILL at 50 random moments (seeded), each followed by a clean rerun:
every message of the mailbox processed exactly once, nothing lost, every lot moved once."""

from __future__ import annotations

import contextlib
import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from balise.adapters.classifier_worker import WorkerClassifier
from balise.adapters.kek import create_key_file
from balise.app.context import Context, open_context
from balise.domain.lotstate import LotState
from balise.domain.returns import InvoicePayment, NoemieLot, PaymentState, Reason, Share
from balise.sim.dovecot import DovecotServer
from balise.sim.pki import TestPKI
from balise.sim.returnfile import build_arl, build_noemie
from balise.sim.returnmail import phishing_mail, return_mail, spam_mail
from tests.support.box import SyncedClock, configure_box
from tests.support.clock import TEST_TODAY
from tests.support.mail_corpus import EMITTER, ORGANISM_NUMBER
from tests.support.mail_fixtures import TlsCA
from tests.support.purge_support import configure_pop3, fresh_lot

pytestmark = [pytest.mark.mail, pytest.mark.slow]

ROUNDS = 50
SEED = 20261123
SENT_LOTS = 8  # lots 1..8 SENT; lot 8 gets a negative ARL
NOEMIE_LOTS = 4  # payments for lots 1..4
UNMATCHED = (101, 102, 103, 104, 105)  # ARLs for lots this box never sent
UNKNOWN = 3
TOTAL = SENT_LOTS + NOEMIE_LOTS + len(UNMATCHED) + UNKNOWN  # 20 messages per round
TEST_BUDGET_S = 110.0

# A fork server: it imports Balise once, then for each round forks a child that becomes its own
# process group (the purge and its classifier worker) and runs the purge as the agent does, so
# that the kill takes both down like a power cut. Saves an interpreter start per round.
SERVER = """\
import os, sys, time
from pathlib import Path
from balise.app.context import open_context
import balise.adapters.classifier_worker, balise.services.purge
for line in sys.stdin:
    home, kek = line.rstrip("\\n").split("\\t")
    pid = os.fork()
    if pid == 0:
        os.setsid()
        env = {"BALISE_HOME": home, "BALISE_KEK_FILE": kek}
        code = 1
        try:
            ctx = open_context(Path(home), actor="test", env=env)
            purge = ctx.purge(env=env)
            print("go", flush=True)
            t0 = time.monotonic()
            marks = open(os.path.join(home, "progress-times"), "a", buffering=1)
            try:
                purge.run_once("p1", lambda p: marks.write(f"{time.monotonic() - t0:.6f}\\n"))
                code = 0
            finally:
                purge.close()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    print("exit", os.waitstatus_to_exitcode(status), pid, flush=True)
"""


def _mails() -> list[bytes]:
    lot_date = TEST_TODAY - timedelta(days=1)
    mails: list[bytes] = []
    for number in range(1, SENT_LOTS + 1):
        positive = number != SENT_LOTS
        reasons = () if positive else (Reason("SIGN-INV", "LOT INVERIFIABLE"),)
        payload = build_arl(
            "CP", ORGANISM_NUMBER, EMITTER, number, lot_date, positive, 3, TEST_TODAY,
            reasons, file_id=f"A{number:05d}", flow_type="T",
        )  # fmt: skip
        mails.append(return_mail(payload, message_id=f"<arl{number}@422.01.rss.fr>"))
    for number in range(1, NOEMIE_LOTS + 1):
        invoices = tuple(
            InvoicePayment(invoice, number, lot_date, "F", Share(2000, PaymentState.PAID, 2000))
            for invoice in (100000, 100001, 100002)
        )
        payload = build_noemie(
            "CP", ORGANISM_NUMBER, EMITTER, TEST_TODAY, (NoemieLot(number, lot_date, invoices),),
            file_id=f"N{number:05d}", flow_type="T",
        )  # fmt: skip
        mails.append(
            return_mail(payload, "IRISTEST/NOEMIE/Z", message_id=f"<noe{number}@422.01.rss.fr>")
        )
    for number in UNMATCHED:
        payload = build_arl(
            "CP", ORGANISM_NUMBER, EMITTER, number, lot_date, True, 3, TEST_TODAY,
            file_id=f"U{number:05d}", flow_type="T",
        )  # fmt: skip
        mails.append(return_mail(payload, message_id=f"<unm{number}@422.01.rss.fr>"))
    mails += [spam_mail(), phishing_mail(), spam_mail().replace(b"Subject:", b"Subject: Re:", 1)]
    assert len(mails) == TOTAL
    return mails


def _empty(server: DovecotServer) -> None:
    maildir = server.maildir("bal1")
    for sub in ("new", "cur"):
        for entry in (maildir / sub).iterdir():
            entry.unlink()


class ForkServer:
    """The running fork server (stdin: one "home<TAB>kek" line per round)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={k: v for k, v in os.environ.items() if not k.startswith("BALISE_")},
        )
        assert self.proc.stdout is not None
        self._fd = self.proc.stdout.fileno()
        self._buffer = b""

    def _line(self, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._fd], [], [], left)[0]:
                return None
            chunk = os.read(self._fd, 4096)
            assert chunk, "fork server stopped"
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def purge(self, home: Path, kek: Path, delay: float | None) -> tuple[int, float]:
        """One purge of ``home``, SIGKILLed (with its worker) ``delay`` s after it started (None:
        let it finish). Returns (exit status, seconds from the start to the end)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{home}\t{kek}\n".encode())
        self.proc.stdin.flush()
        assert self._line(30) == b"go"
        started = time.monotonic()
        line = self._line(delay) if delay is not None else self._line(60)
        if line is None:
            # Still running: the child is the leader of its own group, only it and its worker.
            child = self._child_pid()
            if child is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child, signal.SIGKILL)
            line = self._line(60)
        took = time.monotonic() - started
        assert line is not None and line.startswith(b"exit "), line
        return int(line.split()[1]), took

    def _child_pid(self) -> int | None:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        pids = [int(p) for p in children.split()]
        return pids[0] if pids else None

    def stop(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class SharedWorker(WorkerClassifier):
    """One classifier worker for every rerun of the test (a purge's close() leaves it running):
    saves an interpreter start per round; the killed purges start their own."""

    def close(self) -> None:
        pass

    def stop(self) -> None:
        super().close()


@pytest.fixture
def shared_worker() -> Iterator[SharedWorker]:
    worker = SharedWorker()
    try:
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def fork_server() -> Iterator[ForkServer]:
    server = ForkServer()
    try:
        yield server
    finally:
        server.stop()


def _template(root: Path, pki: TestPKI, server: DovecotServer, tls_ca: TlsCA) -> dict[int, int]:
    """A configured box with lots 1..SENT_LOTS made SENT, closed (checkpointed) for copying."""
    root.mkdir()
    create_key_file(root / "balise.kek")
    env = {"BALISE_HOME": str(root / "data"), "BALISE_KEK_FILE": str(root / "balise.kek")}
    ctx = open_context(root / "data", actor="test", env=env, clock=SyncedClock())
    try:
        configure_box(ctx, pki)
        configure_pop3(ctx, server, tls_ca)
        lots = {n: fresh_lot(ctx, n) for n in range(1, SENT_LOTS + 1)}
        ctx.store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        ctx.close()
    return lots


def _committed(ctx: Context) -> int:
    row = ctx.store.conn.execute("SELECT count(*) FROM mail_seen WHERE profile = 'p1'").fetchone()
    return int(row[0])


def _check_exactly_once(ctx: Context, env: dict[str, str], lots: dict[int, int]) -> None:
    conn = ctx.store.conn
    seen = conn.execute(
        "SELECT count(*), count(DISTINCT uidl), count(DISTINCT sha256) FROM mail_seen "
        "WHERE profile = 'p1'"
    ).fetchone()
    assert tuple(seen) == (TOTAL, TOTAL, TOTAL)  # one outcome per message
    tracking = ctx.tracking(env)
    returns = tracking.returns()
    quarantine = ctx.returns_store.mail_quarantine()
    # none lost: every delivered message is a stored return or quarantined metadata
    assert len(returns) + len(quarantine) == TOTAL
    assert len({r.uidl for r in returns} | {q.uidl for q in quarantine}) == TOTAL
    assert Counter((r.kind, r.status) for r in returns) == {
        ("arl", "applied"): SENT_LOTS,
        ("noemie", "applied"): NOEMIE_LOTS,
        ("arl", "unmatched"): len(UNMATCHED),
    }
    assert len(quarantine) == UNKNOWN
    assert len(tracking.payments()) == 3 * NOEMIE_LOTS  # payments applied once
    states = {n: ctx.lots.get(i).state for n, i in lots.items()}  # type: ignore[union-attr]
    assert states == {
        n: LotState.REJECTED if n == SENT_LOTS else LotState.ACKNOWLEDGED for n in lots
    }
    moves = Counter(
        (e.subject, json.loads(e.details).get("to"))
        for e in ctx.journal.entries()
        if e.kind == "lot.state" and json.loads(e.details).get("to") in ("acknowledged", "rejected")
    )
    assert sorted(moves.values()) == [1] * SENT_LOTS  # each lot transitioned exactly once
    alerts = tracking.alerts()
    assert {a.kind for a in alerts} == {"mail_unknown"}  # no conflict, no inconsistency
    listed = [
        str(m["uidl"])
        for a in alerts
        for m in a.details["messages"]  # type: ignore[union-attr]
        if isinstance(m, dict)
    ]
    assert sorted(listed) == sorted(q.uidl for q in quarantine)  # each unknown alerted once


def _settled_count(server: DovecotServer) -> int:
    """The mailbox's count once the killed client's session is over. Dovecot may still be
    answering RETRs it was sent (the purge asks for the next window ahead), marking each message
    seen by renaming its file in cur/, which a listing taken meanwhile can miss; or deleting
    after a QUIT it got. Read until two readings 50 ms apart agree on all or none (at most 5 s:
    a mailbox that stays in between is what the caller's assertion catches)."""
    deadline = time.monotonic() + 5
    count = server.maildir_count("bal1")
    while time.monotonic() < deadline:
        time.sleep(0.05)
        again = server.maildir_count("bal1")
        if again == count and count in (0, TOTAL):
            break
        count = again
    return count


def test_sigkill_at_random_moments_then_rerun_processes_each_message_once(
    tmp_path: Path,
    pki: TestPKI,
    pop3_server: DovecotServer,
    tls_ca: TlsCA,
    fork_server: ForkServer,
    shared_worker: SharedWorker,
) -> None:
    started = time.monotonic()
    rng = random.Random(SEED)
    mails = _mails()
    template = tmp_path / "template"
    lots = _template(template, pki, pop3_server, tls_ca)
    kek = template / "balise.kek"
    span = 0.0  # how long an uninterrupted purge takes here, measured in round 0
    # When its messages were committed and deleted (the progress callback, seen from the child):
    # most of a fast run is its start (TLS, login, listing, the worker's start), so half the kill
    # moments are drawn over that stretch, where kills fall between commit groups.
    loop = (0.0, 0.0)
    killed_mid_run: list[int] = []  # committed outcomes found after each effective kill
    for round_no in range(ROUNDS + 1):
        assert time.monotonic() - started < TEST_BUDGET_S, f"too slow at round {round_no}"
        _empty(pop3_server)
        for raw in mails:
            pop3_server.deliver("bal1", raw)
        home = tmp_path / f"r{round_no}"
        shutil.copytree(template / "data", home)
        env = {"BALISE_HOME": str(home), "BALISE_KEK_FILE": str(kek)}
        # Round 0 calibrates: the kill moments are then drawn over the whole run and a bit past
        # it (the end of the run, QUIT and the journal entry are crash points too).
        if round_no == 0:
            delay = None
        elif round_no % 2:
            delay = rng.uniform(0.0, span * 1.1)
        else:
            delay = rng.uniform(loop[0] * 0.9, loop[1] * 1.05)
        status, took = fork_server.purge(home, kek, delay)
        ctx = open_context(home, actor="test", env=env, clock=SyncedClock())
        try:
            if status == 0:
                marks = [float(t) for t in (home / "progress-times").read_text().split()]
                assert len(marks) == TOTAL, marks
                loop = (marks[0], marks[-1]) if round_no == 0 else min(loop, (marks[0], marks[-1]))
            if round_no == 0:
                assert status == 0
                span = took
            elif status == -signal.SIGKILL:
                killed_mid_run.append(_committed(ctx))
            else:
                assert status == 0, status
                # A run the kill came too late for is a whole run too: the moments follow the
                # shortest (the first one also starts Dovecot's login and auth processes, and
                # took twice as long as the others once the purge got faster).
                span = min(span, took)
            left = (
                _settled_count(pop3_server)
                if status == -signal.SIGKILL
                else pop3_server.maildir_count("bal1")
            )
            if status == -signal.SIGKILL:
                assert left in (0, TOTAL)  # no QUIT, nothing deleted (or all, after QUIT)
            purge = ctx.purge(env=env, classifier=shared_worker)
            try:
                report = purge.run_once("p1")
            finally:
                purge.close()
            assert report.stopped is None
            assert report.total == left and report.deleted == left
            assert pop3_server.maildir_count("bal1") == 0
            _check_exactly_once(ctx, env, lots)
        finally:
            ctx.close()
        shutil.rmtree(home)
    # The random moments did land inside the loop: before any commit, between commits, after.
    assert len(killed_mid_run) >= ROUNDS // 2, killed_mid_run
    assert len(set(killed_mid_run)) >= 3, killed_mid_run
    assert any(0 < c < TOTAL for c in killed_mid_run), killed_mid_run
