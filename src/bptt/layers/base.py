"""What every recurrent layer provides, and helpers they share.

A layer is an immutable description (sizes, activation, parameter names). It
owns no arrays: parameters come in as a dict, and ``forward`` returns the
values ``backward`` needs as a frozen cache object, so nothing about a pass is
stored on the layer or the model.

Shapes are time-major: inputs ``(T, B, D)`` (or token ids ``(T, B)``), hidden
states ``(T, B, H)``, and each state variable of a layer (``h``, and ``c`` for
the LSTM) is ``(B, H)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

__all__ = ["Layer", "freeze", "uniform"]

State = tuple[np.ndarray, ...]


def freeze(*arrays: np.ndarray | None) -> None:
    """Mark arrays read-only so a cache cannot be changed after the forward pass."""
    for a in arrays:
        if a is not None:
            a.flags.writeable = False


def uniform(rng: np.random.Generator, shape: tuple[int, ...], scale: float, dtype) -> np.ndarray:
    """Draw ``U(-scale, scale)`` in the requested dtype (PyTorch's RNN initialisation)."""
    return rng.uniform(-scale, scale, size=shape).astype(dtype)


class Layer(ABC):
    """A recurrent layer: ``state_t = cell(x_t, state_{t-1})``, output ``h_t``.

    Subclasses are frozen dataclasses with at least ``input_size``,
    ``hidden_size`` and ``suffix`` (appended to every parameter and state name,
    ``""`` for a single-layer network, ``"_l{k}"`` in a stack).
    """

    input_size: int
    hidden_size: int
    suffix: str
    kind: str = "layer"

    @property
    @abstractmethod
    def state_names(self) -> tuple[str, ...]:
        """Names of the initial-state variables, e.g. ``("h0",)`` or ``("h0", "c0")``."""

    @abstractmethod
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter names mapped to shapes, in a fixed order."""

    @abstractmethod
    def init_params(self, rng: np.random.Generator, dtype: np.dtype) -> dict[str, np.ndarray]:
        """Fresh parameters drawn from ``rng``."""

    @abstractmethod
    def forward(self, params: dict[str, np.ndarray], x: np.ndarray, state0: State) -> tuple[np.ndarray, State, Any]:
        """Run the whole sequence.

        Returns ``(H, state_T, cache)`` with ``H`` of shape ``(T, B, hidden_size)``.
        """

    @abstractmethod
    def backward(
        self,
        params: dict[str, np.ndarray],
        cache: Any,
        dH: np.ndarray,
        dstate_T: State | None,
        need_dx: bool,
    ) -> tuple[dict[str, np.ndarray], np.ndarray | None, State]:
        """Backpropagate ``dH = ∂J/∂h_t`` (direct terms only, ``(T, B, H)``) through time.

        ``dstate_T`` is the gradient arriving at the final state from beyond the
        window (``None`` for zero). Returns ``(grads, dx, dstate0)``.
        """

    @abstractmethod
    def state_at(self, cache: Any, t: int) -> State:
        """The state after step ``t`` (0-based) of the pass that produced ``cache``."""

    @abstractmethod
    def step(self, params: dict[str, np.ndarray], x_t: np.ndarray, state: State) -> State:
        """One step: ``x_t`` of shape ``(B, D)`` (or ``(B,)`` token ids) → new state."""
