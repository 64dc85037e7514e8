"""Figures and the reproduction report, drawn from experiment files only.

* :mod:`ramble.reporting.plots` — per-path and per-experiment figures;
* :mod:`ramble.reporting.report` — the claim-by-claim report of ``ramble reproduce``;
* :mod:`ramble.reporting.sweep_outputs` — a sweep's success-rate figure and ``SWEEP.md``.
"""
