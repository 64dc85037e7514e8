"""Bad input, row by row (issue 6): one line naming the value and what was expected, a non-zero exit, no traceback.

One table, ``TABLE``: each row is a command line (run by click's CliRunner
on ``ramble.cli.main``, or, where the row needs a process of its own, by the
real ``ramble`` executable), an optional setup that makes the bad file,
folder or environment, the exit status, and a regular expression the one
error line must match.  Exit 1 is ramble's refusal (``error: ...``, one line
on stderr, nothing else there); exit 2 is click's usage error.  Rows cover,
for every command they apply to: N not divisible by K, non-positive sizes,
gamma outside (0, 1], negative learning rates, a file of another format or
of a newer format version, a truncated or corrupt HDF5 file, missing or
corrupt MNIST files, no Julia, CUDA asked for but absent, an existing output
file, an unwritable output folder and a full disk (``RLIMIT_FSIZE``: writes
fail with EFBIG at the byte level).  Solutions not in S and endpoints of
different shapes can only be given through the public API, so they are the
second table, ``API_TABLE``.
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import h5py
import matplotlib
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ramble.cli import main
from ramble.errors import ConfigError
from ramble.julia import bridge as julia_bridge
from ramble.models import mnist
from ramble.storage.io import FORMAT_VERSION, load

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "mnist"
_exe = Path(sys.executable).with_name("ramble")
RAMBLE = [str(_exe)] if _exe.exists() else [sys.executable, "-m", "ramble.cli"]

TINY_TCM = ["--backend", "python", "-N", "30", "-K", "3", "-M", "40", "--solutions", "2"]
TINY_MNIST = ["--train-size", "20", "--test-size", "20", "--device", "cpu", "--gamma", "0.5", "--n-epochs", "1", "--points", "5",
              "--weight-rows", "3", "--linear-points", "2", "--solutions", "2", "--max-epochs", "300"]
MNIST_OK = ["--data-dir", str(FIXTURE), *TINY_MNIST]
REPRODUCE_OK = ["--scale", "tiny", "--tcm-backend", "python", "--data-dir", str(FIXTURE), "--device", "cpu", "--jobs", "1"]
CUDA = torch.cuda.is_available()
MPL_CACHE = matplotlib.get_cachedir()
INSTALL = r"Install Julia.*juliaup.*RAMBLE_JULIA=/path/to/bin/julia"
RUN_FLAGS = ("-N", "-K", "-M", "--gamma", "--path-lr", "--train-lr", "--solutions", "--seed")


# ----------------------------------------------------------------------------- valid files, made once
@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> dict[str, Path]:
    """A complete TCM file and a complete LeNet5 file, at toy sizes (a few seconds each)."""
    d = tmp_path_factory.mktemp("valid")
    for name, args in (("tcm", ["tcm", "run", *TINY_TCM]), ("mnist", ["mnist", "run", *MNIST_OK])):
        r = CliRunner().invoke(main, ["--quiet", *args, "--out", str(d / f"{name}.h5")], catch_exceptions=False)
        assert r.exit_code == 0, r.output
    return {"tcm": d / "tcm.h5", "mnist": d / "mnist.h5"}


# ----------------------------------------------------------------------------- setups: bad files, folders, environments
# Each takes the row's folder (the working directory of the command) and the valid files.
Setup = Callable[[Path, dict], None]


def tcm(ws: Path, valid: dict) -> None:
    shutil.copyfile(valid["tcm"], ws / "tcm.h5")


def lenet(ws: Path, valid: dict) -> None:
    shutil.copyfile(valid["mnist"], ws / "mnist.h5")


def truncated(ws: Path, valid: dict) -> None:
    data = valid["tcm"].read_bytes()
    (ws / "trunc.h5").write_bytes(data[: len(data) // 2])


def corrupt_middle(ws: Path, valid: dict) -> None:
    """4 kB of flipped bits in the middle of the file (inside the path's weights)."""
    b = bytearray(valid["tcm"].read_bytes())
    mid = len(b) // 2
    b[mid - 2048 : mid + 2048] = bytes(x ^ 0xFF for x in b[mid - 2048 : mid + 2048])
    (ws / "corrupt.h5").write_bytes(bytes(b))


def corrupt_head(ws: Path, valid: dict) -> None:
    """The first 512 bytes flipped: the HDF5 superblock is gone."""
    b = bytearray(valid["tcm"].read_bytes())
    b[:512] = bytes(x ^ 0xFF for x in b[:512])
    (ws / "corrupt.h5").write_bytes(bytes(b))


def newer(ws: Path, valid: dict) -> None:
    shutil.copyfile(valid["tcm"], ws / "newer.h5")
    with h5py.File(ws / "newer.h5", "r+") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1


def other_hdf5(ws: Path, valid: dict) -> None:
    with h5py.File(ws / "other.h5", "w") as f:
        f["x"] = np.arange(3)


def text_file(ws: Path, valid: dict) -> None:
    (ws / "text.h5").write_text("time,loss\n0,0.5\n")


def _mnist_copy(ws: Path) -> Path:
    dst = ws / "mnist-data"
    shutil.copytree(FIXTURE, dst, ignore=shutil.ignore_patterns("*.py", "__pycache__"), copy_function=shutil.copyfile)
    return dst


def mnist_corrupt(ws: Path, valid: dict) -> None:
    """One bit flipped in the middle of the training images: the checksum no longer matches."""
    path = _mnist_copy(ws) / "train-images-idx3-ubyte.gz"
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    path.write_bytes(bytes(blob))


def mnist_missing_file(ws: Path, valid: dict) -> None:
    (_mnist_copy(ws) / "t10k-labels-idx1-ubyte.gz").unlink()


def mnist_empty(ws: Path, valid: dict) -> None:
    (ws / "mnist-data").mkdir()


def existing_out(ws: Path, valid: dict) -> None:
    (ws / "o.h5").write_bytes(b"precious, not to be overwritten")


def read_only_folder(ws: Path, valid: dict) -> None:
    ro = ws / "ro"
    ro.mkdir()
    shutil.copyfile(valid["tcm"], ro / "tcm.h5")
    ro.chmod(0o555)


def both(*setups: Setup) -> Setup:
    def run(ws: Path, valid: dict) -> None:
        for s in setups:
            s(ws, valid)
    return run


# Environments: values are callables of the row's folder; None removes the variable.
def no_julia_on_path(ws: Path) -> dict:
    (ws / "empty-bin").mkdir(exist_ok=True)
    return {"RAMBLE_JULIA": None, "PATH": str(ws / "empty-bin")}


def julia_elsewhere(ws: Path) -> dict:
    return {"RAMBLE_JULIA": str(ws / "nonexistent" / "julia")}


# ----------------------------------------------------------------------------- checks after a refusal
def untouched(name: str, content: Optional[bytes] = None) -> Callable[[Path, dict], None]:
    """``name`` in the row's folder still holds what the setup left (or ``content``), and no staging copy is left."""
    def check(ws: Path, valid: dict) -> None:
        want = content if content is not None else valid["tcm"].read_bytes()
        assert (ws / name).read_bytes() == want, f"{name} was changed"
        assert not list(ws.glob(f"**/.{Path(name).name}.commit")), "a staging copy was left behind"
    return check


def committed_or_absent(name: str) -> Callable[[Path, dict], None]:
    """After a write failed midway: ``name`` is absent, or a ramble file that opens and does not claim to be complete."""
    def check(ws: Path, valid: dict) -> None:
        if (ws / name).exists():
            assert load(ws / name, weights=False).status in ("running", "failed")
    return check


def absent(name: str) -> Callable[[Path, dict], None]:
    def check(ws: Path, valid: dict) -> None:
        assert not (ws / name).exists(), f"{name} was written"
    return check


# ----------------------------------------------------------------------------- the table
@dataclass
class Row:
    id: str
    args: list[str]
    code: int
    message: str  # regex searched in the one error line
    setup: Optional[Setup] = None
    env: Optional[Callable[[Path], dict]] = None
    after: Optional[Callable[[Path, dict], None]] = None
    stdout: Optional[str] = None  # regex the standard output must contain (verify's table)
    fsize: Optional[Callable[[dict], int]] = None  # full disk: RLIMIT_FSIZE in bytes, in a process of its own
    unwritable: bool = False  # the row needs permissions enforced, in a process of its own
    cuda_absent: bool = False

    @property
    def needs_process(self) -> bool:
        return self.fsize is not None or self.unwritable


def _bad_run_values() -> list[Row]:
    """Sizes, gamma and learning rates for ``tcm run``, ``mnist run`` and ``tcm crosscheck``."""
    rows = []
    tcm_run = ["tcm", "run", *TINY_TCM]
    for args, msg in (
        (["-N", "100", "-K", "3"], r"K=3 must divide N=100 \(each hidden unit sees N/K inputs\)"),
        (["-N", "0"], r"N must be a positive integer, got 0"),
        (["-N", "-30"], r"N must be a positive integer, got -30"),
        (["-K", "0"], r"K must be a positive integer, got 0"),
        (["-M", "0"], r"M must be a positive integer, got 0"),
        (["-M", "-5"], r"M must be a positive integer, got -5"),
        (["--solutions", "0"], r"--solutions must be >= 1, got 0"),
        (["--seed", "-1"], r"--seed must be >= 0, got -1"),
        (["--gamma", "0"], r"gamma must be in \(0, 1\], got 0\.0"),
        (["--gamma", "1.5"], r"gamma must be in \(0, 1\], got 1\.5"),
        (["--gamma", "-0.1"], r"gamma must be in \(0, 1\], got -0\.1"),
        (["--gamma", "nan"], r"gamma must be in \(0, 1\], got nan"),
        (["--path-lr", "-0.1"], r"path learning rate must be a finite number >= 0, got -0\.1"),
        (["--path-lr", "inf"], r"path learning rate must be a finite number >= 0, got inf"),
        (["--train-lr", "-0.1"], r"training learning rate must be a finite number > 0, got -0\.1"),
        (["--train-lr", "0"], r"training learning rate must be a finite number > 0, got 0\.0"),
        (["--init-scale", "0"], r"init scale must be a finite number > 0, got 0\.0"),
        (["--max-epochs", "0"], r"max epochs must be >= 1, got 0"),
        (["--restarts", "0"], r"restarts must be >= 1, got 0"),
        (["--polish-margin", "-1"], r"polish margin must be >= 0, got -1\.0"),
        (["--polish-margin", "nan"], r"polish margin must be >= 0, got nan"),
        (["--n-epochs", "-1"], r"N_epochs must be >= 0, got -1"),
        (["--margin-target", "0"], r"margin target must be > 0, got 0\.0"),
        (["--max-iterations", "0"], r"max iterations must be >= 1, got 0"),
        (["--tol", "1"], r"arrival tolerance must be in \(0, 1\), got 1\.0"),
        (["--max-waypoints", "-1"], r"max waypoints must be >= 0, got -1"),
        (["--linear-points", "1"], r"--linear-points must be >= 2, got 1"),
        (["--hessian-points", "1"], r"--hessian-points must be 0 or >= 2 \(both endpoints\), got 1"),
        (["--hessian-points", "-2"], r"--hessian-points must be 0 or >= 2 \(both endpoints\), got -2"),
    ):
        rows.append(Row(f"tcm-run{'_'.join(args)}", [*tcm_run, *args, "--out", "o.h5"], 1, msg, after=absent("o.h5")))
    for args, msg in (
        (["-N", "100", "-K", "3"], r"K=3 must divide N=100"),
        (["-N", "0"], r"N must be a positive integer, got 0"),
        (["-K", "-1"], r"K must be a positive integer, got -1"),
        (["-M", "0"], r"M must be a positive integer, got 0"),
        (["--seed", "-1"], r"--seed must be >= 0, got -1"),
    ):
        rows.append(Row(f"tcm-crosscheck{'_'.join(args)}", ["tcm", "crosscheck", *args], 1, msg))
    mnist_run = ["mnist", "run", *MNIST_OK]
    for args, msg in (
        (["--train-size", "0"], r"train_size=0 is out of range: must be an integer in \[1, 60000\]"),
        (["--train-size", "60001"], r"train_size=60001 is out of range: must be an integer in \[1, 60000\]"),
        (["--test-size", "-3"], r"test_size=-3 is out of range: must be an integer in \[1, 10000\]"),
        (["--solutions", "0"], r"--solutions must be >= 1, got 0"),
        (["--seed", "-1"], r"--seed must be >= 0, got -1"),
        (["--gamma", "0"], r"gamma must be in \(0, 1\], got 0\.0"),
        (["--gamma", "2"], r"gamma must be in \(0, 1\], got 2\.0"),
        (["--path-lr", "-1"], r"path learning rate must be a finite number >= 0, got -1\.0"),
        (["--train-lr", "-1"], r"--train-lr must be a finite number > 0, got -1\.0"),
        (["--train-lr", "nan"], r"--train-lr must be a finite number > 0, got nan"),
        (["--max-epochs", "0"], r"--max-epochs must be >= 1, got 0"),
        (["--batch-size", "0"], r"--batch-size must be >= 1, got 0"),
        (["--points", "0"], r"--points must be >= 1, got 0"),
        (["--weight-rows", "-1"], r"--weight-rows must be >= 1, got -1"),
        (["--linear-points", "1"], r"--linear-points must be >= 2, got 1"),
        (["--hessian-points", "1"], r"--hessian-points must be 0 or >= 2 \(both endpoints\), got 1"),
        (["--polish-margin", "-1"], r"--polish-margin must be >= 0, got -1\.0"),
        (["--polish-margin", "nan"], r"--polish-margin must be >= 0, got nan"),
        (["--n-epochs", "-1"], r"N_epochs must be >= 0, got -1"),
        (["--device", "tpu"], r"unknown device 'tpu': use auto, cpu, cuda or cuda:N"),
    ):
        rows.append(Row(f"mnist-run{'_'.join(args)}", [*mnist_run, *args, "--out", "o.h5"], 1, msg, after=absent("o.h5")))
    return rows


def _bad_files() -> list[Row]:
    """Another format, a newer version, truncated, corrupt, missing: for every command that reads a file."""
    rows = []
    readers = {
        "info": ["info"],
        "verify": ["verify"],
        "plot": ["plot", "--out", "figs"],
        "hessian": ["hessian", "--points", "3"],
        "resume": ["resume"],
    }
    for cmd, (head, *rest) in readers.items():
        def line(name: str) -> list[str]:
            return [head, name, *rest]
        rows += [
            Row(f"{cmd}-text-file", line("text.h5"), 1, r"text\.h5 is not a readable HDF5 file .*not written by ramble", text_file),
            Row(f"{cmd}-hdf5-not-ramble", line("other.h5"), 1, r"other\.h5 is an HDF5 file but not a ramble file \(format attribute '', expected 'ramble'\)", other_hdf5),
            Row(f"{cmd}-newer-format-version", line("newer.h5"), 1, rf"newer\.h5 has ramble format version {FORMAT_VERSION + 1}; this ramble reads versions 1\.\.{FORMAT_VERSION} \(upgrade ramble\)", newer),
            Row(f"{cmd}-truncated", line("trunc.h5"), 1, r"trunc\.h5 .*(truncated|damaged)", truncated),
            Row(f"{cmd}-corrupt-superblock", line("corrupt.h5"), 1, r"corrupt\.h5 is not a readable HDF5 file", corrupt_head),
            Row(f"{cmd}-missing", line("missing.h5"), 1, r"missing\.h5: no such file"),
            Row(f"{cmd}-folder", line("."), 1 if cmd == "info" else 2, r"(\. is a folder, expected a ramble \.h5 file|'\.' is a directory)"),
        ]
    # Corruption inside the data (not the metadata): the commands that read the data find it.
    # (`info` reads only metadata and summarises; `verify` is the command that checks data.)
    rows += [
        Row("verify-corrupt-data", ["verify", "corrupt.h5"], 1, r"corrupt\.h5: 1 check\(s\) failed: file", corrupt_middle,
            stdout=r"file\s+FAIL\s+damaged ramble file"),
        Row("plot-corrupt-data", ["plot", "corrupt.h5", "--out", "figs"], 1, r"corrupt\.h5: damaged ramble file", corrupt_middle),
        Row("hessian-corrupt-data", ["hessian", "corrupt.h5", "--points", "3"], 1, r"corrupt\.h5: damaged ramble file", corrupt_middle),
    ]
    return rows


def _other_options() -> list[Row]:
    """The options of `hessian`, `verify`, `plot`, `reproduce` that take a value."""
    rows = []
    for args, msg in (
        (["--points", "1"], r"--points must be >= 2 \(both endpoints\), got 1"),
        (["--every", "0"], r"--every must be >= 1, got 0"),
        (["--points", "3", "--every", "2"], r"give exactly one of --points and --every"),
        (["--k", "0"], r"--k must be >= 1, got 0"),
        (["--tol", "0"], r"--tol must be in \(0, 1\), got 0\.0"),
        (["--subset", "0"], r"--subset must be >= 1, got 0"),
        (["--trace-samples", "-1"], r"--trace-samples must be >= 0, got -1"),
        (["--path", "5-6"], r"tcm\.h5 has no path '5-6'; it has: 0-1"),
        (["--device", "tpu"], r"unknown device 'tpu': use auto, cpu, cuda or cuda:N"),
    ):
        rows.append(Row(f"hessian{'_'.join(args)}", ["hessian", "tcm.h5", *args], 1, msg, tcm, after=untouched("tcm.h5")))
    rows += [
        Row("hessian--which_XX", ["hessian", "tcm.h5", "--which", "XX"], 2, r"Invalid value for '--which': 'XX' is not one of 'LA', 'LM'", tcm),
        Row("verify--sample-rows_1", ["verify", "tcm.h5", "--sample-rows", "1"], 2, r"Invalid value for '--sample-rows': 1 is not in the range x>=2", tcm),
        Row("verify--device_tpu", ["verify", "tcm.h5", "--device", "tpu"], 1, r"unknown device 'tpu'", tcm),
        Row("plot--format_gif", ["plot", "tcm.h5", "--format", "gif"], 2, r"Invalid value for '--format': 'gif' is not one of 'png', 'pdf'", tcm),
        Row("plot-no-file", ["plot"], 2, r"Missing argument 'FILES\.\.\.'"),
        Row("tcm-run--backend_fortran", ["tcm", "run", "--backend", "fortran", "--out", "o.h5"], 2, r"Invalid value for '--backend': 'fortran' is not one of 'julia', 'python'"),
        Row("tcm-run--out_folder", ["tcm", "run", *TINY_TCM, "--out", "."], 2, r"Invalid value for '--out': File '\.' is a directory"),
        Row("tcm-run-no-out", ["tcm", "run", *TINY_TCM], 1, r"give --out FILE for a new run, or --resume FILE"),
        Row("reproduce--jobs_0", ["reproduce", "--out", "r", *REPRODUCE_OK, "--jobs", "0"], 1, r"--jobs must be >= 1, got 0", after=absent("r")),
        Row("reproduce--scale_huge", ["reproduce", "--out", "r", "--scale", "huge"], 2, r"Invalid value for '--scale': 'huge' is not one of 'quick', 'paper', 'tiny'"),
        Row("reproduce--out_file", ["reproduce", "--out", "tcm.h5", *REPRODUCE_OK], 2, r"Invalid value for '--out': Directory 'tcm\.h5' is a file", tcm),
        Row("reproduce--device_tpu", ["reproduce", "--out", "r", *REPRODUCE_OK, "--device", "tpu"], 1, r"unknown device 'tpu'", after=absent("r")),
    ]
    return rows


def _environment() -> list[Row]:
    """MNIST, Julia, CUDA, existing and unwritable outputs, a full disk."""
    tcm_h5 = lambda v: v["tcm"].stat().st_size  # noqa: E731
    rows = [
        # MNIST missing or corrupt
        Row("mnist-run-corrupt-mnist", ["mnist", "run", *TINY_MNIST, "--data-dir", "mnist-data", "--out", "o.h5"], 1,
            r"MNIST file mnist-data/train-images-idx3-ubyte\.gz is corrupt or not the expected file: sha256_gz [0-9a-f]{64}, expected [0-9a-f]{64}; replace it",
            mnist_corrupt, after=absent("o.h5")),
        Row("mnist-run-mnist-file-missing", ["mnist", "run", *TINY_MNIST, "--data-dir", "mnist-data", "--out", "o.h5"], 1,
            r"MNIST file missing: mnist-data/t10k-labels-idx1-ubyte\.gz", mnist_missing_file, after=absent("o.h5")),
        Row("mnist-run-mnist-folder-empty", ["mnist", "run", *TINY_MNIST, "--data-dir", "mnist-data", "--out", "o.h5"], 1,
            r"MNIST not found: --data-dir mnist-data holds no train-images-idx3-ubyte\.gz.*--download", mnist_empty),
        # (with nothing configured, the checkout's ../shared/mnist is found: the search order is in test_mnist_data.py)
        Row("mnist-run-mnist-nowhere", ["mnist", "run", *TINY_MNIST, "--out", "o.h5"], 1,
            r"MNIST not found: RAMBLE_MNIST_DIR \S*nowhere does not exist", env=lambda ws: {"RAMBLE_MNIST_DIR": "nowhere"}, after=absent("o.h5")),
        Row("verify-corrupt-mnist", ["verify", "mnist.h5", "--data-dir", "mnist-data"], 1, r"mnist\.h5: 1 check\(s\) failed: data",
            both(lenet, mnist_corrupt), stdout=r"data\s+FAIL\s+MNIST data of the run not available: MNIST file \S+train-images-idx3-ubyte\.gz is corrupt"),
        Row("verify-missing-mnist", ["verify", "mnist.h5", "--data-dir", "nowhere"], 1, r"mnist\.h5: 1 check\(s\) failed: data",
            lenet, stdout=r"data\s+FAIL\s+MNIST data of the run not available: MNIST not found: --data-dir nowhere does not exist"),
        Row("hessian-corrupt-mnist", ["hessian", "mnist.h5", "--data-dir", "mnist-data", "--points", "2", "--device", "cpu"], 1,
            r"MNIST file mnist-data/train-images-idx3-ubyte\.gz is corrupt", both(lenet, mnist_corrupt)),
        Row("hessian-missing-mnist", ["hessian", "mnist.h5", "--data-dir", "nowhere", "--points", "2", "--device", "cpu"], 1,
            r"MNIST not found: --data-dir nowhere does not exist", lenet),
        Row("reproduce-corrupt-mnist", ["reproduce", "--out", "r", *REPRODUCE_OK, "--data-dir", "mnist-data"], 1,
            r"MNIST file mnist-data/train-images-idx3-ubyte\.gz is corrupt", mnist_corrupt, after=absent("r")),
        Row("reproduce-missing-mnist", ["reproduce", "--out", "r", *REPRODUCE_OK, "--data-dir", "nowhere"], 1,
            r"MNIST not found: --data-dir nowhere does not exist", after=absent("r")),
        # No Julia (the message says how to install it)
        Row("tcm-run-no-julia-on-path", ["tcm", "run", *TINY_TCM, "--backend", "julia", "--out", "o.h5"], 1,
            rf"Julia not found: no `julia` on PATH and RAMBLE_JULIA is not set\. {INSTALL}", env=no_julia_on_path, after=absent("o.h5")),
        Row("tcm-run-RAMBLE_JULIA-wrong", ["tcm", "run", *TINY_TCM, "--backend", "julia", "--out", "o.h5"], 1,
            rf"RAMBLE_JULIA=\S+/nonexistent/julia is not an executable Julia\. {INSTALL}", env=julia_elsewhere, after=absent("o.h5")),
        Row("tcm-crosscheck-no-julia", ["tcm", "crosscheck", "-N", "30", "-K", "3", "-M", "40"], 1,
            rf"Julia not found: no `julia` on PATH.*{INSTALL}", env=no_julia_on_path),
        Row("hessian-backend-julia-no-julia", ["hessian", "tcm.h5", "--points", "2", "--backend", "julia"], 1,
            rf"Julia not found: no `julia` on PATH.*{INSTALL}", tcm, env=no_julia_on_path, after=untouched("tcm.h5")),
        Row("reproduce-no-julia", ["reproduce", "--out", "r", *REPRODUCE_OK, "--tcm-backend", "julia"], 1,
            rf"Julia not found: no `julia` on PATH.*{INSTALL}", env=no_julia_on_path, after=absent("r")),
        # CUDA asked for but absent
        Row("mnist-run-cuda-absent", ["mnist", "run", *MNIST_OK, "--device", "cuda", "--out", "o.h5"], 1,
            r"device 'cuda' requested but CUDA is not available here; use --device cpu or auto", cuda_absent=True, after=absent("o.h5")),
        Row("mnist-run-cuda1-absent", ["mnist", "run", *MNIST_OK, "--device", "cuda:1", "--out", "o.h5"], 1,
            r"device 'cuda:1' requested but CUDA is not available here", cuda_absent=True),
        Row("hessian-cuda-absent", ["hessian", "tcm.h5", "--device", "cuda"], 1, r"device 'cuda' requested but CUDA is not available here",
            tcm, cuda_absent=True, after=untouched("tcm.h5")),
        Row("verify-cuda-absent", ["verify", "tcm.h5", "--device", "cuda"], 1, r"device 'cuda' requested but CUDA is not available here", tcm, cuda_absent=True),
        Row("reproduce-cuda-absent", ["reproduce", "--out", "r", *REPRODUCE_OK, "--device", "cuda"], 1,
            r"device 'cuda' requested but CUDA is not available here", cuda_absent=True, after=absent("r")),
        # An output file that exists
        Row("tcm-run-output-exists", ["tcm", "run", *TINY_TCM, "--out", "o.h5"], 1, r"output file o\.h5 exists; pass --force",
            existing_out, after=untouched("o.h5", b"precious, not to be overwritten")),
        Row("mnist-run-output-exists", ["mnist", "run", *MNIST_OK, "--out", "o.h5"], 1, r"output file o\.h5 exists; pass --force",
            existing_out, after=untouched("o.h5", b"precious, not to be overwritten")),
        Row("tcm-run-output-folder-missing", ["tcm", "run", *TINY_TCM, "--out", "nodir/o.h5"], 1, r"output folder nodir does not exist"),
        # An unwritable output folder (permissions enforced in a process of its own, see run_process)
        Row("tcm-run-unwritable-folder", ["tcm", "run", *TINY_TCM, "--out", "ro/o.h5"], 1, r"output folder ro is not writable",
            read_only_folder, unwritable=True, after=absent("ro/o.h5")),
        Row("mnist-run-unwritable-folder", ["mnist", "run", *MNIST_OK, "--out", "ro/o.h5"], 1, r"output folder ro is not writable",
            read_only_folder, unwritable=True, after=absent("ro/o.h5")),
        Row("hessian-unwritable-folder", ["hessian", "ro/tcm.h5", "--points", "2"], 1, r"cannot write ro/tcm\.h5: .*Permission denied",
            read_only_folder, unwritable=True, after=untouched("ro/tcm.h5")),
        Row("plot-unwritable-folder", ["plot", "ro/tcm.h5", "--out", "ro/figs"], 1, r"cannot create figure folder ro/figs: Permission denied",
            read_only_folder, unwritable=True),
        Row("plot-unwritable-existing-folder", ["plot", "ro/tcm.h5", "--out", "ro"], 1, r"figure folder ro is not writable",
            read_only_folder, unwritable=True),
        Row("reproduce-unwritable-folder", ["reproduce", "--out", "ro/r", *REPRODUCE_OK], 1, r"cannot create output folder ro/r: Permission denied",
            read_only_folder, unwritable=True),
        # A full disk (simulated: a file size limit, so writes fail with EFBIG)
        Row("tcm-run-disk-full-at-creation", ["tcm", "run", *TINY_TCM, "--out", "o.h5"], 1, r"o\.h5.*File too large", fsize=lambda v: 0,
            after=absent("o.h5")),
        Row("tcm-run-disk-full-early", ["tcm", "run", *TINY_TCM, "--out", "o.h5"], 1, r"o\.h5.*File too large", fsize=lambda v: 5000,
            after=committed_or_absent("o.h5")),
        Row("tcm-run-disk-full-midway", ["tcm", "run", *TINY_TCM, "--out", "o.h5"], 1, r"o\.h5.*File too large", fsize=lambda v: tcm_h5(v) // 3,
            after=committed_or_absent("o.h5")),
        Row("mnist-run-disk-full-midway", ["mnist", "run", *MNIST_OK, "--out", "o.h5"], 1, r"o\.h5.*File too large",
            fsize=lambda v: v["mnist"].stat().st_size // 3, after=committed_or_absent("o.h5")),
        Row("hessian-disk-full", ["hessian", "tcm.h5", "--points", "2"], 1, r"cannot write tcm\.h5: .*File too large", tcm,
            fsize=lambda v: tcm_h5(v) // 2, after=untouched("tcm.h5")),
        Row("plot-disk-full", ["plot", "tcm.h5", "--out", "figs"], 1, r"cannot write figure figs/\S+\.png: File too large", tcm, fsize=lambda v: 1000),
        Row("reproduce-disk-full", ["reproduce", "--out", "r", *REPRODUCE_OK], 1, r"cannot write r/logs/\S+\.log: File too large", fsize=lambda v: 0),
    ]
    return rows


TABLE: list[Row] = _bad_run_values() + _bad_files() + _other_options() + _environment()
BY_ID = {r.id: r for r in TABLE}
assert len(BY_ID) == len(TABLE), "row ids must be unique"


# ----------------------------------------------------------------------------- running a row
def _prepare(row: Row, ws: Path, valid: dict, monkeypatch: pytest.MonkeyPatch) -> dict:
    if row.cuda_absent and CUDA:
        pytest.skip("CUDA is present here")
    if row.setup is not None:
        row.setup(ws, valid)
    monkeypatch.delenv(mnist.ENV_VAR, raising=False)
    # No download cache of the developer's; matplotlib keeps its own font cache (rebuilding it is slow, and a write).
    env = {"XDG_CACHE_HOME": str(ws / "xdg-cache"), "MPLCONFIGDIR": MPL_CACHE, "OMP_NUM_THREADS": "1"}
    env.update(row.env(ws) if row.env is not None else {})
    return env


def _error_line(stderr: str) -> str:
    """The one line of stderr: ``error: ...`` for exit 1, click's ``Error: ...`` (after its usage lines) for exit 2."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert lines, "nothing on stderr"
    return lines[-1]


def _check(row: Row, code: int, stdout: str, stderr: str, ws: Path, valid: dict) -> None:
    assert code == row.code, f"exit {code}, expected {row.code}\nstdout: {stdout}\nstderr: {stderr}"
    line = _error_line(stderr)
    if row.code == 1:
        assert stderr.strip() == line and line.startswith("error: "), f"not one line:\n{stderr}"
    else:
        assert line.startswith("Error: "), stderr
    assert re.search(row.message, line), f"{line!r} does not match {row.message!r}"
    if row.stdout is not None:
        assert re.search(row.stdout, stdout), stdout
    if row.after is not None:
        row.after(ws, valid)


def _in_process(row: Row, ws: Path, valid: dict, monkeypatch: pytest.MonkeyPatch, env: dict):
    for k, v in env.items():
        if v is None:
            monkeypatch.delenv(k, raising=False)
        else:
            monkeypatch.setenv(k, v)
    if row.env is not None:
        # Julia starts once per process: make this run look for it afresh, and forget it afterwards.
        monkeypatch.setattr(julia_bridge, "_bridge", None)
        monkeypatch.setattr(julia_bridge, "_bridge_error", None)
        monkeypatch.setattr(julia_bridge, "_install_cache", {})
    monkeypatch.chdir(ws)
    return CliRunner().invoke(main, ["--quiet", *row.args])


def _drop_dac() -> None:
    """In the child, before exec: drop root's permission overrides, so a folder's mode applies to it."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2, 3):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP: gone from the bounding set, so from root's caps at exec
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@functools.lru_cache(maxsize=None)
def _can_drop_dac() -> bool:
    try:
        return subprocess.run([sys.executable, "-c", "pass"], preexec_fn=_drop_dac).returncode == 0
    except (OSError, subprocess.SubprocessError):  # no CAP_SETPCAP (a container that forbids it)
        return False


def run_process(row: Row, ws: Path, valid: dict, env: dict, args: Optional[list[str]] = None) -> subprocess.CompletedProcess:
    """Run the real ``ramble`` executable, with a file size limit or without root's permission overrides if the row asks."""
    full_env = dict(os.environ)
    full_env.pop(mnist.ENV_VAR, None)
    for k, v in env.items():
        if v is None:
            full_env.pop(k, None)
        else:
            full_env[k] = v
    preexec: Optional[Callable[[], None]] = None
    if row.fsize is not None:
        limit = int(row.fsize(valid))

        def limit_file_size() -> None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        preexec = limit_file_size
    elif row.unwritable and os.geteuid() == 0:
        if not _can_drop_dac():
            pytest.skip("running as root without CAP_SETPCAP: permissions cannot be enforced")
        preexec = _drop_dac
    return subprocess.run([*RAMBLE, "--quiet", *(args or row.args)], cwd=ws, env=full_env, preexec_fn=preexec,
                          capture_output=True, text=True, timeout=300)


def _restore_permissions(ws: Path) -> None:
    for p in ws.rglob("*"):
        if p.is_dir() and not p.is_symlink():
            p.chmod(0o755)


@pytest.mark.parametrize("row", TABLE, ids=[r.id for r in TABLE])
def test_bad_input(row: Row, tmp_path: Path, valid: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    try:
        env = _prepare(row, ws, valid, monkeypatch)
        if row.needs_process:
            p = run_process(row, ws, valid, env)
            _check(row, p.returncode, p.stdout, p.stderr, ws, valid)
        else:
            r = _in_process(row, ws, valid, monkeypatch, env)
            assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
            _check(row, r.exit_code, r.stdout, r.stderr, ws, valid)
    finally:
        _restore_permissions(ws)


# The same rows through the real executable: the exit status is the process's, and no traceback reaches the terminal.
PROCESS_ROWS = ["tcm-run-N_100_-K_3", "info-text-file", "tcm-run-no-julia-on-path"]


@pytest.mark.parametrize("row_id", PROCESS_ROWS)
def test_bad_input_in_a_real_process(row_id: str, tmp_path: Path, valid: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    row = BY_ID[row_id]
    ws = tmp_path / "ws"
    ws.mkdir()
    env = _prepare(row, ws, valid, monkeypatch)
    p = run_process(row, ws, valid, env)
    _check(row, p.returncode, p.stdout, p.stderr, ws, valid)


def test_debug_shows_the_traceback(tmp_path: Path, valid: dict) -> None:
    text_file(tmp_path, valid)
    p = subprocess.run([*RAMBLE, "--debug", "info", "text.h5"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert p.returncode == 1
    assert p.stderr.startswith("Traceback (most recent call last)")
    assert re.search(r"^ramble\.errors\.FormatError: text\.h5 is not a readable HDF5 file", p.stderr.strip().splitlines()[-1])
    args = BY_ID["tcm-run-N_100_-K_3"].args
    r = CliRunner().invoke(main, ["--debug", *args[:-2], "--out", str(tmp_path / "o.h5")])
    assert isinstance(r.exception, ConfigError) and "K=3 must divide N=100" in str(r.exception)


def test_every_command_has_rows() -> None:
    """The table reaches every command named in the issue."""
    commands = {" ".join(r.args[:2]) if r.args[0] in ("tcm", "mnist") else r.args[0] for r in TABLE}
    assert commands >= {"tcm run", "tcm crosscheck", "mnist run", "hessian", "verify", "plot", "info", "reproduce"}


# ----------------------------------------------------------------------------- the public API: endpoints given by the user
@pytest.fixture(scope="module")
def problem():
    """A TCM problem (N=30, K=3, M=40) and two of its solutions, as NumPy arrays."""
    from ramble.models.patterns import random_patterns
    from ramble.models.tcm import TCMProblem, gaussian_init
    from ramble.models.tcm_training import TrainConfig, gd_solve, solve_with_restarts

    pats = random_patterns(30, 40, 3)
    prob = TCMProblem(pats, 3)
    cfg = TrainConfig()
    sols = [solve_with_restarts(lambda w0: gd_solve(prob, w0, cfg), lambda s: gaussian_init(30, cfg.init_scale / np.sqrt(10), s), 3, i, cfg).w for i in range(2)]
    assert all(prob.contains(torch.from_numpy(s)) for s in sols)
    return pats, prob, sols


def _api_calls():
    from ramble.core.path import PathConfig, find_path, straight_line
    from ramble.models.tcm_backends import PythonTCM, connect
    from ramble.models.tcm_training import TrainConfig

    t = torch.from_numpy
    cfg = PathConfig(max_iterations=50)

    def fp(prob, a, b):
        return find_path(prob, t(a), t(b), cfg)

    def cn(pats, a, b):
        return connect(PythonTCM(pats, 3), a, b, cfg, TrainConfig())

    return [
        ("find_path-W_a-not-in-S", lambda pats, prob, s: fp(prob, -s[0], s[1]), r"W_a is not a solution: it misclassifies"),
        ("find_path-W_b-not-in-S", lambda pats, prob, s: fp(prob, s[0], -s[1]), r"W_b is not a solution: it misclassifies"),
        ("find_path-W_a-nan", lambda pats, prob, s: fp(prob, np.full(30, np.nan), s[1]), r"W_a is not a solution"),
        ("find_path-shapes-differ", lambda pats, prob, s: fp(prob, s[0], s[1][:27]), r"endpoints must be flat vectors of the model.s 30 parameters, got shapes \(30,\) and \(27,\)"),
        ("find_path-not-flat", lambda pats, prob, s: fp(prob, s[0][None], s[1][None]), r"endpoints must be flat vectors of the model.s 30 parameters, got shapes \(1, 30\) and \(1, 30\)"),
        ("find_path-wrong-length-for-the-model", lambda pats, prob, s: fp(prob, s[0][:27], s[1][:27]), r"\b27\b.*\b30\b|\b30\b.*\b27\b"),
        ("straight_line-shapes-differ", lambda pats, prob, s: straight_line(prob, t(s[0]), t(s[1][:27]), 5), r"\(30,\).*\(27,\)"),
        ("connect-W_a-not-in-S", lambda pats, prob, s: cn(pats, -s[0], s[1]), r"W_a is not a solution: it misclassifies"),
        ("connect-W_b-not-in-S", lambda pats, prob, s: cn(pats, s[0], -s[1]), r"W_b is not a solution: it misclassifies"),
        ("connect-shapes-differ", lambda pats, prob, s: cn(pats, s[0], s[1][:27]), r"got shapes \(30,\) and \(27,\)|length N=30, got shape \(27,\)"),
        ("connect-wrong-length-for-the-model", lambda pats, prob, s: cn(pats, s[0][:27], s[1][:27]), r"weights must be a flat vector of length N=30, got shape \(27,\)"),
    ]


API_TABLE = _api_calls()


@pytest.mark.parametrize("call,message", [(c, m) for _, c, m in API_TABLE], ids=[i for i, _, _ in API_TABLE])
def test_bad_endpoints_through_the_public_api(problem, call, message) -> None:
    pats, prob, sols = problem
    with pytest.raises(ConfigError) as exc:
        call(pats, prob, sols)
    msg = str(exc.value)
    assert "\n" not in msg and re.search(message, msg), msg
