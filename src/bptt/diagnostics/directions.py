"""One direction of a bidirectional network as a recurrence of its own, for :func:`jacobian_map`.

In a bidirectional stack the full state ``s_t`` (every layer, both directions) is not a
function of ``s_{t-1}`` and ``x_t``: the reverse layers have read the steps after ``t``. Each
*direction* is a recurrence, though, once the other direction's outputs are taken as given.
For direction ``d`` with layers ``1 .. L`` (one per level) and the other direction's outputs
``ō^(k)_t`` of the full forward pass::

    u^(1)_t = e_t                                   (x_t, or E x_t with an embedding)
    u^(k)_t = [h^(k-1)_t; ō^(k-1)_t]                forward direction  (the stack's [fwd; rev] order)
            = [ō^(k-1)_t; h^(k-1)_t]                reverse direction
    s^(k)_t = cell_k(u^(k)_t, s^(k)_{t-1})          in the direction's own step order

(In a stack that mixes one-way and bidirectional levels, a reverse layer above a one-way level
reads that level's whole output as given, and the reverse direction has no layer at such a level.)

so ``s_t = (s^(1)_t, …, s^(L)_t)`` is a function of ``s_{t-1}`` and step ``t``'s inputs, and
``J_t = ∂s_t/∂s_{t-1}`` holds ``ō`` fixed: how the direction carries its own memory. The
reverse direction's steps run from the sequence's last real step to its first: its step ``t``
(1-based) reads ``x`` at step ``length − t``.

:class:`DirectionNet` offers the few calls :func:`jacobian_map` makes of a network
(``forward`` over a window of steps from a batch of states, ``backward`` from a gradient at
the final state, ``state_at``, ``state_shapes``), running each layer's reference step
(``step_forward`` / ``step_backward``: the cell's own equations, exact in float64). Each step's
inputs — ``e_t`` and the ``ō^(k)_t`` — travel together as one dense row, so a window starting
anywhere reads its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine.inputs import project
from ..engine.network import RNN

__all__ = ["DIRECTIONS", "DirectionNet"]

DIRECTIONS = ("forward", "reverse")


@dataclass(frozen=True)
class _Pass:
    """A window run by :meth:`DirectionNet.forward`: per step, per layer, what its backward reads."""

    logits: np.ndarray  # (L, K, 0): no readout; only the shape is read
    state: dict[str, np.ndarray]  # final states, keyed by state name
    steps: tuple  # per step: per layer (u, state_prev, kept)
    states: tuple  # per step: the states after it, keyed by state name


class DirectionNet:
    """Direction ``direction`` of the bidirectional network ``m`` (float64) on one sequence ``x1``.

    Parameters
    ----------
    m : RNN
        A float64 bidirectional network.
    x1 : ndarray, (T, 1, D) float or (T, 1) int
        The sequence's real steps, batch size 1.
    h0 : dict of ndarray, (1, H_k)
        Initial states of every layer and direction.
    direction : str
        ``"forward"`` or ``"reverse"``.
    """

    def __init__(self, m: RNN, x1: np.ndarray, h0: dict[str, np.ndarray], direction: str) -> None:
        self.reverse = direction == "reverse"
        # The direction's layers, bottom first, with their levels (a one-way level has no reverse layer).
        chain = [(k, j) for k, level in enumerate(m.levels) for j in level if m.is_reverse(j) == self.reverse]
        self.levels = tuple(k for k, _ in chain)
        self.indices = tuple(j for _, j in chain)  # positions in m.layers
        self.layers = tuple(m.layers[j] for j in self.indices)
        self.weights = tuple(layer.weights(m.params) for layer in self.layers)
        self.state_shapes = {name: (layer.hidden_size,) for layer in self.layers for name in layer.state_names}
        # live[i]: layer i reads the h of layer i - 1 (the level right below runs this way too)
        self.live = tuple(i > 0 and self.levels[i - 1] == k - 1 for i, k in enumerate(self.levels))
        # Each step's fixed inputs, one dense row per step: per layer, the part of its input that is not
        # this direction's own h: e_t at the bottom, else the other direction's half of the level below
        # (all of it when the level below has no layer of this direction).
        x = x1
        if x.dtype.kind != "f":  # token ids: their one-hot rows (V e_id is V's column, exactly)
            x = np.eye(m.input_size)[x[:, 0]][:, None]
        e = x if m.embedding_size is None else project(x, m.params["E"])
        hidden = m.forward(x1, h0).hidden  # every level's output, (T, 1, width)
        parts = []
        for i, k in enumerate(self.levels):
            below = e if k == 0 else hidden[k - 1]
            if self.live[i]:  # drop this direction's own half: [h; ō] going forward, [ō; h] in reverse
                H = self.layers[i - 1].hidden_size
                below = below[..., : below.shape[-1] - H] if self.reverse else below[..., H:]
            parts.append(below)
        self.cuts = np.cumsum([0, *(p.shape[-1] for p in parts)])
        rows = np.concatenate(parts, axis=-1)
        self.inputs = rows[::-1].copy() if self.reverse else rows  # (T, 1, D_aug), in the direction's order

    def _layer_input(self, i: int, row: np.ndarray, below: np.ndarray | None) -> np.ndarray:
        """``u`` of layer ``i`` from the step's row of fixed inputs and the h of layer ``i − 1``."""
        fixed = row[:, self.cuts[i] : self.cuts[i + 1]]
        if not self.live[i]:
            return fixed
        return np.concatenate((fixed, below) if self.reverse else (below, fixed), axis=1)

    def forward(self, x: np.ndarray, h0: dict[str, np.ndarray]) -> _Pass:
        """The direction over the steps ``x`` (L, K, D_aug) from the states ``h0`` ((K, H_k) each)."""
        state = [tuple(h0[name] for name in layer.state_names) for layer in self.layers]
        steps, states = [], []
        for row in x:
            below, per_layer = None, []
            for k, (layer, w) in enumerate(zip(self.layers, self.weights, strict=True)):
                u = self._layer_input(k, row, below)
                new, kept = layer.step_forward(w, u, state[k])
                per_layer.append((u, state[k], kept))
                state[k], below = new, new[0]
            steps.append(tuple(per_layer))
            states.append(self._named(state))
        return _Pass(
            logits=np.zeros((*x.shape[:2], 0)), state=self._named(state), steps=tuple(steps), states=tuple(states)
        )

    def backward(self, fwd: _Pass, d_logits: object, d_state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``∂/∂h0`` of ``Σ d_state · s_L``, keyed by state name (``d_logits`` is ignored: no readout)."""
        carry = [tuple(d_state[name] for name in layer.state_names) for layer in self.layers]
        for per_layer in reversed(fwd.steps):
            from_above = None
            for k in range(len(self.layers) - 1, -1, -1):
                layer, (u, prev, kept) = self.layers[k], per_layer[k]
                dstate = carry[k] if from_above is None else (carry[k][0] + from_above, *carry[k][1:])
                g = layer.step_backward(self.weights[k], u, prev, kept, dstate)
                carry[k] = g.dstate
                if self.live[k]:  # the part of ∂J/∂u^(k) that is the layer below's h
                    H = self.layers[k - 1].hidden_size
                    from_above = g.dx[:, -H:] if self.reverse else g.dx[:, :H]
        return self._named(carry)

    def state_at(self, fwd: _Pass, t: int) -> dict[str, np.ndarray]:
        """The states after step ``t`` (0-based, in the direction's order)."""
        return fwd.states[t]

    def _named(self, per_layer) -> dict[str, np.ndarray]:
        return {
            name: s
            for layer, st in zip(self.layers, per_layer, strict=True)
            for name, s in zip(layer.state_names, st, strict=True)
        }
