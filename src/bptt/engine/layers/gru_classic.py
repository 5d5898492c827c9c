"""The original gated recurrent unit (Cho et al. 2014; Keras 2 / TF1's GRU, ``reset_after=False``).

Equations, gates stacked in the order ``r, z, n`` (as ``gru.py``)::

    zx_t = V x_t + b                               (3H, input part)
    r_t = σ(zx_t[r] + W_r h_{t-1})
    u_t = σ(zx_t[z] + W_z h_{t-1})                 (update gate, Keras's z)
    q_t = r_t ⊙ h_{t-1}                            (the reset state)
    n_t = tanh(zx_t[n] + W_n q_t)
    h_t = (1 - u_t) ⊙ n_t + u_t ⊙ h_{t-1}

The reset gate acts *before* the product: ``W_n`` reads ``r ⊙ h_{t-1}``, where PyTorch's GRU
(``gru.py``) resets after it, ``r ⊙ (W_n h_{t-1} + b_hn)``. There is no ``b_hn``.

======  =========  ==============================================
symbol  shape      meaning
======  =========  ==============================================
V       (3H, D)    input → gates, blocks [r; z; n]
W       (3H, H)    state → gates, blocks [W_r; W_z; W_n]
b       (3H,)      gate bias (only if ``bias``)
h0      (B, H)     initial state
======  =========  ==============================================

With recurrent dropout ``h̃ = rmask ⊙ h_{t-1}`` replaces ``h_{t-1}`` in every product with ``W``
(``W_r h̃``, ``W_z h̃``, ``W_n (r ⊙ h̃)``, so ``q_t = r_t ⊙ h̃``); ``u_t ⊙ h_{t-1}`` reads the unmasked state.

BPTT through one step (:meth:`ClassicGRULayer.step_backward`, the reference), from the total ``dh_t``,
with ``a_n = zx_t[n] + W_n q``::

    dn = dh ⊙ (1 − u),  du = dh ⊙ (h_{t-1} − n)    h_t = (1 − u) ⊙ n + u ⊙ h_{t-1}
    da_n = dn ⊙ (1 − n²)                           n = tanh(a_n)
    dq = W_nᵀ da_n                                 a_n = zx_n + W_n q
    dr = dq ⊙ h̃                                    q = r ⊙ h̃
    d_in = [d_r, d_z, d_n]                         ∂J/∂ of every pre-activation, through σ:
         = [dr ⊙ r(1−r), du ⊙ u(1−u), da_n]
    dh_{t-1} = dh ⊙ u + rmask ⊙ (W_rᵀ d_r + W_zᵀ d_z + r ⊙ dq)
    ∂J/∂V += d_in x_tᵀ,  ∂J/∂b += d_in,  ∂J/∂[W_r; W_z] += [d_r; d_z] h̃ᵀ,  ∂J/∂W_n += d_n qᵀ

Every pre-activation is the sum of its input side and its recurrent side (``zx_n + W_n q``), so
:class:`~bptt.engine.layers.base.Adjoints`' ``d_rec`` is ``d_in`` itself (``same_sides``); what
differs from the other cells is the recurrent *input* of the n block, ``q_t`` instead of
``h_{t-1}``, so :meth:`ClassicGRULayer.backward` and :meth:`ClassicGRULayer.param_terms` form
``∂J/∂W`` by blocks.

To load Keras weights (``GRU(reset_after=False, recurrent_activation="sigmoid")``; Keras 2's default
σ was ``hard_sigmoid``): Keras stacks its gates ``z, r, h``, so with ``P = [H:2H, 0:H, 2H:3H]``
(swap the first two blocks), ``V = kernel.T[P]``, ``W = recurrent_kernel.T[P]``, ``b = bias[P]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..activations import sigmoid
from ..inputs import input_grad, input_term, is_tokens, project, project_backward, step_terms
from .base import (
    Adjoints,
    Layer,
    StepGrads,
    TokenKernel,
    freeze,
    pass_through,
    recurrent_input,
    segments,
    stacked_states,
    state_buffer,
)

__all__ = ["ClassicGRUCache", "ClassicGRULayer", "ClassicGRUStep", "ClassicGRUTokenKernel"]


@dataclass(frozen=True)
class ClassicGRUCache:
    """Forward values needed by :meth:`ClassicGRULayer.backward` (read-only).

    Attributes
    ----------
    x : ndarray, (T, B, D) float or (T, B) int
    h0 : ndarray, (B, H)
    G : ndarray, (T, B, 3H)
        Gate activations ``[r, u, n]``.
    Q : ndarray, (T, B, H)
        ``q_t = r_t ⊙ h̃_{t-1}``, the reset state ``W_n`` read (masked by ``rmask`` if given).
    H : ndarray, (T, B, H)
        Hidden states ``h_1 .. h_T``.
    H_prev : ndarray, (T, B, H)
        ``h_0 .. h_{T-1}``; ``h0``, ``H`` and ``H_prev`` are views of one ``(T+1, B, H)`` array.
    """

    x: np.ndarray
    h0: np.ndarray
    G: np.ndarray
    Q: np.ndarray
    H: np.ndarray
    H_prev: np.ndarray


class ClassicGRUStep(NamedTuple):
    """One step's values that :meth:`ClassicGRULayer.step_backward` reads, each (B, H)."""

    r: np.ndarray
    u: np.ndarray
    n: np.ndarray
    q: np.ndarray


@dataclass(frozen=True)
class ClassicGRULayer(Layer):
    """GRU layer with the reset gate before the product (``reset_after=False``); see the module docstring."""

    input_size: int
    hidden_size: int
    bias: bool = True
    suffix: str = ""
    kernels: str = "fast"
    kind: str = "gru"
    same_sides = True  # d_in = d_rec: a_n = zx_n + W_n q; only n's recurrent input (q, not h) differs

    @property
    def state_names(self) -> tuple[str, ...]:
        return ("h0" + self.suffix,)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        H, D, s = self.hidden_size, self.input_size, self.suffix
        shapes = {"V" + s: (3 * H, D), "W" + s: (3 * H, H)}
        if self.bias:
            shapes["b" + s] = (3 * H,)
        return shapes

    def state_at(self, cache, t):
        return (cache.H[t],)

    # -- the reference step ------------------------------------------------------------------------
    def step_forward(self, w, x_t, state, rmask=None):
        V, W, b = w
        Hs = self.hidden_size
        (h_prev,) = state
        h_rec = h_prev if rmask is None else h_prev * rmask  # recurrent dropout: h_{t-1} as W sees it
        zx = input_term(V, x_t)  # V x_t
        if b is not None:
            zx = zx + b  # ... + b
        zx_r, zx_u, zx_n = np.split(zx, 3, axis=1)
        W_r, W_u, W_n = W[:Hs], W[Hs : 2 * Hs], W[2 * Hs :]
        r = sigmoid(zx_r + h_rec @ W_r.T)  # reset gate
        u = sigmoid(zx_u + h_rec @ W_u.T)  # update gate
        q = r * h_rec  # reset state
        n = np.tanh(zx_n + q @ W_n.T)  # candidate
        h = (1.0 - u) * n + u * h_prev  # h_t
        return (h,), ClassicGRUStep(r, u, n, q)

    def step_backward(self, w, x_t, state_prev, kept, dstate, rmask=None):
        V, W, b = w
        Hs = self.hidden_size
        (h_prev,) = state_prev
        h_rec = h_prev if rmask is None else h_prev * rmask
        r, u, n, q = kept
        W_r, W_u, W_n = W[:Hs], W[Hs : 2 * Hs], W[2 * Hs :]
        (dh,) = dstate  # total ∂J/∂h_t
        dn = dh * (1.0 - u)  # h_t = (1 − u) ⊙ n + u ⊙ h_{t-1}
        du = dh * (h_prev - n)
        da_n = dn * (1.0 - n**2)  # n = tanh(a_n)
        dq = da_n @ W_n  # a_n = zx_n + W_n q
        dr = dq * h_rec  # q = r ⊙ h̃
        da_r = dr * r * (1.0 - r)  # through σ
        da_u = du * u * (1.0 - u)
        d_in = np.concatenate((da_r, da_u, da_n), axis=1)  # ∂J/∂ of the pre-activations, (B, 3H)
        dh_rec = da_r @ W_r + da_u @ W_u + dq * r  # into h̃: through W_r, W_z and through q
        dh_prev = dh * u + (dh_rec if rmask is None else dh_rec * rmask)  # into h_{t-1}: directly and via h̃
        dx = None if is_tokens(x_t) else d_in @ V  # into x_t
        dV = input_grad(d_in, x_t, self.input_size)  # this step's d_in x_tᵀ
        dW = np.concatenate((da_r.T @ h_rec, da_u.T @ h_rec, da_n.T @ q))  # [d_r h̃ᵀ; d_z h̃ᵀ; d_n qᵀ]
        db = d_in.sum(axis=0) if b is not None else None
        return StepGrads(dstate=(dh_prev,), dweights=(dV, dW, db), dx=dx, d_in=d_in, d_rec=d_in)

    def step_values(self, cache, t):
        Hs = self.hidden_size
        G = cache.G[t]
        return (cache.H_prev[t],), ClassicGRUStep(G[:, :Hs], G[:, Hs : 2 * Hs], G[:, 2 * Hs :], cache.Q[t])

    def cache_from_steps(self, x, state0, states, kept):
        S = stacked_states(state0[0], [h for (h,) in states])
        G = np.stack([np.concatenate((k.r, k.u, k.n), axis=1) for k in kept])
        Q = np.stack([k.q for k in kept])
        freeze(G, Q)
        return ClassicGRUCache(x=x, h0=S[0], G=G, Q=Q, H=S[1:], H_prev=S[:-1])

    # -- fast kernels --------------------------------------------------------------------------------
    def fast_forward(self, params, x, state0, *, pad=None, rmask=None):
        V, W, b = self.weights(params)
        Hs = self.hidden_size
        # σ(z) = (1 + tanh(z/2)) / 2 (as bptt.activations.sigmoid): halve the r and u pre-activations,
        # in the input projection and a scaled copy of W_r, W_z (exact: a power of two).
        scale = np.ones(3 * Hs, V.dtype)
        scale[: 2 * Hs] = 0.5
        # (T, B, 3H): input part of every gate (r, u halved), all steps at once
        G = project(x, V, bias=b, scale=scale)
        T, B, _ = G.shape
        W_ruT = (W[: 2 * Hs] * 0.5).T  # (H, 2H)
        W_nT = W[2 * Hs :].T  # (H, H)
        S = state_buffer(state0[0], T)  # h_0 .. h_T
        H = S[1:]
        Q = np.empty((T, B, Hs), G.dtype)
        for t0, t1, bt in segments(pad, T, B):  # steps t0 .. t1-1 run rows 0 .. bt-1; the rest is padding
            G_b, S_b, Q_b = G[:, :bt], S[:, :bt], Q[:, :bt]
            rec, tmp = np.empty((bt, 2 * Hs), G.dtype), np.empty((bt, Hs), G.dtype)
            rm, hm = (None, None) if rmask is None else (rmask[:bt], np.empty_like(tmp))
            h = S_b[t0]
            for t in range(t0, t1):
                z = G_b[t]
                h_rec = h if rm is None else np.multiply(h, rm, out=hm)  # recurrent dropout
                ru = z[:, : 2 * Hs]
                ru += np.matmul(h_rec, W_ruT, out=rec)  # ½ [W_r h̃, W_z h̃]: the first product
                np.tanh(ru, out=ru)
                ru += 1.0
                ru *= 0.5  # [r, u]
                r, u, n = z[:, :Hs], z[:, Hs : 2 * Hs], z[:, 2 * Hs :]
                q = np.multiply(r, h_rec, out=Q_b[t])  # reset state r ⊙ h̃
                n += np.matmul(q, W_nT, out=tmp)  # W_n q: the second product, after r
                np.tanh(n, out=n)
                np.subtract(1.0, u, out=tmp)
                tmp *= n
                h_t = np.multiply(u, h, out=S_b[t + 1])
                h_t += tmp  # h_t = (1 - u) n + u h_{t-1}
                h = h_t
            if bt < B:  # padding: the state stays, the steps keep nothing
                H[t0:t1, bt:] = S[t0, bt:]
                G[t0:t1, bt:] = Q[t0:t1, bt:] = 0.0
        cache = ClassicGRUCache(x=x, h0=S[0], G=G, Q=Q, H=H, H_prev=S[:-1])
        freeze(G, Q, S, H, cache.h0, cache.H_prev)  # the buffer too: no view can be made writeable again
        return H, (H[-1].copy(),), cache

    def fast_adjoints(
        self, params, cache: ClassicGRUCache, dH, dstate_T, *, overwrite_dH=False, keep=True, pad=None, rmask=None
    ) -> Adjoints:
        W = params["W" + self.suffix]
        Hs = self.hidden_size
        W_ru, W_n = W[: 2 * Hs], W[2 * Hs :]
        G, Q = cache.G, cache.Q
        T, B, _ = G.shape
        blocks = G.reshape(T, B, 3, Hs)
        R, U, N = blocks[:, :, 0], blocks[:, :, 1], blocks[:, :, 2]
        # Local factors that do not depend on the recurrence, for every step at once (built in place;
        # the r block serves as scratch until its own turn). u's and n's gradients are dh_t times
        # theirs; r's is dq_t = W_nᵀ d_n times its own.
        Mx = np.empty((T, B, 3, Hs), G.dtype)  # [r, u, n]; becomes d_in step by step
        Mr, Mu, Mn = Mx[:, :, 0], Mx[:, :, 1], Mx[:, :, 2]
        np.multiply(N, N, out=Mn)
        np.subtract(1.0, Mn, out=Mn)
        np.subtract(1.0, U, out=Mr)
        Mn *= Mr  # n: (1 - u)(1 - n²), through h = (1-u) n + u h_prev and tanh
        Mr *= U
        np.subtract(cache.H_prev, N, out=Mu)
        Mu *= Mr  # u: u(1 - u)(h_prev - n): chooses h_prev over n
        np.subtract(1.0, R, out=Mr)
        Mr *= Q  # r: (1 - r) ⊙ q = r(1 - r) ⊙ h̃, through q = r ⊙ h̃ and σ
        DH = np.empty((T, B, Hs), G.dtype) if keep else None  # total ∂J/∂h_t (dH is only read)
        dh_next = np.zeros((B, Hs), G.dtype) if dstate_T is None else dstate_T[0].copy()
        for t0, t1, bt in reversed(segments(pad, T, B)):  # steps t0 .. t1-1 ran rows 0 .. bt-1
            if bt < B:  # padding rows copied h_{t-1}: their gradient passes through, the steps add nothing
                pass_through(dh_next[bt:], dH[t0:t1, bt:], None if DH is None else DH[t0:t1, bt:])
                Mx[t0:t1, bt:] = 0.0
            Mx_b, dH_b, R_b, U_b, dhn = Mx[:, :bt], dH[:, :bt], R[:, :bt], U[:, :bt], dh_next[:bt]
            DH_b = None if DH is None else DH[:, :bt]
            dh_t, dq, back = (np.empty((bt, Hs), G.dtype) for _ in range(3))
            rm = None if rmask is None else rmask[:bt]
            for t in range(t1 - 1, t0 - 1, -1):
                dh = np.add(dH_b[t], dhn, out=dh_t if DH_b is None else DH_b[t])  # direct + from later steps
                dz = Mx_b[t]
                dz[:, 1:] *= dh[:, None, :]  # u and n, through h_t
                np.matmul(dz[:, 2], W_n, out=dq)  # ∂J/∂q, through W_n q
                dz[:, 0] *= dq  # r, through q = r ⊙ h̃
                np.matmul(dz[:, :2].reshape(bt, 2 * Hs), W_ru, out=back)  # into h̃ through W_r h̃ and W_z h̃ ...
                back += np.multiply(dq, R_b[t], out=dq)  # ... and through q = r ⊙ h̃
                if rm is not None:
                    back *= rm  # … through the recurrent dropout mask
                np.multiply(dh, U_b[t], out=dhn)
                dhn += back  # into h_{t-1}: directly and through h̃
        d_in = Mx.reshape(T, B, 3 * Hs)
        return Adjoints(d_in=d_in, d_rec=d_in, dh=DH, dstate0=(dh_next,))

    def backward(self, params, cache, dH, dstate_T, need_dx, *, overwrite_dH=False, keep=True, pad=None, rmask=None):
        """BPTT through the layer, as :meth:`Layer.backward`, with ``∂J/∂W`` by blocks (n reads ``q_t``)."""
        if self.kernels == "reference":
            return self.reference_backward(params, cache, dH, dstate_T, need_dx, keep, pad, rmask)
        adj = self.fast_adjoints(
            params, cache, dH, dstate_T, overwrite_dH=overwrite_dH, keep=keep, pad=pad, rmask=rmask
        )
        V, W, _ = self.weights(params)
        Hs = self.hidden_size
        T, B, _ = adj.d_in.shape
        dV, dx = project_backward(adj.d_in, cache.x, V, need_dx and not is_tokens(cache.x))
        db = adj.d_in.sum(axis=(0, 1)) if self.bias else None
        d = adj.d_in.reshape(T * B, 3 * Hs)
        dW = np.empty(W.shape, W.dtype)
        H_rec = recurrent_input(cache, rmask).reshape(T * B, Hs)
        np.matmul(d[:, : 2 * Hs].T, H_rec, out=dW[: 2 * Hs])  # Σ_t [d_r; d_z]ᵀ h̃_{t-1}
        np.matmul(d[:, 2 * Hs :].T, cache.Q.reshape(T * B, Hs), out=dW[2 * Hs :])  # Σ_t d_nᵀ q_t
        return self.named((dV, dW, db)), dx, adj.dstate0, adj if keep else None

    def param_terms(self, params, cache, adj, wanted=None, rmask=None):
        """Per-step terms of the sums over time, as :meth:`Layer.param_terms`, with ``W``'s by blocks."""
        if adj.terms is not None:
            return self.named(adj.terms)
        in_name, rec_name = self.weight_names
        Hs = self.hidden_size
        T, _, G = adj.d_in.shape
        d = adj.d_in
        if wanted is None or rec_name in wanted:
            dW = np.concatenate(
                (
                    step_terms(d[..., : 2 * Hs], recurrent_input(cache, rmask), Hs),  # [d_r; d_z] h̃ᵀ
                    step_terms(d[..., 2 * Hs :], cache.Q, Hs),  # d_n qᵀ
                ),
                axis=1,
            )
        else:
            dW = np.broadcast_to(np.zeros((), d.dtype), (T, G, Hs))
        if wanted is None or in_name in wanted:
            dV = step_terms(d, cache.x, self.input_size)
        else:
            dV = np.broadcast_to(np.zeros((), d.dtype), (T, G, self.input_size))
        return self.named((dV, dW, d.sum(axis=1) if self.bias else None))

    def token_kernel(self, params, dtype):
        return ClassicGRUTokenKernel(self, params, dtype)


class ClassicGRUTokenKernel(TokenKernel):
    """``r, u = σ(…)``, ``n_t = tanh(V_n x_t + b_n + W_n (r ⊙ h_{t-1}))``, ``h_t = n_t + u ⊙ (h_{t-1} − n_t)``.

    Two products per step: ``[W_r; W_z] h̃`` (``RT``, rows halved for σ), then ``W_n`` on the reset
    state, which needs ``r`` first. The halved σ leaves ``2r`` in the buffer; ``W_nT`` is halved to
    match: ``½ W_n (2r ⊙ h) = W_n (r ⊙ h)``, exactly.

    ======  ============  ===========================================================
    symbol  shape         meaning
    ======  ============  ===========================================================
    RT      (H+1, 2H)     ``½ [W_r; W_z | 0]ᵀ`` on ``h̃ = [h; 1]``
    W_nT    (H, H)        ``½ W_nᵀ``
    zh      (3H,)         the recurrent terms ``[½ W_r h, ½ W_z h, W_n q]``
    ======  ============  ===========================================================
    """

    def __init__(self, layer: ClassicGRULayer, params, dtype) -> None:
        V, W, b = layer.weights(params)
        H = layer.hidden_size
        scale = np.full(3 * H, 0.5, dtype)
        scale[2 * H :] = 1.0
        super().__init__(V, W[: 2 * H], b, None, scale, np.full(2 * H, 0.5, dtype), dtype)
        self.zh = np.empty(3 * H, dtype)  # all three gates: the Stepper sizes an upper layer's input by it
        self.zh_ru, self.zh_n = self.zh[: 2 * H], self.zh[2 * H :]
        self.W_nT = np.ascontiguousarray(W[2 * H :].T * 0.5, dtype=dtype)
        self.ru = np.empty(2 * H, dtype)
        self.r, self.u = self.ru[:H], self.ru[H:]
        self.q = np.empty(H, dtype)
        self.d = np.empty(H, dtype)
        self.H = H

    def run(self, zx):
        H = self.H
        np.dot(self.h1, self.RT, out=self.zh_ru)  # ½ [W_r h_{t-1}; W_z h_{t-1}]
        ru = np.add(self.zh_ru, zx[: 2 * H], out=self.ru)
        np.tanh(ru, out=ru)
        ru += 1.0  # [2r; 2u]
        q = np.multiply(self.r, self.h, out=self.q)  # 2 r ⊙ h_{t-1}
        n = np.dot(q, self.W_nT, out=self.zh_n)  # W_n (r ⊙ h_{t-1})
        n += zx[2 * H :]
        np.tanh(n, out=n)  # n_t
        d = np.subtract(self.h, n, out=self.d)
        d *= self.u
        d *= 0.5  # u ⊙ (h_{t-1} − n_t)
        np.add(n, d, out=self.h)  # h_t = (1 − u) n_t + u h_{t-1}
