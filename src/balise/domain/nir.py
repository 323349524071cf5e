"""NIR (French social security number) key computation, with the Corsica rule (PROFILE.md §1).

Pure functions; ``nir_key`` raises ``ValueError`` on a malformed NIR, ``is_valid_nir`` never raises.
"""

from __future__ import annotations

import re

# Digits everywhere, except that positions 6–7 (1-based) may be the Corsican department 2A / 2B.
_NIR_RE = re.compile(r"[0-9]{5}(?:[0-9]{2}|2A|2B)[0-9]{6}")
_KEY_RE = re.compile(r"[0-9]{2}")

# Corsica: the department is read as a number by substituting 19 for 2A and 18 for 2B. This is the
# same as reading it as 20 and subtracting 1,000,000 or 2,000,000 (never both).
_CORSICA = {"2A": "19", "2B": "18"}


def is_wellformed_nir(nir13: str) -> bool:
    """True when ``nir13`` has the 13-character NIR shape (digits, or 2A/2B at positions 6–7)."""
    return _NIR_RE.fullmatch(nir13) is not None


def nir_key(nir13: str) -> int:
    """Key of a 13-character NIR: ``97 - (NIR mod 97)``, in 1..97.

    >>> nir_key("1850575138583"), nir_key("185052A123456"), nir_key("185052B123456")
    (78, 33, 60)
    """
    if not is_wellformed_nir(nir13):
        raise ValueError("malformed NIR: 13 characters, digits (2A/2B allowed at positions 6-7)")
    dept = nir13[5:7]
    numeric = nir13[:5] + _CORSICA.get(dept, dept) + nir13[7:]
    return 97 - int(numeric) % 97


def is_valid_nir(nir13: str, key2: str) -> bool:
    """True when ``nir13`` is well formed and ``key2`` (two digits) is its key."""
    if not is_wellformed_nir(nir13) or _KEY_RE.fullmatch(key2) is None:
        return False
    return nir_key(nir13) == int(key2)
