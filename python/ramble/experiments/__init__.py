"""Experiments: config -> data -> solutions -> paths -> measurements -> file.

* :mod:`ramble.experiments.tcm_experiment`, :mod:`ramble.experiments.mnist_experiment`,
  :mod:`ramble.experiments.torch_experiment` — one experiment per model family (the last is the public
  API for one's own PyTorch classifier);
* :mod:`ramble.experiments.resume` — an interrupted file continued with its stored settings;
* :mod:`ramble.experiments.sweep` — grids of TCM experiments in parallel;
* :mod:`ramble.experiments.reproduce` — the paper's experiments, figures and report in one folder.
"""
