"""Output activations ``f_y`` / ``f2`` paired with their matching per-step loss.

Every output activation comes with the loss it is the canonical partner of, so
the gradient with respect to the output pre-activation ``z2_t = U h_t + b_y``
is always the same simple expression::

    ∂Loss_t/∂z2_t = p_t - y_t        (y_t one-hot for softmax)

=========  ===========================  ==========================================
output     p = f_y(z)                   Loss_t(y_t, p_t)
=========  ===========================  ==========================================
softmax    exp(z) / Σ exp(z)            -log p_t[y_t]           (y_t: class id)
sigmoid    1 / (1 + exp(-z))            -Σ_o [y log p + (1-y) log(1-p)]
identity   z                            ½ ‖p_t - y_t‖²
=========  ===========================  ==========================================

The overall loss is ``J = (1/B) Σ_t Σ_b w_tb Loss_tb`` where the optional
weights ``w`` (shape ``(T, B)``, default 1) select or scale individual steps.
Losses stay finite for saturated outputs: sigmoid and softmax losses come from the
logits ``z`` (softplus, log-sum-exp); when the softmax probabilities are already
computed, ``-log p_y`` is read from them and only entries whose ``p_y`` is too
small for full precision are recomputed from the logits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .activations import sigmoid

__all__ = ["OUTPUTS", "Output", "get_output", "softmax"]


def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax along ``axis``, shifted by the maximum for stability."""
    e = z - z.max(axis=axis, keepdims=True)
    np.exp(e, out=e)
    e /= e.sum(axis=axis, keepdims=True)
    return e


def _identity(z: np.ndarray) -> np.ndarray:
    return z.copy()


def _at_targets(a: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where ``a[t, b, y_tb]`` sits in ``a.reshape(-1, O)``, for every (t, b): (rows, target columns).

    One fancy index on the flattened view; ``np.take_along_axis`` builds broadcast index arrays
    for every axis, which costs more than the gather itself for small windows.
    """
    if y.shape != a.shape[:-1]:
        raise ValueError(f"class targets must have shape {a.shape[:-1]} (one id per output row), got {y.shape}")
    return np.arange(y.size), y.reshape(-1)


def _softmax_loss(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-(t, b) cross-entropy ``-log softmax(z)[y]``; z (T, B, O), y int (T, B)."""
    shifted = z - z.max(axis=-1, keepdims=True)
    lse = np.log(np.exp(shifted).sum(axis=-1))
    return lse - shifted.reshape(-1, z.shape[-1])[_at_targets(shifted, y)].reshape(y.shape)


def _softmax_loss_given_probs(p: np.ndarray, z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``_softmax_loss`` from the probabilities ``p = softmax(z)`` already computed: ``-log p_y``.

    One gather and one log per (t, b) instead of two more passes over (T, B, O). Where ``p_y``
    is too small to carry full precision (below ``tiny / eps``, or zero after underflow) the
    loss is recomputed from the logits for those entries only.
    """
    p_y = p.reshape(-1, p.shape[-1])[_at_targets(p, y)].reshape(y.shape)
    info = np.finfo(p.dtype)
    small = p_y < info.tiny / info.eps
    loss = -np.log(np.where(small, 1.0, p_y))
    if small.any():
        loss[small] = _softmax_loss(z[small][None], y[small][None])[0]
    return loss


def _sigmoid_loss(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-(t, b) binary cross-entropy from logits: Σ_o softplus(z) - y z."""
    softplus = np.logaddexp(0.0, z)
    return (softplus - y * z).sum(axis=-1)


def _squared_loss(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-(t, b) squared error ½‖z - y‖² (the identity output p = z)."""
    d = z - y
    return 0.5 * np.einsum("...o,...o->...", d, d)


def _dense_residual(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    return p - y


def _class_residual(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    d = p.copy()
    # p - onehot(y): each (t, b) has exactly one target, so a put is enough.
    d.reshape(-1, d.shape[-1])[_at_targets(d, y)] -= 1.0
    return d


@dataclass(frozen=True)
class Output:
    """An output activation with its matching loss.

    Attributes
    ----------
    name : str
        ``"softmax"``, ``"sigmoid"`` or ``"identity"``.
    loss_name : str
        The paired loss: ``"cross_entropy"``, ``"binary_cross_entropy"``, ``"squared_error"``.
    f : callable
        ``f(z) -> p`` on ``(..., O)`` logits.
    loss : callable
        ``loss(z, y) -> (T, B)`` per-step, per-sequence loss computed from the logits.
    loss_given_outputs : callable
        ``loss_given_outputs(p, z, y) -> (T, B)``: the same loss when ``p = f(z)`` is already
        computed (softmax: ``-log p_y``, no second pass over the logits).
    residual : callable
        ``residual(p, y) -> ∂Loss/∂z = p - y`` of shape ``(T, B, O)``.
    class_targets : bool
        True when targets are integer class ids of shape ``(T, B)``; otherwise
        they are floats of shape ``(T, B, O)``.
    """

    name: str
    loss_name: str
    f: Callable[[np.ndarray], np.ndarray]
    loss: Callable[[np.ndarray, np.ndarray], np.ndarray]
    loss_given_outputs: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    residual: Callable[[np.ndarray, np.ndarray], np.ndarray]
    class_targets: bool

    def d_logits(self, p: np.ndarray, y: np.ndarray, w: np.ndarray | None, batch_size: int | None = None) -> np.ndarray:
        """``∂J/∂z2_t = (p_t − y_t) w_tb / B`` for ``J = (1/B) Σ_b Σ_t w_tb Loss_tb``, shape ``(T, B, O)``.

        ``w`` is ``(T, B)`` or ``None`` (all ones); ``B`` defaults to ``p.shape[1]`` (pass 1 for
        the gradient of the unnormalised sum). The one place bptt writes this gradient.
        """
        B = p.shape[-2] if batch_size is None else batch_size  # (T, B, O), or (B, O) for one target per sequence
        d = self.residual(p, y)
        if w is None:
            d *= 1.0 / B
        else:
            d *= (w / B)[..., None]
        return d


OUTPUTS: dict[str, Output] = {
    "softmax": Output(
        "softmax", "cross_entropy", softmax, _softmax_loss, _softmax_loss_given_probs, _class_residual, True
    ),
    "sigmoid": Output(
        "sigmoid",
        "binary_cross_entropy",
        sigmoid,
        _sigmoid_loss,
        lambda p, z, y: _sigmoid_loss(z, y),  # from the logits: log σ(z) is stabler than log p
        _dense_residual,
        False,
    ),
    "identity": Output(
        "identity",
        "squared_error",
        _identity,
        _squared_loss,
        lambda p, z, y: _squared_loss(p, y),  # p = z
        _dense_residual,
        False,
    ),
}


def get_output(name: object, where: str) -> Output:
    """Look up an output activation by name, with an error that names the caller."""
    if not isinstance(name, str) or name not in OUTPUTS:
        raise ValueError(f"{where}: output must be one of {sorted(OUTPUTS)}, got {name!r}")
    return OUTPUTS[name]
