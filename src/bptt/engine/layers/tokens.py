"""One layer prepared for generation, one token at a time at batch size 1 (the cells' token kernels build on it)."""

from __future__ import annotations

import numpy as np

__all__ = ["TokenKernel", "augmented"]


def augmented(M: np.ndarray, column: np.ndarray | None, dtype) -> np.ndarray:
    """``[M | column]ᵀ`` as a C-contiguous ``(in + 1, out)`` matrix (zeros when there is no column).

    With a state carrying a trailing 1, ``h̃ = [h; 1]``, ``h̃ @ [M | c]ᵀ = M h + c``: a bias
    folded into the product. Stored transposed: ``h̃ @ Mᵀ`` runs BLAS's transposed
    matrix-vector kernel, up to 20% faster than ``M @ h̃`` for tall gate matrices.
    """
    out = np.zeros((M.shape[1] + 1, M.shape[0]), dtype)
    out[:-1] = M.T
    if column is not None:
        out[-1] = column
    return out


class TokenKernel:
    """One layer's weights prepared for generation at batch size 1; :meth:`run` advances ``h`` (``c``) in place.

    At batch size 1 every NumPy call costs about the same microsecond, so a step is the
    recurrent matrix-vector product and as few element-wise calls as the cell allows,
    into buffers allocated once. ``scale`` halves the rows of σ gates in the input term
    (``σ(a) = (1 + tanh(a/2)) / 2``: one tanh serves every gate); ``rec_scale`` does the
    same for the recurrent term.

    ======  ============  ===========================================================
    symbol  shape         meaning
    ======  ============  ===========================================================
    RT      (H+1, G·H)    ``[W | c]ᵀ``: recurrent weight and recurrent-side bias, scaled
    h1      (H+1,)        ``h̃ = [h; 1]``; ``h`` is a view of its first H entries
    zh      (G·H,)        buffer for the recurrent term
    ======  ============  ===========================================================
    """

    def __init__(self, V, W, in_bias, rec_bias, scale, rec_scale, dtype) -> None:
        G, Hs = W.shape
        self.RT = augmented(W * rec_scale[:, None], None if rec_bias is None else rec_bias * rec_scale, dtype)
        self.V, self.in_bias, self.scale = V, in_bias, scale
        self.h1 = np.zeros(Hs + 1, dtype)  # h̃ = [h; 1]
        self.h1[-1] = 1.0
        self.h = self.h1[:-1]
        self.c: np.ndarray | None = None
        self.zh = np.empty(G, dtype)

    def input_table(self, E: np.ndarray | None) -> np.ndarray:
        """``(N, G·H)``: the input term ``V x + b`` for each token id (σ rows halved), through ``E`` if given."""
        VE = self.V if E is None else self.V @ E
        table = np.ascontiguousarray(VE.T * self.scale)
        if self.in_bias is not None:
            table += self.in_bias * self.scale
        return table

    def input_matrix(self) -> np.ndarray:
        """``[V | b]ᵀ`` (σ rows halved), applied to the layer below's ``h̃``."""
        b = None if self.in_bias is None else self.in_bias * self.scale
        return augmented(self.V * self.scale[:, None], b, self.V.dtype)

    def run(self, zx: np.ndarray) -> None:
        """One step on the input term ``zx`` (G·H,), as prepared by :meth:`input_table` or :meth:`input_matrix`."""
        raise NotImplementedError
