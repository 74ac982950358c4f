"""Short training runs of the presets and generated cells: losses and training throughput.

    python experiments/train_presets.py [--steps 200] [--corpus embedded,ptb] [--threads 1]

Trains the LSTM, GRU and RNN presets and three cells drawn from the benchmark's generator
(seeds 1-3) with the NAS-Bench-NLP recipe (dropouts, DropConnect, AR/TAR, Adam 1e-3, clip
0.25) for S steps at a small size (E = H = 64, three layers, batch 20, bptt 35), on the
embedded synthetic corpus (train / valid / test) and on PTB (no train split here: trained on
the first 90% of valid, validated on its last 10%, tested on test). Reports the validation and
test loss after S steps, the untrained validation loss (ln V for a uniform guess) and the
training tokens per second. Prints a table and saves JSON to experiments/out/.
"""

from __future__ import annotations

import argparse
import json
import platform
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from nas_engine.corpus import embedded_corpus, load_corpus
from search_spaces.rnn import ModelSizes, Recipe, preset
from search_spaces.rnn.generator import sample_cell
from search_spaces.rnn.training import (
    TrainingRecipe,
    build_model,
    evaluate,
    prepare_data,
    train_architecture,
)

REPO = Path(__file__).resolve().parents[1]
PTB = REPO.parent / "shared" / "data" / "ptb"


def cells() -> dict[str, dict]:
    out = {name: preset(name).to_dict() for name in ("lstm", "gru", "rnn")}
    for seed in (1, 2, 3):
        out[f"generated-{seed}"] = sample_cell(np.random.default_rng(seed)).to_dict()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--corpus", default="embedded,ptb")
    p.add_argument("--size", type=int, default=64, help="E = H")
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--bptt", type=int, default=35)
    p.add_argument("--threads", type=int, default=1, help="torch threads (the CPU is shared)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=str(REPO / "experiments" / "out" / "train_presets.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    base = TrainingRecipe(
        steps=args.steps, batch_size=args.batch_size, bptt=args.bptt, device=args.device
    )
    sizes = ModelSizes(embedding_size=args.size, hidden_size=args.size, num_layers=args.layers)
    rows = []
    for corpus_name in args.corpus.split(","):
        if corpus_name == "embedded":
            corpus, recipe = embedded_corpus(), base
        else:
            corpus, recipe = load_corpus(PTB, "valid"), replace(base, train_split="valid")
        data = prepare_data(corpus, recipe)
        for name, arch in cells().items():
            untrained = evaluate(
                build_model(
                    Recipe.from_dict(arch), replace(sizes, vocab_size=data.vocab_size), recipe.seed
                ),
                data.valid,
                recipe.eval_batch_size,
                recipe.bptt,
            )
            out = train_architecture(arch, sizes, data, recipe)
            row = {
                "corpus": corpus_name,
                "cell": name,
                "status": out.status,
                "untrained_valid_loss": untrained,
                "valid_loss": out.valid_loss,
                "valid_ppl": out.valid_ppl,
                "test_loss": out.test_loss,
                "train_loss": out.train_loss,
                "steps": out.steps,
                "epochs": out.epochs,
                "tokens_per_s": out.tokens_per_s,
                "train_seconds": out.train_seconds,
                "params": out.param_count,
                "error": out.error,
            }
            rows.append(row)
            print(
                f"{corpus_name:<8} {name:<12} valid {out.valid_loss} (untrained {untrained:.3f}) "
                f"{out.tokens_per_s:,.0f} tok/s",
                flush=True,
            )
    table = pd.DataFrame(rows)
    print(table.drop(columns=["error"]).to_string(index=False, float_format="%.3f"))
    result = {
        "settings": {
            **vars(args),
            "recipe": base.to_dict(),
            "sizes": {"embedding_size": args.size, "hidden_size": args.size},
            "cpu": platform.processor() or platform.machine(),
            "torch": torch.__version__,
        },
        "cells": cells(),
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
