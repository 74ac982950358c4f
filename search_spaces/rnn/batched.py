"""Scoring several candidates in one pass.

Interface (for executors; everything else about scoring is :class:`~nas_engine.scoring.Scorer`'s):

- ``BatchedScorer(setup, corpus=None)`` is a :class:`Scorer` (same constructor, same
  ``score(candidate) -> Evaluation``, same results) that also has
  ``score_batch(candidates) -> list[Evaluation]``, one evaluation per candidate, in order. A
  candidate that fails is a failed evaluation with its reason, as with ``score``; it never
  fails the others. Use it wherever a Scorer is kept per worker.

What a batch shares, and where it pays (the scores are the same as one at a time):

- RNN space, every device: the seed's embedding (V x E, drawn before the cells) is drawn once
  per scorer (:class:`~search_spaces.rnn.model.SharedEmbedding`) instead of once per
  candidate: at the benchmark's sizes that draw costs about 14 ms on a 2-core CPU, more than a
  small cell's forward at the fast sizes. The cells' weights are not drawn either: every
  model of the seed draws them from the same RNG state, so they are views of one stream of
  those draws, kept scaled on the device (:class:`~search_spaces.rnn.model.UniformStream`;
  about 10 ms per median cell at the benchmark's sizes on that CPU, and on a GPU no draw on
  the host and no copy to the device). Every ``score`` of a BatchedScorer gets this.
- RNN space on CUDA: the forward passes that need no host synchronisation (the states entering
  the cells, without the activation codes) of all candidates of a batch are launched first,
  round-robin on ``streams`` CUDA streams, so the small kernels of different recurrences
  overlap; the metrics then run on the default stream. Each evaluation's ``seconds`` then
  includes an equal share of that launch phase. (Written for the GPU; not yet measured on one.)
- RNN space with ``setup.cell_batch``, every device: the first layer's forward of all the
  batch's valid cells runs as one :class:`~search_spaces.rnn.batch.CellBatch` (each step a
  few operations per level of the deepest cell, whatever the number of cells; with
  ``cuda_graphs`` one recorded step of all of them), replacing the streams. Only for metrics
  that read the first layer's entering states alone (``hidden_cov``), else refused at
  construction. The states agree with one cell at a time to float32 rounding, not bit for
  bit; the scores then differ at that level (see tests/test_batched.py). If the batch run
  fails, every candidate runs its own forward in ``score``, which reports what fails, and
  each of the batch's evaluations records the batch's failure in
  ``details[CELL_BATCH_FALLBACK]`` (a search's summary counts them).
- On the CPU otherwise a batch is scored candidate after candidate: the forward is bound by
  its matrix multiplies (near the machine's peak at the benchmark's sizes), so running
  several at once would only divide the same cores.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Sequence
from functools import cached_property

import torch

from nas_engine.corpus import Corpus
from nas_engine.result import CELL_BATCH_FALLBACK, Candidate, Evaluation
from nas_engine.scoring import Scorer, ScoringSetup

from .batch import CellBatch
from .probe import RNNProbe, RNNProber

DEFAULT_STREAMS = 4


class BatchedScorer(Scorer):
    """A :class:`Scorer` that shares the seed's embedding among its probes and scores batches
    (see the module docstring)."""

    def __init__(
        self, setup: ScoringSetup, corpus: Corpus | None = None, *, streams: int = DEFAULT_STREAMS
    ) -> None:
        super().__init__(setup, corpus)
        if streams < 1:
            raise ValueError(f"streams must be >= 1, got {streams}")
        self.streams = streams
        self.rnn = isinstance(self.prober, RNNProber)
        if self.rnn:
            self.prober.share_embedding()
        # Probes whose forward was launched ahead by score_batch, by architecture; each is
        # handed out once.
        self._launched: dict[object, RNNProbe] = {}
        # Why the first cell batch that raised did (its candidates then ran their own
        # forwards, with the same scores): a benchmark or a user reads it here.
        self.cell_batch_failure: str | None = None

    @cached_property
    def _side_streams(self) -> list[torch.cuda.Stream]:
        # Made once: each stream that CUDA graphs are replayed on keeps a memory pool
        # (search_spaces.rnn.graphs), so new streams for every batch would add pools.
        return [torch.cuda.Stream(self.device) for _ in range(self.streams)]

    def probe(self, arch):
        launched = self._launched.pop(arch, None)
        return launched if launched is not None else super().probe(arch)

    def score_batch(self, candidates: Sequence[Candidate]) -> list[Evaluation]:
        """One evaluation per candidate, in order (see the module docstring)."""
        launch_seconds, fallback = 0.0, None
        if self.setup.cell_batch and len(candidates) > 1:
            launch_seconds, fallback = self._run_cell_batch(candidates)
        elif self.device.type == "cuda" and self.rnn and len(candidates) > 1:
            launch_seconds = self._launch_forwards(candidates)
        try:
            evaluations = [self.score(c) for c in candidates]
        finally:
            self._launched.clear()
        if not launch_seconds and fallback is None:
            return evaluations
        share = launch_seconds / len(candidates)
        # A fallback is recorded with each result, so that a search's summary counts them
        # whichever process scored them (the scores are the same either way).
        note = {} if fallback is None else {CELL_BATCH_FALLBACK: fallback}
        return [
            dataclasses.replace(ev, seconds=ev.seconds + share, details={**ev.details, **note})
            for ev in evaluations
        ]

    def _new_probes(self, candidates: Sequence[Candidate]) -> dict[object, RNNProbe]:
        """The RNN probe of each distinct valid candidate whose forward is not launched yet,
        by architecture, in order. A candidate that fails to validate is left to ``score``,
        which reports it."""
        probes: dict[object, RNNProbe] = {}
        for candidate in candidates:
            try:
                arch = self.space.validate(candidate.arch)
            except Exception:  # noqa: BLE001 - reported by score() with its reason
                continue
            if arch in probes or arch in self._launched:
                continue
            probe = super().probe(arch)
            if isinstance(probe, RNNProbe):
                probes[arch] = probe
        return probes

    def _launch_forwards(self, candidates: Sequence[Candidate]) -> float:
        """Queue the lean forward of every valid candidate on the side streams; returns the
        seconds spent. A candidate that fails here is left to ``score``, which reports it."""
        start = time.perf_counter()
        main = torch.cuda.current_stream(self.device)
        streams = self._side_streams
        for stream in streams:
            stream.wait_stream(main)  # the input batch and the embedding are ready
        for i, (arch, probe) in enumerate(self._new_probes(candidates).items()):
            stream = streams[i % len(streams)]
            try:
                with torch.cuda.stream(stream):
                    produced = probe.launch_forward()
            except Exception:  # noqa: BLE001 - score() runs the pass again and reports it
                continue
            for tensor in produced:  # read on the main stream: not to be reused before
                tensor.record_stream(main)
            self._launched[arch] = probe
        for stream in streams:
            main.wait_stream(stream)
        return time.perf_counter() - start

    def _run_cell_batch(self, candidates: Sequence[Candidate]) -> tuple[float, str | None]:
        """Run the first layer's forward of every valid candidate's cell in one CellBatch and
        hand each probe its states; returns the seconds spent and, if the batch raised, why.
        A candidate that fails to validate or build is left to ``score``, which reports it."""
        start = time.perf_counter()
        probes: dict[object, RNNProbe] = {}
        for arch, probe in self._new_probes(candidates).items():
            try:
                probe.model  # noqa: B018 - built here, so that a cell that cannot be is skipped
            except Exception:  # noqa: BLE001 - reported by score() with its reason
                continue
            probes[arch] = probe
        if not probes:
            return time.perf_counter() - start, None
        ordered = list(probes.values())
        try:
            with torch.no_grad():
                x = ordered[0].model.encoder(self.prober.tokens)  # the seed's shared embedding
            cells = CellBatch([p.model.layers[0] for p in ordered])
            states = cells.entering_states(x, self.prober.step_graphs)
        except Exception as exc:  # noqa: BLE001 - each score() then runs its own forward
            reason = f"{type(exc).__name__}: {exc}"
            if self.cell_batch_failure is None:
                self.cell_batch_failure = reason
            return time.perf_counter() - start, reason
        for probe, first_layer in zip(ordered, states, strict=True):
            probe.supply_entering_states(first_layer)
        self._launched.update(probes)
        return time.perf_counter() - start, None


def cell_batch_refusal(metrics: Sequence[str], needs: Iterable[str]) -> str:
    """Why metrics with these needs cannot have their batches' cells run together."""
    return (
        "cell batches run the first layer's forward of a batch's cells together; the metrics "
        f"{', '.join(metrics)} read more than the first layer's entering states "
        f"(needs: {', '.join(sorted(needs))})"
    )
