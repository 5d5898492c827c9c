"""Long short-term memory layer (Hochreiter & Schmidhuber; PyTorch's gate order).

Equations, gates stacked in the order ``i, f, g, o`` (as ``torch.nn.LSTM``)::

    z_t = V x_t + W h_{t-1} + b                    (4H pre-activations)
    i_t = σ(z_t[i])   f_t = σ(z_t[f])   g_t = tanh(z_t[g])   o_t = σ(z_t[o])
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
    h_t = o_t ⊙ tanh(c_t)

======  =========  ==============================================
symbol  shape      meaning
======  =========  ==============================================
V       (4H, D)    input → gates, blocks [i; f; g; o]
W       (4H, H)    state → gates, same blocks
b       (4H,)      gate bias (only if ``bias``); f block starts at 1
h0, c0  (B, H)     initial hidden and cell state
======  =========  ==============================================

BPTT through one step (:meth:`LSTMLayer.step_backward`, the reference), from the total
``dh_t`` and the ``dc_t`` carried back from step t + 1::

    do = dh ⊙ tanh(c_t)                            h_t = o ⊙ tanh(c_t)
    dc = dc_t + dh ⊙ o ⊙ (1 − tanh²(c_t))          ... and through tanh(c_t)
    di = dc ⊙ g,  dg = dc ⊙ i                      c_t = f ⊙ c_{t-1} + i ⊙ g
    df = dc ⊙ c_{t-1},  dc_{t-1} = dc ⊙ f
    dz = [di ⊙ i(1−i), df ⊙ f(1−f), dg ⊙ (1−g²), do ⊙ o(1−o)]      through σ and tanh
    dh_{t-1} = Wᵀ dz,  ∂J/∂V += dz x_tᵀ,  ∂J/∂W += dz h_{t-1}ᵀ,  ∂J/∂b += dz

To load PyTorch weights: ``V = weight_ih_l0``, ``W = weight_hh_l0``,
``b = bias_ih_l0 + bias_hh_l0`` (PyTorch keeps two redundant biases).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..activations import sigmoid
from ..inputs import input_grad, input_term, is_tokens, project
from .base import Adjoints, Layer, StepGrads, TokenKernel, freeze, pass_through, segments, stacked_states, state_buffer

__all__ = ["LSTMCache", "LSTMLayer", "LSTMStep", "LSTMTokenKernel"]


@dataclass(frozen=True)
class LSTMCache:
    """Forward values needed by :meth:`LSTMLayer.backward` (read-only).

    Attributes
    ----------
    x : ndarray, (T, B, D) float or (T, B) int
    h0, c0 : ndarray, (B, H)
    G : ndarray, (T, B, 4H)
        Gate activations ``[i, f, g, o]`` (after σ / tanh).
    C : ndarray, (T, B, H)
        Cell states ``c_1 .. c_T``.
    tanhC : ndarray, (T, B, H)
        ``tanh(c_t)``.
    H : ndarray, (T, B, H)
        Hidden states ``h_1 .. h_T``.
    H_prev, C_prev : ndarray, (T, B, H)
        ``h_0 .. h_{T-1}`` and ``c_0 .. c_{T-1}`` (views: ``h0``, ``H``, ``H_prev`` share one
        ``(T+1, B, H)`` array, and so do ``c0``, ``C``, ``C_prev``).
    """

    x: np.ndarray
    h0: np.ndarray
    c0: np.ndarray
    G: np.ndarray
    C: np.ndarray
    tanhC: np.ndarray
    H: np.ndarray
    H_prev: np.ndarray
    C_prev: np.ndarray


class LSTMStep(NamedTuple):
    """One step's values that :meth:`LSTMLayer.step_backward` reads, each (B, H)."""

    i: np.ndarray
    f: np.ndarray
    g: np.ndarray
    o: np.ndarray
    tanh_c: np.ndarray


def _times_dsigmoid(s: np.ndarray, other: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out = s (1 - s) ⊙ other``: σ'(z) from ``s = σ(z)``, built in ``out`` without temporaries."""
    np.subtract(1.0, s, out=out)
    out *= s
    out *= other
    return out


@dataclass(frozen=True)
class LSTMLayer(Layer):
    """LSTM layer; see the module docstring for equations and shapes."""

    input_size: int
    hidden_size: int
    bias: bool = True
    suffix: str = ""
    kernels: str = "fast"
    kind: str = "lstm"

    @property
    def state_names(self) -> tuple[str, ...]:
        return ("h0" + self.suffix, "c0" + self.suffix)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        H, D, s = self.hidden_size, self.input_size, self.suffix
        shapes = {"V" + s: (4 * H, D), "W" + s: (4 * H, H)}
        if self.bias:
            shapes["b" + s] = (4 * H,)
        return shapes

    def init_params(self, rng, dtype):
        params = super().init_params(rng, dtype)  # V, W ~ U(±1/√H), b = 0
        if self.bias:
            H = self.hidden_size
            params["b" + self.suffix][H : 2 * H] = 1.0  # forget-gate bias 1: remember by default (Jozefowicz et al.)
        return params

    def state_at(self, cache, t):
        return (cache.H[t], cache.C[t])

    # -- the reference step ------------------------------------------------------------------------
    def step_forward(self, w, x_t, state, rmask=None):
        V, W, b = w
        h_prev, c_prev = state
        h_rec = h_prev if rmask is None else h_prev * rmask  # recurrent dropout: h_{t-1} as W sees it
        z = input_term(V, x_t) + h_rec @ W.T  # z_t = V x_t + W h_{t-1}
        if b is not None:
            z = z + b  # ... + b
        z_i, z_f, z_g, z_o = np.split(z, 4, axis=1)
        i = sigmoid(z_i)  # input gate
        f = sigmoid(z_f)  # forget gate
        g = np.tanh(z_g)  # candidate
        o = sigmoid(z_o)  # output gate
        c = f * c_prev + i * g  # c_t = f ⊙ c_{t-1} + i ⊙ g
        tanh_c = np.tanh(c)
        h = o * tanh_c  # h_t = o ⊙ tanh(c_t)
        return (h, c), LSTMStep(i, f, g, o, tanh_c)

    def step_backward(self, w, x_t, state_prev, kept, dstate, rmask=None):
        V, W, b = w
        h_prev, c_prev = state_prev
        h_rec = h_prev if rmask is None else h_prev * rmask
        i, f, g, o, tanh_c = kept
        dh, dc_next = dstate  # total ∂J/∂h_t; ∂J/∂c_t through step t + 1
        do = dh * tanh_c  # h_t = o ⊙ tanh(c_t)
        dc = dc_next + dh * o * (1.0 - tanh_c**2)  # ... and through tanh(c_t)
        di = dc * g  # c_t = f ⊙ c_{t-1} + i ⊙ g
        dg = dc * i
        df = dc * c_prev
        dc_prev = dc * f  # into c_{t-1}
        dz_i = di * i * (1.0 - i)  # through σ: σ' = σ(1 − σ)
        dz_f = df * f * (1.0 - f)
        dz_g = dg * (1.0 - g**2)  # through tanh: tanh' = 1 − tanh²
        dz_o = do * o * (1.0 - o)
        dz = np.concatenate((dz_i, dz_f, dz_g, dz_o), axis=1)  # ∂J/∂z_t, (B, 4H)
        dh_prev = dz @ W  # into h_{t-1}: z_t = … + W h_{t-1}
        if rmask is not None:
            dh_prev = dh_prev * rmask  # … through the dropout mask
        dx = None if is_tokens(x_t) else dz @ V  # into x_t: z_t = V x_t + …
        dV = input_grad(dz, x_t, self.input_size)  # this step's dz x_tᵀ
        dW = dz.T @ h_rec  # this step's dz h_{t-1}ᵀ
        db = dz.sum(axis=0) if b is not None else None  # this step's dz, summed over the batch
        return StepGrads(dstate=(dh_prev, dc_prev), dweights=(dV, dW, db), dx=dx, d_in=dz, d_rec=dz)

    def step_values(self, cache, t):
        Hs = self.hidden_size
        G = cache.G[t]
        kept = LSTMStep(G[:, :Hs], G[:, Hs : 2 * Hs], G[:, 2 * Hs : 3 * Hs], G[:, 3 * Hs :], cache.tanhC[t])
        return (cache.H_prev[t], cache.C_prev[t]), kept

    def cache_from_steps(self, x, state0, states, kept):
        S = stacked_states(state0[0], [h for h, _ in states])
        Cs = stacked_states(state0[1], [c for _, c in states])
        G = np.stack([np.concatenate((k.i, k.f, k.g, k.o), axis=1) for k in kept])
        tanhC = np.stack([k.tanh_c for k in kept])
        freeze(G, tanhC)
        return LSTMCache(x=x, h0=S[0], c0=Cs[0], G=G, C=Cs[1:], tanhC=tanhC, H=S[1:], H_prev=S[:-1], C_prev=Cs[:-1])

    # -- fast kernels --------------------------------------------------------------------------------
    def fast_forward(self, params, x, state0, *, pad=None, rmask=None):
        V, W, b = self.weights(params)
        h, c = state0
        Hs = self.hidden_size
        # σ(z) = (1 + tanh(z/2)) / 2: halve the sigmoid gates' pre-activations (in the input projection
        # and a scaled copy of W; exact, a power of two), so one tanh over all 4H columns serves every gate and
        # ``gate = a·tanh + c`` turns the σ blocks back (a = c = ½ for i, f, o; a = 1, c = 0 for g).
        half = np.full((4, Hs), 0.5, V.dtype)
        half[2] = 1.0
        scale = half.reshape(4 * Hs)
        shift = 1.0 - scale
        shift[2 * Hs : 3 * Hs] = 0.0
        # (T, B, 4H): input part of every gate (halved where σ), all steps at once
        G = project(x, V, bias=b, scale=scale)
        T, B, _ = G.shape
        WT = (W * scale[:, None]).T
        S, Cs = state_buffer(h, T), state_buffer(c, T)  # h_0 .. h_T and c_0 .. c_T
        H, C = S[1:], Cs[1:]
        tanhC = np.empty_like(C)
        for t0, t1, bt in segments(pad, T, B):  # steps t0 .. t1-1 run rows 0 .. bt-1; the rest is padding
            G_b, S_b, Cs_b, tanhC_b = G[:, :bt], S[:, :bt], Cs[:, :bt], tanhC[:, :bt]
            rec, ig = np.empty((bt, 4 * Hs), G.dtype), np.empty((bt, Hs), G.dtype)
            rm, hm = (None, None) if rmask is None else (rmask[:bt], np.empty_like(ig))
            h, c = S_b[t0], Cs_b[t0]
            for t in range(t0, t1):
                z = G_b[t]
                z += np.matmul(h if rm is None else np.multiply(h, rm, out=hm), WT, out=rec)  # the only product
                np.tanh(z, out=z)
                z *= scale
                z += shift  # [i, f, g, o] gate activations
                i, f, g, o = z[:, :Hs], z[:, Hs : 2 * Hs], z[:, 2 * Hs : 3 * Hs], z[:, 3 * Hs :]
                c = np.multiply(f, c, out=Cs_b[t + 1])  # c_t = f ⊙ c_{t-1} + i ⊙ g
                c += np.multiply(i, g, out=ig)
                tc = np.tanh(c, out=tanhC_b[t])
                h = np.multiply(o, tc, out=S_b[t + 1])  # h_t = o ⊙ tanh(c_t)
            if bt < B:  # padding: the state stays, the steps keep nothing
                H[t0:t1, bt:], C[t0:t1, bt:] = S[t0, bt:], Cs[t0, bt:]
                G[t0:t1, bt:] = tanhC[t0:t1, bt:] = 0.0
        cache = LSTMCache(x=x, h0=S[0], c0=Cs[0], G=G, C=C, tanhC=tanhC, H=H, H_prev=S[:-1], C_prev=Cs[:-1])
        freeze(G, tanhC, S, Cs, cache.h0, cache.c0, C, H, cache.H_prev, cache.C_prev)  # buffers too
        return H, (H[-1].copy(), C[-1].copy()), cache

    def fast_adjoints(
        self, params, cache: LSTMCache, dH, dstate_T, *, overwrite_dH=False, keep=True, pad=None, rmask=None
    ) -> Adjoints:
        W = params["W" + self.suffix]
        Hs = self.hidden_size
        G, tanhC = cache.G, cache.tanhC
        T, B, _ = G.shape
        blocks = G.reshape(T, B, 4, Hs)
        I, F, Gc, O = blocks[:, :, 0], blocks[:, :, 1], blocks[:, :, 2], blocks[:, :, 3]
        C_prev = cache.C_prev
        # Local factors that do not depend on the recurrence, for every step at once:
        # ∂c_t/∂z through each gate, [g σ'(i), c_{t-1} σ'(f), i tanh'(g)], then tanh(c_t) σ'(o)
        # for ∂h_t/∂z_o, and ∂h_t/∂c_t = o ⊙ tanh'(c_t).
        M = np.empty((T, B, 4, Hs), G.dtype)  # becomes ∂J/∂z_t step by step in the loop
        _times_dsigmoid(I, Gc, out=M[:, :, 0])
        _times_dsigmoid(F, C_prev, out=M[:, :, 1])
        Mg = np.multiply(Gc, Gc, out=M[:, :, 2])
        np.subtract(1.0, Mg, out=Mg)
        Mg *= I  # i tanh'(z_g), tanh' = 1 - g²
        _times_dsigmoid(O, tanhC, out=M[:, :, 3])
        dh_dc = np.multiply(tanhC, tanhC)
        np.subtract(1.0, dh_dc, out=dh_dc)
        dh_dc *= O
        if dstate_T is None:
            dh_next, dc_next = np.zeros((B, Hs), G.dtype), np.zeros((B, Hs), G.dtype)
        else:
            dh_next, dc_next = dstate_T[0].copy(), dstate_T[1].copy()
        # Total ∂J/∂h_t for every step only when kept; otherwise one step at a time (dH is only read).
        DH = np.empty((T, B, Hs), G.dtype) if keep else None
        for t0, t1, bt in reversed(segments(pad, T, B)):  # steps t0 .. t1-1 ran rows 0 .. bt-1
            if bt < B:  # padding rows copied (h, c) from step t - 1: their gradients pass through
                pass_through(dh_next[bt:], dH[t0:t1, bt:], None if DH is None else DH[t0:t1, bt:])
                M[t0:t1, bt:] = 0.0  # the steps did not happen
            M_b, dH_b, dh_dc_b, F_b = M[:, :bt], dH[:, :bt], dh_dc[:, :bt], F[:, :bt]
            DH_b = None if DH is None else DH[:, :bt]
            dhn, dcn = dh_next[:bt], dc_next[:bt]
            dh_t, dc = np.empty((bt, Hs), G.dtype), np.empty((bt, Hs), G.dtype)
            rm = None if rmask is None else rmask[:bt]
            for t in range(t1 - 1, t0 - 1, -1):
                dh = np.add(dH_b[t], dhn, out=dh_t if DH_b is None else DH_b[t])  # direct + from later steps
                np.multiply(dh, dh_dc_b[t], out=dc)  # through h_t = o ⊙ tanh(c_t) ...
                dc += dcn  # ... plus c_t's path into c_{t+1}
                dz = M_b[t]
                dz[:, :3] *= dc[:, None, :]  # i, f, g gates, through c_t
                dz[:, 3] *= dh  # o gate, through h_t
                np.multiply(dc, F_b[t], out=dcn)  # into c_{t-1}
                np.matmul(dz.reshape(bt, 4 * Hs), W, out=dhn)  # into h_{t-1}
                if rm is not None:
                    dhn *= rm  # … through the recurrent dropout mask
        dZ = M.reshape(T, B, 4 * Hs)
        return Adjoints(d_in=dZ, d_rec=dZ, dh=DH if keep else None, dstate0=(dh_next, dc_next))

    def token_kernel(self, params, dtype):
        return LSTMTokenKernel(self, params, dtype)


class LSTMTokenKernel(TokenKernel):
    """``[i, f, g, o] = [σ, σ, tanh, σ](V x_t + W h_{t-1} + b)``, ``c_t = f c_{t-1} + i g``, ``h_t = o tanh c_t``."""

    def __init__(self, layer: LSTMLayer, params, dtype) -> None:
        V, W, b = layer.weights(params)
        H = layer.hidden_size
        scale = np.full(4 * H, 0.5, dtype)
        scale[2 * H : 3 * H] = 1.0  # g is a tanh gate
        super().__init__(V, W, b, None, scale, scale, dtype)
        self.shift = np.where(scale == 0.5, 0.5, 0.0).astype(dtype)  # gate = scale·tanh + shift
        self.c = np.zeros(H, dtype)
        self.tmp = np.empty(H, dtype)
        z = self.zh
        self.i, self.f, self.g, self.o = z[:H], z[H : 2 * H], z[2 * H : 3 * H], z[3 * H :]

    def run(self, zx):
        z = np.dot(self.h1, self.RT, out=self.zh)  # W h_{t-1}
        z += zx
        np.tanh(z, out=z)
        z *= self.scale
        z += self.shift  # [i, f, g, o]
        c, tmp = self.c, self.tmp
        c *= self.f  # c_t = f ⊙ c_{t-1} + i ⊙ g
        c += np.multiply(self.i, self.g, out=tmp)
        np.tanh(c, out=tmp)
        np.multiply(self.o, tmp, out=self.h)  # h_t = o ⊙ tanh(c_t)
