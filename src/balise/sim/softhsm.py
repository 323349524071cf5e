"""SoftHSM2 tokens standing in for a CPS card: a private SoftHSM2 configuration and tokens holding
a practitioner's authentication and signature keys and certificates (test PKI of balise.sim.pki)."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from balise.domain.codes import SimCode
from balise.domain.errors import BaliseError
from balise.sim.pki import Issued, Practitioner

__all__ = [
    "AUTHENTICATION_ID",
    "AUTHENTICATION_LABEL",
    "INTERMEDIATE_ID",
    "SIGNATURE_ID",
    "SIGNATURE_LABEL",
    "SOFTHSM_MODULE_CANDIDATES",
    "SoftHSM",
    "SoftHSMError",
    "TokenInfo",
    "find_softhsm_module",
]

# The first candidate is Debian's documented path. python-pkcs11 caches loaded libraries by the
# path *string*: two spellings of one library would call C_Initialize twice in one process, so
# every caller must take the path from here rather than hard-code its own.
SOFTHSM_MODULE_CANDIDATES: Final[tuple[Path, ...]] = (
    Path("/usr/lib/softhsm/libsofthsm2.so"),
    Path("/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"),
    Path("/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so"),
    Path("/usr/lib64/pkcs11/libsofthsm2.so"),
    Path("/usr/lib/pkcs11/libsofthsm2.so"),
    Path("/usr/local/lib/softhsm/libsofthsm2.so"),
)

# Authentication first (01), signature second (02), on purpose: code that signs with "the first
# private key" picks the wrong one; it must choose by key usage and the matching CKA_ID.
AUTHENTICATION_ID: Final = b"\x01"
SIGNATURE_ID: Final = b"\x02"
INTERMEDIATE_ID: Final = b"\x10"
AUTHENTICATION_LABEL: Final = "Authentification"
SIGNATURE_LABEL: Final = "Signature"

_TIMEOUT_S: Final = 30.0
_MAX_LABEL_LEN: Final = 32  # CK_TOKEN_INFO.label is 32 bytes


class SoftHSMError(BaliseError):
    """The SoftHSM2 test token could not be set up."""

    code = SimCode.SIM_SOFTHSM


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What a test needs to open a token: its label, PINs, the CKA_IDs and its serial."""

    label: str
    pin: str
    so_pin: str
    signature_id: bytes
    authentication_id: bytes
    serial: str


def find_softhsm_module() -> Path | None:
    """Return the SoftHSM2 PKCS#11 module installed here, or None."""
    for candidate in SOFTHSM_MODULE_CANDIDATES:
        if candidate.is_file():
            return candidate
    return None


class SoftHSM:
    """A SoftHSM2 instance with its own configuration and token directory under ``directory``.

    Nothing global is touched: tools run with ``SOFTHSM2_CONF`` from :meth:`env`. A process that
    loads the module itself must have that variable set before the module's C_Initialize.
    """

    def __init__(self, directory: Path) -> None:
        module = find_softhsm_module()
        if module is None:
            raise SoftHSMError(
                "Module PKCS#11 SoftHSM2 introuvable (paquet softhsm2 non installé ?).",
                "SoftHSM2 PKCS#11 module not found (is the softhsm2 package installed?).",
            )
        self.module: Path = module
        self.directory: Path = directory
        self.token_dir: Path = directory / "tokens"
        self.token_dir.mkdir(parents=True, exist_ok=True)
        self.conf: Path = directory / "softhsm2.conf"
        self.conf.write_text(
            f"directories.tokendir = {self.token_dir}\n"
            "objectstore.backend = file\n"
            "log.level = ERROR\n"
            "slots.removable = false\n"
        )
        self._labels: set[str] = set()

    def env(self) -> dict[str, str]:
        """Environment additions for any process that uses this instance."""
        return {"SOFTHSM2_CONF": str(self.conf)}

    def create_token(
        self,
        label: str,
        practitioner: Practitioner,
        *,
        pin: str,
        so_pin: str,
        intermediate: Issued | None = None,
    ) -> TokenInfo:
        """Initialise a token like a CPS card: authentication key+certificate (CKA_ID 01),
        signature key+certificate (CKA_ID 02) and, when given, the intermediate CA certificate."""
        if not label or len(label.encode()) > _MAX_LABEL_LEN:
            raise ValueError(f"a token label has 1 to 32 bytes, got {label!r}")
        if label in self._labels:
            raise ValueError(f"token label {label!r} already used in this SoftHSM instance")
        self._run(
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            label,
            "--so-pin",
            so_pin,
            "--pin",
            pin,
        )
        self._labels.add(label)
        for item, key_id, item_label in (
            (practitioner.authentication, AUTHENTICATION_ID, AUTHENTICATION_LABEL),
            (practitioner.signature, SIGNATURE_ID, SIGNATURE_LABEL),
        ):
            # softhsm2-util imports the private key and its public key under the same id/label.
            self._run(
                "softhsm2-util",
                "--import",
                str(item.key_pem),
                "--token",
                label,
                "--label",
                item_label,
                "--id",
                key_id.hex(),
                "--pin",
                pin,
            )
            self._write_cert(label, pin, item.cert_der, item_label, key_id)
        if intermediate is not None:
            self._write_cert(label, pin, intermediate.cert_der, intermediate.name, INTERMEDIATE_ID)
        return TokenInfo(
            label=label,
            pin=pin,
            so_pin=so_pin,
            signature_id=SIGNATURE_ID,
            authentication_id=AUTHENTICATION_ID,
            serial=self._serial_of(label),
        )

    def delete_token(self, label: str) -> None:
        """Remove a token (its files) from this instance."""
        self._run("softhsm2-util", "--delete-token", "--token", label)
        self._labels.discard(label)

    def _write_cert(self, label: str, pin: str, der: Path, cert_label: str, key_id: bytes) -> None:
        self._run(
            "pkcs11-tool",
            "--module",
            str(self.module),
            "--token-label",
            label,
            "--login",
            "--pin",
            pin,
            "--write-object",
            str(der),
            "--type",
            "cert",
            "--label",
            cert_label,
            "--id",
            key_id.hex(),
        )

    def _serial_of(self, label: str) -> str:
        out = self._run("softhsm2-util", "--show-slots")
        # Blocks start with "Slot <n>"; fields are space-padded to their fixed PKCS#11 width.
        for block in re.split(r"^Slot ", out, flags=re.MULTILINE):
            fields: dict[str, str] = {
                m.group(1): m.group(2).strip()
                for m in re.finditer(r"^\s+([A-Za-z .]+?):\s*(.*)$", block, flags=re.MULTILINE)
            }
            if fields.get("Label") == label and fields.get("Serial number"):
                return fields["Serial number"]
        raise SoftHSMError(
            f"Jeton SoftHSM2 « {label} » introuvable après son initialisation.",
            f"SoftHSM2 token {label!r} not found after initialisation.",
        )

    def _run(self, *argv: str) -> str:
        try:
            done: subprocess.CompletedProcess[str] = subprocess.run(
                argv,
                env={**os.environ, **self.env()},
                capture_output=True,
                text=True,
                timeout=_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SoftHSMError(
                f"Échec de {argv[0]} ({argv[1]}).", f"{argv[0]} ({argv[1]}) failed."
            ) from exc
        if done.returncode != 0:
            # The command line holds PINs: report the tool, the action and its output only.
            detail = (done.stderr or done.stdout).strip()
            raise SoftHSMError(
                f"Échec de {argv[0]} {argv[1]} (code {done.returncode}) : {detail}",
                f"{argv[0]} {argv[1]} failed (exit {done.returncode}): {detail}",
            )
        return done.stdout
