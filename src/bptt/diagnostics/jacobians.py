"""The Jacobian products of BPTT, step by step: why gradients vanish or explode.

The quiz's gradient of the hidden bias is a sum over earlier steps ``k`` of products
of per-step Jacobians::

    ∂L/∂b_h = Σ_t (∂L/∂ŷ_t)(∂ŷ_t/∂h_t) Σ_{k≤t} (Π_{i=k+1..t} ∂h_i/∂h_{i-1}) ∂h_k/∂b_h

:func:`jacobian_map` computes those products for one input sequence, for any network
(Elman, LSTM, GRU, stacks). With the network's full state ``s_t`` — every state
variable of every layer, concatenated in ``model.state_shapes`` order (``h`` for an
Elman or GRU layer, ``h`` then ``c`` for an LSTM layer, layer 0 first) — it reports::

    J_t      = ∂s_t/∂s_{t-1}                                   t = 1 .. T
    N[t, k]  = ‖∂s_t/∂s_k‖ = ‖J_t J_{t-1} ⋯ J_{k+1}‖            0 ≤ k ≤ t ≤ T

(for the lecture's Elman layer ``J_t = diag(f_h'(a_t)) W``; with ``f_h = identity``,
``N[t, k] = ‖W^{t-k}‖``). A row of ``N`` that decays towards the left is a vanishing
gradient: what happened at step ``k`` barely moves ``s_t``.

How ``J_t`` is computed. Nothing is re-derived per cell: the engine's own backward
pass gives vector-Jacobian products. For step ``t``, the forward pass runs the single
input ``x_t`` over a batch of ``S`` copies of ``s_{t-1}``, and the backward pass seeds
copy ``i`` with ``e_i`` at the final state; row ``i`` of the initial-state gradient
is then ``e_iᵀ J_t``. One forward and one backward give the whole ``(S, S)`` matrix,
exact to rounding (all in float64).

How ``N`` is computed. When ``S ≤ exact_up_to`` the products are formed explicitly,
``∂s_t/∂s_k = J_t ∂s_{t-1}/∂s_k``, and their norms taken exactly. For larger ``S``
nothing ``(S, S)`` is built: ``‖P‖₂`` of each product ``P = J_t ⋯ J_{k+1}`` is
estimated from products with vectors only,

* ``Pᵀu``: one forward over ``x_{k+1..t}`` from ``s_k`` and one backward seeded with
  ``u`` at ``s_t`` (exact);
* ``P v``: ``J_i v ≈ (F_i(s_{i-1} + εv) − F_i(s_{i-1} − εv)) / 2ε`` for each step
  ``i = k+1 .. t`` (``F_i`` the one-step map, ``v`` renormalised after each step,
  ``ε = 1e-6·(1 + max|s_{i-1}|)``): about 1e-10 relative per step, worse only when a
  ReLU pre-activation lies within ``ε`` of its kink.

These drive a Lanczos iteration on ``PᵀP`` — power iteration that keeps every vector
it has made and takes the best combination (Rayleigh–Ritz), so that it converges in
tens of steps even when the two largest singular values are close, where plain power
iteration (error ``≈ (σ₂/σ₁)^{4n}`` after ``n`` steps) needs hundreds. It stops when
no Ritz value changes by more than 1e-10 relative, after ``iterations`` steps, or
after ``S`` steps (the whole space: exact). The reported value is ``‖Pᵀu‖`` with ``u``
the unit vector along ``P v`` for the final Ritz vector ``v``: never above ``‖P‖₂``
(an estimate from below), with the finite differences' error entering only to second
order. On the test models (S up to 32) it agrees with the exact norms to 1e-11 or better.
Windows of equal length ``t − k`` run side by side along the batch axis; the cost is
about ``T³/6`` single-step passes, forward and backward, per Lanczos step.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .. import _checks
from ..engine.layers.base import freeze
from ..engine.network import RNN
from .directions import DIRECTIONS, DirectionNet
from .health import GATE_NAMES as GATE_NAMES  # names kept where they were before health.py
from .health import SATURATION as SATURATION
from .health import recurrent_weights, saturation
from .problem import float64_problem

__all__ = ["JacobianMap", "jacobian_map"]

NORMS = ("spectral", "fro")
FD_EPS = 1e-6  # relative step of the finite-difference Jacobian-vector products
RITZ_TOL = 1e-10  # Lanczos stops when no Ritz value changes by more than this, relatively
MAX_ELEMENTS = 1 << 22  # float64 numbers per (rows, S) block in one batched pass (32 MB)


@dataclass(frozen=True)
class JacobianMap:
    """How the state at each step depends on every earlier state, for one sequence.

    =========  ==========  ===============================================================
    symbol     shape       meaning
    =========  ==========  ===============================================================
    s_t        (S,)        full state at step t: every layer's ``h`` (and ``c``), bottom first
    J_t        (S, S)      ``∂s_t/∂s_{t-1}``, t = 1 .. T (``jacobians[t-1]``)
    N[t, k]    scalar      ``‖∂s_t/∂s_k‖ = ‖J_t ⋯ J_{k+1}‖``, 0 ≤ k ≤ t ≤ T (``norms[t, k]``)
    W          (H, H)      an Elman layer's recurrent weight (``(G·H, H)`` for LSTM/GRU)
    ρ(W)       scalar      spectral radius, largest ``|eigenvalue|``
    =========  ==========  ===============================================================

    Attributes
    ----------
    norms : ndarray, (T+1, T+1)
        ``N[t, k]`` as in the table, in float64.
    norm : str
        ``"spectral"`` (largest singular value) or ``"fro"`` (Frobenius).
    exact : bool
        True when ``norms`` come from explicit products (``S ≤ exact_up_to``); False when
        they are Lanczos estimates from below (see the module docstring for their accuracy).
    jacobians : ndarray (T, S, S) or None
        The per-step Jacobians, when ``exact``.
    states : ndarray, (T+1, S)
        The full state along the sequence.
    state_names : tuple of str
        The state variables making up ``s_t``, in order (``"h0"``, ``"c0"``, suffixed
        ``_l{k}`` in a stack: the names of the initial states they continue).
    state_slices : dict of str to slice
        Where each state variable sits in ``s_t``.
    recurrent_weights : tuple of str
        Per layer, the matrix the next two fields describe: ``W`` / ``W_ss`` of an
        Elman layer, the state block ``W_ssx[:, :H]`` in concat notation, ``W`` (all
        gates) of an LSTM or GRU layer.
    recurrent_spectral_norm : dict of int to float
        Layer index (0 = bottom) → largest singular value of that matrix; for LSTM/GRU
        the whole ``(G·H, H)`` stack of gate blocks.
    recurrent_spectral_radius : dict of int to float
        Layer index → spectral radius (largest ``|eigenvalue|``): of ``W`` for an Elman
        layer; for LSTM/GRU the largest over the square ``(H, H)`` gate blocks (each
        gate's own recurrence), listed per gate in ``gate_spectral_radius``.
    gate_spectral_radius : dict of int to dict of str to float
        Gated layers only: layer index → ``{gate: ρ(W_gate)}`` with gates ``i, f, g, o``
        (LSTM) or ``r, z, n`` (GRU).
    saturation : ndarray, (T, L)
        Per step and layer, the fraction of saturated units. Elman: ``|h| > 0.99`` (tanh),
        ``h < 0.01`` or ``h > 0.99`` (sigmoid), ``h = 0`` (relu, inactive units), never
        (identity). LSTM/GRU: fraction of all gate activations saturated, σ gates outside
        ``[0.01, 0.99]`` and tanh candidates (``g``, ``n``) with ``|·| > 0.99``.
    batch_index : int
        Which sequence of the batch was analysed.
    direction : str
        ``"forward"``, or ``"reverse"`` for the reverse layers of a bidirectional network. In a
        bidirectional network ``s_t`` is one direction's states (layers of that direction only,
        the per-layer fields likewise), with the other direction's outputs held as computed
        (``bptt.diagnostics.directions``); a reverse map's step ``t`` is that direction's
        ``t``-th step, which reads the sequence at step ``length − t``.
    """

    norms: np.ndarray
    norm: str
    exact: bool
    jacobians: np.ndarray | None
    states: np.ndarray
    state_names: tuple[str, ...]
    state_slices: dict[str, slice]
    recurrent_weights: tuple[str, ...]
    recurrent_spectral_norm: dict[int, float]
    recurrent_spectral_radius: dict[int, float]
    gate_spectral_radius: dict[int, dict[str, float]]
    saturation: np.ndarray
    batch_index: int
    direction: str = "forward"


def jacobian_map(
    model: RNN,
    x: object,
    h0: object = None,
    *,
    lengths: object = None,
    batch_index: int = 0,
    norm: str = "spectral",
    exact_up_to: int = 256,
    iterations: int = 50,
    seed: int | np.random.Generator | None = 0,
    direction: str = "forward",
) -> JacobianMap:
    """Per-step Jacobians ``J_t = ∂s_t/∂s_{t-1}`` and the norms of all their products.

    Parameters
    ----------
    model : RNN
        Any bptt network (left unchanged; a float64 copy is analysed).
    x : array, (T, B, D) float or (T, B) int token ids
        Inputs, as for :meth:`RNN.forward` (in the model's dtype).
    h0 : None, array, tuple or dict keyed by state name
        Initial state, as for :meth:`RNN.forward` (zeros if ``None``).
    lengths : int array (B,), optional
        Real steps of each sequence; the map covers the chosen sequence's real steps only.
    batch_index : int
        The sequence of the batch to analyse, in ``[0, B)``.
    norm : str
        ``"spectral"`` (largest singular value) or ``"fro"`` (Frobenius; exact path only).
    exact_up_to : int
        Largest state size ``S`` for which Jacobians are built explicitly and norms are
        exact; above it the spectral norms are estimated (module docstring). 0 always
        estimates.
    iterations : int
        Most Lanczos steps per product on the estimate path (each one Jacobian-vector and
        one vector-Jacobian product).
    seed : int, numpy.random.Generator or None
        Start vectors of the Lanczos iterations.
    direction : str
        A bidirectional network's direction to map, ``"forward"`` or ``"reverse"`` (see
        :class:`JacobianMap`); the other direction's outputs are held as computed.

    Returns
    -------
    JacobianMap
    """
    where = "jacobian_map"
    if not isinstance(norm, str) or norm not in NORMS:
        raise ValueError(f"{where}: norm must be one of {list(NORMS)}, got {norm!r}")
    if isinstance(exact_up_to, bool) or not isinstance(exact_up_to, numbers.Integral):
        raise TypeError(f"{where}: exact_up_to must be a non-negative integer, got {exact_up_to!r}")
    if exact_up_to < 0:
        raise ValueError(f"{where}: exact_up_to must be a non-negative integer, got {exact_up_to!r}")
    iterations = _checks.positive_int(iterations, "iterations", where)
    rng = _checks.generator(seed, where)
    if not isinstance(direction, str) or direction not in DIRECTIONS:
        raise ValueError(f"{where}: direction must be one of {list(DIRECTIONS)}, got {direction!r}")
    problem = float64_problem(model, x, h0, where, lengths=lengths)  # validated in the model's dtype
    if direction == "reverse" and not model.bidirectional:
        raise ValueError(f"{where}: direction='reverse' needs a bidirectional network; this one runs forward only")
    b = int(_checks.batch_index(batch_index, problem.B, where))

    m = problem.model
    # The chosen sequence alone, in float64: x1 (T, 1, D) or (T, 1).
    x1 = problem.x[: None if problem.lengths is None else int(problem.lengths[b]), b : b + 1]
    h0_b = {name: s[b : b + 1] for name, s in problem.h0.items()}
    if m.bidirectional:  # one direction, the other's outputs held as they are (directions.py)
        net = DirectionNet(m, x1, h0_b, direction)
        steps, layers = net.inputs, net.indices
    else:
        net, steps, layers = m, x1, tuple(range(len(m.layers)))
    names = tuple(net.state_shapes)
    slices, S = _slices(net)
    exact = S <= exact_up_to
    if norm == "fro" and not exact:
        raise ValueError(
            f"{where}: norm='fro' needs explicit Jacobians, but S = {S} > exact_up_to = {exact_up_to}; "
            f"raise exact_up_to or use norm='spectral'"
        )
    s0 = _join({name: h0_b[name] for name in names}, slices)  # (1, S)
    fwd = net.forward(steps, _split(s0, slices))
    T = x1.shape[0]
    states = np.concatenate([s0, *(_join(net.state_at(fwd, t), slices) for t in range(T))])  # (T+1, S)

    if exact:
        jacobians = _step_jacobians(net, steps, states, slices)
        norms = _exact_norms(jacobians, norm)
        freeze(jacobians)
    else:
        jacobians = None
        norms = _estimated_norms(net, steps, states, slices, rng, iterations)
    W_names, W_norm, W_radius, gate_radius = recurrent_weights(m)
    saturated = saturation(m, m.forward(x1, h0_b) if net is not m else fwd)[:, layers]  # (T, L), this sequence
    renumber = dict(zip(layers, range(len(layers)), strict=True))  # positions in m.layers → in the map
    W_names = tuple(W_names[j] for j in layers)
    W_norm, W_radius, gate_radius = (
        {renumber[j]: v for j, v in d.items() if j in renumber} for d in (W_norm, W_radius, gate_radius)
    )
    freeze(norms, states, saturated)
    return JacobianMap(
        norms=norms,
        norm=norm,
        exact=exact,
        jacobians=jacobians,
        states=states,
        state_names=names,
        state_slices=slices,
        recurrent_weights=W_names,
        recurrent_spectral_norm=W_norm,
        recurrent_spectral_radius=W_radius,
        gate_spectral_radius=gate_radius,
        saturation=saturated,
        batch_index=b,
        direction=direction,
    )


# -- the full state s_t as one vector ------------------------------------------------------------
def _slices(model: RNN) -> tuple[dict[str, slice], int]:
    """Where each state variable sits in ``s_t``, and the size ``S`` of ``s_t``."""
    slices, start = {}, 0
    for name, (size,) in model.state_shapes.items():
        slices[name] = slice(start, start + size)
        start += size
    return slices, start


def _split(s: np.ndarray, slices: Mapping[str, slice]) -> dict[str, np.ndarray]:
    """``(B, S)`` rows of full states → the per-variable dict the engine takes."""
    return {name: s[:, sl] for name, sl in slices.items()}


def _join(parts: Mapping[str, np.ndarray], slices: Mapping[str, slice]) -> np.ndarray:
    """Per-variable ``(B, H_k)`` arrays (states or their gradients) → ``(B, S)``."""
    return np.concatenate([parts[name] for name in slices], axis=1)


# -- exact: one forward and one backward per step give J_t -----------------------------------------
def _step_jacobians(m: RNN, x1: np.ndarray, states: np.ndarray, slices: Mapping[str, slice]) -> np.ndarray:
    """``J_t`` for t = 1..T, ``(T, S, S)``, several steps per batched pass."""
    T, S = x1.shape[0], states.shape[1]
    J = np.empty((T, S, S))
    eye = np.eye(S)
    per_pass = max(1, MAX_ELEMENTS // (S * S))
    for t0 in range(0, T, per_pass):
        t1 = min(T, t0 + per_pass)
        n = t1 - t0
        # S copies of step t's input and of s_{t-1}, for each t in t0+1 .. t1: batch of n·S rows.
        x_rep = np.repeat(x1[t0:t1, 0], S, axis=0)[None]  # (1, n·S, D) or (1, n·S)
        s_rep = np.repeat(states[t0:t1], S, axis=0)  # (n·S, S)
        fwd = m.forward(x_rep, _split(s_rep, slices))
        seeds = np.tile(eye, (n, 1))  # copy i of each step starts backward from e_i at s_t
        grads = m.backward(fwd, np.zeros_like(fwd.logits), d_state=_split(seeds, slices))
        J[t0:t1] = _join(grads, slices).reshape(n, S, S)  # row i = e_iᵀ J_t
    return J


def _exact_norms(J: np.ndarray, norm: str) -> np.ndarray:
    """``N[t, k] = ‖J_t ⋯ J_{k+1}‖`` from the explicit products."""
    T, S, _ = J.shape
    ord_ = 2 if norm == "spectral" else "fro"
    N = np.full((T + 1, T + 1), np.nan)
    eye = np.eye(S)
    P = eye[None]  # ∂s_t/∂s_k for k = 0..t, stacked: (t+1, S, S)
    N[0, 0] = np.linalg.norm(eye, ord_)
    for t in range(1, T + 1):
        P = np.concatenate((J[t - 1] @ P, eye[None]))  # ∂s_t/∂s_k = J_t ∂s_{t-1}/∂s_k
        N[t, : t + 1] = np.linalg.norm(P, ord_, axis=(1, 2))
    return N


# -- estimated: Lanczos on PᵀP with vector-Jacobian and Jacobian-vector products -------------------
def _unit(v: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    n = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, n, out=np.zeros_like(v), where=n > 0)


def _estimated_norms(
    m: RNN,
    x1: np.ndarray,
    states: np.ndarray,
    slices: Mapping[str, slice],
    rng: np.random.Generator,
    iterations: int,
) -> np.ndarray:
    """``N[t, k] ≈ ‖J_t ⋯ J_{k+1}‖₂`` without forming any ``(S, S)`` matrix."""
    T, S = x1.shape[0], states.shape[1]
    steps = min(iterations, S)  # S steps span the whole space: the Ritz value is then exact
    N = np.full((T + 1, T + 1), np.nan)
    N[np.arange(T + 1), np.arange(T + 1)] = 1.0
    for L in range(1, T + 1):  # windows of L steps: from s_k to s_{k+L}, k = 0 .. T-L
        per_pass = max(1, MAX_ELEMENTS // ((L + 2 * steps) * S))  # the window's caches and Q, AQ
        for k0 in range(0, T - L + 1, per_pass):
            ks = np.arange(k0, min(T - L + 1, k0 + per_pass))
            N[ks + L, ks] = _top_singular_value(m, x1, states, slices, ks, L, rng, steps)
    return N


def _top_singular_value(m, x1, states, slices, ks, L, rng, steps) -> np.ndarray:
    """``‖P_k‖₂`` for ``P_k = ∂s_{k+L}/∂s_k``, every ``k`` in ``ks`` side by side, by Lanczos on ``PᵀP``."""
    K, S = ks.size, states.shape[1]
    windows = ks[None, :] + np.arange(L)[:, None]  # (L, K): window k reads x_{k+1} .. x_{k+L}
    fwd = m.forward(x1[windows, 0], _split(states[ks], slices))  # reused by every Pᵀu below
    zeros = np.zeros_like(fwd.logits)

    def vjp(u: np.ndarray) -> np.ndarray:  # Pᵀu, exact: the engine's backward seeded with u at s_{k+L}
        return _join(m.backward(fwd, zeros, d_state=_split(u, slices)), slices)

    Q = np.zeros((K, steps, S))  # orthonormal basis of the Krylov space span{q, PᵀP q, ...}
    AQ = np.zeros((K, steps, S))  # PᵀP q_j
    q = _unit(rng.standard_normal((K, S)))
    lam = np.zeros(K)
    for j in range(steps):
        Q[:, j] = q
        u, size = _jvp(m, x1, states, slices, ks, L, q)  # P q = size · u
        AQ[:, j] = size[:, None] * vjp(u)
        # Rayleigh–Ritz: the largest eigenvalue of PᵀP restricted to the basis so far.
        Hm = np.einsum("kis,kjs->kij", Q[:, : j + 1], AQ[:, : j + 1])
        evals, evecs = np.linalg.eigh(0.5 * (Hm + Hm.transpose(0, 2, 1)))  # symmetric up to the differences
        converged = np.all(np.abs(evals[:, -1] - lam) <= RITZ_TOL * evals[:, -1])
        lam = evals[:, -1]
        if converged or j == steps - 1:
            break
        w = AQ[:, j]
        for _ in range(2):  # full reorthogonalisation, twice for rounding
            w = w - np.einsum("kjs,kj->ks", Q[:, : j + 1], np.einsum("kjs,ks->kj", Q[:, : j + 1], w))
        invariant = np.linalg.norm(w, axis=1) <= 1e-12 * np.linalg.norm(AQ[:, j], axis=1)
        q = _unit(w)
        q[invariant] = 0.0  # the basis already holds an invariant subspace: nothing left to add
    # The Ritz vector v, then ‖Pᵀu‖ with u along P v: never above ‖P‖₂, and the finite
    # differences' error in u enters only to second order (u is near a stationary point).
    v = _unit(np.einsum("kj,kjs->ks", evecs[:, :, -1], Q[:, : j + 1]))
    u, _ = _jvp(m, x1, states, slices, ks, L, v)
    return np.linalg.norm(vjp(u), axis=1)


def _jvp(m, x1, states, slices, ks, L, v) -> tuple[np.ndarray, np.ndarray]:
    """``J_{k+L} ⋯ J_{k+1} v`` by central differences one step at a time, as (unit rows, their lengths)."""
    K = ks.size
    size = np.ones(K)
    for i in range(L):
        base = states[ks + i]  # s_{k+i}, where step k+i+1 is linearised
        eps = FD_EPS * (1.0 + np.abs(base).max(axis=1, keepdims=True))  # (K, 1)
        x_t = x1[ks + i, 0]
        x_pm = np.concatenate((x_t, x_t))[None]  # (1, 2K, D) or (1, 2K): the same input for ±
        s_pm = np.concatenate((base + eps * v, base - eps * v))
        out = _join(m.forward(x_pm, _split(s_pm, slices)).state, slices)  # (2K, S)
        w = (out[:K] - out[K:]) / (2.0 * eps)  # ≈ J v, for the unit vector v
        size *= np.linalg.norm(w, axis=1)  # carried as a scalar so that v stays at the scale of ε
        v = _unit(w)
    return v, size
