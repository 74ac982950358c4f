"""BERT search end to end (both strategies, restriction, ensemble fitness, result files) and
the nbbert benchmark command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from helpers import DATA_DIR, nbbert_entry, require, run_module
from scipy import stats

import nas_engine
from nas_engine import ConfigError, SearchConfig
from nas_engine.benchmarks.nbbert import BenchmarkError, read_benchmark
from nas_engine.cli.benchmark import benchmark_main
from nas_engine.cli.search import search_main
from nas_engine.result import Candidate
from nas_engine.scoring import Scorer
from search_spaces.bert import BertConfig, parse_restriction

BENCHMARK_DEV = DATA_DIR / "nasbench_bert" / "benchmark_dev.json"
TINY = {"batch_size": 2, "bptt": 8}


@pytest.fixture()
def tiny(tmp_path: Path) -> dict:
    """Tiny scoring sizes and a tiny text corpus (the embedded corpus takes seconds to build)."""
    return {**TINY, "corpus": str(tiny_text(tmp_path))}


RESTRICT = "hidden_size=128,num_layers=2,feed_forward_dimension=512,num_feed_forward=1"


@pytest.mark.parametrize("strategy", ["random", "evolution"])
def test_search_stays_inside_the_restriction(tmp_path: Path, tiny: dict, strategy: str) -> None:
    results = nas_engine.search(
        space="bert",
        fitness="head_confidence",
        budget=8,
        strategy=strategy,
        population=4,
        tournament=2,
        restrict=RESTRICT,
        out=str(tmp_path / "run"),
        **tiny,
    )
    restriction = parse_restriction(RESTRICT)
    assert len(results) == 8 and all(r.ok for r in results)
    assert len({r.arch_id for r in results}) == 8
    for r in results:
        config = BertConfig.from_dict(r.arch)
        assert restriction.contains(config), restriction.violation(config)
        assert config.key == r.arch_id
    if strategy == "evolution":
        assert any(r.origin.startswith("mutate:") for r in results)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["config"]["restrict"] == RESTRICT
    assert summary["evaluated"] == 8
    lines = (tmp_path / "run" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 8


def test_recorded_fitness_is_the_scorer_value(tmp_path: Path, tiny: dict) -> None:
    results = nas_engine.search(
        space="bert",
        fitness="head_confidence:2+nonembedding_params",
        metrics=("params",),
        budget=4,
        strategy="random",
        restrict=RESTRICT,
        out=str(tmp_path / "run"),
        **tiny,
    )
    config = SearchConfig(
        space="bert",
        fitness="head_confidence:2+nonembedding_params",
        metrics=("params",),
        **tiny,
    )
    scorer = Scorer(config.scoring_setup())
    for r in results:
        assert set(r.metrics) == {"head_confidence", "nonembedding_params", "params"}
        again = scorer.score(Candidate(r.arch_id, r.arch))
        assert again.metrics == pytest.approx(dict(r.metrics), rel=1e-6)
        assert 0 < r.fitness < 1  # ensemble: a weighted mean of percentiles


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"restrict": "hidden_size=100"}, "outside the space"),
        ({"restrict": "depth=4"}, "unknown restriction field"),
        (
            {"space": "rnn", "fitness": "hidden_cov", "restrict": "hidden_size=256"},
            "no restriction",
        ),
        ({"fitness": "hidden_cov"}, "unknown metric 'hidden_cov'"),
    ],
)
def test_bad_bert_options(tmp_path: Path, tiny: dict, options: dict, message: str) -> None:
    kwargs = {"space": "bert", "fitness": "head_confidence", "out": str(tmp_path / "x"), **tiny}
    with pytest.raises(ConfigError, match=message):
        nas_engine.search(**{**kwargs, **options})
    assert not (tmp_path / "x").exists()


def test_cli_search_and_bad_restriction(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    code = search_main(
        [
            "--space", "bert", "--fitness", "head_confidence", "--budget", "3",
            "--strategy", "random", "--restrict", "deep_wide", "--batch-size", "2",
            "--bptt", "8", "--corpus", str(tiny_text(tmp_path)), "--out", str(out),
            "--no-progress",
        ]
    )  # fmt: skip
    assert code == 0
    for line in (out / "results.jsonl").read_text().splitlines():
        arch = json.loads(line)["arch"]
        assert arch["hidden_size"] == 256 and len(arch["encoder_layers"]) == 4
    capsys.readouterr()
    assert search_main(["--space", "bert", "--restrict", "hidden_size=7"]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "--restrict" in err


def tiny_text(folder: Path) -> Path:
    """A small text file: a corpus that loads in no time (the embedded one takes seconds)."""
    path = folder / "tiny.txt"
    path.write_text(
        "\n".join(" ".join(f"w{(i * 7 + j) % 40}" for j in range(12)) for i in range(40))
    )
    return path


# ------------------------------------------------------------------ nbbert
def entry(i: int, hidden: int, layers: list[tuple], glue: float) -> dict:
    """An entry of 2-head, one-deep layers given as (operation, parameter)."""
    return nbbert_entry(i, hidden, [(op, param, 2, 1) for op, param in layers], glue)


@pytest.fixture()
def tiny_benchmark(tmp_path: Path) -> Path:
    entries = [
        entry(0, 16, [("SA", "SDP")], 60.0),
        entry(1, 32, [("SA", "WMA"), ("DSC", 5)], 65.0),
        entry(2, 32, [("LT", "DFT"), ("SA", "SDP"), ("LT", "DCT")], 70.0),
        entry(3, 16, [("DSC", 9), ("LT", "DFT")], 62.0),
        {**entry(4, 16, [("SA", "SDP")], 0.0), "completed": False},
    ]
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(entries))
    return path


def test_nbbert_command(tmp_path: Path, tiny_benchmark: Path, capsys) -> None:
    out = tmp_path / "out"
    proc = run_module(
        "nas_engine.benchmark", "nbbert", "--benchmark", str(tiny_benchmark),
        "--metrics", "nonembedding_params,head_confidence", "--batch-size", "2", "--bptt", "8",
        "--corpus", str(tiny_text(tmp_path)), "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "kendall_tau" in proc.stdout and "nonembedding_params" in proc.stdout
    scores = pd.read_csv(out / "scores.csv")
    assert list(scores["id"]) == [0, 1, 2, 3]  # the entry not completed is skipped
    corr = json.loads((out / "correlations.json").read_text())
    # an independent Kendall tau of the recorded values with GLUE
    tau = stats.kendalltau(scores["nonembedding_params"], scores["glue"]).statistic
    assert corr["nonembedding_params"]["kendall_tau"] == pytest.approx(tau)
    assert corr["head_confidence"]["n"] == 4 and corr["head_confidence"]["failed"] == 0
    assert (out / "scatter_head_confidence.png").is_file() and (out / "run.json").is_file()
    assert benchmark_main(["nbbert", "--benchmark", str(tiny_benchmark), "--out", str(out)]) == 2
    assert "already holds" in capsys.readouterr().err


def test_nbbert_restriction_and_bad_input(tmp_path: Path, tiny_benchmark: Path, capsys) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([entry(0, 16, [("SA", "XYZ")], 60.0)]))
    with pytest.raises(BenchmarkError, match="bad operation_parameter 'XYZ'"):
        read_benchmark(bad)
    assert benchmark_main(["nbbert", "--benchmark", str(bad)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    code = benchmark_main(
        ["nbbert", "--benchmark", str(tiny_benchmark), "--restrict", "hidden_size=256"]
    )
    assert code == 2 and "no benchmark entry inside the restriction" in capsys.readouterr().err
    code = benchmark_main(["nbbert", "--benchmark", str(tiny_benchmark), "--metrics", "hidden_cov"])
    assert code == 2 and "unknown metric 'hidden_cov'" in capsys.readouterr().err


def test_reads_the_dev_benchmark() -> None:
    entries = read_benchmark(require(BENCHMARK_DEV))
    assert len(entries) == 250
    assert all(50 < e.glue < 80 and math.isfinite(e.glue) for e in entries)
    assert entries[0].config.hidden_size == 256 and entries[0].config.num_layers == 4
