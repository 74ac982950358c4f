"""The run report (nas_engine.report): synthetic run folders in the records' real shape,
and one real tiny search, reported without a browser."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from matplotlib.figure import Figure

import nas_engine
from nas_engine.report import main, write_report

DEAD = "degenerate cell: layer 1's states are all zero (a dead cell)"
CELL = {"h_new_0": {"op": "linear", "input": ["h_prev_0", "x"]}}


def record(index: int, fitness: float | None, origin: str = "sample") -> dict:
    """A results.jsonl record as nas_engine.result.Result writes it."""
    return {
        "index": index,
        "arch_id": f"arch{index:012d}",
        "arch": CELL,
        "origin": origin,
        "status": "ok" if fitness is not None else "failed",
        "fitness": fitness,
        "metrics": {"hidden_cov": fitness, "params": 1000.0 + index} if fitness is not None else {},
        "details": {"stress_growth": -1.0, "stability_flagged": False},
        "error": None if fitness is not None else DEAD,
        "seconds": 0.01,
    }


def make_run(out: Path, *, objectives: bool = False, summary: bool = True) -> list[dict]:
    """An evolution run of 30 records: samples, then mutations of earlier ones; two failed,
    one flagged by the stability guard and one with an extra metric recorded as null."""
    out.mkdir(parents=True)
    records = []
    for i in range(30):
        origin = "sample" if i < 10 else f"mutate:rewire:arch{i - 10:012d}"
        records.append(record(i, None if i in (3, 17) else -1000.0 / (i + 1), origin))
    records[5]["details"] = {"stress_growth": 2.5, "stability_flagged": True}
    records[8]["details"]["metric_errors"] = {"jacob_cov": "singular matrix"}
    config = {
        "space": "rnn",
        "strategy": "nsga2" if objectives else "evolution",
        "fitness": "hidden_cov",
        "objectives": ["hidden_cov", "params:min"] if objectives else [],
        "budget": 30,
        "population": 10,
        "stability_threshold": 1.0,
    }
    (out / "config.json").write_text(json.dumps(config))
    lines = "".join(json.dumps(r) + "\n" for r in records)
    (out / "results.jsonl").write_text(lines)
    proposals = [
        {"n": r["index"], "key": r["arch_id"], "origin": r["origin"], "after": r["index"]}
        for r in records
    ]
    (out / "proposals.jsonl").write_text("".join(json.dumps(p) + "\n" for p in proposals))
    if summary:
        (out / "summary.json").write_text(
            json.dumps({"config": config, "stopped_by": "interrupted", "resumed_from": None})
        )
    return records


def top_ids(records: list[dict], k: int) -> list[str]:
    ok = [r for r in records if r["fitness"] is not None and not r["details"]["stability_flagged"]]
    return [r["arch_id"] for r in sorted(ok, key=lambda r: -r["fitness"])[:k]]


def draw(arch: dict, png: Path) -> None:
    fig = Figure(figsize=(1, 1))
    fig.add_subplot().plot([0, 1], [0, 1])
    fig.savefig(png)


def check_files(out: Path) -> str:
    """The report's two files exist; the HTML loads nothing, the Markdown's images exist."""
    page = (out / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", page)
    assert all(
        src.startswith("data:image/png;base64,") for src in re.findall(r'src="([^"]*)"', page)
    )
    assert "<script" not in page and "<link" not in page
    assert "(failed)</h2>" not in page  # no section raised
    md = (out / "report.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert images and all((out / image).is_file() for image in images)
    return page


def test_report_of_an_interrupted_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    records = make_run(out)
    html_path, md_path = write_report(out, describe=lambda arch: "h' = L(h, x)", draw=draw, top_k=5)
    assert (html_path, md_path) == (out / "report.html", out / "report.md")
    page = check_files(out)
    for arch_id in top_ids(records, 5):
        assert arch_id in page
    assert top_ids(records, 6)[5] not in page.split("<h2>Fitness distribution")[0]
    assert html.escape(DEAD) in page and "singular matrix" in page
    assert "stability guard: stress_growth &gt; 1.0" in page
    assert "interrupted" in page and "h&#x27; = L(h, x)" in page
    assert "Evolution" in page  # the population, rebuilt from the records
    md = md_path.read_text()
    assert f"| failed | {DEAD} | 2 |" in md
    assert len(list((out / "report_files").glob("arch_*.png"))) == 5


def test_report_without_summary(tmp_path: Path) -> None:
    out = tmp_path / "killed"
    records = make_run(out, objectives=True, summary=False)
    with (out / "results.jsonl").open("a") as f:
        f.write('{"index": 30, "arch_id": "cut sh')  # a line cut short by SIGKILL
    write_report(out)
    page = check_files(out)
    assert "No summary.json" in page and top_ids(records, 1)[0] in page
    assert "Pareto front" in page and (out / "report_files" / "pareto.png").is_file()
    assert "1 line(s) of results.jsonl could not be read" in page


def test_confirmation_and_a_failing_hook(tmp_path: Path) -> None:
    out = tmp_path / "confirmed"
    records = make_run(out)
    rows = [
        {"rank": rank, "arch_id": arch_id, "fitness": -rank, "status": "ok", "error": None,
         "valid_loss": 5.0 + rank, "test_loss": 5.0 + rank, "test_ppl": 150.0}
        for rank, arch_id in enumerate(top_ids(records, 3), start=1)
    ]  # fmt: skip
    (out / "confirmed.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    def broken(arch: dict, png: Path) -> None:
        raise RuntimeError("no drawing today")

    write_report(out, draw=broken, top_k=3)
    page = check_files(out)
    assert "Confirmation training" in page and "(n = 3" in page and "n &lt; 5" in page
    assert "no drawing today" in page


def test_not_a_run_exits_2(tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path)]) == 2
    assert main([str(tmp_path / "absent")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") for line in err)
    assert not (tmp_path / "report.html").exists()


def test_cli_reports_a_real_tiny_search(tmp_path: Path, capsys) -> None:
    """A real run folder, so that a change in the records' shape shows here."""
    corpus = tmp_path / "tiny.txt"
    corpus.write_text("\n".join(" ".join(f"w{(i * j) % 50}" for j in range(20)) for i in range(60)))
    out = tmp_path / "search"
    sizes = {"embedding_size": 8, "hidden_size": 8, "layers": 1, "batch_size": 2, "bptt": 4}
    nas_engine.search(
        budget=12, population=4, tournament=2, corpus=str(corpus), out=str(out), **sizes
    )
    capsys.readouterr()
    assert main([str(out), "--top-k", "3"]) == 0
    assert capsys.readouterr().out.split() == [str(out / "report.html"), str(out / "report.md")]
    page = check_files(out)
    top = json.loads((out / "summary.json").read_text())["top"][:3]
    assert top and all(t["arch_id"] in page for t in top)


def test_report_is_rewritten_whole(tmp_path: Path) -> None:
    out = tmp_path / "run"
    make_run(out)
    write_report(out)
    first = [(out / name).read_text() for name in ("report.html", "report.md")]
    write_report(out)
    assert [(out / name).read_text() for name in ("report.html", "report.md")] == first
    assert not list(out.glob("*.tmp"))
