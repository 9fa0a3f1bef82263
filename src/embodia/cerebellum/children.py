"""Child processes that die with their parent.

Why: `embodia train --parallel-parts` trains the estimator in a child process. After a
`kill -9` of the parent the child kept training as an orphan, and a resumed `train` then
raced it for the same checkpoint folder. On Linux the child asks the kernel for SIGKILL
when its parent goes (prctl PR_SET_PDEATHSIG); elsewhere this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent_pid: int) -> None:
    """Call first thing in a child: the kernel kills this process when the thread that
    started it exits. `parent_pid` closes the race where the parent died before the call
    (the child would then already belong to init or a subreaper)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:
        os._exit(1)
