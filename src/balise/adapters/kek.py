"""Where the key-encryption key comes from: a systemd credential, or a key file (weak protection)."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from balise.domain.codes import StoreCode
from balise.domain.errors import ConfigError, os_error_words

CREDENTIAL_NAME = "balise.kek"
MIN_KEK_BYTES = 32
MAX_KEK_BYTES = 4096
TPM_DEVICES = (Path("/dev/tpmrm0"), Path("/dev/tpm0"))

Protection = Literal["forte", "moyenne", "faible"]


@dataclass(frozen=True, slots=True)
class KekSource:
    """Where the KEK was read and how well it is protected at rest."""

    kind: Literal["systemd-credential", "key-file"]
    path: Path
    protection: Protection

    def describe(self) -> str:
        words = {
            "forte": "protection forte (identifiant systemd scellé par la puce TPM2)",
            "moyenne": "protection moyenne (identifiant systemd, sans puce TPM2)",
            "faible": "protection faible (la clé est un fichier sur le même disque)",
        }
        return f"{self.kind} {self.path} — {words[self.protection]}"


@dataclass(frozen=True, slots=True)
class Kek:
    """The derived wrapping key and its public fingerprint (which KEK wrapped which data key)."""

    key: bytes
    fingerprint: str
    source: KekSource

    def __repr__(self) -> str:  # never show the key
        return f"Kek(fingerprint={self.fingerprint!r}, source={self.source!r})"


def derive_kek(material: bytes, source: KekSource) -> Kek:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"balise kek v1").derive(
        material
    )
    fingerprint = hashlib.sha256(b"balise kek id v1\0" + key).hexdigest()[:16]
    return Kek(key, fingerprint, source)


def locate_kek(env: Mapping[str, str] | None = None) -> KekSource:
    """Find the KEK: systemd credential first, then BALISE_KEK_FILE; never a clear-text fallback."""
    environ = os.environ if env is None else env
    cred_dir = environ.get("CREDENTIALS_DIRECTORY")
    if cred_dir and (Path(cred_dir) / CREDENTIAL_NAME).exists():
        tpm = any(dev.exists() for dev in TPM_DEVICES)
        return KekSource(
            "systemd-credential", Path(cred_dir) / CREDENTIAL_NAME, "forte" if tpm else "moyenne"
        )
    key_file = environ.get("BALISE_KEK_FILE")
    if key_file:
        return KekSource("key-file", Path(key_file), "faible")
    raise ConfigError(
        "aucune clé de chiffrement (KEK) : ni identifiant systemd "
        f"$CREDENTIALS_DIRECTORY/{CREDENTIAL_NAME}, ni fichier BALISE_KEK_FILE. Balise ne démarre pas.",
        "no key-encryption key (KEK): neither the systemd credential "
        f"$CREDENTIALS_DIRECTORY/{CREDENTIAL_NAME} nor a BALISE_KEK_FILE. Balise does not start.",
        code=StoreCode.KEK_MISSING,
    )


def load_kek(env: Mapping[str, str] | None = None) -> Kek:
    source = locate_kek(env)
    try:
        info = source.path.stat()
        if source.kind == "key-file" and info.st_mode & (stat.S_IROTH | stat.S_IWOTH):
            raise ConfigError(
                f"le fichier de clé {source.path} est lisible par tous : chmod 600",
                f"key file {source.path} is world-readable: chmod 600",
                code=StoreCode.KEK_PERMISSIONS,
            )
        with source.path.open("rb") as handle:
            material = handle.read(MAX_KEK_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            f"clé de chiffrement illisible : {source.path} ({os_error_words(exc)[0]})",
            f"key-encryption key unreadable: {source.path} ({os_error_words(exc)[1]})",
            code=StoreCode.KEK_UNREADABLE,
        ) from exc
    if not MIN_KEK_BYTES <= len(material) <= MAX_KEK_BYTES:
        raise ConfigError(
            f"clé de chiffrement invalide : {source.path} doit contenir de {MIN_KEK_BYTES} à "
            f"{MAX_KEK_BYTES} octets aléatoires",
            f"invalid key-encryption key: {source.path} must hold {MIN_KEK_BYTES} to "
            f"{MAX_KEK_BYTES} random bytes",
            code=StoreCode.KEK_INVALID,
        )
    return derive_kek(material, source)


def create_key_file(path: Path) -> None:
    """Write a new random KEK file (0600), refusing to overwrite one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(os.urandom(MIN_KEK_BYTES))
        handle.flush()
        os.fsync(handle.fileno())
