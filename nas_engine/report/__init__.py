"""A run's report: ``OUT/report.html`` (one self-contained file) and ``OUT/report.md``.

It reads only the files of the run folder (``config.json``, ``results.jsonl``,
``proposals.jsonl``, ``summary.json``, ``confirmed.jsonl``, ``pareto.png``), never the engine's
objects, so it works for any folder: finished, interrupted, resumed, still running, or killed
before its summary was written (then what the summary would say is derived from the records).
``python -m nas_engine.report OUT`` writes it for an existing folder.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import math
import os
import re
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # no pyplot: no global backend or figure state to touch

from ..errors import ConfigError
from ..plugins import load_plugins
from ..spaces import SearchSpace, get_space

FLAGGED = "stability_flagged"  # nas_engine.result's details key, copied: this module reads files

Section = tuple[str, list[Any]]  # a title and its items: str (a paragraph), DataFrame or Img


class NotARunError(ValueError):
    """The folder holds neither config.json nor results.jsonl."""


@dataclass(frozen=True)
class Img:
    """An image file of the report: embedded in the HTML, linked from the Markdown."""

    path: Path
    caption: str = ""


def _flagged(r: dict) -> bool:
    return bool((r.get("details") or {}).get(FLAGGED))


def _ranked(r: dict) -> bool:
    """Ok with a fitness and not flagged: what the engine ranks, breeds from and answers."""
    return r.get("status") == "ok" and r.get("fitness") is not None and not _flagged(r)


def _read_jsonl(path: Path) -> tuple[list[dict], int]:
    """The records and how many lines could not be read (a last line still being written)."""
    rows, bad = [], 0
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    for line in filter(str.strip, text.splitlines()):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            bad += 1
    return [r for r in rows if isinstance(r, dict)], bad


@dataclass
class Run:
    """The folder's files; each is optional but config.json or results.jsonl."""

    out: Path
    config: dict
    records: list[dict]
    summary: dict | None
    proposals: int
    confirmed: list[dict]
    unreadable: int

    @classmethod
    def load(cls, out: Path) -> Run:
        if not any((out / name).is_file() for name in ("config.json", "results.jsonl")):
            raise NotARunError(f"{out} is not a run folder (no config.json or results.jsonl)")

        def read_json(name: str) -> dict | None:
            try:
                data = json.loads((out / name).read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                return None
            return data if isinstance(data, dict) else None

        summary = read_json("summary.json")
        config = read_json("config.json") or (summary or {}).get("config") or {}
        records, unreadable = _read_jsonl(out / "results.jsonl")
        proposals = len(_read_jsonl(out / "proposals.jsonl")[0])
        confirmed = _read_jsonl(out / "confirmed.jsonl")[0]
        return cls(out, config, records, summary, proposals, confirmed, unreadable)

    @property
    def s(self) -> dict:
        return self.summary or {}

    @property
    def ranked(self) -> list[dict]:
        return [r for r in self.records if _ranked(r)]

    @property
    def ensemble(self) -> bool:
        """A rank-based fitness: each record's value is against the results before it."""
        spec = str(self.s.get("fitness_spec") or self.config.get("fitness", ""))
        return bool(self.config.get("objectives")) or "+" in spec

    def top(self, k: int) -> list[dict]:
        """The top ``k``: the summary's final ranking for a rank-based fitness, else the
        records sorted as the engine sorts them (best fitness, then earlier)."""
        if self.ensemble and self.s.get("top") is not None:
            return [{**t, "arch": t.get("recipe", {})} for t in self.s["top"][:k]]
        ranked = sorted(self.ranked, key=lambda r: (-r["fitness"], r["index"]))[:k]
        return [{**r, "rank": i} for i, r in enumerate(ranked, start=1)]


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e12 else f"{v:.6g}"
    if isinstance(v, (list, dict, bool)):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def _heavy(values: list[float]) -> bool:
    """A long tail (hidden_cov reaches -1e5 where the best are -1e2): use a symlog axis."""
    mags = [abs(v) for v in values]
    return bool(mags) and max(mags) > 100 * max(min(mags), 1.0)


class _Report:
    """Builds the sections; each a method that returns None when it does not apply."""

    def __init__(self, run: Run, describe, draw, top_k: int) -> None:
        self.run, self.describe, self.draw, self.top_k = run, describe, draw, top_k
        self.files = run.out / "report_files"
        self.files.mkdir(exist_ok=True)
        for old in self.files.glob("*.png"):  # a previous report's: its top K may differ
            old.unlink()

    def figure(self, panels: int = 1, height: float = 3.4) -> tuple[Figure, list]:
        fig = Figure(figsize=(9.6 if panels > 1 else 8.5, height), dpi=100)
        return fig, [fig.add_subplot(1, panels, i + 1) for i in range(panels)]

    def save(self, fig: Figure, name: str, caption: str) -> Img:
        fig.tight_layout()
        fig.savefig(self.files / f"{name}.png")
        return Img(self.files / f"{name}.png", caption)

    def outcome(self) -> Section:
        """How the run stopped, its counts and its answer: what a reader wants first."""
        run, s, recs = self.run, self.run.summary, self.run.records
        if s is None:
            how = (
                "**No summary.json**: the run is still going, or it was killed (SIGKILL, a "
                "crash) before writing one. Everything below is derived from results.jsonl."
            )
        else:
            how = f"Stopped by: **{s.get('stopped_by', '?')}**."
            if s.get("stopped_by") == "interrupted":
                how += " (Ctrl-C or SIGTERM; `--resume` continues it.)"
            if s.get("resumed_from") is not None:
                how += f" Resumed: its first {s['resumed_from']} results are an earlier session's."
        failed = sum(r.get("status") != "ok" for r in recs)
        counts = {
            "budget": run.config.get("budget"),
            "proposed": run.proposals,
            "evaluated": len(recs),
            "ok": len(recs) - failed,
            "ranked": len(run.ranked),
            "flagged by stability guard": sum(
                r.get("status") == "ok" and _flagged(r) for r in recs
            ),
            "failed": failed,
            "scoring seconds (sum)": round(sum(r.get("seconds") or 0 for r in recs), 3),
            "wall seconds (last session)": run.s.get("total_seconds"),
        }
        items: list[Any] = [how, pd.DataFrame([counts])]
        if run.proposals > len(recs):
            items.append(
                f"{run.proposals - len(recs)} proposed architecture(s) have no result yet (in "
                "flight when the run stopped; `--resume` scores them first)."
            )
        if run.unreadable:
            items.append(f"{run.unreadable} line(s) of results.jsonl could not be read.")
        best = run.top(1)
        first = f"`{best[0]['arch_id']}`" if best else "none"
        a = run.s.get("answer")
        if s is None:
            items.append(f"**Answer**: not decided yet (no summary.json). Best so far: {first}.")
        elif "answer" not in s:
            items.append(
                "**Answer**: none: the run trained nothing to confirm (`--confirm-top`). The "
                f"best by training-free fitness is {first}, unconfirmed."
            )
        elif a is None:
            items.append("**Answer**: none: no confirmed training reached a finite loss.")
        else:
            items.append(
                f"**Answer: `{a['arch_id']}`** (fitness rank {a.get('fitness_rank')}, confirmed "
                f"loss {_fmt(a.get('confirmed_loss'))})."
            )
            items.append(f"The answer's rule: {s.get('answer_rule', 'not recorded')}.")
        return "Outcome", items

    def progress(self) -> Section:
        recs, every = self.run.records, [(r["index"] + 1, r["fitness"]) for r in self.run.ranked]
        if not every:
            return "Progress", ["No ranked result yet."]
        fig, (a, b) = self.figure(2)
        best, xs, ys, ts = -math.inf, [], [], []
        for r, t in zip(recs, np.cumsum([r.get("seconds") or 0.0 for r in recs]), strict=True):
            best = max(best, r["fitness"]) if _ranked(r) else best
            if best > -math.inf:
                xs.append(r["index"] + 1), ys.append(best), ts.append(t)
        a.scatter(*zip(*every, strict=True), s=5, color="0.75", label="each ranked result")
        for ax, x, label in ((a, xs, "evaluation number"), (b, ts, "cumulative scoring seconds")):
            ax.step(x, ys, where="post", color="C0", label="best so far")
            ax.set(xlabel=label, ylabel="fitness")
            ax.set_yscale("symlog", linthresh=1) if _heavy([f for _, f in every]) else None
        a.legend(fontsize=8)
        caption = "Best fitness so far against the evaluation number and the summed scoring time"
        items: list[Any] = [self.save(fig, "progress", caption + " (records hold no clock time).")]
        if self.run.ensemble:
            items.append("Rank-based fitness: each value is against the results before it.")
        return "Progress", items

    def top_table(self) -> Section:
        k, top = self.top_k, self.run.top(self.top_k)
        if not top:
            return f"Top {k}", ["No ranked result."]
        metrics = sorted({m for t in top for m in (t.get("metrics") or {})})
        rows = []
        for t in top:
            origin = str(t.get("origin") or "")
            row = {"rank": t["rank"], "arch_id": t["arch_id"], "eval #": t["index"]}
            row |= {"origin": origin.rsplit(":", 1)[0] if ":" in origin else origin}
            row |= {"fitness": t["fitness"], **{m: t["metrics"].get(m) for m in metrics}}
            if self.describe is not None:
                formula, error = _call(self.describe, t["arch"])
                row["formula"] = f"(describe failed: {error})" if error else str(formula)
            if self.draw is not None:  # a draw that draws nothing (returns False) leaves "–"
                png = self.files / ("arch_" + re.sub(r"[^\w-]", "_", t["arch_id"]) + ".png")
                error = _call(self.draw, t["arch"], png)[1]
                row["drawing"] = Img(png) if png.exists() else error and f"(draw failed: {error})"
            rows.append(row)
        table = pd.DataFrame(rows)
        if "drawing" in table and table["drawing"].isna().all():
            table = table.drop(columns="drawing")  # a space without drawings
        items: list[Any] = [table]
        same = sum(t["fitness"] == u["fitness"] for t, u in zip(top[1:], top, strict=False))
        if same:
            items.append(
                f"{same} row(s) have exactly the fitness of the row above: the metric does not "
                "tell them apart (often the same computation under another graph)."
            )
        return f"Top {k}", items

    def distribution(self) -> Section | None:
        ok = [
            r for r in self.run.records if r.get("status") == "ok" and r.get("fitness") is not None
        ]
        if not ok:
            return None
        groups = [
            [r["fitness"] for r in ok if not _flagged(r)],
            [r["fitness"] for r in ok if _flagged(r)],
        ]
        values = np.array(groups[0] + groups[1], dtype=float)
        fig, (ax,) = self.figure(height=3.0)
        bins: Any = 30
        if _heavy(list(values)) and values.max() > values.min():  # bins even on a symlog axis
            t = np.sign(values) * np.log10(1 + np.abs(values))
            edges = np.linspace(t.min(), t.max(), 31)
            bins = np.sign(edges) * (10 ** np.abs(edges) - 1)
            ax.set_xscale("symlog", linthresh=1)
        labels = [f"ranked ({len(groups[0])})", f"flagged by stability guard ({len(groups[1])})"]
        n = 2 if groups[1] else 1
        ax.hist(groups[:n], bins=bins, stacked=True, label=labels[:n], color=["C0", "C1"][:n])
        ax.set(xlabel="recorded fitness (higher is better)", ylabel="architectures")
        ax.legend(fontsize=8)
        return "Fitness distribution", [self.save(fig, "fitness_hist", "Every ok result.")]

    def evolution(self) -> Section | None:
        """The population over the run and how often each mutation kind beat its parent. Aging
        evolution's population is its last ``population`` ranked results, so the records
        rebuild it exactly (the strategy's logbook, when summary.json has it, is drawn over)."""
        run, recs = self.run, self.run.records
        if not any(str(r.get("origin", "")).startswith("mutate:") for r in recs):
            return None
        items: list[Any] = []
        logbook = (run.s.get("strategy") or {}).get("population") or []
        strategy = run.s.get("search_strategy") or run.config.get("strategy")
        if strategy == "evolution":
            size, rows = int(run.config.get("population") or 20), []
            pop: deque = deque(maxlen=size)
            for r in recs:
                pop.append(r["fitness"]) if _ranked(r) else None
                if pop:
                    rows.append((r["index"] + 1, *np.quantile(pop, [0.25, 0.5, 0.75]), max(pop)))
            x, q1, median, q3, best = (np.array(c) for c in zip(*rows, strict=True))
            fig, (ax,) = self.figure()
            ax.fill_between(x, q1, q3, color="C0", alpha=0.25, label="population quartiles")
            ax.plot(x, median, color="C0", label="population median")
            ax.plot(x, best, color="C2", label="population max")
            if logbook and "max" in logbook[0]:
                book = [p["evaluated"] for p in logbook], [p["max"] for p in logbook]
                ax.plot(*book, "k.", label="max in the strategy's logbook")
            ax.set_yscale("symlog", linthresh=1) if _heavy([*q1, *best]) else None
            ax.axvline(size, color="0.6", ls=":", label="end of the random initial samples")
            ax.set(xlabel="evaluation number", ylabel="fitness")
            ax.legend(fontsize=8)
            caption = f"Aging evolution's population: the last {size} ranked results."
            items.append(self.save(fig, "population", caption))
        elif logbook:
            items += [f"The {strategy} strategy's logbook:", pd.DataFrame(logbook)]
        by_id, kinds = {r.get("arch_id"): r for r in recs}, {}
        for r in recs:
            parts = str(r.get("origin", "")).split(":")
            if parts[0] == "mutate" and len(parts) >= 3:
                parent, k = by_id.get(parts[2], {}), kinds.setdefault(parts[1], [0, 0, 0, 0])
                k[0], k[1], k[2] = k[0] + 1, k[1] + (r.get("status") != "ok"), k[2] + _flagged(r)
                k[3] += _ranked(r) and _ranked(parent) and r["fitness"] > parent["fitness"]
        columns = ["mutation", "children", "failed", "flagged", "beat parent", "beat parent %"]
        table = [(kind, *c, f"{100 * c[3] / c[0]:.0f}%") for kind, c in sorted(kinds.items())]
        if run.ensemble:  # values against different populations: "beat parent" means nothing
            columns, table = columns[:4], [row[:4] for row in table]
        return "Evolution", [*items, pd.DataFrame(table, columns=columns)]

    def pareto(self) -> Section | None:
        run, hv = self.run, self.run.s.get("hypervolume") or {}
        objectives = [str(o) for o in run.s.get("objectives") or run.config.get("objectives") or []]
        if len(objectives) < 2:
            return None
        names = [o.split(":")[0] for o in objectives]
        items: list[Any] = [f"Objectives: {', '.join(objectives)}."]
        if hv:
            ref = ", ".join(
                f"{k} = {_fmt(v)}" for k, v in (hv.get("reference_point") or {}).items()
            )
            items.append(
                f"Hypervolume {_fmt(hv.get('final'))} against the reference point {ref or '–'} "
                f"({hv.get('reference_rule', 'rule not recorded')})."
            )
        if run.s.get("pareto_front") is not None:
            front = [{"arch_id": p["arch_id"], **p["objectives"]} for p in run.s["pareto_front"]]
        else:
            items.append("Front derived from the records; an objective without :min is maximised.")
            signs = [-1 if o.endswith(":min") else 1 for o in objectives]
            points = [
                (r, [g * r["metrics"][m] for g, m in zip(signs, names, strict=True)])
                for r in run.ranked
                if all(r["metrics"].get(m) is not None for m in names)
            ]
            kept: list[tuple[dict, list]] = []  # best first: only a kept one can dominate
            for r, v in sorted(points, key=lambda rv: [-x for x in rv[1]]):
                if not any(all(a >= b for a, b in zip(w, v, strict=True)) for _, w in kept):
                    kept.append((r, v))
            front = [
                {"arch_id": r["arch_id"], **{m: r["metrics"][m] for m in names}} for r, _ in kept
            ]
        items.append(pd.DataFrame(front))
        if (run.out / "pareto.png").exists():
            items.append(Img(run.out / "pareto.png", "pareto.png, as the run drew it."))
        elif front:
            fig, (ax,) = self.figure(height=3.6)
            every = [r["metrics"] for r in run.ranked if all(m in r["metrics"] for m in names[:2])]
            ax.scatter([m[names[0]] for m in every], [m[names[1]] for m in every], s=6, color="0.7")
            ax.plot([p[names[0]] for p in front], [p[names[1]] for p in front], "o", color="C3")
            ax.set(xlabel=objectives[0], ylabel=objectives[1])
            items.append(self.save(fig, "pareto", "Ranked results; the Pareto front in red."))
        series = hv.get("series") or [
            (r.get("details") or {}).get("hypervolume") for r in run.records
        ]
        if any(v is not None for v in series):
            fig, (ax,) = self.figure(height=2.8)
            ax.plot(range(1, len(series) + 1), [math.nan if v is None else v for v in series])
            ax.set(xlabel="evaluation number", ylabel="hypervolume")
            items.append(self.save(fig, "hypervolume", "Hypervolume of the front so far."))
        return "Pareto front", items

    def confirmation(self) -> Section | None:
        conf = self.run.s.get("confirmation") or {}
        table = conf.get("table") or self.run.confirmed
        if not table and not conf:
            return None
        items: list[Any] = []
        if conf.get("interrupted"):
            items.append(f"Confirmation was interrupted after {conf.get('done')} training(s).")
        if not table:
            return "Confirmation training", items
        df = pd.DataFrame(table).sort_values("rank")
        df["loss"] = df["test_loss"].where(df["test_loss"].notna(), df["valid_loss"])
        ok = df[(df["status"] == "ok") & df["loss"].notna()]
        tau = ok["fitness"].corr(ok["loss"], method="kendall") if len(ok) >= 2 else None
        value = "undefined (tied values)" if tau is not None and math.isnan(tau) else _fmt(tau)
        line = f"Kendall tau, fitness vs trained loss: {value} (n = {len(ok)}; negative is good)"
        if len(ok) < 5:
            line += ". Caveat: with n < 5 the tau says next to nothing"
        cols = ["rank", "arch_id", "fitness", "status", "valid_loss", "test_loss", "test_ppl"]
        shown = df[[c for c in [*cols, "train_seconds", "error"] if c in df]]
        items += [shown.dropna(axis=1, how="all"), line + "."]
        if conf.get("recipe"):
            items.append(f"Training recipe: `{_fmt(conf['recipe'])}`")
        if len(ok):
            fig, (ax,) = self.figure(height=2.8)
            ax.plot(ok["rank"], ok["loss"], "o-", color="C0", label="confirmed")
            chosen = ok[ok["arch_id"] == (self.run.s.get("answer") or {}).get("arch_id")]
            ax.plot(chosen["rank"], chosen["loss"], "*", ms=14, color="C3", label="the answer")
            ax.set(xlabel="fitness rank (1 = best)", ylabel="trained loss (test, else valid)")
            ax.set_xticks(ok["rank"])
            ax.ticklabel_format(axis="y", useOffset=False)
            ax.legend(fontsize=8)
            items.append(self.save(fig, "confirmation", "Fitness rank against trained loss."))
        return "Confirmation training", items

    def failures(self) -> Section:
        """Failures grouped by reason, numbers masked (so 'constraint: 172896 parameters > ...'
        is one group), beside the stability guard's flags and metrics recorded as null."""
        measure = (self.run.s.get("stability_guard") or {}).get("measure", "stress_growth")
        guard = f"stability guard: {measure} > {self.run.config.get('stability_threshold', '?')}"
        groups: dict[tuple[str, str], list[tuple[dict, str]]] = {}
        for r in self.run.records:
            errors = []
            if r.get("status") != "ok":
                errors.append(("failed", r.get("error") or "(no reason recorded)"))
            elif _flagged(r):
                errors.append(("flagged (ok, not ranked)", guard))
            for metric, why in ((r.get("details") or {}).get("metric_errors") or {}).items():
                errors.append((f"metric {metric} null (ok)", str(why)))
            for kind, why in errors:
                masked = re.sub(r"(?<![\w.])-?\d+(\.\d+)?(e[-+]?\d+)?", "#", why)
                groups.setdefault((kind, masked), []).append((r, why))
        rows = [
            {
                "kind": kind,
                "reason": rs[0][1] if len({why for _, why in rs}) == 1 else masked,
                "count": len(rs),
                "examples": ", ".join(f"#{r['index']} {r['arch_id']}" for r, _ in rs[:3]),
            }
            for (kind, masked), rs in sorted(groups.items(), key=lambda g: -len(g[1]))
        ]
        return "Failures", [pd.DataFrame(rows)] if rows else ["None."]

    def settings(self) -> Section:
        pairs = [(k, _fmt(v)) for k, v in sorted(self.run.config.items())]
        half = (len(pairs) + 1) // 2  # two pairs of columns: a table half as long
        rows = [(*a, *b) for a, b in zip(pairs[:half], [*pairs[half:], ("", "")], strict=False)]
        items: list[Any] = [pd.DataFrame(rows, columns=["setting", "value", "setting ", "value "])]
        keys = ("corpus", "search_strategy", "fitness_rule", "execution")
        more = [(k, _fmt(self.run.s[k])) for k in keys if self.run.s.get(k) is not None]
        if more:
            items.append(pd.DataFrame(more, columns=["from summary.json", "value"]))
        return "Settings", items


def _call(fn: Callable, *args: Any) -> tuple[Any, str | None]:
    """A caller's describe or draw, and its error: shown in its cell, not ending the report."""
    try:
        return fn(*args), None
    except Exception as exc:  # noqa: BLE001
        return None, f"{type(exc).__name__}: {exc}"


CSS = """body{font:14px/1.45 system-ui,sans-serif;max-width:1120px;margin:24px auto;padding:0 16px;
color:#222}h1{font-size:22px}h2{font-size:17px;border-bottom:1px solid #ddd;margin-top:28px}
table{border-collapse:collapse;font-size:12.5px;margin:8px 0}th{background:#f3f3f3}
td,th{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}.wrap{overflow-x:auto}
figure{margin:8px 0}figcaption{color:#555;font-size:12.5px}img{max-width:100%}
td img{max-width:200px;max-height:240px}
code{background:#f5f5f5;padding:0 3px;overflow-wrap:anywhere}"""


def _html(title: str, sections: list[Section]) -> str:
    def uri(path: Path) -> str:
        return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")

    def cell(v: Any) -> str:
        if isinstance(v, Img):
            return f'<td><img alt="drawing" src="{uri(v.path)}"></td>'
        numeric = isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
        return f"<td{' class=n' if numeric else ''}>{html.escape(_fmt(v))}</td>"

    def paragraph(text: str) -> str:  # the little Markdown the sections use: **bold**, `code`
        out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(text))
        return "<p>" + re.sub(r"`(.+?)`", r"<code>\1</code>", out) + "</p>"

    head = f"<title>{html.escape(title)}</title><style>{CSS}</style>"
    parts = [f"<!doctype html><html><head><meta charset=utf-8>{head}</head><body>"]
    parts.append(f"<h1>{html.escape(title)}</h1>")
    for name, items in sections:
        parts.append(f"<h2>{html.escape(name)}</h2>")
        for item in items:
            if isinstance(item, pd.DataFrame):
                th = "".join(f"<th>{html.escape(str(c))}</th>" for c in item.columns)
                rows = item.astype(object).itertuples(index=False)
                body = "".join("<tr>" + "".join(map(cell, row)) + "</tr>" for row in rows)
                parts.append(f"<div class=wrap><table><tr>{th}</tr>{body}</table></div>")
            elif isinstance(item, Img):
                caption = html.escape(item.caption)
                parts.append(f'<figure><img alt="{caption}" src="{uri(item.path)}">')
                parts.append(f"<figcaption>{caption}</figcaption></figure>")
            else:
                parts.append(paragraph(str(item)))
    return "\n".join(parts) + "\n</body></html>\n"


def _markdown(title: str, sections: list[Section], out: Path) -> str:
    def link(img: Img, alt: str) -> str:
        return f"![{alt}]({Path(os.path.relpath(img.path, out)).as_posix()})"

    def cell(v: Any) -> str:
        return link(v, "drawing") if isinstance(v, Img) else _fmt(v).replace("|", "\\|")

    lines = [f"# {title}", ""]
    for name, items in sections:
        lines += [f"## {name}", ""]
        for item in items:
            if isinstance(item, pd.DataFrame):
                lines.append("| " + " | ".join(map(str, item.columns)) + " |")
                lines.append("|" + "---|" * len(item.columns))
                for row in item.astype(object).itertuples(index=False):
                    lines.append("| " + " | ".join(map(cell, row)) + " |")
            elif isinstance(item, Img):
                lines.append(f"{link(item, item.caption)}\n\n*{item.caption}*")
            else:
                lines.append(str(item))
            lines.append("")
    return "\n".join(lines)


def _write_atomic(path: Path, text: str) -> None:
    """A reader (or a browser reloading it) never sees half a report."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_report(
    out: Path,
    *,
    describe: Callable[[dict], str] | None = None,
    draw: Callable[[dict, Path], None] | None = None,
    top_k: int = 10,
) -> tuple[Path, Path]:
    """Write ``OUT/report.html`` and ``OUT/report.md`` (its images in ``OUT/report_files/``)
    and return their paths. ``describe(arch)`` gives a record's ``arch`` as a formula and
    ``draw(arch, png_path)`` draws it: the search space knows how, this module does not.
    A section that fails on an odd record shows its error instead of losing the report.
    Raises :class:`NotARunError` for a folder that is not a run."""
    out = Path(out)
    report = _Report(Run.load(out), describe, draw, top_k)
    sections = []
    names = "outcome progress top_table distribution evolution pareto confirmation failures"
    for build in [getattr(report, name) for name in (names + " settings").split()]:
        try:
            section = build()
        except Exception as exc:  # noqa: BLE001
            section = (f"{build.__name__} (failed)", [f"{type(exc).__name__}: {exc}"])
        sections += [section] if section is not None else []
    cfg = report.run.config
    aim = (
        f"objectives {','.join(cfg['objectives'])}" if cfg.get("objectives") else cfg.get("fitness")
    )
    title = f"Run report: {out.resolve().name} ({cfg.get('space')}, {cfg.get('strategy')}, {aim})"
    html_path, md_path = out / "report.html", out / "report.md"
    _write_atomic(html_path, _html(title, sections))
    _write_atomic(md_path, _markdown(title, sections, out))
    return html_path, md_path


def space_hooks(
    out: Path, space: SearchSpace | None = None
) -> tuple[Callable[[dict], str] | None, Callable[[dict, Path], bool] | None]:
    """The run's space's own description and drawing of a record's architecture (the space
    and plugins named by ``config.json`` where ``space`` is not given); (None, None) where
    the folder names no space this process knows."""
    if space is None:
        try:
            stored = json.loads((Path(out) / "config.json").read_text(encoding="utf-8"))
            load_plugins(tuple(stored.get("plugins") or ()))
            space = get_space(stored.get("space", "rnn"))
        except (OSError, ValueError, KeyError, TypeError):
            return None, None

    def describe(record: dict) -> str:
        return space.describe(space.validate(record))

    def draw(record: dict, path: Path) -> bool:
        return space.draw(space.validate(record), path)

    return describe, draw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nas_engine.report",
        description="Write report.html and report.md into a search's run folder.",
    )
    parser.add_argument("out", type=Path, help="the run folder (a search's --out)")
    parser.add_argument("--top-k", type=int, default=10, help="rows of the top table (default 10)")
    args = parser.parse_args(argv)
    try:
        describe, draw = space_hooks(args.out)
        paths = write_report(args.out, describe=describe, draw=draw, top_k=args.top_k)
    except (NotARunError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(map(str, paths)))
    return 0
