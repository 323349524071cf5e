"""Mail classification for the purge: the box's policy from its parameters, and one verdict per
message from the out-of-process worker (a worker overrun makes the message unknown, in words)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from balise.domain.classify import (
    Classification,
    ClassifyPolicy,
    UnknownReason,
    classify_headers_only,
)
from balise.domain.errors import AnalysisFailed
from balise.ports import MessageClassifier
from balise.services.params import ParameterService
from balise.services.settings import box_settings, profiles

DEFAULT_SIZE_CAP = 2 * 1024 * 1024
VerdictKind = Literal["arl", "noemie", "damaged", "unknown"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the purge does with one message: a return to track, or unknown with its reason."""

    kind: VerdictKind
    reason_code: str | None
    reason_fr: str
    reason_en: str
    classification: Classification | None  # None when the analysis itself failed

    @property
    def metadata(self) -> dict[str, str | None]:
        c = self.classification
        if c is None:
            return {}
        return {
            "message_id": c.message_id,
            "from": c.sender,
            "subject": c.subject,
            "description": c.description,
        }


def box_policy(params: ParameterService, *, size_cap: int = DEFAULT_SIZE_CAP) -> ClassifyPolicy:
    """Every practitioner configured on this box, the mode, and the organism allow-list."""
    emitters = {p.emitter_number for p in profiles(params) if p.emitter_number is not None}
    box = box_settings(params)
    return ClassifyPolicy(
        configured_emitters=frozenset(emitters),
        test_mode=not box.production,
        size_cap=size_cap,
        allowed_domains=("*.rss.fr", *box.oct_domains),
    )


@runtime_checkable
class SubmittingClassifier(MessageClassifier, Protocol):
    """A classifier that takes messages and answers later, in order (the caller works
    meanwhile); ``room`` says whether one more may be submitted before the next collect."""

    def room(self, size: int) -> bool: ...

    def submit(self, raw: bytes, policy: ClassifyPolicy) -> None: ...

    def collect(self) -> Classification: ...


class ClassifierService:
    """Turns worker results and failures into verdicts; the worker stays the only parser.

    ``submit`` then ``collect`` overlap the analysis of messages with the caller's own work (the
    next RETRs, a commit); a worker without ``submit`` is simply asked at ``collect``, one message
    at a time."""

    def __init__(self, worker: MessageClassifier) -> None:
        self._worker = worker
        self._async = worker if isinstance(worker, SubmittingClassifier) else None
        self._held: tuple[bytes, ClassifyPolicy] | None = None

    def room(self, size: int) -> bool:
        """Whether a message of ``size`` bytes may be submitted before the next collect."""
        if self._async is not None:
            return self._async.room(size)
        return self._held is None

    def judge(self, raw: bytes, policy: ClassifyPolicy) -> Verdict:
        """Classify a whole message. Raises AnalysisFailed only when restarts are exhausted."""
        self.submit(raw, policy)
        return self.collect()

    def warm(self) -> None:
        """Start the worker process ahead of the first message, if the worker can."""
        warm = getattr(self._worker, "warm", None)
        if callable(warm):
            warm()

    def flush(self) -> None:
        """Send the worker what was submitted and is still buffered (the caller is about to wait
        for something else, e.g. the network), if the worker buffers."""
        flush = getattr(self._worker, "flush", None)
        if callable(flush):
            flush()

    def new_run(self) -> None:
        """A purge run begins: the worker's restart budget is renewed (it bounds one run, not the
        life of a long-lived purge such as the agent's), and the worker is started ahead."""
        self._worker.new_run()
        self.warm()

    def submit(self, raw: bytes, policy: ClassifyPolicy) -> None:
        """Start classifying a whole message (when there is :meth:`room`)."""
        if self._async is not None:
            self._async.submit(raw, policy)
        elif self._held is None:
            self._held = (raw, policy)
        else:
            raise RuntimeError("submit() without room: collect() first")

    def collect(self) -> Verdict:
        """The verdict on the oldest submitted message: a timeout or crash makes it unknown, in words;
        raises AnalysisFailed only when restarts are exhausted."""
        try:
            if self._async is not None:
                c = self._async.collect()
            else:
                held, self._held = self._held, None
                if held is None:
                    raise RuntimeError("collect() without submit()")
                c = self._worker.classify(*held)
        except AnalysisFailed as failure:
            if failure.exhausted:
                raise
            return Verdict("unknown", failure.code, failure.fr, failure.en, None)
        return _verdict(c)

    def judge_headers(
        self,
        size: int,
        header_bytes: bytes,
        policy: ClassifyPolicy,
        reason: UnknownReason = UnknownReason.TOO_LARGE,
    ) -> Verdict:
        """A message seen only through ``TOP n 0`` (bounded header parse): over the size cap, or
        with a header block over its own bound (``reason``)."""
        return _verdict(classify_headers_only(size, header_bytes, policy, reason))

    def close(self) -> None:
        self._worker.close()


def _verdict(c: Classification) -> Verdict:
    if c.kind == "unknown" and c.reason is not None:
        return Verdict("unknown", c.reason.value, c.reason.words("fr"), c.reason.words("en"), c)
    if c.kind == "damaged":
        return Verdict("damaged", None, c.words("fr"), c.words("en"), c)
    return Verdict(c.kind, None, c.words("fr"), c.words("en"), c)
