"""Stand-ins for what SoftHSM2 cannot do. SoftHSM2 never locks a PIN, so this path needs a fake
token: ``FakeToken`` (a whole TokenSigner, final try and locked included) and ``LockingCryptoki``
(a PIN counter laid over the REAL SoftHSM2 token so the real adapter meets "final try" and
"locked"); both count C_Login attempts. ``RemovableSigner`` fails signatures once the virtual card
is pulled, because the virtual card (PC/SC) and SoftHSM2 (PKCS#11) are not linked."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Literal

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pkcs11.constants import TokenFlag

from balise.adapters.pkcs11 import (
    CKR_OK,
    CKR_PIN_INCORRECT,
    CKR_PIN_LOCKED,
    CKU_CONTEXT_SPECIFIC,
    CKU_USER,
    Cryptoki,
    Pkcs11Signer,
    SignatureNotAllowed,
)
from balise.domain.card import CardIdentity, CardRemoved, PinLocked, PinState, WrongPin
from balise.domain.codes import CardCode
from balise.domain.errors import StateError, ValidationError
from balise.ports import TokenSession, TokenSigner

__all__ = [
    "CountingCryptoki",
    "FakeSession",
    "FakeToken",
    "LockingCryptoki",
    "LockingSigner",
    "RemovableSigner",
]

LoginKind = Literal["user", "context"]


# --- counting and locking at the Cryptoki boundary of the REAL adapter ------------------------


class CountingCryptoki(Cryptoki):
    """The real raw calls, with every C_Login recorded (user type) before it reaches the module."""

    def __init__(self, module_path: str) -> None:
        super().__init__(module_path)
        self.logins: list[int] = []

    @property
    def user_logins(self) -> int:
        return self.logins.count(CKU_USER)

    @property
    def context_logins(self) -> int:
        return self.logins.count(CKU_CONTEXT_SPECIFIC)

    def login(self, session: int, user_type: int, pin: bytearray | None) -> int:
        self.logins.append(user_type)
        return super().login(session, user_type, pin)


class LockingCryptoki(CountingCryptoki):
    """SoftHSM2 never locks a PIN, so this path needs a fake token: a CPS-like counter of 3 tries
    over the real SoftHSM2 C_Login. A wrong PIN costs one try, the right one restores 3, and at 0
    the card answers CKR_PIN_LOCKED without asking SoftHSM2 — the way a blocked CPS does."""

    def __init__(self, module_path: str, tries_left: int = 3) -> None:
        super().__init__(module_path)
        self.tries_left = tries_left

    def login(self, session: int, user_type: int, pin: bytearray | None) -> int:
        if self.tries_left <= 0:
            self.logins.append(user_type)
            return CKR_PIN_LOCKED
        rv = super().login(session, user_type, pin)
        if rv == CKR_PIN_INCORRECT:
            self.tries_left -= 1
        elif rv == CKR_OK:
            self.tries_left = 3
        return rv


class LockingSigner(Pkcs11Signer):
    """The real Pkcs11Signer whose token flags show the LockingCryptoki counter instead of
    SoftHSM2's (which only ever sets COUNT_LOW): SoftHSM2 never locks a PIN, so this path needs a
    fake token."""

    cryptoki: LockingCryptoki

    def _token_flags(self) -> int:
        flags = super()._token_flags()
        flags &= ~int(
            TokenFlag.USER_PIN_COUNT_LOW | TokenFlag.USER_PIN_FINAL_TRY | TokenFlag.USER_PIN_LOCKED
        )
        tries = self.cryptoki.tries_left
        if tries <= 0:
            flags |= int(TokenFlag.USER_PIN_LOCKED)
        elif tries == 1:
            flags |= int(TokenFlag.USER_PIN_FINAL_TRY | TokenFlag.USER_PIN_COUNT_LOW)
        elif tries == 2:
            flags |= int(TokenFlag.USER_PIN_COUNT_LOW)
        return flags


# --- a whole fake TokenSigner -----------------------------------------------------------------


@dataclass
class FakeToken:
    """A TokenSigner with a CPS PIN counter. SoftHSM2 never locks a PIN, so this path needs a fake
    token. Every C_Login attempt is recorded in ``logins``; a locked card gets none. With
    ``protected_path`` the PIN is "typed on the reader": the test sets ``keypad_pin``.
    When ``key`` is given, signatures are real sha256WithRSAEncryption with it."""

    identity: CardIdentity
    pin: str
    tries_left: int = 3
    protected_path: bool = False
    always_authenticate: bool = False
    keypad_pin: str | None = None
    key: rsa.RSAPrivateKey | None = None
    logins: list[LoginKind] = field(default_factory=list)
    sessions: list[FakeSession] = field(default_factory=list)

    @property
    def user_logins(self) -> int:
        return self.logins.count("user")

    @property
    def context_logins(self) -> int:
        return self.logins.count("context")

    def identify(self) -> CardIdentity:
        return self.identity

    def pin_state(self) -> PinState:
        return PinState(tries_left=max(self.tries_left, 0), protected_path=self.protected_path)

    def _check(self, kind: LoginKind, pin: bytearray | None) -> None:
        """One C_Login: what the card does with the PIN it is given."""
        self.logins.append(kind)
        typed = self.keypad_pin if self.protected_path else (None if pin is None else pin.decode())
        if typed == self.pin:
            self.tries_left = 3
            return
        self.tries_left -= 1
        raise WrongPin(self.tries_left)

    def login(self, pin: bytearray | None, *, allowed_signatures: int | None = None) -> FakeSession:
        if self.tries_left <= 0:
            raise PinLocked()  # no attempt at all
        if self.protected_path != (pin is None):
            raise ValidationError(
                "PIN et lecteur à clavier incohérents.", code=CardCode.PIN_ON_READER
            )
        self._check("user", pin)
        held = bytearray(pin) if pin is not None and self.always_authenticate else None
        session = FakeSession(self, allowed_signatures, held)
        self.sessions.append(session)
        return session


class FakeSession:
    """The FakeToken's session: same consent rules as Pkcs11Session."""

    def __init__(self, token: FakeToken, allowed: int | None, pin: bytearray | None) -> None:
        self._token = token
        self.allowed_signatures = allowed
        self._pin = pin
        self.signatures = 0
        self.closed = False

    def __repr__(self) -> str:
        return f"<FakeSession signatures={self.signatures}/{self.allowed_signatures}>"

    def sign(self, data: bytes) -> bytes:
        if self.closed:
            raise StateError("Session fermée.", code=CardCode.CARD_SESSION_CLOSED)
        if self._token.always_authenticate and self.allowed_signatures is None:
            raise SignatureNotAllowed(None)
        if self.allowed_signatures is not None and self.signatures >= self.allowed_signatures:
            raise SignatureNotAllowed(self.allowed_signatures)
        self.signatures += 1
        if self._token.always_authenticate:
            try:
                self._token._check("context", self._pin)
            except WrongPin:
                self.close()
                raise
        if self._token.key is None:
            return b"fake signature"
        return self._token.key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    def close(self) -> None:
        self.closed = True
        if self._pin is not None:
            self._pin[:] = bytes(len(self._pin))
            self._pin = None


# --- card removal ---------------------------------------------------------------------------


class RemovableSigner:
    """A TokenSigner around the real Pkcs11Signer whose sessions fail with CardRemoved from
    signature ``fail_from`` (1-based, counted per session) on once ``removed`` is set.

    The virtual card (PC/SC, vpcd) and the SoftHSM2 token (PKCS#11) are not linked: pulling the
    virtual card does not make SoftHSM2 fail. The test sets ``removed`` from the same removal event
    the card watcher sees, and this wrapper plays the module's "device removed" answer.
    """

    def __init__(
        self, inner: TokenSigner, removed: threading.Event | None = None, *, fail_from: int = 1
    ) -> None:
        self.inner = inner
        self.removed = removed if removed is not None else threading.Event()
        self.fail_from = fail_from

    def identify(self) -> CardIdentity:
        if self.removed.is_set():
            raise CardRemoved()
        return self.inner.identify()

    def pin_state(self) -> PinState:
        if self.removed.is_set():
            raise CardRemoved()
        return self.inner.pin_state()

    def login(self, pin: bytearray | None, **kwargs: int | None) -> _RemovableSession:
        if self.removed.is_set():
            raise CardRemoved()
        inner_login = self.inner.login
        session = inner_login(pin, **kwargs) if kwargs else inner_login(pin)
        return _RemovableSession(session, self)


class _RemovableSession:
    def __init__(self, inner: TokenSession, owner: RemovableSigner) -> None:
        self.inner = inner
        self._owner = owner
        self.attempts = 0

    def sign(self, data: bytes) -> bytes:
        self.attempts += 1
        if self._owner.removed.is_set() and self.attempts >= self._owner.fail_from:
            raise CardRemoved()
        return self.inner.sign(data)

    def close(self) -> None:
        self.inner.close()
