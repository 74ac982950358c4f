"""A recurrence's steps as replays of one captured CUDA graph.

On a GPU one cell's step at the benchmark's sizes is about a dozen small kernels, each a few
microseconds of device time, and launching each from Python costs as much or more: the
recurrence is bound by launches, not by the device. A CUDA graph launches a whole recorded
sequence of kernels at once. A recipe's step is used for one sequence only (70 steps a layer
at the default sizes), so a graph of the whole recurrence would cost as much to record as to
run eagerly; but every step is the same kernels on the same memory when it is written that way
(:meth:`~.compiled.CellProgram.run_fixed`: the step index lives on the device), so one step is
recorded and replayed for the rest: per layer, one eager step, one recording and T - 1 graph
launches instead of T times a dozen kernel launches.

:class:`StepGraphs` keeps what the recordings share, per scorer and per stream they are
replayed on: a stream to record on and a memory pool. Graphs that share a pool must be
replayed in the order they were recorded, and replays on one stream are; so each replay stream
has its pool, and the last graph recorded for it is kept until the next replaces it, so that
its pool stays reserved for the next step's temporaries instead of being given back and
allocated again. Each replay stream also has its own stream to record on: the first step runs
there after the replay stream's earlier work, so one recording stream shared by all would make
every replay stream wait for the others (a batch's forwards on several CUDA streams, see
``nas_engine.batched``). ``torch.cuda.graph`` is not used: it synchronises the device and
empties the allocator's cache on entry, for every recording.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch


def repeat_eagerly(advance: Callable[[], None], times: int) -> None:
    """Call ``advance`` ``times`` times: what :class:`StepGraphs` does without a graph."""
    for _ in range(times):
        advance()


class StepGraphs:
    """Runs a step function n times on a CUDA device: once eagerly (which also warms up the
    libraries for its shapes, as recording needs), then, for n > 2, records it once and
    replays the recording n - 1 times on the current stream (see the module docstring)."""

    def __init__(self, device: torch.device | str) -> None:
        device = torch.device(device)
        if device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, got {device}")
        self.device = device
        # By replay stream (its cuda_stream handle): where its steps are recorded, the pool
        # their temporaries live in, the last graph replayed on it.
        self._record_streams: dict[int, torch.cuda.Stream] = {}
        self._pools: dict[int, tuple[int, int]] = {}
        self._last: dict[int, torch.cuda.CUDAGraph] = {}
        self.recorded = 0  # graphs recorded so far (for reports and tests)
        # Why recording failed, once it has: the steps then run eagerly (the same numbers).
        self.failure: str | None = None

    def __call__(self, advance: Callable[[], None], times: int) -> None:
        if times <= 0:
            return
        stream = torch.cuda.current_stream(self.device)
        key = stream.cuda_stream
        record = self._record_streams.get(key)
        if record is None:
            record = self._record_streams[key] = torch.cuda.Stream(self.device)
        record.wait_stream(stream)  # the step's inputs were written on `stream`
        graph = None
        with torch.cuda.stream(record):
            # The first step runs eagerly on the stream it is then recorded on: the kernels
            # for its shapes are loaded and cuBLAS has its workspace for that stream before
            # the recording, as recording needs.
            advance()
            # Recording costs about one eager step: it pays from two replays on.
            if times > 2 and self.failure is None:
                graph = self._record(advance, key)
            if graph is None:
                repeat_eagerly(advance, times - 1)
        stream.wait_stream(record)
        if graph is None:
            return
        for _ in range(times - 1):
            graph.replay()
        self._last[key] = graph
        self.recorded += 1

    def _record(self, advance: Callable[[], None], key: int) -> torch.cuda.CUDAGraph | None:
        """``advance`` recorded (not run) on the current stream, into the replay stream's
        pool; None, with the reason kept and a warning, when the recording fails. A failed
        recording ran nothing, so the steps go on eagerly from where they were."""
        pool = self._pools.setdefault(key, torch.cuda.graph_pool_handle())
        graph = torch.cuda.CUDAGraph()
        try:
            # "thread_local": only this thread's calls are checked while recording, so
            # another thread's CUDA work (a data loader, say) does not break it.
            graph.capture_begin(pool=pool, capture_error_mode="thread_local")
            try:
                advance()
            finally:
                graph.capture_end()
        except RuntimeError as exc:
            self.failure = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
            warnings.warn(
                f"CUDA graphs: recording a step failed, steps run eagerly from now on "
                f"({self.failure})",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
        return graph
