"""Crash safety: real runs killed (SIGKILL), starved of disk or hit by a Julia error at chosen points, then resumed.

Every fault lands at a counted *fault point* (:mod:`ramble.storage.faults`), never
after a delay, so the suite does not depend on timing.  An uninterrupted run
of each kind (TCM on the Python and the Julia backend, LeNet5 on a small
MNIST) lists its fault points; kill points are drawn from that list with a
fixed seed.  After each kill the file must open and say "running", and the
resumed file must equal the uninterrupted one, bit for bit (``ramble diff``:
every dataset and attribute but the run's timings).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from ramble.cli import main
from ramble.storage.filediff import diff
from ramble.storage.io import load, open_checked

FIXTURE = str(Path(__file__).parent / "fixtures" / "mnist")
TCM_ARGS = ["-N", "30", "-K", "3", "-M", "40", "--solutions", "3"]
MNIST_ARGS = ["--train-size", "30", "--test-size", "100", "--data-dir", FIXTURE, "--device", "cpu", "--gamma", "0.2", "--n-epochs", "1",
              "--points", "30", "--weight-rows", "10", "--linear-points", "3", "--solutions", "2", "--checkpoint-iterations", "5",
              "--checkpoint-every", "1e9"]  # checkpoints by iteration count only: the fault points do not depend on the machine's speed
TCM_CHECKPOINTS = ["--checkpoint-iterations", "200", "--checkpoint-every", "1e9"]  # a path of about 700 iterations commits its state 3 times
KINDS = {
    # kill points per kind (the first commit's among them): each is a whole run in a new process
    "tcm-python": (["tcm", "run", "--backend", "python", *TCM_ARGS, *TCM_CHECKPOINTS], 5),
    "tcm-julia": (["tcm", "run", "--backend", "julia", *TCM_ARGS], 4),
    "mnist": (["mnist", "run", *MNIST_ARGS], 2),
}
# One thread everywhere: float sums are bit-for-bit reproducible for a fixed thread count (docs/resume.md).
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
for k in ("RAMBLE_FAULT", "RAMBLE_FAULT_TRACE"):
    ENV.pop(k, None)


def ramble(args: list[str], env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    """``ramble ARGS`` in a fresh process (faults kill the process, so never in this one)."""
    return subprocess.run([sys.executable, "-m", "ramble.cli", "--quiet", *args], env=env or ENV, capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Per kind: the uninterrupted file and the fault points its run passed."""
    base = tmp_path_factory.mktemp("ref")

    def make(kind: str) -> tuple[Path, list[str]]:
        out, trace = base / f"{kind}.h5", base / f"{kind}.trace"
        r = ramble([*KINDS[kind][0], "--out", str(out)], env=dict(ENV, RAMBLE_FAULT_TRACE=str(trace)))
        assert r.returncode == 0, r.stderr
        return out, trace.read_text().split()

    cache: dict[str, tuple[Path, list[str]]] = {}

    def get(kind: str) -> tuple[Path, list[str]]:
        if kind not in cache:
            cache[kind] = make(kind)
        return cache[kind]

    return get


def kill_points(points: list[str], n: int) -> list[int]:
    """``n`` distinct fault points (1-based) drawn with a fixed seed; the first commit's first point always among them."""
    rng = np.random.default_rng(20261127)
    chosen = set(rng.choice(np.arange(1, len(points) + 1), size=min(n, len(points)) - 1, replace=False).tolist())
    chosen.add(points.index("commit:open") + 1)
    return sorted(chosen)


def resume_in_process(path: Path) -> None:
    r = CliRunner().invoke(main, ["--quiet", "resume", str(path), "--checkpoint-iterations", "200"], catch_exceptions=False)
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("kind", list(KINDS))
def test_killed_runs_resume_to_the_uninterrupted_file(kind, reference, tmp_path):
    ref, points = reference(kind)
    args, n = KINDS[kind]
    assert any(p.startswith("commit:") for p in points)
    for k in kill_points(points, n):
        out = tmp_path / f"kill{k}.h5"
        r = ramble([*args, "--out", str(out)], env=dict(ENV, RAMBLE_FAULT=f"kill@{k}"))
        assert r.returncode == -9, f"kill point {k} ({points[k - 1]}): exit {r.returncode}\n{r.stderr}"
        if not out.exists():  # killed before the file was created: nothing to lose, the command is simply run again
            assert k < points.index("commit:open") + 1, f"kill point {k} ({points[k - 1]}) left no file"
            r = CliRunner().invoke(main, ["--quiet", *args, "--out", str(out)], catch_exceptions=False)
            assert r.exit_code == 0 and diff(ref, out) == []
            continue
        with open_checked(out) as f:  # opens, and says it is not finished
            assert f.attrs["status"] == "running"
        resume_in_process(out)
        assert diff(ref, out) == [], f"kill point {k} ({points[k - 1]})"
        assert not list(tmp_path.glob(".*.commit")), "a finished commit leaves no staging copy"


@pytest.mark.parametrize("kind", ["mnist", "tcm-python"])
def test_a_mid_path_kill_resumes_from_the_checkpoint(kind, reference, tmp_path):
    """The path (LeNet5, or the TCM on the Python backend) is continued from its committed state, not started again."""
    ref, points = reference(kind)
    # the fault point just after the first checkpoint's commit of path 0-1: commits before it make the file, write the data and each solution
    renamed = [i + 1 for i, p in enumerate(points) if p == "commit:renamed"]
    out = tmp_path / "m.h5"
    r = ramble([*KINDS[kind][0], "--out", str(out)], env=dict(ENV, RAMBLE_FAULT=f"kill@{renamed[{'mnist': 4, 'tcm-python': 5}[kind]]}"))
    assert r.returncode == -9
    with h5py.File(out, "r") as f:
        assert "checkpoints/0-1" in f, list(f)
        g = f["checkpoints/0-1"]
        saved_at = int(g.attrs["iteration"])
        # the points recorded so far can be read while the path runs: resizable, chunked, growing
        progress = g["progress/distance"]
        assert progress.maxshape == (None,) and progress.chunks is not None
        assert len(progress) == len(g["progress/iteration"]) > 1 and g["progress/iteration"][-1] < saved_at
    assert saved_at > 0
    r = CliRunner().invoke(main, ["info", str(out)])
    assert f"checkpoint at iteration {saved_at}" in r.output and "ramble resume" in r.output
    resume_in_process(out)
    e = load(out)
    assert "checkpoints" not in h5py.File(out, "r")
    assert e.paths["0-1"].complete and diff(ref, out) == []


@pytest.mark.parametrize("sig", ["term", "int"])
def test_a_signal_mid_path_commits_the_state_and_the_file_resumes(sig, reference, tmp_path):
    """SIGTERM or SIGINT during a path (here: during a checkpoint commit at an iteration's start): the path
    commits its state after its next move, inside that iteration, the run exits 1 with one line, and the
    resumed file equals the uninterrupted one."""
    from ramble.storage.checkpoint import decode

    args = KINDS["mnist"][0]
    ref, points = reference("mnist")
    renamed = [i + 1 for i, p in enumerate(points) if p == "commit:renamed"]
    out = tmp_path / "m.h5"
    r = ramble([*args, "--out", str(out)], env=dict(ENV, RAMBLE_FAULT=f"{sig}@{renamed[4]}"))
    name = {"term": "SIGTERM", "int": "SIGINT"}[sig]
    assert r.returncode == 1, r.stderr
    assert f"stopped by {name} at iteration" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "running" and "checkpoints/0-1" in f
        assert int(f["checkpoints/0-1"].attrs["iteration"]) > 0
        state = decode(f["checkpoints/0-1/state"][()])
    cursor = state.get("leg", state)["cursor"]
    assert cursor is not None and cursor["epochs"] == 1, cursor  # after the iteration's first GD epoch
    info = CliRunner().invoke(main, ["info", str(out)]).output
    assert f"checkpoint inside iteration {state['iteration']} (" in info, info
    resume_in_process(out)
    assert load(out).paths["0-1"].complete and diff(ref, out) == []


def test_a_full_disk_fails_in_one_line_and_the_file_resumes(reference, tmp_path):
    """ENOSPC raised mid-commit (simulated at a fault point): exit 1, one line, the previous state kept."""
    ref, points = reference("tcm-python")
    written = [i + 1 for i, p in enumerate(points) if p == "commit:written"]
    out = tmp_path / "disk.h5"
    r = ramble([*KINDS["tcm-python"][0], "--out", str(out)], env=dict(ENV, RAMBLE_FAULT=f"enospc@{written[3]}"))
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("error: cannot write") and "No space left on device" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    e = load(out)
    assert e.status == "failed" and "No space left" in e.attrs["error"]
    resume_in_process(out)
    assert diff(ref, out) == []


def test_a_file_size_limit_fails_real_writes_and_the_file_resumes(reference, tmp_path):
    """Writes refused by the kernel (RLIMIT_FSIZE: EFBIG at the byte level, as a filling disk would)."""
    import resource
    import signal

    ref, _ = reference("tcm-python")
    limit = os.path.getsize(ref) // 2

    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    out = tmp_path / "big.h5"
    r = ramble([*KINDS["tcm-python"][0], "--out", str(out)], preexec_fn=small_disk)
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("error: ") and r.stderr.strip().count("\n") == 0, r.stderr
    with open_checked(out) as f:
        assert f.attrs["status"] in ("running", "failed")
    resume_in_process(out)
    assert diff(ref, out) == []


def test_a_julia_error_mid_run_is_one_line_and_the_file_resumes(reference, tmp_path):
    ref, points = reference("tcm-julia")
    second_path = [i + 1 for i, p in enumerate(points) if p == "julia:find_path"][1]
    out = tmp_path / "j.h5"
    r = ramble([*KINDS["tcm-julia"][0], "--out", str(out)], env=dict(ENV, RAMBLE_FAULT=f"julia@{second_path}"))
    assert r.returncode == 1
    assert r.stderr.startswith("error: Julia error") and "deliberate Julia error" in r.stderr and "Traceback" not in r.stderr, r.stderr
    before = out.read_bytes()
    assert load(out).status == "failed" and len(load(out).paths) == 1

    # Julia missing when resuming: a clear error naming how to install it, the file untouched
    r = ramble(["resume", str(out)], env=dict(ENV, RAMBLE_JULIA=str(tmp_path / "no-julia"), PATH="/usr/bin/none"))
    assert r.returncode == 1 and "Julia" in r.stderr and "install" in r.stderr.lower() and "Traceback" not in r.stderr, r.stderr
    assert out.read_bytes() == before

    resume_in_process(out)
    assert diff(ref, out) == []


@pytest.mark.parametrize("kind", ["tcm-python", "tcm-julia"])
def test_the_same_command_gives_the_same_file(kind, reference, tmp_path):
    ref, _ = reference(kind)
    out = tmp_path / "again.h5"
    r = ramble([*KINDS[kind][0], "--out", str(out)])
    assert r.returncode == 0, r.stderr
    assert diff(ref, out) == []
    r = CliRunner().invoke(main, ["diff", str(ref), str(out)])
    assert r.exit_code == 0 and "same" in r.output


def test_diff_reports_a_changed_value(reference, tmp_path):
    ref, _ = reference("tcm-python")
    other = tmp_path / "changed.h5"
    shutil.copyfile(ref, other)
    with h5py.File(other, "r+") as f:
        f["paths/0-1/train_loss"][3] += 1e-12
        f["solutions/1"].attrs["epochs"] = 0
    lines = diff(ref, other)
    assert any("/paths/0-1/train_loss: data differ" in x for x in lines)
    assert any("/solutions/1: attribute 'epochs' differs" in x for x in lines)
    r = CliRunner().invoke(main, ["diff", str(ref), str(other)])
    assert r.exit_code == 1 and "2 difference(s)" in r.output


def test_resume_refuses_what_it_cannot_continue(reference, tmp_path):
    from ramble.errors import RambleError
    from ramble.experiments.tcm_experiment import TCMExperimentConfig, run_tcm_experiment

    ref, _ = reference("tcm-python")
    runner = CliRunner()
    running = tmp_path / "running.h5"
    shutil.copyfile(ref, running)
    with h5py.File(running, "r+") as f:
        f.attrs["status"] = "running"
    before = running.read_bytes()
    # run options beside --resume must be the file's own
    r = runner.invoke(main, ["tcm", "run", "--backend", "python", *TCM_ARGS, "--seed", "5", "--resume", str(running)])
    assert r.exit_code == 1 and "config differs" in r.output, r.output
    r = runner.invoke(main, ["tcm", "run", "--backend", "julia", *TCM_ARGS, "--resume", str(running)])
    assert r.exit_code == 1 and "written by the 'python' backend" in r.output, r.output
    r = runner.invoke(main, ["tcm", "run", "--out", str(running), "--force", "--resume", str(running)])
    assert r.exit_code == 1 and "--force and --resume exclude each other" in r.output, r.output
    r = runner.invoke(main, ["tcm", "run", "--out", str(tmp_path / "other.h5"), "--resume", str(running)])
    assert r.exit_code == 1 and "name different files" in r.output, r.output
    assert running.read_bytes() == before
    r = runner.invoke(main, ["tcm", "run"])
    assert r.exit_code == 1 and "--out FILE" in r.output and "--resume FILE" in r.output
    r = runner.invoke(main, ["resume", str(tmp_path / "none.h5")])
    assert r.exit_code == 1 and "no such file" in r.output
    # the same options as the file's: it is continued (and here finished)
    r = runner.invoke(main, ["--quiet", "tcm", "run", "--backend", "python", *TCM_ARGS, "--resume", str(running)])
    assert r.exit_code == 0 and diff(ref, running) == [], r.output
    # a complete file: `ramble resume` leaves it as it is, the API refuses it
    before = ref.read_bytes()
    r = runner.invoke(main, ["--quiet", "resume", str(ref)])
    assert r.exit_code == 0 and ref.read_bytes() == before
    with pytest.raises(RambleError, match="complete already"):
        run_tcm_experiment(TCMExperimentConfig(n_inputs=30, n_hidden=3, n_patterns=40, n_solutions=3, backend="python"), ref, resume=True, show_progress=False)
