"""Scoring one architecture: build it, run the passes its metrics need, record the outcome.

:class:`Scorer` is what an executor keeps per worker: it builds the input batch once. It is
created from a picklable :class:`ScoringSetup`, so a remote worker can make its own.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass

from threadpoolctl import ThreadpoolController

from .corpus import Corpus, embedded_corpus, load_corpus
from .devices import resolve_device
from .metrics import Measured, MetricFailure, get_metric
from .plugins import load_plugins
from .result import METRIC_ERRORS, Candidate, Evaluation
from .spaces import Probe, get_space


@dataclass(frozen=True)
class ScoringSetup:
    """Everything a worker needs to score candidates, and nothing it must not share."""

    space: str = "rnn"
    metrics: tuple[str, ...] = ("hidden_cov",)
    # The network sizes (None: the space's default; see SearchSpace.size_defaults).
    embedding_size: int | None = None
    hidden_size: int | None = None
    num_layers: int | None = None
    batch_size: int = 50
    bptt: int = 70
    corpus: str | None = None
    split: str = "test"
    seed: int = 0
    device: str = "cpu"
    # Scale of the RNN cells' initial weights (search_spaces.rnn.model.ModelSizes.init_gain).
    init_gain: float | None = None
    # The network family the space builds each architecture as (SearchSpace.networks);
    # None: the space's default.
    network: str | None = None
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
    # Modules that register metrics or spaces (--plugin): every process that scores imports
    # them first, a Ray worker too; ``plugin_paths``, the folders they were found in, are put
    # on such a process's import path.
    plugins: tuple[str, ...] = ()
    plugin_paths: tuple[str, ...] = ()

    def load_corpus(self) -> Corpus:
        if self.corpus is None:
            return embedded_corpus()
        return load_corpus(self.corpus, self.split)


class Scorer:
    """Scores candidates of one setup; the space's input is built once, on the device."""

    def __init__(self, setup: ScoringSetup, corpus: Corpus | None = None) -> None:
        load_plugins(setup.plugins, setup.plugin_paths)
        self.setup = setup
        self.space = get_space(setup.space)
        self.device = resolve_device(setup.device)
        self.metrics = [get_metric(m, setup.space) for m in setup.metrics]
        # The plan: the union of the metrics' needs, each a declared pass of the space's probe.
        self.needs = frozenset(n for m in self.metrics for n in m.needs)
        self.space.check_setup(setup, self.needs)
        corpus = corpus or setup.load_corpus()
        self.corpus_description = corpus.description
        self.prober = self.space.prober(setup, corpus, self.device, self.needs)
        # numpy's and scipy's BLAS (OpenBLAS, for the eigen score) run single-threaded inside
        # a score: torch's own threads do the parallel work, and OpenBLAS threads left
        # spinning after a call took the cores from them (at the benchmark's sizes on 2
        # cores, a score took 0.30 s with both pools at 2 threads, 0.16 s with OpenBLAS at 1).
        self._blas = ThreadpoolController()

    def probe(self, arch: object) -> Probe:
        """The probe of one (validated) architecture, planned for this scorer's metrics."""
        return self.prober.probe(arch)

    def score_batch(self, candidates: Sequence[Candidate]) -> list[Evaluation]:
        """One evaluation per candidate, in order (a space's scorer may share work among
        them: see ``SearchSpace.scorer_class``)."""
        return [self.score(c) for c in candidates]

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
            if self.setup.health_check:
                degenerate = self.space.health(probe, details)
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


def make_scorer(setup: ScoringSetup, corpus: Corpus | None = None) -> Scorer:
    """The scorer of ``setup``'s space: its own batch scorer where it has one."""
    load_plugins(setup.plugins, setup.plugin_paths)
    scorer_class = get_space(setup.space).scorer_class or Scorer
    return scorer_class(setup, corpus)
