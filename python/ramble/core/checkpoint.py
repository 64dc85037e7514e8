"""What the path algorithm needs to be resumable, without knowing where its state is kept.

:class:`Checkpoint` is the interface :func:`ramble.core.path.find_path` saves
and restores its state through; :mod:`ramble.storage.checkpoint` implements it
on an experiment file.  A multi-leg path (waypoints, the norm escape,
routing) keeps each running leg's state inside its own with
:class:`NestedCheckpoint`.  The state is a nest of dicts, lists, numbers,
strings and tensors (what ``torch.load(weights_only=True)`` reads back).
"""

from __future__ import annotations

from typing import Any, Optional, Protocol


class Checkpoint(Protocol):
    """What :func:`ramble.core.path.find_path` needs to save and restore its state."""

    def load(self) -> Optional[dict]:
        """The saved state to continue from (once), or None to start afresh."""
        ...

    def due(self, within_iteration: bool = False) -> bool:
        """True when the state should be saved now.

        Called once at the start of each iteration, and with
        ``within_iteration=True`` after each move inside one (a GD epoch, a
        repair round), where only a time limit should apply: an iteration
        count must count iterations.
        """
        ...

    def save(self, state: dict) -> None:
        ...



class NestedCheckpoint:
    """A leg's view of its path's checkpoint: saves the leg state inside the driver's state."""

    def __init__(self, outer: Checkpoint, driver_state: Any, leg_state: Optional[dict]) -> None:
        self.outer = outer
        self.driver_state = driver_state
        self._pending = leg_state

    def load(self) -> Optional[dict]:
        state, self._pending = self._pending, None
        return state

    def due(self, within_iteration: bool = False) -> bool:
        return self.outer.due(within_iteration)

    def save(self, state: dict) -> None:
        self.outer.save(dict(self.driver_state(), leg=state, iteration=state.get("iteration", -1)))
