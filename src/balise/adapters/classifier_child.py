"""The classifier worker's own side: a long-lived child process that classifies hostile mail
under CPU-time and address-space limits (the parent adds the wall clock), speaking
length-prefixed JSON frames over its pipes (one write per request and per answer; the policy
travels once per worker, not with every message).

Kept apart from the parent's module so that the child imports only the classifier (its start is
CPU taken from the purge on a small box): no ports, no cryptography.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import struct
import sys
import time
from typing import Any, BinaryIO, Final

from balise.domain.classify import Classification, ClassifyPolicy, classify_message

HEADER: Final = struct.Struct(">Q")
MAX_FRAME: Final = 64 * 1024 * 1024
CPU_SECONDS_PER_MESSAGE: Final = 10
ADDRESS_SPACE_BYTES: Final = 1024 * 1024 * 1024


# --------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------


def _write_frame(out: BinaryIO, data: bytes) -> None:
    out.write(HEADER.pack(len(data)))
    out.write(data)


def frames(*parts: bytes) -> bytes:
    """Several frames in one buffer: one write (and one wake-up of the reader) for all of them."""
    return b"".join(HEADER.pack(len(part)) + part for part in parts)


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = stream.read(size - len(chunks))
        if not chunk:
            raise EOFError
        chunks += chunk
    return bytes(chunks)


def _read_frame(stream: BinaryIO) -> bytes:
    (size,) = HEADER.unpack(_read_exact(stream, HEADER.size))
    if size > MAX_FRAME:
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


def result_to_json(c: Classification) -> tuple[dict[str, Any], bytes]:
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


# --------------------------------------------------------------------------------------------
# The child
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
            facts, payload = result_to_json(result)
        except MemoryError:
            facts, payload = {"error": "memory"}, b""
        stdout.write(frames(json.dumps(facts).encode("utf-8"), payload))
        stdout.flush()
        if "error" in facts:
            return 3  # start afresh after a memory error rather than run on a damaged heap


if __name__ == "__main__":
    raise SystemExit(worker_main())
