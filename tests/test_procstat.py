"""The benchmarks' CPU split (bench/purge.py: the box, its worker, Dovecot) reads process groups
from /proc: a server's session counts the children it reaped, a group another process's."""

from __future__ import annotations

import subprocess
import sys
import time

from balise.sim.procstat import group_cpu_seconds

# A leader in its own session that runs a child burning ~0.3 s of CPU, reaps it, then waits.
_LEADER = (
    "import subprocess, sys, time;"
    "subprocess.run([sys.executable, '-c',"
    " 'import time\\nt = time.process_time()\\nwhile time.process_time() - t < 0.3: pass']);"
    "print('reaped', flush=True); time.sleep(30)"
)


def test_reaped_children_count_on_the_process_that_waited_for_them() -> None:
    leader = subprocess.Popen(
        [sys.executable, "-c", _LEADER], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert leader.stdout is not None
        assert leader.stdout.readline().strip() == "reaped"
        time.sleep(0.05)  # the leader's own counters settle (nothing asserted on time)
        with_reaped = group_cpu_seconds(leader.pid, reaped_by=leader.pid)
        running_only = group_cpu_seconds(leader.pid)
        assert with_reaped - running_only >= 0.25
        # Once reaped, the child is no running process of the leader any more.
        assert group_cpu_seconds(leader.pid, parent=leader.pid) == 0.0
    finally:
        leader.kill()
        leader.wait(timeout=10)
