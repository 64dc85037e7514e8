"""The help a user reads says what a run does: defaults shown by --help against what runs store, and the help's layout (issue 15)."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import ramble.experiments.mnist_experiment as mnist_experiment
import ramble.experiments.network_run as network_run
from ramble.cli import main
from ramble.errors import FormatError
from ramble.storage.io import load

FIXTURE = str(Path(__file__).parent / "fixtures" / "mnist")
SMALL_TCM = ["-N", "60", "-K", "3", "-M", "100", "--seed", "4"]


def command(*names: str) -> click.Command:
    cmd: click.Command = main
    for n in names:
        cmd = cmd.commands[n]  # type: ignore[attr-defined]
    return cmd


def help_texts(*names: str) -> dict[str, str]:
    """Option name (without dashes, as the parameter is called) -> its help text as --help prints it."""
    cmd = command(*names)
    ctx = click.Context(cmd, info_name=names[-1])
    out = {}
    for p in cmd.params:
        rec = p.get_help_record(ctx)
        if rec is not None:
            out[str(p.name)] = " ".join(rec[1].split())
    return out


def shown_default(text: str) -> str:
    m = re.search(r"\[default: ([^\]]+)\]", text)
    assert m, f"no default shown in {text!r}"
    return m.group(1)


def default_for(text: str, which: str) -> float:
    """The number before ``which`` in a "Default: 0.01 (repair), 0.001 (paper)" style help."""
    m = re.search(r"([0-9.e-]+) " + re.escape(which), text)
    assert m, f"{which!r} not in {text!r}"
    return float(m.group(1))


# ---------------------------------------------------------------- help against runs
def test_tcm_run_stores_the_defaults_its_help_shows(tmp_path):
    out = tmp_path / "t.h5"
    r = CliRunner().invoke(main, ["--quiet", "tcm", "run", "--backend", "python", *SMALL_TCM, "--solutions", "2", "--out", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    e = load(out, weights=False)
    h = help_texts("tcm", "run")
    stored = json.loads(e.paths["0-1"].attrs["path_config"])
    for opt, key in (("margin_target", "margin_target"), ("max_iterations", "max_iterations"), ("tol", "tol"), ("max_waypoints", "max_waypoints"), ("patience", "patience")):
        assert float(shown_default(h[opt])) == float(stored[key]), opt
    assert shown_default(h["variant"]) == stored["variant"] == "repair"
    for opt, key in (("gamma", "gamma"), ("n_epochs", "n_epochs"), ("path_lr", "lr")):
        assert default_for(h[opt], "(repair)") == float(stored[key]), opt
    train = e.config["train"]
    for opt, key in (("train_lr", "lr"), ("init_scale", "init_scale"), ("max_epochs", "max_epochs"), ("restarts", "restarts"), ("polish_margin", "polish_margin")):
        assert float(shown_default(h[opt])) == float(train[key]), opt
    assert int(shown_default(h["linear_points"])) == len(e.paths["0-1"].linear.alpha)


@pytest.fixture
def captured_mnist(monkeypatch):
    """Run `mnist run` up to the experiment call and keep the config it would store (the real run is minutes at these settings)."""
    seen = {}

    def fake_run(cfg, out, **kw):
        seen["cfg"] = cfg
        seen["stored_path"] = network_run.strided(cfg.path, cfg.points, cfg.weight_rows).to_dict()
        return Path(out)

    monkeypatch.setattr(mnist_experiment, "run_mnist_experiment", fake_run)
    monkeypatch.setattr("ramble.cli.summary_text", lambda path: "")
    return seen


def test_mnist_run_help_shows_the_mnist_defaults_a_run_uses(captured_mnist, tmp_path):
    r = CliRunner().invoke(main, ["--quiet", "mnist", "run", "--data-dir", FIXTURE, "--out", str(tmp_path / "m.h5")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    cfg, stored = captured_mnist["cfg"], captured_mnist["stored_path"]
    h = help_texts("mnist", "run")
    # bug 1: the help showed the TCM's 0.01 / 1 / 0.01
    assert default_for(h["gamma"], "up to 1,000 training images") == stored["gamma"] == 0.001
    assert default_for(h["n_epochs"], "(the paper's MNIST") == stored["n_epochs"] == 5
    assert default_for(h["path_lr"], "(the paper's MNIST") == stored["lr"] == 0.1
    for opt, key in (("margin_target", "margin_target"), ("max_iterations", "max_iterations"), ("tol", "tol"), ("max_waypoints", "max_waypoints"), ("patience", "patience"),
                     ("elastic_halvings", "elastic_halvings")):
        assert float(shown_default(h[opt])) == float(stored[key]), opt
    # the chord is capped at the recording stride, as its help says
    assert "cap it at the iterations between recorded points" in h["chord_iterations"]
    assert stored["chord_iterations"] == min(int(shown_default(h["chord_iterations"])), stored["record_every"]) and stored["record_every"] > 1
    for opt in ("train_lr", "max_epochs", "batch_size", "polish_margin", "points", "weight_rows", "linear_points", "train_size", "seed"):
        assert float(shown_default(h[opt])) == float(getattr(cfg, opt)), opt
    assert shown_default(h["variant"]) == stored["variant"] == "repair"


def test_mnist_paper_variant_on_the_whole_set_uses_the_whole_set_gamma(captured_mnist, tmp_path):
    """Bug 2: --variant paper --train-size 60000 stored MNIST-100's gamma 0.001."""
    h = help_texts("mnist", "run")
    for variant in ("paper", "repair"):
        r = CliRunner().invoke(main, ["--quiet", "mnist", "run", "--variant", variant, "--train-size", "60000", "--data-dir", FIXTURE, "--out", str(tmp_path / f"{variant}.h5")], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        path = captured_mnist["cfg"].path
        assert (path.variant, path.gamma, path.n_epochs, path.lr) == (variant, 0.1, 5, 0.1)
        assert default_for(h["gamma"], "above") == path.gamma


def test_every_run_option_shows_its_default():
    for names in (("tcm", "run"), ("mnist", "run"), ("tcm", "crosscheck"), ("sweep",)):
        for name, text in help_texts(*names).items():
            p = next(q for q in command(*names).params if q.name == name)
            if isinstance(p, click.Option) and (p.is_flag or p.required or name in ("out", "resume", "data_dir", "checkpoint_iterations", "scheduler")):
                continue
            assert "default" in text.lower(), f"{' '.join(names)} --{name}: {text!r}"


def test_crosscheck_help_gives_its_size():
    from ramble.julia.crosscheck import DEFAULT_SIZE

    h = help_texts("tcm", "crosscheck")
    assert int(shown_default(h["n_inputs"])) == DEFAULT_SIZE["n_inputs"]
    assert int(shown_default(h["n_patterns"])) == DEFAULT_SIZE["n_patterns"]


def test_sweep_variant_default_is_the_repair_variant_like_every_other_command():
    assert shown_default(help_texts("sweep")["variants"]) == "repair"


# ---------------------------------------------------------------- help layout, global options
def test_top_level_help_lines_are_not_cut():
    """Bug 5: `ramble --help` cut the tcm and mnist lines at "paper Sect."."""
    r = CliRunner().invoke(main, ["--help"], terminal_width=80)
    text = " ".join(r.output.split())
    assert "(paper Sect. 3.1)" in text and "(paper Sect. 3.2)" in text
    listing = r.output.split("Commands:")[1]
    assert "..." not in listing


@pytest.mark.parametrize("flag", ["-q", "--quiet"])
def test_quiet_after_the_command(tmp_path, flag):
    """Bug 6: `ramble tcm run ... -q` said "No such option"."""
    logging.getLogger("ramble").setLevel(logging.INFO)
    r = CliRunner().invoke(main, ["info", str(tmp_path / "missing.h5"), flag])
    assert r.exit_code == 1 and "No such option" not in r.output and "no such file" in r.output
    assert logging.getLogger("ramble").level == logging.WARNING
    r = CliRunner().invoke(main, ["tcm", "run", "--backend", "python", "-N", "100", "-K", "3", "--out", str(tmp_path / "o.h5"), flag])
    assert r.exit_code == 1 and "K=3 must divide N=100" in r.output


def test_debug_after_the_command_shows_the_exception(tmp_path):
    r = CliRunner().invoke(main, ["info", str(tmp_path / "missing.h5"), "--debug"])
    assert isinstance(r.exception, FormatError)
    r = CliRunner().invoke(main, ["info", str(tmp_path / "missing.h5")])
    assert r.exit_code == 1 and not isinstance(r.exception, FormatError)
