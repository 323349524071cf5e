"""What the kiosk screens need from the box, as one Protocol of plain calls returning typed data;
the composition root (balise.app.kiosk) implements it with the real services and adapters."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar

from balise.domain.lotstate import LotState
from balise.ui.deferred import CardStatus, DeferredBackend, deferred_backend

if TYPE_CHECKING:  # the services (CMS, Argon2id) and ports load with the backend, not the screens
    from balise.domain.devices import CardEvent, ReaderEvent
    from balise.domain.lotrecord import LotRecord, QuarantineRecord
    from balise.domain.mailrecords import AlertRecord, PaymentRecord, ReturnRecord
    from balise.services.provisioning import WindowStatus
    from balise.services.relay import ChannelState
    from balise.services.setup import SetupPlan
    from balise.services.signing import BatchEvent, BatchResult, CardReport
    from balise.services.technician import Attempt, GateStatus

__all__ = [
    "LAST_ID",
    "CardCheck",
    "CardStatus",
    "DeferredBackend",
    "DoctorLine",
    "HomeSummary",
    "Hygiene",
    "JournalCheck",
    "KioskBackend",
    "LotDetail",
    "MailTest",
    "ParamField",
    "ParamLine",
    "ProfileParams",
    "ProfileSummary",
    "Rows",
    "SendReport",
    "SendStep",
    "deferred_backend",
]


@dataclass(frozen=True, slots=True)
class CardCheck:
    """The card read WITHOUT PIN for the wizard and self-service: who, and whether it may go on
    (a revoked, expired or unknown card is refused here, before anything else is shown)."""

    name: str
    rpps: str
    ok: bool
    fr: str
    en: str
    tries_left: int
    profiles: tuple[tuple[str, str], ...] = ()  # (profile, role) this card signs for


@dataclass(frozen=True, slots=True)
class MailTest:
    """A mailbox connection test, one line per server (or the hygiene refusal)."""

    ok: bool
    lines_fr: tuple[str, ...]
    lines_en: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ProfileSummary:
    profile: str
    name: str
    counts: Mapping[LotState, int]
    network_state: Literal["ok", "waiting", "idle", "unknown"]
    network_fr: str
    network_en: str


@dataclass(frozen=True, slots=True)
class HomeSummary:
    readers: tuple[str, ...]
    card: CardStatus
    profiles: tuple[ProfileSummary, ...]
    last_purge: str | None  # "JJ/MM/AAAA HH:MM" or None
    next_purge: str | None
    alerts: int
    clock_synchronized: bool
    protection_weak: bool
    backup_age_hours: int | None = None  # None: no good backup yet
    backup_too_old: bool = False
    # The provisioning window is open (administration SSH reachable from the LAN): minutes left.
    provisioning_minutes_left: int | None = None
    # The data partition has no room left (domain/diskspace.py): MiB still free.
    disk_full_free_mib: int | None = None
    # Among the alerts: certificates to renew, revocation lists out of date (see Alertes).
    trust_alerts: int = 0
    # The version running, how the last self-update ended (None: none yet) and whether it was
    # undone with its alert still unread.
    version: str = ""
    last_update_fr: str | None = None
    last_update_en: str | None = None
    update_undone: bool = False


@dataclass(frozen=True, slots=True)
class SendStep:
    """Progress of the sending after a batch: which profile, what is happening."""

    profile: str
    kind: Literal["connecting", "done"]
    sent: int = 0
    total: int = 0


@dataclass(frozen=True, slots=True)
class SendReport:
    """The sending after a batch: sent now, left waiting for the network (retried by the agent)."""

    sent: int
    waiting: int
    error_fr: str | None = None
    error_en: str | None = None


@dataclass(frozen=True, slots=True)
class LotDetail:
    lot: LotRecord
    history: tuple[tuple[str, str, str], ...]  # (when, from state, to state), oldest first
    returns: tuple[ReturnRecord, ...] = ()
    payments: tuple[PaymentRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class DoctorLine:
    name: str
    status: Literal["ok", "warn", "problem"]
    message: str


@dataclass(frozen=True, slots=True)
class JournalCheck:
    ok: bool
    count: int
    head_hash: str
    fr: str


@dataclass(frozen=True, slots=True)
class ParamLine:
    name: str
    label_fr: str
    label_en: str
    shown: str  # secrets masked


@dataclass(frozen=True, slots=True)
class ParamField:
    """One parameter as the technician edits it: a secret is never shown back (masked)."""

    name: str
    label_fr: str
    label_en: str
    shown: str
    secret: bool
    certificates: bool  # typed as the path of a PEM file (a USB key), not pasted
    value: str = field(default="", repr=False)  # the editable text; "" for secrets and lists


ParamScope = Literal["global", "profile", "organism"]


@dataclass(frozen=True, slots=True)
class Hygiene:
    level: Literal["warn", "refuse"]
    fr: str
    en: str


@dataclass(frozen=True, slots=True)
class ProfileParams:
    profile: str
    lines: tuple[ParamLine, ...]
    findings: tuple[Hygiene, ...] = field(default=())


T_co = TypeVar("T_co", covariant=True)

# ``page(..., before=LAST_ID)``: the last rows of a listing.
LAST_ID = 2**63 - 1


class Rows(Protocol[T_co]):
    """A listing too long to load whole, read a page at a time in id order (blocking calls:
    screens make them from thread workers)."""

    def count(self) -> int: ...

    def page(
        self, limit: int, *, after: int | None = None, before: int | None = None
    ) -> Sequence[T_co]:
        """Up to ``limit`` rows: those just after id ``after`` (the first rows when both are
        None), or those just before id ``before`` (``LAST_ID``: the last rows)."""
        ...


class KioskBackend(Protocol):
    """Every call may block (database, card, network): screens call them from thread workers."""

    # -- Accueil and events --------------------------------------------------------------
    def home(self) -> HomeSummary: ...

    def start_reader_watch(self, callback: Callable[[ReaderEvent], None]) -> None:
        """Reader plugged/unplugged events, delivered on a watcher thread."""
        ...

    def start_card_watch(self, callback: Callable[[CardEvent], None]) -> None:
        """Card inserted/removed events, delivered on a watcher thread."""
        ...

    def stop_watches(self) -> None: ...

    def card_status(self) -> CardStatus: ...

    def clock_synchronized(self) -> bool: ...

    def update_in_progress(self) -> bool: ...

    # -- the signing flow ------------------------------------------------------------------
    def examine_card(self) -> CardReport: ...

    def ready_lots(self, profile: str) -> list[LotRecord]: ...

    def sign(
        self,
        pin: bytearray | None,
        profile: str,
        lot_ids: Sequence[int],
        progress: Callable[[BatchEvent], None],
        cancel: threading.Event,
    ) -> BatchResult:
        """One login, the batch, the PIN buffer overwritten whatever happens."""
        ...

    def send_now(self, profile: str, progress: Callable[[SendStep], None]) -> SendReport: ...

    # -- Lots, Retours, Alertes ----------------------------------------------------------
    def lot_rows(self) -> Rows[LotRecord]:
        """Every lot, in id order (cheap: no database work until a page is asked)."""
        ...

    def refused_rows(self) -> Rows[QuarantineRecord]: ...

    def lot_detail(self, lot_id: int) -> LotDetail: ...

    def return_rows(self) -> Rows[ReturnRecord]: ...

    def payment_rows(self) -> Rows[PaymentRecord]: ...

    def alert_rows(self) -> Rows[AlertRecord]:
        """The alerts not acknowledged yet."""
        ...

    def acknowledge_alert(self, alert_id: int) -> bool: ...

    # -- technician ------------------------------------------------------------------------
    def has_passphrase(self) -> bool: ...

    def set_passphrase(self, text: str) -> None: ...

    def check_passphrase(self, text: str) -> bool: ...

    def passphrase_attempt(self, text: str) -> Attempt: ...

    def passphrase_status(self) -> GateStatus: ...

    def cancel_lot(self, lot_id: int) -> None: ...

    def resend_lot(self, lot_id: int) -> None: ...

    def doctor(self) -> list[DoctorLine]: ...

    def verify_journal(self) -> JournalCheck: ...

    def parameters(self) -> list[ProfileParams]: ...

    def param_ids(self, scope: ParamScope) -> list[str]:
        """The practitioner profiles or organisms configured (technician mode only)."""
        ...

    def param_fields(self, scope: ParamScope, ident: str) -> list[ParamField]:
        """Every parameter of the schema for that scope, secrets masked (technician mode only)."""
        ...

    def set_parameter(self, scope: ParamScope, ident: str, name: str, raw: str) -> None:
        """One change through the parameter service (validation, hygiene, journal "by
        technicien"); a certificate parameter's ``raw`` is the path of a PEM file. Refused
        unless the technician gate was passed."""
        ...

    def trust(self) -> list[tuple[str, str]]:
        """The trust anchors in words (French, English), one line each: every organism's
        certificates (source, until when, last directory check) and the revocation lists kept
        for each accepted authority."""
        ...

    def technician_left(self) -> None:
        """Journal that technician mode was left (idle or by the key)."""
        ...

    # -- first-start wizard and self-service with the card ---------------------------------
    def needs_setup(self) -> bool:
        """No practitioner configured yet: the first-start wizard is offered."""
        ...

    def card_check(self) -> CardCheck:
        """The card in the reader read without PIN (identity, signature certificate verdict)."""
        ...

    def prove_card(self, pin: bytearray | None, purpose: str) -> tuple[str, str]:
        """The card proves who holds it (challenge signed by its authentication key, verified
        with its IGC-Santé chain and revocation); the PIN buffer is overwritten; the words."""
        ...

    def test_mail(self, typed: Mapping[str, str], profile: str | None = None) -> MailTest:
        """The connection test on ``profile``'s saved settings with ``typed`` applied."""
        ...

    def organism_ids(self) -> list[str]:
        """The organisms already configured (by the image or the technician)."""
        ...

    def check_values(self, scope: ParamScope, typed: Mapping[str, str]) -> None:
        """Each typed value parsed by the parameter schema (ValidationError in words)."""
        ...

    def complete_setup(self, plan: SetupPlan) -> str:
        """Save the wizard's settings for the proven card (connection tested again first); the
        first backup recovery passphrase, to show once ("" when one was already set)."""
        ...

    def my_parameters(self) -> tuple[str, list[ParamLine]]:
        """The proven card's own profile (titular) and its parameters, secrets masked."""
        ...

    def change_bal_password(self, password: str) -> MailTest:
        """Self-service: the new BAL password tested on both servers, saved only when it works."""
        ...

    def locums(self) -> list[tuple[str, str]]:
        """(fingerprint, holder) of each locum allowed to sign for the proven card's profile."""
        ...

    def add_locum(self, pem_path: str) -> None: ...

    def remove_locum(self, fingerprint: str) -> None: ...

    # -- the card channel to online services (issue 20) ------------------------------------------
    def open_channel(self, pin: bytearray | None) -> str | None:
        """Start the card relay with the PIN typed on the box (overwritten here; None: the
        reader's keypad) and wait until its channel is open (None) or it refused (its words,
        French: the relay process speaks the box's language)."""
        ...

    def channel_state(self) -> ChannelState | None:
        """The relay's last state (None when none was started or it wrote nothing)."""
        ...

    def close_channel(self) -> None:
        """The practitioner's key: the channel and the card's login end now."""
        ...

    # -- the provisioning window (technician mode only) ---------------------------------------
    def provisioning_window(self) -> WindowStatus:
        """The window as the root helper reports it: phase, time left, address, fingerprint."""
        ...

    def open_provisioning_window(self) -> None:
        """Ask the root helper to open it (refused unless the technician gate was passed)."""
        ...

    def close_provisioning_window(self) -> None:
        """Ask the root helper to close it now (refused unless the technician gate was passed)."""
        ...
