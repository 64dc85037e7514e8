"""Measurements on stored experiment files, written back into them.

* :mod:`ramble.analysis.hessian`, :mod:`ramble.analysis.spectra` — Hessian spectra along paths;
* :mod:`ramble.analysis.verify` — every stored claim recomputed (``ramble verify``);
* :mod:`ramble.analysis.connectivity`, :mod:`ramble.analysis.convexity` — which solutions connect, and the
  convex hull of solutions against S;
* :mod:`ramble.analysis.curves` — other methods' curves (Bezier, straight line) against S;
* :mod:`ramble.analysis.align` — the permutation-aligned straight line against S;
* :mod:`ramble.analysis.controls` — controls for the generalisation claim (C15).
"""
