"""The path algorithm, generic over the model.

* :mod:`ramble.core.problem` — :class:`PathProblem`, the interface between a model and the algorithm;
* :mod:`ramble.core.path` — Algorithm 1 (elastic pull, GD steps, Eq. 4 norm constraint, refused moves),
  with waypoints, the norm escape and routing, and :class:`PathConfig`;
* :mod:`ramble.core.stopping` — how a long move (a certificate on whole MNIST) is abandoned when a run is asked to stop;
* :mod:`ramble.core.bounds` — the rigorous certificate that a straight segment of a PyTorch classifier
  stays inside S (the TCM's exact certificate lives with its model, :mod:`ramble.models.tcm`).

Nothing here reads files or knows a model by name.
"""
