"""Property-based tests: any argument either works or is refused with a one-line ConfigError (no other exception)."""

from __future__ import annotations

import math

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ramble.cli import main
from ramble.core.path import PathConfig
from ramble.errors import ConfigError
from ramble.experiments.tcm_experiment import TCMExperimentConfig
from ramble.models.tcm_training import TrainConfig

floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
ints = st.integers(min_value=-10, max_value=10**6)


def accepted_or_config_error(make):
    try:
        make()
    except ConfigError as e:
        msg = str(e)
        assert msg and "\n" not in msg
        return False
    return True


@given(gamma=floats, lr=floats, n_epochs=ints, tol=floats, margin=floats, max_it=ints, wp=ints)
@settings(max_examples=200, deadline=None)
def test_path_config_validates(gamma, lr, n_epochs, tol, margin, max_it, wp):
    ok = accepted_or_config_error(lambda: PathConfig(gamma=gamma, lr=lr, n_epochs=n_epochs, tol=tol, margin_target=margin, max_iterations=max_it, max_waypoints=wp))
    if ok:
        assert 0 < gamma <= 1 and lr >= 0 and math.isfinite(lr) and n_epochs >= 0 and 0 < tol < 1 and margin > 0 and max_it >= 1 and wp >= 0


@given(lr=floats, scale=floats, max_epochs=ints, restarts=ints, polish=floats)
@settings(max_examples=200, deadline=None)
def test_train_config_validates(lr, scale, max_epochs, restarts, polish):
    ok = accepted_or_config_error(lambda: TrainConfig(lr=lr, init_scale=scale, max_epochs=max_epochs, restarts=restarts, polish_margin=polish))
    if ok:
        assert lr > 0 and math.isfinite(lr) and scale > 0 and max_epochs >= 1 and restarts >= 1 and polish >= 0


@given(n=st.integers(-5, 400), k=st.integers(-5, 20), m=st.integers(-5, 2000), sols=st.integers(-2, 6), seed=st.integers(-5, 2**31))
@settings(max_examples=200, deadline=None)
def test_experiment_config_validates(n, k, m, sols, seed):
    ok = accepted_or_config_error(lambda: TCMExperimentConfig(n_inputs=n, n_hidden=k, n_patterns=m, n_solutions=sols, seed=seed))
    if ok:
        assert n >= 1 and k >= 1 and n % k == 0 and m >= 1 and sols >= 1 and seed >= 0


@given(
    n=st.integers(-3, 40), k=st.integers(-1, 5), m=st.integers(-3, 40), gamma=st.floats(-2, 2, allow_nan=False),
    lr=st.floats(-1, 1, allow_nan=False), sols=st.integers(-1, 2),
)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_cli_tcm_run_never_crashes(tmp_path, n, k, m, gamma, lr, sols):
    out = tmp_path / f"p{abs(hash((n, k, m, gamma, lr, sols)))}.h5"
    args = ["--quiet", "tcm", "run", "--backend", "python", "-N", str(n), "-K", str(k), "-M", str(m), "--gamma", repr(gamma),
            "--path-lr", repr(lr), "--solutions", str(sols), "--max-epochs", "200", "--restarts", "1", "--max-iterations", "50", "--out", str(out)]
    r = CliRunner().invoke(main, args)
    # exit 0 (ran), 1 (one-line error naming the problem), never a traceback
    assert r.exit_code in (0, 1), (r.exit_code, r.output, r.exception)
    if r.exit_code == 1:
        assert r.output.startswith("error: ") and r.output.count("\n") == 1, r.output


# ----------------------------------------------------------------------------- issue 6: the rest of the argument space
import functools  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from ramble.analysis.spectra import HessianConfig  # noqa: E402
from ramble.experiments.mnist_experiment import MnistExperimentConfig  # noqa: E402

FIXTURE = str(Path(__file__).parent / "fixtures" / "mnist")


#: MnistExperimentConfig fields, any value, and what an accepted value must satisfy.
MNIST_FIELDS = {
    "n_solutions": (ints, lambda v: v >= 1),
    "train_lr": (floats, lambda v: v > 0 and math.isfinite(v)),
    "max_epochs": (ints, lambda v: v >= 1),
    "batch_size": (ints, lambda v: v >= 1),
    "points": (ints, lambda v: v >= 1),
    "weight_rows": (ints, lambda v: v >= 1),
    "linear_points": (ints, lambda v: v >= 2),
    "polish_margin": (floats, lambda v: v >= 0),
    "seed": (st.integers(-5, 2**31), lambda v: v >= 0),
}


@st.composite
def one_mnist_field(draw):
    name = draw(st.sampled_from(sorted(MNIST_FIELDS)))
    return name, draw(MNIST_FIELDS[name][0])


@given(field=one_mnist_field())
@settings(max_examples=200, deadline=None)
def test_mnist_experiment_config_validates(field):
    """One field at a time (the others at their defaults): accepted only inside its range, else a one-line ConfigError."""
    name, value = field
    if accepted_or_config_error(lambda: MnistExperimentConfig(**{name: value})):
        assert MNIST_FIELDS[name][1](value), f"{name}={value!r} was accepted"


@given(points=st.none() | ints, every=st.none() | ints, k=ints, tol=floats, subset=st.none() | ints, trace=ints)
@settings(max_examples=200, deadline=None)
def test_hessian_config_validates(points, every, k, tol, subset, trace):
    ok = accepted_or_config_error(lambda: HessianConfig(points=points, every=every, k=k, tol=tol, subset=subset, trace_samples=trace))
    if ok:
        assert (points is None) != (every is None) and (points is None or points >= 2) and (every is None or every >= 1)
        assert k >= 1 and 0 < tol < 1 and (subset is None or subset >= 1) and trace >= 0


NEG = st.floats(max_value=-1e-300, allow_nan=False)  # strictly negative, -inf included
#: ``ramble mnist run`` options, a strategy of values each of them must refuse, and how the refusal names the option.
MNIST_BAD = {
    "--train-size": (st.integers(max_value=0) | st.integers(min_value=60_001), r"train_size="),
    "--test-size": (st.integers(max_value=0) | st.integers(min_value=10_001), r"test_size="),
    "--solutions": (st.integers(max_value=0), r"--solutions"),
    "--seed": (st.integers(max_value=-1), r"--seed"),
    "--gamma": (st.floats(max_value=0) | st.floats(min_value=1, exclude_min=True) | st.just(math.nan), r"gamma"),
    "--path-lr": (NEG | st.sampled_from([math.inf, math.nan]), r"path learning rate"),
    "--train-lr": (st.floats(max_value=0, allow_nan=False) | st.sampled_from([math.inf, math.nan]), r"--train-lr"),
    "--max-epochs": (st.integers(max_value=0), r"--max-epochs"),
    "--batch-size": (st.integers(max_value=0), r"--batch-size"),
    "--points": (st.integers(max_value=0), r"--points"),
    "--weight-rows": (st.integers(max_value=0), r"--weight-rows"),
    "--linear-points": (st.integers(max_value=1), r"--linear-points"),
    "--hessian-points": (st.integers(max_value=-1) | st.just(1), r"--hessian-points"),
    "--polish-margin": (NEG, r"--polish-margin"),
    "--n-epochs": (st.integers(max_value=-1), r"N_epochs"),
    "--tol": (st.floats(max_value=0, allow_nan=False) | st.floats(min_value=1, allow_nan=False), r"arrival tolerance"),
    "--margin-target": (st.floats(max_value=0, allow_nan=False), r"margin target"),
    "--max-iterations": (st.integers(max_value=0), r"max iterations"),
    "--max-waypoints": (st.integers(max_value=-1), r"max waypoints"),
}


@st.composite
def one_bad_mnist_option(draw):
    name = draw(st.sampled_from(sorted(MNIST_BAD)))
    strategy, named = MNIST_BAD[name]
    return name, draw(strategy), named


@given(bad=one_bad_mnist_option())
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_cli_mnist_run_refuses_each_bad_value_in_one_line(tmp_path, bad):
    """One numeric option out of range, the others tiny and valid: refused before any training, naming the option and the value."""
    name, value, named = bad
    out = tmp_path / "never.h5"
    valid = {"--train-size": "20", "--test-size": "20", "--solutions": "2", "--max-epochs": "50", "--points": "5", "--weight-rows": "3", "--linear-points": "2"}
    valid.pop(name, None)
    args = ["--quiet", "mnist", "run", "--data-dir", FIXTURE, "--device", "cpu", *[x for kv in valid.items() for x in kv], name, repr(value), "--out", str(out)]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1, (r.exit_code, r.output, r.exception)
    line = r.stderr.strip()
    assert line.startswith("error: ") and "\n" not in line, r.output
    assert __import__("re").search(named, line), line
    assert (repr(value) if isinstance(value, float) else str(value)) in line, line
    assert not out.exists()


@functools.lru_cache(maxsize=None)
def _tcm30():
    from ramble.models.patterns import random_patterns
    from ramble.models.tcm import TCMProblem
    from ramble.models.tcm_backends import PythonTCM

    pats = random_patterns(30, 40, 3)
    return TCMProblem(pats, 3), PythonTCM(pats, 3)


_elements = st.floats(allow_nan=True, allow_infinity=True, width=64)
vectors = hnp.arrays(np.float64, st.integers(0, 33), elements=_elements) | hnp.arrays(np.float64, st.tuples(st.integers(1, 2), st.integers(1, 31)), elements=_elements)


@given(a=vectors, b=vectors, through=st.sampled_from(["find_path", "connect"]))
@settings(max_examples=50, deadline=None)
def test_path_endpoints_validate(a, b, through):
    """Any two arrays as endpoints: a ConfigError naming the problem (not in S, shapes), or a path between two solutions."""
    from ramble.core.path import find_path
    from ramble.models.tcm_backends import connect

    problem, backend = _tcm30()
    cfg = PathConfig(max_iterations=20)
    if through == "find_path":
        call = lambda: find_path(problem, torch.from_numpy(a), torch.from_numpy(b), cfg)  # noqa: E731
    else:
        call = lambda: connect(backend, a, b, cfg, TrainConfig(max_epochs=5, restarts=1))  # noqa: E731
    if accepted_or_config_error(call):
        assert a.shape == b.shape == (30,)
        assert problem.contains(torch.from_numpy(a)) and problem.contains(torch.from_numpy(b))
