"""Confirmation training of the BERT space: masked-LM pre-training, resume, bad input."""

from __future__ import annotations

import math
import pickle
from dataclasses import replace

import pytest
import torch

from nas_engine.corpus import Corpus, embedded_corpus
from search_spaces.bert.config import BertConfig, LayerConfig
from search_spaces.bert.networks import FAMILY_SIZES, VOCAB_SIZE
from search_spaces.bert.training import (
    BERT_TRAINER,
    MASK_TOKEN,
    BertTrainingRecipe,
    TrainingConfigError,
    build_model,
    evaluate,
    family_ids,
    learning_rate,
    load_checkpoint,
    mask_tokens,
    prepare_data,
    train_network,
    training_sizes,
)

# A tiny encoder (validation accepts any well-formed configuration at any size): attention
# and a Fourier layer, width 32.
TINY_CONFIG = BertConfig(
    32, (LayerConfig("SA", "SDP", 2, 64, 1), LayerConfig("LT", "DFT", 2, 64, 1))
)
TINY = BertTrainingRecipe(steps=40, lr=1e-2, batch_size=8, bptt=32, eval_batch_size=64)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matrices: one thread is faster, and immune to other processes' load."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    """The embedded synthetic corpus, generated shorter (its splits' tokens, same law)."""
    return embedded_corpus(tokens_per_split=(20_000, 3_000, 3_000))


def test_loss_falls_from_the_untrained_network_and_the_checkpoint_reloads(corpus, tmp_path):
    data = prepare_data(corpus, TINY)
    untrained = build_model(TINY_CONFIG, TINY.family, TINY.seed)
    before = evaluate(untrained, data.valid, TINY, "valid")
    assert before == pytest.approx(math.log(VOCAB_SIZE), abs=0.1)  # uniform over 30522 rows
    saved = tmp_path / "checkpoint.pt"
    out = train_network(TINY_CONFIG.to_dict(), FAMILY_SIZES, data, TINY, checkpoint=saved)
    print(f"valid loss before {before:.4f}, after {out.valid_loss:.4f} ({out.steps} steps)")
    assert out.ok, out.error
    assert out.steps == 40 and out.tokens == 40 * 8 * 32
    assert out.valid_loss < before - 2.0
    assert math.isfinite(out.test_loss) and out.test_ppl == pytest.approx(math.exp(out.test_loss))
    loaded = load_checkpoint(saved)
    assert evaluate(loaded.model, data.valid, TINY, "valid") == pytest.approx(
        out.valid_loss, rel=1e-6
    )
    assert loaded.outcome["valid_loss"] == out.valid_loss and loaded.family == "literal"


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(corpus, tmp_path):
    recipe = replace(TINY, steps=12, warmup=0.25)
    data = prepare_data(corpus, recipe)
    full = train_network(TINY_CONFIG, None, data, recipe)
    saved = tmp_path / "progress.pt"

    def crash_at_7(step: int, total: int, loss: float) -> None:
        if step == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_network(
            TINY_CONFIG, None, data, recipe, progress=crash_at_7, progress_file=saved, save_every=5
        )
    assert saved.exists()  # written after step 5
    with pytest.raises(TrainingConfigError, match="another recipe"):
        train_network(
            TINY_CONFIG, None, data, replace(recipe, lr=0.5), progress_file=saved, resume=True
        )
    steps_run: list[int] = []
    resumed = train_network(
        TINY_CONFIG,
        None,
        data,
        recipe,
        progress=lambda step, total, loss: steps_run.append(step),
        progress_file=saved,
        save_every=5,
        resume=True,
    )
    assert steps_run == list(range(6, 13))
    same = ("status", "train_loss", "valid_loss", "test_loss", "steps", "tokens")
    assert [getattr(resumed, k) for k in same] == [getattr(full, k) for k in same]
    assert not saved.exists()  # the run is over: nothing left to resume


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"steps": 10, "epochs": 1.0}, "steps or epochs"),
        ({"steps": 0}, "steps must be"),
        ({"lr": float("nan")}, "lr must be"),
        ({"bptt": 600}, r"bptt \(the sequence length\) must be in \[2, 512\]"),
        ({"batch_size": 2.5}, "batch_size must be"),
        ({"mask_probability": 1.5}, "mask_probability must be"),
        ({"family": "electra"}, "unknown network family 'electra'"),
        ({"train_split": "test"}, "no held-out test text"),
        ({"warmup": 1.0}, "warmup must be"),
    ],
)
def test_a_bad_recipe_is_a_one_line_training_config_error(settings, message):
    with pytest.raises(TrainingConfigError, match=message) as caught:
        BertTrainingRecipe(**settings)
    assert "\n" not in str(caught.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_an_absent_device_is_a_training_config_error(corpus):
    with pytest.raises(TrainingConfigError, match="no CUDA device"):
        train_network(TINY_CONFIG, None, corpus, replace(TINY, device="cuda"))


def test_bad_input_beyond_the_recipe_is_one_line(corpus):
    with pytest.raises(TrainingConfigError, match="unknown training setting"):
        BertTrainingRecipe.from_dict({"steps": 3, "dropout": 0.1})
    with pytest.raises(TrainingConfigError, match="takes no model sizes \\(hidden_size\\)"):
        training_sizes(None, {"hidden_size": 64, "layers": None})
    with pytest.raises(
        TrainingConfigError, match="configuration: encoder layer 0: hidden size 32 is not divisible"
    ):
        bad = TINY_CONFIG.to_dict()
        bad["encoder_layers"][0]["num_operation_heads"] = 3
        train_network(bad, None, corpus, TINY)
    without_train = Corpus(
        "ptb-like", corpus.vocab, {k: corpus.splits[k] for k in ("valid", "test")}
    )
    with pytest.raises(TrainingConfigError, match="--train-split valid"):
        prepare_data(without_train, TINY)
    held_out = prepare_data(without_train, replace(TINY, train_split="valid", batch_size=4))
    assert held_out.train.numel() == 2700 and held_out.valid.numel() == 300
    assert "no separate train split" in held_out.notes[0]
    with pytest.raises(TrainingConfigError, match="too few for 8 sequence"):
        prepare_data(without_train, replace(TINY, train_split="valid", bptt=512))


def test_a_non_finite_loss_is_a_failed_outcome_with_the_reason(corpus):
    out = train_network(TINY_CONFIG, None, corpus, replace(TINY, steps=10, lr=1e4))
    assert not out.ok and out.valid_loss is None
    assert out.error.startswith("training diverged: the loss is nan at step")


def test_token_ids_fold_deterministically_and_masks_follow_the_benchmark():
    ids = torch.tensor([0, 1, 30519, 30520, 30521, 70000])
    assert family_ids(ids).tolist() == [1, 2, 30520, 1, 2, 1 + 70000 % 30520]
    assert family_ids(ids).max() < MASK_TOKEN
    tokens = family_ids(torch.arange(4000)).view(125, 32)
    inputs, positions, targets = mask_tokens(tokens, 0.15, torch.Generator().manual_seed(1))
    assert positions.shape == (125, 5)  # round(0.15 * 32) per sequence
    assert torch.equal(targets, tokens.gather(1, positions))
    changed = inputs != tokens
    assert changed.sum(1).le(5).all() and (inputs[changed] == MASK_TOKEN).all()
    shown_as_mask = (inputs.gather(1, positions) == MASK_TOKEN).float().mean().item()
    assert 0.78 < shown_as_mask < 0.92  # 85% of the chosen positions
    again = mask_tokens(tokens, 0.15, torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(again, (inputs, positions, targets), strict=True))


def test_the_schedule_warms_up_then_decays_to_zero():
    recipe = replace(TINY, steps=10, warmup=0.2, lr=1.0)
    rates = [learning_rate(recipe, s, 10) for s in range(1, 11)]
    assert rates[:2] == [0.5, 1.0] and rates[-1] == pytest.approx(1 / 9)
    assert all(a > b for a, b in zip(rates[1:], rates[2:], strict=False))


def test_the_trainer_travels_by_pickle(corpus):
    """Confirmation runs ``train`` on Ray workers: functions and arguments pickle."""
    recipe = BERT_TRAINER.recipe(steps=3, seed=1, device="cpu", train_split="train", epochs=None)
    data = BERT_TRAINER.prepare_data(corpus, recipe)
    sizes = BERT_TRAINER.sizes(data, {"hidden_size": None, "embedding_size": None})
    job = (BERT_TRAINER.train, TINY_CONFIG.to_dict(), sizes, data, recipe)
    assert pickle.loads(pickle.dumps(job))[1:3] == (TINY_CONFIG.to_dict(), FAMILY_SIZES)
    assert pickle.loads(pickle.dumps(BERT_TRAINER)) == BERT_TRAINER
