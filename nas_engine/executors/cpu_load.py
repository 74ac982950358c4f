"""How many of this process's cores other processes keep busy, measured as it happens.

torch's intra-op threads wait for each other at every parallel operation: on a core another
process holds, each wait can last a scheduler time slice, and in-process scoring with two
threads on two busy cores ran up to 100 times slower than with one
(experiments/thread_load.py). So in-process scoring runs on the cores the others leave idle,
and follows them while it runs (:class:`ThreadPolicy`).

The load is read from the kernel's per-core busy time (``/proc/stat``) over a window, less this
process's own CPU time over the same window: the cores others used, now, where the one-minute
load average lags a load that started or ended a minute ago by most of that minute. Where
``/proc/stat`` cannot be read, the load average stands in.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

PROC_STAT = "/proc/stat"
USER_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
FIRST_WINDOW_S = 0.25  # how long the first measurement watches the cores
RECHECK_S = 5.0  # how often a run re-reads the load between candidates


def process_cores() -> set[int]:
    """The cores this process may run on (all of them where affinity is unknown)."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def busy_seconds(cores: set[int], path: str = PROC_STAT) -> float | None:
    """Seconds ``cores`` have spent busy since boot (every state but idle and iowait), or None
    where the per-core counters cannot be read."""
    try:
        with open(path, encoding="ascii") as stat:
            lines = stat.readlines()
    except OSError:
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
    :meth:`others_busy` is the mean number of cores other processes kept busy between the last
    two readings."""

    cores: set[int] = field(default_factory=process_cores)
    _last: tuple[float, float, float] | None = None  # wall, busy seconds, own CPU seconds

    def _read(self) -> tuple[float, float, float] | None:
        busy = busy_seconds(self.cores)
        if busy is None:
            return None
        return time.monotonic(), busy, time.process_time()

    def others_busy(self, window: float = 0.0) -> float | None:
        """Cores kept busy by other processes since the previous call (or over ``window``
        seconds from now when there was none); None where the counters cannot be read."""
        if self._last is None or window > 0:
            self._last = self._read()
            if self._last is None:
                return None
            time.sleep(window)
        now = self._read()
        if now is None:
            return None
        wall = now[0] - self._last[0]
        busy = now[1] - self._last[1]
        own = now[2] - self._last[2]
        self._last = now
        if wall <= 0:
            return 0.0
        return max(0.0, (busy - own) / wall)


@dataclass
class ThreadPolicy:
    """torch's thread count for in-process scoring: the idle cores when a run starts
    (:meth:`first`), then, every :data:`RECHECK_S` seconds between candidates (:meth:`update`),
    the cores others left idle since the last look. Threads drop when a competing load starts
    and come back when it ends."""

    load: CoreLoad = field(default_factory=CoreLoad)
    recheck_s: float = RECHECK_S
    history: list[int] = field(default_factory=list)
    _checked: float = 0.0

    @property
    def cores(self) -> int:
        return len(self.load.cores)

    def first(self) -> int:
        others = self.load.others_busy(window=FIRST_WINDOW_S)
        if others is None:
            others = load_average_busy()
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
