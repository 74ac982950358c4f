"""The reaper of a run's private Ray instance: ends every process of it once the run's process
is gone, however it went (a SIGKILL leaves Ray's dashboard and runtime-env agents running, as
orphans, for more than a minute).

The run starts it before ``ray.init`` with a pipe on its standard input and a token in the
environment Ray's processes inherit (:data:`OWNER_VARIABLE`); the reaper waits for the end of
that pipe, which comes when the run closes it or dies, then ends every process whose
environment holds the token. Linux only (it reads ``/proc``); elsewhere it ends nothing.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

# The environment variable that marks a process as part of one run's Ray instance.
OWNER_VARIABLE = "NAS_ENGINE_RAY_OWNER"
GRACE_SECONDS = 2.0  # between SIGTERM and SIGKILL


def marked_processes(token: str, proc: Path = Path("/proc")) -> list[int]:
    """The processes whose environment holds ``OWNER_VARIABLE=token`` (not this one)."""
    needle = f"{OWNER_VARIABLE}={token}".encode()
    found = []
    for entry in proc.glob("[0-9]*"):
        pid = int(entry.name)
        if pid == os.getpid():
            continue
        try:
            environment = (entry / "environ").read_bytes()
        except OSError:  # gone, or not ours to read
            continue
        if needle in environment.split(b"\0"):
            found.append(pid)
    return found


def end_processes(pids: list[int]) -> None:
    """SIGTERM, then SIGKILL for whatever is still there after the grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + GRACE_SECONDS
        while sig == signal.SIGTERM and time.monotonic() < deadline:
            if not any(_alive(pid) for pid in pids):
                return
            time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    (token,) = argv if argv is not None else sys.argv[1:]
    sys.stdin.buffer.read()  # returns when the run closes the pipe or dies
    end_processes(marked_processes(token))
    return 0


if __name__ == "__main__":
    sys.exit(main())
