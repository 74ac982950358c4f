"""The BERT benchmark table: every metric and the recommended fitness on each network family.

    python experiments/bert_benchmark_table.py [--spec SPEC] [--families a,b,c]
        [--limit N] [--seconds-entries 10] [--rerun] [--update a,b]

For each family (``as-trained``, ``literal``, ``paper-notebook``; search_spaces/bert/networks.py)
it runs the real benchmark command on the 250 dev entries (part of the benchmark is held
back; nothing here looks at it):

1. ``nbbert --network F --metrics all,SPEC --together`` (every metric on one probe per entry,
   the embedded corpus mapped by ``family_ids``, 16 sequences x 64 tokens, seed 0), giving
   each metric's and the spec's Kendall tau and Spearman rho with GLUE, and the seconds of
   the whole probe per network;
2. ``nbbert --network F --metrics all,SPEC --limit K`` (each metric on a probe of its own, the
   first K entries): each metric's seconds per network alone (model build, its passes, its
   computation); a spec's are the sum of its components'.

A run whose folder already holds its ``correlations.json``, ``run.json`` and ``scores.csv`` is
read, not re-run (``--rerun`` re-runs). If a reused all-metrics run lacks the spec's column
(it was made before the spec was chosen), the spec's column is computed from that run's
``scores.csv`` by the command's own code (:func:`nas_engine.benchmarks.specs.spec_column`)
and marked so. Writes ``experiments/out/bert_benchmark_table.json`` (and the runs under
``experiments/out/bert_benchmark_table/``) and prints the table as markdown.

Input sensitivity (unless ``--no-input-check`` or ``--limit``): the as-trained all-metrics run
again with ``--corpus ../shared/data/ptb`` (``experiments/out/bert_input_ptb/``), and per metric
how much its tau moves between the two inputs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from scipy import stats

from nas_engine.analysis.bench import cpu_name
from nas_engine.analysis.bert import PAPER_COLUMNS
from nas_engine.benchmarks.specs import parse_metric_columns, spec_column
from nas_engine.metrics import metric_names

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "out"
RUNS = OUT / "bert_benchmark_table"
BENCHMARK = ROOT.parent / "shared" / "data" / "nasbench_bert" / "benchmark_dev.json"
PTB = ROOT.parent / "shared" / "data" / "ptb"
NETWORKS = ROOT.parent / "shared" / "data" / "nasbench_bert" / "networks_dev.csv"
FAMILIES = ("as-trained", "literal", "paper-notebook")
DEFAULT_SPEC = "head_confidence:2+params"


def recommended_spec() -> str:
    path = OUT / "bert_fitness_search.json"
    if path.exists():
        return json.loads(path.read_text())["recommended"]["spec"]
    return DEFAULT_SPEC


def command(family: str, metrics: str, out: Path, extra: list[str]) -> list[str]:
    return [
        sys.executable, "-m", "nas_engine.benchmark", "nbbert", "--benchmark", str(BENCHMARK),
        "--network", family, "--metrics", metrics, "--out", str(out), "--no-progress", *extra,
    ]  # fmt: skip


def shown(cmd: list[str]) -> str:
    """The command as a user types it from the repository root."""
    text = " ".join(f"'{c}'" if ("+" in c or ":" in c) else c for c in cmd[1:])
    return "python " + text.replace(str(ROOT) + "/", "").replace(str(ROOT.parent), "..")


def run_once(cmd: list[str], out: Path, rerun: bool) -> dict:
    """Run ``cmd`` unless ``out`` already holds its results; its record either way."""
    ran = False
    complete = all((out / f).exists() for f in ("correlations.json", "run.json", "scores.csv"))
    if rerun or not complete:
        if out.exists():
            for f in out.iterdir():
                f.unlink()
        started = time.perf_counter()
        load = os.getloadavg()[0]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{shown(cmd)} failed:\n{proc.stderr[-2000:]}")
        ran = True
        print(f"ran {shown(cmd)} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        (out / "load.json").write_text(
            json.dumps({"load_average_1min_start": load, "end": os.getloadavg()[0]}) + "\n"
        )
    meta = json.loads((out / "run.json").read_text())
    if not ran:  # the command that made the folder, from its run.json
        listed = meta.get("columns") or meta["settings"]["metrics"]
        every = metric_names("bert")
        text = ",".join(["all", *listed[len(every) :]] if listed[: len(every)] == every else listed)
        cmd = [*cmd[: cmd.index("--metrics") + 1], text, *cmd[cmd.index("--metrics") + 2 :]]
    load_file = out / "load.json"
    return {
        "command": shown(cmd),
        "out": str(out.relative_to(ROOT) if out.is_relative_to(ROOT) else out),
        "ran_now": ran,
        "total_seconds": meta["total_seconds"],
        "entries_scored": meta["entries_scored"],
        "corpus": meta["corpus"],
        "load_average": json.loads(load_file.read_text()) if load_file.exists() else None,
        "correlations": json.loads((out / "correlations.json").read_text()),
        "scores": pd.read_csv(out / "scores.csv"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", default=None, help="default: bert_fitness_search.json's")
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--limit", type=int, default=None, help="only the first N dev entries")
    ap.add_argument("--seconds-entries", type=int, default=10)
    ap.add_argument("--rerun", action="store_true")
    ap.add_argument(
        "--update",
        default=None,
        metavar="FAMILIES",
        help="re-run only these families and merge them into the existing --out table "
        "(the other families and the input check are kept as they are)",
    )
    ap.add_argument("--out", default=str(OUT / "bert_benchmark_table.json"))
    ap.add_argument("--runs", default=str(RUNS), help="folder of the benchmark runs")
    ap.add_argument(
        "--no-input-check",
        action="store_true",
        help="skip the as-trained all-metrics run on PTB (the input-sensitivity check)",
    )
    args = ap.parse_args()
    runs = Path(args.runs)
    spec = args.spec or recommended_spec()
    chosen = parse_metric_columns(f"all,{spec}", "bert")
    fitness = chosen.specs.get(spec)
    metrics = metric_names("bert")
    limit = ["--limit", str(args.limit)] if args.limit else []

    table: dict = {}
    families = args.families.split(",")
    previous = None
    if args.update:
        previous = json.loads(Path(args.out).read_text())
        table = dict(previous["families"])
        families = args.update.split(",")
    for family in families:
        suffix = f"_first{args.limit}" if args.limit else ""
        together = run_once(
            command(family, f"all,{spec}", runs / f"{family}{suffix}", ["--together", *limit]),
            runs / f"{family}{suffix}",
            args.rerun,
        )
        alone = run_once(
            command(
                family,
                f"all,{spec}",
                runs / f"{family}_seconds_first{args.seconds_entries}",
                ["--limit", str(args.seconds_entries)],
            ),
            runs / f"{family}_seconds_first{args.seconds_entries}",
            args.rerun,
        )
        scores, corr = together["scores"], together["correlations"]
        probe_seconds = scores["params_seconds"].to_numpy(dtype=float)  # the shared probe's
        rows = {}
        for column in [*metrics, spec]:
            entry = corr.get(column)
            how = "benchmark command"
            if entry is None and column == spec and fitness is not None:
                values = spec_column(scores, fitness)
                entry = {
                    "kendall_tau": float(stats.kendalltau(values, scores["glue"]).statistic),
                    "spearman_rho": float(stats.spearmanr(values, scores["glue"]).statistic),
                    "n": int(pd.notna(values).sum()),
                    "failed": int(pd.isna(values).sum()),
                }
                how = "spec_column on the run's scores.csv (run made before the spec was chosen)"
            if entry is None:
                continue
            alone_entry = alone["correlations"].get(column, {})
            rows[column] = {
                "kendall_tau": entry["kendall_tau"],
                "spearman_rho": entry["spearman_rho"],
                "n": entry["n"],
                "failed": entry["failed"],
                "seconds_per_network_alone": alone_entry.get("seconds_per_arch"),
                "source": how,
            }
        table[family] = {
            "entries": together["entries_scored"],
            "all_metrics_together_seconds_per_network_median": statistics.median(probe_seconds),
            "all_metrics_together_total_seconds": together["total_seconds"],
            "seconds_alone_over_first_entries": alone["entries_scored"],
            "metrics": rows,
            "runs": {
                k: {x: r[x] for x in ("command", "out", "ran_now", "total_seconds", "load_average")}
                for k, r in (("together", together), ("seconds", alone))
            },
            "corpus": together["corpus"],
        }

    input_check = previous["input_sensitivity"] if previous else None
    if "as-trained" in families and not args.limit and not args.no_input_check:
        input_check = input_sensitivity(
            table["as-trained"], runs, OUT / "bert_input_ptb", args.rerun, spec, fitness
        )

    paper = paper_columns(table)

    result = {
        "benchmark": "benchmark_dev.json: the 250 dev entries (part of the benchmark is held "
        "back and not used)",
        "target": "scores.glue (higher is better); Kendall tau and Spearman rho of each "
        "metric / the spec with GLUE",
        "spec": spec,
        "scoring": "embedded synthetic corpus mapped into the networks' id range by "
        "family_ids (1 + id % 30520), 16 sequences x 64 tokens, seed 0; as-trained and literal "
        "in eval mode without dropout, paper-notebook as the notebook scored it (train mode "
        "with dropout 0.1, masks from the seed; a backward from a gradient of ones: its "
        "ScoringProtocol)",
        "seconds": "seconds_per_network_alone: the median over the first entries of one metric "
        "scored on its own probe (model build + its passes + its computation; a spec: the sum "
        "of its components'); all_metrics_together: the median of one probe for every metric "
        "(what a search scoring the whole suite pays). Wall-clock on a shared machine: the load "
        "average at the start and end of each run is recorded",
        "hardware": {
            "cpu": cpu_name(),
            "machine": platform.machine(),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
        },
        "families": table,
        "input_sensitivity": input_check,
        "paper_columns_on_dev": paper,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def paper_columns(table: dict) -> dict:
    """The paper's own metric values (networks_dev.csv, its notebook: paper-notebook networks,
    train mode, 128 x 512 OpenWebText tokens) against GLUE on the same dev entries: the
    paper's figures restricted to the dev set, for comparison (no scoring here); and, when the
    paper-notebook family was run, the Kendall tau between our value of each metric on those
    networks and the paper's column (fidelity on this input: embedded corpus, 16 x 64)."""

    csv = pd.read_csv(NETWORKS)
    family = next(iter(table.values()))
    glue = pd.read_csv(ROOT / family["runs"]["together"]["out"] / "scores.csv")[["id", "glue"]]
    merged = glue.merge(csv, on="id")
    ours = None
    if "paper-notebook" in table:  # fidelity: our paper-notebook values vs the paper's column
        run = table["paper-notebook"]["runs"]["together"]["out"]
        ours = pd.read_csv(ROOT / run / "scores.csv").merge(csv, on="id")
    out = {}
    for name, column in PAPER_COLUMNS.items():
        ok = merged[column].notna()
        out[name] = {
            "column": column,
            "kendall_tau": float(stats.kendalltau(merged[column][ok], merged["glue"][ok])[0]),
            "spearman_rho": float(stats.spearmanr(merged[column][ok], merged["glue"][ok])[0]),
            "n": int(ok.sum()),
        }
        if ours is not None and name in ours:
            both = ours[name].notna() & ours[column].notna()
            out[name]["ours_paper_notebook_vs_this_column_tau"] = float(
                stats.kendalltau(ours[name][both], ours[column][both])[0]
            )
    return out


def input_sensitivity(
    embedded: dict, runs: Path, out: Path, rerun: bool, spec: str, fitness
) -> dict:
    """The as-trained all-metrics run again on PTB test text (``--corpus ../shared/data/ptb``,
    mapped by family_ids like the embedded corpus): per metric its tau with GLUE on each
    input, the change, and the Kendall tau between the metric's values on the two inputs
    across the entries (1: the input does not change the ranking the metric gives)."""
    first = embedded["runs"]["together"]
    base = pd.read_csv(ROOT / first["out"] / "scores.csv")
    cmd = command("as-trained", "all", out, ["--together", "--corpus", str(PTB)])
    ptb = run_once(cmd, out, rerun)
    other = ptb["scores"]
    merged = base.merge(other, on="id", suffixes=("", "_ptb"))
    rows = {}
    for name in metric_names("bert"):
        a = embedded["metrics"][name]["kendall_tau"]
        b = ptb["correlations"][name]["kendall_tau"]
        same = stats.kendalltau(merged[name], merged[f"{name}_ptb"]).statistic
        rows[name] = {
            "tau_embedded": a,
            "tau_ptb": b,
            "change": None if a is None or b is None else b - a,
            "values_kendall_tau_between_inputs": float(same),
        }
    changes = [abs(r["change"]) for r in rows.values() if r["change"] is not None]
    if fitness is not None:  # the spec, by the command's own rule on each run's scores
        a = stats.kendalltau(spec_column(base, fitness), base["glue"]).statistic
        b = stats.kendalltau(spec_column(other, fitness), other["glue"]).statistic
        names = list(fitness.metric_names)
        on_ptb = merged[[f"{m}_ptb" for m in names]].set_axis(names, axis=1)
        same = stats.kendalltau(spec_column(merged, fitness), spec_column(on_ptb, fitness))
        same = same.statistic
        rows[spec] = {
            "tau_embedded": float(a),
            "tau_ptb": float(b),
            "change": float(b - a),
            "values_kendall_tau_between_inputs": float(same),
        }
    return {
        "inputs": [first["command"], ptb["command"]],
        "corpora": [embedded["corpus"], ptb["corpus"]],
        "entries": len(merged),
        "max_abs_tau_change": max(changes),
        "median_abs_tau_change": statistics.median(changes),
        "metrics": rows,
    }


def markdown(result: dict) -> str:
    families = list(result["families"])
    paper = result.get("paper_columns_on_dev") or {}
    head = "| metric | " + " | ".join(f"{f}: tau / rho / s" for f in families)
    head += " | the paper's own column on these entries: tau |"
    lines = [head, "| --- |" + " --- |" * (len(families) + 1)]
    names = list(dict.fromkeys(m for f in families for m in result["families"][f]["metrics"]))
    for name in names:
        cells = []
        for f in families:
            r = result["families"][f]["metrics"].get(name)
            if r is None or r["kendall_tau"] is None:
                cells.append("")
                continue
            s = r["seconds_per_network_alone"]
            cells.append(
                f"{r['kendall_tau']:+.3f} / {r['spearman_rho']:+.3f} / "
                + (f"{s:.2f}" if s is not None else "-")
            )
        p = paper.get(name)
        cells.append(f"{p['kendall_tau']:+.3f}" if p else "")
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    together = [
        f"{result['families'][f]['all_metrics_together_seconds_per_network_median']:.2f}"
        for f in families
    ]
    lines.append("| all metrics, one probe (s) | " + " | ".join(together) + " | |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
