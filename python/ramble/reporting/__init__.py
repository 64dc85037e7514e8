"""Figures and the reproduction report, drawn from experiment files only.

* :mod:`ramble.reporting.plots` — per-path and per-experiment figures;
* :mod:`ramble.reporting.report` — the claim-by-claim report of ``ramble reproduce``.
"""
