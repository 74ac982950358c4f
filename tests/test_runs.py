"""Results as data: nas_engine.search returns a Run, nas_engine.load_run reads one back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import nas_engine
from nas_engine import ConfigError, Run, load_run

TINY = dict(hidden_size=16, embedding_size=16, batch_size=8, bptt=10, report=False)


@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory) -> Run:
    out = tmp_path_factory.mktemp("runs") / "run"
    return nas_engine.search(
        fitness="hidden_cov:2+synflow", budget=20, seed=0, out=str(out), metrics=("params",), **TINY
    )


def test_best_is_the_summary_winner_not_the_largest_recorded_value(ensemble_run: Run) -> None:
    summary = json.loads((ensemble_run.out / "summary.json").read_text())
    ranked_ids = [t["arch_id"] for t in summary["top"]]
    assert ensemble_run.best.arch_id == ranked_ids[0]
    assert [r.arch_id for r in ensemble_run.top(5)] == ranked_ids[:5]
    assert ensemble_run.top(1)[0].fitness == pytest.approx(summary["top"][0]["fitness"])


def test_the_run_is_its_results(ensemble_run: Run) -> None:
    assert len(ensemble_run) == 20 == len(ensemble_run.results)
    assert [r.index for r in ensemble_run] == list(range(20))
    assert ensemble_run[0] is ensemble_run.results[0]
    assert ensemble_run.answer is None  # no --confirm-top: no two-stage answer


def test_a_data_frame_row_per_architecture_a_column_per_metric(ensemble_run: Run) -> None:
    frame = ensemble_run.to_dataframe()
    assert len(frame) == 20
    assert {"hidden_cov", "synflow", "params", "status", "arch_id", "stress_growth"} <= set(frame)
    first = ensemble_run.results[0]
    row = frame.iloc[0]
    assert row["arch_id"] == first.arch_id
    assert row["hidden_cov"] == pytest.approx(first.metrics.get("hidden_cov"), nan_ok=True)


def test_load_run_reads_back_what_search_returned(ensemble_run: Run) -> None:
    again = load_run(ensemble_run.out)
    assert [r.arch_id for r in again] == [r.arch_id for r in ensemble_run]
    assert again.best.arch_id == ensemble_run.best.arch_id
    assert again.config.fitness == "hidden_cov:2+synflow"
    assert again.config.hidden_size == 16
    assert again.to_dataframe().equals(ensemble_run.to_dataframe())


def test_load_run_of_a_folder_without_a_run_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="holds no run"):
        load_run(tmp_path)


def test_answer_is_the_confirmed_pick(tmp_path: Path) -> None:
    run = nas_engine.search(
        budget=8, seed=1, out=str(tmp_path / "c"), confirm_top=2, confirm_steps=3,
        population=4, tournament=2, **TINY,
    )  # fmt: skip
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert summary["answer"] is not None
    assert run.answer.arch_id == summary["answer"]["arch_id"]
    assert load_run(tmp_path / "c").answer.arch_id == run.answer.arch_id


def test_each_record_carries_its_formula(ensemble_run: Run) -> None:
    from nas_engine.spaces import get_space

    space = get_space("rnn")
    for result in ensemble_run:
        assert result.description == space.describe(space.validate(result.arch))
        assert result.description.count("h_new =") == 1
    line = (ensemble_run.out / "results.jsonl").read_text().splitlines()[0]
    assert '"description":"' in line
