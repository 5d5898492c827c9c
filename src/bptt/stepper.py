"""A language model prepared for generating one sequence, one token at a time.

Generating text runs the network one step at a time at batch size 1, where
every NumPy call costs about the same microsecond whatever its size. The
:class:`Stepper` therefore prepares the weights once so that each step is the
two unavoidable matrix-vector products of each layer and as few element-wise
calls as the cell allows, all into buffers allocated once:

* **token tables** — for a token ``k`` the input term ``V x_t + b`` is column
  ``k`` of ``V`` plus the bias (with an embedding ``E``: column ``k`` of ``V E``
  plus the bias), so it is read from a precomputed ``(N, G·H)`` table;
* **folded biases** — each state vector carries a trailing 1, ``h̃ = [h; 1]``,
  so a bias inside a product (the GRU's ``b_hn``, the output bias ``b_y``, the
  input bias of upper layers) is one more column of the matrix;
* **one tanh for the sigmoid gates** — ``σ(a) = (1 + tanh(a/2)) / 2``, with the
  σ rows of every gate matrix halved once;
* **temperature folded into the output layer** — ``z/τ = (U/τ) h + b_y/τ``.

The logits equal those of :meth:`bptt.RNN.forward` up to rounding (the products are
summed in a different order). The model is copied: training it afterwards does
not change a stepper built before.

===========  ==============  ============================================
symbol       shape           meaning
===========  ==============  ============================================
table        (N, G·H)        first layer's input term per token (σ rows halved)
RT           (H+1, G·H)      ``[W | c]ᵀ``: recurrent weight and recurrent-side bias
P            (H'+1, G·H)     ``[V | b]ᵀ`` of an upper layer, on the layer below's ``h̃``
UT           (H+1, O)        ``[U | b_y]ᵀ / τ``
h̃            (H+1,)          state with its trailing 1 (and ``c`` for the LSTM)
===========  ==============  ============================================
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

from .network import RNN

__all__ = ["Stepper"]


def _aug(M: np.ndarray, column: np.ndarray | None, dtype) -> np.ndarray:
    """``[M | column]ᵀ`` as a C-contiguous ``(in + 1, out)`` matrix (zeros when there is no column).

    Stored transposed: ``h̃ @ Mᵀ`` runs BLAS's transposed matrix-vector kernel, which
    is up to 20% faster than ``M @ h̃`` for the tall gate matrices here.
    """
    out = np.zeros((M.shape[1] + 1, M.shape[0]), dtype)
    out[:-1] = M.T
    if column is not None:
        out[-1] = column
    return out


class _Cell:
    """One layer's prepared weights and buffers; :meth:`run` advances ``h`` (and ``c``) in place.

    ``scale`` halves the rows of σ gates (``σ(a) = (1 + tanh(a/2)) / 2``) in the input
    term; ``rec_scale`` does the same for the recurrent term.
    """

    def __init__(self, V, W, in_bias, rec_bias, scale, rec_scale, dtype) -> None:
        G, Hs = W.shape
        self.RT = _aug(W * rec_scale[:, None], None if rec_bias is None else rec_bias * rec_scale, dtype)
        self.V, self.in_bias, self.scale = V, in_bias, scale
        self.h1 = np.zeros(Hs + 1, dtype)  # h̃ = [h; 1]
        self.h1[-1] = 1.0
        self.h = self.h1[:-1]
        self.c: np.ndarray | None = None
        self.zh = np.empty(G, dtype)

    def input_table(self, E: np.ndarray | None) -> np.ndarray:
        """``(N, G·H)``: the input term ``V x + b`` for each token id (σ rows halved)."""
        VE = self.V if E is None else self.V @ E
        table = np.ascontiguousarray(VE.T * self.scale)
        if self.in_bias is not None:
            table += self.in_bias * self.scale
        return table

    def input_matrix(self) -> np.ndarray:
        """``[V | b]ᵀ`` (σ rows halved), applied to the layer below's ``h̃``."""
        b = None if self.in_bias is None else self.in_bias * self.scale
        return _aug(self.V * self.scale[:, None], b, self.V.dtype)

    def run(self, zx: np.ndarray) -> None:
        """One step on the input term ``zx`` (G·H,)."""
        raise NotImplementedError


class _ElmanCell(_Cell):
    """``h_t = f_h(V x_t + W h_{t-1} + b_h)``."""

    def __init__(self, layer, params, dtype) -> None:
        V, W, b = layer.weights(params)
        one = np.ones(W.shape[0], dtype)
        super().__init__(V, W, b, None, one, one, dtype)
        self.f = layer.activation.f

    def run(self, zx):
        a = np.dot(self.h1, self.RT, out=self.zh)  # W h_{t-1}
        a += zx
        self.f(a, out=self.h)


class _LSTMCell(_Cell):
    """``[i, f, g, o] = [σ, σ, tanh, σ](V x_t + W h_{t-1} + b)``, ``c_t = f c_{t-1} + i g``, ``h_t = o tanh c_t``."""

    def __init__(self, layer, params, dtype) -> None:
        V, W, b = layer._weights(params)
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


class _GRUCell(_Cell):
    """``r, u = σ(…)``, ``n_t = tanh(V_n x_t + b_n + r ⊙ (W_n h_{t-1} + b_hn))``, ``h_t = n_t + u ⊙ (h_{t-1} − n_t)``.

    Every recurrent row is halved, n's too: ``(2r) ⊙ ½(W_n h + b_hn) = r ⊙ (W_n h + b_hn)``.
    """

    def __init__(self, layer, params, dtype) -> None:
        V, W, b, b_hn = layer._weights(params)
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


_CELLS = {"elman": _ElmanCell, "lstm": _LSTMCell, "gru": _GRUCell}


class Stepper:
    """A token-input language model prepared for fast one-token-at-a-time generation.

    Parameters
    ----------
    model : RNN
        A network that reads token ids (``0 .. input_size − 1``) with a softmax output.
    state : None, array, tuple or dict
        Initial state, as for :meth:`RNN.forward` with batch size 1 (zeros if ``None``).
    temperature : float
        ``τ > 0``; the logits returned are ``z_t / τ``.

    Examples
    --------
    >>> s = Stepper(model)
    >>> z = s.feed(prime_ids)          # the whole prime in one forward pass
    >>> z = s.step(int(z.argmax()))    # then one token at a time
    """

    def __init__(self, model: RNN, state: object = None, *, temperature: float = 1.0) -> None:
        where = "Stepper"
        if not isinstance(model, RNN):
            raise TypeError(f"{where}: model must be a bptt RNN, got {type(model).__name__}")
        if model.output.name != "softmax":
            raise ValueError(f"{where}: model must have a softmax output, got {model.output.name!r}")
        real = not isinstance(temperature, bool) and isinstance(temperature, numbers.Real)
        if not real or not 0 < temperature < math.inf:
            raise ValueError(f"{where}: temperature must be a finite number > 0, got {temperature!r}")
        model._check_params(where)
        self.model = model.copy()
        self.temperature = float(temperature)
        p, dtype = self.model.params, self.model.dtype
        self.num_tokens = model.input_size
        self._cells = [_CELLS[layer.kind](layer, p, dtype) for layer in self.model.layers]
        self._table = self._cells[0].input_table(p.get("E"))
        # Upper layers read the layer below's h̃ through [V | b]ᵀ into their own input buffer.
        self._upper = [
            (cell, below.h1, cell.input_matrix(), np.empty(cell.zh.shape[0], dtype))
            for cell, below in zip(self._cells[1:], self._cells[:-1], strict=True)
        ]
        self._first, self._top = self._cells[0], self._cells[-1].h1
        U, U_x, b_y = self.model.readout.weights(p)
        inv = 1.0 / self.temperature
        with np.errstate(over="ignore"):
            self._UT = _aug(U * inv, None if b_y is None else b_y * inv, dtype)
            self._U_x = None if U_x is None else np.ascontiguousarray(U_x.T * inv)  # (N, O): column k of U_x / τ
        # A margin of 1e6 below overflow for the products with h̃ as well, not only the weights.
        big = float(np.abs(self._UT).sum(axis=0).max())
        if self._U_x is not None:
            big = max(big, float(np.abs(self._U_x).max()))
        if not np.isfinite(big) or big > np.finfo(dtype).max / 1e6:
            raise ValueError(f"{where}: temperature {temperature!r} is too small: the output weights / τ overflow")
        self._z = np.empty(self.model.output_size, dtype)
        self.reset(state)

    def reset(self, state: object = None) -> None:
        """Set the state (zeros if ``None``), as :meth:`RNN.forward`'s ``h0`` at batch size 1."""
        states = self.model._state(state, 1, "Stepper.reset")
        for cell, st in zip(self._cells, states, strict=True):
            cell.h[...] = st[0][0]
            if cell.c is not None:
                cell.c[...] = st[1][0]

    @property
    def state(self) -> dict[str, np.ndarray]:
        """The current state, keyed like :attr:`Forward.state` (copies, each (1, H))."""
        values = []
        for cell in self._cells:
            values.append((cell.h[None].copy(),) if cell.c is None else (cell.h[None].copy(), cell.c[None].copy()))
        return self.model._state_dict(tuple(values))

    def feed(self, tokens: Sequence[int] | np.ndarray) -> np.ndarray:
        """Run a sequence of token ids (a prime) in one whole-sequence pass; return the last logits / τ.

        Returns
        -------
        ndarray, (O,)
            A buffer the next :meth:`step` or :meth:`feed` overwrites.
        """
        ids = np.asarray(tokens)
        if ids.ndim != 1 or ids.size == 0 or ids.dtype.kind not in "iu":
            raise ValueError(f"Stepper.feed: tokens must be a non-empty 1-D sequence of ints, got {ids!r}")
        if ids.size == 1:
            return self.step(int(ids[0]))
        fwd = self.model._forward(*self.model._prepare(ids[:, None], self.state, "Stepper.feed"))
        self.reset(fwd.state)
        np.multiply(fwd.logits[-1, 0], 1.0 / self.temperature, out=self._z)
        return self._z

    def step(self, token: int) -> np.ndarray:
        """Feed one token id; return the logits / τ of the next token (O,).

        The returned array is a buffer that the next call overwrites.
        """
        if not (type(token) is int or isinstance(token, np.integer)) or not 0 <= token < self.num_tokens:
            raise ValueError(f"Stepper.step: token must be an integer in [0, {self.num_tokens}), got {token!r}")
        self._first.run(self._table[token])  # V x_t + b is row `token` of the table
        for cell, h1_below, P, zx in self._upper:
            cell.run(np.dot(h1_below, P, out=zx))  # V h_t^(below) + b
        z = np.dot(self._top, self._UT, out=self._z)  # (U h_t + b_y) / τ
        if self._U_x is not None:
            z += self._U_x[token]
        return z
