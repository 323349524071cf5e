"""The card-authenticated relay put together (issue 20): the card logged in once, its
authentication key handed to OpenSSL's PKCS#11 provider, the relay's decisions
(``services.relay``) behind its unix socket (``adapters.relay_server``), and a watchdog that
closes everything when the card is pulled or the channel stays idle.

The PIN comes from the box (the kiosk's PIN screen, or the reader's keypad: ``None``) and goes
to exactly one C_Login; it is never written anywhere, and the provider never sees it (see
``balise.adapters.card_tls``). The provider is loaded into this process's OpenSSL: the relay
belongs in a process of its own, not in one that also makes other TLS connections."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pkcs11
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from balise.adapters import card_tls
from balise.adapters.journal import GroupCommitJournal, SqliteJournal
from balise.adapters.pkcs11 import Pkcs11Signer
from balise.adapters.relay_server import RelayServer
from balise.domain.card import CardError
from balise.domain.errors import BaliseError
from balise.domain.relay import AllowedService
from balise.ports import Clock, Journal
from balise.services.relay import (
    JOURNAL_KIND,
    REQUESTS_PER_ENTRY,
    CardLogin,
    CloseReason,
    Relay,
    RequestLog,
    UpstreamChannel,
    error_answer,
    requests_details,
)

if TYPE_CHECKING:
    from pkcs11._pkcs11 import lib as Pkcs11Lib

__all__ = ["CardRelay", "kept_crls_file", "open_card_relay", "serve_relay"]

_WATCH_EVERY_S: Final = 1.0
# The relay's journal (one entry listing the requests of each window) is committed at most this
# often, and at every close: a power cut loses at most this much of the request log (see
# serve_relay).
JOURNAL_COMMIT_EVERY_S: Final = 0.1
_provider_lock = threading.Lock()
_loaded: dict[str, Path] = {}  # "module": the card module the provider was loaded on


def _ensure_provider(runtime_dir: Path, module: Path) -> None:
    """pkcs11-provider loaded once per process, on the card's module path."""
    with _provider_lock:
        if "module" in _loaded:
            if _loaded["module"] != module:
                raise card_tls.ProviderMissing(
                    "Le relais a déjà chargé un autre module de carte : redémarrez-le.",
                    "The relay already loaded another card module: restart it.",
                )
            return
        provider = card_tls.find_provider()
        if provider is None:
            raise card_tls.ProviderMissing(
                "Le paquet pkcs11-provider n'est pas installé : le relais de la carte est "
                "indisponible.",
                "The pkcs11-provider package is not installed: the card relay is unavailable.",
            )
        config = runtime_dir / "openssl-pkcs11.cnf"
        _write_private(config, card_tls.provider_config(provider, module))
        card_tls.load_provider(config)
        _loaded["module"] = module


def _write_private(path: Path, text: str) -> None:
    """Public material only (paths, certificates, a key reference), readable by us alone."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(text)


def kept_crls_file(crl_dir: Path, runtime_dir: Path) -> Path | None:
    """The full CRLs the box keeps (``<data dir>/crl``: fetched and verified by ``balise crl
    fetch`` and the agent for the accepted IGC-Santé issuers), as one PEM file in the relay's run
    directory, against which every service's certificate is then checked (OpenSSL's
    VERIFY_CRL_CHECK_LEAF: revoked, or no current CRL of its issuer, is refused). None when the
    box keeps no CRL at all (a box not configured for IGC-Santé yet): no revocation check.
    Delta CRLs are left out: a full CRL refreshed every day is what OpenSSL checks."""
    from balise.adapters.crl_store import FileCrlStore

    pems: list[str] = []
    for kept in FileCrlStore(crl_dir).all():
        if kept.kind != "full":
            continue
        try:
            crl = x509.load_der_x509_crl(kept.der)
        except ValueError:
            continue  # the store verified it when it came: a file spoiled since is no CRL
        pems.append(crl.public_bytes(serialization.Encoding.PEM).decode("ascii"))
    if not pems:
        return None
    path = runtime_dir / "service-crls.pem"
    _write_private(path, "".join(pems))
    return path


@dataclass
class CardRelay:
    """An open relay: its state for the kiosk, and one way to close it."""

    relay: Relay
    server: RelayServer
    _stop: threading.Event
    _watchdog: threading.Thread
    _log: GroupCommitJournal | None = None

    def close(self, because: CloseReason = "practitioner") -> None:
        """Close the channels, end the card's login, stop serving, and commit the journal's
        last entries (idempotent)."""
        self.relay.close(because)
        self._stop.set()
        self.server.stop()
        if self._watchdog is not threading.current_thread():
            self._watchdog.join(5)
        if self._log is not None:
            with contextlib.suppress(BaliseError):  # said on stderr by _journal_failed
                self._log.close()


def _journal_failed(exc: BaseException) -> None:
    print(
        f"Journal du relais : écriture en échec, reprise au prochain essai ({exc}).",
        file=sys.stderr,
    )


def serve_relay(
    *,
    services: Mapping[str, AllowedService],
    channel_for: Callable[[AllowedService], UpstreamChannel],
    login: CardLogin,
    practitioner: str,
    journal: RequestLog,
    clock: Clock,
    idle_seconds: float,
    card_present: Callable[[], bool],
    socket_path: Path,
    allowed_uids: Collection[int],
) -> CardRelay:
    """The relay's decisions behind its socket, a watchdog for the pulled card and the idle time,
    and the journal: every request journaled; with the box's journal (SQLite, one fsync per
    commit: ~0.4 ms, more than a relayed request costs) the requests of each
    JOURNAL_COMMIT_EVERY_S are listed by ONE entry (GroupCommitJournal.rows: the request path
    only appends a tuple; at most REQUESTS_PER_ENTRY an entry, more split), committed together
    then and whenever the channel closes — by the practitioner, the card, the idle time or the
    process's end — so a clean close never loses one. A power cut can lose the last 0.1 s of
    request lines, never the chain: acceptable for a log of what the practice software asked (its
    answers are the services', which keep their own), not for the lots or signatures, which keep
    their commit per change."""
    log = (
        GroupCommitJournal(
            journal, clock, interval=JOURNAL_COMMIT_EVERY_S, on_error=_journal_failed
        )
        if isinstance(journal, SqliteJournal)
        else None
    )
    relay = Relay(
        services=services,
        channel_for=channel_for,
        login=login,
        practitioner=practitioner,
        journal=journal if log is None else log,
        clock=clock,
        idle_seconds=idle_seconds,
        card_present=card_present,
        requests=None
        if log is None
        else log.rows(
            JOURNAL_KIND,
            requests_details,
            subject=practitioner,
            actor="relay",
            most=REQUESTS_PER_ENTRY,
        ),
    )
    server = RelayServer(
        socket_path,
        allowed_uids=allowed_uids,
        handler=relay.respond,
        refusal=error_answer,
        streams=True,
    )
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(_WATCH_EVERY_S):
            relay.check()
            if not relay.is_open:
                server.stop()
                if log is not None:
                    with contextlib.suppress(BaliseError):  # said by _journal_failed
                        log.flush()
                return

    watchdog = threading.Thread(target=watch, name="relay-watchdog", daemon=True)
    server.start()
    watchdog.start()
    return CardRelay(relay, server, stop, watchdog, log)


def open_card_relay(
    *,
    lib: Pkcs11Lib,
    signer: Pkcs11Signer,
    pin: bytearray | None,
    services: Mapping[str, AllowedService],
    roots_pem: Sequence[str],
    crl_file: Path | None,
    journal: Journal,
    clock: Clock,
    idle_seconds: float,
    socket_path: Path,
    allowed_uids: Collection[int],
    runtime_dir: Path,
) -> CardRelay:
    """Log in to the card once (``pin`` wiped by the session when it closes), prepare the TLS
    context with the card's authentication key and start serving the practice software."""
    identity = signer.identify()
    auth = card_tls.card_auth_certificate(lib, identity.token_serial)
    _ensure_provider(runtime_dir, Path(lib.so))
    chain = runtime_dir / "card-chain.pem"
    key_ref = runtime_dir / "card-key.pem"
    _write_private(chain, auth.chain_pem())
    _write_private(
        key_ref, card_tls.key_reference_pem(card_tls.key_uri(auth.token_serial, auth.key_id))
    )
    # The signature key may never sign through this session: no consent is given for it.
    session = signer.login(pin, allowed_signatures=0)
    try:
        context = card_tls.card_context(
            roots_pem=roots_pem, cert_chain=chain, key=key_ref, crl_file=crl_file
        )
    except BaseException:
        session.close()
        raise

    def card_present() -> bool:
        try:
            signer.pin_state()
        except (CardError, pkcs11.PKCS11Error):  # a module's failure: the card cannot be trusted
            return False
        return True

    return serve_relay(
        services=services,
        channel_for=lambda s: card_tls.TlsChannel(context, s.host, s.port),
        login=session,
        practitioner=identity.holder_name,
        journal=journal,
        clock=clock,
        idle_seconds=idle_seconds,
        card_present=card_present,
        socket_path=socket_path,
        allowed_uids=allowed_uids,
    )
