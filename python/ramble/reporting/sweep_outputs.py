"""A sweep's own outputs: its success-rate figure and ``SWEEP.md``, from the folder's files only."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ramble.experiments.sweep import load_sweep
from ramble.reporting.plots import fig_sweep_success
from ramble.reporting.report import sweep_lines
from ramble.storage.io import write_atomically

FIGURE_STEM = "sweep-success"
REPORT_NAME = "SWEEP.md"


def write_sweep_outputs(folder: str | os.PathLike, formats: Sequence[str] = ("png", "pdf")) -> tuple[list[Path], Path]:
    """Draw ``FOLDER/sweep-success.{png,pdf}`` and write ``FOLDER/SWEEP.md`` (success rates from the files).

    Returns (figure files, report file).  Cheap: it reads the files' path
    attributes, not their weights, so it runs again after every sweep.
    """
    folder = Path(folder)
    sw = load_sweep(folder, from_files=True)
    fx = sw.fixed
    seeds = sorted({t.seed for t in sw.tasks})
    title = f"TCM N={fx.get('n_inputs')}, K={fx.get('n_hidden')}, M={fx.get('n_patterns')}, {fx.get('backend')} backend: {len(seeds)} data set(s) x {fx.get('n_solutions')} solutions ({fx.get('pairs')} pairs)"
    figs = fig_sweep_success(sw.success(), folder / FIGURE_STEM, formats, title=title)
    lines = sweep_lines(folder)
    if figs:
        lines[1:1] = ["", f"![success rate over gamma and N_epochs]({FIGURE_STEM}.{formats[0]})"]
    report = folder / REPORT_NAME
    write_atomically(report, ("\n".join(lines) + "\n").encode())
    return figs, report
