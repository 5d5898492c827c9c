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

To load PyTorch weights: ``V = weight_ih_l0``, ``W = weight_hh_l0``,
``b = bias_ih_l0 + [bias_hh_l0[:2H]; 0]``, ``b_hn = bias_hh_l0[2H:]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..activations import sigmoid
from ..inputs import is_tokens, project
from .base import Adjoints, Layer, freeze, state_buffer, uniform

__all__ = ["GRUCache", "GRULayer"]


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


@dataclass(frozen=True)
class GRULayer(Layer):
    """GRU layer; see the module docstring for equations and shapes."""

    input_size: int
    hidden_size: int
    bias: bool = True
    suffix: str = ""
    kind: str = "gru"

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

    def init_params(self, rng, dtype):
        scale = 1.0 / np.sqrt(self.hidden_size)
        return {
            name: np.zeros(shape, dtype) if len(shape) == 1 else uniform(rng, shape, scale, dtype)
            for name, shape in self.param_shapes().items()
        }

    def _weights(self, params):
        s = self.suffix
        if self.bias:
            return params["V" + s], params["W" + s], params["b" + s], params["b_hn" + s]
        return params["V" + s], params["W" + s], None, None

    def _cell(self, zx, h, W, b_hn, hn_out):
        """One step on the input part ``zx`` (B, 3H), updated in place into ``[r, u, n]``."""
        Hs = self.hidden_size
        zh = h @ W.T  # (B, 3H)
        zx[:, : 2 * Hs] += zh[:, : 2 * Hs]
        sigmoid(zx[:, : 2 * Hs], out=zx[:, : 2 * Hs])
        r, u, n = zx[:, :Hs], zx[:, Hs : 2 * Hs], zx[:, 2 * Hs :]
        hn = zh[:, 2 * Hs :]
        if b_hn is not None:
            hn += b_hn
        if hn_out is not None:
            hn_out[...] = hn
        n += r * hn
        np.tanh(n, out=n)
        return (1.0 - u) * n + u * h

    def forward(self, params, x, state0):
        V, W, b, b_hn = self._weights(params)
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
        h, H = S[0], S[1:]
        Hn = np.empty((T, B, Hs), G.dtype)
        rec = np.empty((B, 3 * Hs), G.dtype)
        tmp = np.empty((B, Hs), G.dtype)
        for t in range(T):
            z = G[t]
            np.matmul(h, WT, out=rec)  # [W_r h, W_u h, W_n h]: the only product in the loop
            ru = z[:, : 2 * Hs]
            ru += rec[:, : 2 * Hs]
            np.tanh(ru, out=ru)
            ru += 1.0
            ru *= 0.5  # [r, u]
            r, u, n = z[:, :Hs], z[:, Hs : 2 * Hs], z[:, 2 * Hs :]
            hn = Hn[t]
            if b_hn is None:
                hn[...] = rec[:, 2 * Hs :]
            else:
                np.add(rec[:, 2 * Hs :], b_hn, out=hn)  # W_n h_{t-1} + b_hn
            n += np.multiply(r, hn, out=tmp)
            np.tanh(n, out=n)
            np.subtract(1.0, u, out=tmp)
            tmp *= n
            h_t = np.multiply(u, h, out=H[t])
            h_t += tmp  # h_t = (1 - u) n + u h_{t-1}
            h = h_t
        cache = GRUCache(x=x, h0=S[0], G=G, Hn=Hn, H=H, H_prev=S[:-1])
        freeze(G, Hn, S, H, cache.h0, cache.H_prev)  # the buffer too: no view can be made writeable again
        return H, (h.copy(),), cache

    def input_weight(self, params):
        return params["V" + self.suffix]

    def adjoints(self, params, cache: GRUCache, dH, dstate_T, *, overwrite_dH=False, keep=True) -> Adjoints:
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
        dzh_t = np.empty((B, 3, Hs), G.dtype)
        DH = np.empty((T, B, Hs), G.dtype) if keep else None  # total ∂J/∂h_t (dH is only read)
        dh_t = np.empty((B, Hs), G.dtype)
        dh_next = np.zeros((B, Hs), G.dtype) if dstate_T is None else dstate_T[0].copy()
        back = np.empty((B, Hs), G.dtype)
        for t in range(T - 1, -1, -1):
            dh = np.add(dH[t], dh_next, out=dh_t if DH is None else DH[t])  # direct + from later steps
            dzx = Mx[t]
            dzx *= dh[:, None, :]  # ∂J/∂ of the input-side pre-activations of step t
            dzh = dzh_t if D_rec is None else D_rec[t]
            dzh[:, :2] = dzx[:, :2]
            np.multiply(dzx[:, 2], R[t], out=dzh[:, 2])
            np.matmul(dzh.reshape(B, 3 * Hs), W, out=back)
            np.multiply(dh, U[t], out=dh_next)
            dh_next += back  # into h_{t-1}: directly and through W
        d_rec = None if D_rec is None else D_rec.reshape(T, B, 3 * Hs)
        return Adjoints(d_in=Mx.reshape(T, B, 3 * Hs), d_rec=d_rec, dh=DH if keep else None, dstate0=(dh_next,))

    def _d_rec(self, cache, adj):
        T, B, _ = adj.d_in.shape
        d = adj.d_in.reshape(T, B, 3, self.hidden_size)
        d[:, :, 2] *= cache.G.reshape(T, B, 3, self.hidden_size)[:, :, 0]  # in place: d_in_n ⊙ r
        return adj.d_in

    def _pack(self, dV, dW, in_total, rec_total):
        s = self.suffix
        grads = {"V" + s: dV, "W" + s: dW}
        if self.bias:
            grads["b" + s] = in_total
            grads["b_hn" + s] = rec_total[..., 2 * self.hidden_size :]  # inside r ⊙ (W_n h + b_hn)
        return grads

    def state_at(self, cache, t):
        return (cache.H[t],)

    def step(self, params, x_t, state):
        V, W, b, b_hn = self._weights(params)
        (h,) = state
        zx = V.T[x_t] if is_tokens(x_t) else x_t @ V.T
        if b is not None:
            zx += b
        return (self._cell(zx, h, W, b_hn, None),)
