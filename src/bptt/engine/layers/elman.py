"""The Elman recurrent layer of the lecture, in three notations.

Equation (lecture notation)::

    a_t = V x_t + W h_{t-1} + b_h
    h_t = f_h(a_t)

The same layer is written in the exam's notations:

* ``"mit"`` (RNN-A): ``s_t = f1(W_ss s_{t-1} + W_sx x_t + b_s)``.
* ``"concat"`` (RNN-B): ``s_t = f1(W_ssx [s_{t-1}; x_t] + b_s)``, with
  ``W_ssx = [W_ss | W_sx]`` stored as one ``(H, H + D)`` array (state block first).

=========  ==========  ===========  ==========  ===============================
lecture    mit         concat       shape       meaning
=========  ==========  ===========  ==========  ===============================
V          W_sx        W_ssx[:, H:] (H, D)      input → state
W          W_ss        W_ssx[:, :H] (H, H)      state → state (the recurrence)
b_h        b_s         b_s          (H,)        state bias (only if ``bias``)
=========  ==========  ===========  ==========  ===============================

BPTT (one line per chain-rule step in :meth:`ElmanLayer.step_backward`, the reference)::

    dh_t  = ∂J/∂h_t (direct, from the layer above) + dh_next
    da_t  = dh_t ⊙ f_h'(a_t)
    dh_next = Wᵀ da_t                       (carried to step t - 1)
    ∂J/∂W = Σ_t da_t h_{t-1}ᵀ,  ∂J/∂V = Σ_t da_t x_tᵀ,  ∂J/∂b_h = Σ_t da_t

The fast kernels compute the same: :meth:`ElmanLayer.fast_adjoints` keeps only
``Wᵀ da_t`` inside the backward loop, and :meth:`Layer.backward` forms each of the three
sums over t as one matrix product over all ``T·B`` rows after it. In training, ``da_t`` is written over the incoming
``∂J/∂h_t`` (the network gives that array up), so the backward pass holds one
window-sized array besides the states.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..activations import Activation
from ..inputs import input_grad, input_term, is_tokens, project
from .base import Adjoints, Layer, StepGrads, TokenKernel, freeze, pass_through, segments, stacked_states, state_buffer

__all__ = ["ELMAN_NOTATIONS", "ElmanCache", "ElmanLayer", "ElmanTokenKernel"]

_WHOLE_WINDOW_DF = 1 << 16  # window sizes T·B·H up to which backward computes f_h' for all steps at once

# Parameter names per notation: (input, recurrent, bias); concat fuses the first two.
ELMAN_NOTATIONS: dict[str, tuple[str, str, str]] = {
    "lecture": ("V", "W", "b_h"),
    "mit": ("W_sx", "W_ss", "b_s"),
    "concat": ("W_ssx", "W_ssx", "b_s"),
}


@dataclass(frozen=True)
class ElmanCache:
    """What :meth:`ElmanLayer.backward` needs from the forward pass (read-only).

    Attributes
    ----------
    x : ndarray, (T, B, D) float or (T, B) int
        The layer's input.
    h0 : ndarray, (B, H)
        Initial state.
    H : ndarray, (T, B, H)
        Hidden states ``h_1 .. h_T``.
    H_prev : ndarray, (T, B, H)
        ``h_0 .. h_{T-1}``; ``h0``, ``H`` and ``H_prev`` are views of one ``(T+1, B, H)`` array.
    """

    x: np.ndarray
    h0: np.ndarray
    H: np.ndarray
    H_prev: np.ndarray


@dataclass(frozen=True)
class ElmanLayer(Layer):
    """Elman layer ``h_t = f_h(V x_t + W h_{t-1} + b_h)``; see the module docstring."""

    input_size: int
    hidden_size: int
    activation: Activation
    bias: bool = True
    notation: str = "lecture"
    suffix: str = ""
    kernels: str = "fast"
    kind: str = "elman"

    # -- names -----------------------------------------------------------------
    @cached_property
    def names(self) -> tuple[str, str, str]:
        """Full (input, recurrent, bias) parameter names, with the layer suffix."""
        return tuple(n + self.suffix for n in ELMAN_NOTATIONS[self.notation])  # type: ignore[return-value]

    @property
    def state_names(self) -> tuple[str, ...]:
        return ("h0" + self.suffix,)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        H, D = self.hidden_size, self.input_size
        n_in, n_rec, n_b = self.names
        if self.notation == "concat":
            shapes = {n_in: (H, H + D)}
        else:
            shapes = {n_in: (H, D), n_rec: (H, H)}
        if self.bias:
            shapes[n_b] = (H,)
        return shapes

    def weights(self, params: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``(V, W, b_h)`` whatever the notation (views into ``W_ssx`` for concat)."""
        n_in, n_rec, n_b = self.names
        b = params[n_b] if self.bias else None
        if self.notation == "concat":
            W_ssx = params[n_in]
            H = self.hidden_size
            return W_ssx[:, H:], W_ssx[:, :H], b
        return params[n_in], params[n_rec], b

    def named(self, grads):
        dV, dW, db = grads
        n_in, n_rec, n_b = self.names
        named = {n_in: np.concatenate((dW, dV), axis=-1)} if self.notation == "concat" else {n_in: dV, n_rec: dW}
        if self.bias:
            named[n_b] = db
        return named

    @property
    def weight_names(self) -> tuple[str, str]:
        return self.names[0], self.names[1]

    def state_at(self, cache, t):
        return (cache.H[t],)

    # -- the reference step ------------------------------------------------------------------------
    def step_forward(self, w, x_t, state, rmask=None):
        V, W, b = w
        (h_prev,) = state
        h_rec = h_prev if rmask is None else h_prev * rmask  # recurrent dropout: h_{t-1} as W sees it
        a = input_term(V, x_t) + h_rec @ W.T  # a_t = V x_t + W h_{t-1}
        if b is not None:
            a = a + b  # ... + b_h
        h = self.activation.f(a)  # h_t = f_h(a_t)
        return (h,), h

    def step_backward(self, w, x_t, state_prev, kept, dstate, rmask=None):
        V, W, b = w
        (h_prev,) = state_prev
        h_rec = h_prev if rmask is None else h_prev * rmask
        h = kept  # h_t
        (dh,) = dstate  # total ∂J/∂h_t
        da = dh * self.activation.df(h)  # through h_t = f_h(a_t); f_h' is read from h_t
        dh_prev = da @ W  # into h_{t-1}: a_t = … + W h_{t-1}
        if rmask is not None:
            dh_prev = dh_prev * rmask  # … through the dropout mask
        dx = None if is_tokens(x_t) else da @ V  # into x_t: a_t = V x_t + …
        dV = input_grad(da, x_t, self.input_size)  # this step's da_t x_tᵀ
        dW = da.T @ h_rec  # this step's da_t h_{t-1}ᵀ
        db = da.sum(axis=0) if b is not None else None  # this step's da_t, summed over the batch
        return StepGrads(dstate=(dh_prev,), dweights=(dV, dW, db), dx=dx, d_in=da, d_rec=da)

    def step_values(self, cache, t):
        return (cache.H_prev[t],), cache.H[t]

    def cache_from_steps(self, x, state0, states, kept):
        S = stacked_states(state0[0], [h for (h,) in states])
        return ElmanCache(x=x, h0=S[0], H=S[1:], H_prev=S[:-1])

    # -- fast kernels --------------------------------------------------------------------------------
    def fast_forward(self, params, x, state0, *, pad=None, rmask=None):
        V, W, b = self.weights(params)
        (h0,) = state0
        f = self.activation.f
        T, B = x.shape[0], h0.shape[0]
        S = state_buffer(h0, T)  # h_0 .. h_T
        A = project(x, V, out=S[1:], bias=b)  # (T, B, H): V x_t + b_h for every t in one product
        WT = W.T
        H = A  # h_t overwrites a_t in place: a_t is not needed by backward
        for t0, t1, bt in segments(pad, T, B):  # steps t0 .. t1-1 run rows 0 .. bt-1; the rest is padding
            A_b, S_b = A[:, :bt], S[:, :bt]
            rec = np.empty((bt, h0.shape[1]), h0.dtype)
            rm, hm = (None, None) if rmask is None else (rmask[:bt], np.empty_like(rec))
            h = S_b[t0]
            for t in range(t0, t1):
                a = A_b[t]
                a += np.dot(h if rm is None else np.multiply(h, rm, out=hm), WT, out=rec)  # the only product
                h = f(a, out=a)
            if bt < B:
                H[t0:t1, bt:] = S[t0, bt:]  # padding: the state stays
        cache = ElmanCache(x=x, h0=S[0], H=H, H_prev=S[:-1])
        freeze(S, cache.h0, H, cache.H_prev)  # the buffer too: no view of it can be made writeable again
        return H, (H[-1].copy(),), cache

    def fast_adjoints(
        self, params, cache: ElmanCache, dH, dstate_T, *, overwrite_dH=False, keep=True, pad=None, rmask=None
    ) -> Adjoints:
        W = self.weights(params)[1]
        H = cache.H
        T, B, Hs = H.shape
        df = self.activation.df
        dA = dH if overwrite_dH else dH.copy()  # ∂J/∂h_t (direct), becomes ∂J/∂a_t step by step
        DH = np.empty_like(H) if keep else None  # total ∂J/∂h_t
        # f_h'(a_t) for the whole window at once costs one more (T, B, H) array; step by step it costs
        # two more NumPy calls per step instead. Small windows (where calls dominate) take the first.
        F = df(H) if H.size <= _WHOLE_WINDOW_DF else None
        dh_next = np.zeros((B, Hs), H.dtype) if dstate_T is None else dstate_T[0].copy()
        for t0, t1, bt in reversed(segments(pad, T, B)):  # steps t0 .. t1-1 ran rows 0 .. bt-1
            if bt < B:  # padding rows copied h_{t-1}: their gradient passes through, the steps add nothing
                pass_through(dh_next[bt:], dA[t0:t1, bt:], None if DH is None else DH[t0:t1, bt:])
                dA[t0:t1, bt:] = 0.0
            dA_b, H_b, dn = dA[:, :bt], H[:, :bt], dh_next[:bt]
            DH_b, F_b = None if DH is None else DH[:, :bt], None if F is None else F[:, :bt]
            f_t = np.empty((bt, Hs), H.dtype)
            rm = None if rmask is None else rmask[:bt]
            for t in range(t1 - 1, t0 - 1, -1):
                da = dA_b[t]
                # total ∂J/∂h_t: direct term + everything from later steps (in place unless kept)
                dh = np.add(da, dn, out=DH_b[t] if DH_b is not None else da)
                np.multiply(dh, df(H_b[t], out=f_t) if F_b is None else F_b[t], out=da)  # through f_h
                np.dot(da, W, out=dn)  # into h_{t-1}
                if rm is not None:
                    dn *= rm  # … through the recurrent dropout mask
        return Adjoints(d_in=dA, d_rec=dA, dh=DH, dstate0=(dh_next,))

    def token_kernel(self, params, dtype):
        return ElmanTokenKernel(self, params, dtype)


class ElmanTokenKernel(TokenKernel):
    """``h_t = f_h(V x_t + W h_{t-1} + b_h)`` at batch size 1; the input term arrives as ``zx``."""

    def __init__(self, layer: ElmanLayer, params, dtype) -> None:
        V, W, b = layer.weights(params)
        one = np.ones(W.shape[0], dtype)
        super().__init__(V, W, b, None, one, one, dtype)
        self.f = layer.activation.f

    def run(self, zx):
        a = np.dot(self.h1, self.RT, out=self.zh)  # W h_{t-1}
        a += zx
        self.f(a, out=self.h)
