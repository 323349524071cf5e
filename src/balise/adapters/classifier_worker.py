"""The classifier worker: a long-lived child process that classifies hostile mail under CPU-time,
address-space and wall-clock limits, speaking length-prefixed JSON frames over its pipes (one
write per request and per answer; the policy travels once per worker, not with every message).

The parent never unpickles anything from the child: it gets JSON facts and, for a return, the
decoded payload, which it re-reads with the same bounded parser (linear, entity-capped).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import select
import signal
import struct
import subprocess
import sys
import time
from typing import Any, BinaryIO, Final

from balise.domain.classify import Classification, ClassifyPolicy, UnknownReason
from balise.domain.returns import parse_return
from balise.ports import AnalysisFailed

_HEADER: Final = struct.Struct(">Q")
_MAX_FRAME: Final = 64 * 1024 * 1024
CPU_SECONDS_PER_MESSAGE: Final = 10
ADDRESS_SPACE_BYTES: Final = 1024 * 1024 * 1024
WALL_SECONDS_PER_MESSAGE: Final = 20.0
MAX_RESTARTS: Final = 5
_START_TIMEOUT_S: Final = 20.0


# --------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------


def _write_frame(out: BinaryIO, data: bytes) -> None:
    out.write(_HEADER.pack(len(data)))
    out.write(data)


def _frames(*parts: bytes) -> bytes:
    """Several frames in one buffer: one write (and one wake-up of the reader) for all of them."""
    return b"".join(_HEADER.pack(len(part)) + part for part in parts)


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = stream.read(size - len(chunks))
        if not chunk:
            raise EOFError
        chunks += chunk
    return bytes(chunks)


def _read_frame(stream: BinaryIO) -> bytes:
    (size,) = _HEADER.unpack(_read_exact(stream, _HEADER.size))
    if size > _MAX_FRAME:
        raise EOFError
    return _read_exact(stream, size)


def policy_to_json(policy: ClassifyPolicy) -> dict[str, Any]:
    data = dataclasses.asdict(policy)
    data["configured_emitters"] = sorted(policy.configured_emitters)
    data["allowed_domains"] = list(policy.allowed_domains)
    return data


def policy_from_json(data: dict[str, Any]) -> ClassifyPolicy:
    values = dict(data)
    values["configured_emitters"] = frozenset(values["configured_emitters"])
    values["allowed_domains"] = tuple(values["allowed_domains"])
    return ClassifyPolicy(**values)


def _result_to_json(c: Classification) -> tuple[dict[str, Any], bytes]:
    facts = {
        "kind": c.kind,
        "reason": c.reason.value if c.reason is not None else None,
        "size": c.size,
        "sha256": c.sha256,
        "digest_scope": c.digest_scope,
        "description": c.description,
        "sender_address": c.sender_address,
        "sender": c.sender,
        "message_id": c.message_id,
        "subject": c.subject,
        "has_payload": c.payload is not None,
    }
    return facts, c.payload or b""


def _result_from_json(facts: dict[str, Any], payload: bytes) -> Classification:
    kind = facts["kind"]
    if kind not in ("arl", "noemie", "damaged", "unknown"):
        raise ValueError(kind)
    reason = UnknownReason(facts["reason"]) if facts["reason"] is not None else None
    parsed = parse_return(payload) if facts["has_payload"] else None
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
# Child side
# --------------------------------------------------------------------------------------------


def _limit_resources(cpu_seconds: int, address_space: int) -> _CpuBudget:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    budget = _CpuBudget(cpu_seconds)
    budget.renew()
    return budget


class _CpuBudget:
    """RLIMIT_CPU counts the whole life of the process: move the soft limit to "now + budget"
    before each message, so a long-lived worker gets the same budget for every message.

    One getrusage per message; setrlimit only when the limit actually moves (the soft limit is in
    whole seconds, so it moves at most once per CPU second used)."""

    def __init__(self, cpu_seconds: int) -> None:
        import resource

        self._cpu = cpu_seconds
        _, self._hard = resource.getrlimit(resource.RLIMIT_CPU)
        self._soft: int | None = None

    def renew(self) -> None:
        import resource

        usage = resource.getrusage(resource.RUSAGE_SELF)
        soft = int(usage.ru_utime + usage.ru_stime) + 1 + self._cpu
        if self._hard != resource.RLIM_INFINITY and soft > self._hard:
            soft = self._hard
        if soft != self._soft:
            resource.setrlimit(resource.RLIMIT_CPU, (soft, self._hard))
            self._soft = soft


def worker_main() -> int:
    """Loop: read (request, raw) frames on stdin, answer (facts, payload) frames on stdout. A
    request carries the policy when it changes; later requests use the last one received."""
    cpu = int(os.environ.get("BALISE_WORKER_CPU", CPU_SECONDS_PER_MESSAGE))
    memory = int(os.environ.get("BALISE_WORKER_AS", ADDRESS_SPACE_BYTES))
    budget = _limit_resources(cpu, memory)
    # SIGXCPU at the soft limit kills the process (default action): the parent restarts it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stdin = sys.stdin.buffer
    stdout = sys.stdout.buffer
    from balise.domain.classify import classify_message

    _write_frame(stdout, b'{"ready": true}')
    stdout.flush()
    policy: ClassifyPolicy | None = None
    while True:
        try:
            request = json.loads(_read_frame(stdin))
            raw = _read_frame(stdin)
        except EOFError:
            return 0
        if request.get("op") == "sleep":  # test hook: a message that takes forever
            time.sleep(float(request.get("seconds", 3600)))
        elif request.get("op") == "spin":  # test hook: burn CPU until SIGXCPU
            while True:
                pass
        budget.renew()
        try:
            if "policy" in request:
                policy = policy_from_json(request["policy"])
            if policy is None:
                return 4  # a protocol error of the parent: it sees a crash and restarts us
            result = classify_message(raw, policy)
            facts, payload = _result_to_json(result)
        except MemoryError:
            facts, payload = {"error": "memory"}, b""
        stdout.write(_frames(json.dumps(facts).encode("utf-8"), payload))
        stdout.flush()
        if "error" in facts:
            return 3  # start afresh after a memory error rather than run on a damaged heap


# --------------------------------------------------------------------------------------------
# Parent side
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class _Pending:
    """A message handed to the worker whose answer is not collected yet."""

    deadline: float  # the wall-clock limit, counted from the moment the worker has the message
    error: Exception | None = None  # a failure while handing it over, reported by collect()
    start_failure: AnalysisFailed | None = None  # the worker could not even start


class WorkerClassifier:
    """The MessageClassifier port: one child process reused across messages, restarted (a bounded
    number of times) after a timeout, a crash or a memory error.

    ``submit`` then ``collect`` let the caller fetch the next message while this one is being
    classified; at most one message is in the worker at a time."""

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
        self._pending: _Pending | None = None
        self._ready_by: float | None = None  # started, its "ready" frame not read yet

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _start(self, *, wait: bool = True) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BALISE_")}
        env.update(BALISE_WORKER_CPU=str(self._cpu), BALISE_WORKER_AS=str(self._memory))
        # The child inherits no secret: no KEK, no data dir, no open descriptors but its pipes.
        proc = subprocess.Popen(
            [sys.executable, "-I", "-m", "balise.adapters.classifier_worker"],
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
        assert proc.stdout is not None
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
        if self._pending is None and (self._proc is None or self._proc.poll() is not None):
            self._kill()
            self._start(wait=False)

    def _kill(self) -> None:
        proc = self._proc
        self._proc = None
        self._buffer = bytearray()
        self._policy_sent = None
        self._ready_by = None
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
        self._fill(fd, _HEADER.size, deadline)
        (size,) = _HEADER.unpack_from(self._buffer)
        if size > _MAX_FRAME:
            raise self._failure("ANALYSIS_CRASHED")
        self._fill(fd, _HEADER.size + size, deadline)
        frame = bytes(self._buffer[_HEADER.size : _HEADER.size + size])
        del self._buffer[: _HEADER.size + size]
        return frame

    def _fill(self, fd: int, size: int, deadline: float) -> None:
        """Read until the buffer holds ``size`` bytes; an answer sent in one write usually
        arrives in one read (the facts and the payload frames together)."""
        while len(self._buffer) < size:
            want = min(max(size - len(self._buffer), 64 * 1024), 1024 * 1024)
            try:
                chunk = os.read(fd, want)
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._failure("ANALYSIS_TIMEOUT") from None
                select.select([fd], [], [], left)
                continue
            if not chunk:
                raise self._failure("ANALYSIS_CRASHED")
            self._buffer += chunk

    def _failure(self, code: str) -> AnalysisFailed:
        if code == "ANALYSIS_TIMEOUT":
            return AnalysisFailed("analyse trop longue", "analysis took too long", code=code)
        return AnalysisFailed(
            "l'analyse a échoué (processus d'analyse arrêté)",
            "analysis failed (the analysis process stopped)",
            code=code,
        )

    @property
    def busy(self) -> bool:
        """A message was submitted and its answer not collected yet."""
        return self._pending is not None

    def submit(self, raw: bytes, policy: ClassifyPolicy) -> None:
        """Hand one message to the worker and return at once; ``collect()`` gets its verdict."""
        if self._pending is not None:
            # An answer nobody collected (the caller gave up on that message): never let it be
            # read as the answer to this one. Not a failure of the worker: no restart counted.
            self._kill()
            self._pending = None
        proc = self._proc
        try:
            if proc is None or proc.poll() is not None:
                self._kill()
                proc = self._start()
            else:
                self._await_ready(proc)  # started by warm()
        except AnalysisFailed as failure:
            self._pending = _Pending(0.0, start_failure=failure)
            return
        request: dict[str, Any] = {}
        if policy != self._policy_sent:
            request["policy"] = policy_to_json(policy)
        if self._test_op is not None:
            request["op"] = self._test_op
        try:
            assert proc.stdin is not None
            proc.stdin.write(_frames(json.dumps(request).encode("utf-8"), raw))
            proc.stdin.flush()
        except (OSError, ValueError) as exc:
            self._pending = _Pending(time.monotonic() + self._wall, error=exc)
            return
        self._policy_sent = policy
        self._pending = _Pending(time.monotonic() + self._wall)

    def collect(self) -> Classification:
        """The verdict on the submitted message. On a timeout, a crash or a memory error the worker
        is killed (and restarted on the next submit) and AnalysisFailed raised; ``exhausted`` once
        restarts are used up."""
        pending = self._pending
        if pending is None:
            raise RuntimeError("collect() without submit()")
        self._pending = None
        if pending.start_failure is not None:
            raise pending.start_failure
        proc = self._proc
        try:
            if pending.error is not None:
                raise pending.error
            assert proc is not None
            facts_raw = self._read(proc, pending.deadline)
            payload = self._read(proc, pending.deadline)
            if self._buffer:
                raise ValueError("the worker said more than one answer")
            facts = json.loads(facts_raw)
            if "error" in facts:
                raise self._failure("ANALYSIS_MEMORY")
            return _result_from_json(facts, payload)
        except (AnalysisFailed, OSError, ValueError, KeyError, TypeError) as exc:
            self._kill()
            self.restarts += 1
            failure = exc if isinstance(exc, AnalysisFailed) else self._failure("ANALYSIS_CRASHED")
            if self.restarts > self._max_restarts:
                raise AnalysisFailed(
                    failure.fr + " ; trop de redémarrages du processus d'analyse",
                    failure.en + "; too many restarts of the analysis process",
                    code=failure.code,
                    exhausted=True,
                ) from exc
            raise failure from exc

    def classify(self, raw: bytes, policy: ClassifyPolicy) -> Classification:
        self.submit(raw, policy)
        return self.collect()

    def close(self) -> None:
        proc = self._proc
        if self._pending is not None:
            self._pending = None
            self._kill()  # an answer nobody will read: do not wait for it
            return
        if proc is not None and proc.stdin is not None and proc.poll() is None:
            try:
                proc.stdin.close()  # EOF: the worker returns by itself
                proc.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self._kill()


if __name__ == "__main__":
    raise SystemExit(worker_main())
