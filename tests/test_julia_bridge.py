"""The in-process Julia bridge: start-up, errors, zero-copy data, callbacks, threads.

Julia is started once per process, so everything that depends on how Julia is
started (a missing Julia, a forced bridge, a deliberate Julia exception, a
real Ctrl-C) runs in a child Python process.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ramble.core.path import PathConfig, PathResult
from ramble.errors import ConfigError, JuliaError
from ramble.julia import bridge as julia_bridge
from ramble.julia.backend import JuliaTCM, registry_sizes
from ramble.models.patterns import random_patterns
from ramble.models.tcm_backends import PythonTCM
from ramble.models.tcm_training import SolveOutcome, TrainConfig

PYTHON_DIR = Path(__file__).resolve().parents[1] / "python"


def run_py(code: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh Python with ramble importable and ``env`` added to the environment."""
    full = dict(os.environ)
    full["PYTHONPATH"] = str(PYTHON_DIR) + os.pathsep + full.get("PYTHONPATH", "")
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=full, timeout=timeout
    )


def crashed(proc: subprocess.CompletedProcess) -> bool:
    return proc.returncode < 0


@pytest.fixture(scope="module")
def bridge():
    return julia_bridge.get_bridge()


@pytest.fixture(scope="module")
def tcm():
    return JuliaTCM(random_patterns(30, 36, 1), 3)


@pytest.fixture(scope="module")
def solutions(tcm):
    cfg = TrainConfig()
    rng = np.random.default_rng(0)
    out = []
    while len(out) < 2:
        s = tcm.gd_solve(rng.normal(0.0, cfg.init_scale / np.sqrt(10), 30), cfg)
        if s.solved:
            out.append(s.w)
    return out


def test_bridge_starts_and_reports(bridge):
    info = julia_bridge.bridge_info()
    assert info["started"] is True
    assert info["bridge"] in ("embed", "juliacall")
    assert info["version"] and os.path.isfile(info["julia"])
    assert info["source"].endswith("Ramble.jl")
    if info["bridge"] == "embed":
        assert info["juliacall_not_used"], "the reason juliacall was not used must be reported"
    assert bridge.eval("1 + 2") == 3


def test_config_errors_from_julia_are_config_errors(tcm, solutions):
    with pytest.raises(ConfigError, match="K=4 must divide N=30"):
        JuliaTCM(random_patterns(30, 36, 1), 4)
    bad = random_patterns(6, 4, 1)
    inputs = bad.inputs.copy()
    inputs[1, 2] = 3
    with pytest.raises(ConfigError, match="inputs must be ±1"):
        JuliaTCM(type(bad)(inputs=inputs, labels=bad.labels, seed=1), 3)
    with pytest.raises(ConfigError, match="W_a is not a solution"):
        tcm.find_path(np.zeros(30), solutions[1], PathConfig())
    with pytest.raises(ConfigError, match="one length"):
        tcm.find_path(solutions[0], solutions[1][:29], PathConfig())
    with pytest.raises(ConfigError, match="length N=30"):
        tcm.margins(np.zeros(31))
    with pytest.raises(ConfigError, match="a ConfigError message from Julia"):
        julia_bridge.get_bridge().call("raise_test", 0)


def test_julia_exception_becomes_julia_error():
    proc = run_py(
        """
        from ramble.julia import bridge as julia_bridge
        from ramble.errors import JuliaError
        b = julia_bridge.get_bridge()
        for what, f in (("call", lambda: b.call("raise_test", 1)), ("eval", lambda: b.eval('error("boom from julia")'))):
            try:
                f()
                print(what, "no error")
            except JuliaError as e:
                print(what, "JuliaError:", e)
        print("alive", b.eval("40 + 2"))
        """
    )
    if crashed(proc):
        pytest.fail(f"Julia crashed on a thrown exception (signal {-proc.returncode}): {julia_bridge.EXCEPTIONS_BROKEN}")
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr
    assert "call JuliaError: Julia error in raise_test: ErrorException: deliberate Julia error for testing" in out
    assert "eval JuliaError: Julia error: ErrorException: boom from julia" in out
    assert "alive 42" in out


def test_arrays_are_shared_zero_copy(bridge, tcm):
    a = np.zeros(4)
    bridge.eval(f"unsafe_wrap(Array, Ptr{{Float64}}({a.ctypes.data}), 4; own=false)[2] = 42.0; 0")
    assert a[1] == 42.0  # Julia wrote into NumPy's memory
    w = np.linspace(-0.1, 0.1, 30)
    assert tcm._w(w) is w  # contiguous float64 weights go over as they are
    py = PythonTCM(random_patterns(30, 36, 1), 3)
    assert np.allclose(tcm.margins(w), py.margins(w), rtol=0, atol=1e-14)
    w[:] = -w  # Julia reads the caller's buffer at each call: the change is seen
    assert np.allclose(tcm.margins(w), py.margins(w), rtol=0, atol=1e-14)


def test_same_python_types_as_python_backend(tcm, solutions):
    py = PythonTCM(random_patterns(30, 36, 1), 3)
    cfg = PathConfig(max_iterations=50, patience=10)
    rj, rp = tcm.find_path(*solutions, cfg), py.find_path(*solutions, cfg)
    assert isinstance(rj, PathResult)
    for f in ("weights", "iteration", "distance", "train_loss", "train_error", "decisions", "gd_refused"):
        assert isinstance(getattr(rj, f), np.ndarray)
        assert getattr(rj, f).dtype == getattr(rp, f).dtype, f
        assert getattr(rj, f).shape == getattr(rp, f).shape, f
    assert rj.config == rp.config and rj.weight_index is None and rj.extra == rp.extra
    for f in ("iterations", "elastic_accepted", "gd_accepted", "segment_checks"):
        assert type(getattr(rj, f)) is int
    s = tcm.gd_solve(solutions[0], TrainConfig())
    assert isinstance(s, SolveOutcome) and type(s.solved) is bool and s.w.dtype == np.float64
    loss, grad = tcm.loss_and_grad(solutions[0])
    assert type(loss) is float and grad.shape == (30,)
    line = tcm.straight_line(*solutions, 5)
    assert set(line) == {"alpha", "train_loss", "train_error"} and line["alpha"].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    thinned = tcm.find_path(*solutions, PathConfig(max_iterations=50, patience=10, weight_every=4))
    assert thinned.weight_index is not None and thinned.weight_index[0] == 0
    assert thinned.weight_index[-1] == len(thinned.iteration) - 1


def test_missing_julia_is_a_clear_error():
    proc = run_py(
        """
        from ramble.julia import bridge as julia_bridge
        from ramble.errors import JuliaError
        from ramble.julia.backend import JuliaTCM
        from ramble.models.patterns import random_patterns
        try:
            JuliaTCM(random_patterns(6, 4, 0), 3)
        except JuliaError as e:
            print("JuliaError:", e)
        print("info:", julia_bridge.bridge_info())
        """,
        env={"RAMBLE_JULIA": "/nonexistent"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "JuliaError: RAMBLE_JULIA=/nonexistent is not an executable Julia" in proc.stdout
    assert "Install Julia" in proc.stdout and "juliaup" in proc.stdout
    assert "'error':" in proc.stdout


def test_missing_julia_source_is_a_clear_error():
    proc = run_py(
        """
        from ramble.errors import JuliaError
        from ramble.julia import bridge as julia_bridge
        try:
            julia_bridge.get_bridge()
        except JuliaError as e:
            print("JuliaError:", e)
        """,
        env={"RAMBLE_JULIA_SRC": "/nonexistent/Ramble.jl"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "Ramble.jl was not found at /nonexistent/Ramble.jl" in proc.stdout


def test_forced_juliacall_starts_or_says_why():
    why = julia_bridge.juliacall_unavailable(julia_bridge.probe_julia())
    t = time.perf_counter()
    proc = run_py(
        """
        import sys
        from ramble.julia import bridge as julia_bridge
        from ramble.errors import JuliaError
        try:
            b = julia_bridge.get_bridge()
            print("bridge:", b.kind, b.eval("1 + 1"))
        except JuliaError as e:
            print("JuliaError:", e)
        print("juliacall imported:", "juliacall" in sys.modules)
        """,
        env={"RAMBLE_JULIA_BRIDGE": "juliacall"},
    )
    elapsed = time.perf_counter() - t
    assert proc.returncode == 0, proc.stderr
    if why is None:
        assert "bridge: juliacall 2" in proc.stdout
    else:
        assert "JuliaError: RAMBLE_JULIA_BRIDGE=juliacall but juliacall cannot start" in proc.stdout
        assert why in proc.stdout
        assert "juliacall imported: False" in proc.stdout  # never imported, so never waited on the network
        assert elapsed < 60


def test_auto_choice_falls_back_without_importing_juliacall():
    proc = run_py(
        """
        import sys, time
        from ramble.julia import bridge as julia_bridge
        t = time.perf_counter()
        kind, reason = julia_bridge.choose_bridge(julia_bridge.probe_julia())
        print("choice:", kind, "|", reason, "|", round(time.perf_counter() - t, 1))
        print("juliacall imported:", "juliacall" in sys.modules)
        """,
        env={"RAMBLE_JULIA_BRIDGE": "auto"},
    )
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("choice:"))
    kind, reason, secs = (x.strip() for x in line[len("choice:"):].split("|"))
    assert kind in ("embed", "juliacall")
    assert float(secs) < 30
    if kind == "embed":
        assert reason and "juliacall imported: False" in proc.stdout


def test_unknown_bridge_name(monkeypatch):
    monkeypatch.setenv("RAMBLE_JULIA_BRIDGE", "telepathy")
    with pytest.raises(JuliaError, match="expected one of auto, juliacall, embed"):
        julia_bridge.choose_bridge(julia_bridge.probe_julia())


def test_bridge_info_does_not_start_julia_when_asked_not_to():
    proc = run_py(
        """
        from ramble.julia import bridge as julia_bridge
        info = julia_bridge.bridge_info(start=False)
        print(info.get("started"), "error" in info, julia_bridge.is_started(), info.get("bridge"))
        """
    )
    assert proc.returncode == 0, proc.stderr
    started, has_error, is_started, kind = proc.stdout.split()
    assert (started, has_error, is_started) == ("False", "False", "False") and kind in ("embed", "juliacall")


def test_progress_exception_propagates_and_frees_the_result(tcm, solutions):
    before = registry_sizes()

    def progress(it: int, dist: float) -> None:
        if it == 3:
            raise ValueError("stop at 3")

    with pytest.raises(ValueError, match="stop at 3"):
        tcm.find_path(*solutions, PathConfig(), progress=progress)
    seen = []
    r = tcm.find_path(*solutions, PathConfig(max_iterations=20, patience=5), progress=lambda i, d: seen.append((i, d)))
    assert [i for i, _ in seen] == list(range(r.iterations))
    # each iteration reports the distance of its last vertex (rows are vertices, tagged by iteration)
    last_row = [int(np.nonzero(r.iteration <= i)[0][-1]) for i in range(r.iterations)]
    assert np.allclose([d for _, d in seen], r.distance[last_row])
    assert registry_sizes() == before


def test_ctrl_c_interrupts_a_julia_run():
    proc = run_py(
        """
        import os, signal
        import numpy as np
        from ramble.julia.backend import JuliaTCM
        from ramble.models.patterns import random_patterns
        from ramble.core.path import PathConfig
        from ramble.models.tcm_training import TrainConfig
        t = JuliaTCM(random_patterns(30, 36, 1), 3)
        rng = np.random.default_rng(0)
        sols = []
        while len(sols) < 2:
            s = t.gd_solve(rng.normal(0, 0.16, 30), TrainConfig())
            if s.solved:
                sols.append(s.w)
        def progress(it, d):
            if it == 2:
                signal.raise_signal(signal.SIGINT)   # as if Ctrl-C were pressed (to this thread: Julia's own threads block SIGINT)
        try:
            t.find_path(*sols, PathConfig(), progress=progress)
            print("not interrupted")
        except KeyboardInterrupt:
            print("KeyboardInterrupt")
        print("still usable:", t.margins(sols[0]).min() > 0)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "KeyboardInterrupt" in proc.stdout and "still usable: True" in proc.stdout


def test_starting_julia_leaves_signals_deliverable_to_python_and_to_child_processes():
    """Julia's start blocks SIGINT and SIGTERM in its thread; the bridge must undo that, or a
    scheduler's SIGTERM never reaches a run and every subprocess inherits the block."""
    proc = run_py(
        """
        import signal, subprocess, sys
        before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        from ramble.julia import bridge as julia_bridge
        julia_bridge.get_bridge()
        print("mask kept:", signal.pthread_sigmask(signal.SIG_BLOCK, []) == before)
        child = subprocess.run([sys.executable, "-c", "import os, signal, time; os.kill(os.getpid(), signal.SIGTERM); time.sleep(30)"])
        print("child exit:", child.returncode)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "mask kept: True" in proc.stdout and f"child exit: {-signal.SIGTERM}" in proc.stdout, proc.stdout


def test_calls_from_another_thread_are_refused(tcm):
    errors = []

    def work():
        try:
            tcm.margins(np.zeros(30))
        except JuliaError as e:
            errors.append(str(e))

    th = threading.Thread(target=work)
    th.start()
    th.join()
    assert errors and "thread that started Julia" in errors[0]


def test_julia_gc_under_faulthandler(bridge):
    # Julia runs without its signal handlers; heavy allocation and full
    # collections must not trip Python's faulthandler (enabled by pytest).
    if not faulthandler.is_enabled():
        faulthandler.enable()
    n = bridge.eval(
        "let s = 0; for i in 1:40; a = [rand(1000) for j in 1:500]; s += length(a); GC.gc(i % 4 == 0); end; s end"
    )
    assert n == 40 * 500


def test_models_are_freed():
    before = registry_sizes()
    t = JuliaTCM(random_patterns(12, 8, 2), 3)
    assert registry_sizes()[0] == before[0] + 1
    t.close()
    assert registry_sizes() == before
    t.close()  # idempotent
    with pytest.raises(ConfigError, match="closed"):
        t.margins(np.zeros(12))
    t2 = JuliaTCM(random_patterns(12, 8, 2), 3)
    del t2
    assert registry_sizes() == before


def _julia_literal(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return ":" + v
    return repr(v)


def test_path_config_has_the_same_fields_order_and_defaults_in_both_languages(bridge, tcm):
    import dataclasses

    fields = dataclasses.fields(PathConfig)
    names = "(" + ", ".join(":" + f.name for f in fields) + ",)"
    assert bridge.eval(f"Int(fieldnames(Ramble.PathConfig) == {names})") == 1
    default = PathConfig()
    for f in fields:
        value = _julia_literal(getattr(default, f.name))
        assert bridge.eval(f"Int(Ramble.PathConfig().{f.name} === {value})") == 1, f.name
    paper = PathConfig.paper()
    for f in fields:
        value = _julia_literal(getattr(paper, f.name))
        assert bridge.eval(f"Int(Ramble.paper_config().{f.name} === {value})") == 1, f.name


def test_bridge_packs_every_path_config_field_by_name(bridge, tcm):
    import dataclasses

    from ramble.julia.backend import PATH_FLOAT_FIELDS, PATH_INT_FIELDS, echo_path_config

    names = [f.name for f in dataclasses.fields(PathConfig)]
    assert sorted(("variant",) + PATH_FLOAT_FIELDS + PATH_INT_FIELDS) == sorted(names)
    for const, fields in (("PATH_FLOAT_FIELDS", PATH_FLOAT_FIELDS), ("PATH_INT_FIELDS", PATH_INT_FIELDS)):
        assert bridge.eval(f"Int(Ramble.Bridge.{const} == (" + ", ".join(":" + f for f in fields) + ",))") == 1
    # every field off its default, each value distinct, so a swap would show
    cfg = PathConfig(variant="paper", gamma=0.25, n_epochs=3, lr=0.125, margin_target=0.0625, repair_steps=7, tol=0.03125,
                     max_iterations=1234, patience=99, record_every=2, weight_every=5, max_waypoints=4, escape=False)
    echoed = echo_path_config(cfg)
    assert list(echoed) == names  # Julia's field order
    expected = {k: ("true" if v else "false") if isinstance(v, bool) else str(v) for k, v in cfg.to_dict().items()}
    assert echoed == expected


def test_julia_path_measures_distance_in_the_given_frame(tcm, solutions):
    w_a, w_b = solutions
    far = 2 * w_b - w_a
    r = tcm.find_path(w_a, w_b, PathConfig(max_iterations=30, patience=10, weight_every=4), frame=(w_a, far))
    d = np.linalg.norm(far - w_a)
    np.testing.assert_allclose(r.distance[r.weight_index], 1 - np.linalg.norm(r.weights - far, axis=1) / d, atol=1e-12)
    assert r.distance[0] == pytest.approx(0.0) and r.distance[-1] < 0.6
