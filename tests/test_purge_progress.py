"""Issue 12, the mail part: no message stops the purge for good. Against the real Dovecot and the
real classifier worker: a message that cannot be fetched or classified within its bounds is
quarantined as unknown (the hash of what was read), deleted and listed in the run's one alert;
the messages behind it are processed in the same run; the worker's restart budget is per run, in
the CLI and in the agent's long-lived purge alike."""

from __future__ import annotations

import os
import poplib
from collections.abc import Sequence

import pytest

from balise.adapters.classifier_worker import WorkerClassifier
from balise.adapters.pop3 import Pop3Session
from balise.app.agent import Agent
from balise.domain.classify import ClassifyPolicy
from balise.domain.lotstate import LotState
from balise.services.purge import HEADER_LIMIT, PurgeReport
from balise.sim.dovecot import DovecotServer
from balise.sim.returnmail import spam_mail
from tests.support.box import Box
from tests.support.mail_fixtures import TlsCA
from tests.support.poison_mail import (
    arl_mail,
    dot_lines_mail,
    huge_headers_mail,
    many_parameters_mail,
    quadratic_content_type_mail,
)
from tests.support.purge_support import MAILBOXES, configure_pop3, fresh_lot

pytestmark = pytest.mark.mail


def _reasons(box: Box) -> list[str]:
    return sorted(r.reason_code for r in box.ctx.returns_store.mail_quarantine())


def _state(box: Box, lot_id: int) -> LotState:
    lot = box.ctx.lots.get(lot_id)
    assert lot is not None
    return lot.state


def _deliver_in_order(server: DovecotServer, mails: Sequence[bytes]) -> None:
    """Deliver ``mails`` so that Dovecot numbers them in this order: each one is seen by a POP3
    session (STAT) before the next arrives (Dovecot numbers new files by name otherwise)."""
    for raw in mails:
        server.deliver("bal1", raw)
        client = poplib.POP3("127.0.0.1", server.pop3_port, timeout=10)
        try:
            client.user("bal1")
            client.pass_(MAILBOXES["bal1"])
            client.stat()
            client.quit()
        finally:
            client.close()


def test_huge_header_block_over_the_cap_is_quarantined_and_the_messages_around_it_go(
    box: Box, mailboxes: DovecotServer, tls_ca: TlsCA
) -> None:
    # Point 1 of issue 12, as reproduced: more than 256 KiB of headers then a body over 2 MiB.
    # Its TOP n 0 answer is larger than the purge reads of a header block: before, the run
    # dropped the connection without QUIT (not even the committed ARL before it was deleted)
    # and every later run stopped on the same message.
    ctx = box.ctx
    configure_pop3(ctx, mailboxes, tls_ca)
    lots = {n: fresh_lot(ctx, n) for n in (7, 8)}
    poison = huge_headers_mail()
    assert poison.index(b"\r\n\r\n") > HEADER_LIMIT
    _deliver_in_order(mailboxes, [arl_mail(7), poison, arl_mail(8)])
    purge = ctx.purge(env=box.env.env)
    try:
        report = purge.run_once("p1")
        again = purge.run_once("p1")
    finally:
        purge.close()
    assert (report.total, report.returns, report.unknown, report.deleted) == (3, 2, 1, 3)
    assert report.stopped is None
    assert mailboxes.maildir_count("bal1") == 0
    assert (again.total, again.deleted) == (0, 0)
    assert {n: _state(box, i) for n, i in lots.items()} == {
        7: LotState.ACKNOWLEDGED,
        8: LotState.ACKNOWLEDGED,
    }
    # Quarantined under the hash of what was read (the first HEADER_LIMIT bytes of its headers),
    # listed in the run's one alert in words.
    [record] = ctx.returns_store.mail_quarantine()
    assert (record.reason_code, record.digest_scope, record.size) == (
        "HEADERS_TOO_LARGE",
        "headers",
        len(poison),
    )
    [alert] = ctx.tracking().alerts()
    assert alert.kind == "mail_unknown" and "en-têtes trop volumineux" in alert.fr
    assert ctx.returns_store.quarantine_meta(record.id)["subject"] == "HUGE-HEADERS"


def test_dot_stuffed_message_under_the_cap_is_read_whole(
    box: Box, mailboxes: DovecotServer, tls_ca: TlsCA
) -> None:
    # Under the cap, but every line a lone dot: POP3 dot-stuffing makes the RETR answer a third
    # larger than LIST's size. Before, that answer ran past its byte budget and the run died.
    ctx = box.ctx
    configure_pop3(ctx, mailboxes, tls_ca)
    lot = fresh_lot(ctx, 7)
    dots = dot_lines_mail()
    assert len(dots) < 2 * 1024 * 1024
    _deliver_in_order(mailboxes, [dots, arl_mail(7)])
    purge = ctx.purge(env=box.env.env)
    try:
        report = purge.run_once("p1")
    finally:
        purge.close()
    assert (report.total, report.returns, report.unknown, report.deleted) == (2, 1, 1, 2)
    assert mailboxes.maildir_count("bal1") == 0
    assert _state(box, lot) is LotState.ACKNOWLEDGED
    # Read whole and classified by the worker: the reason is about its content.
    assert _reasons(box) == ["SENDER_NOT_ALLOWED"]
    [record] = ctx.returns_store.mail_quarantine()
    assert record.digest_scope == "message" and record.size == len(dots)


def test_a_message_the_server_cannot_serve_is_quarantined_and_the_rest_goes(
    box: Box, mailboxes: DovecotServer, tls_ca: TlsCA, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Dovecot answers "-ERR Message n expunged." for a message it can no longer read (here made
    # unreadable after the listing, as a disk error on the server would); before, the run
    # stopped there. The messages are over 512 KiB so the purge fetches them one at a time.
    ctx = box.ctx
    configure_pop3(ctx, mailboxes, tls_ca)
    lot = fresh_lot(ctx, 7)
    filler = b"\r\n" + b"x" * 600_000 + b"\r\n"
    first = spam_mail() + filler
    target = spam_mail().replace(b"Subject:", b"Subject: ILLISIBLE", 1) + filler
    _deliver_in_order(mailboxes, [first, target, arl_mail(7)])
    maildir = mailboxes.maildir("bal1")

    def spoil() -> None:
        for sub in ("new", "cur"):
            for entry in (maildir / sub).iterdir():
                if b"ILLISIBLE" in entry.read_bytes():
                    os.chmod(entry, 0)

    listing = Pop3Session.sizes

    def listed_then_spoiled(session: Pop3Session) -> dict[int, int]:
        # Right after the listing, before any message is asked for (the purge asks for the
        # next window while it handles the current one).
        sizes = listing(session)
        spoil()
        return sizes

    monkeypatch.setattr(Pop3Session, "sizes", listed_then_spoiled)
    purge = ctx.purge(env=box.env.env)
    try:
        report = purge.run_once("p1")
    finally:
        purge.close()
    assert (report.total, report.returns, report.unknown, report.deleted) == (3, 1, 2, 3)
    assert report.stopped is None
    assert mailboxes.maildir_count("bal1") == 0
    assert _state(box, lot) is LotState.ACKNOWLEDGED
    assert _reasons(box) == ["NOT_SERVED", "SENDER_NOT_ALLOWED"]
    [alert] = ctx.tracking().alerts()
    assert "le serveur n'a pas fourni le message" in alert.fr


def test_quadratic_content_type_costs_nothing_and_exhausts_no_worker(
    box: Box, mailboxes: DovecotServer, tls_ca: TlsCA
) -> None:
    # Point 2 of issue 12: a spoofed Content-Type whose parameters cost the standard parser
    # quadratic time. Before, each one burnt the worker's CPU limit and restart budget; the
    # budget was never renewed, so with one purge kept for its life (as the agent does) every
    # later run stopped on such a mail and the ARLs behind it were never applied.
    ctx = box.ctx
    configure_pop3(ctx, mailboxes, tls_ca)
    lots = {n: fresh_lot(ctx, n) for n in (7, 8)}
    # The real worker with a 1 s CPU limit: a 10 s one makes the same point ten times slower.
    worker = WorkerClassifier(cpu_seconds=1, max_restarts=1)
    purge = ctx.purge(env=box.env.env, classifier=worker)
    reports: list[PurgeReport] = []
    try:
        for number, tags in ((7, ("a", "b", "c")), (8, ("d", "e"))):
            for tag in tags:
                mailboxes.deliver("bal1", quadratic_content_type_mail(60_000, tag=tag))
            mailboxes.deliver("bal1", many_parameters_mail(tag=tag))
            mailboxes.deliver("bal1", arl_mail(number))
            reports.append(purge.run_once("p1"))
            assert mailboxes.maildir_count("bal1") == 0
    finally:
        purge.close()
    assert [(r.returns, r.unknown, r.stopped) for r in reports] == [(1, 4, None), (1, 3, None)]
    assert {n: _state(box, i) for n, i in lots.items()} == {
        7: LotState.ACKNOWLEDGED,
        8: LotState.ACKNOWLEDGED,
    }
    assert _reasons(box) == ["HEADER_TOO_COMPLEX"] * 7
    assert worker.restarts == 0


SLOW = b"X-Test-Lent: oui"


class SlowOnMarker(WorkerClassifier):
    """The real worker, its wall clock at 1 s and 2 restarts per run, told through its own test
    hook to sleep on the messages that carry SLOW. Every hostile mail known is now refused
    cheaply: the hook stands for the next one found that outlasts its bounds (a mock of what the
    real part cannot do on purpose)."""

    def __init__(self) -> None:
        super().__init__(wall_seconds=1.0, max_restarts=2)

    def submit(self, raw: bytes, policy: ClassifyPolicy) -> None:
        self._test_op = "sleep" if SLOW in raw else None
        super().submit(raw, policy)


def _slow(tag: str) -> bytes:
    return spam_mail().replace(b"Subject:", SLOW + b"\r\nSubject: " + tag.encode(), 1)


def test_restart_budget_is_renewed_at_each_run_and_spent_only_on_what_outlasts_it(
    box: Box, mailboxes: DovecotServer, tls_ca: TlsCA
) -> None:
    # One purge kept for several runs, as the agent keeps it. Each run may restart the worker
    # twice; before, the count ran over the purge's whole life, and the third slow message of
    # its life stopped every later run before the ARLs behind it.
    ctx = box.ctx
    configure_pop3(ctx, mailboxes, tls_ca)
    lots = {n: fresh_lot(ctx, n) for n in (7, 8, 9)}
    purge = ctx.purge(env=box.env.env, classifier=SlowOnMarker())
    reports: list[PurgeReport] = []
    try:
        for number, tags in ((7, "ab"), (8, "c"), (9, "def")):
            _deliver_in_order(mailboxes, [*(_slow(t) for t in tags), arl_mail(number)])
            reports.append(purge.run_once("p1"))
        # The third run met a third slow message: budget spent, that message quarantined (it
        # holds nothing back), the run ends there cleanly; the next run takes the ARL.
        reports.append(purge.run_once("p1"))
    finally:
        purge.close()
    assert [(r.returns, r.unknown, r.deleted) for r in reports] == [
        (1, 2, 3),
        (1, 1, 2),
        (0, 3, 3),
        (1, 0, 1),
    ]
    assert [r.stopped is None for r in reports] == [True, True, False, True]
    assert mailboxes.maildir_count("bal1") == 0
    assert {n: _state(box, i) for n, i in lots.items()} == dict.fromkeys(
        lots, LotState.ACKNOWLEDGED
    )
    assert _reasons(box) == ["ANALYSIS_TIMEOUT"] * 6


def test_the_agent_renews_the_restart_budget_of_its_long_lived_purge(
    box: Box, mailboxes: DovecotServer, tls_ca: TlsCA
) -> None:
    ctx = box.ctx
    configure_pop3(ctx, mailboxes, tls_ca)
    lots = {n: fresh_lot(ctx, n) for n in (7, 8)}
    agent = Agent(
        ctx,
        env=box.env.env,
        interval_scale=1e-6,  # the purge is due again at the next cycle
        purge_factory=lambda: ctx.purge(env=box.env.env, classifier=SlowOnMarker()),
    )
    try:
        for number, tags in ((7, "ab"), (8, "c")):
            _deliver_in_order(mailboxes, [*(_slow(t) for t in tags), arl_mail(number)])
            cycle = agent.cycle()
            assert cycle.failed == [] and cycle.purged == len(tags) + 1
            assert mailboxes.maildir_count("bal1") == 0
    finally:
        agent.close()
    assert {n: _state(box, i) for n, i in lots.items()} == dict.fromkeys(
        lots, LotState.ACKNOWLEDGED
    )
