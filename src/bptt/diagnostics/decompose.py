"""How far back does a gradient reach? ∂J/∂θ split by the gap between loss step and action step.

A parameter θ of a recurrent network acts at every step, and BPTT's gradient is a
double sum over the step ``t`` whose loss is differentiated and the step ``k ≤ t``
at which θ acted::

    J       = Σ_t J_t,            J_t = (1/B) Σ_b w_tb Loss(y_tb, ŷ_tb)
    ∂J/∂θ   = Σ_t Σ_{k≤t} C[t, k],    C[t, k] = ∂J_t/∂θ_k

where ``θ_k`` is the copy of θ used at step ``k`` (changing θ at that step only).
:func:`gradient_by_gap` regroups the same terms three ways::

    by_gap[g]        = Σ_{t−k=g} C[t, k]      how far back the gradient reaches
    by_step[k]       = Σ_{t≥k}   C[t, k]      where θ acted (RNN.trace's terms)
    by_loss_step[t]  = Σ_{k≤t}   C[t, k]      the gradient of J_t alone

For the lecture's linear Elman network (``f_h``, ``f_y`` identity, squared error,
no biases, ``h_t = V x_t + W h_{t−1}``, ``ŷ_t = U h_t``, ``B = 1``), with
``δ_t = ŷ_t − y_t``::

    ∂J_t/∂h_k    = (W^{t−k})ᵀ Uᵀ δ_t
    C[t, k]      = (W^{t−k})ᵀ Uᵀ δ_t h_{k−1}ᵀ          for θ = W

so ``by_gap[g]`` is a sum of terms carrying the factor ``W^g``: it shrinks like
``‖W‖^g`` when the spectral radius is below one (vanishing gradients: the
long-range terms ``g ≫ 1`` contribute nothing) and grows when it is above
(exploding gradients). Output-layer parameters (``U``, ``b_y``, ``W_o``, …) act
on ``h_t`` only to produce ``ŷ_t``: all of their gradient sits at gap 0.

How it is computed: one forward pass, then for each loss step ``t`` one
:meth:`RNN.trace` with ``∂J/∂z2`` kept at step ``t`` only; its per-step terms are
``C[t, k]`` for ``k ≤ t`` (zero after ``t``). That is ``T`` backward passes, exact
(no finite differences), in a float64 copy of the network.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine.layers.base import freeze
from ..engine.network import RNN
from .problem import float64_problem

__all__ = ["GapDecomposition", "gradient_by_gap"]


@dataclass(frozen=True)
class GapDecomposition:
    """∂J/∂θ for one parameter θ, split by gap ``t − k``, by action step ``k`` and by loss step ``t``.

    ===============  ==============  =======================================================
    symbol           shape           meaning
    ===============  ==============  =======================================================
    T                scalar          number of steps of the sequence
    θ                ``shape``       the parameter (``model.params[param]``)
    C[t, k]          ``shape``       ``∂J_t/∂θ_k``: loss at step t through θ acting at step k
    by_gap[g]        (T, *shape)     ``Σ_{t−k=g} C[t, k]``, g = 0 .. T−1
    by_step[k]       (T, *shape)     ``Σ_{t≥k} C[t, k]`` (= ``RNN.trace(...).terms[param]``)
    by_loss_step[t]  (T, *shape)     ``Σ_{k≤t} C[t, k]`` = ``∂J_t/∂θ``
    total            ``shape``       ``∂J/∂θ``; each of the three sums over axis 0 equals it
    norms_by_gap[g]  (T,)            ``‖by_gap[g]‖`` (Frobenius)
    ===============  ==============  =======================================================

    All arrays are float64 and read-only.

    Attributes
    ----------
    param : str
        The parameter's name in ``model.params``.
    loss : float
        ``J`` of the analysed sequence(s).
    by_gap, by_step, by_loss_step : ndarray, (T, *shape)
        As in the table.
    total : ndarray, shape of the parameter
        The gradient, from one full backward pass.
    norms_by_gap : ndarray, (T,)
        As in the table.
    """

    param: str
    loss: float
    by_gap: np.ndarray
    by_step: np.ndarray
    by_loss_step: np.ndarray
    total: np.ndarray
    norms_by_gap: np.ndarray


def gradient_by_gap(
    model: RNN,
    x: object,
    y: object,
    param: str,
    h0: object = None,
    *,
    loss_weights: object = None,
    lengths: object = None,
) -> GapDecomposition:
    """Split ``∂J/∂param`` by how many steps separate each loss from where the parameter acted.

    Parameters
    ----------
    model : RNN
        Any bptt network (left unchanged; a float64 copy is analysed).
    x : array, (T, B, D) float or (T, B) int token ids
        Inputs, as for :meth:`RNN.loss_and_grad` (floats in the model's dtype).
    y : array, (T, B) int for ``output="softmax"``; (T, B, O) float otherwise
        Targets.
    param : str
        A key of ``model.params`` (``"W"``, ``"V"``, ``"W_ss"``, ``"W_l0"``, …).
    h0 : None, array (B, H), tuple or dict keyed by state name
        Initial state (zeros if ``None``).
    loss_weights : array (T, B), optional
        ``w_tb`` in ``J = (1/B) Σ_b Σ_t w_tb Loss_tb``, as for :meth:`RNN.loss_and_grad`.
    lengths : int array (B,), optional
        Real steps of each sequence (no loss at padding steps).

    Returns
    -------
    GapDecomposition
        ``by_gap``, ``by_step``, ``by_loss_step`` (each ``(T, *shape)``), ``total`` and
        ``norms_by_gap`` (``(T,)``).

    Examples
    --------
    >>> import numpy as np, bptt
    >>> m = bptt.Elman(3, 4, 3, seed=0)
    >>> x, y = np.random.default_rng(0).standard_normal((6, 2, 3)), np.zeros((6, 2), int)
    >>> d = gradient_by_gap(m, x, y, "U")
    >>> bool(np.all(d.norms_by_gap[1:] == 0))  # the output layer acts only at gap 0
    True
    """
    where = "gradient_by_gap"
    problem = float64_problem(model, x, h0, where, y=y, loss_weights=loss_weights, targets=True, lengths=lengths)
    if model.bidirectional:
        raise ValueError(
            f"{where}: the gap t − k assumes each loss depends on earlier steps only; "
            f"bidirectional layers are not supported"
        )
    if not isinstance(param, str):
        raise TypeError(f"{where}: param must be a parameter name (str), got {param!r}")
    if param not in model.params:
        raise ValueError(f"{where}: param must be one of {list(model.params)}, got {param!r}")
    # Validated in the model's own dtype (as loss_and_grad does), analysed in float64.
    m, x64, y64, w = problem.model, problem.x, problem.y, problem.w
    T, B = problem.T, problem.B
    fwd = m.forward(x64, problem.h0, lengths=problem.lengths)
    per_step = m.output.loss(fwd.logits, y64)  # (T, B)
    if w is not None:
        per_step = per_step * w
    dZ = m.output.d_logits(fwd.outputs, y64, w)  # ∂J/∂z2_t, as in loss_and_grad
    loss = float(per_step.sum() / B)

    shape = m.params[param].shape
    by_gap = np.zeros((T, *shape))
    by_step = np.zeros((T, *shape))
    by_loss_step = np.zeros((T, *shape))
    dZ_t = np.zeros_like(dZ)
    for t in range(T):
        if not dZ[t].any():
            continue  # J_t does not depend on θ (e.g. loss weight 0): every C[t, k] is zero
        dZ_t[t] = dZ[t]  # J_t alone
        C_t = m.trace(fwd, dZ_t, params=[param]).terms[param]  # C[t, k] for k = 0 .. T−1 (zero for k > t)
        dZ_t[t] = 0.0
        by_gap[: t + 1] += C_t[t::-1]  # k = t, t−1, …, 0 is gap 0, 1, …, t
        by_step += C_t
        by_loss_step[t] = C_t[: t + 1].sum(axis=0)
    total = m.backward(fwd, dZ)[param]
    norms_by_gap = np.linalg.norm(by_gap.reshape(T, -1), axis=1)
    freeze(by_gap, by_step, by_loss_step, total, norms_by_gap)
    return GapDecomposition(
        param=param,
        loss=loss,
        by_gap=by_gap,
        by_step=by_step,
        by_loss_step=by_loss_step,
        total=total,
        norms_by_gap=norms_by_gap,
    )
