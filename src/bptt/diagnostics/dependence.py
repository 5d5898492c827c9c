"""Which parameters a gradient depends on: the exam's RNN-B question (f), for any network.

The exam asks whether ``∂Loss_t/∂x_t`` depends on ``W_ox``, on all of its elements, on
``W_ssx``, on all of its elements. The answer hangs on which paths carry the gradient and
on the activations and the loss (see ``shared/seeds/README.md`` and
``examples/seed_questions.py``, where it is derived by hand for the linear network).
:func:`gradient_dependence` answers it numerically for any network, any gradient ``G``
and any parameter θ::

    G              = ∂Loss_t/∂(of)        (or ∂J/∂(of) when step is None)
    ∂G/∂θ_j        ≈ (G(θ + ε e_j) − G(θ − ε e_j)) / 2ε        one column of the mixed second derivative
    magnitude_j    = ‖∂G/∂θ_j‖₂           (over all elements of G)
    mask_j         = magnitude_j > rtol · max(1, ‖G‖₂)

``G`` is the engine's exact BPTT gradient at each perturbed point, so the only
approximation is the central difference in the one element θ_j: exact up to rounding
whenever ``G`` is at most quadratic in θ_j, with an ``ε²/6 ∂³G/∂θ_j³`` error otherwise.
(The linear exam network with squared error, ``G = (W_o W_sx + U_x)ᵀ (p_t − y_t)``, is
quadratic in every element of ``W_ox`` and of the input block ``W_sx``, and of degree
``t − 1`` in the state block ``W_ss`` when ``s_0 = 0``, ``t`` otherwise.) An
element that does not enter ``G`` leaves it unchanged (or changed by rounding alone, about
``1e-16 ‖G‖ / ε``), far below the threshold ``rtol · scale``; the scale ``max(1, ‖G‖)`` is
relative for large gradients and absolute for small ones, so a vanishing ``G`` does not
turn rounding into "dependence".

What the mask means. It reports a *non-zero derivative at this point*: ``True`` means G
moves to first order when θ_j moves. A dependence whose first derivative vanishes here
(a dead ReLU unit, an even function of θ_j at θ_j = 0) or that is smaller than ``rtol``
relative (a vanished gradient) reads as ``False``; generic (random) weights and inputs
avoid the first, as in the exam's hand derivation.

Losses. ``Loss_t = (1/B) Σ_b w_tb Loss(y_tb, ŷ_tb)``, the library's ``J`` restricted to
step ``t`` (``loss_weights`` one-hot on t); ``J = Σ_t Loss_t``. Steps are 0-based as
everywhere in bptt: the exam's ``t = 1`` is ``step=0``.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from .. import _checks
from ..engine.layers.base import freeze
from ..engine.network import RNN
from .problem import float64_problem

__all__ = ["Dependence", "gradient_dependence"]


@dataclass(frozen=True)
class Dependence:
    """Whether each element of ``wrt`` moves the gradient ``G = ∂Loss/∂(of)``.

    ============  ============  ==========================================================
    symbol        shape         meaning
    ============  ============  ==========================================================
    G             see below     ``∂Loss_step/∂(of)``, or ``∂J/∂(of)`` when ``step`` is None
    θ             wrt's shape   the parameter (or initial state) ``wrt``
    ∂G/∂θ_j       G's shape     how G moves with element j of θ (central difference of G)
    ============  ============  ==========================================================

    ``G`` has the shape of ``of``: a parameter's shape, ``(B, H)`` for an initial state,
    ``(B, D)`` for ``of="x"`` with a step (``∂Loss_t/∂x_t``: the input at the same step), or
    ``(T, B, D)`` for ``of="x"`` without one (``∂J/∂x``).

    Attributes
    ----------
    mask : ndarray of bool, wrt's shape
        ``magnitude > rtol · scale``: G depends on that element.
    magnitude : ndarray, wrt's shape
        ``‖∂G/∂θ_j‖₂``.
    of : str
        ``"x"``, a parameter name or an initial-state name.
    wrt : str
        A parameter name or an initial-state name.
    step : int or None
        The step (0-based) whose loss is differentiated; None for ``J``.
    statements : dict of str to bool
        The exam's statements for ``wrt``: ``"depends on <wrt>"`` (``mask.any()``) and
        ``"depends on all elements of <wrt>"`` (``mask.all()``).
    blocks : dict of str to bool
        For the concat notation's fused weights (``W_ssx = [W_ss | W_sx]``, ``W_ox =
        [W_o | U_x]``): whether G depends on the state block ``"<wrt>[:, :H]"`` and on the
        input block ``"<wrt>[:, H:]"``; empty for other ``wrt``.
    gradient : ndarray
        G at the unperturbed point.
    scale : float
        ``max(1, ‖G‖₂)``.
    eps, rtol : float
        The perturbation and the threshold used.
    """

    mask: np.ndarray
    magnitude: np.ndarray
    of: str
    wrt: str
    step: int | None
    statements: dict[str, bool]
    blocks: dict[str, bool]
    gradient: np.ndarray
    scale: float
    eps: float
    rtol: float


def gradient_dependence(
    model: RNN,
    x: object,
    y: object,
    *,
    of: str = "x",
    wrt: str,
    step: int | None = None,
    h0: object = None,
    loss_weights: object = None,
    lengths: object = None,
    eps: float = 1e-4,
    rtol: float = 1e-8,
) -> Dependence:
    """Does the gradient ``∂Loss_step/∂(of)`` depend on each element of ``wrt``?

    Cost: two full forward and backward passes per element of ``wrt`` (parameters are
    shared by the whole batch, so the elements cannot be batched): seconds for the exam's
    2×4 weights, minutes for a 256-unit layer's recurrent weight.

    Parameters
    ----------
    model : RNN
        Any bptt network (left unchanged; a float64 copy is perturbed).
    x : array, (T, B, D) float or (T, B) int token ids
        Inputs, as for :meth:`RNN.loss_and_grad`.
    y : array, (T, B) int for softmax outputs; (T, B, O) float otherwise
        Targets.
    of : str
        What G is the gradient of: ``"x"`` (float inputs only; ``∂Loss_t/∂x_t`` at the same
        step, or the whole ``∂J/∂x`` when ``step`` is None), a parameter name, or an
        initial-state name (``"h0"``, ``"c0"``, suffixed ``_l{k}`` in a stack).
    wrt : str
        The parameter (or initial state) whose elements are perturbed one at a time.
    step : int or None
        0-based step t whose loss ``Loss_t`` is differentiated; None for ``J = Σ_t Loss_t``.
    h0 : None, array, tuple or dict keyed by state name
        Initial state (zeros if ``None``).
    loss_weights : array (T, B), optional
        ``w_tb``, as for :meth:`RNN.loss_and_grad`.
    lengths : int array (B,), optional
        Real steps of each sequence, as for :meth:`RNN.loss_and_grad` (no loss at padding).
    eps : float
        The central perturbation ε of each element (absolute).
    rtol : float
        Threshold of the mask, relative to ``max(1, ‖G‖)``.

    Returns
    -------
    Dependence
    """
    where = "gradient_dependence"
    eps = _checks.real(eps, "eps", where)
    rtol = _checks.real(rtol, "rtol", where, strict=False)
    problem = float64_problem(model, x, h0, where, y=y, loss_weights=loss_weights, targets=True, lengths=lengths)
    T, B = problem.T, problem.B
    params, states = list(model.param_shapes), list(model.state_shapes)
    if not isinstance(of, str) or of not in ("x", *params, *states):
        raise ValueError(f"{where}: of must be 'x', a parameter {params} or an initial state {states}, got {of!r}")
    if of == "x" and not problem.dense:
        raise ValueError(
            f"{where}: of='x' needs float inputs (T, B, {model.input_size}); token ids have no gradient "
            f"(use input_sensitivity for the input terms they select, or of=<an input weight>)"
        )
    if not isinstance(wrt, str) or wrt not in (*params, *states):
        raise ValueError(f"{where}: wrt must be a parameter {params} or an initial state {states}, got {wrt!r}")
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, numbers.Integral):
            raise TypeError(f"{where}: step must be an integer or None, got {step!r}")
        if not 0 <= step < T:
            raise ValueError(f"{where}: step must be in [0, {T}) (0-based) for x with T = {T}, got {step}")
        step = int(step)

    m, x64, y64, h = problem.model, problem.x, problem.y, problem.h0  # private float64 copies
    weights = np.ones((T, B)) if problem.w is None else problem.w
    if step is not None:
        only = np.zeros(T)
        only[step] = 1.0
        weights = weights * only[:, None]  # Loss_t: J with every other step's weight set to 0

    def gradient() -> np.ndarray:
        fwd = m.forward(x64, h, lengths=problem.lengths)
        d_logits = m.output.d_logits(fwd.outputs, y64, weights)  # ∂J/∂z2_t (weights are 0 at padding)
        G = m.backward(fwd, d_logits)[of]
        return G[step] if of == "x" and step is not None else G

    G = gradient()
    theta = m.params[wrt] if wrt in m.params else h[wrt]  # perturbed in place, in the copy
    magnitude = np.empty(theta.shape)
    for j in np.ndindex(theta.shape):
        original = theta[j]
        theta[j] = original + eps
        G_plus = gradient()
        theta[j] = original - eps
        G_minus = gradient()
        theta[j] = original  # restored exactly before the next element moves
        magnitude[j] = np.linalg.norm((G_plus - G_minus) / (2.0 * eps))  # ‖∂G/∂θ_j‖
    scale = max(1.0, float(np.linalg.norm(G)))
    mask = magnitude > rtol * scale
    statements = {f"depends on {wrt}": bool(mask.any()), f"depends on all elements of {wrt}": bool(mask.all())}
    freeze(mask, magnitude, G)
    return Dependence(
        mask=mask,
        magnitude=magnitude,
        of=of,
        wrt=wrt,
        step=step,
        statements=statements,
        blocks=_blocks(m, wrt, mask),
        gradient=G,
        scale=scale,
        eps=eps,
        rtol=rtol,
    )


def _blocks(m: RNN, wrt: str, mask: np.ndarray) -> dict[str, bool]:
    """``mask.any()`` over the state and input blocks of a fused concat weight (else empty)."""
    H = None
    for layer in m.layers:
        if layer.kind == "elman" and layer.notation == "concat" and layer.names[0] == wrt:
            H = layer.hidden_size  # W_ssx = [W_ss | W_sx]
    if m.notation == "concat" and m.readout.reads_input and wrt == "W_ox":
        H = m.readout.hidden_size  # W_ox = [W_o | U_x]
    if H is None:
        return {}
    return {f"{wrt}[:, :{H}]": bool(mask[:, :H].any()), f"{wrt}[:, {H}:]": bool(mask[:, H:].any())}
