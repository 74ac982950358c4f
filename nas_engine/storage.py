"""A run's folder: ``config.json``, ``results.jsonl`` (appended and flushed per result),
``proposals.jsonl`` (the strategy's proposals, in order, each with the number of results told
before it: what ``--resume`` replays) and ``summary.json`` (written atomically at the end)."""

from __future__ import annotations

import fcntl
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
        self._lock: int | None = None  # the folder's descriptor, holding its flock
        self._created = False

    def claim(self) -> None:
        """Create the folder if it is absent and lock it for this process: an exclusive
        ``flock`` on the folder itself (nothing is written in it), which the OS releases when
        the process ends, however it ends, so a run killed by SIGKILL can be resumed. Raises
        :class:`RunFolderError` when the folder cannot be created or written, or another
        process holds it (a run still going, or a ``--resume`` of it)."""
        where = f"--out {str(self.root)!r}"
        if self.root.exists() and not self.root.is_dir():
            raise RunFolderError(f"{where} is a file, not a folder")
        created = not self.root.exists()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.root, os.O_RDONLY)
        except OSError as exc:
            raise RunFolderError(f"{where} cannot be created: {exc.strerror or exc}") from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(descriptor)
            raise RunFolderError(
                f"{where} is in use by another run (a process holds its lock); wait for it to "
                "end, or choose another --out"
            ) from None
        self._lock, self._created = descriptor, created
        check = self.root / ".nas-engine-write-check"
        try:
            check.write_text("")
            check.unlink()
        except OSError as exc:
            self.release()
            raise RunFolderError(f"{where} cannot be written: {exc.strerror or exc}") from None

    def release(self) -> None:
        """Give the folder's lock back; a folder this store created and left empty goes too
        (a run refused before it wrote anything leaves nothing behind)."""
        if self._lock is None:
            return
        os.close(self._lock)  # closing the descriptor releases its flock
        self._lock = None
        if self._created and not any(self.root.iterdir()):
            self.root.rmdir()

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
        """The journal of proposals, checked line by line (RunFolderError names a bad one)."""
        proposals = _read_jsonl(self.proposals_path)
        for number, p in enumerate(proposals):
            if not (isinstance(p, dict) and {"n", "key", "after"} <= set(p) and p["n"] == number):
                raise RunFolderError(
                    f"{self.proposals_path} line {number + 1} is not proposal {number}: the "
                    "journal is damaged, so the run cannot be resumed exactly"
                )
        return proposals

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
        """The results in order, checked: each line a whole record, indices 0, 1, 2, ... and
        no architecture twice (RunFolderError names the first line that is not)."""
        results, seen = [], set()
        for number, record in enumerate(_read_jsonl(self.results_path)):
            where = f"{self.results_path} line {number + 1}"
            try:
                result = Result(**record)
            except TypeError as exc:
                raise RunFolderError(f"{where} is not a result record ({exc})") from None
            if result.index != number or result.arch_id in seen:
                raise RunFolderError(
                    f"{where} holds result {result.index} ({result.arch_id}) where result "
                    f"{number} belongs: a record is duplicated or missing"
                )
            seen.add(result.arch_id)
            results.append(result)
        return results


def _append_line(f, line: str) -> None:
    f.write(line + "\n")
    f.flush()
    os.fsync(f.fileno())


def _read_jsonl(path: Path) -> list[dict]:
    """The complete lines of a JSON-lines file; a last line cut short by a crash (no newline)
    is ignored."""
    if not path.exists():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RunFolderError(f"{path} cannot be read: {exc}") from None
    complete = text[: text.rfind("\n") + 1]
    records = []
    for number, line in enumerate(complete.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise RunFolderError(f"{path} line {number} is not JSON ({exc.msg})") from None
    return records


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
