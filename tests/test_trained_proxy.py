"""The trained-proxy fitness: trained_loss through the probe, the scorer, search and Ray."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from helpers import PTB_DIR, require

import nas_engine
from nas_engine.config import ConfigError
from nas_engine.corpus import load_corpus
from nas_engine.metrics import MetricFailure, get_metric, metric_names
from nas_engine.result import Candidate
from nas_engine.scoring import Scorer, ScoringSetup
from search_spaces.rnn import ModelSizes, preset
from search_spaces.rnn.probe import RNNProbe
from search_spaces.rnn.training import (
    ProxyTraining,
    TrainingRecipe,
    build_model,
    prepare_data,
    train_architecture,
)

TINY = {"embedding_size": 16, "hidden_size": 16, "layers": 2, "batch_size": 4, "bptt": 10}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matrices: one thread is faster, and immune to other processes' load."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def corpus_dir(tmp_path):
    """A small text corpus folder (train, valid, test): quick to train and evaluate on."""
    root = tmp_path / "corpus"
    root.mkdir()
    sentences = ["the cat sat on the mat", "a dog ran to the cat", "the mat is red"]
    for split in ("train", "valid", "test"):
        (root / f"{split}.txt").write_text("\n".join(sentences * 30) + "\n", encoding="utf-8")
    return root


def proxy_recipe(steps: int) -> TrainingRecipe:
    """What the search's proxy should train with for TINY sizes, written out independently."""
    return TrainingRecipe(steps=steps, batch_size=4, bptt=10, seed=0, test_split=None)


def test_search_scores_by_validation_loss_after_training(corpus_dir, tmp_path):
    results = nas_engine.search(
        fitness="trained_loss",
        budget=3,
        strategy="random",
        corpus=str(corpus_dir),
        proxy_steps=12,
        out=str(tmp_path / "run"),
        **TINY,
    )
    assert [r.status for r in results] == ["ok"] * 3
    sizes = ModelSizes(embedding_size=16, hidden_size=16, num_layers=2)
    for r in results:
        alone = train_architecture(r.arch, sizes, str(corpus_dir), proxy_recipe(12))
        assert alone.ok and alone.test_loss is None
        assert r.metrics["trained_loss"] == pytest.approx(alone.valid_loss, rel=1e-6)
        assert r.fitness == -r.metrics["trained_loss"]
        assert r.details["trained_loss_steps"] == 12
        # The cost is recorded: the result's seconds include the training.
        assert r.seconds >= r.details["trained_loss_seconds"] > 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["config"]["proxy_steps"] == 12


def test_evolution_with_the_proxy_and_another_metric(corpus_dir, tmp_path):
    results = nas_engine.search(
        fitness="trained_loss",
        metrics=("hidden_cov",),
        budget=4,
        population=2,
        tournament=2,
        corpus=str(corpus_dir),
        proxy_epochs=0.4,
        out=str(tmp_path / "run"),
        **TINY,
    )
    assert all(r.ok for r in results) and len(results) == 4
    assert any(r.origin.startswith("mutate") for r in results)
    # 30 x (7 + 7 + 5) = 570 tokens with <eos>: 142 rows of 4, 141 target steps, 15 windows
    # of 10 an epoch; 0.4 epoch is 6 steps.
    assert all(r.details["trained_loss_steps"] == 6 for r in results)
    assert all("hidden_cov" in r.metrics for r in results)


def test_the_proxy_starts_from_the_probes_weights():
    recipe, sizes = preset("gru"), ModelSizes(vocab_size=30, embedding_size=8, hidden_size=8)
    probe = RNNProbe(recipe, sizes, torch.zeros(5, 2, dtype=torch.long), seed=7)
    built = build_model(recipe, sizes, 7).state_dict()
    assert built.keys() == probe.model.state_dict().keys()
    for name, tensor in probe.model.state_dict().items():
        assert torch.equal(tensor, built[name]), name


def test_a_diverging_proxy_fails_the_metric(corpus_dir):
    corpus = load_corpus(corpus_dir, "valid")
    recipe = replace(proxy_recipe(10), lr=1e30)
    training = ProxyTraining(prepare_data(corpus, recipe), recipe)
    sizes = ModelSizes(vocab_size=len(corpus.vocab), embedding_size=8, hidden_size=8)
    probe = RNNProbe(
        preset("lstm"), sizes, torch.zeros(5, 2, dtype=torch.long), 0, training=training
    )
    with pytest.raises(MetricFailure, match="diverged"):
        get_metric("trained_loss").fn(probe)
    bare = RNNProbe(preset("lstm"), sizes, torch.zeros(5, 2, dtype=torch.long), 0)
    with pytest.raises(MetricFailure, match="no proxy training"):
        get_metric("trained_loss").fn(bare)


def test_a_train_split_too_short_fails_each_result_with_the_reason(tmp_path):
    root = tmp_path / "short"
    root.mkdir()
    (root / "train.txt").write_text("a b\n")
    for split in ("valid", "test"):
        (root / f"{split}.txt").write_text("a b c d e f g h i j\n" * 40)
    setup = ScoringSetup(
        metrics=("trained_loss",), corpus=str(root), proxy_steps=2, **_setup_sizes()
    )
    evaluation = Scorer(setup).score(Candidate("k", preset("rnn").to_dict()))
    assert evaluation.status == "failed"
    assert "no proxy training" in evaluation.error and "too few" in evaluation.error


def _setup_sizes() -> dict:
    return {
        "embedding_size": 16,
        "hidden_size": 16,
        "num_layers": 2,
        "batch_size": 4,
        "bptt": 10,
    }


@pytest.mark.parametrize(
    "options, message",
    [
        ({"fitness": "hidden_cov", "proxy_steps": 5}, "neither --fitness nor --metrics"),
        ({"fitness": "trained_loss", "proxy_steps": 5, "proxy_epochs": 1.0}, "not both"),
        ({"fitness": "trained_loss", "proxy_steps": 0}, "proxy-steps must be"),
        ({"fitness": "trained_loss", "proxy_train_split": "test"}, "must be train or valid"),
    ],
)
def test_bad_proxy_settings_are_config_errors(options, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        nas_engine.search(budget=1, out=str(tmp_path / "run"), **options)
    assert not (tmp_path / "run").exists()


def test_a_corpus_without_train_split_names_the_fallback(tmp_path):
    ptb = require(PTB_DIR)
    with pytest.raises(ConfigError, match="--proxy-train-split valid"):
        nas_engine.search(fitness="trained_loss", corpus=str(ptb), out=str(tmp_path / "a"))
    single = tmp_path / "one.txt"
    single.write_text("a b c\n" * 50)
    with pytest.raises(ConfigError, match="single file"):
        nas_engine.search(fitness="trained_loss", corpus=str(single), out=str(tmp_path / "b"))


def test_ptb_proxy_trains_on_the_head_of_valid(tmp_path):
    ptb = require(PTB_DIR)
    results = nas_engine.search(
        fitness="trained_loss",
        budget=1,
        strategy="random",
        corpus=str(ptb),
        proxy_train_split="valid",
        proxy_steps=3,
        out=str(tmp_path / "run"),
        **TINY,
    )
    assert results[0].ok, results[0].error
    recipe = replace(proxy_recipe(3), train_split="valid")
    sizes = ModelSizes(embedding_size=16, hidden_size=16, num_layers=2)
    alone = train_architecture(results[0].arch, sizes, str(ptb), recipe)
    assert "validated on its last" in alone.notes[0]
    assert results[0].metrics["trained_loss"] == pytest.approx(alone.valid_loss, rel=1e-6)


def test_ray_workers_give_the_in_process_proxy(corpus_dir, tmp_path):
    ray = pytest.importorskip("ray")
    common = {
        "fitness": "trained_loss",
        "budget": 2,
        "strategy": "random",
        "corpus": str(corpus_dir),
        "proxy_steps": 5,
        **TINY,
    }
    local = nas_engine.search(out=str(tmp_path / "local"), **common)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        remote = nas_engine.search(out=str(tmp_path / "ray"), executor="ray", workers=2, **common)
    finally:
        ray.shutdown()
    by_id = {r.arch_id: r for r in remote}
    assert by_id.keys() == {r.arch_id for r in local}
    for r in local:
        assert by_id[r.arch_id].ok
        got = by_id[r.arch_id].metrics["trained_loss"]
        assert got == pytest.approx(r.metrics["trained_loss"], rel=1e-5)


def test_the_proxy_is_registered_apart_from_the_training_free_metrics():
    metric = get_metric("trained_loss", "rnn")
    assert metric.direction == "lower" and metric.sign == -1.0 and metric.trained
    assert "trained_loss" in metric_names("rnn", trained=True)
    # "all metrics" (benchmarks, reports) means the training-free ones: no hidden training.
    assert "trained_loss" not in metric_names("rnn")
    assert not get_metric("hidden_cov").trained
