"""Pre-training one BERT-space network briefly with masked-LM, and evaluating it.

The loop::

    sequences = the train split cut into consecutive ``bptt``-token sequences
    for step in 1 .. total_steps:
        rows = the next ``batch_size`` of this epoch's permutation of the sequences
        inputs, positions, targets = mask_tokens(rows)   # 15%: 85% [MASK], 15% unchanged
        loss = cross_entropy(model(inputs, positions), targets)
        loss.backward(); clip_grad_norm_(clip); lr = schedule(step); adamw.step()
        # a non-finite loss ends the run: a failed outcome with the reason
    valid_loss, test_loss = evaluate(...)                # eval mode, fixed masks per split

An epoch is ``N // batch_size`` steps over the N train sequences (the last partial batch of an
epoch is left out). The permutation of epoch ``e`` and the masks of step ``s`` come from
generators seeded by :func:`nas_engine.seeds.derived_seed` of the recipe's seed and ``e`` or
``s``; the networks have no dropout. So a step's batch depends on nothing but the step, and a
resumed run (weights, AdamW's moments, the losses so far) ends exactly as the uninterrupted run.
The learning rate is a pure function of the step: linear warm-up over ``warmup`` of the steps,
then linear decay to 0 at the last step (as the benchmark's schedule, shortened).

:func:`train_network` is a top-level function with picklable arguments (the configuration as
its JSON record, the sizes, a corpus path, None or the prepared data, the recipe), so a Ray
worker can run it as is.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas_engine.corpus import Corpus
from nas_engine.errors import TrainingConfigError
from nas_engine.parameters import count_parameters
from nas_engine.seeds import generator_for
from nas_engine.training import failure_reason, loss_figures, resolve_training_device

from ..config import BertConfig, BertConfigError
from ..model import EncoderSizes
from ..networks import FAMILY_SIZES
from .checkpoints import read_progress, save_checkpoint, write_progress
from .data import BertTrainingData, check_data, prepare_data
from .mlm import build_model, evaluate, mask_tokens, masked_loss, sequences
from .outcome import BertTrainingOutcome
from .recipe import BertTrainingRecipe, Progress

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-6


def training_sizes(data: Any, sizes: Mapping[str, Any]) -> EncoderSizes:
    """The networks' sizes: fixed by the family (30522 rows, 512 positions), whatever the
    data. A configuration carries its own widths, so a size the user set is refused."""
    given = sorted(name for name, value in sizes.items() if value is not None)
    if given:
        raise TrainingConfigError(
            f"the bert space takes no model sizes ({', '.join(given)}): a configuration "
            "carries its own"
        )
    return FAMILY_SIZES


def learning_rate(recipe: BertTrainingRecipe, step: int, total_steps: int) -> float:
    """The rate of 1-based ``step``: linear warm-up to ``lr`` over ``round(warmup * total)``
    steps, then linear decay to 0 at ``total_steps + 1`` (the last step still learns)."""
    warm = round(recipe.warmup * total_steps)
    if step <= warm:
        return recipe.lr * step / warm
    return recipe.lr * (total_steps + 1 - step) / (total_steps + 1 - warm)


def steps_per_epoch(data: BertTrainingData, recipe: BertTrainingRecipe) -> int:
    return (data.train.numel() // recipe.bptt) // recipe.batch_size


def _as_config(arch: BertConfig | Mapping[str, Any] | str) -> BertConfig:
    try:
        if isinstance(arch, BertConfig):
            return BertConfig.from_dict(arch.to_dict())
        if isinstance(arch, str):
            return BertConfig.from_json(arch)
        return BertConfig.from_dict(arch)
    except BertConfigError as exc:
        raise TrainingConfigError(f"configuration: {exc}") from None


def _check_sizes(sizes: EncoderSizes | Mapping[str, Any] | None) -> EncoderSizes:
    if sizes is None:
        return FAMILY_SIZES
    values = dict(sizes) if isinstance(sizes, Mapping) else asdict(sizes)
    if values != asdict(FAMILY_SIZES):
        raise TrainingConfigError(
            f"the bert networks have fixed sizes {asdict(FAMILY_SIZES)}, got {values}"
        )
    return FAMILY_SIZES


def _optimizer(model: nn.Module, recipe: BertTrainingRecipe) -> torch.optim.AdamW:
    """AdamW; weight decay on weights of 2 or more dimensions (not biases or LayerNorm)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    other = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": recipe.weight_decay},
        {"params": other, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=recipe.lr, betas=ADAM_BETAS, eps=ADAM_EPS)


def train_network(
    arch_record: BertConfig | Mapping[str, Any] | str,
    sizes: EncoderSizes | Mapping[str, Any] | None,
    corpus: Corpus | BertTrainingData | str | Path | None,
    recipe: BertTrainingRecipe,
    *,
    progress: Progress | None = None,
    checkpoint: str | Path | None = None,
    progress_file: str | Path | None = None,
    save_every: int | None = None,
    resume: bool = False,
) -> BertTrainingOutcome:
    """Pre-train one configuration's ``recipe.family`` network with masked-LM and evaluate it.

    ``arch_record``: the configuration (its JSON record, JSON text or a :class:`BertConfig`).
    ``sizes``: :data:`~search_spaces.bert.networks.FAMILY_SIZES` (what :func:`training_sizes`
    gives) or None. ``corpus``: a path, None for the embedded corpus, a loaded corpus, or the
    data :func:`prepare_data` made. ``checkpoint``: where to save the trained model when the
    run is ok (see :func:`load_checkpoint`).

    ``progress_file`` with ``save_every``: every ``save_every`` steps, the weights, AdamW's
    state, the losses so far and the counters are saved there, atomically; with ``resume``,
    the run continues from it and ends exactly as the uninterrupted run would. The file is
    removed when the run completes.

    Bad input (a configuration, recipe, sizes or corpus that cannot be used, a network the
    family cannot build, a device that is absent, nothing to resume) raises
    :class:`TrainingConfigError` (one line); a run whose loss is not finite, that runs out of
    memory or raises while training returns a failed outcome with the reason; Ctrl-C
    propagates.
    """
    started = time.perf_counter()
    config = _as_config(arch_record)
    sizes = _check_sizes(sizes)
    device = resolve_training_device(recipe.device)
    if isinstance(corpus, BertTrainingData):
        data = corpus
        check_data(data, recipe)
    else:
        data = prepare_data(corpus, recipe)
    if (save_every is not None or resume) and progress_file is None:
        raise TrainingConfigError("saving or resuming progress needs a progress file")
    if save_every is not None and (
        isinstance(save_every, bool) or not isinstance(save_every, int) or save_every < 1
    ):
        raise TrainingConfigError(f"save_every must be an integer >= 1, got {save_every!r}")
    identity = {
        "arch": config.to_dict(),
        "sizes": asdict(sizes),
        "recipe": recipe.to_dict(),
        "data": data.identity(),
    }
    saved = read_progress(progress_file, identity) if resume else None
    try:
        model = build_model(config, recipe.family, recipe.seed)
    except ValueError as exc:  # e.g. heads that do not divide the paper-notebook's 256
        raise TrainingConfigError(f"the {recipe.family} network: {exc}") from None
    model = model.to(device)
    amp = recipe.mixed_precision and device.type == "cuda" and torch.cuda.is_bf16_supported()

    train_sequences = sequences(data.train, recipe.bptt)
    per_epoch = steps_per_epoch(data, recipe)
    total_steps = recipe.steps or max(1, round((recipe.epochs or 1.0) * per_epoch))

    losses: list[float] = []
    tokens, done_seconds, first_step = 0, 0.0, 1
    error: str | None = None
    valid_loss = test_loss = None
    train_started = time.perf_counter()
    try:
        optimizer = _optimizer(model, recipe)
        if saved is not None:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            losses, tokens = list(saved["losses"]), saved["tokens"]
            done_seconds, first_step = saved["train_seconds"], saved["step"] + 1
        model.train()
        order, order_epoch = None, -1
        for step in range(first_step, total_steps + 1):
            epoch, index = divmod(step - 1, per_epoch)
            if epoch != order_epoch:
                generator = generator_for(recipe.seed, f"bert-mlm-order:{epoch}")
                order = torch.randperm(train_sequences.shape[0], generator=generator)
                order_epoch = epoch
            rows = order[index * recipe.batch_size : (index + 1) * recipe.batch_size]
            inputs, positions, targets = mask_tokens(
                train_sequences[rows],
                recipe.mask_probability,
                generator_for(recipe.seed, f"bert-mlm-train:{step}"),
            )
            logits = model(inputs.to(device), positions.to(device), amp)
            loss = masked_loss(logits, targets.to(device))
            value = loss.item()
            if not math.isfinite(value):
                error = f"training diverged: the loss is {value} at step {step}"
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if recipe.clip:
                nn.utils.clip_grad_norm_(model.parameters(), recipe.clip)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(recipe, step, total_steps)
            optimizer.step()
            losses.append(value)
            tokens += inputs.numel()
            if save_every and step % save_every == 0 and step < total_steps:
                write_progress(
                    progress_file,
                    {
                        **identity,
                        "step": step,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "losses": losses,
                        "tokens": tokens,
                        "train_seconds": done_seconds + time.perf_counter() - train_started,
                    },
                )
            if progress is not None:
                progress(step, total_steps, value)
        train_seconds = done_seconds + time.perf_counter() - train_started
        if error is None:
            valid_loss = evaluate(model, data.valid, recipe, "valid")
            if data.test is not None:
                test_loss = evaluate(model, data.test, recipe, "test")
            if not math.isfinite(valid_loss):
                error = f"the validation loss is {valid_loss} after {len(losses)} steps"
    except Exception as exc:  # a network that breaks training is an outcome, not a crash
        train_seconds = done_seconds + time.perf_counter() - train_started
        error = failure_reason(exc)
        valid_loss = test_loss = None

    seconds = time.perf_counter() - started
    outcome = BertTrainingOutcome(
        status="failed" if error else "ok",
        error=error,
        **loss_figures(losses, valid_loss, test_loss, per_epoch, tokens, seconds, train_seconds),
        param_count=count_parameters(model),
        device=str(device),
        mixed_precision=amp,
        family=recipe.family,
        sizes=asdict(sizes),
        recipe=recipe.to_dict(),
        notes=data.notes,
    )
    if checkpoint is not None and outcome.ok:
        save_checkpoint(checkpoint, model, config, recipe, outcome, data.vocab)
    if progress_file is not None:  # the run is over (its outcome says how): nothing to resume
        Path(progress_file).unlink(missing_ok=True)
    return outcome
