"""Process hardening for whatever handles a PIN: not dumpable, no core file."""

from __future__ import annotations

import ctypes
import ctypes.util
import resource

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3


def protect_process() -> None:
    """No core file and no ptrace/dump of this process (a PIN may be in its memory)."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    libc_name = ctypes.util.find_library("c")
    if libc_name is not None:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def is_dumpable() -> bool:
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return True
    return bool(ctypes.CDLL(libc_name).prctl(PR_GET_DUMPABLE, 0, 0, 0, 0))
