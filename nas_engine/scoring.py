"""Scoring one architecture: build it, run the passes its metrics need, record the outcome.

:class:`Scorer` is what an executor keeps per worker: it builds the input batch once. It is
created from a picklable :class:`ScoringSetup`, so a remote worker can make its own.
"""

from __future__ import annotations

import math
import time
import traceback
from dataclasses import dataclass, field

import torch

from search_spaces import get_space
from search_spaces.rnn import ModelSizes

from .corpus import Corpus, embedded_corpus, first_batch, load_corpus
from .metrics import Measured, MetricFailure, get_metric
from .probes import RNNProbe
from .result import Candidate, Evaluation


@dataclass(frozen=True)
class ScoringSetup:
    """Everything a worker needs to score candidates, and nothing it must not share."""

    space: str = "rnn"
    metrics: tuple[str, ...] = ("hidden_cov",)
    embedding_size: int = 400
    hidden_size: int = 600
    num_layers: int = 3
    batch_size: int = 50
    bptt: int = 70
    corpus: str | None = None
    split: str = "test"
    seed: int = 0
    device: str = "cpu"
    extra: dict = field(default_factory=dict)

    def load_corpus(self) -> Corpus:
        if self.corpus is None:
            return embedded_corpus()
        return load_corpus(self.corpus, self.split)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    return device


class Scorer:
    """Scores candidates of one setup; the corpus batch is built once, on the device."""

    def __init__(self, setup: ScoringSetup, corpus: Corpus | None = None) -> None:
        self.setup = setup
        self.space = get_space(setup.space)
        self.device = resolve_device(setup.device)
        self.metrics = [get_metric(m, setup.space) for m in setup.metrics]
        corpus = corpus or setup.load_corpus()
        self.corpus_description = corpus.description
        self.tokens = first_batch(corpus.split(setup.split), setup.batch_size, setup.bptt).to(
            self.device
        )
        self.sizes = ModelSizes(
            vocab_size=len(corpus.vocab),
            embedding_size=setup.embedding_size,
            hidden_size=setup.hidden_size,
            num_layers=setup.num_layers,
        )
        self.depth = max(
            [1]
            + [
                int(n.split(":")[1])
                for m in self.metrics
                for n in m.needs
                if n.startswith("entering_states:")
            ]
        )

    def score(self, candidate: Candidate) -> Evaluation:
        start = time.perf_counter()
        metrics: dict[str, float] = {}
        details: dict = {}
        try:
            arch = self.space.validate(candidate.arch)
            probe = RNNProbe(
                arch, self.sizes, self.tokens, self.setup.seed, self.device, self.depth
            )
            for metric in self.metrics:
                out = metric.fn(probe)
                value = out.value if isinstance(out, Measured) else float(out)
                if isinstance(out, Measured):
                    details.update(out.details)
                if not math.isfinite(value):
                    raise MetricFailure(f"{metric.name} is {value}")
                metrics[metric.name] = value
        except MetricFailure as exc:
            return self._failed(f"{exc}", metrics, details, start)
        except Exception as exc:  # an architecture that breaks scoring is a result, not a crash
            where = traceback.extract_tb(exc.__traceback__)[-1]
            place = f"{where.filename.rsplit('/', 1)[-1]}:{where.lineno}"
            reason = f"{type(exc).__name__}: {exc} (at {place})"
            return self._failed(reason, metrics, details, start)
        return Evaluation("ok", metrics, details, None, time.perf_counter() - start)

    @staticmethod
    def _failed(reason: str, metrics: dict, details: dict, start: float) -> Evaluation:
        finite = {k: v for k, v in metrics.items() if math.isfinite(v)}
        return Evaluation("failed", finite, details, reason, time.perf_counter() - start)
