"""One error tree for Balise: every error a person can meet has a stable code and words in French and English."""

from __future__ import annotations


class BaliseError(Exception):
    """Base of every error Balise raises on purpose.

    ``code`` is stable (used in tests, the journal and quarantine records); ``fr`` and ``en`` are
    the messages shown to people. The exception text is the French message, never a secret.
    """

    code: str = "BALISE"

    def __init__(self, fr: str, en: str | None = None, *, code: str | None = None) -> None:
        if code is not None:
            self.code = code
        self.fr = fr
        self.en = en if en is not None else fr
        super().__init__(f"[{self.code}] {fr}")

    def message(self, lang: str = "fr") -> str:
        return self.en if lang == "en" else self.fr


class ConfigError(BaliseError):
    """A parameter, the KEK or the data dir is missing or wrong."""

    code = "CONFIG"


class ValidationError(BaliseError):
    """A value given by a person or a file does not have the expected form."""

    code = "INVALID"


class IntegrityError(BaliseError):
    """Stored data failed an integrity check (vault tag, journal chain, archive)."""

    code = "INTEGRITY"


class StateError(BaliseError):
    """An action not allowed in the current state (lot transition, lock held...)."""

    code = "STATE"


class UnreadableFileError(ValidationError):
    """A dropped file the box cannot take as bytes: a link (never followed), a folder, a named
    pipe, a file it may not read or whose read fails. It is set aside, never retried."""

    code = "DEPOT_UNREADABLE"


class DiskFullError(BaliseError):
    """No room left where the box had to write: the action is not done and nothing half-written
    is kept (what was to be taken stays where it was, to be taken later)."""

    code = "DISK_FULL"
