"""The classifier worker: a long-lived child process that classifies hostile mail under CPU-time,
address-space and wall-clock limits, speaking length-prefixed JSON frames over its pipes.

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


def _limit_resources(cpu_seconds: int, address_space: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _cpu_budget(cpu_seconds)


def _cpu_budget(cpu_seconds: int) -> None:
    """RLIMIT_CPU counts the whole life of the process: move the soft limit to "now + budget"
    before each message, so a long-lived worker gets the same budget for every message."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = int(usage.ru_utime + usage.ru_stime) + 1
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = used + cpu_seconds
    if hard != resource.RLIM_INFINITY and soft > hard:
        soft = hard
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def worker_main() -> int:
    """Loop: read (policy, raw) frames on stdin, answer (facts, payload) frames on stdout."""
    cpu = int(os.environ.get("BALISE_WORKER_CPU", CPU_SECONDS_PER_MESSAGE))
    memory = int(os.environ.get("BALISE_WORKER_AS", ADDRESS_SPACE_BYTES))
    _limit_resources(cpu, memory)
    # SIGXCPU at the soft limit kills the process (default action): the parent restarts it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stdin = sys.stdin.buffer
    stdout = sys.stdout.buffer
    from balise.domain.classify import classify_message

    _write_frame(stdout, b'{"ready": true}')
    stdout.flush()
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
        _cpu_budget(cpu)
        try:
            result = classify_message(raw, policy_from_json(request["policy"]))
            facts, payload = _result_to_json(result)
        except MemoryError:
            facts, payload = {"error": "memory"}, b""
        _write_frame(stdout, json.dumps(facts).encode("utf-8"))
        _write_frame(stdout, payload)
        stdout.flush()
        if "error" in facts:
            return 3  # start afresh after a memory error rather than run on a damaged heap


# --------------------------------------------------------------------------------------------
# Parent side
# --------------------------------------------------------------------------------------------


class WorkerClassifier:
    """The MessageClassifier port: one child process reused across messages, restarted (a bounded
    number of times) after a timeout, a crash or a memory error."""

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

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _start(self) -> subprocess.Popen[bytes]:
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
        try:
            self._read(proc, _START_TIMEOUT_S)
        except AnalysisFailed:
            self._kill()
            raise
        return proc

    def _kill(self) -> None:
        proc = self._proc
        self._proc = None
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

    def _read(self, proc: subprocess.Popen[bytes], timeout: float) -> bytes:
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        fd = proc.stdout.fileno()
        header = self._read_bytes(fd, _HEADER.size, deadline)
        (size,) = _HEADER.unpack(header)
        if size > _MAX_FRAME:
            raise self._failure("ANALYSIS_CRASHED")
        return self._read_bytes(fd, size, deadline)

    def _read_bytes(self, fd: int, size: int, deadline: float) -> bytes:
        out = bytearray()
        while len(out) < size:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._failure("ANALYSIS_TIMEOUT")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, min(size - len(out), 1024 * 1024))
            if not chunk:
                raise self._failure("ANALYSIS_CRASHED")
            out += chunk
        return bytes(out)

    def _failure(self, code: str) -> AnalysisFailed:
        if code == "ANALYSIS_TIMEOUT":
            return AnalysisFailed("analyse trop longue", "analysis took too long", code=code)
        return AnalysisFailed(
            "l'analyse a échoué (processus d'analyse arrêté)",
            "analysis failed (the analysis process stopped)",
            code=code,
        )

    def classify(self, raw: bytes, policy: ClassifyPolicy) -> Classification:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            self._proc = None
            proc = self._start()
        request: dict[str, Any] = {"policy": policy_to_json(policy)}
        if self._test_op is not None:
            request["op"] = self._test_op
        try:
            assert proc.stdin is not None
            _write_frame(proc.stdin, json.dumps(request).encode("utf-8"))  # type: ignore[arg-type]
            _write_frame(proc.stdin, raw)  # type: ignore[arg-type]
            proc.stdin.flush()
            facts_raw = self._read(proc, self._wall)
            payload = self._read(proc, self._wall)
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

    def close(self) -> None:
        proc = self._proc
        if proc is not None and proc.stdin is not None and proc.poll() is None:
            try:
                proc.stdin.close()  # EOF: the worker returns by itself
                proc.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self._kill()


if __name__ == "__main__":
    raise SystemExit(worker_main())
