"""Wiring: opens the data dir, the KEK, the store, the journal and the vault for one process."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from balise.adapters.clock import SystemClock
from balise.adapters.journal import SqliteJournal
from balise.adapters.kek import Kek, load_kek
from balise.adapters.store import Store
from balise.adapters.vault import SqliteVault
from balise.domain.codes import GeneralCode
from balise.domain.errors import ConfigError
from balise.domain.hygiene import refuse_new_refusals
from balise.ports import Clock
from balise.services.params import ParameterService
from balise.services.settings import box_settings

# Every service and the adapters only some commands use are imported where they are built:
# `balise journal verify` or `balise alerts list` does not load the purge, the classifier, POP3,
# the intake or signing (a third of a second of every command's start on a small box).
if TYPE_CHECKING:
    from balise.adapters.exchange import ExchangeFolders
    from balise.adapters.lots import SqliteLotStore
    from balise.adapters.pkcs11 import Pkcs11Signer
    from balise.adapters.returns_store import SqliteReturnsStore
    from balise.domain.atr import ModuleKind
    from balise.domain.card import CardIdentity
    from balise.ports import MessageClassifier, OrganismDirectory
    from balise.services.certwatch import ServerCertWatch
    from balise.services.crl import CrlService
    from balise.services.intake import IntakeService
    from balise.services.lots import LotTransitions
    from balise.services.organisms import OrganismCertService
    from balise.services.provisioning import ProvisioningService
    from balise.services.purge import CrashPoint, PurgeService
    from balise.services.signing import CertChecker, CertVerdict, SigningService
    from balise.services.tracking import TrackingService
    from balise.services.transmission import TransmissionService


def _refresh_state(ctx: Context, env: Mapping[str, str] | None) -> None:
    """retours/etat.json after an intake round (balise.app.exchange, imported when needed)."""
    from balise.app.exchange import refresh_after_intake

    refresh_after_intake(ctx, env)


def resolve_data_dir(arg: str | None, env: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if env is None else env
    raw = arg or environ.get("BALISE_HOME")
    if not raw:
        raise ConfigError(
            "dossier de données inconnu : --data-dir ou BALISE_HOME",
            "data directory unknown: --data-dir or BALISE_HOME",
            code=GeneralCode.DATA_DIR,
        )
    return Path(raw).expanduser().resolve()


@dataclass
class Context:
    """Everything one process needs, opened in a safe order (KEK first: nothing starts without it)."""

    data_dir: Path
    kek: Kek
    store: Store
    journal: SqliteJournal
    vault: SqliteVault
    params: ParameterService
    clock: Clock

    def close(self) -> None:
        self.store.close()

    @property
    def lots(self) -> SqliteLotStore:
        from balise.adapters.lots import SqliteLotStore

        return SqliteLotStore(self.store)

    def exchange(self, env: Mapping[str, str] | None = None) -> ExchangeFolders:
        """The exchange account's root: BALISE_EXCHANGE, else <data dir>/echange."""
        from balise.adapters.exchange import ExchangeFolders

        environ = os.environ if env is None else env
        root = environ.get("BALISE_EXCHANGE") or str(self.data_dir / "echange")
        return ExchangeFolders(Path(root))

    def provisioning(self, env: Mapping[str, str] | None = None) -> ProvisioningService:
        """The provisioning window's request spool and state: BALISE_PROVISIONING_DIR, else
        /run/balise-provisioning (made by the provisioning role's tmpfiles)."""
        from balise.adapters.provisioning import DEFAULT_DIR, SpoolWindow
        from balise.services.provisioning import ProvisioningService

        environ = os.environ if env is None else env
        run_dir = Path(environ.get("BALISE_PROVISIONING_DIR") or DEFAULT_DIR)
        return ProvisioningService(SpoolWindow(run_dir), self.journal, self.clock)

    def intake(self, env: Mapping[str, str] | None = None) -> IntakeService:
        from balise.services.intake import IntakeService

        return IntakeService(
            self.lots,
            self.params,
            self.journal,
            self.clock,
            self.exchange(env),
            alerts=self.returns_store,
            recipients=self.organism_certs().recipient_pems,
            after_round=partial(_refresh_state, self, env),
        )

    def transitions(self) -> LotTransitions:
        from balise.services.lots import LotTransitions

        return LotTransitions(self.lots, self.journal, self.clock)

    def signing(self) -> SigningService:
        from balise.services.signing import SigningService

        return SigningService(
            self.lots,
            self.transitions(),
            self.journal,
            self.clock,
            self.params,
            recipients=self.organism_certs().recipient_pems,
            batch_guard=self.batch_guard,
        )

    def batch_guard(self) -> AbstractContextManager[None]:
        """Held by every signing or sending batch; refuses to start one while the update gate
        holds (`balise update gate`)."""
        from balise.adapters.locks import batch_guard

        return batch_guard(self.data_dir / "locks")

    def organism_certs(self) -> OrganismCertService:
        """The organisms' encryption certificates: hand-set, else fetched from the SESAM-Vitale
        directory (``sesam_vitale_directory``) and validated against ``sesam_vitale_roots``."""
        from balise.adapters.organism_store import FileOrganismCertStore
        from balise.services.organisms import OrganismCertService

        box = box_settings(self.params)
        url, base = box.sesam_vitale_directory, box.sesam_vitale_base

        def directory() -> OrganismDirectory:
            from balise.adapters.ldap_directory import PRODUCTION_BASE, TEST_BASE, Ldap3Directory

            chosen = base or (PRODUCTION_BASE if box.production else TEST_BASE)
            return Ldap3Directory(str(url), chosen)

        def validate(der: bytes, roots: Sequence[str], moment: datetime) -> tuple[str, str] | None:
            from balise.adapters.certcheck import check_encryption_certificate

            return check_encryption_certificate(der, roots, moment)

        return OrganismCertService(
            self.params,
            directory if url is not None else None,
            FileOrganismCertStore(self.data_dir / "organismes"),
            self.journal,
            self.clock,
            validate,
            alerts=self.returns_store,
        )

    def card_signer(self, token_label: str | None = None) -> Pkcs11Signer:
        """The card through the configured PKCS#11 module, else the first one found."""
        # Imported here: python-pkcs11 is only needed once a card is used (kiosk start-up).
        from balise.adapters.pkcs11 import Pkcs11Signer, open_module

        box = box_settings(self.params)
        lib, _candidate = open_module(box.mode, box.pkcs11_module)
        return Pkcs11Signer(lib, token_label=token_label)

    def card_module_kind(self) -> ModuleKind:
        """The family of the PKCS#11 module the card goes through (without loading it), so a
        CPS4 on a box whose module is OpenSC is said "not supported here" before any PIN."""
        from balise.adapters.pkcs11_modules import module_kind, probe_modules

        box = box_settings(self.params)
        if box.pkcs11_module is not None:
            return module_kind(box.pkcs11_module)
        found = probe_modules(box.mode)
        return found[0].kind if found else "configured"

    def crl_service(self) -> CrlService:
        """IGC-Santé CRLs fetched over HTTP(S) (verified TLS with ``ca_bundle`` or the system's
        store for https), kept under ``<data dir>/crl``."""
        from balise.adapters.crl_store import FileCrlStore
        from balise.adapters.http_fetch import UrllibFetcher
        from balise.services.crl import CrlService

        fetcher = UrllibFetcher(ca_pem=box_settings(self.params).ca_bundle)
        return CrlService(
            self.params, fetcher, FileCrlStore(self.data_dir / "crl"), self.journal, self.clock
        )

    def cert_checker(self) -> CertChecker:
        """Chain to the configured IGC-Santé roots and revocation by the CRL kept for the card's
        issuer; without roots, or without a current CRL, only production refuses."""
        from balise.services.signing import CertVerdict

        box = box_settings(self.params)
        roots, intermediates, production = box.igc_roots, box.igc_intermediates, box.production
        crls = self.crl_service()

        def check(identity: CardIdentity) -> CertVerdict:
            from balise.adapters.certcheck import check_card  # pyhanko: only when a card is read
            from balise.services.crl import revocation_words

            if not roots:
                words = "racines IGC-Santé non configurées : chaîne du certificat non vérifiée"
                return CertVerdict(
                    not production, words, "IGC-Santé roots not configured: chain not checked"
                )
            kept = crls.for_certificate(identity.signature_cert_der)
            result = check_card(
                identity,
                self.clock,
                roots=roots,
                intermediates=intermediates,
                crl=kept.full.der if kept is not None and kept.full is not None else None,
                delta_crl=kept.delta.der if kept is not None and kept.delta is not None else None,
            )
            if not result.ok:
                return CertVerdict(False, result.words, result.words_en)
            ok, fr, en = revocation_words(kept, production=production)
            return CertVerdict(ok, f"{result.words} {fr}", f"{result.words_en} {en}")

        return check

    @property
    def returns_store(self) -> SqliteReturnsStore:
        from balise.adapters.returns_store import SqliteReturnsStore

        return SqliteReturnsStore(self.store, self.vault, self.data_dir / "locks")

    def tracking(self, env: Mapping[str, str] | None = None) -> TrackingService:
        from balise.services.tracking import TrackingService

        return TrackingService(
            self.returns_store,
            self.lots,
            self.transitions(),
            self.journal,
            self.clock,
            self.exchange(env),
            params=self.params,
        )

    def purge(
        self,
        *,
        env: Mapping[str, str] | None = None,
        classifier: MessageClassifier | None = None,
        crash_at: CrashPoint | None = None,
    ) -> PurgeService:
        """The purge service; call its ``close()`` when done (it owns a worker process)."""
        from balise.adapters.classifier_worker import WorkerClassifier
        from balise.adapters.pop3 import Pop3Mailbox
        from balise.services.classifier import ClassifierService
        from balise.services.purge import PurgeService

        worker = classifier if classifier is not None else WorkerClassifier()
        return PurgeService(
            self.params,
            self.returns_store,
            self.tracking(env),
            ClassifierService(worker),
            Pop3Mailbox(),
            self.journal,
            self.clock,
            crash_at=crash_at,
            server_certs=self.server_certs(),
        )

    def server_certs(self) -> ServerCertWatch:
        """The certificates the mail servers presented (recorded by sending and the purge),
        for the expiry watch."""
        from balise.adapters.server_certs import SqliteServerCertStore
        from balise.services.certwatch import ServerCertWatch

        return ServerCertWatch(SqliteServerCertStore(self.store), self.journal, self.clock)

    def transmission(self, *, timeout: float | None = None) -> TransmissionService:
        """Lot mails sent over aiosmtplib; Message-IDs name this box's host."""
        import socket

        from balise.adapters.locks import batch_guard, send_lock
        from balise.adapters.outbox import SqliteOutbox
        from balise.adapters.smtp import DEFAULT_TIMEOUT_S, SmtpSender
        from balise.domain.lotmail import box_hostname
        from balise.services.transmission import TransmissionService

        host = box_hostname(socket.gethostname())
        sender = SmtpSender(local_hostname=host, timeout=timeout or DEFAULT_TIMEOUT_S)
        return TransmissionService(
            self.lots,
            self.transitions(),
            self.journal,
            self.clock,
            self.params,
            sender,
            SqliteOutbox(self.store),
            host,
            send_lock=send_lock(self.data_dir / "locks"),
            batch_guard=partial(batch_guard, self.data_dir / "locks"),
            server_certs=self.server_certs(),
        )


def open_context(
    data_dir: Path,
    *,
    actor: str,
    env: Mapping[str, str] | None = None,
    clock: Clock | None = None,
    create: bool = True,
    busy: Callable[[], object] | None = None,
) -> Context:
    """The box's data opened for ``actor``; ``busy``: see balise.adapters.store.Store."""
    kek = load_kek(env)
    if not data_dir.exists():
        if not create:
            raise ConfigError(
                f"dossier de données absent : {data_dir}",
                f"data directory missing: {data_dir}",
                code=GeneralCode.DATA_DIR,
            )
        data_dir.mkdir(mode=0o700, parents=True)
    the_clock = clock or SystemClock()
    store = Store(data_dir, busy=busy)
    try:
        vault = SqliteVault(store, kek)
        vault.check_key()
    except BaseException:
        store.close()
        raise
    journal = SqliteJournal(store, the_clock, actor)
    # Mailbox hygiene: a change that would create a refusal is refused, nothing written.
    params = ParameterService(vault, journal, the_clock, validators=(refuse_new_refusals,))
    ctx = Context(data_dir, kek, store, journal, vault, params, the_clock)
    if store.restored is not None:
        # An older version came back to a database a newer one had migrated: journaled and
        # said on Accueil (balise.app.update).
        from balise.app.update import note_restored

        note_restored(ctx, store.restored)
    return ctx
