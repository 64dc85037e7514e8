"""Property-based tests: any argument either works or is refused with a one-line ConfigError (no other exception)."""

from __future__ import annotations

import math

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ramble.cli import main
from ramble.errors import ConfigError
from ramble.path import PathConfig
from ramble.tcm_experiment import TCMExperimentConfig
from ramble.training import TrainConfig

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
