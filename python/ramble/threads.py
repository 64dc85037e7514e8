"""Deliberate thread counts for ramble's CPU work (torch, NumPy's BLAS, Julia's BLAS).

Why: ramble's TCM work is linear algebra on matrices of a few hundred rows
(N = 300, M = 620).  Threads gain nothing on work that small, and on a busy
machine they lose a lot: each BLAS or OpenMP call waits for a thread whose
core is taken by another job.  With another job on the second core of a
2-core machine, ``OMP_NUM_THREADS=2 ramble tcm run --backend julia --seed
7312 --solutions 3`` took 67 s against 15.6 s with one thread
(benchmarks/README.md, "Threads").

Policy (docs/sweeps.md):

* one process running TCM-sized work: one thread everywhere
  (:func:`limit_threads`);
* a sweep or ``ramble reproduce`` running n jobs at a time: n processes with
  one thread each (:func:`worker_env` for subprocesses, :func:`limit_threads`
  in pool workers);
* the Hessian of LeNet5 on the CPU: torch threads = free cores
  (:func:`free_cores`), since a product over 100 images is big enough to
  share, but only over cores nobody else uses.

The environment variables below are read once, when a library loads; so a
process sets them before torch, NumPy or Julia start where it can, and
:func:`limit_threads` also sets the running libraries directly (torch's
``set_num_threads``, threadpoolctl for NumPy's BLAS and OpenMP, and Julia's
``BLAS.set_num_threads`` through the bridge when Julia runs here).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

THREAD_ENV_VARS: tuple[str, ...] = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
"""Read by OpenMP, OpenBLAS (NumPy's and Julia's) and MKL when they load."""

# threadpoolctl's limits last as long as this object lives.
_numpy_limits: Optional[Any] = None


@dataclass
class ThreadSettings:
    """What :func:`limit_threads` set: ``torch`` threads, NumPy's pools (library -> threads), Julia's BLAS.

    ``julia`` is the BLAS thread count read back from a running Julia, and
    None when Julia is not running in this process (it will start with
    ``OPENBLAS_NUM_THREADS`` from the environment) or runs on another thread.
    """

    torch: int
    numpy: dict[str, int] = field(default_factory=dict)
    julia: Optional[int] = None


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask; ``os.cpu_count`` off Linux)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def free_cores() -> int:
    """Usable CPUs minus the 1-minute load average (other work), at least 1."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    return max(1, int(usable_cpus() - load))


def worker_env(n: int = 1, base: Optional[dict[str, str]] = None) -> dict[str, str]:
    """A copy of ``base`` (default ``os.environ``) with every thread variable set to ``n``: for a subprocess."""
    if n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    env = dict(os.environ if base is None else base)
    env.update({k: str(n) for k in THREAD_ENV_VARS})
    return env


def _limit_numpy(n: int) -> dict[str, int]:
    """Cap NumPy's BLAS/OpenMP pools at ``n`` via threadpoolctl (absent: nothing, env vars only)."""
    global _numpy_limits
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        return {}
    _numpy_limits = threadpool_limits(limits=n)
    return {f"{p['internal_api']}:{os.path.basename(p['filepath'])}": int(p["num_threads"]) for p in threadpool_info()}


def set_julia_blas_threads(n: int) -> Optional[int]:
    """Set Julia's BLAS threads if Julia runs in this process; returns the count read back from Julia's BLAS.

    Returns None, without starting Julia, when it is not running, and when
    called from another thread than the one that started it (the bridge
    accepts calls from that thread only).
    """
    import threading

    from ramble.julia import bridge as julia_bridge

    if not julia_bridge.is_started():
        return None
    bridge = julia_bridge.get_bridge()
    if threading.get_ident() != bridge.thread:  # Julia 1.5 cannot be called from another thread
        return None
    return bridge.eval(
        f"import LinearAlgebra; LinearAlgebra.BLAS.set_num_threads({int(n)}); "
        "isdefined(LinearAlgebra.BLAS, :get_num_threads) ? Int(LinearAlgebra.BLAS.get_num_threads()) : "
        "Int(ccall((:openblas_get_num_threads64_, Base.libblas_name), Cint, ()))")  # Julia 1.5: OpenBLAS itself


def limit_threads(n: int = 1) -> ThreadSettings:
    """Use ``n`` threads for torch, NumPy's BLAS and OpenMP, and Julia's BLAS, now and in libraries loaded later.

    Sets the environment variables (for Julia started later in this process
    and for child processes), ``torch.set_num_threads``, threadpoolctl's
    limits, and a running Julia's BLAS.  Call it before a TCM run, in each
    sweep worker, and before timing small linear algebra.
    """
    if n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    import torch

    os.environ.update({k: str(n) for k in THREAD_ENV_VARS})
    torch.set_num_threads(n)
    return ThreadSettings(torch=torch.get_num_threads(), numpy=_limit_numpy(n), julia=set_julia_blas_threads(n))
