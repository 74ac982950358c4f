"""A run's folder: ``config.json``, ``results.jsonl`` (appended and flushed per result),
``proposals.jsonl`` (the strategy's proposals, in order, each with the number of results told
before it: what ``--resume`` replays) and ``summary.json`` (written atomically at the end)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .result import Result


class RunFolderError(ValueError):
    """The output folder cannot take this run."""


class RunStore:
    def __init__(self, root: str | Path, defaults: Mapping[str, Any] | None = None) -> None:
        """``defaults``: each setting's default value. A folder written before a setting
        existed lacks it, and ran with what is now its default, so a missing setting is
        compared as that default."""
        self.root = Path(root)
        self.defaults = dict(defaults or {})
        self.config_path = self.root / "config.json"
        self.results_path = self.root / "results.jsonl"
        self.summary_path = self.root / "summary.json"
        self.proposals_path = self.root / "proposals.jsonl"
        self.confirmed_path = self.root / "confirmed.jsonl"
        self._file = None
        self._proposals = None

    def check_free(self, config: dict) -> None:
        """Raise unless the folder is absent, empty, or holds nothing of a run."""
        if self.root.exists() and not self.root.is_dir():
            raise RunFolderError(f"--out {str(self.root)!r} is a file, not a folder")
        if not self.config_path.exists():
            if self.results_path.exists():
                raise RunFolderError(f"--out {str(self.root)!r} holds results of an unknown run")
            return
        changed = self._differences(config, "--out")
        if changed:
            raise RunFolderError(
                f"--out {str(self.root)!r} holds a different run (differs in: {', '.join(changed)})"
            )
        raise RunFolderError(f"--out {str(self.root)!r} already holds this run; choose a new --out")

    def check_resumable(self, config: dict) -> None:
        """Raise unless the folder holds a run with these settings (``--resume``)."""
        if not self.config_path.exists():
            raise RunFolderError(f"--resume: {str(self.root)!r} holds no run to resume")
        changed = self._differences(config, "--resume:")
        if changed:
            raise RunFolderError(
                f"--resume: {str(self.root)!r} holds a run with other settings "
                f"(differs in: {', '.join(changed)})"
            )

    def _differences(self, config: dict, option: str) -> list[str]:
        """The settings in which the folder's config.json differs from ``config``."""
        try:
            previous = json.loads(self.config_path.read_text())
        except (OSError, json.JSONDecodeError):
            raise RunFolderError(
                f"{option} {str(self.root)!r} holds an unreadable config.json"
            ) from None
        return sorted(
            k
            for k in set(previous) | set(config)
            if previous.get(k, self.defaults.get(k)) != config.get(k)
        )

    def open(self, config: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.config_path, json.dumps(config, indent=2, sort_keys=True))
        for path in (self.results_path, self.proposals_path):
            _drop_partial_line(path)
        self._file = self.results_path.open("a", encoding="utf-8")
        self._proposals = self.proposals_path.open("a", encoding="utf-8")

    def append(self, result: Result) -> None:
        assert self._file is not None, "store not opened"
        _append_line(self._file, result.to_json())

    def append_proposal(self, number: int, key: str, origin: str, after: int) -> None:
        """Record the ``number``-th proposal, made when ``after`` results had been told."""
        assert self._proposals is not None, "store not opened"
        line = {"n": number, "key": key, "origin": origin, "after": after}
        _append_line(self._proposals, json.dumps(line, separators=(",", ":")))

    def read_proposals(self) -> list[dict]:
        return _read_jsonl(self.proposals_path)

    def read_confirmed(self) -> list[dict]:
        return _read_jsonl(self.confirmed_path)

    def append_confirmed(self, record: dict) -> None:
        with self.confirmed_path.open("a", encoding="utf-8") as f:
            _append_line(f, json.dumps(record, allow_nan=False, separators=(",", ":")))

    def write_summary(self, summary: dict) -> None:
        _write_atomic(self.summary_path, json.dumps(summary, indent=2))

    def close(self) -> None:
        for f in (self._file, self._proposals):
            if f is not None:
                f.close()
        self._file = self._proposals = None

    def read_results(self) -> list[Result]:
        return [Result(**record) for record in _read_jsonl(self.results_path)]


def _append_line(f, line: str) -> None:
    f.write(line + "\n")
    f.flush()
    os.fsync(f.fileno())


def _read_jsonl(path: Path) -> list[dict]:
    """The complete lines of a JSON-lines file; a last line cut short by a crash (no newline)
    is ignored."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    complete = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


def _drop_partial_line(path: Path) -> None:
    """Cut a last line that a crash left without its newline, so appends start clean."""
    if not path.exists():
        return
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end != len(data):
        with path.open("r+b") as f:
            f.truncate(end)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, path)
