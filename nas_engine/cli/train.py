"""``python -m nas_engine.train``: train one architecture with the benchmark's recipe.

Parsing turns argv into a :class:`~nas_engine.training.TrainingRecipe`; bad input is one line
on stderr and exit code 2, with nothing written. A run that diverges exits 1 with its
``training.json`` (status failed, the reason) written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..config import SIZE_SETTINGS, SearchConfig
from ..corpus import Corpus, CorpusError, embedded_corpus, load_corpus
from ..devices import resolve_device
from ..errors import TrainingConfigError
from ..result import Result
from ..runs import Run, load_run
from ..spaces import SearchSpace, Trainer, get_space
from .options import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    OneLineParser,
    add_size_options,
    positive_float,
    positive_int,
)

EXIT_TRAINING_FAILED = 1


def train_parser() -> argparse.ArgumentParser:
    default_space = get_space(SearchConfig().space)
    d = default_space.trainer.recipe()  # the defaults shown; each space's recipe has its own
    d_name = default_space.name
    p = OneLineParser(
        prog="python -m nas_engine.train",
        description="Train one cell with the NAS-Bench-NLP recipe (AWD-LSTM style, shortened) "
        "and report its validation and test loss and perplexity; writes OUT/checkpoint.pt "
        "(load it with search_spaces.rnn.training.load_checkpoint) and OUT/training.json.",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--recipe",
        metavar="FILE",
        help="the architecture: its JSON record (an RNN recipe {node: {op, input}}), a line of "
        "a run's results.jsonl, an entry of a summary.json's top list, or a NAS-Bench-NLP log "
        "(its 'recepie' is used)",
    )
    which.add_argument(
        "--from-run",
        metavar="OUT",
        help="a search's folder: train its --rank K (default 1, in the final ranking), its "
        "--answer or its --arch-id ID, in the run's space and at the run's sizes",
    )
    which.add_argument(
        "--preset",
        metavar="NAME",
        help=f"a known architecture of the space ({default_space.name}: "
        f"{', '.join(sorted(default_space.presets()))})",
    )
    p.add_argument(
        "--space",
        default=None,
        help=f"the space of the architecture (default: the run's with --from-run, else "
        f"{default_space.name})",
    )
    pick = p.add_argument_group("which architecture of --from-run").add_mutually_exclusive_group()
    pick.add_argument("--rank", type=positive_int, default=None, metavar="K", help="1 = best")
    pick.add_argument("--answer", action="store_true", help="the run's two-stage answer")
    pick.add_argument("--arch-id", default=None, metavar="ID", help="the result with this id")
    data = p.add_argument_group("corpus")
    data.add_argument(
        "--corpus",
        default=None,
        metavar="PATH",
        help="folder with train/valid/test.txt; default: the embedded synthetic corpus",
    )
    data.add_argument(
        "--train-split",
        default=None,
        help=f"split to train on (default: {d.train_split}); 'valid' for a corpus without a train "
        "split: trains on its first 90%% and validates on the rest",
    )
    data.add_argument("--valid-split", default=None, help=f"(default: {d.valid_split})")
    data.add_argument(
        "--test-split", default=None, help=f"'none' for no test (default: {d.test_split})"
    )
    length = p.add_argument_group("how long").add_mutually_exclusive_group()
    length.add_argument("--steps", type=positive_int, default=None, help="optimiser steps")
    length.add_argument(
        "--epochs",
        type=positive_float,
        default=None,
        help="passes over the train split (default: 1 when --steps is not given either)",
    )
    train = p.add_argument_group(
        f"training recipe (defaults: the space's recipe; shown: {d_name}'s, the NAS-Bench-NLP "
        "logs')"
    )
    train.add_argument("--lr", type=positive_float, default=None, help=f"(default: {d.lr})")
    train.add_argument(
        "--batch-size", type=positive_int, default=None, help=f"(default: {d.batch_size})"
    )
    train.add_argument(
        "--bptt",
        type=positive_int,
        default=None,
        help=f"steps (RNN) or tokens per sequence (BERT) (default: {d.bptt})",
    )
    train.add_argument(
        "--eval-batch-size",
        type=positive_int,
        default=None,
        help=f"(default: {d.eval_batch_size})",
    )
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any other recipe setting (dropout_output, dropout_hidden, dropout_input, "
        "dropout_embedding, weight_drop, alpha, beta, weight_decay, clip, valid_holdout); "
        "repeatable",
    )
    train.add_argument("--seed", type=int, default=None, help=f"(default: {d.seed})")
    train.add_argument("--device", default=None, help="cpu, cuda or auto (default: cpu)")
    train.add_argument(
        "--no-mixed-precision",
        action="store_true",
        help="on CUDA, keep the decoder and loss in float32 (default: bf16 there)",
    )
    add_size_options(p.add_argument_group("model sizes (defaults: the benchmark's)"))
    p.add_argument("--out", default=None, metavar="DIR", help="default: runs/train-NAME-TIME")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--save-every",
        type=int,
        default=500,
        metavar="S",
        help="save OUT/progress.pt every S steps, so a crash loses at most S steps; 0: never "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its progress.pt (same cell, sizes and recipe); "
        "it ends as the uninterrupted run would",
    )
    return p


def _from_run(args: argparse.Namespace) -> tuple[Run, Result, str]:
    """The run of ``--from-run`` and the result it names, with a name for the output folder."""
    run = load_run(args.from_run)
    if args.answer:
        if run.answer is None:
            raise TrainingConfigError(
                f"--answer: {args.from_run!r} has no two-stage answer (run it with --confirm-top)"
            )
        return run, run.answer, f"{run.answer.arch_id}-answer"
    if args.arch_id is not None:
        for result in run.results:
            if result.arch_id == args.arch_id:
                return run, result, args.arch_id
        raise TrainingConfigError(f"--arch-id {args.arch_id}: not a result of {args.from_run!r}")
    rank = args.rank or 1
    ranked = run.top(rank)
    if len(ranked) < rank:
        raise TrainingConfigError(
            f"--rank {rank}: {args.from_run!r} ranks {len(ranked)} architectures"
        )
    return run, ranked[-1], f"{ranked[-1].arch_id}-rank{rank}"


def _read_cell(args: argparse.Namespace, space: SearchSpace) -> tuple[Any, str]:
    if args.preset:
        presets = space.presets()
        if args.preset not in presets:
            raise TrainingConfigError(
                f"--preset {args.preset!r}: the {space.name} space has {', '.join(sorted(presets))}"
            )
        return presets[args.preset], args.preset
    path = Path(args.recipe)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainingConfigError(f"cannot read recipe {str(path)!r}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise TrainingConfigError(f"recipe {str(path)!r} is not valid JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("recepie"), str):  # a benchmark log
        data = json.loads(data["recepie"])
    elif isinstance(data, dict) and "arch_id" in data:  # a result record, or a summary's top
        data = data.get("arch", data.get("recipe"))
    if not isinstance(data, dict):
        raise TrainingConfigError(f"recipe {str(path)!r} is not a JSON object of nodes")
    try:
        return space.validate(data), path.stem
    except ValueError as exc:
        raise TrainingConfigError(f"recipe {str(path)!r}: {exc}") from None


def _settings(pairs: list[str], recipe_type: Any) -> dict[str, float]:
    """``--set NAME=VALUE`` for the recipe's numeric settings without a flag of their own."""
    numeric = [f.name for f in fields(recipe_type) if f.type == "float"]
    out: dict[str, float] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in numeric:
            raise TrainingConfigError(
                f"--set {pair!r}: expected NAME=VALUE, NAME one of {', '.join(numeric)}"
            )
        try:
            out[name] = float(text)
        except ValueError:
            raise TrainingConfigError(f"--set {pair!r}: expected a number") from None
    return out


def _recipe(args: argparse.Namespace, trainer: Trainer) -> Any:
    """The space's training recipe: its own defaults, with what the command line gave."""
    given = {
        "steps": args.steps,
        "epochs": args.epochs,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "bptt": args.bptt,
        "eval_batch_size": args.eval_batch_size,
        "seed": args.seed,
        "device": args.device,
        "train_split": args.train_split,
        "valid_split": args.valid_split,
        "test_split": args.test_split,
    }
    settings = {k: v for k, v in given.items() if v is not None}
    if settings.get("test_split") == "none":
        settings["test_split"] = None
    if args.no_mixed_precision:
        settings["mixed_precision"] = False
    return trainer.recipe(**settings, **_settings(args.set, trainer.recipe))


def _load(path: str | None, recipe: Any) -> Corpus:
    if path is None:
        return embedded_corpus()
    try:
        return load_corpus(path, recipe.valid_split)
    except CorpusError as exc:
        raise TrainingConfigError(str(exc)) from None


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def train_main(argv: list[str] | None = None) -> int:
    args = train_parser().parse_args(argv)
    run_sizes: dict[str, Any] = {}
    try:
        if not args.from_run and (args.rank or args.answer or args.arch_id):
            raise TrainingConfigError("--rank, --answer and --arch-id pick from --from-run OUT")
        if args.from_run:
            run, result, name = _from_run(args)
            if args.space is not None and args.space != run.config.space:
                raise TrainingConfigError(
                    f"--space {args.space}: {args.from_run!r} searched the {run.config.space} space"
                )
            args.space = run.config.space
            run_sizes = {n: getattr(run.config, n) for n in SIZE_SETTINGS}
        space = get_space(args.space or SearchConfig().space)
        trainer = space.trainer
        if trainer is None:
            raise TrainingConfigError(f"the {space.name} space has no trainer")
        if args.from_run:
            cell = space.validate(result.arch)
        else:
            cell, name = _read_cell(args, space)
        recipe = _recipe(args, trainer)
        if args.resume and args.out is None:
            raise TrainingConfigError("--resume needs --out: the folder of the run to resume")
        if args.save_every < 0:
            raise TrainingConfigError(f"--save-every must be >= 0, got {args.save_every}")
        out = Path(args.out or f"runs/train-{name}-{time.strftime('%Y%m%d-%H%M%S')}")
        if out.exists() and not out.is_dir():
            raise TrainingConfigError(f"--out {str(out)!r} is a file, not a folder")
        if args.resume and not (out / "progress.pt").is_file():
            raise TrainingConfigError(f"--resume: {str(out)!r} holds no progress.pt to resume")
        for existing in ("checkpoint.pt", "training.json", "progress.pt"):
            if not args.resume and (out / existing).exists():
                hint = " (--resume continues it)" if existing == "progress.pt" else ""
                raise TrainingConfigError(f"{str(out)!r} already holds a training run{hint}")
        corpus = _load(args.corpus, recipe)
        data = trainer.prepare_data(corpus, recipe)
        chosen = {n: getattr(args, n) for n in ("embedding_size", "hidden_size", "layers")}
        # the command line's sizes, then the run's (--from-run), then the space's defaults
        given = {k: v for k, v in run_sizes.items() if v is not None}
        given.update({k: v for k, v in chosen.items() if v is not None})
        sizes = trainer.sizes(data, {**space.size_defaults, **given})
        try:
            resolve_device(recipe.device)
        except (ValueError, RuntimeError) as exc:
            raise TrainingConfigError(str(exc)) from None
        try:  # before the training, so that a folder that cannot be made is said at once
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrainingConfigError(
                f"--out {str(out)!r} cannot be created: {exc.strerror or exc}"
            ) from None
    except (TrainingConfigError, ValueError, KeyError) as exc:
        print(f"error: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"corpus: {data.description}", file=sys.stderr)
    for note in data.notes:
        print(f"note: {note}", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=None, disable=args.no_progress, unit="step", file=sys.stderr)

    def progress(step: int, total: int, loss: float) -> None:
        if bar.total is None:  # the first step of this process (later than 1 when resumed)
            bar.total, bar.n = total, step - 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}", refresh=False)

    saved = out / "progress.pt"
    try:
        outcome = trainer.train(
            cell,
            sizes,
            data,
            recipe,
            progress=progress,
            checkpoint=out / "checkpoint.pt",
            progress_file=saved,
            save_every=args.save_every or None,
            resume=args.resume,
        )
    except TrainingConfigError as exc:  # a progress file of another run
        bar.close()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        bar.close()
        if saved.exists():
            print(f"interrupted: progress saved in {saved} (--resume continues)", file=sys.stderr)
        else:
            print("interrupted before the first save: nothing saved", file=sys.stderr)
        return EXIT_INTERRUPTED
    bar.close()
    record = {
        **outcome.to_dict(),
        "arch": space.to_record(cell),
        "corpus": data.description,
        "checkpoint": str(out / "checkpoint.pt") if outcome.ok else None,
    }
    _write_json(out / "training.json", record)
    if not outcome.ok:
        print(f"training failed: {outcome.error} (see {out / 'training.json'})", file=sys.stderr)
        return EXIT_TRAINING_FAILED
    test = (
        f", test loss {outcome.test_loss:.4f} (ppl {outcome.test_ppl:.2f})"
        if outcome.test_loss is not None
        else ""
    )
    print(
        f"valid loss {outcome.valid_loss:.4f} (ppl {outcome.valid_ppl:.2f}){test}; "
        f"{outcome.steps} steps ({outcome.epochs:.2f} epochs) in {outcome.train_seconds:.1f} s, "
        f"{outcome.tokens_per_s:,.0f} tokens/s on {outcome.device}"
    )
    print(f"wrote {out / 'checkpoint.pt'} and {out / 'training.json'}")
    return 0
