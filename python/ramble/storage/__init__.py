"""Files: the one owner of the HDF5 layout, and what keeps a file whole.

* :mod:`ramble.storage.io` — the ramble HDF5 format: writing (atomic commits) and loading;
* :mod:`ramble.storage.views` — an open file read part by part (what verify and the convexity probe walk);
* :mod:`ramble.storage.groups` — analysis results written back (``/connectivity``, ``/convexity``, a path's ``hessian``);
* :mod:`ramble.storage.checkpoint` — a running path's state, saved into its file and restored on resume;
* :mod:`ramble.storage.filediff` — two files compared, timings aside (``ramble diff``);
* :mod:`ramble.storage.faults` — fault points for the crash-safety tests.
"""
