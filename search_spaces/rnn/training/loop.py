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
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize

from nas_engine.corpus import Corpus, batchify
from nas_engine.errors import TrainingConfigError
from nas_engine.parameters import count_parameters
from nas_engine.seeds import derived_seed
from nas_engine.training import failure_reason, loss_figures, resolve_training_device

from ..model import ModelSizes, RNNLanguageModel
from ..recipe import Recipe
from .checkpoints import read_progress, save_checkpoint, state_to, write_progress
from .data import TrainingData, check_data, prepare_data
from .outcome import TrainingOutcome
from .recipe import PROGRESS_FORMAT, Progress, TrainingRecipe

if TYPE_CHECKING:
    pass


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
    saved = read_progress(progress_file, identity) if resume else None
    amp = recipe.mixed_precision and device.type == "cuda" and torch.cuda.is_bf16_supported()

    train_data = batchify(data.train, recipe.batch_size).to(device)
    starts = range(0, train_data.shape[0] - 1, recipe.bptt)  # one window each, an epoch
    total_steps = recipe.steps or max(1, round((recipe.epochs or 1.0) * len(starts)))
    model = build_model(cell, sizes, recipe.seed).to(device)

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
                state = state_to(saved["state"], device)
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
                    write_progress(
                        progress_file,
                        {
                            **identity,
                            "format": PROGRESS_FORMAT,
                            "step": step,
                            "model": model.state_dict(),
                            "optimizer": optimizer.state_dict(),
                            "generator": generator.get_state(),
                            "state": state_to(state, "cpu"),
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
    except Exception as exc:  # a cell that breaks training is an outcome, not a crash
        train_seconds = done_seconds + time.perf_counter() - train_started
        error = failure_reason(exc)
        valid_loss = test_loss = None

    seconds = time.perf_counter() - started
    outcome = TrainingOutcome(
        status="failed" if error else "ok",
        error=error,
        **loss_figures(losses, valid_loss, test_loss, len(starts), tokens, seconds, train_seconds),
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
