"""The preamble every diagnostic shares: validate a network's inputs, then copy everything to float64.

A diagnostic (Jacobians, sensitivity, dependence, gradient by gap, gradcheck) checks
its arguments in the model's own dtype, as :meth:`bptt.RNN.loss_and_grad` would, so
errors read the same and name the diagnostic; then it analyses a float64 copy of
the network and the data, leaving the caller's model and arrays untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _checks
from ..engine.layers.base import Padding
from ..engine.network import RNN, require_network

__all__ = ["Problem", "float64_problem"]


@dataclass(frozen=True)
class Problem:
    """A network and its data, validated and copied to float64.

    ==========  ======================  ==================================================
    field       shape                   meaning
    ==========  ======================  ==================================================
    model       RNN                     float64 copy of the network (safe to perturb)
    x           (T, B, D) or (T, B)     float64 copy of the inputs, or the token ids
    h0          name → (B, H_k)         float64 copies of the initial state (zeros if none)
    y           (T, B) or (T, B, O)     targets in float64 (class ids stay ints); None if not asked
    w           (T, B) or None          loss weights in float64 (zero at padding steps); None for all ones
    lengths     (B,) int or None        real steps of each sequence; None when all are T
    ==========  ======================  ==================================================
    """

    model: RNN
    x: np.ndarray
    h0: dict[str, np.ndarray]
    y: np.ndarray | None
    w: np.ndarray | None
    lengths: np.ndarray | None = None

    @property
    def T(self) -> int:
        return self.x.shape[0]

    @property
    def B(self) -> int:
        return self.x.shape[1]

    @property
    def dense(self) -> bool:
        """True for float inputs (which have a gradient), False for token ids."""
        return self.x.dtype.kind == "f"


def _wide(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float64) if a.dtype.kind == "f" else a.copy()


def float64_problem(
    model: object,
    x: object,
    h0: object,
    where: str,
    *,
    y: object = None,
    loss_weights: object = None,
    targets=False,
    lengths: object = None,
) -> Problem:
    """Check ``model`` and its arguments (errors name ``where``) and copy them to float64.

    ``targets=True`` also checks ``y`` (and ``loss_weights``) against the network's output; the
    diagnostics read one target per step (a many-to-one ``y`` is refused by the shape check).
    With ``lengths``, the loss weights are zero at every padding step.
    """
    require_network(model, where)
    x, states = model.prepare(x, h0, where)
    T, B = x.shape[:2]
    lengths = _checks.lengths(lengths, T, B, where)
    y_, w_ = None, None
    if targets:
        out = model.output
        y_ = _wide(_checks.targets(y, T, B, model.output_size, out.class_targets, model.dtype, out.name, where))
        w = _checks.loss_weights(loss_weights, T, B, model.dtype, where)
        w_ = None if w is None else w.astype(np.float64)
        if lengths is not None:
            w_ = Padding.of(lengths, T).loss_weights(w_, np.float64)
    h0_64 = {name: s.astype(np.float64) for name, s in model.name_states(states).items()}
    return Problem(model=model.astype("float64"), x=_wide(x), h0=h0_64, y=y_, w=w_, lengths=lengths)
