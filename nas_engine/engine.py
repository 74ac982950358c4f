"""The search loop: a strategy proposes, an executor scores, a store records."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from search_spaces import get_space, space_names

from .config import ConfigError, SearchConfig
from .corpus import Corpus, CorpusError, first_batch
from .executors import Executor, make_executor
from .fitness import Fitness
from .metrics import metric_names
from .result import Candidate, Evaluation, Result
from .scoring import resolve_device
from .storage import RunFolderError, RunStore
from .strategies import STRATEGIES, SpaceExhausted, make_strategy


@dataclass(frozen=True)
class SearchOutcome:
    results: list[Result]
    summary: dict
    out: Path

    def top(self, k: int) -> list[Result]:
        return top_results(self.results, k)


def top_results(results: list[Result], k: int) -> list[Result]:
    ok = [r for r in results if r.ok and r.fitness is not None]
    return sorted(ok, key=lambda r: (-r.fitness, r.index))[:k]


def default_out(config: SearchConfig) -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"runs/{config.space}-{config.fitness}-{config.strategy}-seed{config.seed}-{stamp}"


@dataclass
class _Prepared:
    config: SearchConfig
    fitness: Fitness
    corpus: Corpus
    store: RunStore


def prepare(config: SearchConfig) -> _Prepared:
    """Check everything a user can get wrong, before anything is written."""
    config.validate()
    try:
        get_space(config.space)
    except KeyError:
        raise ConfigError(
            f"unknown space {config.space!r} (known: {', '.join(space_names())})"
        ) from None
    try:
        fitness = Fitness.parse(config.fitness, config.space)
        for name in config.metrics:
            Fitness.parse(name, config.space)
    except KeyError as exc:
        raise ConfigError(exc.args[0]) from None
    if config.strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {config.strategy!r} (known: {', '.join(STRATEGIES)})")
    for name in config.scored_metrics():
        if name.startswith("hidden_cov_l") and int(name[-1]) > config.layers:
            raise ConfigError(
                f"{name} needs at least {name[-1]} layers, the model has {config.layers}"
            )
    try:
        resolve_device(config.device)
    except (ValueError, RuntimeError) as exc:
        raise ConfigError(str(exc)) from None
    setup = config.scoring_setup()
    try:
        corpus = setup.load_corpus()
        first_batch(corpus.split(config.split), config.batch_size, config.bptt)
    except CorpusError as exc:
        raise ConfigError(str(exc)) from None
    store = RunStore(config.out or default_out(config))
    try:
        store.check_free(config.identity())
    except RunFolderError as exc:
        raise ConfigError(str(exc)) from None
    return _Prepared(config, fitness, corpus, store)


def run_search(
    config: SearchConfig,
    *,
    executor: Executor | None = None,
    on_result: Callable[[Result, Result | None], None] | None = None,
    on_start: Callable[[str], None] | None = None,
) -> SearchOutcome:
    """Run a whole search; results are on disk the moment they are reported.

    ``on_result(result, best_so_far)`` is called after each result (progress display);
    ``on_start(corpus_description)`` once the corpus is loaded.
    """
    prep = prepare(config)
    store = prep.store
    space = get_space(config.space)
    strategy = make_strategy(
        config.strategy, space, config.seed, config.population, config.tournament
    )
    executor = executor or make_executor(config.executor)
    results: list[Result] = []
    best: Result | None = None
    started = time.perf_counter()
    stop_reason = "budget"
    with executor:
        executor.start(config.scoring_setup(), prep.corpus)
        if on_start is not None:
            on_start(prep.corpus.description)
        store.open(config.identity())
        try:
            while True:
                out_of_time = (
                    config.time_budget is not None
                    and time.perf_counter() - started >= config.time_budget
                )
                while (
                    not out_of_time
                    and executor.pending() < executor.capacity
                    and len(results) + executor.pending() < config.budget
                ):
                    executor.submit(strategy.ask())
                if executor.pending() == 0:
                    stop_reason = "time budget" if out_of_time else "budget"
                    break
                for candidate, evaluation in executor.wait():
                    result = _record(len(results), candidate, evaluation, prep.fitness)
                    results.append(result)
                    store.append(result)
                    strategy.tell(candidate, result)
                    if result.ok and (best is None or result.fitness > best.fitness):
                        best = result
                    if on_result is not None:
                        on_result(result, best)
        except SpaceExhausted as exc:
            stop_reason = f"space exhausted: {exc}"
        except KeyboardInterrupt:
            stop_reason = "interrupted"
            raise
        finally:
            summary = _summary(config, prep, results, strategy.stats(), started, stop_reason)
            store.write_summary(summary)
            store.close()
    return SearchOutcome(results, summary, store.root)


def _record(index: int, candidate: Candidate, evaluation: Evaluation, fitness: Fitness) -> Result:
    value = fitness(evaluation.metrics) if evaluation.status == "ok" else None
    return Result(
        index=index,
        arch_id=candidate.key,
        arch=dict(candidate.arch),
        origin=candidate.origin,
        status=evaluation.status,
        fitness=value,
        metrics=dict(evaluation.metrics),
        details=dict(evaluation.details),
        error=evaluation.error,
        seconds=round(evaluation.seconds, 6),
    )


def _summary(
    config: SearchConfig,
    prep: _Prepared,
    results: list[Result],
    strategy_stats: dict,
    started: float,
    stop_reason: str,
) -> dict:
    seconds = [r.seconds for r in results]
    total = time.perf_counter() - started
    failed = [r for r in results if not r.ok]
    return {
        "config": {**config.identity(), "out": str(prep.store.root), "top_k": config.top_k},
        "corpus": prep.corpus.description,
        "stopped_by": stop_reason,
        "evaluated": len(results),
        "ok": len(results) - len(failed),
        "failed": len(failed),
        "failure_reasons": sorted({r.error for r in failed if r.error})[:20],
        "total_seconds": round(total, 3),
        "seconds_per_arch_wall": round(total / len(results), 4) if results else None,
        "seconds_per_arch_scoring_median": round(statistics.median(seconds), 4)
        if seconds
        else None,
        "seconds_per_arch_scoring_mean": round(statistics.fmean(seconds), 4) if seconds else None,
        "top": [
            {
                "rank": i + 1,
                "arch_id": r.arch_id,
                "fitness": r.fitness,
                "metrics": r.metrics,
                "origin": r.origin,
                "index": r.index,
                "recipe": r.arch,
            }
            for i, r in enumerate(top_results(results, config.top_k))
        ],
        "strategy": strategy_stats,
        "known_metrics": metric_names(config.space),
    }
