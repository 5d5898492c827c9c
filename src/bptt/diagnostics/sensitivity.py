"""Input sensitivity: how strongly each input ``x_s`` moves each step's loss, and which inputs stand out.

The exam's question (b) asks for ``∂J/∂x_t``; its use is to find outlier inputs, whose
gradient is unusually large. For one sequence with per-step losses ``Loss_t`` and
``J = Σ_t Loss_t``, :func:`input_sensitivity` reports::

    M[t, s]   = ‖∂Loss_t/∂x_s‖₂          s ≤ t   (0 for s > t: x_s comes after Loss_t; stored as NaN —
                                              except in a bidirectional network, whose reverse layers read ahead)
    g_s       = ∂J/∂x_s = Σ_{t≥s} ∂Loss_t/∂x_s
    z_s       = 0.6745 (‖g_s‖ − median) / MAD            robust z-score (Iglewicz & Hoaglin)

and flags the steps with ``|z_s| > threshold`` (3.5, Iglewicz & Hoaglin's cut-off).

Which loss. ``Loss_t = w_t Loss(y_t, ŷ_t)`` of the chosen sequence, weighted by its
``loss_weights`` column when given. It is the *per-sequence* loss: the library's
``J = (1/B) Σ_b Σ_t w_tb Loss_tb`` divides by the batch size, this module does not, so
``gradients`` equals ``B ·`` ``model.loss_and_grad(x, y).grads["x"][:, b]`` for dense inputs
(and is independent of the other sequences of the batch).

Which vector. For float inputs ``(T, B, D)`` the gradient is taken with respect to ``x_t``
itself (``wrt == "x"``). Token ids ``(T, B)`` stand for one-hot vectors, which are not
variables one can move along; the gradient is then taken with respect to the vectors that
``x_t`` actually feeds into the network, i.e. the columns of the input weights it selects:

==============  =========================  ===============================================
``parts`` key   vector (size)              gradient
==============  =========================  ===============================================
``"V x_t"``     ``V[:, x_t]`` (G·H)        ∂J/∂ of the first layer's input pre-activation
                                           term ``V x_t`` (``Adjoints.d_in``; the input
                                           weight is ``W_sx`` in the mit notation, the input
                                           block of ``W_ssx`` in concat, all G gates stacked
                                           for LSTM and GRU); without an embedding only
``"e_t"``       ``E[:, x_t]`` (embedding)  ∂J/∂e_t, with an input embedding
``"U_x x_t"``   ``U_x[:, x_t]`` (O)        ∂J/∂z2_t through the output skip (RNN-B's input
                                           block of ``W_ox``), when the output reads ``x_t``
==============  =========================  ===============================================

``wrt`` joins the keys (``"V x_t, U_x x_t"``) and the vector is their concatenation. These
relate to the dense gradient of the one-hot vector by ``∂J/∂x_t = Vᵀ ∂J/∂(V x_t) + U_xᵀ
∂J/∂(U_x x_t)`` (``Eᵀ ∂J/∂e_t`` with an embedding); and when token ``x_t`` occurs only once
in the sequence, ``∂J/∂(V x_t)`` is column ``x_t`` of ``∂J/∂V``.

How it is computed. All T masked losses come from one forward and one backward pass
(split into several when ``T²`` rows would be large): the sequence is replicated T times
along the batch axis and replica ``t`` receives only step t's ``∂Loss_t/∂z2_t``, so that
the input gradient of replica ``t`` is row ``t`` of ``∂Loss_t/∂x_s``. Exact to rounding,
in float64 (a float32 model is copied). Entries with ``s > t`` come out exactly 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _checks
from ..engine.layers.base import freeze
from ..engine.network import RNN
from .problem import float64_problem

__all__ = ["InputSensitivity", "input_sensitivity", "robust_z_scores"]

MAD_SCALE = 0.6745  # Φ⁻¹(3/4): makes MAD/0.6745 estimate σ for normal data
MEAN_AD_SCALE = 0.7979  # √(2/π): mean |v − median| / σ for normal data (the MAD = 0 fallback)
MAX_ELEMENTS = 1 << 22  # float64 numbers per replicated pass, roughly (32 MB)


@dataclass(frozen=True)
class InputSensitivity:
    """Per-step input gradients of one sequence, their norms and robust z-scores.

    ==========  =========  ==============================================================
    symbol      shape      meaning
    ==========  =========  ==============================================================
    v_s         (n,)       the vector differentiated at step s: ``x_s`` (n = D) or, for
                           token ids, the input terms it selects (see ``wrt``)
    Loss_t      scalar     step t's loss of the sequence, times its loss weight
    J           scalar     ``Σ_t Loss_t`` (per sequence: not divided by B)
    ==========  =========  ==============================================================

    Attributes
    ----------
    matrix : ndarray, (T, T)
        ``M[t, s] = ‖∂Loss_t/∂v_s‖₂`` for ``s ≤ t``; NaN above the diagonal, where the
        derivative is exactly 0 (causality).
    per_step : ndarray, (T,)
        ``‖∂J/∂v_s‖₂``, the exam's ``‖∂J/∂x_t‖``.
    z_scores : ndarray, (T,)
        :func:`robust_z_scores` of ``per_step``.
    outliers : ndarray of int
        Steps (0-based) with ``|z| > threshold``, in increasing order.
    gradients : ndarray, (T, n)
        ``∂J/∂v_s``.
    step_gradients : ndarray, (T, T, n)
        ``[t, s] = ∂Loss_t/∂v_s`` (exact zeros for ``s > t``); ``gradients = step_gradients.sum(0)``
        up to rounding.
    losses : ndarray, (T,)
        ``Loss_t``.
    wrt : str
        ``"x"`` for float inputs; for token ids the ``parts`` keys joined by ``", "``.
    parts : dict of str to slice
        Where each vector sits in ``v_s``: ``{"x": ...}``, or ``"V x_t"`` / ``"e_t"`` and
        ``"U_x x_t"`` (see the module docstring).
    threshold : float
        The cut-off on ``|z|``.
    batch_index : int
        Which sequence of the batch was analysed.
    """

    matrix: np.ndarray
    per_step: np.ndarray
    z_scores: np.ndarray
    outliers: np.ndarray
    gradients: np.ndarray
    step_gradients: np.ndarray
    losses: np.ndarray
    wrt: str
    parts: dict[str, slice]
    threshold: float
    batch_index: int


def robust_z_scores(values: object) -> np.ndarray:
    """Robust z-scores ``0.6745 (v − median) / MAD`` (Iglewicz & Hoaglin's modified z-score).

    ``MAD = median |v − median|``. When more than half the values equal the median, MAD is 0;
    the mean absolute deviation takes its place, ``z = (v − median) / (1.2533 · mean |v − median|)``
    (the same normal-consistent scale; the convention of e.g. IBM SPSS). When every value
    equals the median, all scores are 0.

    Parameters
    ----------
    values : array, (N,)
        Finite numbers.

    Returns
    -------
    ndarray, (N,) float64
    """
    where = "robust_z_scores"
    v = _checks.as_array(values, "values", where).astype(np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"{where}: values must be a non-empty 1-d array, got shape {v.shape}")
    _checks.finite(v, "values", where)
    dev = v - np.median(v)
    mad = np.median(np.abs(dev))
    if mad > 0:
        return MAD_SCALE * dev / mad
    mean_ad = np.abs(dev).mean()
    if mean_ad > 0:
        return MEAN_AD_SCALE * dev / mean_ad
    return np.zeros_like(v)


def input_sensitivity(
    model: RNN,
    x: object,
    y: object,
    h0: object = None,
    *,
    loss_weights: object = None,
    lengths: object = None,
    batch_index: int = 0,
    threshold: float = 3.5,
) -> InputSensitivity:
    """``‖∂Loss_t/∂x_s‖`` for every pair of steps of one sequence, ``‖∂J/∂x_t‖`` and its outliers.

    Parameters
    ----------
    model : RNN
        Any bptt network (left unchanged; a float64 copy is differentiated).
    x : array, (T, B, D) float or (T, B) int token ids
        Inputs, as for :meth:`RNN.loss_and_grad`.
    y : array, (T, B) int for softmax outputs; (T, B, O) float otherwise
        Targets.
    h0 : None, array, tuple or dict keyed by state name
        Initial state (zeros if ``None``).
    loss_weights : array (T, B), optional
        ``w_tb``: ``Loss_t`` of sequence b is ``w_tb Loss(y_tb, ŷ_tb)``.
    lengths : int array (B,), optional
        Real steps of each sequence: padding steps carry no loss and no gradient.
    batch_index : int
        The sequence to analyse, in ``[0, B)``.
    threshold : float
        Steps with ``|z| > threshold`` are ``outliers`` (3.5 as Iglewicz & Hoaglin recommend).

    Returns
    -------
    InputSensitivity
    """
    where = "input_sensitivity"
    threshold = _checks.real(threshold, "threshold", where)
    problem = float64_problem(model, x, h0, where, y=y, loss_weights=loss_weights, targets=True, lengths=lengths)
    T, B = problem.T, problem.B
    b = int(_checks.batch_index(batch_index, B, where))
    if model.bidirectional and not problem.dense and model.embedding_size is None:
        raise ValueError(
            f"{where}: token inputs of a bidirectional network are only supported with an embedding "
            f"(each direction has its own V x_t); pass float inputs or use embedding_size"
        )
    length = T if problem.lengths is None else int(problem.lengths[b])

    m, dense = problem.model, problem.dense
    # The chosen sequence alone, in float64: x1 (T, D) or (T,), y1 (T,) or (T, O), w1 (T,).
    x1, y1 = problem.x[:, b], problem.y[:, b]
    w1 = np.ones(T) if problem.w is None else problem.w[:, b]
    s1 = {name: s[b] for name, s in problem.h0.items()}  # each (H_k,)

    fwd1 = m.forward(x1[:, None], {name: s[None] for name, s in s1.items()}, lengths=[length])
    losses = m.output.loss(fwd1.logits, y1[:, None])[:, 0] * w1  # Loss_t, (T,)
    dz2 = m.output.d_logits(fwd1.outputs, y1[:, None], w1[:, None], batch_size=1)[:, 0]  # ∂Loss_t/∂z2_t, (T, O)
    parts = _parts(m, dense)
    n = max(sl.stop for sl in parts.values())

    step_grads = np.zeros((T, T, n))  # [t, s] = ∂Loss_t/∂v_s
    width = (m.input_size if dense else 1) + 3 * m.output_size + sum(8 * layer.hidden_size for layer in m.layers)
    per_pass = max(1, MAX_ELEMENTS // (T * width))
    for t0 in range(0, length, per_pass):  # padding steps carry no loss: no replicas for them
        ts = np.arange(t0, min(length, t0 + per_pass))
        R = ts.size
        # R replicas of the sequence; replica r is scored on step ts[r] alone.
        x_rep = np.repeat(x1[:, None], R, axis=1)  # (T, R, D) or (T, R)
        h_rep = {name: np.repeat(s[None], R, axis=0) for name, s in s1.items()}
        fwd = m.forward(x_rep, h_rep, lengths=np.full(R, length))
        d_logits = np.zeros_like(fwd.logits)  # (T, R, O)
        d_logits[ts, np.arange(R)] = dz2[ts]
        # The engine's backward, kept: Trace keeps neither the first layer's input-side adjoint
        # d_in nor ∂J/∂e_t, which token inputs need.
        bp = m.backprop(fwd, d_logits, keep=True)
        if dense:
            v = bp.grads["x"]  # (T, R, D): ∂Loss_{ts[r]}/∂x_s, both paths (layer and output skip)
        else:
            first = bp.d_first_input if m.embedding_size is not None else bp.layers[0].adjoints.d_in
            v = first if "U_x x_t" not in parts else np.concatenate((first, d_logits), axis=-1)
        step_grads[ts] = v.transpose(1, 0, 2)  # (R, T, n)

    gradients = step_grads.sum(axis=0)  # ∂J/∂v_s = Σ_t ∂Loss_t/∂v_s
    matrix = np.linalg.norm(step_grads, axis=2)
    if not m.bidirectional:
        matrix[np.triu_indices(T, k=1)] = np.nan  # Loss_t does not depend on later inputs
    per_step = np.linalg.norm(gradients, axis=1)
    z = np.full(T, np.nan)
    z[:length] = robust_z_scores(per_step[:length])  # over the real steps only: padding is not an input
    outliers = np.flatnonzero(np.abs(z[:length]) > threshold)
    freeze(matrix, per_step, z, outliers, gradients, step_grads, losses)
    return InputSensitivity(
        matrix=matrix,
        per_step=per_step,
        z_scores=z,
        outliers=outliers,
        gradients=gradients,
        step_gradients=step_grads,
        losses=losses,
        wrt=", ".join(parts),
        parts=parts,
        threshold=float(threshold),
        batch_index=b,
    )


def _parts(m: RNN, dense: bool) -> dict[str, slice]:
    """The vectors making up ``v_t`` and where each sits (see the module docstring)."""
    if dense:
        return {"x": slice(0, m.input_size)}
    if m.embedding_size is not None:
        parts = {"e_t": slice(0, m.embedding_size)}
    else:
        size = m.layers[0].input_weight(m.params).shape[0]  # G·H rows of V
        parts = {"V x_t": slice(0, size)}
    if m.readout.reads_input:
        start = next(iter(parts.values())).stop
        parts["U_x x_t"] = slice(start, start + m.output_size)
    return parts
