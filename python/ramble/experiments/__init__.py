"""Experiments: config -> data -> solutions -> paths -> measurements -> file.

* :mod:`ramble.experiments.driver` — the one experiment driver every model runs through
  (resume, mid-path checkpoints, routing of failed pairs);
* :mod:`ramble.experiments.tcm_experiment`, :mod:`ramble.experiments.mnist_experiment`,
  :mod:`ramble.experiments.torch_experiment` — a model each: its config, its run for the driver and
  its spec for the analyses (the last is the public API for one's own PyTorch classifier);
* :mod:`ramble.experiments.network_run` — the run shared by network models (LeNet5, torch classifiers);
* :mod:`ramble.experiments.resume` — an interrupted file continued with its stored settings;
* :mod:`ramble.experiments.sweep` — grids of TCM experiments in parallel;
* :mod:`ramble.experiments.reproduce` — the paper's experiments, figures and report in one folder.
"""
