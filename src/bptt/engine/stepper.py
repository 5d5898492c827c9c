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

Each layer's step is its cell's token kernel (``token_kernel`` in
``bptt/engine/layers/<cell>.py``, beside the cell's equations); this module only wires the
layers together. It always runs those fast kernels, whatever the model's ``kernels``
setting; ``tests/test_kernels.py`` holds them equal to the reference step
(:meth:`bptt.RNN.run_step` of ``model.with_kernels("reference")``). The logits equal those of
:meth:`bptt.RNN.forward` up to rounding (the products are summed in a different order). The model
is copied: training it afterwards does not change a stepper built before.

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

from collections.abc import Sequence

import numpy as np

from .. import _checks
from .layers.base import augmented
from .network import RNN

__all__ = ["Stepper"]


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
        self.temperature = _checks.real(temperature, "temperature", where)
        model.refuse_bidirectional(where)
        model.check_params(where)
        self.model = model.copy()
        p, dtype = self.model.params, self.model.dtype
        self.num_tokens = model.input_size
        self._cells = [layer.token_kernel(p, dtype) for layer in self.model.layers]
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
            self._UT = augmented(U * inv, None if b_y is None else b_y * inv, dtype)
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
        states = self.model.layer_states(state, 1, "Stepper.reset")
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
        return self.model.name_states(tuple(values))

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
        fwd = self.model.run(*self.model.prepare(ids[:, None], self.state, "Stepper.feed"))
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
