"""Loopback helpers for the simulators: pick a TCP port free on every listening address."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Final

__all__ = ["free_tcp_port", "is_loopback"]

_PICK_ATTEMPTS: Final = 50


def is_loopback(host: str) -> bool:
    """True for an IPv4 address in 127.0.0.0/8 (the only addresses our test servers may use)."""
    parts = host.split(".")
    return (
        len(parts) == 4 and parts[0] == "127" and all(p.isdigit() and int(p) < 256 for p in parts)
    )


def free_tcp_port(hosts: Sequence[str] = ("127.0.0.1",)) -> int:
    """Return a TCP port that is free on every address of ``hosts`` right now.

    The kernel picks the port on the first address (bind to port 0); the others are then checked
    by binding to the same port. Another process may still take it before the caller binds: the
    servers here fail loudly at start in that case, they never share a port silently.
    """
    if not hosts or not all(is_loopback(h) for h in hosts):
        raise ValueError(f"loopback addresses only: {hosts!r}")
    for _ in range(_PICK_ATTEMPTS):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as first:
            first.bind((hosts[0], 0))
            port: int = first.getsockname()[1]
            if all(_bindable(h, port) for h in hosts[1:]):
                return port
    raise OSError(f"no TCP port free on all of {hosts!r} after {_PICK_ATTEMPTS} attempts")


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True
