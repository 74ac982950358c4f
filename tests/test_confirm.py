"""Confirmation training after a search: records, summary table, resume, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import PTB_DIR, require
from scipy.stats import kendalltau

import nas_engine
from nas_engine import ConfigError
from nas_engine.config import SearchConfig
from nas_engine.engine import run_search

TINY = dict(
    hidden_size=16,
    embedding_size=16,
    batch_size=8,
    bptt=10,
    population=4,
    tournament=2,
    report=False,
)


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> str:
    """A few thousand words of a 200-word language: quick to train on and to evaluate."""
    import numpy as np

    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("corpus")
    for split, lines in (("train", 300), ("valid", 60), ("test", 60)):
        text = "\n".join(
            " ".join(f"w{int(w)}" for w in rng.zipf(1.5, size=12) % 200) for _ in range(lines)
        )
        (root / f"{split}.txt").write_text(text + "\n")
    return str(root)


@pytest.fixture(scope="module")
def confirmed_run(tmp_path_factory, small_corpus: str) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("confirm") / "run"
    outcome = run_search(confirmed_config(out, small_corpus))
    return out, outcome.summary


def confirmed_config(out: Path, corpus: str, resume: bool = False) -> SearchConfig:
    return SearchConfig(
        budget=6,
        seed=4,
        out=str(out),
        corpus=corpus,
        confirm_top=3,
        confirm_steps=4,
        resume=resume,
        **TINY,
    )


def test_the_top_k_are_trained_in_rank_order(confirmed_run) -> None:
    out, summary = confirmed_run
    records = [json.loads(line) for line in (out / "confirmed.jsonl").read_text().splitlines()]
    assert [r["arch_id"] for r in sorted(records, key=lambda r: r["rank"])] == [
        t["arch_id"] for t in summary["top"][:3]
    ]
    for record in records:
        assert record["status"] == "ok", record["error"]
        assert record["training"]["steps"] == 4
        assert record["training"]["recipe"]["seed"] == 4
        # Next-token cross-entropies over a vocabulary of at most 200 words, barely trained:
        # near log(vocabulary size), far from 0.
        assert 2.0 < record["valid_loss"] < 6.0
        assert record["test_ppl"] == pytest.approx(2.718281828 ** record["test_loss"], rel=1e-6)
    table = summary["confirmation"]["table"]
    assert [row["rank"] for row in table] == [1, 2, 3]
    fitness = [row["fitness"] for row in table]
    losses = [row["test_loss"] for row in table]
    expected = kendalltau(fitness, losses).statistic
    assert summary["confirmation"]["kendall_tau_fitness_vs_loss"] == pytest.approx(
        expected, abs=1e-4
    )
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["confirmation"]["table"] == table


def test_the_answer_is_the_best_blend_of_loss_rank_and_fitness_rank(confirmed_run) -> None:
    out, summary = confirmed_run
    table = summary["confirmation"]["table"]
    chosen = summary["answer"]
    assert set(chosen) == {"arch_id", "confirmed_loss", "fitness_rank", "blend"}
    # The rule by hand, with the default weight 0.25: 3 rows, mid-ranks 1..3, larger better.
    by_loss = {row["arch_id"]: 1 + sum(o["test_loss"] > row["test_loss"] for o in table)
               for row in table}  # fmt: skip
    blends = {row["arch_id"]: by_loss[row["arch_id"]] + 0.25 * (4 - row["rank"]) for row in table}
    best = max(table, key=lambda row: (blends[row["arch_id"]], -row["rank"]))
    assert chosen["arch_id"] == best["arch_id"]
    assert chosen["fitness_rank"] == best["rank"]
    assert chosen["confirmed_loss"] == best["test_loss"]
    assert chosen["blend"] == pytest.approx(blends[best["arch_id"]])
    assert "0.25" in summary["answer_rule"]
    assert json.loads((out / "summary.json").read_text())["answer"] == chosen


def test_a_resumed_run_does_not_train_again(confirmed_run, small_corpus: str) -> None:
    out, summary = confirmed_run
    before = (out / "confirmed.jsonl").read_text()
    again = run_search(confirmed_config(out, small_corpus, resume=True))
    assert (out / "confirmed.jsonl").read_text() == before
    assert again.summary["confirmation"]["table"] == summary["confirmation"]["table"]


def test_a_corpus_without_train_split_trains_on_valid_and_says_so(tmp_path: Path) -> None:
    corpus = require(PTB_DIR)
    outcome = run_search(
        SearchConfig(
            budget=2,
            strategy="random",
            out=str(tmp_path / "run"),
            corpus=str(corpus),
            confirm_top=1,
            confirm_steps=2,
            **TINY,
        )
    )
    confirmation = outcome.summary["confirmation"]
    assert any("valid" in note for note in confirmation["notes"])
    assert confirmation["table"][0]["status"] == "ok"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(confirm_top=1, confirm_corpus="/nonexistent/corpus"), "--confirm-corpus"),
        (dict(confirm_top=1, confirm_steps=3, confirm_epochs=1.0), "not both"),
        (dict(confirm_top=-1), "confirm-top"),
    ],
)
def test_bad_confirmation_settings_are_refused_before_anything_is_written(
    tmp_path: Path, options: dict, message: str
) -> None:
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=message):
        nas_engine.search(budget=2, out=str(out), **options, **TINY)
    assert not out.exists()


def test_confirmation_trains_from_the_benchmark_initialisation(small_corpus: str) -> None:
    """--init-gain is how a metric reads a cell; the cells it picks are then trained as the
    benchmark trains them, so that the confirmed perplexities compare across fitnesses."""
    from nas_engine.confirm import plan_confirmation

    config = SearchConfig(
        corpus=small_corpus, confirm_top=1, confirm_steps=2, init_gain=1.5, **TINY
    )
    plan = plan_confirmation(config, config.scoring_setup().load_corpus())
    assert config.scoring_setup().init_gain == 1.5
    assert plan.sizes.init_gain == 1.0
