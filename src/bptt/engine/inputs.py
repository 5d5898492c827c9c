"""Input projections ``V x_t (+ b)`` for every step at once, dense or from token ids.

A recurrent layer's input term does not depend on the previous state, so it is
computed for the whole sequence before the time loop: one matrix product over
all ``T·B`` rows for dense inputs, or a row gather for token ids (the one-hot
vector is never materialised: ``V onehot(i) = V[:, i]``).

The backward pass mirrors this: ``∂J/∂V = Σ_t dA_tᵀ x_t`` is one matrix product
for dense inputs and a scatter-sum of the rows of ``dA`` into the columns of
``V`` named by the tokens (sort by token, one sum per distinct token over its rows; no ``np.add.at``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["input_grad", "input_term", "is_tokens", "project", "project_backward", "scatter_rows"]


def is_tokens(x: np.ndarray) -> bool:
    """True when ``x`` holds integer token ids (shape ``(T, B)``) rather than vectors."""
    return x.dtype.kind in "iu"


def project(
    x: np.ndarray,
    V: np.ndarray,
    out: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    scale: np.ndarray | None = None,
) -> np.ndarray:
    """Input term ``A_t = (V x_t + b) ⊙ s`` for every step (``b``, ``s`` optional).

    Parameters
    ----------
    x : ndarray, (T, B, D) float or (T, B) int
        Inputs, or token ids standing for one-hot vectors of size D.
    V : ndarray, (H, D)
        Input weight, oriented (out, in).
    out : ndarray, (T, B, H), C-contiguous, optional
        Where to write the result (e.g. a slice of a larger buffer).
    bias, scale : ndarray, (H,), optional
        ``b`` added to and ``s`` multiplied into every step. For token ids that gather from a
        table, both go into the table first (``(V onehot(i) + b) ⊙ s`` is row ``i`` of
        ``(Vᵀ + b) ⊙ s``): no extra pass over the window.

    Returns
    -------
    ndarray, (T, B, H), C-contiguous: ``out``, or a fresh array (safe to add into).
    """
    T, B = x.shape[:2]
    if out is None:
        out = np.empty((T, B, V.shape[0]), V.dtype)
    elif not out.flags.c_contiguous or out.shape != (T, B, V.shape[0]):
        raise ValueError(f"project: out must be a C-contiguous {(T, B, V.shape[0])} array, got {out.shape}")
    tokens, D = is_tokens(x), V.shape[1]
    if tokens and (x.min() < 0 or x.max() >= D):  # O(T·B), against the O(T·B·H) gather
        raise ValueError(f"project: token ids must lie in [0, {D}), got [{x.min()}, {x.max()}]")
    if tokens and x.size * V.shape[0] >= V.size:
        # (T, B, H): row x_t of the table Vᵀ for every (t, b). Gathering rows of a contiguous table
        # reads memory in order; indexing the strided view V.T directly is 4-5× slower.
        table = np.ascontiguousarray(V.T) if bias is None and scale is None else V.T.copy()
        if bias is not None:
            table += bias
        if scale is not None:
            table *= scale
        # mode="clip" never clips (the ids were checked above); take's default mode="raise" copies
        # through a hidden buffer when given ``out`` (about 25× slower for a fresh (T, B, 4H) array).
        np.take(table, x, axis=0, out=out, mode="clip")
        return out
    if tokens:  # fewer values gathered than V holds (e.g. one step): no table
        out[...] = V.T[x]
    else:
        np.matmul(x.reshape(T * B, -1), V.T, out=out.reshape(T * B, V.shape[0]))
    if bias is not None:
        out += bias
    if scale is not None:
        out *= scale
    return out


_ONE_HOT_LIMIT = 16384  # ids × destinations below which scatter_rows multiplies by a one-hot matrix


def scatter_rows(ids: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """Sum the rows of ``rows`` into the slots named by ``ids``.

    Parameters
    ----------
    ids : ndarray, (N,) int
        Destination of each row, in ``[0, n)``.
    rows : ndarray, (N, H)
    n : int
        Number of destinations.

    Returns
    -------
    ndarray, (n, H) with ``out[i] = Σ_{j: ids[j] = i} rows[j]``.
    """
    if ids.size * n <= _ONE_HOT_LIMIT:
        # Few rows: one product with the one-hot matrix beats a sum call per distinct id.
        one_hot = np.zeros((ids.size, n), rows.dtype)
        one_hot[np.arange(ids.size), ids] = 1.0
        return one_hot.T @ rows
    out = np.zeros((n, rows.shape[1]), dtype=rows.dtype)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    bounds = np.flatnonzero(sorted_ids[1:] != sorted_ids[:-1]) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [ids.size]))
    # One vectorised sum per distinct id (at most min(N, n) of them), over a gathered copy of that
    # id's rows only: gathering all rows at once would hold a second (N, H) array. np.add.reduceat
    # (axis=0) does the same sums but walks a 2-D array an order of magnitude slower.
    for i, a, b in zip(sorted_ids[starts].tolist(), starts.tolist(), ends.tolist(), strict=True):
        np.take(rows, order[a:b], axis=0).sum(axis=0, out=out[i])
    return out


def step_terms(d: np.ndarray, x: np.ndarray, n: int) -> np.ndarray:
    """Per-step terms ``d_t x_tᵀ`` summed over the batch: ``(T, G, n)`` from ``d`` (T, B, G).

    ``x`` is ``(T, B, n)`` floats or ``(T, B)`` token ids (a column scatter: no one-hot).
    """
    if not is_tokens(x):
        return np.einsum("tbg,tbd->tgd", d, x)
    T, B, G = d.shape
    out = np.zeros((T, G, n), d.dtype)
    steps = np.arange(T)
    for b in range(B):  # within one sequence each step names one column: no repeated indices
        out[steps, :, x[:, b]] += d[:, b]
    return out


def project_backward(
    dA: np.ndarray, x: np.ndarray, V: np.ndarray, need_dx: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Backward of :func:`project`.

    Parameters
    ----------
    dA : ndarray, (T, B, H)
        ``∂J/∂A_t`` for every step, where ``A_t = V x_t``.
    x : ndarray, (T, B, D) float or (T, B) int
    V : ndarray, (H, D)
    need_dx : bool
        Whether to return ``∂J/∂x`` (ignored for token inputs, which have none).

    Returns
    -------
    dV : ndarray, (H, D)
        ``Σ_t dA_tᵀ x_t``.
    dx : ndarray, (T, B, D) or None
        ``dA_t V`` for every step.
    """
    T, B, H = dA.shape
    dA2 = dA.reshape(T * B, H)
    if is_tokens(x):
        return scatter_rows(x.reshape(-1), dA2, V.shape[1]).T, None
    D = x.shape[-1]
    dV = dA2.T @ x.reshape(T * B, D)
    dx = (dA2 @ V).reshape(T, B, D) if need_dx else None
    return dV, dx


def input_term(V: np.ndarray, x_t: np.ndarray) -> np.ndarray:
    """``V x_t`` for one step, ``(B, G)``: a product for vectors ``(B, D)``, columns of ``V`` for ids ``(B,)``."""
    return V.T[x_t] if is_tokens(x_t) else x_t @ V.T


def input_grad(d: np.ndarray, x_t: np.ndarray, n: int) -> np.ndarray:
    """One step's term of ``∂J/∂V``: ``dᵀ x_t`` ``(G, n)`` from ``d`` (B, G); for ids, ``dᵀ onehot(x_t)``."""
    if not is_tokens(x_t):
        return d.T @ x_t
    onehot = np.zeros((x_t.shape[0], n), d.dtype)
    onehot[np.arange(x_t.shape[0]), x_t] = 1.0
    return d.T @ onehot
