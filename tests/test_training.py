"""Training one architecture: recipe, loop, evaluation, divergence, checkpoints, splits."""

from __future__ import annotations

import json
import math
import os
import pickle
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import torch
from helpers import REPO_ROOT, read_logs
from torch.nn import functional as F

import nas_engine
from nas_engine.cli.train import train_main
from nas_engine.corpus import Corpus, Vocabulary, load_corpus
from nas_engine.spaces import get_space
from search_spaces.rnn import ModelSizes, preset
from search_spaces.rnn.training import (
    TrainingConfigError,
    TrainingRecipe,
    build_model,
    evaluate,
    forward,
    load_checkpoint,
    locked_dropout_mask,
    prepare_data,
    train_architecture,
    weight_drop,
    windows_per_epoch,
)

SIZES = ModelSizes(embedding_size=16, hidden_size=16, num_layers=2)
TINY = TrainingRecipe(steps=40, batch_size=4, bptt=10, eval_batch_size=4, lr=1e-2)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matrices: one thread is faster, and immune to other processes' load."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def cyclic_corpus(vocab_size: int = 12, tokens: int = 1200, splits=("train", "valid", "test")):
    """Token i is followed by token i + 1 (mod V): perfectly learnable."""
    vocab = Vocabulary()
    for i in range(vocab_size):
        vocab.add(f"t{i}")
    ids = torch.arange(tokens) % vocab_size
    return Corpus("cyclic test tokens", vocab, {s: ids.clone() for s in splits})


def test_default_recipe_is_the_benchmarks():
    """Every NAS-Bench-NLP log was trained with the same hyper-parameters: the defaults."""
    _, log = read_logs()[0]
    r = TrainingRecipe()
    assert r.lr == log["lr"] and r.batch_size == log["batch_size"] and r.bptt == log["bptt"]
    assert r.eval_batch_size == log["eval_batch_size"] and r.clip == log["clip"]
    assert (r.dropout_output, r.dropout_hidden, r.dropout_input, r.dropout_embedding) == (
        log["dropout"],
        log["dropouth"],
        log["dropouti"],
        log["dropoute"],
    )
    assert (r.weight_drop, r.weight_decay, r.alpha, r.beta) == (
        log["wdrop"],
        log["wdecay"],
        log["alpha"],
        log["beta"],
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"steps": 5, "epochs": 1.0},
        {"steps": 0},
        {"epochs": -1.0},
        {"lr": 0.0},
        {"dropout_input": 1.0},
        {"batch_size": 0},
        {"train_split": "test"},
    ],
)
def test_bad_recipe_is_refused(bad):
    with pytest.raises(TrainingConfigError):
        TrainingRecipe(**bad)


def test_loss_goes_down_on_a_learnable_corpus():
    corpus = cyclic_corpus()
    data = prepare_data(corpus, TINY)
    untrained = evaluate(
        build_model(preset("lstm"), replace(SIZES, vocab_size=12), 0), data.valid, 4, 10
    )
    out = train_architecture(preset("lstm").to_dict(), SIZES, corpus, replace(TINY, steps=120))
    assert out.ok, out.error
    assert untrained == pytest.approx(math.log(12), abs=0.1)  # uniform guess at the start
    assert out.valid_loss < untrained - 1.0
    assert out.valid_ppl == pytest.approx(math.exp(out.valid_loss))
    assert out.test_ppl == pytest.approx(math.exp(out.test_loss))
    # 300 rows of 4 columns: 299 target steps, 30 windows an epoch; 120 steps = 4 epochs.
    assert out.steps == 120 and out.tokens == 4 * 299 * 4 and out.epochs == 4.0
    assert out.sizes["vocab_size"] == 12  # the corpus's, whatever the sizes said


def test_training_is_deterministic_for_a_seed():
    corpus = cyclic_corpus()
    a = train_architecture(preset("gru").to_dict(), SIZES, corpus, TINY)
    b = train_architecture(preset("gru").to_dict(), SIZES, corpus, TINY)
    c = train_architecture(preset("gru").to_dict(), SIZES, corpus, replace(TINY, seed=1))
    assert (a.train_loss, a.valid_loss, a.test_loss) == (b.train_loss, b.valid_loss, b.test_loss)
    assert a.valid_loss != c.valid_loss


def test_global_rng_is_untouched():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_architecture(preset("rnn").to_dict(), SIZES, cyclic_corpus(), replace(TINY, steps=3))
    assert torch.equal(torch.rand(3), expected)


def test_epochs_count_windows_of_the_train_split():
    corpus = cyclic_corpus(tokens=1203)
    # 1203 tokens in 4 columns: 300 rows, 299 (input, target) steps, windows of 10: 30.
    assert windows_per_epoch(1203, 4, 10) == 30
    out = train_architecture(
        preset("rnn").to_dict(), SIZES, corpus, replace(TINY, steps=None, epochs=0.5)
    )
    assert out.steps == 15 and out.epochs == pytest.approx(0.5)
    # The first 15 windows are all full: 10 steps x 4 columns each.
    assert out.tokens == 15 * 10 * 4


def test_evaluate_matches_the_plain_model_window_by_window():
    """evaluate = mean cross-entropy of the model's own forward, state carried over."""
    ids = torch.randint(0, 12, (403,), generator=torch.Generator().manual_seed(0))
    model = build_model(preset("lstm"), replace(SIZES, vocab_size=12), 3).eval()
    data = ids[: (403 // 5) * 5].view(5, -1).t()  # (80, 5) columns
    total, count, state = 0.0, 0, None
    with torch.no_grad():
        for start in range(0, 79, 7):
            inputs = data[start : start + 7]
            targets = data[start + 1 : start + 1 + inputs.shape[0]]
            inputs = inputs[: targets.shape[0]]
            logits, state = model(inputs, state)
            loss = F.cross_entropy(logits.reshape(-1, 12), targets.reshape(-1), reduction="sum")
            total += loss.item()
            count += targets.numel()
    assert evaluate(model, ids, 5, 7) == pytest.approx(total / count, rel=1e-6)


def test_divergence_is_a_failed_outcome(tmp_path):
    out = train_architecture(
        preset("lstm").to_dict(),
        SIZES,
        cyclic_corpus(),
        replace(TINY, lr=1e30),
        checkpoint=tmp_path / "checkpoint.pt",
    )
    assert out.status == "failed" and "diverged" in out.error
    assert out.valid_loss is None and out.valid_ppl is None
    assert out.steps < TINY.steps
    assert not (tmp_path / "checkpoint.pt").exists()
    assert out.to_dict()["valid_loss"] is None


def test_an_error_while_training_is_a_failed_outcome_with_the_place():
    def broken(step: int, total: int, loss: float) -> None:
        if step == 3:
            raise ValueError("progress display broke")

    out = train_architecture(preset("rnn").to_dict(), SIZES, cyclic_corpus(), TINY, progress=broken)
    assert out.status == "failed" and out.steps == 3
    assert out.error.startswith("ValueError: progress display broke (at test_training.py:")


def test_checkpoint_round_trip_gives_the_same_loss(tmp_path):
    corpus = cyclic_corpus()
    path = tmp_path / "checkpoint.pt"
    out = train_architecture(preset("gru").to_dict(), SIZES, corpus, TINY, checkpoint=path)
    assert out.ok and path.exists()
    loaded = load_checkpoint(path)
    assert not loaded.model.training
    assert loaded.recipe == TINY and loaded.sizes == replace(SIZES, vocab_size=12)
    assert loaded.vocab == tuple(corpus.vocab.words)
    assert loaded.outcome["valid_loss"] == out.valid_loss
    again = evaluate(loaded.model, corpus.splits["test"], TINY.eval_batch_size, TINY.bptt)
    assert again == pytest.approx(out.test_loss, rel=1e-6)
    # The checkpoint holds plain weights: no DropConnect parametrisation left behind.
    assert all("parametrizations" not in k for k in loaded.model.state_dict())


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path):
    corpus, cell = cyclic_corpus(), preset("lstm").to_dict()
    full = train_architecture(cell, SIZES, corpus, TINY)
    saved = tmp_path / "progress.pt"

    def crash_at_23(step: int, total: int, loss: float) -> None:
        if step == 23:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_architecture(
            cell, SIZES, corpus, TINY, progress=crash_at_23, progress_file=saved, save_every=10
        )
    assert saved.exists()  # written after step 20
    steps_run = []
    resumed = train_architecture(
        cell,
        SIZES,
        corpus,
        TINY,
        progress=lambda step, total, loss: steps_run.append(step),
        progress_file=saved,
        save_every=10,
        resume=True,
    )
    assert steps_run == list(range(21, 41))
    same = ("train_loss", "valid_loss", "test_loss", "steps", "tokens")
    assert [getattr(resumed, k) for k in same] == [getattr(full, k) for k in same]
    assert not saved.exists()  # the run is over: nothing left to resume


def test_resuming_needs_the_same_run(tmp_path):
    corpus, cell = cyclic_corpus(), preset("rnn").to_dict()
    saved = tmp_path / "progress.pt"
    with pytest.raises(TrainingConfigError, match="nothing to resume"):
        train_architecture(cell, SIZES, corpus, TINY, progress_file=saved, resume=True)

    def crash_at_6(step: int, total: int, loss: float) -> None:
        if step == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_architecture(
            cell, SIZES, corpus, TINY, progress=crash_at_6, progress_file=saved, save_every=5
        )
    with pytest.raises(TrainingConfigError, match="another recipe"):
        train_architecture(
            cell, SIZES, corpus, replace(TINY, lr=0.5), progress_file=saved, resume=True
        )
    with pytest.raises(TrainingConfigError, match="another arch"):
        gru = preset("gru").to_dict()
        train_architecture(gru, SIZES, corpus, TINY, progress_file=saved, resume=True)


def test_not_a_checkpoint_is_refused(tmp_path):
    bad = tmp_path / "x.pt"
    torch.save({"hello": 1}, bad)
    with pytest.raises(TrainingConfigError, match="not a nas-engine training checkpoint"):
        load_checkpoint(bad)
    with pytest.raises(TrainingConfigError, match="cannot read"):
        load_checkpoint(tmp_path / "missing.pt")


def test_a_corpus_without_train_split_names_the_fallback():
    corpus = cyclic_corpus(splits=("valid", "test"))
    with pytest.raises(TrainingConfigError, match="--train-split valid"):
        prepare_data(corpus, TINY)
    recipe = replace(TINY, train_split="valid")
    data = prepare_data(corpus, recipe)
    # Train on the head of valid, validate on its held-out tail (10%), test untouched.
    assert torch.equal(data.train, corpus.splits["valid"][:1080])
    assert torch.equal(data.valid, corpus.splits["valid"][1080:])
    assert torch.equal(data.test, corpus.splits["test"])
    assert "validated on its last 120" in data.notes[0]
    out = train_architecture(preset("rnn").to_dict(), SIZES, corpus, replace(recipe, steps=5))
    assert out.ok and out.notes == data.notes


def test_a_split_too_short_is_refused():
    with pytest.raises(TrainingConfigError, match="too few"):
        prepare_data(cyclic_corpus(tokens=30), replace(TINY, eval_batch_size=50))


def test_weight_drop_masks_only_the_recurrent_columns():
    model = build_model(preset("rnn"), replace(SIZES, vocab_size=12), 0)
    linear = model.layers[0].linears[0]  # linear(x, h_prev_0): 16 x columns, 16 state columns
    original = linear.weight
    before = original.detach().clone()
    gen = torch.Generator().manual_seed(0)
    with weight_drop(model, 0.5, gen):
        model.train()
        w = linear.weight
        assert torch.equal(w[:, :16], before[:, :16])
        recurrent = w[:, 16:] / before[:, 16:]
        assert set(recurrent.unique().tolist()) == {0.0, 2.0}
        model.eval()
        assert torch.equal(linear.weight, before)
    assert linear.weight is original
    fresh = build_model(preset("rnn"), replace(SIZES, vocab_size=12), 0)
    assert set(model.state_dict()) == set(fresh.state_dict())


def test_ar_tar_penalty_by_hand_and_no_dropout_in_eval():
    model = build_model(preset("gru"), replace(SIZES, vocab_size=12), 0)
    tokens = torch.randint(0, 12, (6, 3), generator=torch.Generator().manual_seed(1))
    plain = replace(
        TINY, dropout_output=0.0, dropout_hidden=0.0, dropout_input=0.0, alpha=2.0, beta=1.0
    )
    gen = torch.Generator().manual_seed(0)
    logits, _, penalty = forward(model.train(), tokens, None, plain, gen)
    with torch.no_grad():
        h = model.run_layers(model.encoder(tokens)).output  # last layer's output, (T, B, E)
        expected = 2.0 * h.pow(2).mean() + 1.0 * (h[1:] - h[:-1]).pow(2).mean()
        reference, _ = model(tokens)
    assert penalty.item() == pytest.approx(expected.item(), rel=1e-6)
    assert torch.allclose(logits, reference, atol=1e-6)
    # In eval mode the recipe's dropouts and penalties are off: the plain model's logits.
    logits, _, penalty = forward(model.eval(), tokens, None, TINY, gen)
    assert torch.allclose(logits, reference, atol=1e-6) and penalty.item() == 0.0


def test_locked_dropout_drops_the_same_units_at_every_step():
    model = build_model(preset("rnn"), replace(SIZES, vocab_size=12), 0).train()
    tokens = torch.zeros(8, 5, dtype=torch.long)  # the same token everywhere
    only_input = replace(
        TINY, dropout_output=0.0, dropout_hidden=0.0, dropout_input=0.5, alpha=0.0, beta=0.0
    )
    with torch.no_grad():
        e = model.encoder(tokens)
        gen = torch.Generator().manual_seed(3)
        dropped = e * locked_dropout_mask(e, 0.5, gen)
    assert torch.equal(dropped[0], dropped[7])  # one mask for all steps of a sequence
    ratio = set((dropped / e).unique().tolist())
    assert ratio == {0.0, 2.0}
    # forward applies that same mask (same generator state) before the layers.
    with torch.no_grad():
        logits, _, _ = forward(model, tokens, None, only_input, torch.Generator().manual_seed(3))
        expected = model.forward_from_embeddings(dropped)
    assert torch.allclose(logits, expected, atol=1e-6)


def test_arguments_and_outcome_travel_by_pickle():
    """What a Ray worker receives and returns: the function, its arguments, the outcome."""
    args = (preset("rnn").to_dict(), SIZES, None, replace(TINY, steps=2))
    fn, restored = pickle.loads(pickle.dumps((train_architecture, args)))
    assert fn is train_architecture and restored == args
    out = train_architecture(*args[:2], cyclic_corpus(), args[3])
    assert pickle.loads(pickle.dumps(out)) == out


# ---------------------------------------------------------------------- the command line
def write_corpus(root, splits=("train", "valid", "test")):
    """A tiny text corpus folder: a repeated cycle of sentences, so it is learnable."""
    root.mkdir()
    text = "\n".join(["the cat sat on the mat", "a dog ran to the cat", "the mat is red"] * 40)
    for split in splits:
        (root / f"{split}.txt").write_text(text + "\n", encoding="utf-8")
    return root


def run_train(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nas_engine.train", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


TINY_ARGS = (
    "--embedding-size", "16", "--hidden-size", "16", "--layers", "2",
    "--batch-size", "4", "--bptt", "10", "--eval-batch-size", "4", "--lr", "0.01",
)  # fmt: skip


def test_cli_trains_and_writes_its_files(tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    out = tmp_path / "run"
    done = run_train("--preset", "gru", "--corpus", str(corpus), "--steps", "30",
                     "--out", str(out), "--no-progress", *TINY_ARGS)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "valid loss" in done.stdout and "test loss" in done.stdout
    record = json.loads((out / "training.json").read_text())
    assert record["status"] == "ok" and record["steps"] == 30
    assert record["arch"] == get_space("rnn").to_record(preset("gru"))  # canonical form
    assert record["recipe"]["batch_size"] == 4 and record["recipe"]["lr"] == 0.01
    # The checkpoint is a ready model: it gives the recorded loss on the text read afresh.
    loaded = load_checkpoint(out / "checkpoint.pt")
    valid = load_corpus(corpus, "valid").splits["valid"]
    assert evaluate(loaded.model, valid, 4, 10) == pytest.approx(record["valid_loss"], rel=1e-6)
    assert f"{record['valid_loss']:.4f}" in done.stdout


def test_cli_run_killed_by_sigkill_resumes_to_the_uninterrupted_result(tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    args = ["--preset", "gru", "--corpus", str(corpus), "--steps", "150", "--save-every", "25",
            "--no-progress", *TINY_ARGS]  # fmt: skip
    whole = run_train(*args, "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "nas_engine.train", *args, "--out", str(killed)],
        cwd=REPO_ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while not (killed / "progress.pt").exists() and proc.poll() is None:
        assert time.monotonic() < deadline, "no progress saved"
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (killed / "training.json").exists()
    resumed = run_train(*args, "--out", str(killed), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a = json.loads((tmp_path / "whole" / "training.json").read_text())
    b = json.loads((killed / "training.json").read_text())
    for key in ("train_loss", "valid_loss", "test_loss", "steps", "tokens"):
        assert a[key] == b[key], key
    assert not (killed / "progress.pt").exists()
    # The folder now holds a finished run: neither a fresh run nor a resume may reuse it.
    assert run_train(*args, "--out", str(killed)).returncode == 2
    again = run_train(*args, "--out", str(killed), "--resume")
    assert again.returncode == 2 and "holds no progress.pt" in again.stderr


def test_cli_records_a_diverged_run_and_exits_1(tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    out = tmp_path / "run"
    done = run_train("--preset", "lstm", "--corpus", str(corpus), "--steps", "20",
                     "--out", str(out), "--no-progress", *TINY_ARGS, "--lr", "1e30")  # fmt: skip
    assert done.returncode == 1
    assert "training failed: training diverged" in done.stderr
    record = json.loads((out / "training.json").read_text())
    assert record["status"] == "failed" and record["checkpoint"] is None
    assert not (out / "checkpoint.pt").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--preset", "lstm", "--steps", "5", "--epochs", "1"], "not allowed with argument"),
        (["--preset", "lstm", "--steps", "0"], "must be >= 1"),
        (["--preset", "nope"], "--preset 'nope': the rnn space has gru, lstm"),
        (["--steps", "5"], "one of the arguments --recipe --from-run --preset is required"),
        (["--preset", "lstm", "--set", "dropout_input=1.5"], "dropout_input must be in [0, 1)"),
        (["--preset", "lstm", "--set", "colour=red"], "expected NAME=VALUE"),
        (["--preset", "lstm", "--train-split", "test"], "no held-out test"),
        (["--preset", "lstm", "--corpus", "/no/such/corpus"], "does not exist"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(args, message, tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as stopped:
        sys.exit(train_main([*args, "--out", str(out)]))
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_cli_bad_recipe_file_and_missing_train_split(tmp_path, capsys):
    bad = tmp_path / "cell.json"
    bad.write_text(json.dumps({"h_new_0": {"op": "conv", "input": ["x"]}}))
    assert train_main(["--recipe", str(bad), "--out", str(tmp_path / "a")]) == 2
    assert "conv" in capsys.readouterr().err
    corpus = write_corpus(tmp_path / "no-train", splits=("valid", "test"))
    assert (
        train_main(["--preset", "rnn", "--corpus", str(corpus), "--out", str(tmp_path / "b")]) == 2
    )
    assert "pass --train-split valid" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_cli_reads_a_benchmark_log_as_recipe(tmp_path):
    _, log = read_logs()[0]
    path = tmp_path / "log.json"
    path.write_text(json.dumps(log))
    corpus = write_corpus(tmp_path / "corpus")
    args = ["--recipe", str(path), "--corpus", str(corpus), "--steps", "2"]
    assert train_main([*args, "--out", str(tmp_path / "run"), "--no-progress", *TINY_ARGS]) == 0
    record = json.loads((tmp_path / "run" / "training.json").read_text())
    assert record["arch"] == get_space("rnn").to_record(
        get_space("rnn").validate(json.loads(log["recepie"]))
    )


# ------------------------------------------------------------- the winner, one command away
@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    out = tmp_path_factory.mktemp("searched") / "run"
    nas_engine.search(budget=8, seed=4, out=str(out), embedding_size=12, hidden_size=20,
                      layers=2, batch_size=4, bptt=10, report=False)  # fmt: skip
    return out


RECIPE_ARGS = ("--batch-size", "4", "--bptt", "10", "--eval-batch-size", "4", "--steps", "5")


def test_from_run_trains_the_ranked_architecture_at_the_runs_sizes(searched, tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    second = nas_engine.load_run(searched).top(2)[1]
    out = tmp_path / "second"
    code = train_main(["--from-run", str(searched), "--rank", "2", "--corpus", str(corpus),
                       "--out", str(out), "--no-progress", *RECIPE_ARGS])  # fmt: skip
    assert code == 0
    record = json.loads((out / "training.json").read_text())
    assert record["arch"] == dict(second.arch)
    model = load_checkpoint(out / "checkpoint.pt").model
    assert (model.sizes.embedding_size, model.sizes.hidden_size, model.sizes.num_layers) == (
        12, 20, 2,
    )  # fmt: skip


def test_a_results_line_and_a_summary_entry_are_recipes(searched, tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    line = (searched / "results.jsonl").read_text().splitlines()[3]
    top = json.loads((searched / "summary.json").read_text())["top"][0]
    for name, text in (("line", line), ("top", json.dumps(top))):
        (tmp_path / f"{name}.json").write_text(text)
        out = tmp_path / name
        args = ["--recipe", str(tmp_path / f"{name}.json"), "--corpus", str(corpus),
                "--out", str(out), "--no-progress", *RECIPE_ARGS, *TINY_ARGS[:6]]  # fmt: skip
        code = train_main(args)
        assert code == 0
        expected = json.loads(line)["arch"] if name == "line" else top["recipe"]
        assert json.loads((out / "training.json").read_text())["arch"] == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--answer"], "has no two-stage answer"),
        (["--arch-id", "nope"], "--arch-id nope: not a result"),
        (["--rank", "99"], "--rank 99:"),
        (["--space", "bert"], "searched the rnn space"),
    ],
)
def test_from_run_bad_picks_are_one_line(searched, tmp_path, capsys, args, message):
    code = train_main(["--from-run", str(searched), *args, "--out", str(tmp_path / "x")])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
