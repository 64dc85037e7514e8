"""ramble.threads: deliberate thread counts for torch, NumPy's BLAS and Julia's BLAS."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from threadpoolctl import threadpool_info

from ramble.threads import THREAD_ENV_VARS, free_cores, limit_threads, usable_cpus, worker_env


def test_worker_env_sets_every_thread_variable_and_leaves_ours_alone():
    before = dict(os.environ)
    env = worker_env(1, base={"OMP_NUM_THREADS": "2", "PATH": "/bin"})
    assert {k: env[k] for k in THREAD_ENV_VARS} == {k: "1" for k in THREAD_ENV_VARS}
    assert env["PATH"] == "/bin"
    assert dict(os.environ) == before
    with pytest.raises(ValueError, match="thread count"):
        worker_env(0)


def test_limit_threads_sets_torch_numpy_and_the_environment():
    threads, env = torch.get_num_threads(), {k: os.environ.get(k) for k in THREAD_ENV_VARS}
    try:
        got = limit_threads(1)
        assert got.torch == 1 and torch.get_num_threads() == 1
        assert all(os.environ[k] == "1" for k in THREAD_ENV_VARS)
        pools = threadpool_info()
        assert pools, "threadpoolctl found no BLAS/OpenMP pool in this process (NumPy's OpenBLAS is expected)"
        assert all(p["num_threads"] == 1 for p in pools)
        assert got.numpy and set(got.numpy.values()) == {1}
    finally:
        torch.set_num_threads(threads)
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert 1 <= free_cores() <= usable_cpus()


def test_limit_threads_reaches_a_running_julia():
    """In a fresh process that asks OpenMP for 2 threads, Julia's BLAS ends at 1 once ramble limits it."""
    code = ("from ramble.julia import bridge; from ramble.threads import limit_threads; "
            "bridge.get_bridge(); print(limit_threads(1).julia)")
    env = dict(os.environ, OMP_NUM_THREADS="2")
    env.pop("OPENBLAS_NUM_THREADS", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "1"
