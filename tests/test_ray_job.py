"""A search submitted as a Ray job (`ray job submit`) to a Ray head of the test's own.

Needs the `cluster` extra (`ray[default]`: the jobs CLI and the dashboard that serves it) and
skips, with the reason, without it. The head runs in a short temporary directory of its own
(Unix socket paths must stay under 108 bytes) on free ports, with an authentication token of
its own, and is taken down by killing exactly its processes: never `ray stop`, which stops
every Ray instance on the machine.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("ray")

# The modules `ray[default]` adds that the jobs CLI and the dashboard's job server import.
DEFAULT_EXTRA = ("aiohttp", "aiohttp_cors", "requests", "grpc", "prometheus_client", "opencensus")
MISSING = [name for name in DEFAULT_EXTRA if importlib.util.find_spec(name) is None]
RAY_CLI = Path(sys.executable).parent / "ray"

pytestmark = [
    pytest.mark.skipif(
        bool(MISSING),
        reason=(
            "`ray job` needs ray[default] (pip install -e '.[cluster]'); missing: "
            + ", ".join(MISSING)
        ),
    ),
    pytest.mark.skipif(not RAY_CLI.exists(), reason=f"no ray command beside {sys.executable}"),
]

MARKER = "NAS_ENGINE_TEST_RAY_HEAD"  # in the environment of every process of the test's head
START_SECONDS = 60.0
JOB_SECONDS = 120.0
NO_AGENT = "No available agent to submit job"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes() -> dict[int, tuple[int, int, str, bytes]]:
    """Live processes: pid -> (parent pid, start time, state, environment)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            environ = (entry / "environ").read_bytes()
        except (OSError, IndexError):
            continue  # gone meanwhile, or not ours to read
        if fields[0] != "Z":  # a zombie is dead, only not yet reaped
            found[int(entry.name)] = (int(fields[1]), int(fields[19]), fields[0], environ)
    return found


def head_processes(head_pid: int | None, marker: str) -> set[tuple[int, int]]:
    """(pid, start time) of the head's processes and of all that they started (workers, the
    job's driver), whatever process group each has by now: the head's descendants, and the
    processes whose environment holds ``MARKER=marker`` (inherited, it outlives a parent)."""
    procs = _processes()
    needle = f"{MARKER}={marker}".encode()
    ours = {pid for pid, (_, _, _, environ) in procs.items() if needle in environ.split(b"\0")}
    if head_pid is not None:  # None once reaped: its pid may be another process's by then
        ours.add(head_pid)
    grew = True
    while grew:
        grew = False
        for pid, (ppid, *_) in procs.items():
            if ppid in ours and pid not in ours:
                ours.add(pid)
                grew = True
    return {(pid, procs[pid][1]) for pid in ours if pid in procs}


def alive(processes: set[tuple[int, int]]) -> list[int]:
    procs = _processes()
    return sorted(pid for pid, start in processes if pid in procs and procs[pid][1] == start)


@dataclass
class Head:
    dashboard: str  # http://127.0.0.1:PORT, for `ray job ... --address`
    env: dict[str, str]  # for the ray commands: the head's token, no RAY_ADDRESS
    temp_dir: Path

    def ray(self, *args: str, timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(RAY_CLI), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def job_status(self, job_id: str) -> str:
        """The job's status as the jobs SDK names it (SUCCEEDED, FAILED, ...)."""
        code = (
            "import sys\n"
            "from ray.job_submission import JobSubmissionClient\n"
            "print(JobSubmissionClient(sys.argv[1]).get_job_status(sys.argv[2]).value)"
        )
        status = subprocess.run(
            [sys.executable, "-c", code, self.dashboard, job_id],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        return status.stdout.strip() or status.stderr[-2000:]


def stop(process: subprocess.Popen, marker: str) -> list[int]:
    """Kill the head's process group, then every other process of the head (Ray puts workers
    and job drivers in process groups of their own); returns the pids of any survivors."""
    seen: set[tuple[int, int]] = set()

    def current() -> set[tuple[int, int]]:
        return head_processes(process.pid if process.poll() is None else None, marker)

    deadline = time.monotonic() + 15.0
    while True:
        now = current()
        seen |= now
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in alive(now):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
        if not alive(seen | current()) or time.monotonic() > deadline:
            break
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    return alive(seen | current())


@pytest.fixture
def ray_head() -> Iterator[Head]:
    if not Path("/proc/self/environ").exists():
        pytest.skip("needs /proc to find the head's processes again")
    temp_dir = Path(tempfile.mkdtemp(prefix="rj", dir="/tmp"))
    marker = temp_dir.name
    token = temp_dir / "token"
    token.write_text(secrets.token_hex(32))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(
        {
            MARKER: marker,
            # A token of this head's own, not the user's ~/.ray/auth_token (none is written).
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(token),
            "RAY_USAGE_STATS_ENABLED": "0",
            # The job's entrypoint runs with the head's environment: its python is ours.
            "PATH": os.pathsep.join([str(RAY_CLI.parent), env.get("PATH", "")]),
        }
    )
    dashboard_port = free_port()
    log = (temp_dir / "head.log").open("w")
    # fmt: off
    command = [
        str(RAY_CLI), "start", "--head", "--block",
        "--node-ip-address", "127.0.0.1",
        "--temp-dir", str(temp_dir),
        "--port", str(free_port()),
        # Ports whose defaults (10001, 52365) another Ray instance may hold: without its
        # agent, the head refuses every job ("No available agent").
        "--ray-client-server-port", str(free_port()),
        "--dashboard-agent-listen-port", str(free_port()),
        "--dashboard-host", "127.0.0.1",
        "--dashboard-port", str(dashboard_port),
        "--num-cpus", "1",
        "--disable-usage-stats",
    ]
    # fmt: on
    process = subprocess.Popen(
        command,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, to kill on teardown
        cwd=temp_dir,  # where a job's driver starts (not the repository)
    )
    head = Head(f"http://127.0.0.1:{dashboard_port}", env, temp_dir)
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:  # up once the dashboard's job server answers
            if process.poll() is not None:
                pytest.fail(f"ray start exited {process.returncode}:\n{_tail(temp_dir)}")
            if time.monotonic() > deadline:
                pytest.fail(f"no Ray head after {START_SECONDS:.0f} s:\n{_tail(temp_dir)}")
            if head.ray("job", "list", "--address", head.dashboard, timeout=30).returncode == 0:
                break
            time.sleep(1.0)
        yield head
    finally:
        left = stop(process, marker)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not left, f"processes of the test's Ray head still running: {left}"


def _tail(temp_dir: Path, lines: int = 30) -> str:
    try:
        return "\n".join((temp_dir / "head.log").read_text().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def test_search_runs_as_a_ray_job(ray_head: Head) -> None:
    out = ray_head.temp_dir / "out"
    entrypoint = [
        sys.executable, "-m", "nas_engine.search",
        "--budget", "4", "--embedding-size", "8", "--hidden-size", "8",
        "--batch-size", "4", "--bptt", "8",
        "--executor", "ray", "--ray-address", "auto", "--workers", "1",
        "--no-progress", "--no-report", "--out", str(out),
    ]  # fmt: skip
    job_id = f"nas-engine-test-{ray_head.temp_dir.name}"
    started = time.perf_counter()
    deadline = started + JOB_SECONDS
    while True:  # waits for the job's end, streaming its output
        try:
            submitted = ray_head.ray(
                "job", "submit", "--address", ray_head.dashboard, "--submission-id", job_id,
                "--", *entrypoint,  # no word a shell would split or expand
                timeout=max(1.0, deadline - time.perf_counter()),
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            pytest.fail(
                f"the job did not end within {JOB_SECONDS:.0f} s; status "
                f"{ray_head.job_status(job_id)}; its output so far:\n{exc.stdout!s:.3000}"
            )
        # The head's job server answers before its node's agent has registered: the job is
        # then refused (not created), and submitting again is safe.
        if NO_AGENT not in submitted.stderr or time.perf_counter() > deadline:
            break
        time.sleep(1.0)
    seconds = time.perf_counter() - started
    print(f"ray job submit (waited for the job): {seconds:.1f} s")
    report = f"exit {submitted.returncode}\n{submitted.stdout[-3000:]}\n{submitted.stderr[-3000:]}"
    status = ray_head.job_status(job_id)
    assert status == "SUCCEEDED", f"job status {status}\n{report}"
    assert submitted.returncode == 0, report

    # The driver ran on the head, so OUT is a path on the head's file system (here, this one).
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 4
    summary = json.loads((out / "summary.json").read_text())
    assert summary["evaluated"] == 4
    assert summary["execution"]["executor"] == "ray"
    assert summary["execution"]["address"] == "auto"
    # Its scoring workers were actors of the test's head (Ray heads a worker's log with the
    # actor's name), not of an instance of the job's own or of another cluster on the machine.
    logs = ray_head.temp_dir / "session_latest" / "logs"
    actors = {p.read_text(errors="replace")[:200] for p in logs.glob("worker-*.out")}
    assert any(":actor_name:ScoringWorker" in head for head in actors), sorted(actors)
