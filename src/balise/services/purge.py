"""The zero-click purge of a practitioner's mailbox (ARCHITECTURE.md): every message classified out
of process, its outcome committed durably, then DELE; QUIT only after every commit.

A crash anywhere leaves the messages on the server; the next run finds their (UIDL, SHA-256) in
the dedup table and deletes them without processing them again: nothing lost, nothing twice.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final, Literal

from balise.domain import vocabulary
from balise.domain.classify import ClassifyPolicy, UnknownReason
from balise.domain.codes import MailCode
from balise.domain.errors import AnalysisFailed, BaliseError, ConfigError, DiskFullError
from balise.domain.journal import JsonValue
from balise.domain.mailtransport import Pop3Settings, Unfetched
from balise.ports import Clock, Journal, Mailbox, MailboxSession, ReturnsStore
from balise.services.certwatch import ServerCertWatch
from balise.services.classifier import DEFAULT_SIZE_CAP, ClassifierService, Verdict, box_policy
from balise.services.params import ParameterService
from balise.services.settings import BoxSettings, box_settings, profile_settings
from balise.services.settings import profiles as all_profiles
from balise.services.tracking import TrackingService

CrashPoint = Literal["after_retr", "after_commit", "after_dele"]
CRASH_POINTS: tuple[CrashPoint, ...] = ("after_retr", "after_commit", "after_dele")
# Headers of an over-cap message (TOP n 0): bounded, a header block larger than this is refused.
HEADER_LIMIT = 256 * 1024
CRASH_EXIT_CODE = 70
# The alert a full disk raises (the kiosk shows it; the intake raises the same kind).
DISK_FULL_ALERT = "disk_full"
_NO_ROOM: Final = frozenset({errno.ENOSPC, errno.EDQUOT})
# Group commits: at most this many messages (or about this many bytes) per durable commit
# (a thousand returns: 8 fsyncs, not 21; every message of a group waits on the server until the
# group is committed, and a crash only means the next run deletes them as already processed).
BATCH_MAX = 256
BATCH_BYTES = 8 * 1024 * 1024
# Pipelined fetches: at most this many messages (or about this many bytes) asked in one write.
FETCH_WINDOW = 64
FETCH_BYTES = 1024 * 1024


# The verdict of a message handed to the classifier worker and not collected yet.
_IN_WORKER: Final = Verdict("unknown", None, "en cours d'analyse", "being analysed", None)
# The SHA-256 recorded for a message the server did not hand over (nothing read).
_UNREAD_SHA: Final = hashlib.sha256(b"").hexdigest()


@dataclass(slots=True)
class _Judged:
    """A fetched and judged message waiting for its batch's commit (verdict None: duplicate)."""

    number: int
    uidl: str
    sha: str
    size: int
    data: bytes
    verdict: Verdict | None
    outcome: str = "duplicate"
    # Why the session could not hand it over whole (None: it did): see domain.mailtransport.Unfetched.
    unfetched: str | None = None


@dataclass(frozen=True, slots=True)
class PurgeProgress:
    """One message handled: ``done`` of ``total`` for ``profile`` (for "n/N" on screen)."""

    profile: str
    done: int
    total: int
    outcome: str  # return, unknown, duplicate


@dataclass(frozen=True, slots=True)
class PurgeReport:
    profile: str
    total: int = 0
    returns: int = 0
    unknown: int = 0
    duplicates: int = 0
    deleted: int = 0
    alert_id: int | None = None
    bytes_received: int = 0
    stopped: str | None = None  # words when the loop stopped on purpose (inconsistent state...)

    def words(self, lang: str = "fr") -> str:
        if lang == "en":
            text = (
                f"{self.profile}: {self.total} message(s), {self.returns} return(s), "
                f"{self.unknown} unknown, {self.duplicates} already processed, "
                f"{self.deleted} deleted"
            )
            return text + (f" — STOPPED: {self.stopped}" if self.stopped else "")
        text = (
            f"{self.profile} : {self.total} message(s), {self.returns} retour(s), "
            f"{self.unknown} inconnu(s), {self.duplicates} déjà traité(s), "
            f"{self.deleted} supprimé(s)"
        )
        return text + (f" — ARRÊT : {self.stopped}" if self.stopped else "")


class PurgeService:
    """Runs the purge loop for one mailbox at a time (a lock per mailbox)."""

    _run_box: BoxSettings  # the box-wide settings of the run in progress (run_once)
    # The commit group being committed by the run's commit thread (run_once), if any.
    _committing: Future[None] | None = None

    def __init__(
        self,
        params: ParameterService,
        repo: ReturnsStore,
        tracking: TrackingService,
        classifier: ClassifierService,
        mailbox: Mailbox,
        journal: Journal,
        clock: Clock,
        *,
        size_cap: int = DEFAULT_SIZE_CAP,
        crash_at: CrashPoint | None = None,
        server_certs: ServerCertWatch | None = None,
    ) -> None:
        self._params = params
        self._repo = repo
        self._tracking = tracking
        self._classifier = classifier
        self._mailbox = mailbox
        self._journal = journal
        self._clock = clock
        self._size_cap = size_cap
        self.crash_at = crash_at
        # Where the certificate the POP3 server presented is kept for the expiry watch.
        self._server_certs = server_certs

    def close(self) -> None:
        """Stop the classifier worker process."""
        self._classifier.close()

    def _crash(self, point: CrashPoint) -> None:
        # Test hook: die like a SIGKILL (no cleanup, no QUIT) at a named point of the loop.
        if self.crash_at == point:
            os._exit(CRASH_EXIT_CODE)

    def profiles(self) -> list[str]:
        """Profiles whose mailbox is configured (pop3.host set)."""
        return [s.id for s in all_profiles(self._params) if s.fetches]

    def settings(self, profile: str) -> Pop3Settings:
        s = profile_settings(self._params, profile)
        host, user, password = s.pop3_host, s.pop3_user, s.pop3_password
        if host is None or user is None or password is None:
            raise ConfigError(
                f"BAL du profil {profile} incomplète : pop3.host, pop3.user et pop3.password "
                "sont nécessaires",
                f"profile {profile}'s mailbox incomplete: pop3.host, pop3.user and pop3.password "
                "are needed",
                code=MailCode.POP3_CONFIG,
            )
        return Pop3Settings(
            host=host,
            port=s.pop3_port,
            tls=s.pop3_tls,
            user=user,
            password=password,
            ca_pem=box_settings(self._params).ca_bundle,
        )

    def run_all(self, progress: Callable[[PurgeProgress], None] | None = None) -> list[PurgeReport]:
        return [self.run_once(p, progress) for p in self.profiles()]

    def run_once(
        self,
        profile: str,
        progress: Callable[[PurgeProgress], None] | None = None,
        *,
        publish: bool = True,
    ) -> PurgeReport:
        """Relieve one mailbox (fetch, classify, commit, DELE, QUIT); then, with ``publish``,
        write the run's returns and lot statuses to retours/ (after QUIT: the server session
        never waits for it; :meth:`publish` does it alone)."""
        own_emitter = profile_settings(self._params, profile).emitter_number
        settings = self.settings(profile)
        self._run_box = box_settings(self._params)  # read once a run, not once a message
        policy = box_policy(self._params, size_cap=self._size_cap)
        run_id = uuid.uuid4().hex
        # A fresh restart budget for this run; the worker starts while the mailbox is opened.
        # Started before the lock is taken: a process forked while it is held shares the lock
        # until it execs, and one killed with its parent at that moment kept the lock held.
        self._classifier.new_run()
        # The organisms' numbers and signing certificates are read once for the run, like the
        # policy above.
        # One thread commits each group while this one goes on collecting the next group's
        # verdicts (and re-reading their payloads): the group's fsync and SQLite's own work are
        # not waited for; the group's DELEs are sent once its commit is done. Nothing else
        # touches the store while it commits (_join_commit first).
        with (
            self._repo.lock(profile),
            self._tracking.organisms_read_once(),
            ThreadPoolExecutor(1, thread_name_prefix="balise-purge-commit") as committer,
        ):
            session = self._mailbox.open(settings)
            counts = {"return": 0, "unknown": 0, "duplicate": 0}
            deleted = 0
            stopped: str | None = None
            try:
                if self._server_certs is not None:
                    self._server_certs.seen(
                        profile, "pop3", settings.host, settings.port, session.server_certificate
                    )
                uidls = session.uidl()
                sizes = session.sizes()
                numbers = sorted(sizes)
                if set(uidls) != set(sizes):
                    stopped = "UIDL et LIST ne décrivent pas les mêmes messages"
                # What earlier runs stored, read once: this run meets each UIDL once (a listing
                # names each message once) and only adds outcomes for its own messages.
                prior = self._repo.seen(profile, uidls.values())
                batch: list[_Judged] = []
                committing: list[_Judged] = []  # the group the commit thread has
                batch_bytes = 0
                limit = 1
                done = 0

                def deleted_once_committed() -> None:
                    # The group handed to the commit thread: once durably committed, its DELEs
                    # (QUIT comes later). A failed commit raises here: none of it is DELEd.
                    nonlocal deleted, done
                    self._join_commit()
                    session.dele_many([item.number for item in committing])
                    for item in committing:
                        counts[item.outcome] += 1
                        deleted += 1
                        done += 1
                        if progress is not None:
                            progress(PurgeProgress(profile, done, len(numbers), item.outcome))
                    committing.clear()

                def flush() -> None:
                    # One durable commit for the whole batch, by the commit thread.
                    deleted_once_committed()  # the previous group first: one at a time
                    self._classifier.flush()  # the worker goes on meanwhile
                    committing.extend(batch)
                    batch.clear()
                    self._committing = committer.submit(
                        self._commit, profile, own_emitter, run_id, committing
                    )

                def add(judged: _Judged) -> None:
                    nonlocal limit, batch_bytes
                    batch.append(judged)
                    batch_bytes += len(judged.data)
                    if len(batch) >= limit or batch_bytes >= BATCH_BYTES:
                        flush()
                        batch_bytes = 0
                        # Batches grow (1, 4, 16, ...): the first outcome is stored at once, a
                        # long mailbox pays one fsync per BATCH_MAX messages.
                        limit = min(limit * 4, BATCH_MAX)

                # A pipeline: messages wait in the worker (as many as it has room for) while the
                # next ones are fetched and earlier batches are committed and deleted. Messages
                # are still judged, batched, committed and deleted in their order.
                queue: deque[_Judged] = deque()

                def settle(room_for: int | None) -> str | None:
                    """Move the judged messages at the head of the queue to the batch, collecting
                    verdicts from the worker until it has room for ``room_for`` more bytes (None:
                    until the queue is empty). Words when the worker is exhausted."""
                    while queue:
                        head = queue[0]
                        if head.verdict is _IN_WORKER:
                            if room_for is not None and self._classifier.room(room_for):
                                return None
                            exhausted = self._collect(profile, head)
                            if exhausted is not None:
                                # It is judged (unknown); the ones after it wait for next run.
                                add(queue.popleft())
                                return exhausted
                        add(queue.popleft())
                    return None

                fetching = self._fetched(session, [] if stopped else numbers, uidls, sizes)
                for fetched in fetching:
                    judged = self._prejudge(profile, policy, fetched, prior.get(fetched.uidl, []))
                    if isinstance(judged, str):
                        stopped = judged
                        # Earlier messages are still judged and committed, and may go.
                        settle(None)
                        break
                    if judged is None:  # for the worker, once it has room
                        stopped = settle(len(fetched.data))
                        if stopped is not None:
                            break
                        self._classifier.submit(fetched.data, policy)
                        fetched.verdict = _IN_WORKER
                    queue.append(fetched)
                    stopped = settle(0)
                    if stopped is not None:
                        break
                else:
                    stopped = settle(None) if stopped is None else stopped
                if batch:
                    flush()  # also before a stop: what was judged is committed and may go
                deleted_once_committed()
                self._crash("after_dele")
                alert_id = self._close_run(profile, stopped)
                session.quit()
            except DiskFullError as exc:
                # Fail closed: the batch whose commit failed was never DELEd; the batches
                # committed before it were, and QUIT makes those deletions take effect.
                self._join_commit(quietly=True)
                try:
                    session.quit()
                except BaliseError:
                    session.close()
                raise self._disk_full(
                    profile,
                    "relève arrêtée ; seuls les messages dont le traitement était enregistré "
                    "ont été supprimés de la BAL, les autres y restent pour la prochaine relève",
                    "purge stopped; only the messages whose outcome was recorded were deleted "
                    "from the mailbox, the others stay there for the next purge",
                ) from exc
            except BaseException:
                self._join_commit(quietly=True)  # a group committed now just waits on the server
                session.close()  # no QUIT: the server deletes nothing not yet committed
                raise
            report = PurgeReport(
                profile=profile,
                total=len(numbers),
                returns=counts["return"],
                unknown=counts["unknown"],
                duplicates=counts["duplicate"],
                deleted=deleted,
                alert_id=alert_id,
                bytes_received=session.bytes_received,
                stopped=stopped,
            )
            try:
                self._journal.append(
                    "purge.run",
                    f"profile:{profile}",
                    {
                        "total": report.total,
                        "returns": report.returns,
                        "unknown": report.unknown,
                        "duplicates": report.duplicates,
                        "deleted": report.deleted,
                        "stopped": stopped,
                    },
                )
            except DiskFullError as exc:
                raise self._disk_full(
                    profile,
                    "la relève est faite et enregistrée, mais son compte rendu n'a pas pu être "
                    "écrit au journal",
                    "the purge is done and recorded, but its summary could not be journaled",
                ) from exc
        if publish:
            self.publish(profile)  # also what an earlier crash left unpublished
        return report

    def publish(self, profile: str | None = None) -> int:
        """Write every not yet published return and its lots' status to retours/ (a full disk:
        DiskFullError; what is not written yet is written at the next call)."""
        try:
            return self._tracking.publish_pending()
        except DiskFullError as exc:
            failure: BaseException = exc
        except OSError as exc:
            if exc.errno not in _NO_ROOM:
                raise
            failure = exc
        raise self._disk_full(
            profile,
            "les retours reçus sont enregistrés mais pas encore écrits dans retours/ ; ils le "
            "seront quand il y aura de la place",
            "the returns received are recorded but not yet written to retours/; they will be "
            "when there is room",
        ) from failure

    def _disk_full(self, profile: str | None, fr: str, en: str) -> DiskFullError:
        """The error to raise for a full disk, in words; and, when the store can still take it,
        one open alert of kind ``disk_full`` for the kiosk."""
        where = f"BAL du profil {profile}" if profile else "BAL"
        where_en = f"profile {profile}'s mailbox" if profile else "mailbox"
        words_fr = f"Disque plein ({where}) : {fr}. Libérez de la place ou prévenez le technicien."
        words_en = f"Disk full ({where_en}): {en}. Free some space or call the technician."
        subject = f"profile:{profile}" if profile else "purge"
        with contextlib.suppress(DiskFullError), self._repo.transaction():
            if self._repo.open_alert(DISK_FULL_ALERT, subject) is None:
                self._tracking.alert(DISK_FULL_ALERT, subject, words_fr, words_en, {})
        return DiskFullError(words_fr, words_en)

    def _fetched(
        self,
        sess: MailboxSession,
        numbers: list[int],
        uidls: dict[int, str],
        sizes: dict[int, int],
    ) -> Iterator[_Judged]:
        """Each message in order, fetched and digested: whole (RETR, consecutive ones in windows
        of FETCH_WINDOW messages and about FETCH_BYTES, pipelined where the server allows it),
        or only its headers over the cap (TOP n 0). A window is read to its end before its first
        message is handed out, and the next window's RETRs are sent then (the server reads and
        sends them while this one is judged and committed); the session reads their answers
        before any DELE, so commands and answers never cross."""
        windows = self._windows(numbers, sizes)
        for index, window in enumerate(windows):
            answers: list[bytes | Unfetched]
            # The worker gets what it was handed while this window is fetched.
            self._classifier.flush()
            if sizes[window[0]] > self._size_cap:
                answers = [sess.top_headers(window[0], HEADER_LIMIT, sizes[window[0]])]
            else:
                answers = sess.retr_many([(n, sizes[n]) for n in window])
            if index + 1 < len(windows) and sizes[windows[index + 1][0]] <= self._size_cap:
                sess.prefetch([(n, sizes[n]) for n in windows[index + 1]])
            for number, answer in zip(window, answers, strict=True):
                # Not handed over whole: judged on what was read (its hash, its headers).
                unfetched = answer.why if isinstance(answer, Unfetched) else None
                data = answer.kept if isinstance(answer, Unfetched) else answer
                sha = hashlib.sha256(data).hexdigest()
                self._crash("after_retr")
                yield _Judged(
                    number, uidls[number], sha, sizes[number], data, None, unfetched=unfetched
                )

    def _windows(self, numbers: list[int], sizes: dict[int, int]) -> list[list[int]]:
        """``numbers`` cut in fetch windows: consecutive messages within the cap, at most
        FETCH_WINDOW of them and about FETCH_BYTES; a message over the cap alone."""
        windows: list[list[int]] = []
        at = 0
        while at < len(numbers):
            window = [numbers[at]]
            if sizes[numbers[at]] <= self._size_cap:
                total = sizes[numbers[at]]
                for number in numbers[at + 1 : at + FETCH_WINDOW]:
                    size = sizes[number]
                    if size > self._size_cap or total + size > FETCH_BYTES:
                        break
                    window.append(number)
                    total += size
            windows.append(window)
            at += len(window)
        return windows

    def _prejudge(
        self,
        profile: str,
        policy: ClassifyPolicy,
        item: _Judged,
        prior: list[tuple[str, str]],
    ) -> _Judged | str | None:
        """Judge a fetched message here when no parsing of its body is needed (a duplicate, over
        the cap); None when it needs the worker; words when the loop must stop. ``prior``: the
        (SHA-256, outcome) stored under its UIDL by earlier runs. Nothing is stored yet."""
        shas = {s for s, _ in prior}
        if item.sha in shas or (prior and item.unfetched == "refused"):
            # Processed before (a server that cannot serve it any more cannot show it changed).
            return item  # verdict None: a duplicate
        if shas - {_UNREAD_SHA}:
            # Same UIDL, other content: the server or our table is not what we think. Never
            # delete blindly: stop here (earlier messages are committed and may go). (A message
            # the server did not hand over before is simply judged now on what it gives.)
            self._join_commit()
            self._tracking.alert(
                "purge_inconsistent",
                f"profile:{profile}",
                f"Relève de la BAL du profil {profile} arrêtée : le message {item.uidl} ne "
                "correspond pas à ce qui a déjà été traité sous ce même identifiant ; rien n'a "
                "été supprimé à sa place",
                f"Purge of profile {profile}'s mailbox stopped: message {item.uidl} differs from "
                "what was already processed under the same identifier; nothing deleted in its "
                "place",
                {"uidl": item.uidl},
            )
            return f"message {item.uidl} incohérent avec l'état local"
        if item.unfetched == "refused":
            reason = UnknownReason.NOT_SERVED
            item.verdict = Verdict(
                "unknown", reason.value, reason.words("fr"), reason.words("en"), None
            )
            return item
        if item.size > self._size_cap or item.unfetched is not None:
            # Headers only, parsed here under their own bounds (HEADER_LIMIT): no round trip.
            # A header block (or a message) larger than its bound is judged on its first bytes.
            over_cap = item.size > self._size_cap
            reason = (
                UnknownReason.HEADERS_TOO_LARGE
                if over_cap and item.unfetched is not None
                else UnknownReason.TOO_LARGE
            )
            item.verdict = self._classifier.judge_headers(item.size, item.data, policy, reason)
            return item
        return None

    def _collect(self, profile: str, item: _Judged) -> str | None:
        """The worker's verdict on ``item``; words when the run must end here because the
        worker's restarts for this run are used up. ``item`` (the message that used the last
        one) is then unknown too, like every message that outlasted its bounds: it is stored
        and deleted, and holds back nothing at the next run."""
        try:
            item.verdict = self._classifier.collect()
        except AnalysisFailed as failure:  # restarts exhausted for this run
            item.verdict = Verdict("unknown", failure.code, failure.fr, failure.en, None)
            self._join_commit()
            self._tracking.alert(
                "purge_stopped",
                f"profile:{profile}",
                f"Relève de la BAL du profil {profile} interrompue jusqu'au prochain passage : "
                f"{failure.fr} ; le message en cause est mis en quarantaine",
                f"Purge of profile {profile}'s mailbox paused until the next run: {failure.en}; "
                "the message at fault is quarantined",
                {"uidl": item.uidl},
            )
            return failure.fr
        return None

    def _join_commit(self, *, quietly: bool = False) -> None:
        """Wait for the commit thread's group, if any: raises what its commit raised (DiskFullError:
        nothing of the group was kept), unless ``quietly`` (another error is on its way)."""
        committing, self._committing = self._committing, None
        if committing is None:
            return
        if quietly:
            committing.exception()
            return
        committing.result()

    def _commit(
        self, profile: str, own_emitter: str | None, run_id: str, batch: list[_Judged]
    ) -> None:
        """Store the outcome of every judged message of ``batch`` in ONE durable transaction
        (duplicates were stored by an earlier run and need nothing)."""
        fresh = [item for item in batch if item.verdict is not None]
        if fresh:
            seen: list[tuple[str, str, str, int | None]] = []
            with self._repo.transaction():
                for item in fresh:
                    assert item.verdict is not None
                    outcome, ref = self._store(
                        profile,
                        own_emitter,
                        item.uidl,
                        item.sha,
                        item.size,
                        item.data,
                        item.verdict,
                    )
                    item.outcome = outcome
                    seen.append((item.uidl, item.sha, outcome, ref))
                self._repo.mark_seen(profile, seen, run_id)
            self._crash("after_commit")

    def _store(
        self,
        profile: str,
        own_emitter: str | None,
        uidl: str,
        sha: str,
        size: int,
        data: bytes,
        verdict: Verdict,
    ) -> tuple[str, int]:
        c = verdict.classification
        if verdict.kind != "unknown" and c is not None and c.parsed is not None:
            outcome = self._tracking.record(
                profile=profile,
                own_emitter=own_emitter,
                uidl=uidl,
                sha256=sha,
                kind=verdict.kind,
                parsed=c.parsed,
                words=(verdict.reason_fr, verdict.reason_en),
                raw=data,
                payload=c.payload,
            )
            return "return", outcome.return_id
        keep = self._run_box.quarantine_retention_days != 0
        ref = self._repo.add_unknown(
            profile=profile,
            uidl=uidl,
            sha256=sha,
            digest_scope="headers" if size > self._size_cap else "message",
            size=size,
            reason=(verdict.reason_code or "UNKNOWN", verdict.reason_fr, verdict.reason_en),
            meta=verdict.metadata,
            copy=data if keep else None,
            when=self._clock.now().isoformat(timespec="seconds"),
        )
        return "unknown", ref

    def _close_run(self, profile: str, stopped: str | None) -> int | None:
        """Quarantine retention and quota, then ONE grouped alert for the unknown mail not yet
        alerted (also those of a run that crashed before its alert)."""
        box = box_settings(self._params)
        alert_id: int | None = None
        with self._repo.transaction():
            self._repo.enforce_quarantine(
                box.quarantine_retention_days,
                box.quarantine_quota_mib * 1024 * 1024,
                self._clock.now(),
            )
            pending = [
                r for r in self._repo.mail_quarantine(unalerted=True) if r.profile == profile
            ]
            if pending:
                fr_items = "; ".join(
                    f"n° {r.id} ({vocabulary.size(r.size, 'fr')}, {r.reason_fr})" for r in pending
                )
                en_items = "; ".join(
                    f"#{r.id} ({vocabulary.size(r.size, 'en')}, {r.reason_en})" for r in pending
                )
                details: dict[str, JsonValue] = {
                    "profile": profile,
                    "messages": [
                        {
                            "id": r.id,
                            "uidl": r.uidl,
                            "size": r.size,
                            "reason": r.reason_code,
                            "sha256": r.sha256,
                        }
                        for r in pending
                    ],
                }
                alert_id = self._tracking.alert(
                    "mail_unknown",
                    f"profile:{profile}",
                    f"{len(pending)} message(s) inconnu(s) retiré(s) de la BAL du profil "
                    f"{profile} et mis en quarantaine chiffrée, jamais ouverts : {fr_items}",
                    f"{len(pending)} unknown message(s) removed from profile {profile}'s mailbox "
                    f"into encrypted quarantine, never opened: {en_items}",
                    details,
                )
                self._repo.mark_alerted([r.id for r in pending])
            self._tracking.check_overdue(box.arl_overdue_days)
        del stopped
        return alert_id
