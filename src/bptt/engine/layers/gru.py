"""Gated recurrent unit layer (Cho et al.; PyTorch's variant and gate order).

Equations, gates stacked in the order ``r, z, n`` (as ``torch.nn.GRU``)::

    zx_t = V x_t + b                               (3H, input part)
    zh_t = W h_{t-1}                               (3H, state part)
    r_t = σ(zx_t[r] + zh_t[r])
    u_t = σ(zx_t[z] + zh_t[z])                     (update gate, PyTorch's z)
    n_t = tanh(zx_t[n] + r_t ⊙ (zh_t[n] + b_hn))
    h_t = (1 - u_t) ⊙ n_t + u_t ⊙ h_{t-1}

======  =========  ==============================================
symbol  shape      meaning
======  =========  ==============================================
V       (3H, D)    input → gates, blocks [r; z; n]
W       (3H, H)    state → gates, same blocks
b       (3H,)      input-side gate bias (only if ``bias``)
b_hn    (H,)       bias of ``W h`` inside the reset product (only if ``bias``)
h0      (B, H)     initial state
======  =========  ==============================================

BPTT through one step (:meth:`GRULayer.step_backward`, the reference), from the total ``dh_t``,
with ``a_n = zx_t[n] + r ⊙ hn`` and ``hn = W_n h_{t-1} + b_hn``::

    dn = dh ⊙ (1 − u),  du = dh ⊙ (h_{t-1} − n)    h_t = (1 − u) ⊙ n + u ⊙ h_{t-1}
    da_n = dn ⊙ (1 − n²)                           n = tanh(a_n)
    dr = da_n ⊙ hn,  dhn = da_n ⊙ r                a_n = zx_n + r ⊙ hn
    d_in  = [dr ⊙ r(1−r), du ⊙ u(1−u), da_n]       ∂J/∂(V x_t + b), through σ
    d_rec = [dr ⊙ r(1−r), du ⊙ u(1−u), dhn]        ∂J/∂(W h_{t-1}): n's block sits inside r ⊙ (…)
    dh_{t-1} = dh ⊙ u + Wᵀ d_rec,  ∂J/∂V += d_in x_tᵀ,  ∂J/∂W += d_rec h_{t-1}ᵀ,
    ∂J/∂b += d_in,  ∂J/∂b_hn += dhn

To load PyTorch weights: ``V = weight_ih_l0``, ``W = weight_hh_l0``,
``b = bias_ih_l0 + [bias_hh_l0[:2H]; 0]``, ``b_hn = bias_hh_l0[2H:]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..activations import sigmoid
from ..inputs import input_grad, input_term, is_tokens, project
from .base import Adjoints, Layer, StepGrads, TokenKernel, freeze, pass_through, segments, stacked_states, state_buffer

__all__ = ["GRUCache", "GRULayer", "GRUStep", "GRUTokenKernel"]


@dataclass(frozen=True)
class GRUCache:
    """Forward values needed by :meth:`GRULayer.backward` (read-only).

    Attributes
    ----------
    x : ndarray, (T, B, D) float or (T, B) int
    h0 : ndarray, (B, H)
    G : ndarray, (T, B, 3H)
        Gate activations ``[r, u, n]``.
    Hn : ndarray, (T, B, H)
        ``W_n h_{t-1} + b_hn``, the term the reset gate multiplies.
    H : ndarray, (T, B, H)
        Hidden states ``h_1 .. h_T``.
    H_prev : ndarray, (T, B, H)
        ``h_0 .. h_{T-1}``; ``h0``, ``H`` and ``H_prev`` are views of one ``(T+1, B, H)`` array.
    """

    x: np.ndarray
    h0: np.ndarray
    G: np.ndarray
    Hn: np.ndarray
    H: np.ndarray
    H_prev: np.ndarray


class GRUStep(NamedTuple):
    """One step's values that :meth:`GRULayer.step_backward` reads, each (B, H)."""

    r: np.ndarray
    u: np.ndarray
    n: np.ndarray
    hn: np.ndarray


@dataclass(frozen=True)
class GRULayer(Layer):
    """GRU layer; see the module docstring for equations and shapes."""

    input_size: int
    hidden_size: int
    bias: bool = True
    suffix: str = ""
    kernels: str = "fast"
    kind: str = "gru"
    same_sides = False  # n's recurrent side sits inside r ⊙ (W_n h + b_hn)

    @property
    def state_names(self) -> tuple[str, ...]:
        return ("h0" + self.suffix,)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        H, D, s = self.hidden_size, self.input_size, self.suffix
        shapes = {"V" + s: (3 * H, D), "W" + s: (3 * H, H)}
        if self.bias:
            shapes["b" + s] = (3 * H,)
            shapes["b_hn" + s] = (H,)
        return shapes

    def weights(self, params):
        """``(V, W, b, b_hn)``."""
        s = self.suffix
        if self.bias:
            return params["V" + s], params["W" + s], params["b" + s], params["b_hn" + s]
        return params["V" + s], params["W" + s], None, None

    def named(self, grads):
        dV, dW, db, db_hn = grads
        s = self.suffix
        named = {"V" + s: dV, "W" + s: dW}
        if self.bias:
            named["b" + s] = db
            named["b_hn" + s] = db_hn
        return named

    def bias_grads(self, in_total, rec_total):
        if rec_total is None:
            return in_total, None
        return in_total, rec_total[..., 2 * self.hidden_size :]  # b_hn sits inside r ⊙ (W_n h + b_hn)

    def state_at(self, cache, t):
        return (cache.H[t],)

    # -- the reference step ------------------------------------------------------------------------
    def step_forward(self, w, x_t, state, rmask=None):
        V, W, b, b_hn = w
        (h_prev,) = state
        h_rec = h_prev if rmask is None else h_prev * rmask  # recurrent dropout: h_{t-1} as W sees it
        zx = input_term(V, x_t)  # V x_t
        if b is not None:
            zx = zx + b  # ... + b
        zh = h_rec @ W.T  # W h_{t-1}
        zx_r, zx_u, zx_n = np.split(zx, 3, axis=1)
        zh_r, zh_u, zh_n = np.split(zh, 3, axis=1)
        r = sigmoid(zx_r + zh_r)  # reset gate
        u = sigmoid(zx_u + zh_u)  # update gate
        hn = zh_n if b_hn is None else zh_n + b_hn  # W_n h_{t-1} + b_hn
        n = np.tanh(zx_n + r * hn)  # candidate
        h = (1.0 - u) * n + u * h_prev  # h_t
        return (h,), GRUStep(r, u, n, hn)

    def step_backward(self, w, x_t, state_prev, kept, dstate, rmask=None):
        V, W, b, b_hn = w
        (h_prev,) = state_prev
        h_rec = h_prev if rmask is None else h_prev * rmask
        r, u, n, hn = kept
        (dh,) = dstate  # total ∂J/∂h_t
        dn = dh * (1.0 - u)  # h_t = (1 − u) ⊙ n + u ⊙ h_{t-1}
        du = dh * (h_prev - n)
        da_n = dn * (1.0 - n**2)  # n = tanh(a_n)
        dr = da_n * hn  # a_n = zx_n + r ⊙ hn
        dhn = da_n * r
        da_r = dr * r * (1.0 - r)  # through σ
        da_u = du * u * (1.0 - u)
        d_in = np.concatenate((da_r, da_u, da_n), axis=1)  # ∂J/∂(V x_t + b), (B, 3H)
        d_rec = np.concatenate((da_r, da_u, dhn), axis=1)  # ∂J/∂(W h_{t-1}), (B, 3H)
        through_W = d_rec @ W if rmask is None else (d_rec @ W) * rmask  # through W h_{t-1} (and the mask)
        dh_prev = dh * u + through_W  # into h_{t-1}: directly and through W
        dx = None if is_tokens(x_t) else d_in @ V  # into x_t
        dV = input_grad(d_in, x_t, self.input_size)  # this step's d_in x_tᵀ
        dW = d_rec.T @ h_rec  # this step's d_rec h_{t-1}ᵀ
        db = d_in.sum(axis=0) if b is not None else None
        db_hn = dhn.sum(axis=0) if b_hn is not None else None
        return StepGrads(dstate=(dh_prev,), dweights=(dV, dW, db, db_hn), dx=dx, d_in=d_in, d_rec=d_rec)

    def step_values(self, cache, t):
        Hs = self.hidden_size
        G = cache.G[t]
        return (cache.H_prev[t],), GRUStep(G[:, :Hs], G[:, Hs : 2 * Hs], G[:, 2 * Hs :], cache.Hn[t])

    def cache_from_steps(self, x, state0, states, kept):
        S = stacked_states(state0[0], [h for (h,) in states])
        G = np.stack([np.concatenate((k.r, k.u, k.n), axis=1) for k in kept])
        Hn = np.stack([k.hn for k in kept])
        freeze(G, Hn)
        return GRUCache(x=x, h0=S[0], G=G, Hn=Hn, H=S[1:], H_prev=S[:-1])

    # -- fast kernels --------------------------------------------------------------------------------
    def fast_forward(self, params, x, state0, *, pad=None, rmask=None):
        V, W, b, b_hn = self.weights(params)
        Hs = self.hidden_size
        # σ(z) = (1 + tanh(z/2)) / 2 (as bptt.activations.sigmoid): halve the r and u pre-activations,
        # in the input projection and a scaled copy of W (exact: a power of two).
        scale = np.ones(3 * Hs, V.dtype)
        scale[: 2 * Hs] = 0.5
        # (T, B, 3H): input part of every gate (r, u halved), all steps at once
        G = project(x, V, bias=b, scale=scale)
        T, B, _ = G.shape
        WT = (W * scale[:, None]).T
        S = state_buffer(state0[0], T)  # h_0 .. h_T
        H = S[1:]
        Hn = np.empty((T, B, Hs), G.dtype)
        for t0, t1, bt in segments(pad, T, B):  # steps t0 .. t1-1 run rows 0 .. bt-1; the rest is padding
            G_b, S_b, Hn_b = G[:, :bt], S[:, :bt], Hn[:, :bt]
            rec, tmp = np.empty((bt, 3 * Hs), G.dtype), np.empty((bt, Hs), G.dtype)
            rm, hm = (None, None) if rmask is None else (rmask[:bt], np.empty_like(tmp))
            h = S_b[t0]
            for t in range(t0, t1):
                z = G_b[t]
                h_rec = h if rm is None else np.multiply(h, rm, out=hm)  # recurrent dropout
                np.matmul(h_rec, WT, out=rec)  # [W_r h, W_u h, W_n h]: the only product in the loop
                ru = z[:, : 2 * Hs]
                ru += rec[:, : 2 * Hs]
                np.tanh(ru, out=ru)
                ru += 1.0
                ru *= 0.5  # [r, u]
                r, u, n = z[:, :Hs], z[:, Hs : 2 * Hs], z[:, 2 * Hs :]
                hn = Hn_b[t]
                if b_hn is None:
                    hn[...] = rec[:, 2 * Hs :]
                else:
                    np.add(rec[:, 2 * Hs :], b_hn, out=hn)  # W_n h_{t-1} + b_hn
                n += np.multiply(r, hn, out=tmp)
                np.tanh(n, out=n)
                np.subtract(1.0, u, out=tmp)
                tmp *= n
                h_t = np.multiply(u, h, out=S_b[t + 1])
                h_t += tmp  # h_t = (1 - u) n + u h_{t-1}
                h = h_t
            if bt < B:  # padding: the state stays, the steps keep nothing
                H[t0:t1, bt:] = S[t0, bt:]
                G[t0:t1, bt:] = Hn[t0:t1, bt:] = 0.0
        cache = GRUCache(x=x, h0=S[0], G=G, Hn=Hn, H=H, H_prev=S[:-1])
        freeze(G, Hn, S, H, cache.h0, cache.H_prev)  # the buffer too: no view can be made writeable again
        return H, (H[-1].copy(),), cache

    def fast_adjoints(
        self, params, cache: GRUCache, dH, dstate_T, *, overwrite_dH=False, keep=True, pad=None, rmask=None
    ) -> Adjoints:
        W = params["W" + self.suffix]
        Hs = self.hidden_size
        G, Hn = cache.G, cache.Hn
        T, B, _ = G.shape
        blocks = G.reshape(T, B, 3, Hs)
        R, U, N = blocks[:, :, 0], blocks[:, :, 1], blocks[:, :, 2]
        H_prev = cache.H_prev
        # Local factors that do not depend on the recurrence, for every step at once: each
        # pre-activation's gradient is dh_t times one of them (built in place, no temporaries:
        # the r block serves as scratch until its own turn).
        Mx = np.empty((T, B, 3, Hs), G.dtype)  # input side [r, u, n]; becomes d_in step by step
        Mr, Mu, Mn = Mx[:, :, 0], Mx[:, :, 1], Mx[:, :, 2]
        np.multiply(N, N, out=Mn)
        np.subtract(1.0, Mn, out=Mn)
        np.subtract(1.0, U, out=Mr)
        Mn *= Mr  # n: (1 - u)(1 - n²), through h = (1-u) n + u h_prev and tanh
        Mr *= U
        np.subtract(H_prev, N, out=Mu)
        Mu *= Mr  # u: u(1 - u)(h_prev - n): chooses h_prev over n
        np.subtract(1.0, R, out=Mr)
        Mr *= R
        Mr *= Mn
        Mr *= Hn  # r: r(1 - r) (1 - u)(1 - n²) (W_n h + b_hn), through n = tanh(... + r ⊙ (W_n h + b_hn))
        # The state side equals the input side but for n, which sees W_n h through r: d_rec_n = d_in_n ⊙ r.
        # Kept for every step only when asked; otherwise one step's worth for the product.
        D_rec = np.empty((T, B, 3, Hs), G.dtype) if keep else None
        DH = np.empty((T, B, Hs), G.dtype) if keep else None  # total ∂J/∂h_t (dH is only read)
        dh_next = np.zeros((B, Hs), G.dtype) if dstate_T is None else dstate_T[0].copy()
        for t0, t1, bt in reversed(segments(pad, T, B)):  # steps t0 .. t1-1 ran rows 0 .. bt-1
            if bt < B:  # padding rows copied h_{t-1}: their gradient passes through, the steps add nothing
                pass_through(dh_next[bt:], dH[t0:t1, bt:], None if DH is None else DH[t0:t1, bt:])
                Mx[t0:t1, bt:] = 0.0
                if D_rec is not None:
                    D_rec[t0:t1, bt:] = 0.0
            Mx_b, dH_b, R_b, U_b, dhn = Mx[:, :bt], dH[:, :bt], R[:, :bt], U[:, :bt], dh_next[:bt]
            DH_b, D_rec_b = (None, None) if DH is None else (DH[:, :bt], D_rec[:, :bt])
            dzh_t, dh_t = np.empty((bt, 3, Hs), G.dtype), np.empty((bt, Hs), G.dtype)
            back = np.empty((bt, Hs), G.dtype)
            rm = None if rmask is None else rmask[:bt]
            for t in range(t1 - 1, t0 - 1, -1):
                dh = np.add(dH_b[t], dhn, out=dh_t if DH_b is None else DH_b[t])  # direct + from later steps
                dzx = Mx_b[t]
                dzx *= dh[:, None, :]  # ∂J/∂ of the input-side pre-activations of step t
                dzh = dzh_t if D_rec_b is None else D_rec_b[t]
                dzh[:, :2] = dzx[:, :2]
                np.multiply(dzx[:, 2], R_b[t], out=dzh[:, 2])
                np.matmul(dzh.reshape(bt, 3 * Hs), W, out=back)
                if rm is not None:
                    back *= rm  # … through the recurrent dropout mask
                np.multiply(dh, U_b[t], out=dhn)
                dhn += back  # into h_{t-1}: directly and through W
        d_rec = None if D_rec is None else D_rec.reshape(T, B, 3 * Hs)
        return Adjoints(d_in=Mx.reshape(T, B, 3 * Hs), d_rec=d_rec, dh=DH if keep else None, dstate0=(dh_next,))

    def d_rec_from(self, cache, adj):
        T, B, _ = adj.d_in.shape
        d = adj.d_in.reshape(T, B, 3, self.hidden_size)
        d[:, :, 2] *= cache.G.reshape(T, B, 3, self.hidden_size)[:, :, 0]  # in place: d_in_n ⊙ r
        return adj.d_in

    def token_kernel(self, params, dtype):
        return GRUTokenKernel(self, params, dtype)


class GRUTokenKernel(TokenKernel):
    """``r, u = σ(…)``, ``n_t = tanh(V_n x_t + b_n + r ⊙ (W_n h_{t-1} + b_hn))``, ``h_t = n_t + u ⊙ (h_{t-1} − n_t)``.

    Every recurrent row is halved, n's too: ``(2r) ⊙ ½(W_n h + b_hn) = r ⊙ (W_n h + b_hn)``.
    """

    def __init__(self, layer: GRULayer, params, dtype) -> None:
        V, W, b, b_hn = layer.weights(params)
        H = layer.hidden_size
        scale = np.full(3 * H, 0.5, dtype)
        scale[2 * H :] = 1.0
        rec_bias = None if b_hn is None else np.concatenate([np.zeros(2 * H, dtype), b_hn])
        super().__init__(V, W, b, rec_bias, scale, np.full(3 * H, 0.5, dtype), dtype)
        self.ru = np.empty(2 * H, dtype)
        self.r, self.u = self.ru[:H], self.ru[H:]
        self.n = np.empty(H, dtype)
        self.d = np.empty(H, dtype)
        self.zh_ru, self.zh_n = self.zh[: 2 * H], self.zh[2 * H :]
        self.H = H

    def run(self, zx):
        np.dot(self.h1, self.RT, out=self.zh)  # ½ (W h_{t-1} + [0; 0; b_hn])
        H = self.H
        ru = np.add(self.zh_ru, zx[: 2 * H], out=self.ru)
        np.tanh(ru, out=ru)
        ru += 1.0  # [2r; 2u]
        n = np.multiply(self.r, self.zh_n, out=self.n)  # r ⊙ (W_n h + b_hn)
        n += zx[2 * H :]
        np.tanh(n, out=n)  # n_t
        d = np.subtract(self.h, n, out=self.d)
        d *= self.u
        d *= 0.5  # u ⊙ (h_{t-1} − n_t)
        np.add(n, d, out=self.h)  # h_t = (1 − u) n_t + u h_{t-1}
