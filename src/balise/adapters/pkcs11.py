"""The card's PKCS#11 side (python-pkcs11): module choice, identity without PIN, fresh PIN state,
exactly one C_Login per PIN, and sha256WithRSAEncryption signatures with the key chosen by CKA_ID."""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

import pkcs11
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from pkcs11 import Attribute, Mechanism, ObjectClass
from pkcs11.constants import TokenFlag

from balise.adapters.pkcs11_modules import ModuleCandidate, probe_modules
from balise.domain.card import (
    CardError,
    CardIdentity,
    CardNotSupported,
    CardProof,
    CardRemoved,
    PinLocked,
    PinState,
    WrongPin,
    tries_from_flags,
)
from balise.domain.codes import CardCode
from balise.domain.errors import ConfigError, StateError, ValidationError

if TYPE_CHECKING:
    from pkcs11._pkcs11 import lib as Pkcs11Lib

__all__ = [
    "CKU_CONTEXT_SPECIFIC",
    "CKU_USER",
    "Cryptoki",
    "NoPkcs11Module",
    "PinEntryCancelled",
    "Pkcs11Session",
    "Pkcs11Signer",
    "SeveralCards",
    "SignatureNotAllowed",
    "open_module",
]

# --- errors this adapter adds to the card error tree -----------------------------------------


class NoPkcs11Module(ConfigError):
    code = CardCode.PKCS11_MODULE_MISSING


class SeveralCards(CardError):
    code = CardCode.CARD_SEVERAL

    def __init__(self) -> None:
        super().__init__(
            "Plusieurs cartes sont présentes : n'en laissez qu'une dans le lecteur.",
            "Several cards are present: leave only one in the reader.",
        )


class SignatureNotAllowed(CardError):
    """More signatures asked than the practitioner confirmed for this batch."""

    code = CardCode.SIGN_NOT_CONSENTED

    def __init__(self, allowed: int | None) -> None:
        if allowed is None:
            fr = "Signature refusée : cette carte demande l'accord d'un lot confirmé pour chaque signature."
            en = "Signature refused: this card needs a confirmed batch as consent for each signature."
        else:
            fr = f"Signature refusée : le lot confirmé n'en autorisait que {allowed}."
            en = f"Signature refused: the confirmed batch allowed only {allowed}."
        super().__init__(fr, en)


class PinEntryCancelled(CardError):
    code = CardCode.PIN_CANCELLED

    def __init__(self) -> None:
        super().__init__(
            "Saisie du code annulée sur le lecteur.", "PIN entry cancelled on the reader."
        )


def _card_failure(rv: int, what: str) -> CardError:
    return CardError(
        f"La carte a refusé l'opération ({what}, code PKCS#11 0x{rv:X}).",
        f"The card refused the operation ({what}, PKCS#11 code 0x{rv:X}).",
        code=CardCode.CARD_FAILURE,
    )


# --- the few raw Cryptoki calls python-pkcs11 0.10.1 cannot make the way we need -------------

# CK_RV values (PKCS#11 v2.40 pkcs11t.h).
CKR_OK: Final = 0x000
CKR_DEVICE_ERROR: Final = 0x030
CKR_DEVICE_REMOVED: Final = 0x032
CKR_FUNCTION_CANCELED: Final = 0x050
CKR_PIN_INCORRECT: Final = 0x0A0
CKR_PIN_INVALID: Final = 0x0A1
CKR_PIN_LEN_RANGE: Final = 0x0A2
CKR_PIN_LOCKED: Final = 0x0A4
CKR_SESSION_CLOSED: Final = 0x0B0
CKR_SESSION_HANDLE_INVALID: Final = 0x0B3
CKR_TOKEN_NOT_PRESENT: Final = 0x0E0
CKR_BUFFER_TOO_SMALL: Final = 0x150
CKU_USER: Final = 1
CKU_CONTEXT_SPECIFIC: Final = 2
_CKM_SHA256_RSA_PKCS: Final = 0x40
_GONE: Final = frozenset(
    {CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT, CKR_SESSION_CLOSED, CKR_SESSION_HANDLE_INVALID}
)
_WRONG: Final = frozenset({CKR_PIN_INCORRECT, CKR_PIN_INVALID, CKR_PIN_LEN_RANGE})

_CK_ULONG = ctypes.c_ulong
_FUNCTION_NAMES: Final = (
    "C_Initialize", "C_Finalize", "C_GetInfo", "C_GetFunctionList", "C_GetSlotList",
    "C_GetSlotInfo", "C_GetTokenInfo", "C_GetMechanismList", "C_GetMechanismInfo", "C_InitToken",
    "C_InitPIN", "C_SetPIN", "C_OpenSession", "C_CloseSession", "C_CloseAllSessions",
    "C_GetSessionInfo", "C_GetOperationState", "C_SetOperationState", "C_Login", "C_Logout",
    "C_CreateObject", "C_CopyObject", "C_DestroyObject", "C_GetObjectSize", "C_GetAttributeValue",
    "C_SetAttributeValue", "C_FindObjectsInit", "C_FindObjects", "C_FindObjectsFinal",
    "C_EncryptInit", "C_Encrypt", "C_EncryptUpdate", "C_EncryptFinal", "C_DecryptInit",
    "C_Decrypt", "C_DecryptUpdate", "C_DecryptFinal", "C_DigestInit", "C_Digest",
    "C_DigestUpdate", "C_DigestKey", "C_DigestFinal", "C_SignInit", "C_Sign",
)  # fmt: skip


class _Version(ctypes.Structure):
    _fields_ = (("major", ctypes.c_ubyte), ("minor", ctypes.c_ubyte))


class _FunctionList(ctypes.Structure):
    # Only the prefix up to C_Sign is read; the layout is fixed by the standard.
    _fields_ = (("version", _Version), *((name, ctypes.c_void_p) for name in _FUNCTION_NAMES))


class _SessionInfo(ctypes.Structure):
    _fields_ = (
        ("slotID", _CK_ULONG),
        ("state", _CK_ULONG),
        ("flags", _CK_ULONG),
        ("ulDeviceError", _CK_ULONG),
    )


class _Mechanism(ctypes.Structure):
    _fields_ = (
        ("mechanism", _CK_ULONG),
        ("pParameter", ctypes.c_void_p),
        ("ulParameterLen", _CK_ULONG),
    )


_BYTES = ctypes.POINTER(ctypes.c_ubyte)
_LOGIN_T = ctypes.CFUNCTYPE(_CK_ULONG, _CK_ULONG, _CK_ULONG, _BYTES, _CK_ULONG)
_LOGOUT_T = ctypes.CFUNCTYPE(_CK_ULONG, _CK_ULONG)
_SESSION_INFO_T = ctypes.CFUNCTYPE(_CK_ULONG, _CK_ULONG, ctypes.POINTER(_SessionInfo))
_SIGN_INIT_T = ctypes.CFUNCTYPE(_CK_ULONG, _CK_ULONG, ctypes.POINTER(_Mechanism), _CK_ULONG)
_SIGN_T = ctypes.CFUNCTYPE(
    _CK_ULONG, _CK_ULONG, _BYTES, _CK_ULONG, _BYTES, ctypes.POINTER(_CK_ULONG)
)


class Cryptoki:
    """Raw calls into the module python-pkcs11 already loaded (same path, same process state).

    python-pkcs11 0.10.1 takes the PIN as ``str`` (an immutable copy nobody can wipe), leaks a
    session when C_Login fails inside ``Token.open`` and cannot put a context-specific login
    between C_SignInit and C_Sign. These calls do: the PIN goes to C_Login straight from the
    caller's bytearray. Tests subclass this to count C_Login calls at the library boundary.
    """

    def __init__(self, module_path: str) -> None:
        self._dll = ctypes.CDLL(module_path)
        get_list = self._dll.C_GetFunctionList
        get_list.argtypes = (ctypes.POINTER(ctypes.POINTER(_FunctionList)),)
        get_list.restype = _CK_ULONG
        table = ctypes.POINTER(_FunctionList)()
        rv = int(get_list(ctypes.byref(table)))
        if rv != CKR_OK or not table:
            raise _card_failure(rv, "C_GetFunctionList")
        functions = table.contents
        self._login = _LOGIN_T(functions.C_Login)
        self._logout = _LOGOUT_T(functions.C_Logout)
        self._session_info = _SESSION_INFO_T(functions.C_GetSessionInfo)
        self._sign_init = _SIGN_INIT_T(functions.C_SignInit)
        self._sign = _SIGN_T(functions.C_Sign)

    def login(self, session: int, user_type: int, pin: bytearray | None) -> int:
        """One C_Login; ``pin=None`` means the PIN is typed on the reader (NULL, 0)."""
        if pin is None:
            return int(self._login(session, user_type, None, 0))
        # Zero-copy view on the caller's buffer, released before returning.
        view = (ctypes.c_ubyte * len(pin)).from_buffer(pin)
        try:
            return int(self._login(session, user_type, view, len(pin)))
        finally:
            del view

    def logout(self, session: int) -> int:
        return int(self._logout(session))

    def session_slot(self, session: int) -> int | None:
        """The slot of an open session handle, or None when the handle is not open."""
        info = _SessionInfo()
        if int(self._session_info(session, ctypes.byref(info))) != CKR_OK:
            return None
        return int(info.slotID)

    def open_sessions(self, slot_id: int, max_handle: int = 4096) -> int:
        """Sessions open on ``slot_id`` in this process, found by asking C_GetSessionInfo for
        every handle up to ``max_handle`` (modules number handles from 1): an observation that
        does not trust any bookkeeping of ours."""
        return sum(1 for h in range(1, max_handle + 1) if self.session_slot(h) == slot_id)

    def sign_init(self, session: int, key: int) -> int:
        mechanism = _Mechanism(_CKM_SHA256_RSA_PKCS, None, 0)
        return int(self._sign_init(session, ctypes.byref(mechanism), key))

    def sign(self, session: int, data: bytes) -> tuple[int, bytes]:
        """C_Sign in the two-call form (size, then signature) on an initialised operation."""
        size = _CK_ULONG(0)
        data_buf = (ctypes.c_ubyte * len(data)).from_buffer_copy(data)
        rv = int(self._sign(session, data_buf, len(data), None, ctypes.byref(size)))
        if rv != CKR_OK:
            return rv, b""
        out = (ctypes.c_ubyte * max(size.value, 1))()
        rv = int(self._sign(session, data_buf, len(data), out, ctypes.byref(size)))
        return rv, bytes(out[: size.value]) if rv == CKR_OK else b""


# --- module choice ------------------------------------------------------------------------------


def open_module(mode: str, configured: str | None) -> tuple[Pkcs11Lib, ModuleCandidate]:
    """Load the configured module, else the first that loads among CryptoLib CPS, OpenSC and (test
    or demo mode only) SoftHSM2. Raises NoPkcs11Module with French words when none loads."""
    candidates = probe_modules(mode, configured)
    if configured and not candidates[0].path.is_file():
        raise NoPkcs11Module(
            f"Le module PKCS#11 configuré est introuvable : {configured}.",
            f"The configured PKCS#11 module is missing: {configured}.",
        )
    failures: list[str] = []
    for candidate in candidates:
        try:
            # The path string is the cache key of python-pkcs11: never spell it two ways.
            return pkcs11.lib(str(candidate.path)), candidate
        except (OSError, RuntimeError) as exc:
            failures.append(f"{candidate.path} ({type(exc).__name__})")
            if candidate.kind == "configured":
                break  # a configured module that fails must be fixed, not silently replaced
    tried = ", ".join(failures) if failures else "aucun trouvé"
    raise NoPkcs11Module(
        "Aucun module PKCS#11 utilisable pour la carte CPS (CryptoLib CPS ou OpenSC) : "
        f"{tried}. Installez la CryptoLib CPS ou le paquet opensc.",
        "No usable PKCS#11 module for the CPS card (CryptoLib CPS or OpenSC): "
        f"{', '.join(failures) or 'none found'}. Install the CryptoLib CPS or the opensc package.",
    )


# --- certificates on the card -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _CardCert:
    key_id: bytes
    der: bytes
    cert: x509.Certificate

    @property
    def is_ca(self) -> bool:
        try:
            return self.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            return False

    def usage(self, which: Literal["non_repudiation", "digital_signature"]) -> bool:
        try:
            ku = self.cert.extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            return False
        return ku.content_commitment if which == "non_repudiation" else ku.digital_signature


def _name_attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value).strip() if values else ""


def _holder(cert: x509.Certificate) -> tuple[str, str]:
    """(display name, RPPS) from the subject: serialNumber holds the RPPS (CPS cards may prefix
    the 11 digits with the identifier type "8"); the CN is "<id>/<name>" or just the name."""
    subject = cert.subject
    cn = _name_attr(subject, NameOID.COMMON_NAME)
    ident, _, display = cn.partition("/")
    if not display:
        ident, display = "", cn
    serial = _name_attr(subject, NameOID.SERIAL_NUMBER) or ident.strip()
    rpps = (
        serial[1:] if len(serial) == 12 and serial.startswith("8") and serial.isdigit() else serial
    )
    if not display.strip():
        given = _name_attr(subject, NameOID.GIVEN_NAME)
        surname = _name_attr(subject, NameOID.SURNAME)
        display = f"{given} {surname}".strip()
    return display.strip(), rpps


def _self_signed(cert: x509.Certificate) -> bool:
    return cert.subject == cert.issuer


# --- the signer -------------------------------------------------------------------------------


class Pkcs11Signer:
    """TokenSigner over a PKCS#11 module: the card's identity without PIN, its fresh PIN state, and
    exactly one C_Login per :meth:`login` call (never retried, never made when the PIN is locked).

    ``token_label`` and ``slot_filter`` choose the card when the module shows several slots. Once
    :meth:`identify` has seen a card, later calls stay on that slot and that card (by serial).
    """

    def __init__(
        self,
        lib: Pkcs11Lib,
        *,
        token_label: str | None = None,
        slot_filter: Callable[[pkcs11.Slot], bool] | None = None,
        cryptoki: Cryptoki | None = None,
    ) -> None:
        self._lib = lib
        self._label = token_label
        self._slot_filter = slot_filter
        self.cryptoki: Cryptoki = cryptoki if cryptoki is not None else Cryptoki(lib.so)
        self._identity: CardIdentity | None = None
        self._slot: pkcs11.Slot | None = None
        self._lock = threading.Lock()
        self._open = 0

    def __repr__(self) -> str:
        return f"<Pkcs11Signer module={self._lib.so!r} label={self._label!r}>"

    @property
    def open_sessions(self) -> int:
        """Sessions this adapter opened and has not closed yet (tests check it is 0)."""
        return self._open

    @property
    def slot_id(self) -> int | None:
        return None if self._slot is None else int(self._slot.slot_id)

    # -- token lookup (flags are a snapshot in python-pkcs11: always fetch the token again) --

    def _token(self) -> pkcs11.Token:
        try:
            if self._slot is not None:
                token = self._slot.get_token()
                if self._identity is not None and token.serial.decode() != (
                    self._identity.token_serial
                ):
                    raise CardRemoved()  # another card took its place: identify it again
                return token
            found: list[pkcs11.Token] = []
            for slot in self._lib.get_slots(token_present=True):
                if self._slot_filter is not None and not self._slot_filter(slot):
                    continue
                try:
                    token = slot.get_token()
                except (pkcs11.TokenNotPresent, pkcs11.DeviceRemoved, pkcs11.TokenNotRecognised):
                    continue
                if not token.flags & TokenFlag.TOKEN_INITIALIZED:
                    continue
                if self._label is not None and token.label != self._label:
                    continue
                found.append(token)
        except (pkcs11.TokenNotPresent, pkcs11.DeviceRemoved, pkcs11.SlotIDInvalid) as exc:
            raise CardRemoved() from exc
        if not found:
            raise CardRemoved()
        if len(found) > 1:
            raise SeveralCards()
        return found[0]

    def _open_session(self, token: pkcs11.Token) -> pkcs11.Session:
        try:
            session = token.open()  # no PIN here: C_Login is ours, so a failure leaks nothing
        except (pkcs11.TokenNotPresent, pkcs11.DeviceRemoved, pkcs11.SlotIDInvalid) as exc:
            raise CardRemoved() from exc
        with self._lock:
            self._open += 1
        return session

    def _close_session(self, session: pkcs11.Session, *, logged_in: bool) -> None:
        try:
            if logged_in:
                # python-pkcs11 thinks this session is public (we logged in ourselves).
                self.cryptoki.logout(_handle(session))
            session.close()
        except pkcs11.PKCS11Error:
            pass  # the card left: the module has dropped the session already
        finally:
            with self._lock:
                self._open -= 1

    # -- TokenSigner -----------------------------------------------------------------------------

    def identify(self) -> CardIdentity:
        """Read the card WITHOUT PIN: the signature certificate by key usage and its CKA_ID."""
        token = self._token()
        session = self._open_session(token)
        try:
            certs = self._certificates(session)
            chosen = self._signature_cert(session, certs)
            always_auth = self._visible_always_authenticate(session, chosen.key_id)
        except (
            pkcs11.DeviceRemoved,
            pkcs11.TokenNotPresent,
            pkcs11.SessionClosed,
            pkcs11.SessionHandleInvalid,
        ) as exc:
            raise CardRemoved() from exc
        finally:
            self._close_session(session, logged_in=False)
        name, rpps = _holder(chosen.cert)
        extra = tuple(
            c.der
            for c in sorted(certs, key=lambda c: c.key_id)
            if c.is_ca and not _self_signed(c.cert) and c.der != chosen.der
        )
        identity = CardIdentity(
            holder_name=name,
            rpps=rpps,
            signature_cert_der=chosen.der,
            extra_certs_der=extra,
            not_before=chosen.cert.not_valid_before_utc,
            not_after=chosen.cert.not_valid_after_utc,
            key_id=chosen.key_id,
            always_authenticate=always_auth,
            token_label=token.label,
            token_serial=token.serial.decode(errors="replace"),
        )
        self._slot = token.slot
        self._identity = identity
        return identity

    @staticmethod
    def _certificates(session: pkcs11.Session) -> list[_CardCert]:
        out: list[_CardCert] = []
        for obj in session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE}):
            try:
                der = bytes(obj[Attribute.VALUE])
                key_id = bytes(obj[Attribute.ID])
                cert = x509.load_der_x509_certificate(der)
            except (pkcs11.PKCS11Error, ValueError):
                continue  # an unreadable object is not a certificate we can use
            out.append(_CardCert(key_id, der, cert))
        return out

    @staticmethod
    def _has_key(session: pkcs11.Session, key_id: bytes) -> bool:
        for cls in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
            if any(True for _ in session.get_objects({Attribute.CLASS: cls, Attribute.ID: key_id})):
                return True
        return False

    def _signature_cert(self, session: pkcs11.Session, certs: list[_CardCert]) -> _CardCert:
        leaves = [c for c in certs if not c.is_ca and c.key_id]
        # nonRepudiation is the signature certificate; digitalSignature only when no card
        # certificate has nonRepudiation (the authentication certificate has digitalSignature).
        candidates = [c for c in leaves if c.usage("non_repudiation")] or [
            c for c in leaves if c.usage("digital_signature")
        ]
        if len(candidates) > 1:
            with_key = [c for c in candidates if self._has_key(session, c.key_id)]
            candidates = with_key or candidates
            # Still several: the most recent one (a renewed certificate left beside the old).
            candidates.sort(key=lambda c: c.cert.not_valid_before_utc, reverse=True)
        if not candidates:
            raise CardNotSupported(
                "Aucun certificat de signature sur la carte (usage non-répudiation).",
                "No signature certificate on the card (nonRepudiation key usage).",
            )
        return candidates[0]

    @staticmethod
    def _visible_always_authenticate(session: pkcs11.Session, key_id: bytes) -> bool:
        """CKA_ALWAYS_AUTHENTICATE when the private key is visible before login (often it is
        not: then the session reads it after login)."""
        for key in session.get_objects(
            {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.ID: key_id}
        ):
            try:
                return bool(key[Attribute.ALWAYS_AUTHENTICATE])
            except pkcs11.PKCS11Error:
                return False
        return False

    def _token_flags(self) -> int:
        """CK_TOKEN_INFO.flags read now (python-pkcs11's Token.flags is a snapshot)."""
        return int(self._token().flags)

    def pin_state(self) -> PinState:
        flags = self._token_flags()
        return PinState(
            tries_left=tries_from_flags(
                count_low=bool(flags & TokenFlag.USER_PIN_COUNT_LOW),
                final_try=bool(flags & TokenFlag.USER_PIN_FINAL_TRY),
                locked=bool(flags & TokenFlag.USER_PIN_LOCKED),
            ),
            protected_path=bool(flags & TokenFlag.PROTECTED_AUTHENTICATION_PATH),
        )

    def login(
        self, pin: bytearray | None, *, allowed_signatures: int | None = None
    ) -> Pkcs11Session:
        """Exactly one C_Login with ``pin`` (None: typed on the reader's keypad).

        ``allowed_signatures`` is the size of the batch the practitioner confirmed: the session
        refuses any signature beyond it; where the key demands a login per use it is required,
        and the session keeps its own copy of the PIN (wiped at close) for those logins.
        """
        identity = self._identity if self._identity is not None else self.identify()
        self._check_pin_entry(pin)
        if allowed_signatures is not None and allowed_signatures < 0:
            raise ValueError("allowed_signatures must be >= 0")
        token = self._token()
        session = self._open_session(token)
        handle = _handle(session)
        rv = self.cryptoki.login(handle, CKU_USER, pin)
        if rv != CKR_OK:
            self._close_session(session, logged_in=False)
            raise self._login_error(rv)
        try:
            key = self._private_key(session, identity)
        except BaseException:
            self._close_session(session, logged_in=True)
            raise
        always_auth = _read_bool(key, Attribute.ALWAYS_AUTHENTICATE)
        held: bytearray | None = None
        if always_auth and pin is not None and allowed_signatures:
            held = bytearray(pin)  # wiped by Pkcs11Session.close; None on a keypad reader
        return Pkcs11Session(
            self,
            session,
            key,
            always_authenticate=always_auth,
            pin=held,
            allowed_signatures=allowed_signatures,
        )

    def _check_pin_entry(self, pin: bytearray | None) -> None:
        """Before any C_Login: a locked card, a PIN typed on the box for a keypad reader, or no
        PIN at all are refused (nothing is sent to the card)."""
        state = self.pin_state()
        if state.locked:
            raise PinLocked()
        if state.protected_path and pin is not None:
            raise ValidationError(
                "Ce lecteur a son propre clavier : le code se tape sur le lecteur.",
                "This reader has its own keypad: the PIN is typed on the reader.",
                code=CardCode.PIN_ON_READER,
            )
        if not state.protected_path and not pin:
            raise ValidationError("Code PIN vide.", "Empty PIN.", code=CardCode.PIN_EMPTY)

    def prove(self, pin: bytearray | None, challenge: bytes) -> CardProof:
        """The card proves who holds it: exactly one C_Login with ``pin``, then ``challenge``
        signed (SHA-256, PKCS#1 v1.5) with the AUTHENTICATION key — the private key with the
        CKA_ID of the card's digitalSignature certificate that is not the nonRepudiation one,
        never the signature key — then logout and close, whatever happens."""
        if self._identity is None:
            self.identify()
        self._check_pin_entry(pin)
        token = self._token()
        session = self._open_session(token)
        rv = self.cryptoki.login(_handle(session), CKU_USER, pin)
        if rv != CKR_OK:
            self._close_session(session, logged_in=False)
            raise self._login_error(rv)
        try:
            leaves = [c for c in self._certificates(session) if not c.is_ca and c.key_id]
            chosen = [
                c for c in leaves if c.usage("digital_signature") and not c.usage("non_repudiation")
            ]
            if not chosen:
                raise CardNotSupported(
                    "Aucun certificat d'authentification sur la carte.",
                    "No authentication certificate on the card.",
                )
            auth = chosen[0]
            keys = [
                k
                for k in session.get_objects(
                    {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.ID: auth.key_id}
                )
                if isinstance(k, pkcs11.SignMixin)
            ]
            if len(keys) != 1:
                raise CardNotSupported(
                    "La clé d'authentification de la carte est introuvable.",
                    "The card's authentication key was not found.",
                )
            signature: bytes = keys[0].sign(challenge, mechanism=Mechanism.SHA256_RSA_PKCS)
        except _REMOVED_ERRORS as exc:
            raise CardRemoved() from exc
        except pkcs11.PKCS11Error as exc:
            raise CardError(
                f"La carte a refusé de prouver son identité ({type(exc).__name__}).",
                f"The card refused to prove its identity ({type(exc).__name__}).",
                code=CardCode.CARD_FAILURE,
            ) from exc
        finally:
            self._close_session(session, logged_in=True)
        return CardProof(auth.der, challenge, signature)

    def _login_error(self, rv: int) -> CardError:
        if rv in _WRONG:
            # Flags changed with the failure: read them again for the tries left.
            try:
                return WrongPin(self.pin_state().tries_left)
            except CardRemoved as removed:
                return removed
        if rv == CKR_PIN_LOCKED:
            return PinLocked()
        if rv in _GONE or rv == CKR_DEVICE_ERROR:
            return CardRemoved()
        if rv == CKR_FUNCTION_CANCELED:
            return PinEntryCancelled()
        return _card_failure(rv, "C_Login")

    @staticmethod
    def _private_key(session: pkcs11.Session, identity: CardIdentity) -> pkcs11.PrivateKey:
        """The private key with the certificate's CKA_ID (never by position), checked against the
        certificate's public key when the module lets us read the modulus."""
        try:
            keys = list(
                session.get_objects(
                    {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.ID: identity.key_id}
                )
            )
        except (pkcs11.DeviceRemoved, pkcs11.TokenNotPresent, pkcs11.SessionClosed) as exc:
            raise CardRemoved() from exc
        if (
            len(keys) != 1
            or not isinstance(keys[0], pkcs11.PrivateKey)
            or not isinstance(keys[0], pkcs11.SignMixin)
        ):
            raise CardNotSupported(
                "La clé de signature de la carte est introuvable (identifiant du certificat).",
                "The card's signature key was not found (certificate CKA_ID).",
            )
        key = keys[0]
        public = x509.load_der_x509_certificate(identity.signature_cert_der).public_key()
        if isinstance(public, rsa.RSAPublicKey):
            try:
                modulus = int.from_bytes(key[Attribute.MODULUS], "big")
            except pkcs11.PKCS11Error:
                modulus = None
            if modulus is not None and modulus != public.public_numbers().n:
                raise CardNotSupported(
                    "La clé de signature ne correspond pas au certificat de la carte.",
                    "The signature key does not match the card's certificate.",
                )
        return key


def _handle(obj: object) -> int:
    """The Cryptoki handle python-pkcs11 keeps on sessions and objects (not in its type stubs)."""
    handle = getattr(obj, "handle", None)
    if not isinstance(handle, int):
        raise TypeError(f"no Cryptoki handle on {type(obj).__name__}")
    return handle


def _read_bool(obj: pkcs11.Object, attribute: Attribute) -> bool:
    try:
        return bool(obj[attribute])
    except pkcs11.PKCS11Error:
        return False


_REMOVED_ERRORS: Final = (
    pkcs11.DeviceRemoved,
    pkcs11.TokenNotPresent,
    pkcs11.SessionClosed,
    pkcs11.SessionHandleInvalid,
    pkcs11.DeviceError,
)


class Pkcs11Session:
    """A logged-in session: signs with the key found by CKA_ID, one context-specific login per
    signature where the key demands it, none beyond ``allowed_signatures``; closed once."""

    def __init__(
        self,
        signer: Pkcs11Signer,
        session: pkcs11.Session,
        key: pkcs11.PrivateKey,
        *,
        always_authenticate: bool,
        pin: bytearray | None,
        allowed_signatures: int | None,
    ) -> None:
        self._signer = signer
        self._session: pkcs11.Session | None = session
        self._key = key
        self.always_authenticate = always_authenticate
        self._pin = pin
        self.allowed_signatures = allowed_signatures
        self.signatures = 0  # attempts made, each one consuming one consent
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        state = "closed" if self._session is None else "open"
        return (
            f"<Pkcs11Session {state} signatures={self.signatures}/{self.allowed_signatures} "
            f"always_authenticate={self.always_authenticate}>"
        )

    def __enter__(self) -> Pkcs11Session:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._session is None

    def sign(self, data: bytes) -> bytes:
        with self._lock:
            session = self._session
            if session is None:
                raise StateError(
                    "La session de la carte est fermée : elle ne sert qu'une fois.",
                    "The card session is closed: it is never reused.",
                    code=CardCode.CARD_SESSION_CLOSED,
                )
            if self.allowed_signatures is not None and self.signatures >= self.allowed_signatures:
                raise SignatureNotAllowed(self.allowed_signatures)
            if self.always_authenticate and self.allowed_signatures is None:
                # A per-use login needs the practitioner's consent: the confirmed batch size.
                raise SignatureNotAllowed(None)
            self.signatures += 1
            try:
                if self.always_authenticate:
                    return self._sign_with_context_login(session, data)
                if not isinstance(self._key, pkcs11.SignMixin):  # checked at login already
                    raise TypeError("signature key without sign()")
                signature: bytes = self._key.sign(data, mechanism=Mechanism.SHA256_RSA_PKCS)
                return signature
            except _REMOVED_ERRORS as exc:
                raise CardRemoved() from exc
            except pkcs11.PKCS11Error as exc:
                raise CardError(
                    f"La carte a refusé la signature ({type(exc).__name__}).",
                    f"The card refused to sign ({type(exc).__name__}).",
                    code=CardCode.CARD_FAILURE,
                ) from exc

    def _sign_with_context_login(self, session: pkcs11.Session, data: bytes) -> bytes:
        cryptoki = self._signer.cryptoki
        handle = _handle(session)
        rv = cryptoki.sign_init(handle, _handle(self._key))
        if rv != CKR_OK:
            raise CardRemoved() if rv in _GONE else _card_failure(rv, "C_SignInit")
        rv = cryptoki.login(handle, CKU_CONTEXT_SPECIFIC, self._pin)
        if rv != CKR_OK:
            # The signing operation stays pending: the session is spoiled, close it now.
            self._close_locked()
            raise self._signer._login_error(rv)
        rv, signature = cryptoki.sign(handle, data)
        if rv != CKR_OK:
            raise CardRemoved() if rv in _GONE else _card_failure(rv, "C_Sign")
        return signature

    def _close_locked(self) -> None:
        session, self._session = self._session, None
        if self._pin is not None:
            self._pin[:] = bytes(len(self._pin))
            self._pin = None
        if session is not None:
            self._signer._close_session(session, logged_in=True)

    def close(self) -> None:
        """Log out, close the session and overwrite the held PIN with zeros (idempotent)."""
        with self._lock:
            self._close_locked()
