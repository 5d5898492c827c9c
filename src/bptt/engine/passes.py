"""What the engine's passes take and give: layer descriptions, forward results, backward results, dropout masks.

These are immutable values: :meth:`bptt.engine.stack.Stack.run` returns a :class:`Forward`
holding everything its backward pass needs, :meth:`~bptt.engine.stack.Stack.backprop` a
:class:`Backprop`; nothing about a pass is stored on the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from .layers.base import Adjoints, Padding

if TYPE_CHECKING:  # the stack builds on this module
    from .stack import Stack

__all__ = [
    "Backprop",
    "DropoutMasks",
    "Forward",
    "LayerBackprop",
    "LayerSpec",
    "States",
    "check_masks",
    "draw_masks",
    "longest_first",
]

States = tuple[tuple[np.ndarray, ...], ...]  # per layer, its state variables, each (B, H_k)


@dataclass(frozen=True)
class LayerSpec:
    """One layer of a stack, for :class:`RNN`.

    Parameters
    ----------
    kind : str
        ``"elman"``, ``"lstm"`` or ``"gru"``.
    hidden_size : int
        Size H of the layer's hidden state.
    activation : str
        ``f_h`` of an Elman layer (``"tanh"``, ``"relu"``, ``"sigmoid"``, ``"identity"``);
        LSTM and GRU layers have fixed gate activations.
    bidirectional : bool
        Add a reverse twin that reads each sequence's real steps backwards (parameters and
        states named with ``_reverse`` after the layer suffix); the layer's output at step t is
        ``[h_t; h_t^reverse]`` (2H), the next layer's input.
    reset_after : bool
        GRU only: ``True`` is PyTorch's GRU (reset applied to ``W_n h + b_hn``); ``False`` the
        original of Cho et al. (Keras 2 / TF1's default), ``n = tanh(V_n x + b_n + W_n (r ⊙ h))``.
    """

    kind: str
    hidden_size: int
    activation: str = "tanh"
    bidirectional: bool = False
    reset_after: bool = True

    def description(self) -> dict[str, Any]:
        """As stored in a config: the options left at their defaults are not written."""
        d: dict[str, Any] = dict(kind=self.kind, hidden_size=self.hidden_size, activation=self.activation)
        if self.bidirectional:
            d["bidirectional"] = True
        if not self.reset_after:
            d["reset_after"] = False
        return d

    @property
    def width(self) -> int:
        """Size of the layer's output: H, or 2H when bidirectional."""
        return self.hidden_size * (2 if self.bidirectional else 1)


@dataclass(frozen=True)
class Forward:
    """Result of :meth:`Stack.run`: every hidden state and output, and the backward cache.

    Attributes
    ----------
    outputs : ndarray, (T, B, O), or (B, O) when ``final``
        ``ŷ_t = f_y(z2_t)`` for every step (at padding steps, the readout of a zero hidden state,
        ``f_y(b_y)``, as a Linear on ``pad_packed_sequence``'s output).
    logits : ndarray, shaped like ``outputs``
        ``z2_t``, the output pre-activations.
    hidden : tuple of ndarray, each (T, B, H_k) or (T, B, 2H_k) for a bidirectional layer
        Every layer's output ``h_1 .. h_T``, bottom first: ``[h_t; h_t^reverse]`` for a
        bidirectional layer, 0 at padding steps, after the dropout mask of that layer if any.
    state : dict of ndarray, each (B, H_k)
        Final state, keyed like the initial state (``"h0"``, ``"c0"``, …): pass
        it as ``h0`` to continue the sequence.
    x : ndarray
        The validated input.
    caches : tuple
        One immutable cache per layer and direction (``ElmanCache``, ``LSTMCache``, ``GRUCache``,
        ``ClassicGRUCache``), in the order of :attr:`Stack.layers`, in the layers' own order: a
        reverse layer's steps reversed, and the rows sorted by ``rows`` when there is padding.
    lengths : ndarray (B,) or None
        Real steps of each sequence (``None``: all T).
    rows : ndarray (B,) or None
        The layers' row order for a padded batch whose lengths are not already longest first: cache
        row ``i`` (and adjoint row ``i`` of a kept backward pass) is sequence ``rows[i]``. ``None``:
        the batch's own order. Everything else here is in the batch's own order.
    dropout : DropoutMasks or None
        The masks this pass used (``None``: no dropout).
    final : bool
        Many-to-one: ``outputs`` and ``logits`` are ``(B, O)``, read from the top layer's final
        states (``[h at the last real step; h^reverse at step 0]``) instead of every step.
    """

    outputs: np.ndarray
    logits: np.ndarray
    hidden: tuple[np.ndarray, ...]
    state: dict[str, np.ndarray]
    x: np.ndarray
    caches: tuple[Any, ...]
    lengths: np.ndarray | None = None
    dropout: DropoutMasks | None = None
    final: bool = False
    rows: np.ndarray | None = None

    @cached_property  # frozen dataclasses allow it: it writes the instance dict, not an attribute
    def padding(self) -> Padding | None:
        """The padding of the batch, in its own row order."""
        return None if self.lengths is None else Padding.of(self.lengths, self.x.shape[0])

    @cached_property
    def layer_padding(self) -> Padding | None:
        """The padding as the layers ran it: rows sorted by :attr:`rows`, longest first."""
        if self.rows is None:
            return self.padding
        return None if self.lengths is None else Padding.of(self.lengths[self.rows], self.x.shape[0])

    def in_batch_order(self, a: np.ndarray, axis: int = 1) -> np.ndarray:
        """Layer-ordered rows of ``a`` (a cache field, an adjoint; batch on ``axis``) in the batch's order."""
        return a if self.rows is None else np.take(a, np.argsort(self.rows), axis=axis)


@dataclass(frozen=True)
class DropoutMasks:
    """The dropout masks of one training pass, to inspect or replay it (entries 0 or 1/(1 − p)).

    Attributes
    ----------
    outputs : tuple of ndarray, each (T, B, width_k)
        ``dropout``: multiplies the output of layer k, for every layer but the last.
    recurrent : dict of ndarray, each (B, H)
        ``recurrent_dropout``: keyed by the layer's (and direction's) h state name (``"h0"``,
        ``"h0_l1_reverse"``); multiplies ``h_{t-1}`` where it enters ``W h_{t-1}``, the same
        mask at every step.
    """

    outputs: tuple[np.ndarray, ...] = ()
    recurrent: dict[str, np.ndarray] = field(default_factory=dict)

    def take_rows(self, rows: np.ndarray | None) -> DropoutMasks:
        """The masks of sequences ``rows`` (in that order), as the layers of a sorted batch use them."""
        if rows is None:
            return self
        return DropoutMasks(
            outputs=tuple(np.take(m, rows, axis=1) for m in self.outputs),
            recurrent={k: m[rows] for k, m in self.recurrent.items()},
        )


def longest_first(lengths: np.ndarray | None) -> np.ndarray | None:
    """The order that sorts a padded batch longest first (stable), or ``None`` when it already is.

    The layers' fast kernels then run step ``t`` on the first ``n_t`` rows only (:class:`Padding`).
    """
    if lengths is None or np.all(lengths[:-1] >= lengths[1:]):
        return None
    return np.argsort(-lengths, kind="stable")


@dataclass(frozen=True)
class LayerBackprop:
    """One layer's part of a kept backward pass (:meth:`Stack.backprop` with ``keep=True``).

    Attributes
    ----------
    dh_direct : ndarray, (T, B, H)
        ∂J/∂h_t through step t's own consumers (the output layer or the layer above).
    adjoints : Adjoints
        The layer's per-step gradients (``d_in``, ``d_rec``, total ``dh``, ``dstate0``).
    """

    dh_direct: np.ndarray
    adjoints: Adjoints


@dataclass(frozen=True)
class Backprop:
    """Result of :meth:`Stack.backprop`.

    Attributes
    ----------
    grads : dict of ndarray
        Every parameter, every initial state, and ``"x"`` for float inputs.
    layers : tuple of LayerBackprop
        Bottom first; empty unless the pass was kept.
    d_first_input : ndarray, (T, B, D₁) or None
        ∂J/∂ of the first layer's input (``e_t`` with an embedding, else ``x_t`` through the
        layers only), when kept; ``None`` for token ids without an embedding.
    """

    grads: dict[str, np.ndarray]
    layers: tuple[LayerBackprop, ...] = ()
    d_first_input: np.ndarray | None = None


def draw_masks(stack: Stack, T: int, B: int, rng: np.random.Generator) -> DropoutMasks:
    """Inverted-dropout masks for one pass: each entry kept with probability 1 − p and scaled by
    1/(1 − p) (so nothing changes in expectation), drawn from ``rng`` in a fixed order."""

    def mask(p: float, shape: tuple[int, ...]) -> np.ndarray:
        keep = rng.random(shape) >= p
        return keep.astype(stack.dtype) * stack.dtype.type(1.0 / (1.0 - p))

    outputs: tuple[np.ndarray, ...] = ()
    if stack.dropout > 0:
        outputs = tuple(mask(stack.dropout, (T, B, spec.width)) for spec in stack.specs[:-1])
    recurrent = {}
    if stack.recurrent_dropout > 0:
        recurrent = {
            layer.state_names[0]: mask(stack.recurrent_dropout, (B, layer.hidden_size)) for layer in stack.layers
        }
    return DropoutMasks(outputs=outputs, recurrent=recurrent)


def check_masks(stack: Stack, masks: object, T: int, B: int, where: str) -> DropoutMasks:
    """Replayed masks must fit this network and batch: one per layer but the last, one per h state."""
    if not isinstance(masks, DropoutMasks):
        raise TypeError(f"{where}: dropout_masks must be the DropoutMasks of an earlier result")
    if masks.outputs and len(masks.outputs) != stack.num_layers - 1:
        raise ValueError(
            f"{where}: dropout_masks.outputs must have {stack.num_layers - 1} arrays (one per layer but "
            f"the last), got {len(masks.outputs)}"
        )
    for k, (m, spec) in enumerate(zip(masks.outputs, stack.specs, strict=False)):
        _fits(m, (T, B, spec.width), stack.dtype, f"dropout_masks.outputs[{k}]", where)
    h_sizes = {layer.state_names[0]: layer.hidden_size for layer in stack.layers}
    unknown = sorted(set(masks.recurrent) - set(h_sizes))
    if unknown:
        raise ValueError(f"{where}: dropout_masks.recurrent has keys {unknown}; expected some of {list(h_sizes)}")
    for name, m in masks.recurrent.items():
        _fits(m, (B, h_sizes[name]), stack.dtype, f"dropout_masks.recurrent[{name!r}]", where)
    return masks


def _fits(a: object, shape: tuple[int, ...], dtype: np.dtype, name: str, where: str) -> None:
    if not isinstance(a, np.ndarray) or a.shape != shape or a.dtype != dtype:
        got = f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
        raise ValueError(f"{where}: {name} must be a {dtype} array of shape {shape}, got {got}")
