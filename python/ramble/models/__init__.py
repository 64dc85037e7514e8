"""The models: each one file behind :class:`ramble.core.problem.PathProblem`.

* :mod:`ramble.models.tcm`, :mod:`ramble.models.patterns`, :mod:`ramble.models.tcm_training`,
  :mod:`ramble.models.tcm_backends` — the Tree Committee Machine (paper Sect. 3.1) and its two backends;
* :mod:`ramble.models.lenet`, :mod:`ramble.models.mnist` — LeNet5 on MNIST (paper Sect. 3.2);
* :mod:`ramble.models.torch_classifier` — any PyTorch classifier;
* :mod:`ramble.models.registry` — which code serves the ``model`` a ramble file names.
"""
