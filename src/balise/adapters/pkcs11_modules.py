"""Where PKCS#11 modules live: the ANS CryptoLib CPS, OpenSC, and SoftHSM2 (test and demo only)."""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

from balise.domain.atr import ModuleKind

CPS_MODULES = (
    Path("/opt/santesocial/CPS/lib/libcps3_pkcs11_lux.so"),
    Path("/usr/lib64/libcps3_pkcs11_lux.so"),
)
OPENSC_GLOBS = ("/usr/lib/*/opensc-pkcs11.so", "/usr/lib/opensc-pkcs11.so")
SOFTHSM_GLOBS = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/*/softhsm/libsofthsm2.so")


@dataclass(frozen=True, slots=True)
class ModuleCandidate:
    kind: ModuleKind
    path: Path


def _globbed(patterns: tuple[str, ...]) -> list[Path]:
    seen: dict[Path, Path] = {}
    for pattern in patterns:
        for found in sorted(glob.glob(pattern)):
            seen.setdefault(Path(found).resolve(), Path(found))
    return list(seen.values())


def probe_modules(mode: str, configured: str | None = None) -> list[ModuleCandidate]:
    """Existing modules in the order they are tried; SoftHSM2 only in test or demo mode."""
    found: list[ModuleCandidate] = []
    if configured:
        found.append(ModuleCandidate("configured", Path(configured)))
    found += [ModuleCandidate("cryptolib", p) for p in CPS_MODULES if p.exists()]
    found += [ModuleCandidate("opensc", p) for p in _globbed(OPENSC_GLOBS)]
    if mode in ("test", "demo"):
        found += [ModuleCandidate("softhsm", p) for p in _globbed(SOFTHSM_GLOBS)]
    return found


def module_kind(path: str | Path) -> ModuleKind:
    """Which family a module file belongs to, from its name (a configured path included)."""
    name = Path(path).name.lower()
    if "cps3_pkcs11" in name or "cps_pkcs11" in name:
        return "cryptolib"
    if "opensc" in name:
        return "opensc"
    if "softhsm" in name:
        return "softhsm"
    return "configured"
