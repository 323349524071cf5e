"""What the box records about a lot and about a refused file (pure data)."""

from __future__ import annotations

from dataclasses import dataclass

from balise.domain.lotstate import LotState


@dataclass(frozen=True, slots=True)
class LotRecord:
    """A lot accepted at intake, as stored (the file bytes are fetched separately)."""

    id: int
    profile: str
    emitter: str
    lot_number: str  # NNN
    lot_date: str  # AAMMJJ
    addressee: str
    organism: str
    flow: str
    application: str
    invoices: int
    total: int  # cents
    sha256: str
    size: int
    state: LotState
    received: str
    source: str
    state_changed: str
    signer: str | None = None
    compostage: str | None = None
    message_id: str | None = None
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class QuarantineProblem:
    code: str
    record: int | None
    fr: str
    en: str


@dataclass(frozen=True, slots=True)
class QuarantineRecord:
    """A file refused at intake, with every reason; its bytes are kept untouched unless
    ``content_dropped`` says why not (over the lot size cap, over the refused files' quota, or
    left out of a backup): its name, size and SHA-256 always stay."""

    id: int
    received: str
    source: str
    name: str
    sha256: str
    size: int
    problems: tuple[QuarantineProblem, ...]
    content_dropped: str | None = None

    @property
    def content_kept(self) -> bool:
        return self.content_dropped is None
