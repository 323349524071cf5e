"""CPU time of a group of processes read from Linux /proc, for the benchmarks' splits of where
the time goes (what a server's session or the box's worker cost)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["group_cpu_seconds"]


def group_cpu_seconds(
    pgrp: int, *, parent: int | None = None, reaped_by: int | None = None
) -> float:
    """CPU seconds (user + system) used so far by the running processes of process group
    ``pgrp`` — only those whose parent is ``parent`` when given — plus what the children that
    process ``reaped_by`` waited for used (its cutime and cstime)."""
    ticks = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
            fields = (Path(entry.path) / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[2]) != pgrp or (parent is not None and int(fields[1]) != parent):
            continue
        ticks += int(fields[11]) + int(fields[12])
        if reaped_by is not None and int(entry.name) == reaped_by:
            ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")
