"""Scoring several candidates in one pass.

Interface (for executors; everything else about scoring is :class:`~nas_engine.scoring.Scorer`'s):

- ``BatchedScorer(setup, corpus=None)`` is a :class:`Scorer` (same constructor, same
  ``score(candidate) -> Evaluation``, same results) that also has
  ``score_batch(candidates) -> list[Evaluation]``, one evaluation per candidate, in order. A
  candidate that fails is a failed evaluation with its reason, as with ``score``; it never
  fails the others. Use it wherever a Scorer is kept per worker.
- ``score_batch(scorer, candidates)`` does the same with any Scorer: a BatchedScorer batches,
  a plain Scorer scores one candidate after the other.

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
- On the CPU a batch is scored candidate after candidate: the forward is bound by its matrix
  multiplies (near the machine's peak at the benchmark's sizes), so running several at once
  would only divide the same cores.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from functools import cached_property

import torch

from .corpus import Corpus
from .probes import RNNProbe, RNNProber
from .result import Candidate, Evaluation
from .scoring import Scorer, ScoringSetup

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
        launch_seconds = 0.0
        if self.device.type == "cuda" and self.rnn and len(candidates) > 1:
            launch_seconds = self._launch_forwards(candidates)
        try:
            evaluations = [self.score(c) for c in candidates]
        finally:
            self._launched.clear()
        if not launch_seconds:
            return evaluations
        share = launch_seconds / len(candidates)
        return [dataclasses.replace(ev, seconds=ev.seconds + share) for ev in evaluations]

    def _launch_forwards(self, candidates: Sequence[Candidate]) -> float:
        """Queue the lean forward of every valid candidate on the side streams; returns the
        seconds spent. A candidate that fails here is left to ``score``, which reports it."""
        start = time.perf_counter()
        main = torch.cuda.current_stream(self.device)
        streams = self._side_streams
        for stream in streams:
            stream.wait_stream(main)  # the input batch and the embedding are ready
        for i, candidate in enumerate(candidates):
            try:
                arch = self.space.validate(candidate.arch)
            except Exception:  # noqa: BLE001 - reported by score() with its reason
                continue
            probe = super().probe(arch)
            if not isinstance(probe, RNNProbe) or arch in self._launched:
                continue
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


def score_batch(scorer: Scorer, candidates: Sequence[Candidate]) -> list[Evaluation]:
    """One evaluation per candidate, in order: batched by a :class:`BatchedScorer`, one after
    the other by any other Scorer."""
    if isinstance(scorer, BatchedScorer):
        return scorer.score_batch(candidates)
    return [scorer.score(c) for c in candidates]
