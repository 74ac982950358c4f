"""Bad input to the benchmark and training commands: one line on stderr and exit code 2,
before any work (never a traceback, never after the scores are computed)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from helpers import run_module

LSTM_CELL = {
    "i": {"op": "linear", "input": ["x", "h_prev_0"]},
    "i_act": {"op": "activation_sigm", "input": ["i"]},
    "g": {"op": "linear", "input": ["x", "h_prev_0"]},
    "g_act": {"op": "activation_tanh", "input": ["g"]},
    "h_new_0": {"op": "elementwise_prod", "input": ["i_act", "g_act"]},
}
TINY = ["--embedding-size", "16", "--hidden-size", "16", "--layers", "1",
        "--batch-size", "4", "--bptt", "8", "--no-progress"]  # fmt: skip


def log(recipe, status: str = "OK") -> dict:
    return {
        "recepie": recipe,
        "status": status,
        "emsize": 16,
        "nhid": 16,
        "nlayers": 1,
        "num_params": 1000,
        "test_losses": [5.0, 4.5],
        "val_losses": [5.1, 4.6],
        "wall_times": [1.0, 2.0],
    }


def write_logs(folder: Path, logs: dict[str, bytes]) -> Path:
    folder.mkdir()
    for name, raw in logs.items():
        (folder / name).write_bytes(raw)
    return folder


def good(recipe=None, status: str = "OK") -> bytes:
    return json.dumps(log(json.dumps(recipe or LSTM_CELL), status)).encode()


def damaged_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("a.json", good())
    data = bytearray(path.read_bytes())
    at = data.index(b'"recepie"')  # inside a.json's stored bytes: its CRC no longer matches
    data[at + 2] ^= 0x20
    path.write_bytes(bytes(data))
    return path


def one_line_exit_2(proc, *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize(
    ("make", "needles"),
    [
        (lambda d: write_logs(d, {"a.json": json.dumps(log("{not json")).encode()}),
         ["a.json", "recepie is not valid JSON"]),
        (lambda d: write_logs(d, {"a.json": json.dumps(log(json.dumps([1, 2]))).encode()}),
         ["a.json", "not a cell"]),
        (lambda d: write_logs(d, {"a.json": b'{"recepie": "\xff\xfe"}'}), ["a.json", "UTF-8"]),
        (lambda d: write_logs(d, {"a.json": good(status="loss is nan!")}), ["no usable log"]),
        (lambda d: damaged_zip(d.with_suffix(".zip")), ["cannot be read"]),
    ],
    ids=["recipe-not-json", "recipe-not-object", "not-utf8", "no-usable-log", "zip-crc"],
)  # fmt: skip
def test_nbnlp_bad_logs_are_one_line_and_exit_2(tmp_path: Path, make, needles) -> None:
    logs = make(tmp_path / "logs")
    out = tmp_path / "out"
    proc = run_module("nas_engine.benchmark", "nbnlp", "--logs", str(logs), "--out", str(out),
                      "--metrics", "params", *TINY)  # fmt: skip
    one_line_exit_2(proc, *needles)
    assert not out.exists()


def test_nbnlp_takes_a_recipe_given_as_an_object(tmp_path: Path) -> None:
    logs = write_logs(tmp_path / "logs", {"a.json": json.dumps(log(LSTM_CELL)).encode(),
                                          "b.json": good()})  # fmt: skip
    out = tmp_path / "out"
    proc = run_module("nas_engine.benchmark", "nbnlp", "--logs", str(logs), "--out", str(out),
                      "--metrics", "params", *TINY)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "scores.csv").read_text().count("\n") == 3  # header and both logs


def test_nbnlp_out_an_existing_file_is_refused_before_the_work(tmp_path: Path) -> None:
    logs = write_logs(tmp_path / "logs", {"a.json": good()})
    out = tmp_path / "file"
    out.write_text("keep me")
    proc = run_module("nas_engine.benchmark", "nbnlp", "--logs", str(logs), "--out", str(out),
                      "--metrics", "params", *TINY)  # fmt: skip
    one_line_exit_2(proc, "is a file")
    assert out.read_text() == "keep me"


@pytest.mark.parametrize(
    ("args", "needles"),
    [(["--lr", "inf"], ["lr must be a finite number"]), (["--out", "FILE"], ["is a file"])],
    ids=["lr-inf", "out-file"],
)
def test_train_bad_input_is_one_line_and_exit_2(tmp_path: Path, args, needles) -> None:
    recipe = tmp_path / "cell.json"
    recipe.write_text(json.dumps(LSTM_CELL))
    existing = tmp_path / "existing"
    existing.write_text("keep me")
    args = [str(existing) if a == "FILE" else a for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "run")]
    sizes = ["--embedding-size", "16", "--hidden-size", "16", "--layers", "1"]
    proc = run_module("nas_engine.train", "--recipe", str(recipe), "--steps", "2", *sizes, *args)
    one_line_exit_2(proc, *needles)
    assert existing.read_text() == "keep me"
    assert not (tmp_path / "run").exists()
