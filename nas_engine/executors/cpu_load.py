"""How many of this process's cores other processes keep busy, measured as it happens.

torch's intra-op threads wait for each other at every parallel operation: on a core another
process holds, each wait can last a scheduler time slice, and in-process scoring with two
threads on two busy cores ran up to 100 times slower than with one
(experiments/thread_load.py). So in-process scoring runs on the cores the others leave idle,
and follows them while it runs (:class:`ThreadPolicy`).

The load is read from the kernel's per-core busy time (``/proc/stat``) over a window, less this
process's own CPU time over the same window: the cores others used, now, where the one-minute
load average lags a load that started or ended a minute ago by most of that minute. The first
window is the time the run takes to set its scorer up (nothing waits for it); when that is too
short for the kernel's tick counters, the number of runnable tasks at that moment stands in,
and where ``/proc/stat`` cannot be read at all, the load average.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

PROC_STAT = "/proc/stat"
USER_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
MIN_WINDOW_S = 0.2  # shorter windows are too coarse for counters that tick USER_HZ times a second
RECHECK_S = 5.0  # how often a run re-reads the load between candidates


def process_cores() -> set[int]:
    """The cores this process may run on (all of them where affinity is unknown)."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def _stat_lines(path: str) -> list[str] | None:
    try:
        with open(path, encoding="ascii") as stat:
            return stat.readlines()
    except OSError:
        return None


def busy_seconds(cores: set[int], path: str = PROC_STAT) -> float | None:
    """Seconds ``cores`` have spent busy since boot (every state but idle and iowait), or None
    where the per-core counters cannot be read."""
    lines = _stat_lines(path)
    if lines is None:
        return None
    total = 0
    seen = 0
    for line in lines:
        name, _, rest = line.partition(" ")
        if not (name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cores):
            continue
        ticks = [int(v) for v in rest.split()]
        total += sum(ticks[:8]) - ticks[3] - ticks[4]  # user .. steal, less idle and iowait
        seen += 1
    return total / USER_HZ if seen else None


def running_others(cores: set[int], path: str = PROC_STAT) -> float | None:
    """Other runnable tasks right now (the kernel's ``procs_running`` less the caller), as a
    share of ``cores``' part of the machine; None where it cannot be read."""
    lines = _stat_lines(path)
    for line in lines or ():
        if line.startswith("procs_running "):
            others = max(0, int(line.split()[1]) - 1)
            return others * len(cores) / max(os.cpu_count() or 1, len(cores))
    return None


def load_average_busy() -> float:
    """The one-minute load average (0 where the platform has none)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def idle_threads(cores: int, others_busy: float) -> int:
    """The thread count for ``cores`` cores of which others keep ``others_busy`` busy: the
    rest, rounded to the nearest core, and at least one."""
    return max(1, min(cores, cores - int(others_busy + 0.5)))


@dataclass
class CoreLoad:
    """Successive readings of the cores' busy time and this process's CPU time;
    :meth:`others_busy` is the mean number of cores other processes kept busy since the last
    reading."""

    cores: set[int] = field(default_factory=process_cores)
    _last: tuple[float, float, float] | None = None  # wall, busy seconds, own CPU seconds

    def _read(self) -> tuple[float, float, float] | None:
        busy = busy_seconds(self.cores)
        if busy is None:
            return None
        return time.monotonic(), busy, time.process_time()

    def mark(self) -> None:
        """Start a window now."""
        self._last = self._read()

    def others_busy(self) -> float | None:
        """Cores kept busy by other processes since the window started (then a new one
        starts); None where the counters cannot be read or the window is shorter than
        :data:`MIN_WINDOW_S` (it then goes on)."""
        now = self._read()
        if now is None or self._last is None:
            self._last = now
            return None
        wall = now[0] - self._last[0]
        if wall < MIN_WINDOW_S:
            return None
        busy = now[1] - self._last[1]
        own = now[2] - self._last[2]
        self._last = now
        return max(0.0, (busy - own) / wall)

    def others_now(self) -> float:
        """Other processes' demand at this instant: runnable tasks, else the load average."""
        others = running_others(self.cores)
        return load_average_busy() if others is None else others


@dataclass
class ThreadPolicy:
    """torch's thread count for in-process scoring: when a run starts, the cores others kept
    busy while it set up (:meth:`begin`, then :meth:`first`); then, every :data:`RECHECK_S`
    seconds between candidates (:meth:`update`), the cores others left idle since the last
    look. Threads drop when a competing load starts and come back when it ends."""

    load: CoreLoad = field(default_factory=CoreLoad)
    recheck_s: float = RECHECK_S
    history: list[int] = field(default_factory=list)
    _checked: float = 0.0

    @property
    def cores(self) -> int:
        return len(self.load.cores)

    def begin(self) -> None:
        self.load.mark()

    def first(self) -> int:
        others = self.load.others_busy()
        if others is None:
            others = self.load.others_now()
        self._checked = time.monotonic()
        self.history.append(idle_threads(self.cores, others))
        return self.history[-1]

    def update(self) -> int | None:
        """A new thread count when it is time to look and the load changed it, else None."""
        if time.monotonic() - self._checked < self.recheck_s:
            return None
        others = self.load.others_busy()
        self._checked = time.monotonic()
        if others is None:
            return None
        threads = idle_threads(self.cores, others)
        if threads == self.history[-1]:
            return None
        self.history.append(threads)
        return threads
