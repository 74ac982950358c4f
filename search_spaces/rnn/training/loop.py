"""Training one architecture: the NAS-Bench-NLP recipe, shortened.

The loop is the usual one for a word-level language model (AWD-LSTM style, as the benchmark
trained its 14k cells): the train split is cut into ``batch_size`` contiguous columns, read in
consecutive windows of ``bptt`` steps with the hidden state carried from one window to the next
(detached: truncated backpropagation), and every window is one optimiser step::

    for step in range(total_steps):
        inputs, targets = next window (back to the start, state reset, after the last one)
        logits, state, reg = forward with dropouts          # locked dropout masks per window
        loss = cross_entropy(logits, targets) + reg          # reg: AR + TAR on the last layer
        loss.backward(); clip_grad_norm_(clip); adam.step()  # a NaN loss ends it: "failed"
    valid_loss, test_loss = evaluate(...)                    # eval mode, no grad, state carried

Regularisation, with the benchmark's values as defaults (every log of the 345 has the same
hyper-parameters): locked (variational) dropout on the embeddings (``dropout_input`` 0.4),
between layers (``dropout_hidden`` 0.25) and on the last layer's output (``dropout_output``
0.1); embedding dropout of whole words (``dropout_embedding`` 0.0); DropConnect on the weights
that read the recurrent state (``weight_drop`` 0.1); activation regularisation ``alpha`` 2 and
temporal activation regularisation ``beta`` 1; Adam with lr 1e-3 and L2 weight decay 1.2e-6;
gradient norm clipped at 0.25; batch 20, bptt 70, evaluation batch 50. Not kept from AWD-LSTM:
the randomised window length (windows are always ``bptt`` long, the last of an epoch shorter)
and the switch to averaged SGD (short runs never reach it).

Dropout is applied around the unchanged model (:class:`~search_spaces.rnn.RNNLanguageModel`):
the forward here runs its embedding, its layers (the same cell forward as scoring) and its
decoder with dropout in between. DropConnect is a :mod:`torch.nn.utils.parametrize`
parametrisation of the cells' linear weights, registered only while training runs and removed
after (the checkpoint holds plain weights).

A corpus without the train split (``../shared/data/ptb`` has only valid and test) is refused
with a message that names the fallback: ``train_split="valid"`` trains on the first 90% of the
valid text and validates on its last 10% (``valid_holdout``), and test stays held out. Training
on the test split is refused: nothing would be left to report.

:func:`train_architecture` is a top-level function with picklable arguments (the architecture
as its JSON record, the sizes, a corpus path or None for the embedded corpus, the recipe), so
a Ray worker can run it as is.
"""

from __future__ import annotations

import math
import os
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize

from search_spaces.rnn import ModelSizes, Recipe, RecipeError, RNNLanguageModel, count_parameters

from .corpus import Corpus, CorpusError, batchify, embedded_corpus, load_corpus

if TYPE_CHECKING:
    from .scoring import ScoringSetup

CHECKPOINT_FORMAT = "nas-engine-checkpoint/1"
PROGRESS_FORMAT = "nas-engine-training-progress/1"

# progress(step, total_steps, loss of this step): called after every optimiser step.
Progress = Callable[[int, int, float], None]


class TrainingConfigError(ValueError):
    """Bad training input (recipe values, corpus, splits); the message is one line."""


@dataclass(frozen=True)
class TrainingRecipe:
    """How to train: the NAS-Bench-NLP recipe (the values of its logs), shortened to ``steps``
    optimiser steps or ``epochs`` passes over the train split (not both; one epoch when
    neither is given)."""

    steps: int | None = None
    epochs: float | None = None  # neither steps nor epochs: one epoch
    lr: float = 1e-3
    batch_size: int = 20
    bptt: int = 70
    eval_batch_size: int = 50
    dropout_output: float = 0.1  # the logs' "dropout"
    dropout_hidden: float = 0.25  # "dropouth": between layers
    dropout_input: float = 0.4  # "dropouti": on the embeddings
    dropout_embedding: float = 0.0  # "dropoute": whole words
    weight_drop: float = 0.1  # "wdrop": DropConnect on the weights reading the state
    alpha: float = 2.0  # activation regularisation
    beta: float = 1.0  # temporal activation regularisation
    weight_decay: float = 1.2e-6  # "wdecay", Adam's L2 term
    clip: float = 0.25  # gradient norm
    seed: int = 0
    device: str = "cpu"  # cpu, cuda, cuda:N or auto
    mixed_precision: bool = True  # bf16 decoder and loss on CUDA; never on the CPU
    train_split: str = "train"
    valid_split: str = "valid"
    test_split: str | None = "test"  # None: no test evaluation (the trained proxy)
    valid_holdout: float = 0.1  # when training on the valid split: its tail validates

    def __post_init__(self) -> None:
        if self.steps is not None and self.epochs is not None:
            raise TrainingConfigError("give steps or epochs, not both")
        if self.steps is not None and (not isinstance(self.steps, int) or self.steps < 1):
            raise TrainingConfigError(f"steps must be an integer >= 1, got {self.steps!r}")
        if self.epochs is not None and not self.epochs > 0:
            raise TrainingConfigError(f"epochs must be > 0, got {self.epochs!r}")
        for name in ("batch_size", "bptt", "eval_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise TrainingConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if not 0 < self.lr < math.inf:
            raise TrainingConfigError(f"lr must be a finite number > 0, got {self.lr!r}")
        probabilities = ("dropout_output", "dropout_hidden", "dropout_input", "dropout_embedding")
        for name in (*probabilities, "weight_drop"):
            if not 0 <= getattr(self, name) < 1:
                raise TrainingConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("alpha", "beta", "weight_decay", "clip"):
            if not 0 <= getattr(self, name) < math.inf:
                raise TrainingConfigError(
                    f"{name} must be a finite number >= 0, got {getattr(self, name)}"
                )
        if not 0 < self.valid_holdout < 1:
            raise TrainingConfigError(f"valid_holdout must be in (0, 1), got {self.valid_holdout}")
        if self.train_split == self.test_split:
            raise TrainingConfigError(
                f"training on the {self.test_split!r} split would leave no held-out test text "
                "(use another train split, or no test split)"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingRecipe:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TrainingConfigError(f"unknown training setting(s): {', '.join(unknown)}")
        return cls(**data)


@dataclass(frozen=True)
class TrainingData:
    """The token streams training reads, checked against the recipe's splits. ``notes`` say
    how the splits were used (for example the valid split cut in two)."""

    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor | None
    vocab_size: int
    description: str
    vocab: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def prepare_data(corpus: Corpus | str | Path | None, recipe: TrainingRecipe) -> TrainingData:
    """The recipe's splits of ``corpus`` (a loaded corpus, a path, or None for the embedded
    one). Raises :class:`TrainingConfigError` for a split that is missing or too short."""
    if corpus is None:
        corpus = embedded_corpus()
    elif not isinstance(corpus, Corpus):
        try:
            corpus = load_corpus(corpus, recipe.valid_split)
        except CorpusError as exc:
            raise TrainingConfigError(str(exc)) from None
    have = ", ".join(corpus.splits) or "none"
    if recipe.train_split not in corpus.splits:
        hint = ""
        if recipe.train_split == "train" and "valid" in corpus.splits:
            hint = (
                f"; pass --train-split valid to train on the first "
                f"{1 - recipe.valid_holdout:.0%} of the valid text and validate on the rest "
                "(test stays held out)"
            )
        raise TrainingConfigError(
            f"{corpus.description} has no {recipe.train_split!r} split to train on "
            f"(has: {have}){hint}"
        )
    for name in (recipe.valid_split, recipe.test_split):
        if name is not None and name not in corpus.splits:
            raise TrainingConfigError(f"{corpus.description} has no {name!r} split (has: {have})")
    train = corpus.splits[recipe.train_split]
    valid = corpus.splits[recipe.valid_split]
    notes: list[str] = []
    if recipe.train_split == recipe.valid_split:
        # Train on the head, validate on the tail: validation stays held out.
        cut = train.numel() - max(1, int(train.numel() * recipe.valid_holdout))
        train, valid = train[:cut], train[cut:]
        notes.append(
            f"no separate train split: trained on the first {cut} tokens of "
            f"{recipe.valid_split!r}, validated on its last {valid.numel()}"
        )
    test = None if recipe.test_split is None else corpus.splits[recipe.test_split]
    data = TrainingData(
        train,
        valid,
        test,
        len(corpus.vocab),
        corpus.description,
        tuple(corpus.vocab.words),
        tuple(notes),
    )
    check_data(data, recipe)
    return data


def check_data(data: TrainingData, recipe: TrainingRecipe) -> None:
    """Every split must give at least one window with its targets."""
    needs = {
        "train": (data.train, recipe.batch_size),
        "valid": (data.valid, recipe.eval_batch_size),
        "test": (data.test, recipe.eval_batch_size),
    }
    for what, (ids, columns) in needs.items():
        if ids is None:
            continue
        if ids.numel() // columns < 2:
            raise TrainingConfigError(
                f"the {what} text has {ids.numel()} tokens, too few for {columns} columns of "
                "at least 2 steps"
            )


@dataclass(frozen=True)
class TrainingOutcome:
    """What one training run gave. ``status`` ok or failed (``error`` says why); losses are
    mean next-token cross-entropies in nats (``train_loss``: the mean over the last tenth of the
    steps, without the AR/TAR terms), perplexities their exp; None where not reached."""

    status: Literal["ok", "failed"]
    error: str | None
    train_loss: float | None
    valid_loss: float | None
    valid_ppl: float | None
    test_loss: float | None
    test_ppl: float | None
    steps: int
    epochs: float
    tokens: int  # training tokens read
    seconds: float  # the whole call: setup, training and evaluation
    train_seconds: float
    tokens_per_s: float
    param_count: int
    device: str
    mixed_precision: bool  # used, not just asked for
    sizes: Mapping[str, Any] = field(default_factory=dict)
    recipe: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, float) and not math.isfinite(value):
                data[key] = None
        data["notes"] = list(self.notes)
        return data


# ---------------------------------------------------------------------- regularisation
def locked_dropout_mask(
    like: torch.Tensor, p: float, generator: torch.Generator
) -> torch.Tensor | None:
    """A (1, B, F) keep-mask scaled by 1/(1-p): the same units dropped at every step."""
    if p == 0:
        return None
    shape = (1, like.shape[1], like.shape[2])
    keep = torch.empty(shape, device=like.device, dtype=like.dtype)
    return keep.bernoulli_(1 - p, generator=generator).div_(1 - p)


class _RecurrentWeightDrop(nn.Module):
    """DropConnect on the columns of a linear weight that read a recurrent state (the
    hidden-to-hidden weights of AWD-LSTM's WeightDrop); inactive in eval mode."""

    def __init__(self, columns: torch.Tensor, p: float, generator: torch.Generator) -> None:
        super().__init__()
        self.register_buffer("columns", columns, persistent=False)  # (in_features,) bool
        self.p = p
        self.generator = generator

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return weight
        keep = torch.empty_like(weight).bernoulli_(1 - self.p, generator=self.generator)
        return torch.where(self.columns, weight * keep / (1 - self.p), weight)


@contextmanager
def weight_drop(model: RNNLanguageModel, p: float, generator: torch.Generator) -> Iterator[None]:
    """DropConnect on every cell weight column that reads ``h_prev_*``, for the duration of
    the block (the parametrisations are removed after, leaving the plain weights)."""
    if p == 0:
        yield
        return
    registered = []
    try:
        for cell in model.layers:
            graph = cell.recipe.node_map
            for node, linear in zip(cell.linear_nodes, cell.linears, strict=True):
                widths = [
                    (name, cell.input_size if name == "x" else cell.hidden_size)
                    for name in graph[node].inputs
                ]
                columns = torch.cat(
                    [torch.full((w,), name.startswith("h_prev_")) for name, w in widths]
                ).to(linear.weight.device)
                if not columns.any():
                    continue
                drop = _RecurrentWeightDrop(columns, p, generator)
                parametrize.register_parametrization(linear, "weight", drop)
                registered.append(linear)
        yield
    finally:
        for linear in registered:
            parametrize.remove_parametrizations(linear, "weight", leave_parametrized=False)


def forward(
    model: RNNLanguageModel,
    tokens: torch.Tensor,
    state: list[tuple[torch.Tensor, ...]] | None,
    recipe: TrainingRecipe | None = None,
    generator: torch.Generator | None = None,
    amp: bool = False,
) -> tuple[torch.Tensor, list[tuple[torch.Tensor, ...]], torch.Tensor]:
    """Logits (T, B, V), each layer's final state and the AR + TAR penalty, with the recipe's
    dropouts when the model is in training mode (``generator`` draws their masks); without a
    recipe, the plain model."""
    train = model.training and recipe is not None and generator is not None
    weight = model.encoder.weight
    if train and recipe.dropout_embedding > 0:
        keep = weight.new_empty(weight.shape[0], 1)
        keep.bernoulli_(1 - recipe.dropout_embedding, generator=generator)
        weight = weight * keep / (1 - recipe.dropout_embedding)
    h = F.embedding(tokens, weight)
    if train and (mask := locked_dropout_mask(h, recipe.dropout_input, generator)) is not None:
        h = h * mask
    new_state = []
    last = len(model.layers) - 1
    for index, cell in enumerate(model.layers):
        h, layer_state, _ = cell(h, None if state is None else state[index])
        new_state.append(layer_state)
        raw = h
        if train:
            p = recipe.dropout_hidden if index < last else recipe.dropout_output
            if (mask := locked_dropout_mask(h, p, generator)) is not None:
                h = h * mask
    penalty = h.new_zeros(())
    if train:
        if recipe.alpha:
            penalty = penalty + recipe.alpha * h.pow(2).mean()
        if recipe.beta and raw.shape[0] > 1:
            penalty = penalty + recipe.beta * (raw[1:] - raw[:-1]).pow(2).mean()
    with torch.autocast("cuda", dtype=torch.bfloat16) if amp else nullcontext():
        logits = model.decoder(h)
    return logits, new_state, penalty


def _detach(state: list[tuple[torch.Tensor, ...]]) -> list[tuple[torch.Tensor, ...]]:
    return [tuple(t.detach() for t in layer) for layer in state]


def _windows(data: torch.Tensor, bptt: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Consecutive (inputs, targets) windows of a batchified (N, B) stream; the last window
    is shorter when bptt does not divide N - 1."""
    for start in range(0, data.shape[0] - 1, bptt):
        length = min(bptt, data.shape[0] - 1 - start)
        yield data[start : start + length], data[start + 1 : start + 1 + length]


def windows_per_epoch(tokens: int, batch_size: int, bptt: int) -> int:
    rows = tokens // batch_size
    return math.ceil((rows - 1) / bptt)


@torch.no_grad()
def evaluate(
    model: RNNLanguageModel,
    ids: torch.Tensor,
    batch_size: int,
    bptt: int,
    device: torch.device | str | None = None,
) -> float:
    """Mean next-token cross-entropy of the stream ``ids`` in eval mode (no dropout), read in
    ``batch_size`` columns and ``bptt``-step windows with the state carried across them."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device if device is None else torch.device(device)
    data = batchify(ids, batch_size).to(device)
    total, count, state = 0.0, 0, None
    for inputs, targets in _windows(data, bptt):
        logits, state, _ = forward(model, inputs, state)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))
        total += loss.item() * targets.numel()
        count += targets.numel()
    model.train(was_training)
    return total / count


def _perplexity(loss: float | None) -> float | None:
    if loss is None or not math.isfinite(loss):
        return None
    return math.exp(loss) if loss < 700 else math.inf


def build_model(recipe_cell: Recipe, sizes: ModelSizes, seed: int) -> RNNLanguageModel:
    """The benchmark's initialisation drawn from ``seed`` on the CPU, without touching torch's
    global RNG state: the same weights as the scoring probe of that seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return RNNLanguageModel(recipe_cell, sizes, "cpu")


def _as_recipe(arch: Recipe | Mapping[str, Any] | str) -> Recipe:
    if isinstance(arch, Recipe):
        arch.validate()
        return arch
    if isinstance(arch, str):
        return Recipe.from_json(arch)
    return Recipe.from_dict(arch)


def resolve_training_device(name: str) -> torch.device:
    """cpu, cuda, cuda:N or auto; a CUDA device that is absent is bad input."""
    from .scoring import resolve_device  # scoring imports this module for the trained proxy

    try:
        return resolve_device(name)
    except (ValueError, RuntimeError) as exc:
        raise TrainingConfigError(str(exc)) from None


def train_architecture(
    arch_record: Recipe | Mapping[str, Any] | str,
    sizes: ModelSizes,
    corpus: Corpus | TrainingData | str | Path | None,
    recipe: TrainingRecipe,
    *,
    progress: Progress | None = None,
    checkpoint: str | Path | None = None,
    progress_file: str | Path | None = None,
    save_every: int | None = None,
    resume: bool = False,
) -> TrainingOutcome:
    """Train one cell with ``recipe`` and evaluate it; picklable arguments throughout.

    ``arch_record``: the cell (its JSON record, JSON text or a :class:`Recipe`). ``sizes``:
    the model's sizes; the vocabulary size is the corpus's whatever ``sizes`` says. ``corpus``:
    a path, None for the embedded corpus, or already loaded. ``checkpoint``: where to save the
    trained model when the run is ok (see :func:`load_checkpoint`).

    ``progress_file`` with ``save_every``: every ``save_every`` steps, everything the loop
    needs to go on (weights, Adam's moments, the dropout generator, the carried state, the
    losses so far) is saved there, atomically; with ``resume``, the run continues from it and
    ends exactly as the uninterrupted run would. The file is removed when the run completes.

    Bad input (an invalid cell, recipe or corpus; a device that is absent; nothing to resume)
    raises :class:`TrainingConfigError` or :class:`~search_spaces.rnn.RecipeError`; a run that
    diverges (non-finite loss), runs out of memory or raises while training returns a failed
    outcome with the reason (so one cell never stops a batch of runs); Ctrl-C propagates.
    """
    started = time.perf_counter()
    cell = _as_recipe(arch_record)
    device = resolve_training_device(recipe.device)
    data = corpus if isinstance(corpus, TrainingData) else prepare_data(corpus, recipe)
    if isinstance(corpus, TrainingData):
        check_data(data, recipe)
    sizes = replace(sizes, vocab_size=data.vocab_size)
    if (save_every is not None or resume) and progress_file is None:
        raise TrainingConfigError("saving or resuming progress needs a progress file")
    identity = {"arch": cell.to_dict(), "sizes": asdict(sizes), "recipe": recipe.to_dict()}
    saved = _read_progress(progress_file, identity) if resume else None
    amp = recipe.mixed_precision and device.type == "cuda" and torch.cuda.is_bf16_supported()

    train_data = batchify(data.train, recipe.batch_size).to(device)
    starts = range(0, train_data.shape[0] - 1, recipe.bptt)  # one window each, an epoch
    total_steps = recipe.steps or max(1, round((recipe.epochs or 1.0) * len(starts)))
    model = build_model(cell, sizes, recipe.seed).to(device)
    from .probes import derived_seed

    generator = torch.Generator(device=device).manual_seed(derived_seed(recipe.seed, "dropout"))

    losses: list[float] = []
    tokens, done_seconds, first_step = 0, 0.0, 1
    state: list[tuple[torch.Tensor, ...]] | None = None
    error: str | None = None
    train_started = time.perf_counter()
    try:
        with weight_drop(model, recipe.weight_drop, generator):
            # Created inside the block: the parametrised weights' originals are the parameters.
            optimizer = torch.optim.Adam(
                model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay
            )
            if saved is not None:
                model.load_state_dict(saved["model"])
                optimizer.load_state_dict(saved["optimizer"])
                generator.set_state(saved["generator"])
                state = _state_to(saved["state"], device)
                losses, tokens = list(saved["losses"]), saved["tokens"]
                done_seconds, first_step = saved["train_seconds"], saved["step"] + 1
            model.train()
            for step in range(first_step, total_steps + 1):
                window = (step - 1) % len(starts)
                if window == 0:  # a new epoch: back to the start, from zero states
                    state = None
                begin = starts[window]
                length = min(recipe.bptt, train_data.shape[0] - 1 - begin)
                inputs = train_data[begin : begin + length]
                targets = train_data[begin + 1 : begin + 1 + length]
                with parametrize.cached():  # one DropConnect mask per window
                    logits, state, penalty = forward(model, inputs, state, recipe, generator, amp)
                    loss = F.cross_entropy(
                        logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1)
                    )
                value = loss.item()
                if not math.isfinite(value):
                    error = f"training diverged: the loss is {value} at step {step}"
                    break
                optimizer.zero_grad(set_to_none=True)
                (loss + penalty).backward()
                if recipe.clip:
                    nn.utils.clip_grad_norm_(model.parameters(), recipe.clip)
                optimizer.step()
                state = _detach(state)
                losses.append(value)
                tokens += targets.numel()
                if save_every and step % save_every == 0 and step < total_steps:
                    _write_progress(
                        progress_file,
                        {
                            **identity,
                            "format": PROGRESS_FORMAT,
                            "step": step,
                            "model": model.state_dict(),
                            "optimizer": optimizer.state_dict(),
                            "generator": generator.get_state(),
                            "state": _state_to(state, "cpu"),
                            "losses": losses,
                            "tokens": tokens,
                            "train_seconds": done_seconds + time.perf_counter() - train_started,
                        },
                    )
                if progress is not None:
                    progress(step, total_steps, value)
        train_seconds = done_seconds + time.perf_counter() - train_started
        valid_loss = test_loss = None
        if error is None:
            valid_loss = evaluate(model, data.valid, recipe.eval_batch_size, recipe.bptt)
            if data.test is not None:
                test_loss = evaluate(model, data.test, recipe.eval_batch_size, recipe.bptt)
            if not math.isfinite(valid_loss):
                error = f"the validation loss is {valid_loss} after {len(losses)} steps"
    except torch.OutOfMemoryError as exc:
        train_seconds = done_seconds + time.perf_counter() - train_started
        error = f"out of memory: {str(exc).splitlines()[0]}"
        valid_loss = test_loss = None
    except Exception as exc:  # a cell that breaks training is an outcome, not a crash
        train_seconds = done_seconds + time.perf_counter() - train_started
        where = traceback.extract_tb(exc.__traceback__)[-1]
        place = f"{where.filename.rsplit('/', 1)[-1]}:{where.lineno}"
        error = f"{type(exc).__name__}: {exc} (at {place})"
        valid_loss = test_loss = None
    per_epoch = len(starts)

    tail = losses[-max(1, len(losses) // 10) :]
    outcome = TrainingOutcome(
        status="failed" if error else "ok",
        error=error,
        train_loss=sum(tail) / len(tail) if tail else None,
        valid_loss=valid_loss,
        valid_ppl=_perplexity(valid_loss),
        test_loss=test_loss,
        test_ppl=_perplexity(test_loss),
        steps=len(losses),
        epochs=len(losses) / per_epoch,
        tokens=tokens,
        seconds=time.perf_counter() - started,
        train_seconds=train_seconds,
        tokens_per_s=tokens / train_seconds if train_seconds > 0 else 0.0,
        param_count=count_parameters(model),
        device=str(device),
        mixed_precision=amp,
        sizes=asdict(sizes),
        recipe=recipe.to_dict(),
        notes=data.notes,
    )
    if checkpoint is not None and outcome.ok:
        save_checkpoint(checkpoint, model, cell, sizes, recipe, outcome, data.vocab)
    if progress_file is not None:  # the run is over (its outcome says how): nothing to resume
        Path(progress_file).unlink(missing_ok=True)
    return outcome


def _state_to(
    state: list[tuple[torch.Tensor, ...]] | None, device: torch.device | str
) -> list[tuple[torch.Tensor, ...]] | None:
    return None if state is None else [tuple(t.to(device) for t in layer) for layer in state]


def _write_progress(path: str | Path, payload: dict[str, Any]) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _read_progress(path: str | Path, identity: Mapping[str, Any]) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise TrainingConfigError(f"nothing to resume: {str(path)!r} does not exist")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as exc:
        raise TrainingConfigError(f"cannot read {str(path)!r}: {exc}") from None
    if not isinstance(saved, dict) or saved.get("format") != PROGRESS_FORMAT:
        raise TrainingConfigError(f"{str(path)!r} is not a nas-engine training progress file")
    changed = [key for key, value in identity.items() if saved.get(key) != value]
    if changed:
        raise TrainingConfigError(
            f"cannot resume {str(path)!r}: it trains another {' and '.join(changed)}"
        )
    return saved


# ---------------------------------------------------------------------- trained proxy
@dataclass(frozen=True)
class ProxyTraining:
    """The trained-proxy fitness's training: the corpus splits prepared once per scorer, and
    the recipe every candidate is trained with (no test evaluation: the proxy reads the
    validation loss only)."""

    data: TrainingData
    recipe: TrainingRecipe

    @classmethod
    def from_setup(cls, corpus: Corpus, setup: ScoringSetup) -> ProxyTraining:
        """The benchmark's recipe for ``setup.proxy_steps`` (or ``proxy_epochs``; one epoch
        without either) on the scoring batch shape (``batch_size`` x ``bptt``), seed and
        device. Raises :class:`TrainingConfigError` for a corpus it cannot train on."""
        recipe = TrainingRecipe(
            steps=setup.proxy_steps,
            epochs=setup.proxy_epochs,
            batch_size=setup.batch_size,
            bptt=setup.bptt,
            seed=setup.seed,
            device=setup.device,
            train_split=setup.proxy_train_split,
            test_split=None,
        )
        return cls(prepare_data(corpus, recipe), recipe)

    def run(self, cell: Recipe, sizes: ModelSizes) -> TrainingOutcome:
        return train_architecture(cell, sizes, self.data, self.recipe)


# ---------------------------------------------------------------------- checkpoints
def save_checkpoint(
    path: str | Path,
    model: RNNLanguageModel,
    cell: Recipe,
    sizes: ModelSizes,
    recipe: TrainingRecipe,
    outcome: TrainingOutcome,
    vocab: tuple[str, ...] = (),
) -> None:
    """Write the trained weights with everything needed to rebuild the model; written to a
    temporary file first, so a crash never leaves a torn checkpoint."""
    path = Path(path)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "arch": cell.to_dict(),
        "sizes": asdict(sizes),
        "recipe": recipe.to_dict(),
        "outcome": outcome.to_dict(),
        "vocab": list(vocab),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


@dataclass(frozen=True)
class TrainedModel:
    """A checkpoint loaded: the model (eval mode) and what it was trained from."""

    model: RNNLanguageModel
    arch: Mapping[str, Any]
    sizes: ModelSizes
    recipe: TrainingRecipe
    outcome: Mapping[str, Any]
    vocab: tuple[str, ...]


def load_checkpoint(path: str | Path, device: str = "cpu") -> TrainedModel:
    """The model saved by :func:`train_architecture` (``checkpoint=``), ready to evaluate."""
    try:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as exc:
        raise TrainingConfigError(f"cannot read checkpoint {str(path)!r}: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise TrainingConfigError(f"{str(path)!r} is not a nas-engine training checkpoint")
    sizes = ModelSizes(**payload["sizes"])
    cell = Recipe.from_dict(payload["arch"])
    model = RNNLanguageModel(cell, sizes, "cpu")
    model.load_state_dict(payload["state_dict"])
    model = model.to(resolve_training_device(device)).eval()
    return TrainedModel(
        model,
        payload["arch"],
        sizes,
        TrainingRecipe.from_dict(payload["recipe"]),
        payload["outcome"],
        tuple(payload["vocab"]),
    )


__all__ = [
    "ProxyTraining",
    "RecipeError",
    "TrainedModel",
    "TrainingConfigError",
    "TrainingData",
    "TrainingOutcome",
    "TrainingRecipe",
    "evaluate",
    "load_checkpoint",
    "prepare_data",
    "resolve_training_device",
    "train_architecture",
]
