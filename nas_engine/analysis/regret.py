"""Regret simulation on real learning curves: for the compute I have, which search method
gives me the best trained model?

A **pool** is a set of architectures with everything the benchmark logged for them: the final
test loss (what the user ends up with after full training), the validation loss after every
epoch, the seconds every epoch took, and training-free metric values with the seconds each
took to score. A search method sees the pool in one random **ordering** (the order in which a
sampler would propose the architectures) and a **budget** in seconds of search compute; it
returns one **choice**. The final full training of the chosen architecture is the same for
every method and is not part of the budget.

Policies (each pays as it goes, in pool order, and stops at the first architecture whose cost
no longer fits: a partly paid architecture gives nothing):

* :class:`RandomChoice`: the first architecture of the ordering; costs nothing.
* :class:`TrainingFree`: score architectures in order, paying each one's scoring seconds;
  choose the best by the engine's fitness (:class:`nas_engine.fitness.Fitness`) computed
  against the architectures scored so far (for an ensemble, that growing population is the
  reference, as in the engine's final ranking; ties go to the earlier architecture). An
  architecture whose fitness is undefined (a metric failed) is paid for but never chosen.
  Parameter count is this policy with the fitness ``params``.
* :class:`TrainedProxy` with E epochs: train architectures in order, paying the logged seconds
  of their first E epochs; choose the lowest validation loss after E epochs among those
  finished (ties: the earlier).
* :class:`TwoStage`: score in order while the scoring spend stays within ``scoring_share`` of
  the budget (the whole pool if that allows), rank the scored architectures by fitness, train
  the top k for E epochs in fitness order with what is left, choose the lowest validation loss
  after E epochs among those finished. With nothing finished it keeps the fitness's choice.
* :class:`SuccessiveHalving`: :class:`TwoStage`'s scoring and first stage (the top k1 by
  fitness, one epoch each), then a second stage with what is left: the k2 lowest epoch-1
  validation losses among those trained continue to epoch E (paying epochs 2..E, lowest
  epoch-1 loss first); choose the lowest epoch-E validation loss among those continued (with
  none continued, the lowest epoch-1 loss).
* :class:`TwoStageBlend`: :class:`TwoStage` with a final choice that weighs the training-free
  rank in: among those trained, the highest weighted mean of two mid-rank percentiles (the
  engine's ensemble rule), the epoch-E validation loss (weight 1) and the fitness rank
  (weight ``fitness_weight``); ties go to the better fitness.
* :class:`CostAwareTwoStage`: :class:`TwoStage` that also scores a cost estimate known
  before training (the parameter count, which ranks the logged epoch seconds at Spearman
  0.92) and trains the top k cheapest first, so that a budget too small for all k trains more
  of them; with all k trained it chooses as :class:`TwoStage`.

A method with nothing to choose from (budget below its first cost) falls back to the first
architecture of the ordering, a random choice; :class:`Choice` records that fallback.

**Regret** = the chosen architecture's final test loss minus the best final test loss in the
pool (0 for the best architecture).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

import numpy as np
import pandas as pd
from scipy import stats

from ..benchmarks.nbnlp import TrainingLog
from ..fitness import Fitness


class SimulationError(ValueError):
    """Inconsistent simulation input; the message is one line."""


@dataclass(frozen=True, eq=False)
class Pool:
    """The architectures a search chooses from, as arrays indexed by pool position."""

    names: tuple[str, ...]
    test_loss: np.ndarray  # (N,) final test loss after full training
    val_loss: np.ndarray  # (N, epochs) validation loss after each epoch
    epoch_seconds: np.ndarray  # (N, epochs) seconds each epoch took
    metrics: Mapping[str, np.ndarray] = field(default_factory=dict)  # (N,), NaN = failed
    scoring_seconds: Mapping[str, np.ndarray] = field(default_factory=dict)  # (N,) per metric

    def __post_init__(self) -> None:
        n = len(self.names)
        if n == 0:
            raise SimulationError("empty pool")
        if self.test_loss.shape != (n,) or not np.isfinite(self.test_loss).all():
            raise SimulationError(f"test_loss must be {n} finite values")
        if self.val_loss.ndim != 2 or self.val_loss.shape[0] != n:
            raise SimulationError(f"val_loss must have shape ({n}, epochs)")
        if self.epoch_seconds.shape != self.val_loss.shape:
            raise SimulationError("epoch_seconds and val_loss must have the same shape")
        if (self.epoch_seconds < 0).any() or not np.isfinite(self.epoch_seconds).all():
            raise SimulationError("epoch_seconds must be finite and non-negative")
        for name, values in {**self.metrics, **self.scoring_seconds}.items():
            if np.shape(values) != (n,):
                raise SimulationError(f"{name}: expected {n} values, got shape {np.shape(values)}")
        if set(self.metrics) != set(self.scoring_seconds):
            raise SimulationError("every metric needs its scoring seconds, and only those")

    @property
    def size(self) -> int:
        return len(self.names)

    @property
    def epochs(self) -> int:
        return self.val_loss.shape[1]

    @property
    def best_test_loss(self) -> float:
        return float(self.test_loss.min())

    def regret(self, index: int) -> float:
        return float(self.test_loss[index] - self.test_loss.min())

    def training_seconds(self, epochs: int) -> np.ndarray:
        """Seconds to train each architecture for its first ``epochs`` epochs."""
        self._check_epochs(epochs)
        return self.epoch_seconds[:, :epochs].sum(axis=1)

    def proxy_loss(self, epochs: int) -> np.ndarray:
        """Validation loss after ``epochs`` epochs (NaN counts as never best)."""
        self._check_epochs(epochs)
        return self.val_loss[:, epochs - 1]

    def first_epoch_total(self) -> float:
        """Seconds to train the whole pool for one epoch: the largest budget simulated."""
        return float(self.epoch_seconds[:, 0].sum())

    def architecture_epoch(self) -> float:
        """The median first-epoch seconds: the unit of budget ("one architecture-epoch")."""
        return float(np.median(self.epoch_seconds[:, 0]))

    def fitness_table(self, fitness: Fitness) -> tuple[np.ndarray, np.ndarray]:
        """(N, k) direction-applied component values by the engine's rule, and a mask of the
        architectures whose fitness is defined (every component present and finite)."""
        self._require(fitness)
        k = len(fitness.components)
        table = np.full((self.size, k), np.nan)
        defined = np.zeros(self.size, dtype=bool)
        for i in range(self.size):
            row = fitness.values({m: float(self.metrics[m][i]) for m in fitness.metric_names})
            if row is not None:
                table[i] = row
                defined[i] = True
        return table, defined

    def scoring_cost(self, fitness: Fitness) -> np.ndarray:
        """Seconds to score each architecture for the fitness: its metrics' seconds, summed
        (each metric measured on its own; scoring them together shares passes, so this is an
        upper bound)."""
        self._require(fitness)
        return sum(np.asarray(self.scoring_seconds[m], dtype=float) for m in fitness.metric_names)

    def subset(self, indices: Sequence[int]) -> Pool:
        """The pool restricted to ``indices`` (in that order)."""
        idx = np.asarray(indices, dtype=int)
        return Pool(
            names=tuple(self.names[i] for i in idx),
            test_loss=self.test_loss[idx],
            val_loss=self.val_loss[idx],
            epoch_seconds=self.epoch_seconds[idx],
            metrics={m: np.asarray(v)[idx] for m, v in self.metrics.items()},
            scoring_seconds={m: np.asarray(v)[idx] for m, v in self.scoring_seconds.items()},
        )

    def with_scoring_seconds(self, seconds: Mapping[str, float | np.ndarray]) -> Pool:
        """The same pool with other scoring costs (a constant or per-architecture array per
        metric), for charging training-free scoring at another machine's speed."""
        merged = dict(self.scoring_seconds)
        for m, s in seconds.items():
            if m not in self.metrics:
                raise SimulationError(f"pool has no metric {m!r}")
            merged[m] = np.broadcast_to(np.asarray(s, dtype=float), (self.size,)).copy()
        return Pool(
            self.names, self.test_loss, self.val_loss, self.epoch_seconds, self.metrics, merged
        )

    def __len__(self) -> int:
        return self.size

    def _require(self, fitness: Fitness) -> None:
        missing = [m for m in fitness.metric_names if m not in self.metrics]
        if missing:
            raise SimulationError(f"pool has no values for metric(s) {', '.join(missing)}")

    def _check_epochs(self, epochs: int) -> None:
        if not 1 <= epochs <= self.epochs:
            raise SimulationError(f"epochs must be 1..{self.epochs}, not {epochs}")


def pool_from_logs(
    logs: Sequence[TrainingLog], scores: pd.DataFrame, metrics: Sequence[str]
) -> Pool:
    """The OK logs as a pool, with ``metrics`` (and their ``_seconds``) from a ``scores.csv``
    of the nbnlp benchmark (column ``log`` = the log's file name). The value of ``params`` is
    the log's own ``num_params`` (the count at the benchmark's sizes, whatever sizes the scores
    were taken at), its seconds those of the scores' ``params_seconds`` column."""
    ok = [log for log in logs if log.ok]
    if not ok:
        raise SimulationError("no OK logs")
    epochs = {len(log.val_losses) for log in ok} | {len(log.wall_times) for log in ok}
    if len(epochs) != 1:
        raise SimulationError(f"logs differ in their number of epochs: {sorted(epochs)}")
    by_name = scores.set_index("log")
    absent = [log.name for log in ok if log.name not in by_name.index]
    if absent:
        raise SimulationError(f"{len(absent)} OK logs have no scores (first: {absent[0]})")
    rows = by_name.loc[[log.name for log in ok]]
    values, seconds = {}, {}
    for m in metrics:
        if m not in rows.columns:
            raise SimulationError(f"scores have no column {m!r}")
        if f"{m}_seconds" not in rows.columns:
            raise SimulationError(f"scores have no column {m + '_seconds'!r}")
        values[m] = rows[m].to_numpy(dtype=float)
        seconds[m] = rows[f"{m}_seconds"].to_numpy(dtype=float)
    if "params" in values:
        values["params"] = np.array([float(log.num_params) for log in ok])
    return Pool(
        names=tuple(log.name for log in ok),
        test_loss=np.array([log.final_test_loss for log in ok]),
        val_loss=np.array([log.val_losses for log in ok], dtype=float),
        epoch_seconds=np.array([log.wall_times for log in ok], dtype=float),
        metrics=values,
        scoring_seconds=seconds,
    )


class Ordering:
    """One ordering of a pool, memoising the running sums and fitness rankings that the
    policies ask for (a method's choice at many budgets reuses them)."""

    def __init__(self, pool: Pool, order: Sequence[int]) -> None:
        order = np.asarray(order, dtype=int)
        if sorted(order.tolist()) != list(range(pool.size)):
            raise SimulationError("an ordering must list every pool position once")
        self.pool = pool
        self.order = order
        self._cumulative: dict[tuple, np.ndarray] = {}
        self._tables: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._ranked: dict[tuple[str, int], np.ndarray] = {}
        self._costs: dict[tuple, np.ndarray] = {}

    def training_seconds(self, epochs: int) -> np.ndarray:
        """:meth:`Pool.training_seconds`, memoised (every budget of every policy asks)."""
        key = ("train", epochs)
        if key not in self._costs:
            self._costs[key] = self.pool.training_seconds(epochs)
        return self._costs[key]

    def scoring_cost(self, fitness: Fitness) -> np.ndarray:
        """:meth:`Pool.scoring_cost`, memoised."""
        key = ("score", fitness.name)
        if key not in self._costs:
            self._costs[key] = self.pool.scoring_cost(fitness)
        return self._costs[key]

    def paid(self, key: tuple, costs_in_pool_order: np.ndarray, budget: float) -> int:
        """How many architectures, taken in this ordering, fit in ``budget`` (cumulative).
        A relative slack of 1e-12 lets a budget equal to a sum of costs pay for all of them,
        whatever order float additions happened in."""
        if key not in self._cumulative:
            self._cumulative[key] = np.cumsum(costs_in_pool_order[self.order])
        slack = 1e-12 * max(1.0, abs(budget))
        return int(np.searchsorted(self._cumulative[key], budget + slack, side="right"))

    def spent(self, key: tuple, n: int) -> float:
        return float(self._cumulative[key][n - 1]) if n else 0.0

    def ranked(self, fitness: Fitness, n: int) -> np.ndarray:
        """Pool positions among the first ``n`` of the ordering that have a fitness, best
        first, the fitness computed against exactly those (the engine's rule); ties keep the
        ordering (the earlier result wins)."""
        key = (fitness.name, n)
        if key not in self._ranked:
            if fitness.name not in self._tables:
                self._tables[fitness.name] = self.pool.fitness_table(fitness)
            table, defined = self._tables[fitness.name]
            prefix = self.order[:n]
            scored = prefix[defined[prefix]]
            if len(scored) == 0:
                self._ranked[key] = scored
            else:
                values = np.asarray(fitness.rank(table[scored].tolist()))
                self._ranked[key] = scored[np.argsort(-values, kind="stable")]
        return self._ranked[key]


@dataclass(frozen=True)
class Choice:
    """What a method chose under one budget, and what it paid."""

    method: str
    budget: float
    index: int  # pool position of the chosen architecture
    spent: float  # seconds actually spent (<= budget)
    scored: int = 0  # architectures scored training-free
    trained: int = 0  # architectures trained with the proxy
    fallback: str = ""  # why the choice fell back to a cheaper rule ("" = it did not)


def _best_proxy(pool: Pool, candidates: np.ndarray, epochs: int) -> int:
    """The candidate with the lowest validation loss after ``epochs`` (the first on ties;
    NaN never wins unless all are NaN)."""
    losses = pool.proxy_loss(epochs)[candidates]
    return int(candidates[int(np.argmin(np.where(np.isnan(losses), np.inf, losses)))])


def _n_fitting(costs: np.ndarray, left: float) -> int:
    """How many of ``costs``, paid in order, fit in ``left`` seconds (the same relative slack
    as :meth:`Ordering.paid`)."""
    cumulative = np.cumsum(costs)
    return int(np.searchsorted(cumulative, left + 1e-12 * max(1.0, abs(left)), side="right"))


@dataclass(frozen=True)
class _Prefiltered:
    """What the scoring stage shared by the multi-stage policies left: the top candidates by
    fitness, best first, and what scoring cost."""

    scored: int
    spent: float
    top: np.ndarray


def _prefilter(
    ordering: Ordering,
    fitness: Fitness,
    top_k: int,
    scoring_share: float,
    budget: float,
    cost_metric: str | None = None,
) -> _Prefiltered:
    """Score in order within ``scoring_share`` of the budget; the top ``top_k`` by fitness.
    A ``cost_metric`` is scored (and paid) with the fitness, unless the fitness reads it."""
    key: tuple = ("score", fitness.name)
    costs = ordering.scoring_cost(fitness)
    if cost_metric is not None:
        pool = ordering.pool
        if cost_metric not in pool.metrics:
            raise SimulationError(f"pool has no values for metric {cost_metric}")
        key = (*key, cost_metric)
        if cost_metric not in fitness.metric_names:
            costs = costs + np.asarray(pool.scoring_seconds[cost_metric], dtype=float)
    n = ordering.paid(key, costs, scoring_share * budget)
    return _Prefiltered(n, ordering.spent(key, n), ordering.ranked(fitness, n)[:top_k])


def _check_share(top_k: int, scoring_share: float) -> None:
    if top_k < 1:
        raise SimulationError(f"top_k must be at least 1, not {top_k}")
    if not 0 < scoring_share <= 1:
        raise SimulationError(f"scoring_share must be in (0, 1], not {scoring_share}")


class Policy(Protocol):
    @property
    def name(self) -> str: ...

    def choose(self, ordering: Ordering, budget: float) -> Choice: ...


@dataclass(frozen=True)
class RandomChoice:
    @cached_property
    def name(self) -> str:
        return "random"

    def choose(self, ordering: Ordering, budget: float) -> Choice:
        return Choice(self.name, budget, int(ordering.order[0]), 0.0)


@dataclass(frozen=True)
class TrainedProxy:
    epochs: int

    @cached_property
    def name(self) -> str:
        return f"trained proxy, {self.epochs} epoch{'s' if self.epochs > 1 else ''}"

    def choose(self, ordering: Ordering, budget: float) -> Choice:
        pool = ordering.pool
        key = ("train", self.epochs)
        n = ordering.paid(key, ordering.training_seconds(self.epochs), budget)
        if n == 0:
            return Choice(
                self.name, budget, int(ordering.order[0]), 0.0, fallback="budget trains nothing"
            )
        index = _best_proxy(pool, ordering.order[:n], self.epochs)
        return Choice(self.name, budget, index, ordering.spent(key, n), trained=n)


@dataclass(frozen=True)
class TrainingFree:
    fitness: Fitness
    label: str = ""

    @cached_property
    def name(self) -> str:
        return self.label or f"training-free, {self.fitness.name}"

    def choose(self, ordering: Ordering, budget: float) -> Choice:
        key = ("score", self.fitness.name)
        n = ordering.paid(key, ordering.scoring_cost(self.fitness), budget)
        ranked = ordering.ranked(self.fitness, n)
        if len(ranked) == 0:
            reason = "budget scores nothing" if n == 0 else "no scored architecture has a fitness"
            index = int(ordering.order[0])
            return Choice(self.name, budget, index, ordering.spent(key, n), n, fallback=reason)
        return Choice(self.name, budget, int(ranked[0]), ordering.spent(key, n), n)


@dataclass(frozen=True)
class TwoStage:
    fitness: Fitness
    epochs: int
    top_k: int
    scoring_share: float = 0.5

    def __post_init__(self) -> None:
        _check_share(self.top_k, self.scoring_share)

    @cached_property
    def name(self) -> str:
        return f"two-stage, {self.fitness.name} -> top {self.top_k}, {self.epochs} ep"

    def choose(self, ordering: Ordering, budget: float) -> Choice:
        trained = _train_top(self, ordering, budget, self.epochs)
        if isinstance(trained, Choice):
            return trained
        front, top, n_trained, spent = trained
        index = _best_proxy(ordering.pool, top[:n_trained], self.epochs)
        return Choice(self.name, budget, index, spent, front.scored, n_trained)


def _train_top(
    policy: TwoStage | SuccessiveHalving | TwoStageBlend | CostAwareTwoStage,
    ordering: Ordering,
    budget: float,
    epochs: int,
    cost_metric: str | None = None,
) -> Choice | tuple[_Prefiltered, np.ndarray, int, float]:
    """Scoring and first training stage shared by the multi-stage policies: the fallback
    :class:`Choice` when nothing gets trained, else (scoring result, the top candidates in
    training order, how many of them were trained for ``epochs``, seconds spent so far).
    The training order is the fitness order, or with ``cost_metric`` (lower = cheaper) the
    cheapest first; equal (or missing, last) estimates keep the fitness order."""
    front = _prefilter(
        ordering, policy.fitness, policy.top_k, policy.scoring_share, budget, cost_metric
    )
    if len(front.top) == 0:
        reason = "budget scores nothing" if front.scored == 0 else "no fitness among scored"
        index = int(ordering.order[0])
        return Choice(policy.name, budget, index, front.spent, front.scored, fallback=reason)
    order = front.top
    if cost_metric is not None:
        estimate = np.asarray(ordering.pool.metrics[cost_metric], dtype=float)[order]
        order = order[np.argsort(np.where(np.isnan(estimate), np.inf, estimate), kind="stable")]
    costs = ordering.training_seconds(epochs)[order]
    n_trained = _n_fitting(costs, budget - front.spent)
    if n_trained == 0:
        return Choice(
            policy.name,
            budget,
            int(front.top[0]),
            front.spent,
            front.scored,
            fallback="budget trains nothing; the fitness's choice",
        )
    return front, order, n_trained, front.spent + float(costs[:n_trained].sum())


@dataclass(frozen=True)
class SuccessiveHalving:
    """Pre-filter by fitness, train the top ``top_k`` one epoch, continue the ``keep`` best of
    them to ``epochs`` epochs (a validation loss after more epochs ranks the final loss better,
    and only the survivors pay for it)."""

    fitness: Fitness
    top_k: int
    keep: int
    epochs: int = 3
    scoring_share: float = 0.5

    def __post_init__(self) -> None:
        _check_share(self.top_k, self.scoring_share)
        if not 1 <= self.keep <= self.top_k:
            raise SimulationError(f"keep must be in 1..top_k ({self.top_k}), not {self.keep}")
        if self.epochs < 2:
            raise SimulationError(f"epochs must be at least 2, not {self.epochs}")

    @cached_property
    def name(self) -> str:
        return (
            f"successive halving, {self.fitness.name} -> top {self.top_k}, 1 ep -> "
            f"best {self.keep}, {self.epochs} ep"
        )

    def choose(self, ordering: Ordering, budget: float) -> Choice:
        trained = _train_top(self, ordering, budget, 1)
        if isinstance(trained, Choice):
            return trained
        front, top, n_trained, spent = trained
        pool = ordering.pool
        first = top[:n_trained]
        loss = pool.proxy_loss(1)[first]
        # Stable sort: equal epoch-1 losses keep the fitness order; NaN goes last.
        survivors = first[np.argsort(np.where(np.isnan(loss), np.inf, loss), kind="stable")]
        survivors = survivors[: self.keep]
        more = (ordering.training_seconds(self.epochs) - ordering.training_seconds(1))[survivors]
        n_more = _n_fitting(more, budget - spent)
        if n_more == 0:
            index = _best_proxy(pool, first, 1)
            return Choice(self.name, budget, index, spent, front.scored, n_trained)
        index = _best_proxy(pool, survivors[:n_more], self.epochs)
        spent += float(more[:n_more].sum())
        return Choice(self.name, budget, index, spent, front.scored, n_trained)


@dataclass(frozen=True)
class TwoStageBlend:
    """:class:`TwoStage` whose final choice also trusts the training-free rank: the validation
    loss after so few epochs is noisy, and the fitness is independent evidence."""

    fitness: Fitness
    epochs: int
    top_k: int
    fitness_weight: float
    scoring_share: float = 0.5

    def __post_init__(self) -> None:
        _check_share(self.top_k, self.scoring_share)
        if not (0 <= self.fitness_weight < math.inf):
            raise SimulationError(f"fitness_weight must be >= 0, not {self.fitness_weight}")

    @cached_property
    def name(self) -> str:
        return (
            f"two-stage blend, {self.fitness.name} -> top {self.top_k}, {self.epochs} ep, "
            f"fitness weight {self.fitness_weight:g}"
        )

    def choose(self, ordering: Ordering, budget: float) -> Choice:
        trained = _train_top(self, ordering, budget, self.epochs)
        if isinstance(trained, Choice):
            return trained
        front, top, n_trained, spent = trained
        candidates = top[:n_trained]  # best fitness first
        loss = ordering.pool.proxy_loss(self.epochs)[candidates]
        # The weighted mean of mid-rank percentiles ((rank - 1/2) / n) orders the candidates as
        # the weighted sum of their mid-ranks does; the sum keeps exact ties exact.
        by_loss = stats.rankdata(-np.where(np.isnan(loss), np.inf, loss))
        by_fitness = stats.rankdata(-np.arange(n_trained, dtype=float))
        blend = by_loss + self.fitness_weight * by_fitness
        index = int(candidates[int(np.argmax(blend))])  # argmax: the first (best fitness) on ties
        return Choice(self.name, budget, index, spent, front.scored, n_trained)


@dataclass(frozen=True)
class CostAwareTwoStage:
    """:class:`TwoStage` training its top k in increasing order of a cost estimate
    (``cost_metric``, lower = cheaper), which is scored (and paid) with the fitness."""

    fitness: Fitness
    epochs: int
    top_k: int
    cost_metric: str = "params"
    scoring_share: float = 0.5

    def __post_init__(self) -> None:
        _check_share(self.top_k, self.scoring_share)

    @cached_property
    def name(self) -> str:
        return (
            f"cost-aware two-stage, {self.fitness.name} -> top {self.top_k} by "
            f"{self.cost_metric} first, {self.epochs} ep"
        )

    def choose(self, ordering: Ordering, budget: float) -> Choice:
        trained = _train_top(self, ordering, budget, self.epochs, self.cost_metric)
        if isinstance(trained, Choice):
            return trained
        front, cheap_first, n_trained, spent = trained
        # Among the trained, the lowest loss; ties go to the better fitness, as in TwoStage.
        top = front.top
        in_fitness_order = top[np.isin(top, cheap_first[:n_trained])]
        index = _best_proxy(ordering.pool, in_fitness_order, self.epochs)
        return Choice(self.name, budget, index, spent, front.scored, n_trained)


@dataclass(frozen=True)
class RegretCurves:
    """Regret of one method over orderings (rows) and budgets (columns)."""

    method: str
    budgets: np.ndarray  # (B,) seconds
    regret: np.ndarray  # (R, B)
    fallback: np.ndarray  # (R, B) bool: the choice fell back to a cheaper rule
    spent: np.ndarray  # (R, B) seconds actually spent

    @property
    def mean(self) -> np.ndarray:
        return self.regret.mean(axis=0)


def simulate(
    pool: Pool,
    policies: Sequence[Policy],
    orders: Sequence[Sequence[int]],
    budgets: Sequence[float],
) -> dict[str, RegretCurves]:
    """Each policy's regret for every ordering and budget."""
    budgets = np.asarray(budgets, dtype=float)
    names = [p.name for p in policies]
    if len(set(names)) != len(names):
        raise SimulationError("policy names must be unique")
    shape = (len(orders), len(budgets))
    out = {
        p.name: (np.empty(shape), np.zeros(shape, dtype=bool), np.empty(shape)) for p in policies
    }
    for r, order in enumerate(orders):
        ordering = Ordering(pool, order)
        for policy in policies:
            regret, fallback, spent = out[policy.name]
            for b, budget in enumerate(budgets):
                choice = policy.choose(ordering, float(budget))
                regret[r, b] = pool.regret(choice.index)
                fallback[r, b] = bool(choice.fallback)
                spent[r, b] = choice.spent
    return {name: RegretCurves(name, budgets, *arrays) for name, arrays in out.items()}


def confidence_band(
    regret: np.ndarray, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile-bootstrap confidence band of the mean regret over orderings, per budget
    (a band of zero width where every ordering gives the same regret)."""
    regret = np.asarray(regret, dtype=float)
    if regret.shape[0] < 2:
        return regret.mean(axis=0), regret.mean(axis=0)
    constant = np.ptp(regret, axis=0) == 0
    low, high = regret.mean(axis=0).copy(), regret.mean(axis=0).copy()
    if (~constant).any():
        result = stats.bootstrap(
            (regret[:, ~constant],),
            np.mean,
            axis=0,
            confidence_level=confidence,
            n_resamples=resamples,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
        low[~constant] = result.confidence_interval.low
        high[~constant] = result.confidence_interval.high
    return low, high


def first_budget_reaching(
    budgets: Sequence[float], mean_regret: Sequence[float], target: float
) -> float | None:
    """The smallest budget at which the mean regret is at most ``target`` (None if never).
    A tolerance of 1e-12 absorbs float noise in means of equal regrets."""
    for budget, value in zip(budgets, mean_regret, strict=True):
        if value <= target + 1e-12:
            return float(budget)
    return None


def first_budget_staying(
    budgets: Sequence[float], mean_regret: Sequence[float], target: float
) -> float | None:
    """The smallest budget from which the mean regret stays at most ``target`` at every larger
    budget of the grid (None if the largest is above it): unlike
    :func:`first_budget_reaching`, a dip below the target that more compute undoes does not
    count. The same tolerance of 1e-12."""
    above = np.flatnonzero(np.asarray(mean_regret, dtype=float) > target + 1e-12)
    if len(above) == 0:
        return float(budgets[0])
    last = int(above[-1])
    return None if last == len(budgets) - 1 else float(budgets[last + 1])


def log_budgets(low: float, high: float, points: int) -> np.ndarray:
    """``points`` budgets log-spaced from ``low`` to ``high`` (both included)."""
    if not (0 < low <= high) or points < 1 or not math.isfinite(high):
        raise SimulationError(f"bad budget range {low}..{high} with {points} points")
    return np.geomspace(low, high, points) if points > 1 else np.array([float(high)])
