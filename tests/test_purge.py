"""The zero-click purge against a real Dovecot over verified TLS: returns applied, hostile mail
quarantined encrypted and alerted once, crashes at every named point lose and repeat nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import trustme

from balise.adapters import classifier_worker
from balise.adapters.classifier_worker import WorkerClassifier
from balise.adapters.pop3 import Pop3Mailbox
from balise.domain.errors import StateError
from balise.domain.lotstate import LotState
from balise.domain.mailtransport import Pop3Error, Pop3ProtocolError, Pop3Settings, Pop3TlsError
from balise.domain.returns import Reason
from balise.services.classifier import ClassifierService
from balise.services.purge import CRASH_EXIT_CODE, CRASH_POINTS, PurgeProgress
from balise.sim.dovecot import DovecotServer
from balise.sim.returnfile import build_arl
from balise.sim.returnmail import return_mail, spam_mail
from tests.support.box import Box
from tests.support.mail_corpus import (
    ARL_NEG_EML,
    ARL_POS_EML,
    NOEMIE_EML,
    ORGANISM_NUMBER,
    corpus_policy,
    hostile_corpus,
)
from tests.support.mail_fixtures import TlsCA
from tests.support.purge_support import (
    EMITTER_2,
    SENTINEL_PASSWORD,
    TrapPop3,
    configure_pop3,
    configure_second_practitioner,
    fresh_lot,
    sample_lot_sent,
    yesterday,
)

pytestmark = pytest.mark.mail

HUGE = 50 * 1024 * 1024
# Words found only in the hostile mails: none may reach the data dir in clear.
MARKERS = (
    b"Gagnez un iPhone",
    b"promo.example",
    b"evil.example",
    b"deals4you",
    b"Vous avez gagn",
    b"ameli-rss",
    b"HUGE-MESSAGE-MARKER",
    b"Remboursement en attente",
)


def _arl_mail(emitter: str, number: int, positive: bool, message_id: str) -> bytes:
    reasons = () if positive else (Reason("SIGN-INV", "LOT INVERIFIABLE"),)
    payload = build_arl(
        "CP",
        ORGANISM_NUMBER,
        emitter,
        number,
        yesterday(),
        positive,
        3,
        yesterday(),
        reasons,
        flow_type="T",
    )
    return return_mail(payload, "IRISTEST/ARL/Z", message_id=message_id)


def _purge(box: Box, **kwargs: object):  # type: ignore[no-untyped-def]
    return box.ctx.purge(env=box.env.env, **kwargs)  # type: ignore[arg-type]


def test_golden_returns_applied_published_and_deleted(
    box: Box, mailboxes: DovecotServer, tls_ca: TlsCA
) -> None:
    ctx = box.ctx
    configure_pop3(ctx, mailboxes, tls_ca)
    lot7 = sample_lot_sent(ctx)
    lot8 = fresh_lot(ctx, 8)
    lot9 = fresh_lot(ctx, 9, sent=False)
    for raw in (
        ARL_POS_EML,
        NOEMIE_EML,
        _arl_mail("00000012345678", 8, False, "<neg8@422.01.rss.fr>"),
        _arl_mail("00000012345678", 9, True, "<pos9@422.01.rss.fr>"),
    ):
        mailboxes.deliver("bal1", raw)
    seen: list[PurgeProgress] = []
    purge = _purge(box)
    try:
        report = purge.run_once("p1", seen.append)
    finally:
        purge.close()
    assert (report.total, report.returns, report.unknown, report.deleted) == (4, 4, 0, 4)
    assert [(p.done, p.total) for p in seen] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert mailboxes.maildir_count("bal1") == 0
    lots = ctx.lots
    assert lots.get(lot7).state is LotState.ACKNOWLEDGED  # type: ignore[union-attr]
    rejected = lots.get(lot8)
    assert rejected is not None and rejected.state is LotState.REJECTED
    assert any("LOT INVERIFIABLE" in r for r in rejected.reasons)
    assert lots.get(lot9).state is LotState.READY  # type: ignore[union-attr]  # never sent
    statuses = {(r.kind, r.lot_number, r.status) for r in ctx.tracking().returns()}
    assert statuses == {
        ("arl", "007", "applied"),
        ("noemie", "007", "applied"),
        ("arl", "008", "applied"),
        ("arl", "009", "unmatched"),
    }
    pays = {p.invoice_number: (p.amo_state, p.amo_paid) for p in ctx.tracking().payments(lot7)}
    assert pays == {100000: ("P", 2650), 100001: ("R", 0), 100002: ("D", 0)}
    # retours/: decoded payloads and one status file per lot, for the practice software
    retours = box.ctx.exchange(box.env.env).retours / "00000012345678"
    names = sorted(p.name for p in retours.iterdir())
    assert any(n.startswith("arl-261122-007-") for n in names)
    assert any(n.startswith("noemie-") for n in names)
    status = json.loads((retours / "lot-261122-007.statut.json").read_text())
    assert status["etat"] == "acknowledged" and len(status["paiements"]) == 3
    assert json.loads(next(retours.glob("lot-*-008.statut.json")).read_text())["etat"] == (
        "rejected"
    )
    assert (retours / f"lot-{rejected.lot_date}-009.statut.json").exists() is False

    # A second, contradicting ARL for lot 007 (through the real CLI): alert, first one kept.
    mailboxes.deliver("bal1", ARL_NEG_EML)
    run = box.env.run("purge", "--once", "--profile", "p1")
    assert run.returncode in (0, 1), run.stderr
    assert "1 message(s)" in run.stdout
    assert mailboxes.maildir_count("bal1") == 0
    assert lots.get(lot7).state is LotState.ACKNOWLEDGED  # type: ignore[union-attr]
    alerts = json.loads(box.env.run("alerts", "list", "--json").stdout)
    assert [a["kind"] for a in alerts] == ["return_conflict"]
    listed = json.loads(box.env.run("returns", "list", "--json").stdout)
    assert [r["status"] for r in listed["returns"]][-1] == "conflict"
    assert len(listed["payments"]) == 3


def test_hostile_mail_and_huge_message_quarantined_encrypted_one_alert(
    box: Box, mailboxes: DovecotServer, tls_ca: TlsCA
) -> None:
    ctx = box.ctx
    configure_pop3(ctx, mailboxes, tls_ca)
    corpus = hostile_corpus(test_mode=True)
    for mail in corpus:
        mailboxes.deliver("bal1", mail.raw)
    head = b"From: x@evil.example\r\nSubject: HUGE-MESSAGE-MARKER\r\nMessage-ID: <huge@x>\r\n\r\n"
    mailboxes.deliver("bal1", head + b"HUGE-MESSAGE-MARKER " * (HUGE // 20))
    purge = _purge(box)
    try:
        report = purge.run_once("p1")
    finally:
        purge.close()
    total = len(corpus) + 1
    assert (report.total, report.unknown, report.deleted, report.returns) == (
        total,
        total,
        total,
        0,
    )
    assert mailboxes.maildir_count("bal1") == 0
    # the 50 MB message was seen through TOP n 0 only
    assert report.bytes_received < 8 * 1024 * 1024
    alerts = ctx.tracking().alerts()
    assert [a.kind for a in alerts] == ["mail_unknown"]
    listed = alerts[0].details["messages"]
    assert isinstance(listed, list) and len(listed) == total
    reasons = sorted(str(m["reason"]) for m in listed if isinstance(m, dict))
    assert reasons == sorted([m.reason.value for m in corpus] + ["TOO_LARGE"])
    assert report.alert_id == alerts[0].id
    # metadata and copies are there, but only encrypted
    repo = ctx.returns_store
    records = repo.mail_quarantine()
    huge = next(r for r in records if r.size > HUGE)
    assert repo.quarantine_meta(huge.id)["subject"] == "HUGE-MESSAGE-MARKER"
    assert huge.digest_scope == "headers"
    spam = next(r for r in records if r.reason_code == "SENDER_NOT_ALLOWED")
    assert repo.quarantine_copy(spam.id) is not None
    ctx.store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for path in box.env.home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for marker in MARKERS:
                assert marker not in data, (path, marker)


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_crash_at_each_point_then_rerun_processes_each_message_once(
    box: Box, mailboxes: DovecotServer, tls_ca: TlsCA, point: str
) -> None:
    ctx = box.ctx
    configure_pop3(ctx, mailboxes, tls_ca)
    lot7 = sample_lot_sent(ctx)
    for raw in (ARL_POS_EML, NOEMIE_EML, spam_mail()):
        mailboxes.deliver("bal1", raw)
    script = (
        "import sys\n"
        "from balise.app.context import open_context\n"
        "from pathlib import Path\n"
        "ctx = open_context(Path(sys.argv[1]), actor='test')\n"
        "purge = ctx.purge(crash_at=sys.argv[2])\n"
        "purge.run_once('p1')\n"
        "raise SystemExit(0)\n"
    )
    crashed = subprocess.run(
        [sys.executable, "-c", script, str(box.env.home), point],
        env=box.env.env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert crashed.returncode == CRASH_EXIT_CODE, crashed.stderr
    assert mailboxes.maildir_count("bal1") == 3  # nothing deleted without QUIT
    purge = _purge(box)
    try:
        report = purge.run_once("p1")
    finally:
        purge.close()
    assert report.deleted == 3 and mailboxes.maildir_count("bal1") == 0
    committed_before = {"after_retr": 0, "after_commit": 1, "after_dele": 3}[point]
    assert report.duplicates == committed_before
    returns = ctx.tracking().returns()
    assert sorted(r.kind for r in returns) == ["arl", "noemie"]
    assert len(ctx.tracking().payments()) == 3
    assert len(ctx.returns_store.mail_quarantine()) == 1
    assert ctx.lots.get(lot7).state is LotState.ACKNOWLEDGED  # type: ignore[union-attr]
    acks = [
        e
        for e in ctx.journal.entries()
        if e.kind == "lot.state" and json.loads(e.details).get("to") == "acknowledged"
    ]
    assert len(acks) == 1
    # the spam was listed in exactly one alert, even when its run died before alerting
    unknown_alerts = [a for a in ctx.tracking().alerts() if a.kind == "mail_unknown"]
    assert len(unknown_alerts) == 1


def test_two_practitioners_each_return_lands_on_its_own_lot(
    box: Box, mailboxes: DovecotServer, tls_ca: TlsCA, pki: object
) -> None:
    ctx = box.ctx
    configure_second_practitioner(ctx, pki)
    configure_pop3(ctx, mailboxes, tls_ca)
    configure_pop3(ctx, mailboxes, tls_ca, profile="p2", user="bal2", tls="stls", host="127.0.0.2")
    lot_p1 = fresh_lot(ctx, 7)
    lot_p2 = fresh_lot(ctx, 7, emitter=EMITTER_2)
    mailboxes.deliver("bal1", _arl_mail("00000012345678", 7, True, "<a@422.01.rss.fr>"))
    # a negative ARL for p2's lot that landed in p1's mailbox: never applied
    mailboxes.deliver("bal1", _arl_mail(EMITTER_2, 7, False, "<b@422.01.rss.fr>"))
    mailboxes.deliver("bal2", _arl_mail(EMITTER_2, 7, True, "<c@422.01.rss.fr>"))
    purge = _purge(box)
    try:
        reports = purge.run_all()
    finally:
        purge.close()
    assert [(r.profile, r.returns, r.deleted) for r in reports] == [("p1", 2, 2), ("p2", 1, 1)]
    assert ctx.lots.get(lot_p1).state is LotState.ACKNOWLEDGED  # type: ignore[union-attr]
    assert ctx.lots.get(lot_p2).state is LotState.ACKNOWLEDGED  # type: ignore[union-attr]
    by_profile = {(r.profile, r.emitter, r.status) for r in ctx.tracking().returns()}
    assert by_profile == {
        ("p1", "00000012345678", "applied"),
        ("p1", EMITTER_2, "unmatched"),
        ("p2", EMITTER_2, "applied"),
    }
    assert [a.kind for a in ctx.tracking().alerts()] == ["return_foreign"]


def test_tls_rules(
    box: Box, mailboxes: DovecotServer, tls_ca: TlsCA, pop3_no_stls: TrapPop3
) -> None:
    import poplib

    # Dovecot's own policy off 127.0.0.1: plaintext login refused without STLS...
    plain = poplib.POP3("127.0.0.2", mailboxes.pop3_port, timeout=10)
    try:
        with pytest.raises(poplib.error_proto, match="Plaintext authentication disallowed"):
            plain.user("bal1")
    finally:
        plain.close()
    # ...and Balise in STLS mode upgrades first, then logs in.
    ok = Pop3Settings(
        "127.0.0.2",
        mailboxes.pop3_port,
        "stls",
        "bal1",
        SENTINEL_PASSWORD,
        (tls_ca.ca_pem.read_text(),),
    )
    session = Pop3Mailbox().open(ok)
    assert session.uidl() == {}
    session.quit()
    # A server without STLS: refused before USER/PASS.
    trap = Pop3Settings("127.0.0.1", pop3_no_stls.port, "stls", "bal1", SENTINEL_PASSWORD)
    with pytest.raises(Pop3TlsError) as refused:
        Pop3Mailbox().open(trap)
    assert refused.value.code == "POP3_NO_STLS"
    time.sleep(0.3)
    assert not any(c.upper().startswith((b"USER", b"PASS")) for c in pop3_no_stls.commands)
    # An untrusted certificate: refused, the password in no error text.
    other = trustme.CA().cert_pem.bytes().decode()
    for tls, port in (("implicit", mailboxes.pop3s_port), ("stls", mailboxes.pop3_port)):
        bad = Pop3Settings("127.0.0.1", port, tls, "bal1", SENTINEL_PASSWORD, (other,))  # type: ignore[arg-type]
        with pytest.raises(Pop3TlsError) as untrusted:
            Pop3Mailbox().open(bad)
        assert untrusted.value.code == "POP3_CERT"
        assert SENTINEL_PASSWORD not in str(untrusted.value) + repr(bad)
    # A wrong password: words, no secret.
    wrong = Pop3Settings(
        "127.0.0.1",
        mailboxes.pop3s_port,
        "implicit",
        "bal1",
        "wrong-pass-xyz",
        (tls_ca.ca_pem.read_text(),),
    )
    with pytest.raises(Pop3Error) as denied:
        Pop3Mailbox().open(wrong)
    assert denied.value.code == "POP3_AUTH" and "wrong-pass-xyz" not in str(denied.value)


def test_pipelined_fetch_and_delete_match_one_by_one_and_an_error_deletes_nothing(
    mailboxes: DovecotServer, tls_ca: TlsCA
) -> None:
    # Dovecot announces PIPELINING: RETR and DELE windows go in one write each. What comes back
    # must be byte for byte what one-by-one commands return, in order, long lines included.
    mails = [
        (
            f"From: a@b.example\r\nSubject: {i}\r\n\r\n".encode()
            + b"X" * (100 + 997 * i)
            + b"\r\n.a line starting with a dot\r\n"
        )
        for i in range(12)
    ]
    for raw in mails:
        mailboxes.deliver("bal1", raw)
    settings = Pop3Settings(
        "127.0.0.1", mailboxes.pop3s_port, "implicit", "bal1", SENTINEL_PASSWORD,
        (tls_ca.ca_pem.read_text(),),
    )  # fmt: skip
    session = Pop3Mailbox().open(settings)
    assert session.pipelining
    sizes = session.sizes()
    wanted = [(n, sizes[n]) for n in sorted(sizes)]
    pipelined = session.retr_many(wanted)
    fetched = [p for p in pipelined if isinstance(p, bytes)]
    assert len(fetched) == len(pipelined)  # every answer within its budget
    assert sorted(fetched) == sorted(mails)
    session.pipelining = False
    assert session.retr_many(wanted) == pipelined
    # One bad number among pipelined DELEs: an error, and without QUIT nothing is deleted.
    session.pipelining = True
    with pytest.raises(Pop3ProtocolError):
        session.dele_many([1, 2, 99, 3])
    session.close()
    assert mailboxes.maildir_count("bal1") == 12
    # Half deleted pipelined, the rest one by one: each takes effect at QUIT only.
    session = Pop3Mailbox().open(settings)
    session.dele_many(list(range(1, 7)))
    session.quit()
    assert mailboxes.maildir_count("bal1") == 6
    session = Pop3Mailbox().open(settings)
    session.pipelining = False
    session.dele_many(sorted(session.sizes()))
    assert mailboxes.maildir_count("bal1") == 6
    session.quit()
    assert mailboxes.maildir_count("bal1") == 0


def test_a_window_asked_ahead_comes_whole_and_in_step_with_deletions(
    mailboxes: DovecotServer, tls_ca: TlsCA
) -> None:
    # The purge asks for the next window's RETRs before it judges and commits the current one;
    # a DELE sent meanwhile must not take a RETR answer for its own (the session reads those
    # first), and a session ended then deletes only what was DELEd.
    mails = [f"From: a@b.example\r\nSubject: {i}\r\n\r\nbody {i}\r\n".encode() for i in range(8)]
    for raw in mails:
        mailboxes.deliver("bal1", raw)
    settings = Pop3Settings(
        "127.0.0.1", mailboxes.pop3s_port, "implicit", "bal1", SENTINEL_PASSWORD,
        (tls_ca.ca_pem.read_text(),),
    )  # fmt: skip
    session = Pop3Mailbox().open(settings)
    assert session.pipelining
    sizes = session.sizes()
    first = [(n, sizes[n]) for n in sorted(sizes)[:4]]
    second = [(n, sizes[n]) for n in sorted(sizes)[4:]]
    got = session.retr_many(first)
    session.prefetch(second)
    session.dele_many([n for n, _ in first])  # while the second window's answers are coming
    got += session.retr_many(second)
    assert len(got) == 8 and sorted(g for g in got if isinstance(g, bytes)) == sorted(mails)
    session.prefetch(second)
    session.quit()  # the answers asked ahead are read first: QUIT is understood
    assert mailboxes.maildir_count("bal1") == 4  # the first window only


def test_one_purge_per_mailbox(box: Box, tls_ca: TlsCA) -> None:
    ctx = box.ctx
    ctx.params.set("pop3.host", "127.0.0.1", profile="p1")
    ctx.params.set("pop3.user", "bal1", profile="p1")
    ctx.params.set("pop3.password", "x-secret-x", profile="p1")
    purge = _purge(box)
    try:
        with ctx.returns_store.lock("p1"), pytest.raises(StateError) as held:
            purge.run_once("p1")
        assert held.value.code == "PURGE_LOCKED"
    finally:
        purge.close()


def test_worker_timeout_kills_restarts_and_is_bounded() -> None:
    worker = WorkerClassifier(wall_seconds=0.5, max_restarts=2)
    service = ClassifierService(worker)
    try:
        assert service.judge(ARL_POS_EML, corpus_policy()).kind == "arl"
        first = worker.pid
        worker._test_op = "sleep"
        verdict = service.judge(ARL_POS_EML, corpus_policy())
        assert (verdict.kind, verdict.reason_code, verdict.reason_fr) == (
            "unknown",
            "ANALYSIS_TIMEOUT",
            "analyse trop longue",
        )
        worker._test_op = None
        assert service.judge(ARL_POS_EML, corpus_policy()).kind == "arl"
        assert worker.pid != first and worker.starts == 2
        worker._test_op = "sleep"
        service.judge(ARL_POS_EML, corpus_policy())
        from balise.domain.errors import AnalysisFailed

        with pytest.raises(AnalysisFailed) as exhausted:
            service.judge(ARL_POS_EML, corpus_policy())
        assert exhausted.value.exhausted
    finally:
        service.close()


def test_worker_keeps_order_and_hands_later_messages_to_a_new_worker_after_a_timeout() -> None:
    # Several messages wait in the worker's pipe; the second one hangs. Its verdict is a timeout,
    # and the ones submitted after it get their OWN verdicts from a restarted worker, in order.
    worker = WorkerClassifier(wall_seconds=0.5, max_restarts=2)
    service = ClassifierService(worker)
    mails = [ARL_POS_EML, ARL_NEG_EML, NOEMIE_EML, spam_mail()]
    try:
        for index, raw in enumerate(mails):
            assert service.room(len(raw))
            worker._test_op = "sleep" if index == 1 else None
            service.submit(raw, corpus_policy())
        worker._test_op = None
        first = worker.pid
        verdicts = [service.collect() for _ in mails]
        assert [(v.kind, v.reason_code) for v in verdicts] == [
            ("arl", None),
            ("unknown", "ANALYSIS_TIMEOUT"),
            ("noemie", None),
            ("unknown", "SENDER_NOT_ALLOWED"),
        ]
        assert worker.pid != first and worker.restarts == 1
        # The pipe's bound: a message larger than what may wait is only handed over alone.
        big = ARL_POS_EML + b" " * WorkerClassifier.INFLIGHT_BYTES
        service.submit(ARL_POS_EML, corpus_policy())
        assert not service.room(len(big))
        assert service.collect().kind == "arl" and service.room(len(big))
    finally:
        service.close()


def test_a_restarted_worker_with_a_small_pipe_still_judges_every_waiting_message_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 150 messages wait in the worker's enlarged pipe (far more than a 64 KiB pipe holds: the
    # worker has a whole commit group to judge while the purge stores the previous one); the
    # second one hangs. The restarted worker's pipe cannot be enlarged — the test makes
    # F_SETPIPE_SZ refuse, as the system does once the user's pipe quota is used up (a test
    # cannot use it up without harming the machine): the later messages are handed over as
    # answers free room, nothing blocks, and each gets its own verdict, in order.
    worker = WorkerClassifier(wall_seconds=0.5, max_restarts=2)
    service = ClassifierService(worker)
    count = 150
    mails = [NOEMIE_EML if index % 3 == 0 else ARL_POS_EML for index in range(count)]
    assert sum(map(len, mails)) > 64 * 1024
    try:
        for index, raw in enumerate(mails):
            assert service.room(len(raw))
            worker._test_op = "sleep" if index == 1 else None
            service.submit(raw, corpus_policy())
        worker._test_op = None
        monkeypatch.setattr(classifier_worker, "_enlarge", lambda fd: False)
        verdicts = [service.collect() for _ in mails]
        assert [(v.kind, v.reason_code) for v in verdicts] == [
            ("unknown", "ANALYSIS_TIMEOUT")
            if index == 1
            else ("noemie" if index % 3 == 0 else "arl", None)
            for index in range(count)
        ]
        assert worker.restarts == 1 and worker.starts == 2
    finally:
        service.close()


def test_worker_cpu_limit_stops_a_spinning_analysis() -> None:
    worker = WorkerClassifier(wall_seconds=30, cpu_seconds=1)
    service = ClassifierService(worker)
    try:
        worker._test_op = "spin"
        started = time.monotonic()
        verdict = service.judge(ARL_POS_EML, corpus_policy())
        assert verdict.kind == "unknown" and verdict.reason_code == "ANALYSIS_CRASHED"
        assert time.monotonic() - started < 15
    finally:
        service.close()
