"""Scoring one architecture: build it, run the passes its metrics need, record the outcome.

:class:`Scorer` is what an executor keeps per worker: it builds the input batch once. It is
created from a picklable :class:`ScoringSetup`, so a remote worker can make its own.
"""

from __future__ import annotations

import math
import time
import traceback
from dataclasses import dataclass

import torch

from search_spaces import get_space
from search_spaces.rnn import ModelSizes

from .bert_probes import BertProbe, BertProber
from .corpus import Corpus, CorpusError, embedded_corpus, first_batch, load_corpus, windows
from .metrics import Measured, MetricFailure, get_metric
from .probes import NTK_MINIBATCHES, RNNProbe, plan_depth
from .result import Candidate, Evaluation
from .training import ProxyTraining, TrainingConfigError


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
    # The trained proxy (metric trained_loss): how long it trains, and on which split.
    proxy_steps: int | None = None
    proxy_epochs: float | None = None
    proxy_train_split: str = "train"

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
        # Each space has its prober: BERT scores batch_size sequences of bptt tokens.
        self.bert: BertProber | None = None
        if setup.space == "bert":
            self.needs = frozenset(n for m in self.metrics for n in m.needs)
            self.bert = BertProber(
                corpus,
                setup.split,
                setup.batch_size,
                setup.bptt,
                setup.seed,
                self.device,
                self.needs,
            )
            return
        ids = corpus.split(setup.split)
        # The scoring input: the first T steps of the batchified split (T, B).
        self.tokens = first_batch(ids, setup.batch_size, setup.bptt).to(self.device)
        self.sizes = ModelSizes(
            vocab_size=len(corpus.vocab),
            embedding_size=setup.embedding_size,
            hidden_size=setup.hidden_size,
            num_layers=setup.num_layers,
        )
        # The plan: the union of the metrics' needs, each a declared pass of the probe.
        self.needs = frozenset(n for m in self.metrics for n in m.needs)
        self.depth = plan_depth(self.needs, setup.num_layers)
        # Loss-based metrics read the next tokens: the (T + 1, B) slice, rows 1..T; the NTK
        # reads consecutive windows. A split too short for them fails those metrics only.
        self.targets: torch.Tensor | None = None
        self.minibatches: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self.missing: dict[str, str] = {}
        if self.needs & {"loss_grad", "minibatch_grads"}:
            try:
                batch = first_batch(ids, setup.batch_size, setup.bptt, targets=True)
                self.targets = batch[1:].to(self.device)
            except CorpusError as exc:
                self.missing["targets"] = str(exc)
        if "minibatch_grads" in self.needs:
            try:
                self.minibatches = [
                    (x.to(self.device), y.to(self.device))
                    for x, y in windows(ids, setup.batch_size, setup.bptt, NTK_MINIBATCHES)
                ]
            except CorpusError as exc:
                self.missing["minibatches"] = str(exc)
        self.training: ProxyTraining | None = None
        if "training" in self.needs:  # the splits are prepared once, for every candidate
            try:
                self.training = ProxyTraining.from_setup(corpus, setup)
            except TrainingConfigError as exc:
                self.missing["training"] = str(exc)

    def probe(self, arch) -> RNNProbe | BertProbe:
        """The probe of one (validated) architecture, planned for this scorer's metrics."""
        if self.bert is not None:
            return self.bert.probe(arch)
        return RNNProbe(
            arch,
            self.sizes,
            self.tokens,
            self.setup.seed,
            self.device,
            self.depth,
            needs=self.needs,
            targets=self.targets,
            minibatches=self.minibatches,
            missing=self.missing,
            training=self.training,
        )

    def score(self, candidate: Candidate) -> Evaluation:
        """Every metric of the setup, each on its own: one that fails does not stop the others
        (a multi-metric record keeps what could be measured); any failure fails the result,
        with every reason."""
        start = time.perf_counter()
        metrics: dict[str, float] = {}
        details: dict = {}
        reasons: list[str] = []
        try:
            arch = self.space.validate(candidate.arch)
            probe = self.probe(arch)
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
                reasons.append(str(exc))
            except Exception as exc:  # recorded with its reason, never a NaN row
                reasons.append(_reason(exc))
        if reasons:
            return self._failed("; ".join(reasons), metrics, details, start)
        return Evaluation("ok", metrics, details, None, time.perf_counter() - start)

    @staticmethod
    def _failed(reason: str, metrics: dict, details: dict, start: float) -> Evaluation:
        finite = {k: v for k, v in metrics.items() if math.isfinite(v)}
        return Evaluation("failed", finite, details, reason, time.perf_counter() - start)


def _reason(exc: Exception) -> str:
    where = traceback.extract_tb(exc.__traceback__)[-1]
    place = f"{where.filename.rsplit('/', 1)[-1]}:{where.lineno}"
    return f"{type(exc).__name__}: {exc} (at {place})"
