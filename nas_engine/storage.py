"""A run's folder: ``config.json``, ``results.jsonl`` (appended and flushed per result) and
``summary.json`` (written atomically at the end)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .result import Result


class RunFolderError(ValueError):
    """The output folder cannot take this run."""


class RunStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.config_path = self.root / "config.json"
        self.results_path = self.root / "results.jsonl"
        self.summary_path = self.root / "summary.json"
        self._file = None

    def check_free(self, config: dict) -> None:
        """Raise unless the folder is absent, empty, or holds nothing of a run."""
        if self.root.exists() and not self.root.is_dir():
            raise RunFolderError(f"--out {str(self.root)!r} is a file, not a folder")
        if not self.config_path.exists():
            if self.results_path.exists():
                raise RunFolderError(f"--out {str(self.root)!r} holds results of an unknown run")
            return
        try:
            previous = json.loads(self.config_path.read_text())
        except (OSError, json.JSONDecodeError):
            raise RunFolderError(
                f"--out {str(self.root)!r} holds an unreadable config.json"
            ) from None
        if previous != config:
            changed = sorted(
                k for k in set(previous) | set(config) if previous.get(k) != config.get(k)
            )
            raise RunFolderError(
                f"--out {str(self.root)!r} holds a different run (differs in: {', '.join(changed)})"
            )
        raise RunFolderError(f"--out {str(self.root)!r} already holds this run; choose a new --out")

    def open(self, config: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.config_path, json.dumps(config, indent=2, sort_keys=True))
        self._file = self.results_path.open("a", encoding="utf-8")

    def append(self, result: Result) -> None:
        assert self._file is not None, "store not opened"
        self._file.write(result.to_json() + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def write_summary(self, summary: dict) -> None:
        _write_atomic(self.summary_path, json.dumps(summary, indent=2))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def read_results(self) -> list[Result]:
        if not self.results_path.exists():
            return []
        lines = self.results_path.read_text(encoding="utf-8").splitlines()
        return [Result.from_json(line) for line in lines if line.strip()]


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, path)
