"""Composition root of the kiosk: the real services, card and reader watchers and the store
behind the ``KioskBackend`` the screens call (the UI never sees an adapter)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Generic, Literal, Protocol, TypeVar

from balise.adapters.kek import locate_kek
from balise.adapters.listings import Listing, SqliteListings
from balise.adapters.technician_gate import SqliteGateStore
from balise.domain.atr import ModuleKind, can_sign
from balise.domain.card import (
    CardError,
    CardIdentity,
    CardNotSupported,
    CardProof,
    CardRemoved,
    PinState,
)
from balise.domain.codes import CardCode, MailCode, ParamCode, SetupCode
from balise.domain.devices import CardEvent, ReaderEvent, UsbReader
from balise.domain.diskspace import is_full
from balise.domain.errors import BaliseError, StateError, ValidationError
from balise.domain.lotrecord import LotRecord, QuarantineRecord
from balise.domain.lotstate import LotState, UnknownLot
from balise.domain.mailrecords import AlertRecord, PaymentRecord, ReturnRecord
from balise.domain.params import SCHEMA, Scope
from balise.ports import CardWatcher, ReaderWatcher, TokenSession, TokenSigner
from balise.services.settings import box_settings, profile_ids, profile_settings
from balise.services.settings import profiles as all_profiles
from balise.ui.backend import (
    CardCheck,
    CardStatus,
    DoctorLine,
    HomeSummary,
    Hygiene,
    JournalCheck,
    KioskBackend,
    LotDetail,
    MailTest,
    ParamField,
    ParamLine,
    ParamScope,
    ProfileParams,
    ProfileSummary,
    Rows,
    SendReport,
    SendStep,
)
from balise.ui.demo_hooks import DemoHooks
from balise.ui.i18n import moment

if TYPE_CHECKING:
    from balise.app.context import Context
    from balise.services.backup import BackupStatus
    from balise.services.connection import ConnectionTester
    from balise.services.enrolment import AuthCertChecker
    from balise.services.provisioning import WindowStatus
    from balise.services.relay import ChannelState
    from balise.services.setup import SetupPlan
    from balise.services.signing import BatchEvent, BatchResult, CardReport
    from balise.services.technician import Attempt, GateStatus


class _GuardedSigner:
    """The card as examined: its sessions fail with CardRemoved as soon as the watchers saw the
    card pulled or the reader unplugged (before the PKCS#11 module notices, if it ever does)."""

    def __init__(self, inner: TokenSigner, removed: threading.Event) -> None:
        self._inner = inner
        self._removed = removed

    def identify(self) -> CardIdentity:
        return self._inner.identify()

    def pin_state(self) -> PinState:
        return self._inner.pin_state()

    def prove(self, pin: bytearray | None, challenge: bytes) -> CardProof:
        if self._removed.is_set():
            raise CardRemoved()
        prove = getattr(self._inner, "prove", None)
        if prove is None:
            raise CardNotSupported(
                "Cette carte ne sait pas prouver qui la détient (clé d'authentification).",
                "This card cannot prove who holds it (authentication key).",
            )
        proof = prove(pin, challenge)
        if not isinstance(proof, CardProof) or self._removed.is_set():
            raise CardRemoved()
        return proof

    def login(
        self, pin: bytearray | None, *, allowed_signatures: int | None = None
    ) -> TokenSession:
        if self._removed.is_set():
            raise CardRemoved()
        return _GuardedSession(
            self._inner.login(pin, allowed_signatures=allowed_signatures), self._removed
        )


class _GuardedSession:
    def __init__(self, inner: TokenSession, removed: threading.Event) -> None:
        self._inner = inner
        self._removed = removed

    def sign(self, data: bytes) -> bytes:
        if self._removed.is_set():
            raise CardRemoved()
        return self._inner.sign(data)

    def close(self) -> None:
        self._inner.close()


T = TypeVar("T")


class _LockedRows(Generic[T]):
    """A listing read under the backend's lock (one SQLite connection for the worker threads)."""

    def __init__(self, listing: Listing[T], lock: threading.RLock) -> None:
        self._listing = listing
        self._lock = lock

    def count(self) -> int:
        with self._lock:
            return self._listing.count()

    def page(self, limit: int, *, after: int | None = None, before: int | None = None) -> list[T]:
        with self._lock:
            return self._listing.page(limit, after=after, before=before)


def hygiene(ctx: Context) -> dict[str, list[Hygiene]]:
    """The mailbox hygiene findings of balise.domain.hygiene (the same rules the parameters and
    the doctor apply), grouped by practitioner profile."""
    from balise.domain.hygiene import findings_for

    found: dict[str, list[Hygiene]] = {p: [] for p in profile_ids(ctx.params)}
    for finding in findings_for(ctx.params.view()):
        level: Literal["warn", "refuse"] = "refuse" if finding.refused else "warn"
        for profile in finding.profiles:
            found.setdefault(profile, []).append(Hygiene(level, finding.fr, finding.en))
    return found


class WiredBackend:
    """Implements :class:`balise.ui.backend.KioskBackend` over one open Context. One lock
    serializes the database work of the worker threads (one SQLite connection)."""

    def __init__(
        self,
        ctx: Context,
        *,
        env: Mapping[str, str] | None,
        demo: DemoHooks | None,
        reader_watcher: ReaderWatcher,
        card_watcher: CardWatcher,
        signer_factory: Callable[[], TokenSigner],
        channel_launcher: Callable[[], ChannelLauncher] | None = None,
    ) -> None:
        self.ctx = ctx
        self.env = env
        self.demo = demo
        self._readers = reader_watcher
        self._cards = card_watcher
        self._signer_factory = signer_factory
        self._lock = threading.RLock()
        self._state_lock = threading.Lock()
        self._present: dict[str, CardEvent] = {}
        self._removed = threading.Event()
        self._signer: _GuardedSigner | None = None
        self._identity: CardIdentity | None = None
        from balise.services.technician import TechnicianGate

        self._gate = TechnicianGate(ctx.params, SqliteGateStore(ctx.store), ctx.journal, ctx.clock)
        self._watching: list[str] = []
        self._module_kind: ModuleKind | None = None
        # Passed the technician gate since technician mode was last left.
        self._technician = False
        # The card that proved who holds it (wizard, self-service); forgotten when it is pulled.
        self._proven: CardIdentity | None = None
        # The card relay (issue 20): its own process, started with the PIN typed here.
        self._channel_launcher = channel_launcher or self._relay_launcher
        self._channel: ChannelLauncher | None = None

    # -- events ----------------------------------------------------------------------------

    def start_reader_watch(self, callback: Callable[[ReaderEvent], None]) -> None:
        def on_event(event: ReaderEvent) -> None:
            if event.action == "removed":
                self._removed.set()  # a batch in flight stops at its next signature
                self._card_pulled()
            callback(event)

        self._readers.start(on_event)
        self._watching.append("readers")

    def start_card_watch(self, callback: Callable[[CardEvent], None]) -> None:
        def on_event(event: CardEvent) -> None:
            with self._state_lock:
                if event.action == "inserted":
                    self._present[event.reader] = event
                    self._removed = threading.Event()
                else:
                    self._present.pop(event.reader, None)
                    self._removed.set()
                    self._signer = None
                    self._identity = None
                    self._proven = None
            if event.action != "inserted":
                self._card_pulled()
            callback(event)

        self._cards.start(on_event)
        self._watching.append("cards")

    def stop_watches(self) -> None:
        self.close_channel()  # the kiosk ending ends the card's login in the relay too
        if "readers" in self._watching:
            self._readers.stop()
        if "cards" in self._watching:
            self._cards.stop()
        self._watching.clear()

    def card_status(self) -> CardStatus:
        with self._state_lock:
            cards = list(self._present.values())
        if not cards:
            return CardStatus(False)
        card = cards[0]
        if card.atr is None or card.kind is None:
            return CardStatus(
                True,
                None,
                False,
                "carte muette ou mal insérée",
                "card mute or inserted the wrong way",
            )
        if self._module_kind is None:
            with self._lock:
                self._module_kind = self.ctx.card_module_kind()
        ok, fr, en = can_sign(card.kind, self._module_kind)
        return CardStatus(True, card.kind, ok, fr, en)

    def clock_synchronized(self) -> bool:
        """The demo runs on machines without NTP: like the signing service, it is exempt."""
        with self._lock:
            demo = box_settings(self.ctx.params).mode == "demo"
            return demo or self.ctx.clock.is_synchronized()

    def update_in_progress(self) -> bool:
        """The update gate holds (`balise update gate`): no batch starts before the restart."""
        from balise.adapters.locks import update_gate_held

        return update_gate_held(self.ctx.data_dir / "locks")

    # -- Accueil -----------------------------------------------------------------------------

    def home(self) -> HomeSummary:
        with self._lock:
            transmission = self.ctx.transmission()
            profiles = []
            listings = SqliteListings(self.ctx.store)
            for settings in all_profiles(self.ctx.params):
                profile, name = settings.id, settings.display_name
                counts = listings.lot_counts(profile)  # counted by the database
                net: tuple[Literal["ok", "waiting", "idle", "unknown"], str, str]
                try:
                    status = transmission.status(profile)
                    net = (status.state, status.fr, status.en)
                except BaliseError as exc:
                    net = ("unknown", exc.fr, exc.en)
                profiles.append(
                    ProfileSummary(profile, name or profile, counts, net[0], net[1], net[2])
                )
            last, nxt = self._purge_times()
            alerts = listings.alerts().count()
            trust = listings.open_alerts_of(TRUST_ALERT_KINDS)
            update = self._update_status(listings)
            synced = self.clock_synchronized()
        try:
            weak = locate_kek(self.env).protection == "faible"
        except BaliseError:
            weak = True
        readers = tuple(r.name for r in self._safe_readers())
        backup = self._backup_status()
        window = self._window_minutes_left()
        full = self._disk_full_free_mib()
        return HomeSummary(
            readers,
            self.card_status(),
            tuple(profiles),
            last,
            nxt,
            alerts,
            synced,
            weak,
            None
            if backup is None or backup.age is None
            else int(backup.age.total_seconds() // 3600),
            backup is None or backup.too_old,
            window,
            full,
            trust,
            *update,
        )

    def _update_status(self, listings: SqliteListings) -> tuple[str, str | None, str | None, bool]:
        """The running version, how the last self-update ended (in the box's local time) and
        whether it was undone with its alert still unread (issue 14)."""
        from dataclasses import replace

        from balise.adapters.update_state import running_version
        from balise.app.update import last_update
        from balise.services.update import ROLLBACK_ALERT

        version = running_version(self.env)
        last = last_update(self.ctx)
        if last is None:
            return version, None, None, False
        fr, en = replace(last, when=last.when.astimezone()).words()
        undone = (
            last.outcome == "rolled_back"
            and listings.open_alerts_of(frozenset({ROLLBACK_ALERT})) > 0
        )
        return version, fr, en, undone

    def _disk_full_free_mib(self) -> int | None:
        """MiB left on the data partition when it is full, else None (read, never written)."""
        try:
            usage = shutil.disk_usage(self.ctx.data_dir)
        except OSError:
            return None
        return usage.free // (1024 * 1024) if is_full(usage.free, usage.total) else None

    def _window_minutes_left(self) -> int | None:
        try:
            status = self.provisioning_window()
        except (BaliseError, OSError):
            return None
        return -(-status.seconds_left // 60) if status.phase == "open" else None

    def _backup_status(self) -> BackupStatus | None:
        from balise.app.backup import backup_service

        try:
            with self._lock:
                return backup_service(self.ctx).status()
        except BaliseError:
            return None

    def _safe_readers(self) -> list[UsbReader]:
        try:
            return list(self._readers.present()) if "readers" in self._watching else []
        except Exception:  # noqa: BLE001 — a watcher problem only hides the reader names
            return []

    def _purge_times(self) -> tuple[str | None, str | None]:
        when = self.ctx.journal.last_time("purge.run")
        if when is None:
            return None, None
        last = datetime.fromisoformat(when)
        intervals = [p.pop3_interval for p in all_profiles(self.ctx.params)]
        nxt = last + timedelta(seconds=min(intervals)) if intervals else None
        # In the kiosk's language and the box's local time (balise.domain.vocabulary).
        return moment(last.astimezone()), moment(nxt.astimezone()) if nxt else None

    # -- the card channel to online services (issue 20) ----------------------------------------

    def _relay_launcher(self) -> ChannelLauncher:
        from balise.app.relay_main import RelayLauncher, relay_socket

        env = self.env if self.env is not None else os.environ
        socket_path = relay_socket(env)
        user = env.get("BALISE_RELAY_USER") or RELAY_USER
        try:
            uid = pwd.getpwnam(user).pw_uid
        except KeyError:
            return _Refused(f"Le compte {user} du logiciel métier n'existe pas sur ce boîtier.")
        return RelayLauncher(
            data_dir=self.ctx.data_dir,
            socket_path=socket_path,
            allowed_uids=[uid],
            run_dir=socket_path.parent / "relay",
            env=env,
        )

    def open_channel(self, pin: bytearray | None) -> str | None:
        try:
            self.close_channel()
            launcher = self._channel_launcher()
            self._channel = launcher
            launcher.start(pin)
        finally:
            if pin is not None:
                pin[:] = bytes(len(pin))
        return launcher.opened(CHANNEL_OPEN_TIMEOUT_S)

    def channel_state(self) -> ChannelState | None:
        launcher = self._channel
        return launcher.state() if launcher is not None else None

    def close_channel(self) -> None:
        launcher = self._channel
        if launcher is not None:
            launcher.stop()

    def _card_pulled(self) -> None:
        """The watchers saw the card (or its reader) go: the relay closes at once, said as the
        card pulled, instead of at its own next check of the card."""
        launcher = self._channel
        if launcher is not None:
            launcher.card_pulled()

    # -- the signing flow --------------------------------------------------------------------

    def examine_card(self) -> CardReport:
        from balise.services.signing import examine_card

        self.close_channel()  # never two programs logged in to the card (SignScreen says so)

        with self._lock:
            removed = self._removed
            signer = _GuardedSigner(self._signer_factory(), removed)
            report = examine_card(self.ctx.signing(), signer, self.ctx.cert_checker())
            with self._state_lock:
                self._signer, self._identity = signer, report.identity
            return report

    def ready_lots(self, profile: str) -> list[LotRecord]:
        with self._lock:
            return self.ctx.signing().ready_lots(profile)

    def sign(
        self,
        pin: bytearray | None,
        profile: str,
        lot_ids: Sequence[int],
        progress: Callable[[BatchEvent], None],
        cancel: threading.Event,
    ) -> BatchResult:
        from balise.services.signing import sign_with_card

        try:
            with self._state_lock:
                signer, identity = self._signer, self._identity
            if signer is None or identity is None:
                raise CardRemoved()
            with self._lock:
                return sign_with_card(
                    self.ctx.signing(),
                    signer,
                    pin,
                    identity,
                    profile,
                    lot_ids,
                    progress=progress,
                    cancel=cancel,
                )
        finally:
            if pin is not None:
                pin[:] = bytes(len(pin))

    def send_now(self, profile: str, progress: Callable[[SendStep], None]) -> SendReport:
        with self._lock:
            progress(SendStep(profile, "connecting"))
            service = self.ctx.transmission(timeout=15)
            try:
                outcome = asyncio.run(service.send_pending(profile))
            except BaliseError as exc:
                waiting = len(self.ctx.lots.lots(frozenset({LotState.SIGNED}), profile))
                return SendReport(0, waiting, exc.fr, exc.en)
            progress(
                SendStep(
                    profile, "done", len(outcome.sent), len(outcome.sent) + len(outcome.waiting)
                )
            )
            return SendReport(
                len(outcome.sent), len(outcome.waiting), outcome.error_fr, outcome.error_en
            )

    # -- Lots, Retours, Alertes ----------------------------------------------------------

    def _listings(self) -> SqliteListings:
        return SqliteListings(self.ctx.store)

    def lot_rows(self) -> Rows[LotRecord]:
        return _LockedRows(self._listings().lots(), self._lock)

    def refused_rows(self) -> Rows[QuarantineRecord]:
        return _LockedRows(self._listings().quarantine(), self._lock)

    def lot_detail(self, lot_id: int) -> LotDetail:
        with self._lock:
            lot = self.ctx.lots.get(lot_id)
            if lot is None:
                raise UnknownLot(lot_id)
            history = []
            for line in self.ctx.journal.about(f"lot:{lot_id}"):
                if line.kind != "lot.state":
                    continue
                entry = json.loads(line.details)
                history.append((line.time, str(entry.get("from", "")), str(entry.get("to", ""))))
            store = self.ctx.returns_store
            returns = tuple(store.returns_for_lot(lot_id))
            return LotDetail(lot, tuple(history), returns, tuple(store.payments(lot_id)))

    def return_rows(self) -> Rows[ReturnRecord]:
        return _LockedRows(self._listings().returns(), self._lock)

    def payment_rows(self) -> Rows[PaymentRecord]:
        return _LockedRows(self._listings().payments(), self._lock)

    def alert_rows(self) -> Rows[AlertRecord]:
        return _LockedRows(self._listings().alerts(), self._lock)

    def acknowledge_alert(self, alert_id: int) -> bool:
        with self._lock:
            return self.ctx.tracking(self.env).acknowledge(alert_id, "kiosk")

    # -- technician ------------------------------------------------------------------------

    def has_passphrase(self) -> bool:
        with self._lock:
            return self._gate.has_passphrase()

    def set_passphrase(self, text: str) -> None:
        with self._lock:
            self._gate.set_passphrase(text)
            self._technician = True  # the kiosk enters technician mode with it

    def check_passphrase(self, text: str) -> bool:
        return self.passphrase_attempt(text).verdict == "ok"

    def passphrase_attempt(self, text: str) -> Attempt:
        with self._lock:
            attempt = self._gate.attempt(text)
            self._technician = attempt.verdict == "ok"
            return attempt

    def passphrase_status(self) -> GateStatus:
        with self._lock:
            return self._gate.status()

    def technician_left(self) -> None:
        with self._lock:
            self._technician = False
            self.ctx.journal.append("technician.logout", "technician", {})

    # -- first-start wizard and self-service with the card ---------------------------------

    def needs_setup(self) -> bool:
        with self._lock:
            return not self.ctx.params.ids(Scope.PROFILE)

    def card_check(self) -> CardCheck:
        with self._lock:
            signer = _GuardedSigner(self._signer_factory(), self._removed)
            identity = signer.identify()
            verdict = self.ctx.cert_checker()(identity)
            pin = signer.pin_state()
            profiles = tuple(self.ctx.signing().profiles_for(identity))
            with self._state_lock:
                self._signer, self._identity, self._proven = signer, identity, None
        ok, fr, en = verdict.ok, verdict.words_fr, verdict.words_en
        if ok and pin.locked:
            ok, fr, en = False, "Carte bloquée (code PIN).", "Card locked (PIN)."
        return CardCheck(identity.holder_name, identity.rpps, ok, fr, en, pin.tries_left, profiles)

    def prove_card(self, pin: bytearray | None, purpose: str) -> tuple[str, str]:
        from balise.services.enrolment import prove_card

        try:
            with self._state_lock:
                signer, identity = self._signer, self._identity
            if signer is None or identity is None:
                raise CardRemoved()
            with self._lock:
                proven = prove_card(
                    signer,
                    identity,
                    pin,
                    check_cert=self.ctx.cert_checker(),
                    check_auth_cert=self._auth_checker(),
                    journal=self.ctx.journal,
                    purpose=purpose,
                )
            with self._state_lock:
                if self._identity is not identity:
                    raise CardRemoved()
                self._proven = identity
            return proven.fr, proven.en
        finally:
            if pin is not None:
                pin[:] = bytes(len(pin))

    def _auth_checker(self) -> AuthCertChecker:
        """The card's authentication certificate: chain to the configured IGC-Santé roots,
        digitalSignature usage, dates and the CRL kept for its issuer (as for signing)."""
        from balise.services.crl import revocation_words
        from balise.services.signing import CertVerdict

        box = box_settings(self.ctx.params)
        roots, intermediates, production = box.igc_roots, box.igc_intermediates, box.production
        crls = self.ctx.crl_service()
        clock = self.ctx.clock

        def check(der: bytes, extra: tuple[bytes, ...]) -> CertVerdict:
            from balise.adapters.certcheck import check_signature_certificate

            if not roots:
                return CertVerdict(
                    not production,
                    "racines IGC-Santé non configurées : chaîne non vérifiée",
                    "IGC-Santé roots not configured: chain not checked",
                )
            kept = crls.for_certificate(der)
            result = check_signature_certificate(
                der,
                moment=clock.now(),
                roots=roots,
                intermediates=[*extra, *intermediates],
                crl=kept.full.der if kept is not None and kept.full is not None else None,
                delta_crl=kept.delta.der if kept is not None and kept.delta is not None else None,
                usage="digital_signature",
            )
            if not result.ok:
                return CertVerdict(False, result.words, result.words_en)
            ok, fr, en = revocation_words(kept, production=production)
            return CertVerdict(ok, fr, en)

        return check

    def _proven_identity(self) -> CardIdentity:
        with self._state_lock:
            proven = self._proven
        if proven is None:
            raise StateError(
                "La carte n'a pas encore prouvé qui la détient (code PIN).",
                "The card has not proven who holds it yet (PIN).",
                code=CardCode.CARD_NOT_PROVEN,
            )
        return proven

    def _tester(self) -> ConnectionTester:
        import socket

        from balise.adapters.pop3 import Pop3Mailbox
        from balise.adapters.smtp import SmtpSender
        from balise.domain.lotmail import box_hostname
        from balise.services.connection import ConnectionTester

        sender = SmtpSender(local_hostname=box_hostname(socket.gethostname()), timeout=10)
        return ConnectionTester.for_box(self.ctx.params, sender, Pop3Mailbox(), timeout=10)

    def test_mail(self, typed: Mapping[str, str], profile: str | None = None) -> MailTest:
        from balise.domain.hygiene import webmail_domain
        from balise.services.connection import MailSettings

        with self._lock:
            settings = MailSettings.of_profile(self.ctx.params, profile).changed(typed)
            tester = self._tester()
            # The firewall lets out only what the parameters name: hold the typed servers open
            # for the test (never a consumer webmail host, which the test refuses anyway).
            held = [
                (host, port)
                for host, port in (
                    (settings.smtp_host, settings.smtp_port),
                    (settings.pop3_host, settings.pop3_port),
                )
                if host and webmail_domain(host) is None
            ]
            new = [d for d in held if d not in self._egress_now()]
            if held:
                self.ctx.params.hold_egress(held, by=self._who())
        report = tester.test(settings)  # the network, outside the lock
        if new and any(r.reason == "unreachable" for r in report.results):
            # Just held: the egress unit may still be loading them (a few seconds), once more.
            time.sleep(EGRESS_SETTLE_S)
            report = tester.test(settings)
        return MailTest(
            report.ok,
            tuple(r.fr for r in report.results),
            tuple(r.en for r in report.results),
        )

    def _egress_now(self) -> set[tuple[str, int]]:
        """The mail servers the saved parameters already let out (and those held)."""
        params = self.ctx.params
        out = set(params.held_egress())
        for p in all_profiles(params):
            for host, port in ((p.smtp_host, p.smtp_port), (p.pop3_host, p.pop3_port)):
                if host is not None:
                    out.add((host, port))
        return out

    def _who(self) -> str:
        with self._state_lock:
            proven = self._proven
        return proven.rpps if proven is not None else "technicien" if self._technician else "borne"

    def organism_ids(self) -> list[str]:
        with self._lock:
            return self.ctx.params.ids(Scope.ORGANISM)

    def check_values(self, scope: ParamScope, typed: Mapping[str, str]) -> None:
        from balise.domain.params import parse_value

        now = self.ctx.clock.now()
        for name, raw in typed.items():
            parse_value(SCHEMA[(Scope(scope), name)], raw, now)

    def complete_setup(self, plan: SetupPlan) -> str:
        from balise.services.params import Change
        from balise.services.setup import new_recovery_passphrase, setup_changes

        identity = self._proven_identity()
        test = self.test_mail(plan.mail())
        if not test.ok:
            raise ValidationError(
                "test de connexion en échec, rien n'est enregistré : " + " ; ".join(test.lines_fr),
                "connection test failed, nothing saved: " + "; ".join(test.lines_en),
                code=MailCode.MAIL_TEST_FAILED,
            )
        with self._lock:
            directory = box_settings(self.ctx.params).sesam_vitale_directory
        pems = {}
        for org in plan.organisms:
            if org.pem_path.strip() or not directory:
                pems[org.ident] = read_pem_file(org.pem_path)
        with self._lock:
            if profile_ids(self.ctx.params):
                raise StateError(
                    "Ce boîtier a déjà un praticien : l'assistant de mise en service ne sert "
                    "qu'au premier démarrage.",
                    "This box already has a practitioner: the setup wizard only serves the first "
                    "start.",
                    code=SetupCode.SETUP_DONE,
                )
            changes = setup_changes(plan, identity, "p1", pems)
            passphrase = ""
            if not box_settings(self.ctx.params).has_recovery_passphrase:
                passphrase = new_recovery_passphrase()
                changes.append(Change("recovery_passphrase", passphrase))
            self.ctx.params.apply(changes, by=identity.rpps)
            self.ctx.journal.append(
                "setup.completed",
                "profile:p1",
                {"by": identity.rpps, "organisms": [o.ident for o in plan.organisms]},
            )
            from_directory = [o.ident for o in plan.organisms if o.ident not in pems]
            if from_directory:
                # At once rather than at the agent's next weekly refresh; journaled (and alerted
                # when refused) by the organisms' service, retried by the agent when unreachable.
                with contextlib.suppress(BaliseError):
                    self.ctx.organism_certs().refresh(from_directory)
        return passphrase

    def _my_profile(self, identity: CardIdentity) -> str:
        """The profile whose TITULAR is this card (a locum's card signs, it changes nothing)."""
        mine = [p for p, role in self.ctx.signing().profiles_for(identity) if role == "titulaire"]
        if not mine:
            raise StateError(
                f"{identity.holder_name} n'est titulaire d'aucun profil de ce boîtier : rien à "
                "modifier ici.",
                f"{identity.holder_name} is the titular of no profile on this box: nothing to "
                "change here.",
                code=CardCode.NOT_TITULAR,
            )
        return mine[0]

    def my_parameters(self) -> tuple[str, list[ParamLine]]:
        identity = self._proven_identity()
        with self._lock:
            profile = self._my_profile(identity)
            lines = [
                ParamLine(
                    r.name,
                    SCHEMA[(Scope.PROFILE, r.name)].label_fr,
                    SCHEMA[(Scope.PROFILE, r.name)].label_en,
                    r.shown,
                )
                for r in self.ctx.params.rows()
                if r.scope is Scope.PROFILE and r.ident == profile
            ]
        return profile, lines

    def change_bal_password(self, password: str) -> MailTest:
        from balise.services.params import Change

        identity = self._proven_identity()
        with self._lock:
            profile = self._my_profile(identity)
        typed = {"smtp.password": password, "pop3.password": password}
        test = self.test_mail(typed, profile)
        if test.ok:
            with self._lock:
                self.ctx.params.apply(
                    [Change(name, raw, profile=profile) for name, raw in typed.items()],
                    by=identity.rpps,
                )
        return test

    def _locum_pems(self, profile: str) -> list[str]:
        return list(profile_settings(self.ctx.params, profile).signers_locums)

    def locums(self) -> list[tuple[str, str]]:
        from balise.services.setup import certificate_holder
        from balise.services.signing import fingerprint

        identity = self._proven_identity()
        with self._lock:
            pems = self._locum_pems(self._my_profile(identity))
        return [(fingerprint(_der(pem)), certificate_holder(pem)) for pem in pems]

    def add_locum(self, pem_path: str) -> None:
        identity = self._proven_identity()
        text = read_pem_file(pem_path)
        with self._lock:
            profile = self._my_profile(identity)
            pems = self._locum_pems(profile)
            self.ctx.params.set(
                "signers.locums", "".join([*pems, text]), profile=profile, by=identity.rpps
            )

    def remove_locum(self, fingerprint: str) -> None:
        from balise.services.signing import fingerprint as fingerprint_of

        identity = self._proven_identity()
        with self._lock:
            profile = self._my_profile(identity)
            kept = [p for p in self._locum_pems(profile) if fingerprint_of(_der(p)) != fingerprint]
            self.ctx.params.set("signers.locums", "".join(kept), profile=profile, by=identity.rpps)

    # -- the provisioning window -------------------------------------------------------------

    def _technician_only(self) -> None:
        if not self._technician:
            raise StateError(
                "Réservé au mode technicien (phrase de passe).",
                "Technician mode only (passphrase).",
                code=SetupCode.TECH_REQUIRED,
            )

    def provisioning_window(self) -> WindowStatus:
        return self.ctx.provisioning(self.env).status()

    def open_provisioning_window(self) -> None:
        with self._lock:
            self._technician_only()
            self.ctx.provisioning(self.env).open()

    def close_provisioning_window(self) -> None:
        with self._lock:
            self._technician_only()
            self.ctx.provisioning(self.env).close()

    def cancel_lot(self, lot_id: int) -> None:
        with self._lock:
            lot = self.ctx.lots.get(lot_id)
            if lot is None:
                raise UnknownLot(lot_id)
            self.ctx.transitions().move(
                lot_id, lot.state, LotState.CANCELLED, note="borne, mode technicien"
            )

    def resend_lot(self, lot_id: int) -> None:
        with self._lock:
            self.ctx.transmission().resend(lot_id)

    def doctor(self) -> list[DoctorLine]:
        from balise.app.doctor import run_checks

        checks = run_checks(self.ctx.data_dir, env=self.env, clock=self.ctx.clock)
        return [DoctorLine(c.name, c.status, c.message) for c in checks]

    def verify_journal(self) -> JournalCheck:
        with self._lock:
            report = self.ctx.journal.verify()
        return JournalCheck(report.ok, report.count, report.head_hash, report.describe())

    def trust(self) -> list[tuple[str, str]]:
        with self._lock:
            organisms = self.ctx.organism_certs().listing()
            crls = self.ctx.crl_service().status()
        lines: list[tuple[str, str]] = []
        for org in organisms:
            used = {"annuaire": "l'annuaire", "saisi": "la saisie", "aucun": "aucun certificat"}
            lines.append(
                (
                    f"Organisme {org.organism} : chiffre vers {used[org.used]}",
                    f"Organism {org.organism}: encrypts to "
                    + {"annuaire": "the directory's", "saisi": "the hand-set", "aucun": "none"}[
                        org.used
                    ],
                )
            )
            for c in org.certificates:
                lines.append(
                    (
                        f"  {c.source} · {c.role} · jusqu'au {c.not_after[:10]} · {c.subject}",
                        f"  {c.source} · {c.role} · until {c.not_after[:10]} · {c.subject}",
                    )
                )
            if org.last_check is not None:
                lines.append(
                    (
                        f"  annuaire interrogé le {org.last_check[:16].replace('T', ' ')}"
                        + (f" : {org.last_error}" if org.last_error else ""),
                        f"  directory asked on {org.last_check[:16].replace('T', ' ')}"
                        + (f": {org.last_error}" if org.last_error else ""),
                    )
                )
        for issuer in crls:
            if issuer.age is None:
                words = ("aucune liste de révocation", "no revocation list")
            else:
                words = issuer.age.words()
            lines.append(
                (
                    f"Autorité {issuer.subject} : {words[0]}",
                    f"Authority {issuer.subject}: {words[1]}",
                )
            )
        return lines

    def param_ids(self, scope: ParamScope) -> list[str]:
        with self._lock:
            self._technician_only()
            return self.ctx.params.ids(Scope(scope))

    def param_fields(self, scope: ParamScope, ident: str) -> list[ParamField]:
        from balise.services.params import editable, show

        wanted = Scope(scope)
        profile, organism = _where(wanted, ident)
        with self._lock:
            self._technician_only()
            out = []
            for (sc, name), spec in SCHEMA.items():
                if sc is not wanted:
                    continue
                value = self.ctx.params.get(name, profile=profile, organism=organism)
                stored = self.ctx.vault.get(_key(wanted, ident), name)
                out.append(
                    ParamField(
                        name,
                        spec.label_fr,
                        spec.label_en,
                        show(spec, stored) if stored is not None or value is None else
                        f"{show(spec, value)} (par défaut)",
                        spec.secret,
                        name in CERTIFICATE_PARAMS,
                        editable(spec, value),
                    )
                )  # fmt: skip
            return out

    def set_parameter(self, scope: ParamScope, ident: str, name: str, raw: str) -> None:
        with self._lock:
            self._technician_only()
            if name in CERTIFICATE_PARAMS:
                raw = read_pem_file(raw)
            profile, organism = _where(Scope(scope), ident)
            self.ctx.params.set(name, raw, profile=profile, organism=organism, by="technicien")

    def parameters(self) -> list[ProfileParams]:
        with self._lock:
            rows = self.ctx.params.rows()
            findings = hygiene(self.ctx)
            out = []
            for profile in profile_ids(self.ctx.params):
                lines = []
                for row in rows:
                    if row.scope is Scope.PROFILE and row.ident == profile:
                        spec = SCHEMA[(Scope.PROFILE, row.name)]
                        lines.append(ParamLine(row.name, spec.label_fr, spec.label_en, row.shown))
                out.append(ProfileParams(profile, tuple(lines), tuple(findings.get(profile, ()))))
            return out


# After holding new destinations open, how long the egress unit may take to load them before the
# connection test is tried once more.
EGRESS_SETTLE_S = 3.0

# Parameters holding certificates: on the kiosk they are read from a PEM file (a USB key).
CERTIFICATE_PARAMS = frozenset(
    {
        "ca_bundle",
        "igc_roots",
        "igc_intermediates",
        "sesam_vitale_roots",
        "signers.titular",
        "signers.locums",
        "recipient_certs",
        "return_signing_cert",
    }
)
MAX_PEM_FILE = 1024 * 1024


def _where(scope: Scope, ident: str) -> tuple[str | None, str | None]:
    """(profile, organism) for the parameter service's keywords."""
    return (
        ident if scope is Scope.PROFILE else None,
        ident if scope is Scope.ORGANISM else None,
    )


def _key(scope: Scope, ident: str) -> str:
    from balise.services.params import scope_key

    return scope_key(scope, ident)


def _der(pem: str) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    return x509.load_pem_x509_certificate(pem.encode("ascii")).public_bytes(Encoding.DER)


def read_pem_file(path: str) -> str:
    """The text of a PEM file named by the technician (a USB key): an absolute path to a regular
    file of at most 1 MiB, not followed through a symbolic link."""
    import os
    import stat

    where = path.strip()
    if not where.startswith("/") or "\x00" in where:
        raise ValidationError(
            "chemin absolu du fichier PEM attendu (par exemple /media/usb/certificat.pem)",
            "absolute path of the PEM file expected (e.g. /media/usb/certificate.pem)",
            code=ParamCode.PARAM_FILE,
        )
    try:
        fd = os.open(where, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise ValidationError(
            f"fichier illisible : {where} ({exc.strerror})",
            f"cannot read file: {where} ({exc.strerror})",
            code=ParamCode.PARAM_FILE,
        ) from exc
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise ValidationError(
                f"{where} n'est pas un fichier", f"{where} is not a file", code=ParamCode.PARAM_FILE
            )
        data = handle.read(MAX_PEM_FILE + 1)
    if len(data) > MAX_PEM_FILE:
        raise ValidationError(
            f"{where} dépasse 1 Mio : ce n'est pas un fichier de certificats",
            f"{where} is over 1 MiB: not a certificate file",
            code=ParamCode.PARAM_FILE,
        )
    return data.decode("ascii", errors="replace")


# The card relay (issue 20): the account the practice software's SSH forwarding runs as
# (BALISE_RELAY_USER; the socket: relay_main.relay_socket), and how long the kiosk waits for the
# relay to log in and open its socket.
RELAY_USER = "echange"
CHANNEL_OPEN_TIMEOUT_S = 60.0


class ChannelLauncher(Protocol):
    """What the kiosk does with the relay process (app/relay_main.RelayLauncher)."""

    def start(self, pin: bytearray | None) -> None: ...

    def opened(self, timeout: float) -> str | None: ...

    def state(self) -> ChannelState | None: ...

    def card_pulled(self) -> None: ...

    def stop(self) -> None: ...


class _Refused:
    """A relay that cannot even start here: its words, no process, no state."""

    def __init__(self, words: str) -> None:
        self.words = words

    def start(self, pin: bytearray | None) -> None:
        if pin is not None:
            pin[:] = bytes(len(pin))

    def opened(self, timeout: float) -> str | None:
        return self.words

    def state(self) -> ChannelState | None:
        return None

    def card_pulled(self) -> None:
        pass

    def stop(self) -> None:
        pass


# Alerts about the box's trust anchors: certificates to renew, revocation lists out of date, an
# organism's certificate refused or changed. Accueil names them apart from the others.
TRUST_ALERT_KINDS = frozenset(
    {"cert_expiring", "cert_expired", "crl_stale", "organism_cert_invalid", "organism_cert_changed"}
)


def build_backend(
    ctx: Context,
    *,
    env: Mapping[str, str] | None = None,
    demo: DemoHooks | None = None,
    reader_watcher: ReaderWatcher | None = None,
    card_watcher: CardWatcher | None = None,
    signer_factory: Callable[[], TokenSigner] | None = None,
    channel_launcher: Callable[[], ChannelLauncher] | None = None,
) -> KioskBackend:
    """The kiosk's backend on ``ctx``: udev and PC/SC watchers and the configured PKCS#11 module
    unless given (tests and the demo pass their own where the machine has no udev events)."""
    if reader_watcher is None:
        from balise.adapters.udev import UdevReaderWatcher

        reader_watcher = UdevReaderWatcher()
    if card_watcher is None:
        from balise.adapters.pcsc import PcscCardWatcher

        card_watcher = PcscCardWatcher()
    return WiredBackend(
        ctx,
        env=env,
        demo=demo,
        reader_watcher=reader_watcher,
        card_watcher=card_watcher,
        signer_factory=signer_factory or ctx.card_signer,
        channel_launcher=channel_launcher,
    )


__all__ = [
    "CardError",
    "StateError",
    "WiredBackend",
    "build_backend",
    "hygiene",
]
