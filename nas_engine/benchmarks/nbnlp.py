"""NAS-Bench-NLP training logs: reading them, and correlating metrics with trained loss."""

from __future__ import annotations

import json
import math
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..corpus import Corpus
from ..result import Candidate
from ..scoring import Scorer, ScoringSetup


class LogsError(ValueError):
    """Logs that cannot be read; one line for the user."""


@dataclass(frozen=True)
class TrainingLog:
    """One NAS-Bench-NLP run, as the benchmark logs it."""

    name: str
    recipe_json: str
    status: str
    embedding_size: int
    hidden_size: int
    num_layers: int
    num_params: int
    test_losses: tuple[float, ...]
    val_losses: tuple[float, ...]
    wall_times: tuple[float, ...]

    @property
    def ok(self) -> bool:
        return (
            self.status == "OK" and bool(self.test_losses) and math.isfinite(self.final_test_loss)
        )

    @property
    def final_test_loss(self) -> float:
        return self.test_losses[-1] if self.test_losses else math.nan

    @classmethod
    def from_dict(cls, name: str, d: dict) -> TrainingLog:
        if not isinstance(d, dict):
            raise LogsError(f"{name}: not a NAS-Bench-NLP log (a JSON {type(d).__name__})")
        recipe = d.get("recepie")
        try:  # the benchmark stores the cell as JSON text; a cell given as an object is taken
            parsed = json.loads(recipe) if isinstance(recipe, str) else recipe
        except json.JSONDecodeError as exc:
            raise LogsError(f"{name}: its recepie is not valid JSON ({exc.msg})") from None
        if not isinstance(parsed, dict):
            raise LogsError(
                f"{name}: its recepie is not a cell (a JSON object of nodes), but "
                f"{type(parsed).__name__}"
            )
        try:
            return cls(
                name=name,
                recipe_json=json.dumps(parsed),
                status=str(d["status"]),
                embedding_size=int(d["emsize"]),
                hidden_size=int(d["nhid"]),
                num_layers=int(d["nlayers"]),
                num_params=int(d["num_params"]),
                test_losses=tuple(float(v) for v in d.get("test_losses") or ()),
                val_losses=tuple(float(v) for v in d.get("val_losses") or ()),
                wall_times=tuple(float(v) for v in d.get("wall_times") or ()),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise LogsError(f"{name}: not a NAS-Bench-NLP log ({exc!r})") from None


def _json_files(path: Path) -> Iterator[tuple[str, bytes]]:
    if path.is_dir():
        for file in sorted(path.rglob("*.json")):
            yield file.name, file.read_bytes()
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            for name in sorted(z.namelist()):
                if name.endswith(".json"):
                    yield name.rsplit("/", 1)[-1], z.read(name)
    elif path.suffix == ".json":
        yield path.name, path.read_bytes()
    else:
        raise LogsError(f"{str(path)!r} is neither a zip, a folder nor a .json file")


def read_logs(path: str | Path) -> list[TrainingLog]:
    """All logs in a zip, a folder of JSON files, or one JSON file (sorted by file name)."""
    root = Path(path)
    if not root.exists():
        raise LogsError(f"logs path {str(root)!r} does not exist")
    logs = []
    try:
        for name, raw in _json_files(root):
            try:
                data = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise LogsError(f"{name}: invalid JSON ({exc})") from None
            except UnicodeDecodeError as exc:
                raise LogsError(f"{name}: not UTF-8 text ({exc.reason})") from None
            logs.append(TrainingLog.from_dict(name, data))
    except (zipfile.BadZipFile, OSError) as exc:  # a damaged zip (bad CRC), an unreadable file
        raise LogsError(f"{str(root)!r} cannot be read: {exc}") from None
    if not logs:
        raise LogsError(f"no NAS-Bench-NLP logs found in {str(root)!r}")
    return logs


@dataclass(frozen=True)
class BenchmarkSettings:
    metrics: tuple[str, ...] = ("hidden_cov", "params")
    embedding_size: int | None = None  # None: each log's own size
    hidden_size: int | None = None
    num_layers: int | None = None
    batch_size: int = 50
    bptt: int = 70
    init_gain: float = 1.0  # the cells' initial weight scale (ModelSizes.init_gain)
    split: str = "test"
    seed: int = 0
    device: str = "cpu"
    together: bool = False  # one probe for all metrics (shared passes) instead of one each

    def setup_for(self, log: TrainingLog, metrics: tuple[str, ...]) -> ScoringSetup:
        """Scoring of ``metrics`` at the log's sizes, unless these settings override them."""
        return ScoringSetup(
            metrics=metrics,
            embedding_size=self.embedding_size or log.embedding_size,
            hidden_size=self.hidden_size or log.hidden_size,
            num_layers=self.num_layers or log.num_layers,
            batch_size=self.batch_size,
            bptt=self.bptt,
            init_gain=self.init_gain,
            split=self.split,
            seed=self.seed,
            device=self.device,
        )


def score_logs(
    logs: list[TrainingLog],
    corpus: Corpus,
    settings: BenchmarkSettings,
    on_progress: Callable[[], None] | None = None,
) -> pd.DataFrame:
    """One row per OK log: the final test loss and, per metric, its value (NaN when it
    failed), its error and its seconds. Each metric is scored on its own, so its seconds are
    what that metric alone costs (model build, passes and computation). With
    ``settings.together`` all metrics are scored on one probe per log, sharing its passes (several
    times cheaper for a whole suite, as a search scores it); the values are the same, and
    each metric's seconds are then the whole probe's."""
    scorers: dict[ScoringSetup, Scorer] = {}

    def scorer_for(log: TrainingLog, metrics: tuple[str, ...]) -> Scorer:
        setup = settings.setup_for(log, metrics)
        if setup not in scorers:
            scorers[setup] = Scorer(setup, corpus)
        return scorers[setup]

    groups = [settings.metrics] if settings.together else [(m,) for m in settings.metrics]

    rows = []
    for log in logs:
        if not log.ok:
            continue
        recipe = json.loads(log.recipe_json)
        row: dict = {
            "log": log.name,
            "num_params": log.num_params,
            "test_loss": log.final_test_loss,
        }
        for group in groups:
            evaluation = scorer_for(log, group).score(Candidate("", recipe))
            for metric in group:
                measured = metric in evaluation.metrics
                row[metric] = evaluation.metrics[metric] if measured else math.nan
                error = evaluation.metric_errors.get(metric, evaluation.error or "")
                row[f"{metric}_error"] = "" if measured else error
                row[f"{metric}_seconds"] = evaluation.seconds
            row.update({k: v for k, v in evaluation.details.items()})
        rows.append(row)
        if on_progress is not None:
            on_progress()
    return pd.DataFrame(rows)
