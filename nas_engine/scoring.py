"""Scoring one architecture: build it, run the passes its metrics need, record the outcome.

:class:`Scorer` is what an executor keeps per worker: it builds the input batch once. It is
created from a picklable :class:`ScoringSetup`, so a remote worker can make its own.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import torch
from threadpoolctl import ThreadpoolController

from search_spaces import get_space

from .bert_probes import BertProbe, BertProber
from .corpus import Corpus, embedded_corpus, load_corpus
from .health import STABILITY, growth_of, state_verdict
from .metrics import Measured, MetricFailure, get_metric
from .probes import RNNProbe, RNNProber
from .result import METRIC_ERRORS, Candidate, Evaluation


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
    # Scale of the RNN cells' initial weights (search_spaces.rnn.model.ModelSizes.init_gain).
    init_gain: float = 1.0
    # RNN space on CUDA: each recurrence's step recorded once as a CUDA graph and replayed
    # (search_spaces.rnn.graphs); the same scores, fewer kernel launches.
    cuda_graphs: bool = False
    # RNN space, a BatchedScorer's score_batch: the first layer's forward of all the batch's
    # cells run together as one CellBatch (search_spaces.rnn.batch), for metrics that read
    # only the first layer's entering states; the states agree to float32 rounding.
    cell_batch: bool = False
    # The trained proxy (metric trained_loss): how long it trains, and on which split.
    proxy_steps: int | None = None
    proxy_epochs: float | None = None
    proxy_train_split: str = "train"
    # A search's scoring (nas_engine.health): a degenerate network (dead or non-finite states
    # in the scoring pass) fails whatever its metrics say, and every result records the
    # stress growth the stability guard reads. Off for the benchmarks, which score every
    # logged architecture as the papers did.
    health_check: bool = False
    # The metrics a result cannot do without (the fitness components, or the objectives):
    # any other metric that fails is recorded with its reason, and the result stays ok.
    # None: every metric is required (the benchmarks).
    required_metrics: tuple[str, ...] | None = None

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


Prober = RNNProber | BertProber
# Each space's prober, made once per scorer from (setup, corpus, device, needs): it builds the
# space's input once and hands out a probe per architecture.
PROBERS: dict[str, Callable[[ScoringSetup, Corpus, torch.device, frozenset[str]], Prober]] = {
    "rnn": RNNProber,
    "bert": BertProber.from_setup,
}


class Scorer:
    """Scores candidates of one setup; the space's input is built once, on the device."""

    def __init__(self, setup: ScoringSetup, corpus: Corpus | None = None) -> None:
        self.setup = setup
        self.space = get_space(setup.space)
        self.device = resolve_device(setup.device)
        if setup.cuda_graphs and (setup.space != "rnn" or self.device.type != "cuda"):
            raise ValueError(
                "CUDA graphs record the RNN cells' steps on a CUDA device "
                f"(space {setup.space!r}, device {self.device})"
            )
        self.metrics = [get_metric(m, setup.space) for m in setup.metrics]
        corpus = corpus or setup.load_corpus()
        self.corpus_description = corpus.description
        # The plan: the union of the metrics' needs, each a declared pass of the space's probe.
        self.needs = frozenset(n for m in self.metrics for n in m.needs)
        self.prober: Prober = PROBERS[setup.space](setup, corpus, self.device, self.needs)
        # numpy's and scipy's BLAS (OpenBLAS, for the eigen score) run single-threaded inside
        # a score: torch's own threads do the parallel work, and OpenBLAS threads left
        # spinning after a call took the cores from them (at the benchmark's sizes on 2
        # cores, a score took 0.30 s with both pools at 2 threads, 0.16 s with OpenBLAS at 1).
        self._blas = ThreadpoolController()

    def probe(self, arch) -> RNNProbe | BertProbe:
        """The probe of one (validated) architecture, planned for this scorer's metrics."""
        return self.prober.probe(arch)

    def score(self, candidate: Candidate) -> Evaluation:
        """Every metric of the setup, each on its own: one that fails does not stop the others
        (a multi-metric record keeps what could be measured); any failure fails the result,
        with every reason."""
        with self._blas.limit(limits=1, user_api="blas"):
            return self._score(candidate)

    def _score(self, candidate: Candidate) -> Evaluation:
        start = time.perf_counter()
        metrics: dict[str, float | None] = {}
        details: dict = {}
        reasons: dict[str, str] = {}
        try:
            arch = self.space.validate(candidate.arch)
            probe = self.probe(arch)
            if self.setup.health_check and isinstance(probe, RNNProbe):
                degenerate = self._examine(probe, details)
                if degenerate is not None:
                    return self._failed(degenerate, metrics, details, start)
        except Exception as exc:  # an architecture that breaks scoring is a result, not a crash
            return self._failed(_reason(exc), metrics, details, start)
        for metric in self.metrics:
            try:
                out = metric.fn(probe)
                value = out.value if isinstance(out, Measured) else float(out)
                if isinstance(out, Measured):
                    details.update(out.details)
                if not math.isfinite(value):
                    raise MetricFailure(f"{metric.name} is {value}")
                metrics[metric.name] = value
            except MetricFailure as exc:
                reasons[metric.name] = str(exc)
            except Exception as exc:  # recorded with its reason, never a NaN row
                reasons[metric.name] = _reason(exc)
        required = self.setup.required_metrics
        if any(required is None or name in required for name in reasons):
            return self._failed("; ".join(reasons.values()), metrics, details, start, reasons)
        if reasons:  # extra metrics only: information, not a verdict on the architecture
            metrics.update(dict.fromkeys(reasons))
            details[METRIC_ERRORS] = dict(reasons)
        seconds = time.perf_counter() - start
        return Evaluation("ok", metrics, details, None, seconds, reasons)

    @staticmethod
    def _examine(probe: RNNProbe, details: dict) -> str | None:
        """The health rule (:mod:`nas_engine.health`) on the scoring pass's states: why the
        network is degenerate, or None; the stress growth goes into ``details``."""
        verdict = state_verdict(probe.health_states())
        if verdict.degenerate is None:
            details[STABILITY] = round(growth_of(probe.stress_rms()), 6)
        return verdict.degenerate

    @staticmethod
    def _failed(
        reason: str,
        metrics: dict,
        details: dict,
        start: float,
        metric_errors: dict[str, str] | None = None,
    ) -> Evaluation:
        finite = {k: v for k, v in metrics.items() if v is not None and math.isfinite(v)}
        seconds = time.perf_counter() - start
        return Evaluation("failed", finite, details, reason, seconds, dict(metric_errors or {}))


def _reason(exc: Exception) -> str:
    where = traceback.extract_tb(exc.__traceback__)[-1]
    place = f"{where.filename.rsplit('/', 1)[-1]}:{where.lineno}"
    return f"{type(exc).__name__}: {exc} (at {place})"
