"""Confirmation training: after a search, train its K best architectures and see whether the
training-free ranking holds.

Each architecture is one job on the search's executor (one per worker: a CPU worker or a GPU
share), trained with the benchmark's recipe shortened to ``--confirm-steps`` or
``--confirm-epochs`` (one epoch when neither is given) on the corpus's train split; a corpus
without one (the shared PTB copy has only valid and test) trains on the first 90% of its valid
split and validates on the rest, and the record says so. Each finished job is appended to
``OUT/confirmed.jsonl`` at once, so an interrupted confirmation resumes without retraining what
is done.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scipy.stats import kendalltau, rankdata

from .config import SIZE_SETTINGS, SearchConfig
from .corpus import Corpus, CorpusError, load_corpus
from .errors import ConfigError, TrainingConfigError
from .executors import Executor, JobFailure
from .result import Result
from .spaces import Trainer, get_space
from .storage import RunStore


@dataclass(frozen=True)
class ConfirmationPlan:
    trainer: Trainer
    recipe: Any  # the space's training recipe
    data: Any  # its training data
    sizes: Any  # its model sizes


def plan_confirmation(config: SearchConfig, search_corpus: Corpus) -> ConfirmationPlan:
    """Check the confirmation settings and load its data (before the search starts, so a bad
    corpus is reported before any scoring is spent)."""
    trainer = get_space(config.space).trainer
    if trainer is None:
        raise ConfigError(
            f"--confirm-top trains the best architectures; the {config.space} space has no trainer"
        )
    corpus = search_corpus
    if config.confirm_corpus is not None:
        try:
            corpus = load_corpus(config.confirm_corpus, "valid")
        except CorpusError as exc:
            raise ConfigError(f"--confirm-corpus: {exc}") from None
    train_split = "train" if "train" in corpus.splits else "valid"
    try:
        recipe = trainer.recipe(
            steps=config.confirm_steps,
            epochs=config.confirm_epochs,
            seed=config.seed,
            device=config.device,
            train_split=train_split,
        )
        data = trainer.prepare_data(corpus, recipe)
    except TrainingConfigError as exc:
        raise ConfigError(f"confirmation training: {exc}") from None
    sizes = trainer.sizes(data, {name: getattr(config, name) for name in SIZE_SETTINGS})
    return ConfirmationPlan(trainer, recipe, data, sizes)


def confirm(
    plan: ConfirmationPlan,
    top: list[tuple[Result, float]],
    executor: Executor,
    store: RunStore,
    on_done: Callable[[dict], None] | None = None,
) -> dict:
    """Train each ranked ``(result, final fitness)`` of ``top``; return the summary section.

    Architectures already in ``confirmed.jsonl`` with the same recipe are not trained again."""
    recipe = plan.recipe.to_dict()
    done = {
        r["arch_id"]: r
        for r in store.read_confirmed()
        if r.get("training", {}).get("recipe") == recipe
    }
    todo = [(rank, r, f) for rank, (r, f) in enumerate(top, start=1) if r.arch_id not in done]
    jobs = [(dict(r.arch), plan.sizes, plan.data, plan.recipe) for _, r, _ in todo]
    for i, outcome in executor.run_jobs(plan.trainer.train, jobs):
        rank, result, fitness = todo[i]
        record = _record(rank, result, fitness, outcome)
        store.append_confirmed(record)
        done[result.arch_id] = record
        if on_done is not None:
            on_done(record)
    rows = [done[r.arch_id] | {"rank": rank} for rank, (r, _) in enumerate(top, start=1)]
    return {
        "recipe": recipe,
        "corpus": plan.data.description,
        "notes": list(plan.data.notes),
        "table": [
            {
                key: row[key]
                for key in (
                    "rank",
                    "arch_id",
                    "fitness",
                    "status",
                    "valid_loss",
                    "test_loss",
                    "test_ppl",
                    "train_seconds",
                    "error",
                )
            }
            for row in rows
        ],
        "kendall_tau_fitness_vs_loss": _tau(rows),
    }


def answer(table: list[dict], fitness_weight: float) -> dict | None:
    """The run's answer among the confirmed rows (``rank``: 1 = best fitness), by the rule the
    regret simulation selected (experiments/regret_simulation.py, ``TwoStageBlend``): the
    largest ``blend = loss_rank + fitness_weight * fitness_rank``, each a mid-rank among the
    confirmed rows with the larger rank the better (the lowest confirmed loss, the best
    fitness); a training that failed or has no finite loss ranks below every finite loss;
    ties go to the better fitness. None when no confirmed training reached a finite loss
    (nothing was confirmed, or every one failed): no architecture is then worth trusting."""
    rows = sorted(table, key=lambda row: row["rank"])
    losses = [_confirmed_loss(row) for row in rows]
    if all(loss is None for loss in losses):
        return None
    by_loss = rankdata([-(loss if loss is not None else math.inf) for loss in losses])
    by_fitness = rankdata([-row["rank"] for row in rows])
    blend = [float(a + fitness_weight * b) for a, b in zip(by_loss, by_fitness, strict=True)]
    best = max(range(len(rows)), key=lambda i: (blend[i], -rows[i]["rank"]))
    return {
        "arch_id": rows[best]["arch_id"],
        "confirmed_loss": losses[best],
        "fitness_rank": rows[best]["rank"],
        "blend": blend[best],
    }


def answer_rule(fitness_weight: float) -> str:
    """The answer's rule in words (summary.json's ``answer_rule``)."""
    return (
        f"the confirmed architecture with the largest blend = loss score + {fitness_weight:g} x "
        "fitness score, each its mid-rank among the K confirmed counted from the worst (1) to "
        "the best (K): the lowest confirmed loss and the best fitness score K (so the answer's "
        "fitness_rank r, 1 = best, scores K + 1 - r); a failed training scores below every "
        "finite loss; ties go to the better fitness. The regret simulation's two-stage blend"
    )


def _confirmed_loss(row: dict) -> float | None:
    """The confirmed loss of a row (test loss, else validation loss), None if not finite."""
    if row.get("status") != "ok":
        return None
    loss = row["test_loss"] if row["test_loss"] is not None else row["valid_loss"]
    return loss if loss is not None and math.isfinite(loss) else None


def _record(rank: int, result: Result, fitness: float, outcome: Any) -> dict:
    if isinstance(outcome, JobFailure):
        status, error, training = "failed", f"training job failed: {outcome.reason}", {}
    else:
        status, error, training = outcome.status, outcome.error, outcome.to_dict()
    return {
        "rank": rank,
        "arch_id": result.arch_id,
        "fitness": fitness,
        "status": status,
        "error": error,
        "valid_loss": training.get("valid_loss"),
        "test_loss": training.get("test_loss"),
        "test_ppl": training.get("test_ppl"),
        "valid_ppl": training.get("valid_ppl"),
        "train_seconds": training.get("train_seconds"),
        "arch": dict(result.arch),
        "training": training,
    }


def _tau(rows: list[dict]) -> float | None:
    """Kendall tau between fitness and confirmed loss (test loss, else valid): negative when a
    higher fitness goes with a lower loss, as it should."""
    pairs = [
        (row["fitness"], row["test_loss"] if row["test_loss"] is not None else row["valid_loss"])
        for row in rows
        if row["status"] == "ok"
    ]
    pairs = [(f, loss) for f, loss in pairs if loss is not None and math.isfinite(loss)]
    if len(pairs) < 2:
        return None
    tau = kendalltau([f for f, _ in pairs], [loss for _, loss in pairs]).statistic
    return None if not math.isfinite(tau) else round(float(tau), 4)
