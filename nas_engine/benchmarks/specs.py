"""Fitness specs as benchmark columns: what ``--metrics`` of ``nbnlp`` and ``nbbert`` reads.

``--metrics`` is a comma-separated list of plain metric names and fitness specs (the syntax of
``--fitness``, :mod:`nas_engine.fitness`: ``head_confidence:2+params``), or ``all`` for every
training-free metric of the space. Each entry becomes a column of ``scores.csv`` (its name is
the entry's text) and a key of ``correlations.json``, correlated with the target exactly like
a metric, so a recommended fitness is checked like one.

* The metrics scored are the plain names and every component of every spec, each once per
  architecture: a component that is also listed plainly (or in two specs) is not scored twice.
  Every such metric gets its own value, ``_error`` and ``_seconds`` columns in ``scores.csv``;
  only the listed entries get a correlation.
* An ensemble's column is the engine's fitness with the scored set as its reference
  population: the weighted mean of each component's direction-applied mid-rank percentile
  among the architectures whose components are all finite (:meth:`Fitness.rank`). An
  architecture with a component missing has no fitness (NaN: it counts as failed).
* A one-component spec with a weight (``params:2``) is that metric's fitness: its value with
  its direction applied. A plain name is the metric's value as measured (the benchmarks'
  sign), as before.
* A spec is a fitness (higher is predicted better): its correlation with ``nbbert``'s GLUE is
  positive when it predicts well, with ``nbnlp``'s test loss negative.
* A spec's seconds: the sum of its components' seconds when each metric is scored on its own
  (an upper bound on scoring the spec, whose components share a probe in a search); with
  ``--together`` all metrics share one probe, and a spec's seconds are that probe's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..fitness import Fitness
from ..metrics import metric_names


@dataclass(frozen=True)
class MetricColumns:
    """What ``--metrics`` asked for: the columns in order, the metrics to score, the specs."""

    columns: tuple[str, ...]  # plain metric names and spec texts, as listed (duplicates dropped)
    metrics: tuple[str, ...]  # every metric to score: plain ones and spec components, once each
    specs: dict[str, Fitness] = field(default_factory=dict)  # spec text -> its fitness

    def describe(self) -> dict:
        """The specs as ``run.json`` records them: components, weights and the rule."""
        return {
            text: {"canonical": f.name, "components": f.describe(), "rule": f.rule}
            for text, f in self.specs.items()
        }


def parse_metric_columns(text: str, space: str) -> MetricColumns:
    """``--metrics`` for ``space``. Raises :class:`ConfigError` (one line) for an empty list,
    an unknown metric or a bad spec."""
    known = metric_names(space)
    listed: list[str] = []
    for raw in text.split(","):
        token = raw.strip()
        if not token:
            continue
        for name in known if token == "all" else [token]:
            if name not in listed:
                listed.append(name)
    if not listed:
        raise ConfigError("--metrics names no metric")
    metrics: list[str] = []
    specs: dict[str, Fitness] = {}
    for column in listed:
        if column in known:
            components = (column,)
        elif ":" not in column and "+" not in column:
            raise ConfigError(f"unknown metric {column!r} (known: {', '.join(known)})")
        else:
            try:
                fitness = Fitness.parse(column, space)
            except ConfigError as exc:
                raise ConfigError(f"--metrics {column!r}: {exc}") from None
            specs[column] = fitness
            components = fitness.metric_names
        metrics.extend(m for m in components if m not in metrics)
    return MetricColumns(tuple(listed), tuple(metrics), specs)


def spec_column(scores: pd.DataFrame, fitness: Fitness) -> np.ndarray:
    """The fitness of every row: against the rows whose components are all finite (the
    reference population); NaN where a component is missing or not finite."""
    signed = np.stack(
        [c.sign * scores[c.metric.name].to_numpy(dtype=float) for c in fitness.components],
        axis=1,
    )
    keep = np.isfinite(signed).all(axis=1)
    out = np.full(len(scores), math.nan)
    if keep.any():
        out[keep] = fitness.rank(signed[keep].tolist())
    return out


def add_spec_columns(scores: pd.DataFrame, chosen: MetricColumns, together: bool) -> pd.DataFrame:
    """``scores`` with, per spec, its value, ``_error`` and ``_seconds`` columns (see the
    module docstring for each)."""
    scores = scores.copy()
    for text, fitness in chosen.specs.items():
        names = fitness.metric_names
        scores[text] = spec_column(scores, fitness) if len(scores) else []
        errors = [
            scores[f"{m}_error"].fillna("").astype(str) if f"{m}_error" in scores else None
            for m in names
        ]
        scores[f"{text}_error"] = [
            "; ".join(
                f"{m}: {e.iloc[i]}"
                for m, e in zip(names, errors, strict=True)
                if e is not None and e.iloc[i]
            )
            for i in range(len(scores))
        ]
        seconds = [f"{m}_seconds" for m in names if f"{m}_seconds" in scores]
        if seconds:
            table = scores[seconds].to_numpy(dtype=float)
            scores[f"{text}_seconds"] = table[:, 0] if together else table.sum(axis=1)
    return scores
