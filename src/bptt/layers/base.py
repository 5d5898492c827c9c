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
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..inputs import is_tokens, project_backward, step_terms

__all__ = ["Adjoints", "Layer", "freeze", "previous_states", "state_buffer", "uniform"]

State = tuple[np.ndarray, ...]


@dataclass(frozen=True)
class Adjoints:
    """Per-step gradients from a layer's backward loop (the quantities BPTT carries).

    Every parameter gradient is a sum over steps of one of the first two times an
    input of that step: ``∂J/∂V = Σ_t d_in_tᵀ x_t``, ``∂J/∂W = Σ_t d_rec_tᵀ h_{t-1}``.

    ======  ===========  ===================================================================
    field   shape        meaning
    ======  ===========  ===================================================================
    d_in    (T, B, G·H)  ∂J/∂ of the input-side pre-activations ``V x_t + b`` (G gates)
    d_rec   (T, B, G·H)  ∂J/∂ of the recurrent-side pre-activations ``W h_{t-1}``; ``None`` when
                         not kept (a layer whose two sides differ then derives it in ``_d_rec``)
    dh      (T, B, H)    total ∂J/∂h_t: direct term plus everything through later steps;
                         ``None`` when not kept
    dstate0 tuple        ∂J/∂ of the initial state variables, each (B, H)
    ======  ===========  ===================================================================
    """

    d_in: np.ndarray
    d_rec: np.ndarray | None
    dh: np.ndarray | None
    dstate0: State


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
    ``hidden_size``, ``bias`` and ``suffix`` (appended to every parameter and state name,
    ``""`` for a single-layer network, ``"_l{k}"`` in a stack).
    """

    input_size: int
    hidden_size: int
    bias: bool
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
    def adjoints(
        self,
        params: dict[str, np.ndarray],
        cache: Any,
        dH: np.ndarray,
        dstate_T: State | None,
        *,
        overwrite_dH: bool = False,
        keep: bool = True,
    ) -> Adjoints:
        """The backward loop: from ``dH = ∂J/∂h_t`` (direct terms only, ``(T, B, H)``) to :class:`Adjoints`.

        ``dstate_T`` is the gradient arriving at the final state from beyond the
        window (``None`` for zero). ``overwrite_dH`` lets the loop use ``dH``'s memory
        (the caller owns it and will not read it again). ``keep=False`` asks for only
        what :meth:`backward` needs: ``dh`` is not stored (one ``(T, B, H)`` array less)
        and ``d_rec`` may be ``None``.
        """

    @abstractmethod
    def input_weight(self, params: dict[str, np.ndarray]) -> np.ndarray:
        """``V`` of shape ``(G·H, D)``, the matrix applied to ``x_t`` (a view for fused notations)."""

    @abstractmethod
    def _pack(
        self, dV: np.ndarray, dW: np.ndarray, in_total: np.ndarray | None, rec_total: np.ndarray | None
    ) -> dict[str, np.ndarray]:
        """Name the gradients: input weight ``dV``, recurrent weight ``dW``, and the biases from
        ``in_total`` and ``rec_total``, the sums of ``d_in`` and ``d_rec`` over the batch (and steps;
        ``None`` for a layer without bias)."""

    def _d_rec(self, cache: Any, adj: Adjoints) -> np.ndarray:
        """``d_rec`` when ``adj`` did not keep it; may reuse ``adj.d_in``'s memory (read ``d_in`` first)."""
        raise NotImplementedError(f"{type(self).__name__} always keeps d_rec")

    def backward(
        self,
        params: dict[str, np.ndarray],
        cache: Any,
        dH: np.ndarray,
        dstate_T: State | None,
        need_dx: bool,
        *,
        overwrite_dH: bool = False,
        keep: bool = True,
    ) -> tuple[dict[str, np.ndarray], np.ndarray | None, State, Adjoints | None]:
        """BPTT through the layer; returns ``(grads, dx, dstate0, adjoints)``.

        The sums over time are single matrix products over all ``T·B`` rows.
        ``adjoints`` is ``None`` unless ``keep`` (see :meth:`adjoints` for both flags).
        """
        adj = self.adjoints(params, cache, dH, dstate_T, overwrite_dH=overwrite_dH, keep=keep)
        T, B, G = adj.d_in.shape
        # Everything that reads d_in comes first: _d_rec may turn d_in into d_rec in place.
        dV, dx = project_backward(adj.d_in, cache.x, self.input_weight(params), need_dx and not is_tokens(cache.x))
        in_total = adj.d_in.sum(axis=(0, 1)) if self.bias else None
        if adj.d_rec is adj.d_in:  # one pre-activation per gate (Elman, LSTM): the two sides agree
            d_rec, rec_total = adj.d_in, in_total
        else:
            d_rec = self._d_rec(cache, adj) if adj.d_rec is None else adj.d_rec
            rec_total = d_rec.sum(axis=(0, 1)) if self.bias else None
        H_prev = previous_states(cache).reshape(T * B, self.hidden_size)
        dW = d_rec.reshape(T * B, G).T @ H_prev  # Σ_t d_rec_tᵀ h_{t-1}
        return self._pack(dV, dW, in_total, rec_total), dx, adj.dstate0, adj if keep else None

    def param_terms(
        self, params: dict[str, np.ndarray], cache: Any, adj: Adjoints, wanted: set[str] | None = None
    ) -> dict[str, np.ndarray]:
        """The terms of the sums over time: ``{name: (T, *shape)}``, summing to the gradients.

        ``wanted`` limits the work to those names (others may be returned as zero views).
        """
        in_name, rec_name = self.weight_names

        def need(name: str) -> bool:
            return wanted is None or name in wanted

        T, _, G = adj.d_in.shape
        dW = (
            step_terms(adj.d_rec, previous_states(cache), self.hidden_size)
            if need(rec_name)
            else np.broadcast_to(np.zeros((), adj.d_rec.dtype), (T, G, self.hidden_size))
        )
        dV = (
            step_terms(adj.d_in, cache.x, self.input_size)
            if need(in_name)
            else np.broadcast_to(np.zeros((), adj.d_in.dtype), (T, G, self.input_size))
        )
        in_terms = adj.d_in.sum(axis=1) if self.bias else None
        rec_terms = in_terms if adj.d_rec is adj.d_in or not self.bias else adj.d_rec.sum(axis=1)
        return self._pack(dV, dW, in_terms, rec_terms)

    @property
    def weight_names(self) -> tuple[str, str]:
        """Names of the input weight and the recurrent weight (the same name when they are fused)."""
        return "V" + self.suffix, "W" + self.suffix

    @abstractmethod
    def state_at(self, cache: Any, t: int) -> State:
        """The state after step ``t`` (0-based) of the pass that produced ``cache``."""

    @abstractmethod
    def step(self, params: dict[str, np.ndarray], x_t: np.ndarray, state: State) -> State:
        """One step: ``x_t`` of shape ``(B, D)`` (or ``(B,)`` token ids) → new state."""


def state_buffer(h0: np.ndarray, T: int) -> np.ndarray:
    """``(T + 1, B, H)`` buffer for ``h_0 .. h_T`` with ``h_0`` written in.

    A layer's loop fills ``buf[1:]`` (its ``H``), so ``buf[:-1]``, the state each step
    starts from, is a view: ``∂J/∂W = Σ_t d_tᵀ h_{t-1}`` needs no copy of the states.
    """
    buf = np.empty((T + 1, *h0.shape), h0.dtype)
    buf[0] = h0
    return buf


def previous_states(cache: Any) -> np.ndarray:
    """``h_0 .. h_{T-1}``, the hidden state each step starts from, ``(T, B, H)``.

    A view when the cache has ``H_prev`` (bptt's layers); built from ``h0`` and ``H`` otherwise.
    """
    H_prev = getattr(cache, "H_prev", None)
    if H_prev is not None:
        return H_prev
    return np.concatenate((cache.h0[None], cache.H[:-1]), axis=0)
