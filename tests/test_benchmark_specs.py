"""Fitness specs in the benchmarks' --metrics: each spec a column and a correlation, its
components scored once, its values the engine's rank-percentile blend."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import LOGS_ZIP, nbbert_entry, require
from scipy import stats

from nas_engine import ConfigError
from nas_engine.benchmarks.specs import parse_metric_columns, spec_column
from nas_engine.cli.benchmark import benchmark_main
from nas_engine.fitness import Fitness

SPEC = "head_confidence:2+params"
SPEC2 = "nonembedding_params+head_confidence:0.5"


def blend(scores: pd.DataFrame, weights: dict[str, float]) -> np.ndarray:
    """The rank-percentile ensemble, computed independently of nas_engine.fitness: per
    component the mid-rank percentile (rank - 1/2) / N (ties share their mean rank) of the
    value (every metric here is higher-is-better), then the weighted mean."""
    n = len(scores)
    total = sum(w * (stats.rankdata(scores[m]) - 0.5) / n for m, w in weights.items())
    return total / sum(weights.values())


# ------------------------------------------------------------------ parsing
def test_parse_metric_columns() -> None:
    chosen = parse_metric_columns(f"params, {SPEC} ,head_confidence,params,{SPEC2}", "bert")
    assert chosen.columns == ("params", SPEC, "head_confidence", SPEC2)
    # every metric once: the plain ones and the components, in order of first mention
    assert chosen.metrics == ("params", "head_confidence", "nonembedding_params")
    assert set(chosen.specs) == {SPEC, SPEC2}
    assert chosen.describe()[SPEC]["components"][0] == {
        "metric": "head_confidence",
        "direction": "higher",
        "weight": 2.0,
    }
    every = parse_metric_columns(f"all,{SPEC}", "bert")
    assert every.columns[-1] == SPEC and len(every.metrics) == len(every.columns) - 1
    assert parse_metric_columns("hidden_cov:2+params", "rnn").metrics == ("hidden_cov", "params")


@pytest.mark.parametrize(
    "text, needle",
    [
        ("nope", "unknown metric 'nope'"),
        ("head_confidence+nope", "unknown metric 'nope'"),
        ("head_confidence:0+params", "bad weight '0'"),
        ("params+params", "appears twice"),
        ("params+", "empty component"),
        (" , ", "names no metric"),
        ("hidden_cov+params", "unknown metric 'hidden_cov'"),  # an RNN metric in BERT
    ],
)
def test_parse_rejects_bad_specs(text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse_metric_columns(text, "bert")


def test_spec_column_missing_component_and_direction(temp_metric) -> None:
    """A row with a component missing has no fitness, and is not in the others' population;
    a lower-is-better component is ranked by its negated value."""
    low = temp_metric("test_lower_better", lambda probe: 0.0, direction="lower")
    scores = pd.DataFrame({"params": [1.0, 2.0, math.nan, 4.0], low: [4.0, 3.0, 2.0, 1.0]})
    fitness = Fitness.parse(f"params+{low}:3", "rnn")
    values = spec_column(scores, fitness)
    assert math.isnan(values[2])
    kept = scores.drop(index=2).assign(neg=lambda d: -d[low])
    expected = blend(kept.rename(columns={"neg": "lower"}), {"params": 1, "lower": 3})
    np.testing.assert_allclose(values[[0, 1, 3]], expected, rtol=0, atol=1e-15)


# ------------------------------------------------------------------ nbbert
def entry(i: int, hidden: int, layers: list[tuple], glue: float) -> dict:
    """An entry of SA:SDP layers given as (heads, feed-forward depth)."""
    return nbbert_entry(i, hidden, [("SA", "SDP", heads, ff) for heads, ff in layers], glue)


@pytest.fixture()
def tiny_bench(tmp_path: Path) -> tuple[Path, Path]:
    """Six tiny entries (two of the same network: tied params) and a tiny text corpus."""
    entries = [
        entry(0, 16, [(2, 1)], 60.0),
        entry(1, 32, [(2, 1), (4, 3)], 66.0),
        entry(2, 32, [(4, 3), (2, 1), (2, 3)], 70.0),
        entry(3, 16, [(2, 3), (2, 1)], 62.0),
        entry(4, 16, [(2, 1)], 61.0),
        entry(5, 32, [(4, 1), (4, 1)], 64.0),
    ]
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps(entries))
    text = tmp_path / "tiny.txt"
    text.write_text(
        "\n".join(" ".join(f"w{(i * 7 + j) % 40}" for j in range(12)) for i in range(40))
    )
    return bench, text


def run_nbbert(tiny_bench, out: Path, metrics: str, *extra: str) -> int:
    bench, text = tiny_bench
    return benchmark_main(
        ["nbbert", "--benchmark", str(bench), "--corpus", str(text), "--metrics", metrics,
         "--batch-size", "2", "--bptt", "8", "--network", "literal", "--out", str(out),
         "--no-progress", *extra]
    )  # fmt: skip


def test_nbbert_ensemble_column(tmp_path: Path, tiny_bench, capsys) -> None:
    out = tmp_path / "out"
    assert run_nbbert(tiny_bench, out, f"params,{SPEC},{SPEC2},params:2") == 0
    assert SPEC in capsys.readouterr().out
    scores = pd.read_csv(out / "scores.csv")
    assert list(scores["id"]) == list(range(6))
    for column in ("params", SPEC, SPEC2, "params:2", "head_confidence", "nonembedding_params"):
        assert scores[column].notna().all(), column
    assert scores["params"].nunique() == 5  # entries 0 and 4 tie
    np.testing.assert_allclose(
        scores[SPEC], blend(scores, {"head_confidence": 2, "params": 1}), rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(
        scores[SPEC2],
        blend(scores, {"nonembedding_params": 1, "head_confidence": 0.5}),
        rtol=0,
        atol=1e-12,
    )
    assert (scores["params:2"] == scores["params"]).all()  # one metric: its value, direction on
    # each spec's seconds: its components', each scored on its own
    np.testing.assert_allclose(
        scores[f"{SPEC}_seconds"], scores["head_confidence_seconds"] + scores["params_seconds"]
    )
    corr = json.loads((out / "correlations.json").read_text())
    assert list(corr) == ["params", SPEC, SPEC2, "params:2"]  # the listed columns only
    assert set(corr[SPEC]) == {"kendall_tau", "spearman_rho", "n", "failed", "seconds_per_arch"}
    assert corr[SPEC]["n"] == 6 and corr[SPEC]["failed"] == 0
    tau = stats.kendalltau(scores[SPEC], scores["glue"]).statistic
    assert corr[SPEC]["kendall_tau"] == pytest.approx(tau)
    run = json.loads((out / "run.json").read_text())
    # each metric scored once per entry, shared by the plain column and the specs
    assert run["settings"]["metrics"] == ["params", "head_confidence", "nonembedding_params"]
    assert run["columns"] == ["params", SPEC, SPEC2, "params:2"]
    assert run["specs"][SPEC]["canonical"] == SPEC
    assert (out / "scatter_head_confidence_2_params.png").is_file()


def test_nbbert_spec_together(tmp_path: Path, tiny_bench) -> None:
    """With --together the spec's components share one probe: the same values, and the spec's
    seconds are that probe's."""
    alone, shared = tmp_path / "alone", tmp_path / "shared"
    assert run_nbbert(tiny_bench, alone, SPEC) == 0
    assert run_nbbert(tiny_bench, shared, SPEC, "--together") == 0
    a, s = pd.read_csv(alone / "scores.csv"), pd.read_csv(shared / "scores.csv")
    np.testing.assert_allclose(s[SPEC], a[SPEC], rtol=0, atol=1e-12)
    assert (s[f"{SPEC}_seconds"] == s["params_seconds"]).all()
    assert list(json.loads((shared / "correlations.json").read_text())) == [SPEC]


@pytest.mark.parametrize(
    "metrics, needle",
    [
        ("head_confidence:x+params", "bad weight 'x'"),
        ("head_confidence+hidden_cov", "unknown metric 'hidden_cov'"),
        ("params+params", "appears twice"),
    ],
)
def test_nbbert_bad_spec(tmp_path: Path, tiny_bench, capsys, metrics: str, needle: str) -> None:
    out = tmp_path / "out"
    assert run_nbbert(tiny_bench, out, metrics) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and err.startswith("error: ")
    assert not out.exists()


# ------------------------------------------------------------------ nbnlp
def test_nbnlp_ensemble_column(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    with zipfile.ZipFile(require(LOGS_ZIP)) as zf:
        for name in sorted(n for n in zf.namelist() if n.endswith(".json"))[:5]:
            (folder / name).write_bytes(zf.read(name))
    spec = "hidden_cov:3+params"
    out = tmp_path / "out"
    code = benchmark_main(
        ["nbnlp", "--logs", str(folder), "--metrics", f"{spec},params", "--out", str(out),
         "--no-progress", "--embedding-size", "8", "--hidden-size", "8", "--batch-size", "4",
         "--bptt", "6"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    scores = pd.read_csv(out / "scores.csv")
    np.testing.assert_allclose(
        scores[spec], blend(scores, {"hidden_cov": 3, "params": 1}), rtol=0, atol=1e-12
    )
    corr = json.loads((out / "correlations.json").read_text())
    assert list(corr) == [spec, "params"]
    tau = stats.kendalltau(scores[spec], scores["test_loss"]).statistic
    assert corr[spec]["kendall_tau"] == pytest.approx(tau) and corr[spec]["n"] == 5
    capsys.readouterr()
    assert benchmark_main(["nbnlp", "--logs", str(folder), "--metrics", "hidden_cov+zzz"]) == 2
    err = capsys.readouterr().err
    assert "unknown metric 'zzz'" in err and err.count("\n") == 1
