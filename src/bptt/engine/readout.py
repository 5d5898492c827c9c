"""The output layer ``ŷ_t = f_y(U h_t + U_x x_t + b_y)``, applied to every step at once.

The output layer does not take part in the recurrence, so its forward pass is
one matrix product over all ``T·B`` rows, and its three parameter gradients are
the lecture's sums over time written as matrix products::

    z2_t = U h_t + U_x x_t + b_y          (U_x only when the output reads the input)
    ∂J/∂U = Σ_t dz2_t h_tᵀ,   ∂J/∂U_x = Σ_t dz2_t x_tᵀ,   ∂J/∂b_y = Σ_t dz2_t
    ∂J/∂h_t (direct) = Uᵀ dz2_t

=========  =========  ===========  ==========  ===============================
lecture    mit        concat       shape       meaning
=========  =========  ===========  ==========  ===============================
U          W_o        W_ox[:, :H]  (O, H)      state → output
U_x        W_ox       W_ox[:, H:]  (O, D)      input → output (``output_reads_input``)
b_y        b_o        b_o          (O,)        output bias (only if ``bias``)
=========  =========  ===========  ==========  ===============================

In the concat notation (RNN-B) the output reads ``[s_t; x_t]`` through a single
``W_ox`` of shape ``(O, H + D)``; without the skip it is ``W_o`` of shape ``(O, H)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .inputs import project, project_backward, step_terms
from .layers.base import uniform

__all__ = ["READOUT_NOTATIONS", "Readout"]

# (state → output, input → output, bias, fused [state; input] → output)
READOUT_NOTATIONS: dict[str, tuple[str, str, str, str]] = {
    "lecture": ("U", "U_x", "b_y", ""),
    "mit": ("W_o", "W_ox", "b_o", ""),
    "concat": ("W_o", "", "b_o", "W_ox"),
}


@dataclass(frozen=True)
class Readout:
    """Output layer of a network; see the module docstring.

    Attributes
    ----------
    hidden_size : int
        Size H of the top recurrent layer's state.
    input_size : int
        Size D of the network input (used by the skip ``U_x``).
    output_size : int
        Size O of the output.
    bias : bool
    reads_input : bool
        Whether ``x_t`` also feeds the output (RNN-B's ``W_ox [s_t; x_t]``).
    notation : str
        ``"lecture"``, ``"mit"`` or ``"concat"``.
    """

    hidden_size: int
    input_size: int
    output_size: int
    bias: bool = True
    reads_input: bool = False
    notation: str = "lecture"

    @property
    def _fused(self) -> bool:
        return self.notation == "concat" and self.reads_input

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        H, D, O = self.hidden_size, self.input_size, self.output_size
        n_out, n_skip, n_b, n_fused = READOUT_NOTATIONS[self.notation]
        if self._fused:
            shapes = {n_fused: (O, H + D)}
        else:
            shapes = {n_out: (O, H)}
            if self.reads_input:
                shapes[n_skip] = (O, D)
        if self.bias:
            shapes[n_b] = (O,)
        return shapes

    def init_params(self, rng: np.random.Generator, dtype) -> dict[str, np.ndarray]:
        """Weights ``U(±1/√fan_in)`` as ``torch.nn.Linear`` (fan-in H, D or H + D); zero bias."""
        return {
            name: np.zeros(shape, dtype) if len(shape) == 1 else uniform(rng, shape, 1.0 / np.sqrt(shape[1]), dtype)
            for name, shape in self.param_shapes().items()
        }

    def weights(self, params) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """``(U, U_x, b_y)`` whatever the notation (views into ``W_ox`` for concat)."""
        n_out, n_skip, n_b, n_fused = READOUT_NOTATIONS[self.notation]
        b = params[n_b] if self.bias else None
        if self._fused:
            W_ox = params[n_fused]
            return W_ox[:, : self.hidden_size], W_ox[:, self.hidden_size :], b
        return params[n_out], params[n_skip] if self.reads_input else None, b

    def forward(self, params, H: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Logits ``z2_t`` for every step.

        Parameters
        ----------
        H : ndarray, (T, B, H)
            Top-layer hidden states.
        x : ndarray, (T, B, D) float or (T, B) int
            Network input (read only when ``reads_input``).

        Returns
        -------
        ndarray, (T, B, O)
        """
        U, U_x, b = self.weights(params)
        T, B, Hs = H.shape
        Z = (H.reshape(T * B, Hs) @ U.T).reshape(T, B, self.output_size)
        if U_x is not None:
            Z += project(x, U_x)
        if b is not None:
            Z += b
        return Z

    def step(self, params, h: np.ndarray, x_t: np.ndarray) -> np.ndarray:
        """Logits for one step: ``h`` (B, H), ``x_t`` (B, D) or (B,) ids → (B, O)."""
        U, U_x, b = self.weights(params)
        z = h @ U.T
        if U_x is not None:
            z += U_x.T[x_t] if x_t.dtype.kind in "iu" else x_t @ U_x.T
        if b is not None:
            z += b
        return z

    def backward(self, params, dZ, H, x, need_dx: bool):
        """Gradients from ``dZ = ∂J/∂z2`` (T, B, O).

        Returns ``(grads, dH, dx)``: parameter gradients, ``∂J/∂h_t`` through the
        output (T, B, H), and ``∂J/∂x_t`` through the skip (or ``None``).
        """
        U, U_x, _ = self.weights(params)
        T, B, Hs = H.shape
        dZ2 = dZ.reshape(T * B, self.output_size)
        dU = dZ2.T @ H.reshape(T * B, Hs)  # Σ_t dz2_t h_tᵀ
        dH = (dZ2 @ U).reshape(T, B, Hs)  # Uᵀ dz2_t, every step
        dx = dU_x = None
        if U_x is not None:
            dU_x, dx = project_backward(dZ, x, U_x, need_dx)
        return self._pack(dU, dU_x, dZ2.sum(axis=0)), dH, dx  # b_y: Σ_t dz2_t, one term per step (quiz Q3)

    def param_terms(self, dZ, H, x, wanted: set[str] | None = None) -> dict[str, np.ndarray]:
        """The per-step terms of each parameter's sum over time: ``{name: (T, *shape)}``.

        ``wanted`` limits the work to those names (others may be returned as zero views).
        """
        n_out, n_skip, _, n_fused = READOUT_NOTATIONS[self.notation]
        T = dZ.shape[0]

        def need(name: str) -> bool:
            return wanted is None or name in wanted or (self._fused and n_fused in wanted)

        def zeros(n: int) -> np.ndarray:
            return np.broadcast_to(np.zeros((), dZ.dtype), (T, self.output_size, n))

        dU = step_terms(dZ, H, self.hidden_size) if need(n_out) else zeros(self.hidden_size)
        dU_x = None
        if self.reads_input:
            dU_x = step_terms(dZ, x, self.input_size) if need(n_skip) else zeros(self.input_size)
        return self._pack(dU, dU_x, dZ.sum(axis=1))

    def _pack(self, dU, dU_x, db) -> dict[str, np.ndarray]:
        n_out, n_skip, n_b, n_fused = READOUT_NOTATIONS[self.notation]
        if self._fused:
            grads = {n_fused: np.concatenate((dU, dU_x), axis=-1)}
        elif dU_x is not None:
            grads = {n_out: dU, n_skip: dU_x}
        else:
            grads = {n_out: dU}
        if self.bias:
            grads[n_b] = db
        return grads
