"""Ports: the Protocols the core talks to; adapters implement them, tests plug real components in."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from balise.domain.backup import BackupOutcome, PruneOutcome, RestoredFacts, RetentionOutcome
from balise.domain.card import CardIdentity, CardProof, PinState
from balise.domain.classify import Classification, ClassifyPolicy
from balise.domain.crl import StoredCrl
from balise.domain.devices import CardEvent, ReaderEvent, UsbReader
from balise.domain.journal import JournalEntry, JsonValue
from balise.domain.lotmail import Delivery, SendReport
from balise.domain.lotrecord import LotRecord, QuarantineRecord
from balise.domain.lotstate import LotState
from balise.domain.mailrecords import AlertRecord, MailQuarantineRecord, PaymentRecord, ReturnRecord
from balise.domain.mailtransport import Pop3Settings, SmtpTls, Unfetched
from balise.domain.params import Value
from balise.domain.provisioning import WindowState
from balise.domain.servercert import MailService, SeenServerCert, ServerCertificate
from balise.domain.technician import GateRecord
from balise.domain.update import LastUpdate, PendingUpdate


class Clock(Protocol):
    """Wall clock in UTC, and whether it is synchronized (a Raspberry Pi has no RTC)."""

    def now(self) -> datetime: ...

    def is_synchronized(self) -> bool: ...


class Journal(Protocol):
    """The append-only, hash-chained journal."""

    def append(
        self,
        kind: str,
        subject: str = "",
        details: Mapping[str, JsonValue] | None = None,
        *,
        actor: str | None = None,
    ) -> JournalEntry: ...

    def entries(self, since_seq: int = 0) -> Iterator[JournalEntry]: ...

    def head(self) -> JournalEntry | None: ...


class Vault(Protocol):
    """Encrypted parameters; values are typed and decrypted only on demand."""

    def put(self, scope_id: str, name: str, value: Value) -> None: ...

    def get(self, scope_id: str, name: str) -> Value | None: ...

    def delete(self, scope_id: str, name: str) -> None: ...

    def names(self) -> list[tuple[str, str]]: ...

    def transaction(self) -> AbstractContextManager[None]: ...


class LotStore(Protocol):
    """Lots and refused files; state changes are compare-and-set inside write transactions."""

    def transaction(self) -> AbstractContextManager[None]: ...

    def accepted_keys(self) -> frozenset[tuple[str, str, str]]: ...

    def accepted_hashes(self) -> frozenset[str]: ...

    def find_by_hash(self, sha256: str) -> LotRecord | None: ...

    def find_by_key(self, emitter: str, lot_number: str, lot_date: str) -> LotRecord | None: ...

    def find_quarantine(self, sha256: str, name: str) -> QuarantineRecord | None: ...

    def add_lot(self, record: LotRecord, content: bytes) -> int: ...

    def add_quarantine(self, record: QuarantineRecord, content: bytes | None) -> int:
        """Record a refused file; ``content`` None keeps only its metadata, hash and reasons
        (``record.content_dropped`` says why)."""
        ...

    def quarantine_content_size(self) -> int:
        """Bytes of refused files' content the store keeps."""
        ...

    def get(self, lot_id: int) -> LotRecord | None: ...

    def content(self, lot_id: int) -> bytes: ...

    def lots(
        self, states: frozenset[LotState] | None = None, profile: str | None = None
    ) -> list[LotRecord]: ...

    def quarantined(self) -> list[QuarantineRecord]: ...

    def set_state(
        self, lot_id: int, expected: LotState, target: LotState, when: str, **fields: object
    ) -> None: ...

    def blob(self, lot_id: int, name: str) -> bytes | None: ...


class Exchange(Protocol):
    """The exchange account's folders: lots dropped in ``depot/new``, returns out in ``retours/``."""

    def pending(self) -> list[str]:
        """Every entry of ``depot/new`` (not only regular files), oldest first."""
        ...

    def read(self, name: str, limit: int) -> tuple[bytes, int]:
        """At most ``limit`` bytes and the real size; UnreadableFileError for what is no
        readable regular file (a link is never followed)."""
        ...

    def remove(self, name: str) -> None: ...

    def set_aside(self, name: str) -> str:
        """Move the entry out of ``depot/new``, whole, never deleted; returns where it went."""
        ...

    def publish(self, relpath: str, data: bytes, *, durable: bool = True) -> None: ...

    def publish_batch(self, files: Sequence[tuple[str, bytes]]) -> int:
        """Publish under ``retours/`` together, each file whole or absent, leaving alone a file
        already holding the same bytes; returns how many were written."""
        ...

    def sync(self) -> None: ...

    def published(self, relpath: str, limit: int) -> bytes | None:
        """At most ``limit`` bytes of a file published under ``retours/``, or None."""
        ...

    def prune(self, folder: str, older_than: float, limit: int = 10_000) -> int:
        """Remove the files of ``retours/<folder>/`` older than ``older_than`` (epoch seconds)."""
        ...


class ProvisioningWindow(Protocol):
    """The root side of the provisioning window seen from the unprivileged kiosk: it drops a
    request and reads the state, nothing more."""

    def request(self, what: Literal["open", "close"]) -> None: ...

    def read(self) -> WindowState: ...


class TokenSession(Protocol):
    """A logged-in session on the card; closed after the batch, never reused."""

    def sign(self, data: bytes) -> bytes:
        """sha256WithRSAEncryption over ``data`` (the card hashes); a context-specific login per
        call where the key demands it (CKA_ALWAYS_AUTHENTICATE)."""
        ...

    def close(self) -> None: ...


class TokenSigner(Protocol):
    """The card's PKCS#11 side: identity without PIN, fresh PIN state, exactly one login per PIN."""

    def identify(self) -> CardIdentity: ...

    def pin_state(self) -> PinState: ...

    def login(
        self, pin: bytearray | None, *, allowed_signatures: int | None = None
    ) -> TokenSession:
        """One C_Login with ``pin`` (None on a protected authentication path); WrongPin,
        PinLocked (no attempt at all) or CardRemoved; never retried. ``allowed_signatures`` is
        the size of the confirmed batch: no signature beyond it (one context-specific login per
        signature where the key demands it)."""
        ...


class CardAuthenticator(Protocol):
    """The card's side of a proof of who holds it (balise.adapters.pkcs11.Pkcs11Signer.prove)."""

    def prove(self, pin: bytearray | None, challenge: bytes) -> CardProof: ...


class ReaderWatcher(Protocol):
    """USB smart-card readers plugged in and out (udev); bursts arrive coalesced."""

    def start(self, callback: Callable[[ReaderEvent], None]) -> None:
        """Begin watching; readers already present are reported as "added" first. ``callback``
        runs on the watcher's own thread."""
        ...

    def stop(self) -> None: ...

    def present(self) -> list[UsbReader]: ...


class CardWatcher(Protocol):
    """Cards inserted and removed in the PC/SC readers, with the ATR and its kind."""

    def start(self, callback: Callable[[CardEvent], None]) -> None:
        """Begin watching; cards already in a reader are reported as "inserted" first.
        ``callback`` runs on the watcher's own thread."""
        ...

    def stop(self) -> None:
        """Returns within about a second (never pyscard's 60 s monitor wait)."""
        ...

    def present(self) -> list[CardEvent]:
        """The cards in the readers now, as "inserted" events."""
        ...


class MailSender(Protocol):
    """SMTP submission: ONE TLS session for a list of messages, AUTH only after TLS."""

    async def send_batch(
        self,
        host: str,
        port: int,
        tls: SmtpTls,
        user: str,
        password: str,
        ca_pem: Sequence[str],
        messages: Sequence[tuple[str, str, bytes]],
        on_accepted: Callable[[int], None],
    ) -> SendReport:
        """Send ``(mail_from, rcpt, data)`` in order over TLS verified against ``ca_pem`` (the
        ``ca_bundle`` setting; empty = the system's store); ``on_accepted(index)`` runs right
        after each 250. A message refused by the server is reported and the session goes on;
        anything that breaks the session raises a SmtpError (the rest is not sent)."""
        ...


class Outbox(Protocol):
    """The sending side of the lots: frozen mails and the compostage counter, written inside the
    caller's lot transaction (LotStore.transaction)."""

    def take_counter(self, name: str) -> int:
        """The counter's current value, and store the next one (wrapping at 99999)."""
        ...

    def store_mail(self, lot_id: int, mail: bytes) -> None: ...

    def delivery(self, lot_id: int) -> Delivery | None: ...

    def set_status(self, profile: str, status: Mapping[str, str] | None) -> None:
        """The last sending outcome of a profile's mailbox (None: it went through)."""
        ...

    def status(self, profile: str) -> dict[str, str] | None: ...


# --------------------------------------------------------------------------------------------
# Mail returns: the practitioner's mailbox (POP3) and the out-of-process classifier
# --------------------------------------------------------------------------------------------


class MailboxSession(Protocol):
    """One logged-in POP3 session over verified TLS. DELE takes effect only at ``quit``.

    A message that cannot be handed over within its bounds comes back as :class:`Unfetched`, the
    session still usable; an error raised means the session itself is lost (no QUIT then)."""

    @property
    def bytes_received(self) -> int: ...

    @property
    def server_certificate(self) -> ServerCertificate | None:
        """The certificate the server presented in the session's verified TLS handshake (None
        when it could not be read)."""
        ...

    def uidl(self) -> dict[int, str]: ...

    def sizes(self) -> dict[int, int]: ...

    def retr_many(self, wanted: Sequence[tuple[int, int]]) -> list[bytes | Unfetched]:
        """RETR of each (number, size), in order (pipelined where the server allows it)."""
        ...

    def prefetch(self, wanted: Sequence[tuple[int, int]]) -> None:
        """Ask now for the window the next :meth:`retr_many` will take (where the server allows
        pipelining; otherwise nothing), so that it comes while the caller works; any other
        command first reads those answers, the session staying in step."""
        ...

    def top_headers(self, number: int, limit: int, size: int) -> bytes | Unfetched:
        """The header block of message ``number`` of ``size`` bytes (TOP n 0): at most ``limit``
        bytes of it kept."""
        ...

    def dele_many(self, numbers: Sequence[int]) -> None:
        """DELE of each number, in order (pipelined where the server allows it)."""
        ...

    def quit(self) -> None: ...

    def close(self) -> None: ...


class Mailbox(Protocol):
    """Opens sessions: TLS verified before any credential is sent."""

    def open(self, settings: Pop3Settings) -> MailboxSession: ...


class MessageClassifier(Protocol):
    """Classifies one raw mail out of process, under CPU-time, memory and wall-clock limits."""

    def classify(self, raw: bytes, policy: ClassifyPolicy) -> Classification: ...

    def new_run(self) -> None:
        """A purge run begins: the bounded number of restarts is renewed for it."""
        ...

    def close(self) -> None: ...


class Alerts(Protocol):
    """Where alerts are raised (the returns store holds them): what intake and backups need."""

    def add_alert(
        self,
        kind: str,
        subject: str,
        words: tuple[str, str],
        details: Mapping[str, JsonValue],
        when: str,
    ) -> int: ...

    def open_alert(self, kind: str, subject: str) -> AlertRecord | None: ...


class AlertBook(Alerts, Protocol):
    """The alerts as people read and acknowledge them."""

    def alerts(self, *, include_acknowledged: bool = False) -> list[AlertRecord]: ...

    def acknowledge(self, alert_id: int, actor: str, when: str) -> bool: ...


class SeenMail(Protocol):
    """The purge's dedup rows: which (UIDL, SHA-256) of a mailbox were already processed."""

    def seen(self, profile: str, uidls: Collection[str]) -> dict[str, list[tuple[str, str]]]:
        """(SHA-256, outcome) already stored for each of ``uidls`` that has any."""
        ...

    def mark_seen(
        self, profile: str, seen: Sequence[tuple[str, str, str, int | None]], run_id: str
    ) -> None:
        """Record each (UIDL, SHA-256, outcome, id of what was stored) as processed by
        ``run_id`` (one statement for a whole commit group)."""
        ...


class ReturnsLedger(Protocol):
    """Recognised (or damaged) returns: stored, listed, published to retours/."""

    def add_return(
        self,
        *,
        profile: str,
        uidl: str,
        sha256: str,
        kind: str,
        status: str,
        header: Mapping[str, str | None],
        lot_id: int | None,
        positive: bool | None,
        words: tuple[str, str],
        detail: Mapping[str, JsonValue],
        size: int,
        raw: bytes,
        payload: bytes | None,
        when: str,
    ) -> int: ...

    def returns(
        self, profile: str | None = None, *, unpublished: bool = False, limit: int | None = None
    ) -> list[ReturnRecord]:
        """Oldest first; ``unpublished``: only those not yet written to retours/ (the first
        ``limit``)."""
        ...

    def returns_for_lot(self, lot_id: int) -> list[ReturnRecord]: ...

    def payload(self, return_id: int) -> bytes | None: ...

    def mark_published(self, return_ids: Sequence[int]) -> None: ...


class PaymentsLedger(Protocol):
    """The invoices NOEMIE returns report paid, refused or pending."""

    def add_payment(self, record: PaymentRecord) -> int: ...

    def add_payments(self, records: Sequence[PaymentRecord]) -> None:
        """Several at once (one statement: a NOEMIE return's invoices)."""
        ...

    def payment_lot_ids(self, return_id: int) -> set[int]: ...

    def payments(self, lot_id: int | None = None) -> list[PaymentRecord]: ...


class UnknownMail(Protocol):
    """Unknown mail taken out of the BAL: its facts, its encrypted metadata and copy, its quota."""

    def add_unknown(
        self,
        *,
        profile: str,
        uidl: str,
        sha256: str,
        digest_scope: str,
        size: int,
        reason: tuple[str, str, str],
        meta: Mapping[str, str | None],
        copy: bytes | None,
        when: str,
    ) -> int: ...

    def mail_quarantine(self, *, unalerted: bool = False) -> list[MailQuarantineRecord]: ...

    def quarantine_meta(self, record_id: int) -> dict[str, str | None]: ...

    def quarantine_copy(self, record_id: int) -> bytes | None: ...

    def mark_alerted(self, ids: list[int]) -> None: ...

    def enforce_quarantine(self, retention_days: int, quota_bytes: int, now: datetime) -> int: ...


class StoreTransaction(Protocol):
    """One write transaction of the shared store the pieces above live in (a service that writes
    several rows together asks for it beside the pieces it uses)."""

    def transaction(self) -> AbstractContextManager[None]: ...


class ReturnsStore(
    SeenMail, ReturnsLedger, PaymentsLedger, UnknownMail, AlertBook, StoreTransaction, Protocol
):
    """All of the above in the shared store, under one transaction and one lock per mailbox
    (the purge writes them together). Blobs (raw mails, payloads, unknown metadata and copies)
    are encrypted at rest."""

    def lock(self, profile: str) -> AbstractContextManager[None]: ...


# -- backups and retention ----------------------------------------------------------------------


class PassphraseThrottle(Protocol):
    """Growing delays between wrong recovery passphrases."""

    def wait(self) -> None:
        """Sleep what the failures so far still owe."""
        ...

    def fail(self) -> None: ...

    def reset(self) -> None: ...


class LockedArchive(Protocol):
    """One backup archive, its header read, to be unlocked by its recovery passphrase and
    restored onto this box."""

    @property
    def name(self) -> str: ...

    @property
    def manifest(self) -> Mapping[str, Any]: ...

    @property
    def wrapping_key_id(self) -> str:
        """The KEK the restored vault is wrapped under (its fingerprint)."""
        ...

    def check_target(self, *, force: bool) -> None:
        """Refuse (StateError RESTORE_NOT_EMPTY) a box that holds data, unless ``force``."""
        ...

    def unlock(self, passphrase: str) -> None:
        """Verify every chunk under ``passphrase``: WrongPassphrase (BACKUP_WRONG_PASSPHRASE) when
        it is not the archive's, another error when the archive is damaged."""
        ...

    def install(self, when: datetime) -> RestoredFacts:
        """Decrypt, check the journal chain and the vault, re-wrap, then move the database in."""
        ...


class BackupArchiver(Protocol):
    """Snapshots the store into sealed archives in a destination folder, and prunes them."""

    def create(
        self,
        dest_dir: Path,
        when: datetime,
        *,
        chunk_size: int = ...,
        on_chunk: Callable[[int], None] | None = None,
    ) -> BackupOutcome: ...

    def archives(self, dest_dir: Path) -> list[Path]:
        """The archives in ``dest_dir`` proved to be this box's, oldest first by the creation
        date of their authenticated manifest (names prove nothing)."""
        ...

    def prune(
        self, dest_dir: Path, keep: int, *, newest: str, now: datetime, quota_bytes: int
    ) -> PruneOutcome:
        """Remove this box's proved archives beyond the newest ``keep`` (the one just written,
        ``newest``, always kept and counted) or beyond ``quota_bytes`` together; future-dated
        ones are neither counted nor removed; nothing unproved is ever touched."""
        ...

    def last_ok(self, dest_dir: Path | None = None) -> dict[str, Any] | None:
        """The last good archive anywhere, or the last one made in ``dest_dir``."""
        ...

    def record_ok(self, info: dict[str, Any]) -> None:
        """Remember a good archive (``info``: ``time``, ``path``, ``dest``)."""
        ...


class RetentionStore(Protocol):
    def purge(self, cutoff: str, now: str) -> RetentionOutcome: ...


# -- trust: revocation lists and the organisms' certificates --------------------------------------


class CrlStore(Protocol):
    """The last good CRL of each accepted issuer (and its delta CRL, if any)."""

    def get(self, issuer_key: str, kind: Literal["full", "delta"]) -> StoredCrl | None: ...

    def put(self, crl: StoredCrl) -> None:
        """Keep ``crl`` in place of the one of the same issuer and kind, durably."""
        ...

    def all(self) -> list[StoredCrl]: ...


class HttpFetcher(Protocol):
    """One short HTTP(S) GET: verified TLS for https, no redirect, no proxy, bounded size and
    time. Any failure is a BaliseError (code ``FETCH_FAILED``) in words."""

    def fetch(self, url: str) -> bytes: ...


class OrganismDirectory(Protocol):
    """The SESAM-Vitale public directory (LDAP, anonymous): what it says proves nothing until
    the caller validated it."""

    def certificates(self, cn: str) -> list[bytes]:
        """The ``userCertificate;binary`` values of the entry ``cn`` under the configured base
        (DER bytes as they came, [] when the entry or the attribute is absent); a BaliseError
        (code ``DIRECTORY_UNREACHABLE``) when the directory cannot be asked."""
        ...


class OrganismCertStore(Protocol):
    """What the box fetched and validated for each organism (JSON-able records)."""

    def load(self, organism: str) -> dict[str, Any] | None: ...

    def save(self, organism: str, record: Mapping[str, Any]) -> None: ...


# -- the mail servers' certificates (expiry watch) -----------------------------------------------


class ServerCertStore(Protocol):
    """The last certificate seen for each (profile, service), durably."""

    def transaction(self) -> AbstractContextManager[None]: ...

    def record(
        self,
        profile: str,
        service: MailService,
        host: str,
        port: int,
        cert: ServerCertificate,
        when: str,
    ) -> bool:
        """Keep ``cert`` as the one (profile, service) presents, seen at ``when``, in place of
        the one seen before; True when it is another certificate (or the first)."""
        ...

    def all(self) -> list[SeenServerCert]: ...


class GateStore(Protocol):
    """Durable home of the technician gate's failure counter (SQLite in the kiosk)."""

    def load(self) -> GateRecord: ...

    def save(self, record: GateRecord) -> None: ...


# -- self-updates -------------------------------------------------------------------------------


class UpdateState(Protocol):
    """The pending update attempt and the last update, on the data partition (they outlive the
    switch to the other system slot)."""

    def transaction(self) -> AbstractContextManager[None]: ...

    def pending(self) -> PendingUpdate | None: ...

    def set_pending(self, pending: PendingUpdate | None) -> None: ...

    def last(self) -> LastUpdate | None: ...

    def set_last(self, last: LastUpdate) -> None: ...
