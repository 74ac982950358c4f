"""The search loop: a strategy proposes, an executor scores, a store records."""

from __future__ import annotations

import re
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from .config import ConfigError, SearchConfig
from .confirm import ConfirmationPlan, answer, answer_rule, confirm, plan_confirmation
from .corpus import Corpus, CorpusError, first_batch
from .devices import resolve_device
from .executors import Executor, ExecutorError, make_executor
from .fitness import Fitness
from .health import STABILITY
from .metrics import get_metric, metric_names
from .pareto import HYPERVOLUME, FrontTracker, pareto_front
from .report import space_hooks, write_report
from .result import CELL_BATCH_FALLBACK, FLAGGED, Candidate, Evaluation, Result
from .spaces import SearchSpace, get_space
from .storage import RunFolderError, RunStore
from .strategies import STRATEGIES, SpaceExhausted, Strategy, make_strategy


@dataclass(frozen=True)
class SearchOutcome:
    results: list[Result]
    summary: dict
    out: Path
    fitness: Fitness | None = None

    def top(self, k: int) -> list[Result]:
        return top_results(self.results, k, self.fitness)


def ranking(results: list[Result], fitness: Fitness | None = None) -> list[tuple[Result, float]]:
    """The ok results, best first, each with its final fitness (ties: earlier result first);
    results the stability guard flagged are not ranked.

    One metric (or ``fitness`` None): the recorded fitness. An ensemble: the fitness recomputed
    against all ok results of ``results`` (the final population), not the recorded value.
    """
    ok = [r for r in results if r.ranked]
    if fitness is None or not fitness.is_ensemble:
        scored = [(r, r.fitness) for r in ok]
    else:
        rows = [(r, fitness.values(r.metrics)) for r in ok]
        rows = [(r, v) for r, v in rows if v is not None]
        finals = fitness.rank([v for _, v in rows])
        scored = [(r, f) for (r, _), f in zip(rows, finals, strict=True)]
    return sorted(scored, key=lambda rf: (-rf[1], rf[0].index))


def top_results(results: list[Result], k: int, fitness: Fitness | None = None) -> list[Result]:
    """The best ``k`` ok results (as recorded; see :func:`ranking` for their final fitness)."""
    return [r for r, _ in ranking(results, fitness)[:k]]


def default_out(config: SearchConfig) -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    spec = config.fitness or ",".join(config.objectives)
    fitness = re.sub(r"[^\w.+-]+", "_", spec.replace(" ", ""))
    return f"runs/{config.space}-{fitness}-{config.strategy}-seed{config.seed}-{stamp}"


@dataclass
class _Prepared:
    config: SearchConfig
    fitness: Fitness
    corpus: Corpus
    store: RunStore
    confirmation: ConfirmationPlan | None = None


def prepare(config: SearchConfig) -> _Prepared:
    """Check everything a user can get wrong, before anything is written."""
    config.validate()  # ConfigError: an unknown space among the rest
    fitness = config.parsed_fitness  # ConfigError: bad spec, objective or metric
    try:
        for name in config.metrics:
            get_metric(name.strip(), config.space)
    except KeyError as exc:
        raise ConfigError(exc.args[0]) from None
    if config.strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {config.strategy!r} (known: {', '.join(STRATEGIES)})")
    try:
        resolve_device(config.device)
    except (ValueError, RuntimeError) as exc:
        raise ConfigError(str(exc)) from None
    setup = config.scoring_setup()
    needs = frozenset(n for name in setup.metrics for n in get_metric(name, config.space).needs)
    try:  # what the space cannot score: a metric deeper than the model, a cell batch
        get_space(config.space).check_setup(setup, needs)
    except ValueError as exc:
        option = "--cell-batch: " if config.cell_batch and "cell batch" in str(exc) else ""
        raise ConfigError(option + str(exc)) from None
    try:
        corpus = setup.load_corpus()
        first_batch(corpus.split(config.split), config.batch_size, config.bptt)
    except CorpusError as exc:
        raise ConfigError(str(exc)) from None
    if config.resume and config.out is None:
        raise ConfigError("--resume needs --out: the folder of the run to resume")
    store = RunStore(config.out or default_out(config), defaults=SearchConfig().identity())
    try:
        store.claim()  # held until the run ends: a second run or resume of it is refused
        if config.resume:
            store.check_resumable(config.identity())
        else:
            store.check_free(config.identity())
        plan = plan_confirmation(config, corpus) if config.confirm_top else None
    except (RunFolderError, ConfigError) as exc:
        store.release()
        raise ConfigError(str(exc)) from None
    return _Prepared(config, fitness, corpus, store, plan)


def run_search(
    config: SearchConfig,
    *,
    executor: Executor | None = None,
    on_result: Callable[[Result, Result | None], None] | None = None,
    on_start: Callable[[str, int], None] | None = None,
    on_confirmed: Callable[[dict], None] | None = None,
) -> SearchOutcome:
    """Run a whole search; results are on disk the moment they are reported.

    ``on_result(result, best_so_far)`` is called after each new result (progress display);
    ``best_so_far`` is the top ok result so far (for an ensemble fitness, a copy whose
    ``fitness`` is recomputed against the ok results so far; the record keeps its value).
    ``on_start(corpus_description, restored)`` once the corpus is loaded and, with
    ``config.resume``, the earlier results (``restored`` of them) have been replayed.
    ``on_confirmed(record)`` after each confirmation training (``config.confirm_top``).

    Resume: the strategy is rebuilt from the seed and fed the run's own history, its proposals
    (``proposals.jsonl``) and results (``results.jsonl``) in the order they happened; that
    restores its population and random state exactly, so nothing already scored is scored
    again and an interrupted run ends with the results an uninterrupted one would have
    (exactly so in-process; with several Ray workers the uninterrupted run's own order depends
    on timing, see README).
    """
    prep = prepare(config)
    try:
        return _run_prepared(prep, executor, on_result, on_start, on_confirmed)
    finally:
        try:
            if config.report and prep.store.summary_path.is_file():
                _write_report(prep)
        finally:
            prep.store.release()


def _run_prepared(
    prep: _Prepared,
    executor: Executor | None,
    on_result: Callable[[Result, Result | None], None] | None,
    on_start: Callable[[str, int], None] | None,
    on_confirmed: Callable[[dict], None] | None,
) -> SearchOutcome:
    config = prep.config
    store = prep.store
    space = get_space(config.space, config.restrict)
    strategy = make_strategy(
        config.strategy,
        space,
        config.seed,
        config.population,
        config.tournament,
        fitness=prep.fitness,
    )
    executor = executor or make_executor(
        config.executor,
        address=config.ray_address,
        workers=config.workers,
        gpus_per_worker=config.gpus_per_worker,
        eval_timeout=config.eval_timeout,
        worker_batch=config.worker_batch,
        threads=config.threads,
    )
    standings = _Standings(prep.fitness, config)
    history = _replay(store, strategy, standings) if config.resume else _History([], [], 0)
    results = history.results
    restored = len(results)
    proposals = history.proposals
    started = time.perf_counter()
    stop_reason = "budget"
    with executor:
        try:
            executor.start(config.scoring_setup(), prep.corpus)
        except ExecutorError as exc:
            raise ConfigError(str(exc)) from None
        if on_start is not None:
            on_start(prep.corpus.description, restored)
        store.open(config.identity())

        def take(done: list[tuple[Candidate, Evaluation]]) -> None:
            for candidate, evaluation in done:
                result = standings.record(len(results), candidate, evaluation)
                result = replace(result, description=_description(space, candidate))
                results.append(result)
                store.append(result)
                strategy.tell(candidate, result)
                if on_result is not None:
                    on_result(result, standings.best)

        try:
            for candidate in history.pending[: max(0, config.budget - len(results))]:
                executor.submit(candidate)
            # While these were in flight the run proposed nothing (a batch of --worker-batch N
            # is proposed whole, and the next one only once it is back): their results come
            # in before anything new is proposed, as they did, so the proposals stay the same.
            while executor.pending():
                take(executor.wait())
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
                    candidate = strategy.ask()
                    store.append_proposal(proposals, candidate.key, candidate.origin, len(results))
                    proposals += 1
                    executor.submit(candidate)
                if executor.pending() == 0:
                    stop_reason = "time budget" if out_of_time else "budget"
                    break
                take(executor.wait())
        except SpaceExhausted as exc:
            stop_reason = f"space exhausted: {exc}"
        except KeyboardInterrupt:
            stop_reason = "interrupted"
            raise
        finally:
            summary = _summary(config, prep, results, strategy.stats(), started, stop_reason)
            if standings.front is not None:
                front = pareto_front(prep.fitness, results)
                summary.update(_pareto_summary(prep.fitness, standings.front, results, front))
                _write_pareto_plot(prep.fitness, results, front, store.root / "pareto.png")
            summary["resumed_from"] = restored if config.resume else None
            summary["search_strategy"] = strategy.name  # nsga2 where objectives make it so
            # How the scores were computed, beside where: not part of a run's identity (the
            # same scores, or the same to float32 rounding), so recorded here.
            summary["execution"] = {
                **executor.describe(),
                "cuda_graphs": config.cuda_graphs,
                "cell_batch": config.cell_batch,
            }
            if config.cell_batch:
                summary["execution"].update(_cell_batch_fallbacks(results))
            store.write_summary(summary)
            store.close()
        if prep.confirmation is not None:
            top = ranking(results, prep.fitness)[: config.confirm_top]
            try:
                summary["confirmation"] = confirm(
                    prep.confirmation, top, executor, store, on_confirmed
                )
                summary["answer"] = answer(summary["confirmation"]["table"], config.answer_blend)
                summary["answer_rule"] = answer_rule(config.answer_blend)
            finally:
                summary["confirmation"] = summary.get("confirmation") or {
                    "interrupted": True,
                    "done": len(store.read_confirmed()),
                }
                store.write_summary(summary)
    return SearchOutcome(results, summary, store.root, prep.fitness)


def _description(space: SearchSpace, candidate: Candidate) -> str | None:
    """The candidate as its space shows it to a person, or None for one it cannot read (that
    result's error already says why)."""
    try:
        return space.describe(space.validate(candidate.arch))
    except Exception:  # noqa: BLE001 - a description is a courtesy, never a failure
        return None


def _write_report(prep: _Prepared) -> None:
    """report.html and report.md from the run folder, finished or interrupted; a report that
    cannot be drawn is a warning, never the run's failure (the records are already safe)."""
    config = prep.config
    describe, draw = space_hooks(prep.store.root, get_space(config.space, config.restrict))
    try:
        write_report(prep.store.root, describe=describe, draw=draw, top_k=config.top_k)
    except Exception as exc:  # noqa: BLE001 - the records stand without their report
        warnings.warn(f"report not written: {type(exc).__name__}: {exc}", stacklevel=2)


@dataclass
class _History:
    results: list[Result]
    pending: list[Candidate]  # proposed and journaled, never reported: submitted first
    proposals: int


def _replay(store: RunStore, strategy: Strategy, standings: _Standings) -> _History:
    """Feed a run's recorded proposals and results back through a fresh strategy, in the
    order they happened; check that it proposes what the run proposed."""
    try:
        results = store.read_results()
        proposals = store.read_proposals()
    except RunFolderError as exc:
        raise ConfigError(f"--resume: {exc}") from None
    asked: dict[str, Candidate] = {}
    told = 0

    def tell_through(count: int) -> None:
        nonlocal told
        while told < count:
            result = results[told]
            candidate = asked.get(result.arch_id)
            if candidate is None:
                raise ConfigError(
                    f"--resume: result {result.index} ({result.arch_id}) has no recorded "
                    "proposal; the run folder is inconsistent"
                )
            strategy.tell(candidate, result)
            standings.restore(result)
            told += 1

    for number, proposal in enumerate(proposals):
        tell_through(min(proposal["after"], len(results)))
        candidate = strategy.ask()
        if candidate.key != proposal["key"]:
            raise ConfigError(
                f"--resume: the strategy's proposal {number} is {candidate.key}, the run "
                f"recorded {proposal['key']}; the code or settings changed since the run began"
            )
        asked[candidate.key] = candidate
    tell_through(len(results))
    reported = {r.arch_id for r in results}
    pending = [c for key, c in asked.items() if key not in reported]
    return _History(results, pending, len(proposals))


class _Standings:
    """Turns evaluations into records and keeps the ok results so far, with the best one.

    The recorded fitness is the fitness when the result was evaluated: for one metric the
    value with its direction applied; for an ensemble, against the ok results evaluated so far,
    this one included. An ok evaluation missing a fitness component becomes a failed result.
    """

    def __init__(self, fitness: Fitness, config: SearchConfig | None = None) -> None:
        self.fitness = fitness
        config = config or SearchConfig()
        self.guard = config.stability_guard
        self.threshold = config.stability_threshold
        self.max_params = config.max_params
        self.front = (
            FrontTracker.create(fitness, config.population, config.reference_point)
            if fitness.multi_objective
            else None
        )
        self.ok: list[Result] = []
        self.rows: list[tuple[float, ...]] = []
        self.best: Result | None = None

    def record(self, index: int, candidate: Candidate, evaluation: Evaluation) -> Result:
        status, error, value = evaluation.status, evaluation.error, None
        details = dict(evaluation.details)
        values = self.fitness.values(evaluation.metrics) if status == "ok" else None
        if status == "ok" and values is None:
            missing = ", ".join(self.fitness.missing(evaluation.metrics))
            reasons = evaluation.metric_errors
            why = "; ".join(
                reasons[m] for m in self.fitness.missing(evaluation.metrics) if m in reasons
            )
            status, error = "failed", f"fitness component missing or not finite: {missing}"
            error += f" ({why})" if why else ""
        if status == "ok" and self.max_params is not None:
            params = evaluation.metrics.get("params")
            if params is not None and params > self.max_params:
                status, values = "failed", None
                error = f"constraint: {int(params)} parameters > --max-params {self.max_params}"
        if status == "ok" and self.guard and STABILITY in details:
            details[FLAGGED] = details[STABILITY] > self.threshold
        flagged = bool(details.get(FLAGGED))
        scores: list[float] = []
        if values is not None and flagged:  # against the ranked results, itself included
            value = self.fitness.rank([*self.rows, values])[-1]
        elif values is not None:
            self.rows.append(values)
            if self.fitness.is_ensemble:
                scores = self.fitness.rank(self.rows)
                value = scores[-1]
            else:
                value = values[0]
        result = Result(
            index=index,
            arch_id=candidate.key,
            arch=dict(candidate.arch),
            origin=candidate.origin,
            status=status,
            fitness=value,
            metrics=dict(evaluation.metrics),
            details=details,
            error=error,
            seconds=round(evaluation.seconds, 6),
        )
        if values is not None and not flagged:
            self.ok.append(result)
            self._update_best(scores)
        if self.front is not None:
            volume = self.front.add(result)
            result = replace(result, details={**result.details, HYPERVOLUME: volume})
        return result

    def restore(self, result: Result) -> None:
        """Take back a recorded result (resume) without changing it."""
        if self.front is not None:
            self.front.add(result)
        values = self.fitness.values(result.metrics) if result.ranked else None
        if values is None:
            return
        self.rows.append(values)
        self.ok.append(result)
        self._update_best(self.fitness.rank(self.rows) if self.fitness.is_ensemble else [])

    def _update_best(self, scores: list[float]) -> None:
        if scores:  # ensemble: the best against the ok results so far
            i = max(range(len(scores)), key=lambda j: (scores[j], -j))
            self.best = replace(self.ok[i], fitness=scores[i])
        elif self.best is None or self.ok[-1].fitness > self.best.fitness:
            self.best = self.ok[-1]


def _cell_batch_fallbacks(results: list[Result]) -> dict:
    """How many results were scored alone because their cell batch raised, and the first
    reason (the scores are the same; the time is not)."""
    reasons = [r.details[CELL_BATCH_FALLBACK] for r in results if CELL_BATCH_FALLBACK in r.details]
    return {
        "cell_batch_fallbacks": len(reasons),
        "cell_batch_failure": reasons[0] if reasons else None,
    }


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
    flagged = [r for r in results if r.flagged]
    top = ranking(results, prep.fitness)
    component_percentiles = _component_percentiles(prep.fitness, [r for r, _ in top])
    return {
        "config": {**config.identity(), "out": str(prep.store.root), "top_k": config.top_k},
        "corpus": prep.corpus.description,
        "stopped_by": stop_reason,
        "evaluated": len(results),
        "ok": len(results) - len(failed),
        "failed": len(failed),
        "failure_reasons": sorted({r.error for r in failed if r.error})[:20],
        "stability_guard": {
            "on": config.stability_guard,
            "threshold": config.stability_threshold,
            "measure": STABILITY,
            "flagged": len(flagged),
        },
        "total_seconds": round(total, 3),
        "seconds_per_arch_wall": round(total / len(results), 4) if results else None,
        "seconds_per_arch_scoring_median": round(statistics.median(seconds), 4)
        if seconds
        else None,
        "seconds_per_arch_scoring_mean": round(statistics.fmean(seconds), 4) if seconds else None,
        "fitness_spec": prep.fitness.name,
        "fitness_rule": prep.fitness.rule,
        "fitness_components": prep.fitness.describe(),
        "top": [
            {
                "rank": i + 1,
                "arch_id": r.arch_id,
                "fitness": final,
                "recorded_fitness": r.fitness,
                **(
                    {"component_percentiles": component_percentiles[r.index]}
                    if prep.fitness.is_ensemble
                    else {}
                ),
                "metrics": r.metrics,
                "origin": r.origin,
                "index": r.index,
                "recipe": r.arch,
            }
            for i, (r, final) in enumerate(top[: config.top_k])
        ],
        "strategy": strategy_stats,
        "known_metrics": metric_names(config.space),
    }


def _pareto_summary(
    fitness: Fitness, tracker: FrontTracker, results: list[Result], front: list[Result]
) -> dict:
    """The Pareto front of the whole run (``front``: its ranked results) and its hypervolume."""
    labels = [c.label for c in fitness.components]
    series = tracker.series(results)
    return {
        "objectives": labels,
        "pareto_front": [
            {
                "arch_id": r.arch_id,
                "objectives": {c.metric.name: r.metrics[c.metric.name] for c in fitness.components},
            }
            for r in front
        ],
        "hypervolume": {
            "final": series[-1] if series else None,
            "reference_point": tracker.reference_in_units(),
            "reference_rule": "given (--reference-point)"
            if tracker.user_reference
            else "per objective, the upper quartile of the first --population ranked results' "
            "direction-applied values (nas_engine.pareto)",
            "series": series,
        },
    }


def _write_pareto_plot(
    fitness: Fitness, results: list[Result], front: list[Result], path: Path
) -> None:
    """pareto.png: every ranked result in the first two objectives, the front highlighted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a, b = fitness.components[:2]
    ranked = [r for r in results if r.ranked and fitness.values(r.metrics) is not None]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter(
        [r.metrics[a.metric.name] for r in ranked],
        [r.metrics[b.metric.name] for r in ranked],
        s=8,
        color="0.7",
        label=f"ranked results ({len(ranked)})",
    )
    shown = sorted(front, key=lambda r: r.metrics[a.metric.name])
    ax.plot(
        [r.metrics[a.metric.name] for r in shown],
        [r.metrics[b.metric.name] for r in shown],
        "o-" if len(fitness.components) == 2 else "o",
        color="C3",
        ms=4,
        label=f"Pareto front ({len(front)})",
    )
    for values, set_scale in (
        ([r.metrics[a.metric.name] for r in ranked], ax.set_xscale),
        ([r.metrics[b.metric.name] for r in ranked], ax.set_yscale),
    ):
        magnitudes = [abs(v) for v in values]
        if magnitudes and max(magnitudes) > 100 * max(min(magnitudes), 1.0):
            set_scale("symlog")  # a long tail (hidden_cov's) would squash the front to a line
    ax.set_xlabel(f"{a.label} ({'higher' if a.sign > 0 else 'lower'} is better)")
    ax.set_ylabel(f"{b.label} ({'higher' if b.sign > 0 else 'lower'} is better)")
    if len(fitness.components) > 2:
        ax.set_title("first two objectives; the front is over all of them")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _component_percentiles(fitness: Fitness, ok: list[Result]) -> dict[int, dict[str, float]]:
    """Ensemble: each ok result's percentile per component against the final population."""
    if not fitness.is_ensemble:
        return {}
    rows = [fitness.values(r.metrics) for r in ok]
    table = fitness.percentiles(rows)
    return {
        r.index: dict(zip(fitness.metric_names, p, strict=True))
        for r, p in zip(ok, table, strict=True)
    }
