"""A search's results as data: :class:`Run`, what ``nas_engine.search`` returns and
``nas_engine.load_run(OUT)`` reads back from a run folder."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, overload

import pandas as pd

from .config import SearchConfig
from .engine import ranking
from .errors import ConfigError
from .fitness import Fitness
from .result import Result
from .storage import RunFolderError, RunStore

# Record fields that are not metrics or details: the first columns of the data frame.
RECORD_COLUMNS = ("index", "arch_id", "status", "fitness", "origin", "error", "seconds")


@dataclass(frozen=True, eq=False)
class Run(Sequence[Result]):
    """One search: its configuration, every result record (in evaluation order; the run is
    also a sequence of them), its summary, and the final ranking.

    ``top(k)`` ranks as the summary does: ok results the stability guard did not flag, best
    first, each with its final fitness (for an ensemble fitness, recomputed against every ok
    result of the run, not the value recorded when it was scored)."""

    out: Path
    config: SearchConfig
    results: list[Result]
    summary: Mapping[str, Any] | None
    fitness: Fitness

    def top(self, k: int = 10) -> list[Result]:
        """The best ``k`` results, each with its final fitness."""
        return [dataclasses.replace(r, fitness=final) for r, final in self.ranking()[:k]]

    def ranking(self) -> list[tuple[Result, float]]:
        """Every ranked result with its final fitness, best first."""
        return ranking(self.results, self.fitness)

    @property
    def best(self) -> Result | None:
        """The run's best result (``top(1)[0]``), or None when nothing was ranked."""
        top = self.top(1)
        return top[0] if top else None

    @property
    def answer(self) -> Result | None:
        """The two-stage answer (the fitness ranking confirmed by short training, see
        ``--confirm-top``), or None where the run has none."""
        chosen = (self.summary or {}).get("answer")
        if not chosen:
            return None
        final = dict((r.arch_id, f) for r, f in self.ranking())
        for result in self.results:
            if result.arch_id == chosen["arch_id"]:
                return dataclasses.replace(result, fitness=final.get(result.arch_id))
        return None

    def to_dataframe(self) -> pd.DataFrame:
        """One row per evaluated architecture, failed ones included: the record's fields, one
        column per metric (named as the metric) and one per detail (``details.NAME`` where a
        detail has a metric's name)."""
        metric_names = list(dict.fromkeys(n for r in self.results for n in r.metrics))
        rows = []
        for r in self.results:
            row: dict[str, Any] = {name: getattr(r, name) for name in RECORD_COLUMNS}
            row.update({name: r.metrics.get(name) for name in metric_names})
            for name, value in r.details.items():
                column = f"details.{name}" if name in row else name
                row[column] = value if not isinstance(value, (dict, list)) else json.dumps(value)
            rows.append(row)
        return pd.DataFrame(rows, columns=_columns(rows))

    # a sequence of its results, as search() returned a list before
    def __len__(self) -> int:
        return len(self.results)

    @overload
    def __getitem__(self, index: int) -> Result: ...

    @overload
    def __getitem__(self, index: slice) -> list[Result]: ...

    def __getitem__(self, index: int | slice) -> Result | list[Result]:
        return self.results[index]

    def __iter__(self) -> Iterator[Result]:
        return iter(self.results)

    def __eq__(self, other: object) -> bool:
        """Two runs (or a run and a list) are equal when their records are."""
        if isinstance(other, Run):
            return self.results == other.results
        if isinstance(other, list):
            return self.results == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  (equal by records, which are mutable lists)


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(name for row in rows for name in row)) or list(RECORD_COLUMNS)


def load_run(out: str | Path) -> Run:
    """The run in folder ``out`` (finished, interrupted or still going): its ``config.json``,
    ``results.jsonl`` and, where written, ``summary.json``. Raises :class:`ConfigError` for a
    folder that holds no run."""
    root = Path(out)
    try:
        stored = json.loads((root / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{str(root)!r} holds no run (no config.json)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{str(root)!r}: unreadable config.json ({exc})") from None
    known = {f.name for f in fields(SearchConfig)}
    settings = {
        name: tuple(value) if isinstance(value, list) else value
        for name, value in stored.items()
        if name in known
    }
    config = SearchConfig(**{**settings, "out": str(root)})
    try:
        results = RunStore(root).read_results()
    except RunFolderError as exc:
        raise ConfigError(str(exc)) from None
    summary_path = root / "summary.json"
    summary = (
        json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else None
    )
    return Run(root, config, results, summary, config.parsed_fitness)
