"""The Julia TCM backend: :class:`JuliaTCM`, the ``TCMBackend`` of ``Ramble.jl``.

Same interface and the same Python return types as
:class:`ramble.models.tcm_backends.PythonTCM` (NumPy arrays, :class:`ramble.core.path.PathResult`,
:class:`ramble.models.tcm_training.SolveOutcome`, dicts), so callers never care which
language ran.  The training set is handed over once, on construction (Julia
keeps its own Float64 copy, split per hidden unit); weight vectors go to Julia
zero-copy as pointers to the caller's (contiguous float64) NumPy arrays, and
results come back into NumPy arrays allocated here.  Julia is started on the
first construction (see :mod:`ramble.julia.bridge`).
"""

from __future__ import annotations

import ctypes
import threading
from typing import Optional

import numpy as np

from ramble.core.path import PathConfig, PathResult, ProgressFn
from ramble.core.problem import Evaluation, SegmentCertificate
from ramble.errors import ConfigError
from ramble.julia import bridge as julia_bridge
from ramble.models.patterns import Patterns
from ramble.models.tcm_training import SolveOutcome, TrainConfig

_VARIANT_CODES = {"paper": 0, "repair": 1}

#: PathConfig fields packed into the bridge's float and int arrays, in order;
#: ``Ramble.Bridge`` unpacks them by the same names (tested against its
#: ``PATH_FLOAT_FIELDS``/``PATH_INT_FIELDS``).  ``variant`` travels as a code.
PATH_FLOAT_FIELDS: tuple[str, ...] = ("gamma", "lr", "margin_target", "tol")
PATH_INT_FIELDS: tuple[str, ...] = ("n_epochs", "repair_steps", "max_iterations", "patience", "record_every", "weight_every", "max_waypoints", "escape", "elastic_halvings", "chord_iterations")


def pack_path_config(cfg: PathConfig) -> tuple[int, np.ndarray, np.ndarray]:
    """(variant code, float array, int array) of ``cfg`` for the bridge, field by field by name."""
    fcfg = np.array([float(getattr(cfg, k)) for k in PATH_FLOAT_FIELDS], dtype=np.float64)
    icfg = np.array([int(getattr(cfg, k)) for k in PATH_INT_FIELDS], dtype=np.int64)
    return _VARIANT_CODES[cfg.variant], fcfg, icfg


def _addr(a: np.ndarray) -> int:
    return int(a.ctypes.data)


class JuliaTCM:
    """The Julia TCM (``julia/src/tcm.jl``) bound to one training set and K."""

    name = "julia"

    def __init__(self, patterns: Patterns, n_hidden: int) -> None:
        self._handle: Optional[int] = None
        inputs = np.asarray(patterns.inputs)
        labels = np.asarray(patterns.labels)
        if inputs.ndim != 2:
            raise ConfigError(f"inputs must be an (M, N) array, got shape {inputs.shape}")
        if labels.ndim != 1:
            raise ConfigError(f"labels must be an (M,) array, got shape {labels.shape}")
        self._bridge = julia_bridge.get_bridge()
        m, n = inputs.shape
        # Int8 data goes over as is; anything else as float64 so that Julia's
        # ±1 check sees the true values (no wrap-around in a cast).
        x = inputs if inputs.dtype == np.int8 and inputs.flags.c_contiguous else np.ascontiguousarray(inputs, dtype=np.float64)
        y = labels if labels.dtype == np.int8 and labels.flags.c_contiguous else np.ascontiguousarray(labels, dtype=np.float64)
        out = np.zeros(1, dtype=np.int64)
        self._bridge.call(
            "tcm_new", _addr(x), 1 if x.dtype == np.int8 else 2, n, m,
            _addr(y), 1 if y.dtype == np.int8 else 2, y.shape[0], int(n_hidden), _addr(out),
        )
        self._handle = int(out[0])
        self.n_inputs = int(n)
        self.n_hidden = int(n_hidden)
        self.n_patterns = int(m)

    # -- helpers -----------------------------------------------------------
    def _w(self, w: np.ndarray) -> np.ndarray:
        arr = np.ascontiguousarray(w, dtype=np.float64)
        if arr.ndim != 1 or arr.shape[0] != self.n_inputs:
            raise ConfigError(f"weights must be a flat vector of length N={self.n_inputs}, got shape {arr.shape}")
        return arr

    def _h(self) -> int:
        if self._handle is None:
            raise ConfigError("this JuliaTCM has been closed")
        return self._handle

    # -- TCMBackend ----------------------------------------------------------
    def loss_and_grad(self, w: np.ndarray) -> tuple[float, np.ndarray]:
        """Mean BCE at ``w`` (N,) and its analytic gradient (N,)."""
        wv = self._w(w)
        loss = np.zeros(1)
        grad = np.empty(self.n_inputs)
        self._bridge.call("loss_grad", self._h(), _addr(wv), wv.shape[0], _addr(loss), _addr(grad))
        return float(loss[0]), grad

    def loss(self, w: np.ndarray) -> float:
        """Mean BCE at ``w``."""
        wv = self._w(w)
        loss = np.zeros(1)
        self._bridge.call("loss_grad", self._h(), _addr(wv), wv.shape[0], _addr(loss), None)
        return float(loss[0])

    def margins(self, w: np.ndarray) -> np.ndarray:
        """sigma * S per pattern, (M,)."""
        wv = self._w(w)
        out = np.empty(self.n_patterns)
        self._bridge.call("margins", self._h(), _addr(wv), wv.shape[0], _addr(out))
        return out

    def evaluate(self, w: np.ndarray) -> Evaluation:
        """Training loss and error at ``w``."""
        wv = self._w(w)
        out = np.empty(2)
        self._bridge.call("evaluate", self._h(), _addr(wv), wv.shape[0], _addr(out))
        return Evaluation(loss=float(out[0]), error=float(out[1]))

    def gd_solve(self, w0: np.ndarray, cfg: TrainConfig) -> SolveOutcome:
        """Gradient descent from ``w0`` until S, then polishing (:func:`ramble.models.tcm_training.gd_solve`)."""
        wv = self._w(w0)
        fcfg = np.array([cfg.lr, cfg.init_scale, cfg.polish_margin], dtype=np.float64)
        icfg = np.array([cfg.kick_after, cfg.kick_every, cfg.max_epochs, cfg.restarts, cfg.polish_epochs], dtype=np.int64)
        wout = np.empty(self.n_inputs)
        iout = np.zeros(5, dtype=np.int64)
        fout = np.zeros(1)
        poll = julia_bridge.Callback(None)  # lets a pending Ctrl-C stop Julia
        self._bridge.call(
            "gd_solve", self._h(), _addr(wv), wv.shape[0], _addr(fcfg), _addr(icfg), poll.address,
            _addr(wout), _addr(iout), _addr(fout), callback=poll,
        )
        return SolveOutcome(
            w=wout,
            solved=bool(iout[0]),
            epochs=int(iout[1]),
            kicks=int(iout[2]),
            polish_epochs=int(iout[3]),
            errors=int(iout[4]),
            min_margin=float(fout[0]),
        )

    def find_path(
        self, w_a: np.ndarray, w_b: np.ndarray, cfg: PathConfig, progress: Optional[ProgressFn] = None,
        frame: Optional[tuple[np.ndarray, np.ndarray]] = None, checkpoint: object = None,
    ) -> PathResult:
        """Algorithm 1 from ``w_a`` to ``w_b`` (``Ramble.find_path``); ``progress(it, distance)`` after every iteration.

        ``frame = (W_A, W_B)``: measure ``distance`` against these instead of the endpoints.
        ``checkpoint`` is not used: the path is one call into Julia, with no
        state to save between its iterations, so an interrupted one is drawn
        again from its start (deterministically, the same path).
        """
        a = np.asarray(w_a)
        b = np.asarray(w_b)
        if a.shape != b.shape or a.ndim != 1:
            raise ConfigError(f"endpoints must be flat vectors of one length, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
        wa, wb = self._w(a), self._w(b)
        ref = None if frame is None else (self._w(frame[0]), self._w(frame[1]))
        variant, fcfg, icfg = pack_path_config(cfg)
        out = np.zeros(4, dtype=np.int64)
        cb = julia_bridge.Callback(progress)
        self._bridge.call(
            "find_path", self._h(), _addr(wa), _addr(wb), wa.shape[0], variant,
            _addr(fcfg), _addr(icfg), None if ref is None else _addr(ref[0]), None if ref is None else _addr(ref[1]),
            cb.address, _addr(out), callback=cb,
        )
        rid, n_points, n_kept, n_iter = (int(v) for v in out)
        try:
            p = self.n_inputs
            weights = np.empty((n_kept, p))
            weight_index = np.empty(n_kept, dtype=np.int64)
            iteration = np.empty(n_points, dtype=np.int64)
            distance = np.empty(n_points)
            train_loss = np.empty(n_points)
            train_error = np.empty(n_points)
            decisions = np.empty(n_iter, dtype=np.int8)
            gd_refused = np.empty(n_iter, dtype=np.int8)
            counts = np.zeros(8, dtype=np.int64)
            wall = np.zeros(3)
            arclength = np.empty(n_points)
            self._bridge.call(
                "result_copy", rid, p, n_points, n_kept, n_iter, _addr(weights), _addr(weight_index), _addr(iteration),
                _addr(distance), _addr(train_loss), _addr(train_error), _addr(decisions), _addr(gd_refused),
                _addr(counts), _addr(wall), _addr(arclength),
            )
            status = self._result_string(rid, 0)
            reason = self._result_string(rid, 1)
        finally:
            self._bridge.call("result_free", rid)
        return PathResult(
            status=status,
            reason=reason,
            weights=weights,
            iteration=iteration,
            distance=distance,
            train_loss=train_loss,
            train_error=train_error,
            decisions=decisions,
            gd_refused=gd_refused,
            iterations=n_iter,
            elastic_accepted=int(counts[0]),
            elastic_repaired=int(counts[1]),
            elastic_refused=int(counts[2]),
            gd_accepted=int(counts[3]),
            gd_refused_total=int(counts[4]),
            segment_checks=int(counts[5]),
            wall_time=float(wall[0]),
            config=cfg.to_dict(),
            weight_index=None if n_kept == n_points else weight_index,
            arclength=arclength,
            segments_certified=int(counts[6]),
            cert_pieces=int(counts[7]),
            cert_min_margin=float(wall[1]),
            cert_seconds=float(wall[2]),
        )

    def certify_segment(self, w0: np.ndarray, w1: np.ndarray) -> SegmentCertificate:
        """Exact certificate of the segment ``w0 -> w1`` (``Ramble.certify_segment``)."""
        a, b = self._w(w0), self._w(w1)
        fout = np.zeros(2)
        iout = np.zeros(2, dtype=np.int64)
        self._bridge.call("certify", self._h(), _addr(a), _addr(b), a.shape[0], _addr(fout), _addr(iout))
        return SegmentCertificate(certified=bool(iout[0]), margin_bound=float(fout[0]), pieces=int(iout[1]), seconds=float(fout[1]))

    def _result_string(self, rid: int, which: int) -> str:
        n = np.zeros(1, dtype=np.int64)
        self._bridge.call("result_string", rid, which, None, 0, _addr(n))
        buf = ctypes.create_string_buffer(max(int(n[0]), 1))
        self._bridge.call("result_string", rid, which, ctypes.addressof(buf), int(n[0]), _addr(n))
        return buf.raw[: int(n[0])].decode()

    def straight_line(self, w_a: np.ndarray, w_b: np.ndarray, n_points: int) -> dict[str, np.ndarray]:
        """Train loss/error along Eq. 2 at ``n_points`` evenly spaced alphas (``numpy.linspace``)."""
        if n_points < 2:
            raise ConfigError(f"the straight line needs at least 2 points, got {n_points}")
        wa, wb = self._w(w_a), self._w(w_b)
        alpha = np.linspace(0.0, 1.0, n_points)
        loss = np.empty(n_points)
        err = np.empty(n_points)
        self._bridge.call("straight_line", self._h(), _addr(wa), _addr(wb), wa.shape[0], _addr(alpha), n_points,
                          _addr(loss), _addr(err))
        return {"alpha": alpha, "train_loss": loss, "train_error": err}

    def hessian(self, w: np.ndarray) -> np.ndarray:
        """Exact Hessian of the mean BCE at ``w``, (N, N) (analytic; kink convention in ``tcm.jl``)."""
        wv = self._w(w)
        h = np.empty((self.n_inputs, self.n_inputs))
        self._bridge.call("hessian", self._h(), _addr(wv), wv.shape[0], _addr(h), None)
        return h

    def hessian_spectrum(self, w: np.ndarray, with_hessian: bool = False):
        """Eigenvalues (ascending) of the exact Hessian at ``w``; with ``with_hessian`` also the matrix."""
        wv = self._w(w)
        eig = np.empty(self.n_inputs)
        h = np.empty((self.n_inputs, self.n_inputs)) if with_hessian else None
        self._bridge.call("hessian", self._h(), _addr(wv), wv.shape[0], None if h is None else _addr(h), _addr(eig))
        return (eig, h) if with_hessian else eig

    # -- lifetime --------------------------------------------------------------
    def close(self) -> None:
        """Free the Julia model now (also done when this object is garbage-collected)."""
        h, self._handle = self._handle, None
        if h is None:
            return
        b = getattr(self, "_bridge", None)
        if b is None or b.closed or threading.get_ident() != b.thread:
            return  # Julia is gone or unreachable from here: the handle is just dropped
        try:
            b.call("tcm_free", h)
        except Exception:  # noqa: BLE001 - never raise from a finaliser
            pass

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    def __repr__(self) -> str:
        return f"JuliaTCM(N={getattr(self, 'n_inputs', '?')}, K={getattr(self, 'n_hidden', '?')}, M={getattr(self, 'n_patterns', '?')})"


def echo_path_config(cfg: PathConfig) -> dict[str, str]:
    """The Julia ``PathConfig`` the bridge builds from ``cfg``, as {field: value as Julia prints it}, in Julia's field order."""
    variant, fcfg, icfg = pack_path_config(cfg)
    bridge = julia_bridge.get_bridge()
    n = np.zeros(1, dtype=np.int64)
    bridge.call("pathconfig_echo", variant, _addr(fcfg), _addr(icfg), None, 0, _addr(n))
    buf = ctypes.create_string_buffer(max(int(n[0]), 1))
    bridge.call("pathconfig_echo", variant, _addr(fcfg), _addr(icfg), ctypes.addressof(buf), int(n[0]), _addr(n))
    return dict(item.split("=", 1) for item in buf.raw[: int(n[0])].decode().split(";"))


def registry_sizes() -> tuple[int, int]:
    """(live Julia models, live path results), for tests."""
    out = np.zeros(2, dtype=np.int64)
    julia_bridge.get_bridge().call("registry_sizes", _addr(out))
    return int(out[0]), int(out[1])
