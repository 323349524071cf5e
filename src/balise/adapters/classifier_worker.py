"""The classifier worker, parent side: starts the long-lived child of
:mod:`balise.adapters.classifier_child` (CPU-time and address-space limits), adds the wall clock,
restarts it a bounded number of times.

The parent never unpickles anything from the child: it gets JSON facts and, for a return, the
decoded payload, which it re-reads with the same bounded parser (linear, entity-capped).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import fcntl
import json
import os
import select
import subprocess
import sys
import time
from typing import Any, Final

from balise.adapters.classifier_child import (
    ADDRESS_SPACE_BYTES,
    CPU_SECONDS_PER_MESSAGE,
    HEADER,
    MAX_FRAME,
    frames,
    policy_to_json,
)
from balise.domain.classify import Classification, ClassifyPolicy, UnknownReason
from balise.domain.codes import ReturnsCode
from balise.domain.errors import AnalysisFailed
from balise.domain.returns import parse_return
from balise.domain.signed_return import return_stream

WALL_SECONDS_PER_MESSAGE: Final = 20.0
MAX_RESTARTS: Final = 5
_START_TIMEOUT_S: Final = 20.0
# The worker's pipes are enlarged to this (Linux: F_SETPIPE_SZ, up to /proc/sys/fs/pipe-max-size,
# 1 MiB by default for any user) so that a whole commit group's messages can wait in them.
PIPE_BYTES: Final = 1024 * 1024
# What may wait in a pipe of the default size (64 KiB) when it cannot be enlarged: messages and
# their frames, with room to spare for the policy's frame.
_SMALL_DEPTH: Final = 64
_SMALL_INFLIGHT: Final = 48 * 1024


def _result_from_json(facts: dict[str, Any], payload: bytes) -> Classification:
    kind = facts["kind"]
    if kind not in ("arl", "noemie", "damaged", "unknown"):
        raise ValueError(kind)
    reason = UnknownReason(facts["reason"]) if facts["reason"] is not None else None
    stream = return_stream(payload) if facts["has_payload"] else None  # PROFILE.md §3.1
    parsed = parse_return(stream[0]) if stream is not None else None
    if kind != "unknown" and (parsed is None or parsed.header is None):
        raise ValueError("return without a readable payload")
    return Classification(
        kind=kind,
        reason=reason,
        size=int(facts["size"]),
        sha256=str(facts["sha256"]),
        digest_scope="headers" if facts["digest_scope"] == "headers" else "message",
        parsed=parsed,
        description=_opt(facts["description"]),
        sender_address=_opt(facts["sender_address"]),
        sender=_opt(facts["sender"]),
        message_id=_opt(facts["message_id"]),
        subject=_opt(facts["subject"]),
        payload=payload if facts["has_payload"] else None,
    )


def _opt(value: object) -> str | None:
    return None if value is None else str(value)


# --------------------------------------------------------------------------------------------
# Parent side
# --------------------------------------------------------------------------------------------


def _enlarge(fd: int) -> bool:
    """Make the pipe behind ``fd`` hold PIPE_BYTES; False when the system refuses (a smaller
    pipe-max-size, or the user's pipe quota used up)."""
    try:
        return int(fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)) >= PIPE_BYTES
    except OSError:
        return False


@dataclasses.dataclass(slots=True)
class _Pending:
    """A message handed to the worker whose answer is not collected yet."""

    raw: bytes  # kept to hand it to a restarted worker if an earlier message kills this one
    policy: ClassifyPolicy
    op: str | None  # a test hook travelling with the message
    sent: float = 0.0  # when the worker got it (monotonic)
    error: Exception | None = None  # a failure while handing it over, reported by collect()
    start_failure: AnalysisFailed | None = None  # the worker could not even start
    deferred: bool = False  # waiting for room in a restarted worker's pipe (not handed over)


class WorkerClassifier:
    """The MessageClassifier port: one child process reused across messages, restarted (a bounded
    number of times per purge run, see :meth:`new_run`) after a timeout, a crash or a memory
    error.

    ``submit`` then ``collect`` let the caller fetch and store while messages are classified: up to
    DEPTH messages (about INFLIGHT_BYTES) wait in the worker's pipe, answered in order. The pipe
    (enlarged to PIPE_BYTES; 64 KiB, with a sixteenth of the messages, where the system refuses)
    holds all of them with their frames, so a submit never blocks on a worker busy writing an
    answer; a message larger than that is only handed over alone. Each message gets
    ``wall_seconds`` from the moment the worker can start on it (its predecessor's answer read, or
    its own hand-over). The pipeline is deep so that the worker always has work while the caller
    stores and commits a whole group (a thousand returns: the caller's time and the worker's
    overlap, and the caller seldom waits for the worker to be scheduled): returns are small."""

    DEPTH: Final = 1024
    INFLIGHT_BYTES: Final = PIPE_BYTES - 128 * 1024  # the frames and the policy fit in the rest
    # Messages handed over are written to the pipe in groups, not one write (and one wake-up of
    # the worker) each: at once to an idle worker, then every FLUSH_EVERY messages, and the rest
    # at :meth:`flush` (the caller is about to wait for the network) or before any wait for an
    # answer. A message is never waited for before it was written.
    FLUSH_EVERY: Final = 8

    def __init__(
        self,
        *,
        wall_seconds: float = WALL_SECONDS_PER_MESSAGE,
        cpu_seconds: int = CPU_SECONDS_PER_MESSAGE,
        address_space: int = ADDRESS_SPACE_BYTES,
        max_restarts: int = MAX_RESTARTS,
    ) -> None:
        self._wall = wall_seconds
        self._cpu = cpu_seconds
        self._memory = address_space
        self._max_restarts = max_restarts
        self.restarts = 0
        self.starts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._test_op: str | None = None
        self._buffer = bytearray()  # bytes read from the worker, not yet consumed
        self._policy_sent: ClassifyPolicy | None = None  # the policy the running worker holds
        self._pending: collections.deque[_Pending] = collections.deque()
        self._inflight = 0  # bytes of the pending messages
        self._answered = 0.0  # when the last answer was read (monotonic)
        self._ready_by: float | None = None  # started, its "ready" frame not read yet
        self._unflushed: list[_Pending] = []  # handed over, still in our write buffer
        # What may wait in the running worker's pipe (DEPTH and INFLIGHT_BYTES once enlarged).
        self._depth = _SMALL_DEPTH
        self._room_bytes = _SMALL_INFLIGHT
        self._deferred = 0  # how many pending messages are deferred (see _top_up)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _start(self, *, wait: bool = True) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BALISE_")}
        env.update(BALISE_WORKER_CPU=str(self._cpu), BALISE_WORKER_AS=str(self._memory))
        # The child inherits no secret: no KEK, no data dir, no open descriptors but its pipes.
        proc = subprocess.Popen(
            [sys.executable, "-I", "-m", "balise.adapters.classifier_child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            close_fds=True,
            cwd="/",
        )
        self.starts += 1
        self._proc = proc
        self._buffer = bytearray()
        self._policy_sent = None
        assert proc.stdin is not None and proc.stdout is not None
        if _enlarge(proc.stdin.fileno()) and _enlarge(proc.stdout.fileno()):
            self._depth, self._room_bytes = self.DEPTH, self.INFLIGHT_BYTES
        else:
            self._depth, self._room_bytes = _SMALL_DEPTH, _SMALL_INFLIGHT
        # Non-blocking: an answer already there is read without a select() first.
        os.set_blocking(proc.stdout.fileno(), False)
        self._ready_by = time.monotonic() + _START_TIMEOUT_S
        if wait:
            self._await_ready(proc)
        return proc

    def _await_ready(self, proc: subprocess.Popen[bytes]) -> None:
        if self._ready_by is None:
            return
        try:
            self._read(proc, self._ready_by)
        except AnalysisFailed:
            self._kill()
            raise
        self._ready_by = None

    def warm(self) -> None:
        """Start the worker now without waiting for it (its start overlaps the caller's own
        work, e.g. the POP3 login); the first submit waits for its "ready" if needed."""
        if not self._pending and (self._proc is None or self._proc.poll() is not None):
            self._kill()
            self._start(wait=False)

    def _kill(self) -> None:
        proc = self._proc
        self._proc = None
        self._buffer = bytearray()
        self._policy_sent = None
        self._ready_by = None
        self._unflushed = []
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        try:
            proc.wait(timeout=10)
        finally:
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()

    def _read(self, proc: subprocess.Popen[bytes], deadline: float) -> bytes:
        """One frame from the worker, before ``deadline`` (monotonic)."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        self._fill(fd, HEADER.size, deadline)
        (size,) = HEADER.unpack_from(self._buffer)
        if size > MAX_FRAME:
            raise self._failure(ReturnsCode.ANALYSIS_CRASHED)
        self._fill(fd, HEADER.size + size, deadline)
        frame = bytes(self._buffer[HEADER.size : HEADER.size + size])
        del self._buffer[: HEADER.size + size]
        return frame

    def _fill(self, fd: int, size: int, deadline: float) -> None:
        """Read until the buffer holds ``size`` bytes (answers already waiting in the pipe come
        in the same read)."""
        while len(self._buffer) < size:
            want = min(max(size - len(self._buffer), 64 * 1024), 1024 * 1024)
            try:
                chunk = os.read(fd, want)
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._failure(ReturnsCode.ANALYSIS_TIMEOUT) from None
                select.select([fd], [], [], left)
                continue
            if not chunk:
                raise self._failure(ReturnsCode.ANALYSIS_CRASHED)
            self._buffer += chunk

    def _failure(self, code: ReturnsCode) -> AnalysisFailed:
        if code is ReturnsCode.ANALYSIS_TIMEOUT:
            return AnalysisFailed("analyse trop longue", "analysis took too long", code=code)
        return AnalysisFailed(
            "l'analyse a échoué (processus d'analyse arrêté)",
            "analysis failed (the analysis process stopped)",
            code=code,
        )

    def new_run(self) -> None:
        """A new purge run: it gets the whole restart budget (``max_restarts``)."""
        self.restarts = 0

    def room(self, size: int) -> bool:
        """Whether a message of ``size`` bytes may be submitted before the next collect."""
        if not self._pending:
            return True
        return len(self._pending) < self._depth and self._inflight + size <= self._room_bytes

    def submit(self, raw: bytes, policy: ClassifyPolicy) -> None:
        """Hand one message to the worker and return at once; ``collect()`` gets the verdicts in
        the order of submission. The caller checks :meth:`room` first."""
        if not self.room(len(raw)):
            raise RuntimeError("submit() without room: collect() first")
        self._top_up()
        pending = _Pending(raw, policy, self._test_op)
        pending.deferred = self._deferred > 0
        self._deferred += pending.deferred
        self._pending.append(pending)
        self._inflight += len(raw)
        if not pending.deferred:
            self._hand_over(pending)

    def _hand_over(self, pending: _Pending) -> None:
        proc = self._proc
        try:
            if proc is None or proc.poll() is not None:
                self._kill()
                proc = self._start()
            else:
                self._await_ready(proc)  # started by warm()
        except AnalysisFailed as failure:
            pending.start_failure = failure
            return
        request: dict[str, Any] = {}
        if pending.policy != self._policy_sent:
            request["policy"] = policy_to_json(pending.policy)
        if pending.op is not None:
            request["op"] = pending.op
        pending.sent = time.monotonic()
        try:
            assert proc.stdin is not None
            proc.stdin.write(frames(json.dumps(request).encode("utf-8"), pending.raw))
        except (OSError, ValueError) as exc:
            pending.error = exc
            return
        self._policy_sent = pending.policy
        self._unflushed.append(pending)
        if self._pending[0] is pending or len(self._unflushed) >= self.FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        """Send the messages handed over but still in the write buffer (one write for all)."""
        if not self._unflushed:
            return
        batch, self._unflushed = self._unflushed, []
        proc = self._proc
        try:
            assert proc is not None and proc.stdin is not None
            proc.stdin.flush()
        except (OSError, ValueError) as exc:
            for pending in batch:
                pending.error = exc  # collect() sees it: a new worker gets them again
            return
        now = time.monotonic()
        for pending in batch:
            pending.sent = now  # its wall-clock budget counts from here at the earliest

    def collect(self) -> Classification:
        """The verdict on the oldest submitted message. On a timeout, a crash or a memory error the
        worker is killed, a new one gets the messages submitted after it, and AnalysisFailed is
        raised; ``exhausted`` once restarts are used up (then nothing stays pending)."""
        if not self._pending:
            raise RuntimeError("collect() without submit()")
        self._top_up()
        self.flush()
        pending = self._pending.popleft()
        self._inflight -= len(pending.raw)
        if pending.start_failure is not None:
            self._resubmit_rest()
            raise pending.start_failure
        proc = self._proc
        try:
            if pending.error is not None:
                raise pending.error
            assert proc is not None
            deadline = max(pending.sent, self._answered) + self._wall
            facts_raw = self._read(proc, deadline)
            payload = self._read(proc, deadline)
            self._answered = time.monotonic()
            facts = json.loads(facts_raw)
            if "error" in facts:
                raise self._failure(ReturnsCode.ANALYSIS_MEMORY)
            return _result_from_json(facts, payload)
        except (AnalysisFailed, OSError, ValueError, KeyError, TypeError) as exc:
            self._kill()
            self.restarts += 1
            failure = (
                exc
                if isinstance(exc, AnalysisFailed)
                else self._failure(ReturnsCode.ANALYSIS_CRASHED)
            )
            if self.restarts > self._max_restarts:
                self._pending.clear()
                self._deferred = 0
                self._inflight = 0
                raise AnalysisFailed(
                    failure.fr + " ; trop de redémarrages du processus d'analyse",
                    failure.en + "; too many restarts of the analysis process",
                    code=failure.code,
                    exhausted=True,
                ) from exc
            self._resubmit_rest()
            raise failure from exc

    def _resubmit_rest(self) -> None:
        """The worker died with messages after the failed one: a new worker gets them, in order
        (they fit in its pipe: they were in flight together — unless the new pipe could not be
        enlarged like the old one: those that do not fit wait, and are handed over as earlier
        ones are answered)."""
        if self._proc is not None and self._proc.poll() is None:
            return  # the worker is fine (a start failure was for an earlier one)
        for pending in self._pending:
            pending.error = None
            pending.start_failure = None
            pending.deferred = True
        self._deferred = len(self._pending)
        self._top_up()

    def _top_up(self) -> None:
        """Hand over the messages waiting for room in the worker's pipe (after a restart), in
        order, as many as fit (the first one always: alone, anything fits)."""
        if not self._deferred:
            return
        count = size = 0
        failed: AnalysisFailed | None = None
        for pending in self._pending:
            if pending.deferred:
                if failed is not None:
                    pending.deferred, pending.start_failure = False, failed
                    self._deferred -= 1
                    continue
                if count and (count >= self._depth or size + len(pending.raw) > self._room_bytes):
                    return
                pending.deferred = False
                self._deferred -= 1
                self._hand_over(pending)
                failed = pending.start_failure  # no second wait for a worker that cannot start
            count += 1
            size += len(pending.raw)

    def classify(self, raw: bytes, policy: ClassifyPolicy) -> Classification:
        if self._pending:
            raise RuntimeError("classify() while messages are pending: collect() them first")
        self.submit(raw, policy)
        return self.collect()

    def close(self) -> None:
        proc = self._proc
        if self._pending:
            self._pending.clear()
            self._deferred = 0
            self._inflight = 0
            self._kill()  # answers nobody will read: do not wait for them
            return
        if proc is not None and proc.stdin is not None and proc.poll() is None:
            try:
                proc.stdin.close()  # EOF: the worker returns by itself
                proc.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self._kill()
