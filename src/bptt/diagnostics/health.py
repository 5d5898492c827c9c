"""Training health: signs that BPTT's gradients explode or vanish.

Backpropagating from step ``t`` to an earlier step ``k`` multiplies one Jacobian
per step in between; for the lecture's Elman layer::

    ∂h_t/∂h_k = Π_{i=k+1..t} diag(f_h'(a_i)) W

Two things decide whether that product grows or shrinks with ``t − k``:

* the recurrent weight ``W``: a spectral radius ``ρ(W)`` above 1 lets the
  products ``W^g`` explode, below 1 makes them vanish (:func:`recurrent_weights`);
* the activations: a saturated unit has ``f' ≈ 0`` and passes almost no gradient
  back (:func:`saturation`).

:func:`bptt.jacobians.jacobian_map` reports both for one sequence. Training reports
them in every ``metrics.jsonl`` row (one per evaluation), next to the gradient
norms that the training steps computed anyway (no extra forward or backward pass):

============================  ===============================================================
key                           meaning
============================  ===============================================================
``grad_norm``                 global ‖∂J/∂θ‖ of the interval's last step, before clipping
``grad_norm_max``             largest global norm over the steps since the last evaluation
``grad_norm_mean``            their mean
``clipped_steps``             how many of those steps were clipped (norm > ``clip``)
``grad_norm/<param>``         per parameter (``grad_norm/W``, ``grad_norm/W_l1``, …), at the
                              interval's last step, before clipping: a snapshot like
                              ``grad_norm`` (spikes in between show in ``grad_norm_max``)
``spectral_norm/layer<k>``    ‖W‖₂ of layer k's recurrent weight after the last update (the
                              whole ``(G·H, H)`` gate stack of an LSTM/GRU layer)
``spectral_radius/layer<k>``  its largest |eigenvalue| (over the gate blocks for LSTM/GRU):
                              above 1 the products ``W^g`` of BPTT can explode, below 1 vanish
``saturation/layer<k>``       fraction of layer k's units saturated (``|tanh| > 0.99``, σ
                              outside [0.01, 0.99], ReLU at 0), averaged over every step and
                              stream of the interval's last training window
============================  ===============================================================

The last three come from :func:`layer_health`. The evaluation log line gets a short
warning (:func:`health_note`) when more than half of the interval's steps were clipped
or a layer is more than 90% saturated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from ..engine.network import RNN, Forward

__all__ = [
    "CLIPPED_ALARM",
    "SATURATED_ALARM",
    "SATURATION",
    "health_note",
    "layer_health",
    "recurrent_weights",
    "saturation",
    "steps_as_one_sequence",
]

GATE_NAMES = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}  # the blocks of W, top to bottom
SATURATION = 0.99  # |tanh| above this, or a sigmoid outside [1 - SATURATION, SATURATION], is saturated
CLIPPED_ALARM = 0.5  # a health note when more than this fraction of an interval's steps was clipped
SATURATED_ALARM = 0.9  # … or when more than this fraction of a layer's units is saturated


def recurrent_weights(
    model: RNN,
) -> tuple[tuple[str, ...], dict[int, float], dict[int, float], dict[int, dict[str, float]]]:
    """Per layer: the recurrent matrix, its spectral norm and radius, and each gate's radius.

    =========  ========  ===================================================================
    symbol     shape     meaning
    =========  ========  ===================================================================
    W          (H, H)    an Elman layer's recurrent weight (``W`` or ``W_ss``; in concat
                         notation the state block ``W_ssx[:, :H]``)
    W          (G·H, H)  an LSTM (G = 4: gates i, f, g, o) or GRU (G = 3: r, z, n) layer's
                         recurrent weights, one ``(H, H)`` block ``W_gate`` per gate
    ‖W‖₂       scalar    spectral norm: the largest singular value
    ρ(W)       scalar    spectral radius: the largest ``|eigenvalue|``
    =========  ========  ===================================================================

    Parameters
    ----------
    model : RNN
        Any bptt network (read only).

    Returns
    -------
    names : tuple of str
        Per layer, bottom first, the matrix described: ``"W"``, ``"W_l1"``, ``"W_ssx[:, :32]"``, …
    spectral_norm : dict of int to float
        Layer index (0 = bottom) → ``‖W‖₂``; for LSTM/GRU of the whole ``(G·H, H)`` stack.
    spectral_radius : dict of int to float
        Layer index → ``ρ(W)`` of an Elman layer; for LSTM/GRU the largest ``ρ(W_gate)``
        over the square gate blocks (each gate's own recurrence).
    gate_spectral_radius : dict of int to dict of str to float
        Gated layers only: layer index → ``{gate: ρ(W_gate)}``.
    """
    names, norms, radii, gates = [], {}, {}, {}
    for k, layer in enumerate(model.layers):
        Hs = layer.hidden_size
        if layer.kind == "elman":
            W = layer.weights(model.params)[1]  # (H, H); the state block of W_ssx in concat notation
            rec = layer.names[1]
            names.append(f"{rec}[:, :{Hs}]" if layer.notation == "concat" else rec)
            norms[k] = float(np.linalg.norm(W, 2))
            radii[k] = float(np.abs(np.linalg.eigvals(W)).max())
            continue
        W = model.params["W" + layer.suffix]  # (G·H, H): blocks [i; f; g; o] or [r; z; n]
        names.append("W" + layer.suffix)
        norms[k] = float(np.linalg.norm(W, 2))
        blocks = W.reshape(-1, Hs, Hs)
        gates[k] = {
            g: float(np.abs(np.linalg.eigvals(Wg)).max()) for g, Wg in zip(GATE_NAMES[layer.kind], blocks, strict=True)
        }
        radii[k] = max(gates[k].values())
    return tuple(names), norms, radii, gates


def saturation(model: RNN, fwd: Forward) -> np.ndarray:
    """Fraction of saturated units per step and layer, for the first sequence of a batch.

    A saturated unit's derivative is ≈ 0, so it passes almost no gradient back through
    ``J_t``. What counts as saturated (thresholds from :data:`SATURATION`):

    * Elman ``h_t = f_h(a_t)``: ``|h| > 0.99`` (tanh); ``h < 0.01`` or ``h > 0.99``
      (sigmoid); ``h = 0`` (relu: an inactive unit); never (identity).
    * LSTM / GRU: every gate activation counts, ``H`` per gate: σ gates (i, f, o; r, z)
      outside ``[0.01, 0.99]``, tanh candidates (g; n) with ``|·| > 0.99``.

    Parameters
    ----------
    model : RNN
        The network that made ``fwd``.
    fwd : Forward
        From ``model.forward`` on ``(T, B, ·)`` inputs. Only sequence 0 of the batch is
        read (its caches ``H`` are ``(T, B, H)``, ``G`` are ``(T, B, G·H)``); view all ``B``
        sequences as one with :func:`steps_as_one_sequence` to count them all.

    Returns
    -------
    ndarray, (T, L) float64
        Row ``t``, column ``k``: the fraction in ``[0, 1]`` of layer ``k``'s units
        saturated at step ``t``; NaN at the sequence's padding steps (with ``lengths``), which are
        no steps at all.
    """
    T = fwd.logits.shape[0]
    b = 0 if fwd.rows is None else int(np.flatnonzero(fwd.rows == 0)[0])  # the caches' row of sequence 0
    lo, hi = 1.0 - SATURATION, SATURATION
    out = np.empty((T, len(model.layers)))  # every layer and direction, in the order of model.layers
    for k, (layer, cache) in enumerate(zip(model.layers, fwd.caches, strict=True)):
        if layer.kind == "elman":
            Hk = cache.H[:, b]  # (T, H)
            name = layer.activation.name
            if name == "tanh":
                sat = np.abs(Hk) > SATURATION
            elif name == "sigmoid":
                sat = (Hk < lo) | (Hk > hi)
            elif name == "relu":
                sat = Hk == 0.0  # inactive: no gradient passes
            else:
                sat = np.zeros(Hk.shape, bool)  # identity never saturates
        else:
            G = cache.G[:, b].reshape(T, -1, layer.hidden_size)  # (T, gates, H) activations
            tanh_gate = 2  # g of [i, f, g, o]; n of [r, z, n]
            sat = (G < lo) | (G > hi)
            sat[:, tanh_gate] = np.abs(G[:, tanh_gate]) > SATURATION
        out[:, k] = sat.reshape(T, -1).mean(axis=1)
    pad = fwd.layer_padding  # rows as the layers ran them; a reverse layer's real steps also come first
    if pad is not None:
        out[~pad.valid[:, b]] = np.nan
    return out


def steps_as_one_sequence(fwd: Forward) -> Forward:
    """``fwd`` with its ``(T, B, ·)`` caches viewed as one sequence of ``T·B`` steps (no copy; with
    ``lengths``, a copy of the real steps only).

    :func:`saturation` reads the first sequence of a batch; saturation is a per-unit,
    per-step property, so laying the ``B`` streams end to end lets it average over all
    of them. Only ``logits`` and the caches' ``H``, ``H_prev`` and ``G`` are reshaped
    (to ``(T·B, 1, ·)``): the result is for reading, not for a backward pass.
    """
    T, B = fwd.logits.shape[:2]
    real = None if fwd.lengths is None else fwd.layer_padding.valid  # (T, B): padding steps are left out

    def flat(a: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
        return a.reshape(T * B, 1, *a.shape[2:]) if rows is None else a[rows][:, None]

    names = ("H", "H_prev", "G")
    caches = tuple(replace(c, **{n: flat(getattr(c, n), real) for n in names if hasattr(c, n)}) for c in fwd.caches)
    logits = flat(fwd.logits, None if real is None else fwd.padding.valid)  # only its length is read
    return replace(fwd, logits=logits, caches=caches, rows=None, lengths=None)


def layer_health(model: RNN, fwd: Forward | None = None) -> dict[str, float]:
    """The per-layer keys of a ``metrics.jsonl`` row (module docstring).

    ``spectral_norm/layer<k>`` and ``spectral_radius/layer<k>`` of ``model``'s current
    weights, and, when ``fwd`` (a forward pass of ``model``) is given,
    ``saturation/layer<k>``: the fraction of saturated units over every step and
    sequence of ``fwd``.
    """
    _, W_norm, W_radius, _ = recurrent_weights(model)
    out: dict[str, float] = {}
    for k in range(len(model.layers)):
        out[f"spectral_norm/layer{k}"] = W_norm[k]
        out[f"spectral_radius/layer{k}"] = W_radius[k]
    if fwd is not None:
        per_layer = saturation(model, steps_as_one_sequence(fwd)).mean(axis=0)  # (L,)
        out.update({f"saturation/layer{k}": float(v) for k, v in enumerate(per_layer)})
    return out


def health_note(row: Mapping[str, Any], steps: int) -> str:
    """A short warning for the evaluation log line when the gradients look unhealthy, else ``""``.

    ``row`` is a ``metrics.jsonl`` row covering ``steps`` training steps: a warning when
    more than :data:`CLIPPED_ALARM` of them were clipped, or a layer's
    ``saturation/layer<k>`` is above :data:`SATURATED_ALARM`.
    """
    notes = []
    if row["clipped_steps"] > CLIPPED_ALARM * steps:
        notes.append(f"gradient clipped on {row['clipped_steps']} of {steps} steps (exploding gradients?)")
    for key, value in row.items():
        if key.startswith("saturation/") and value > SATURATED_ALARM:
            layer = key.removeprefix("saturation/layer")
            notes.append(f"{value:.0%} of layer {layer}'s units saturated (vanishing gradients?)")
    return f"; warning: {', '.join(notes)}; try a lower lr" if notes else ""
