"""An independent PyTorch (float64, autograd) oracle for variable-length, bidirectional and dropout passes.

It shares no code with ``bptt``: it reads only the architecture (``model.config()``), the
parameter arrays, the data and (for dropout) the masks, and rebuilds the pass from the
documented conventions:

* Names: a layer's ``V, W`` (``b_h`` for Elman, ``b`` for LSTM/GRU, plus ``b_hn`` for GRU)
  carry ``_l{k}`` in a stack of more than one layer and then ``_reverse`` for the reverse
  direction (``V_l1_reverse``; one layer: ``V_reverse``); the readout ``U`` is ``(O, H)`` or
  ``(O, 2H)`` for a bidirectional top layer, and ``b_y`` is ``(O,)``. States are ``h0`` (and
  ``c0`` for an LSTM) with the same suffixes, each ``(B, H)``.
* Torch mapping: ``V = weight_ih``, ``W = weight_hh``; LSTM ``bias_ih = b``, ``bias_hh = 0``;
  GRU ``bias_ih = b``, ``bias_hh = [0; 0; b_hn]``; Elman is ``torch.nn.RNN(nonlinearity)`` with
  ``bias_ih = b_h``, ``bias_hh = 0``; the reverse direction is torch's ``*_reverse`` weights.
* Two engines:

  - ``engine="nn"``: ``torch.nn.LSTM`` / ``GRU`` / ``RNN`` (``bidirectional=True`` where the
    layer is), fed through ``pack_padded_sequence(..., enforce_sorted=False)`` and unpacked
    with ``pad_packed_sequence`` (zeros at padding); consecutive identical layers share one
    module with ``num_layers > 1``; the weights are substituted with ``torch.func.functional_call``
    so the gradients land on the arrays given. ``lengths=None`` runs the padded tensor unpacked.
  - ``engine="loop"``: every layer written out as an explicit loop over time from the cell
    equations (LSTM gates ``i, f, g, o``; GRU ``r, z, n`` with
    ``n = tanh(V_n x + b_n + r ⊙ (W_n h + b_hn))``, ``h' = (1 − z) ⊙ n + z ⊙ h``); a padding
    step keeps the state and outputs 0; the reverse direction runs each sequence's valid steps
    ``lengths[b] − 1 … 0``. This is the engine that can replay dropout masks: an output mask
    ``(T, B, width_k)`` multiplies layer k's output (k < L − 1) before layer k + 1 reads it, and
    a recurrent mask ``(B, H)`` keyed by the layer's ``h`` state name multiplies ``h_{t−1}``
    only where it enters ``W h_{t−1}`` (not the GRU's ``z ⊙ h_{t−1}``, not the LSTM's cell).

* Targets: ``(T, B)`` int / ``(T, B, O)`` float put a loss at every valid step; ``(B,)`` int /
  ``(B, O)`` float put one loss per sequence on the top layer's final states
  ``[h_fwd after the last valid step; h_rev after step 0]`` (torch's ``h_n``). Losses:
  cross-entropy (softmax), binary cross-entropy from logits summed over outputs (sigmoid),
  ``½‖z − y‖²`` (identity); ``J = (1/B) Σ_b Σ_{valid t} Loss_tb``.

Token ids (integer ``x`` of shape ``(T, B)``) are one-hot vectors of size D.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

__all__ = ["Reference", "expected_param_shapes", "expected_state_shapes", "reference"]

DTYPE = torch.float64
GATES = {"elman": 1, "lstm": 4, "gru": 3}
ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}


@dataclass
class Reference:
    """What the oracle computed.

    Attributes
    ----------
    loss : float
    grads : dict of ndarray
        Every parameter, every initial state and (float inputs) ``"x"``.
    outputs : ndarray, (T, B, O) per-step or (B, O) many-to-one
        ``f_y`` of the logits (per-step: padding rows read a zero hidden state).
    state : dict of ndarray, each (B, H)
        Each sequence's state after its last valid step (reverse direction: after step 0).
    hidden : dict of int to ndarray, each (T, B, width_k)
        Layer outputs (``[h_fwd; h_rev]`` when bidirectional), zero at padding: every layer
        for the loop engine, the top layer of each module for the nn engine.
    """

    loss: float
    grads: dict[str, np.ndarray]
    outputs: np.ndarray
    state: dict[str, np.ndarray]
    hidden: dict[int, np.ndarray]


# -- names ---------------------------------------------------------------------------------------------


def _layer_suffixes(config: Mapping[str, Any]) -> list[str]:
    n = len(config["layers"])
    return [f"_l{k}" if n > 1 else "" for k in range(n)]


def _directions(spec: Mapping[str, Any]) -> list[str]:
    return ["", "_reverse"] if spec.get("bidirectional", False) else [""]


def _check_supported(config: Mapping[str, Any]) -> None:
    unsupported = {
        "notation": config.get("notation", "lecture") != "lecture",
        "output_reads_input": bool(config.get("output_reads_input")),
        "embedding_size": bool(config.get("embedding_size")),
        "bias": not config.get("bias", True),
    }
    bad = [k for k, v in unsupported.items() if v]
    if bad:
        raise ValueError(f"torch_sequences: settings {bad} are not modelled by this oracle")


def expected_param_shapes(config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes, from the documented conventions alone."""
    _check_supported(config)
    shapes: dict[str, tuple[int, ...]] = {}
    d = config["input_size"]
    for spec, s in zip(config["layers"], _layer_suffixes(config), strict=True):
        kind, H = spec["kind"], spec["hidden_size"]
        g = GATES[kind]
        for tail in _directions(spec):
            shapes["V" + s + tail] = (g * H, d)
            shapes["W" + s + tail] = (g * H, H)
            shapes[("b_h" if kind == "elman" else "b") + s + tail] = (g * H,)
            if kind == "gru":
                shapes["b_hn" + s + tail] = (H,)
        d = H * len(_directions(spec))
    shapes["U"] = (config["output_size"], d)
    shapes["b_y"] = (config["output_size"],)
    return shapes


def expected_state_shapes(config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Initial-state names mapped to ``(H_k,)``."""
    shapes = {}
    for spec, s in zip(config["layers"], _layer_suffixes(config), strict=True):
        for tail in _directions(spec):
            shapes["h0" + s + tail] = (spec["hidden_size"],)
            if spec["kind"] == "lstm":
                shapes["c0" + s + tail] = (spec["hidden_size"],)
    return shapes


# -- helpers -------------------------------------------------------------------------------------------


def _leaf(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(np.asarray(a, dtype=np.float64), dtype=DTYPE, requires_grad=True)


def _const(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(np.asarray(a, dtype=np.float64), dtype=DTYPE)


def _bias_name(kind: str) -> str:
    return "b_h" if kind == "elman" else "b"


def _loss(output: str, Z: torch.Tensor, y: np.ndarray) -> torch.Tensor:
    """Loss per row of the logits ``Z`` (..., O): shape ``Z.shape[:-1]``."""
    O = Z.shape[-1]
    if output == "softmax":
        target = torch.from_numpy(np.asarray(y, dtype=np.int64))
        return F.cross_entropy(Z.reshape(-1, O), target.reshape(-1), reduction="none").reshape(Z.shape[:-1])
    Y = _const(y)
    if output == "sigmoid":
        return F.binary_cross_entropy_with_logits(Z, Y, reduction="none").sum(dim=-1)
    if output == "identity":
        return 0.5 * ((Z - Y) ** 2).sum(dim=-1)
    raise ValueError(f"unknown output {output!r}")


def _f_y(output: str, Z: torch.Tensor) -> torch.Tensor:
    if output == "softmax":
        return torch.softmax(Z, dim=-1)
    if output == "sigmoid":
        return torch.sigmoid(Z)
    return Z


def _groups(config: Mapping[str, Any]) -> list[list[int]]:
    """Runs of consecutive identical layers (one ``torch.nn`` module each)."""
    groups: list[list[int]] = []
    specs = config["layers"]
    for k, spec in enumerate(specs):
        key = (spec["kind"], spec["hidden_size"], spec.get("activation"), spec.get("bidirectional", False))
        prev = specs[k - 1] if k else None
        prev_key = (
            None
            if prev is None
            else (prev["kind"], prev["hidden_size"], prev.get("activation"), prev.get("bidirectional", False))
        )
        if key == prev_key:
            groups[-1].append(k)
        else:
            groups.append([k])
    return groups


# -- the nn engine ---------------------------------------------------------------------------------------


def _nn_group(
    config: Mapping[str, Any],
    group: list[int],
    X: torch.Tensor,
    lengths: np.ndarray | None,
    P: dict[str, torch.Tensor],
    S: dict[str, torch.Tensor],
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run a group of identical layers through one ``torch.nn`` module; returns the padded outputs and final states."""
    spec = config["layers"][group[0]]
    kind, H = spec["kind"], spec["hidden_size"]
    bidirectional = bool(spec.get("bidirectional", False))
    suffixes = [_layer_suffixes(config)[k] for k in group]
    T, _, width = X.shape
    common = dict(num_layers=len(group), bidirectional=bidirectional, dtype=DTYPE)
    if kind == "lstm":
        mod = torch.nn.LSTM(width, H, **common)
    elif kind == "gru":
        mod = torch.nn.GRU(width, H, **common)
    else:
        mod = torch.nn.RNN(width, H, nonlinearity=spec["activation"], **common)
    weights = {}
    for j, s in enumerate(suffixes):
        for tail in _directions(spec):
            weights[f"weight_ih_l{j}{tail}"] = P["V" + s + tail]
            weights[f"weight_hh_l{j}{tail}"] = P["W" + s + tail]
            weights[f"bias_ih_l{j}{tail}"] = P[_bias_name(kind) + s + tail]
            if kind == "gru":
                weights[f"bias_hh_l{j}{tail}"] = torch.cat([torch.zeros(2 * H, dtype=DTYPE), P["b_hn" + s + tail]])
            else:
                weights[f"bias_hh_l{j}{tail}"] = torch.zeros(GATES[kind] * H, dtype=DTYPE)
    names = [(j, s, tail) for j, s in enumerate(suffixes) for tail in _directions(spec)]  # torch's h0 order
    h0 = torch.stack([S["h0" + s + tail] for _, s, tail in names])
    init: Any = (h0, torch.stack([S["c0" + s + tail] for _, s, tail in names])) if kind == "lstm" else h0
    if lengths is None:
        out, final = functional_call(mod, weights, (X, init))
    else:
        packed = pack_padded_sequence(X, torch.as_tensor(lengths, dtype=torch.int64), enforce_sorted=False)
        out, final = functional_call(mod, weights, (packed, init))
        out, _ = pad_packed_sequence(out, total_length=T)
    finals = {}
    hT = final[0] if kind == "lstm" else final
    for i, (_, s, tail) in enumerate(names):
        finals["h0" + s + tail] = hT[i]
        if kind == "lstm":
            finals["c0" + s + tail] = final[1][i]
    return out, finals


# -- the loop engine -------------------------------------------------------------------------------------


def _loop_direction(
    kind: str,
    activation: str,
    X: torch.Tensor,
    valid: torch.Tensor,
    P: dict[str, torch.Tensor],
    S: dict[str, torch.Tensor],
    name: str,
    rmask: torch.Tensor | None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One direction of one layer over (already ordered) inputs X (T, B, W); ``name`` is its suffix.

    Returns outputs (T, B, H), zero where ``valid`` is False, and the final states.
    """
    V, W, b = P["V" + name], P["W" + name], P[_bias_name(kind) + name]
    h = S["h0" + name]
    c = S["c0" + name] if kind == "lstm" else None
    H = h.shape[1]
    outs = []
    for t in range(X.shape[0]):
        h_rec = h if rmask is None else h * rmask  # dropout only where h_{t-1} enters W h_{t-1}
        gi = X[t] @ V.T + b
        gh = h_rec @ W.T
        c_new = None
        if kind == "elman":
            h_new = ACTIVATIONS[activation](gi + gh)
        elif kind == "lstm":
            a = gi + gh
            i, f, g, o = (a[:, n * H : (n + 1) * H] for n in range(4))
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h_new = torch.sigmoid(o) * torch.tanh(c_new)
        else:
            r = torch.sigmoid(gi[:, :H] + gh[:, :H])
            z = torch.sigmoid(gi[:, H : 2 * H] + gh[:, H : 2 * H])
            n = torch.tanh(gi[:, 2 * H :] + r * (gh[:, 2 * H :] + P["b_hn" + name]))
            h_new = (1 - z) * n + z * h  # the unmasked h_{t-1}
        keep = valid[t][:, None]
        h = torch.where(keep, h_new, h)  # padding: the state stays
        if c_new is not None:
            c = torch.where(keep, c_new, c)
        outs.append(torch.where(keep, h_new, torch.zeros_like(h_new)))
    finals = {"h0" + name: h}
    if c is not None:
        finals["c0" + name] = c
    return torch.stack(outs), finals


def _reverse_index(lengths: np.ndarray, T: int) -> torch.Tensor:
    """(T, B) time index that reverses each sequence's valid part and leaves its padding in place."""
    t = np.arange(T)[:, None]
    idx = np.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)
    return torch.from_numpy(idx.astype(np.int64))


# -- the oracle ------------------------------------------------------------------------------------------


def reference(
    config: Mapping[str, Any],
    params: Mapping[str, np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    h0: Mapping[str, np.ndarray],
    lengths: np.ndarray | None = None,
    *,
    engine: str = "nn",
    output_masks: Sequence[np.ndarray] = (),
    recurrent_masks: Mapping[str, np.ndarray] | None = None,
) -> Reference:
    """Loss, gradients, outputs, final state and layer outputs of the network, by torch autograd.

    Parameters
    ----------
    config : dict
        ``model.config()`` (architecture only; layers may carry ``"bidirectional"``).
    params : dict of ndarray
    x : ndarray, (T, B, D) float or (T, B) int token ids
    y : ndarray, (T, B) int / (T, B, O) float per step, or (B,) int / (B, O) float many-to-one
    h0 : dict of ndarray, each (B, H_k), keyed ``h0``, ``c0_l1_reverse``, …
    lengths : ndarray (B,) int or None
    engine : ``"nn"`` or ``"loop"``
    output_masks : sequence of ndarray (T, B, width_k), loop engine only
        Dropout masks on the outputs of layers ``0 .. L − 2``; empty for none.
    recurrent_masks : dict of ndarray (B, H_k), loop engine only
        Recurrent-dropout masks keyed by the layer's ``h`` state name; a missing name is no mask.
    """
    expected = expected_param_shapes(config)
    if {k: tuple(v.shape) for k, v in params.items()} != expected:
        raise ValueError(f"reference: params {sorted(params)} differ from the convention {sorted(expected)}")
    if set(h0) != set(expected_state_shapes(config)):
        raise ValueError(f"reference: states {sorted(h0)} differ from {sorted(expected_state_shapes(config))}")
    recurrent_masks = recurrent_masks or {}
    if engine == "nn" and (len(output_masks) or recurrent_masks):
        raise ValueError("reference: dropout masks need engine='loop'")
    D = config["input_size"]
    P = {name: _leaf(a) for name, a in params.items()}
    S = {name: _leaf(a) for name, a in h0.items()}
    dense = np.asarray(x).dtype.kind == "f"
    if dense:
        X = _leaf(x)
        inp = X
    else:
        X = None
        inp = F.one_hot(torch.from_numpy(np.asarray(x, dtype=np.int64)), D).to(DTYPE)
    T, B = inp.shape[:2]
    lens = np.full(B, T) if lengths is None else np.asarray(lengths, dtype=np.int64)
    valid = torch.from_numpy(np.arange(T)[:, None] < lens[None, :])  # (T, B)

    finals: dict[str, torch.Tensor] = {}
    hidden: dict[int, torch.Tensor] = {}
    specs = config["layers"]
    suffixes = _layer_suffixes(config)
    if engine == "nn":
        for group in _groups(config):
            inp, states = _nn_group(config, group, inp, lengths, P, S)
            finals.update(states)
            hidden[group[-1]] = inp
    elif engine == "loop":
        rev = _reverse_index(lens, T)
        cols = torch.arange(B)[None, :]
        for k, spec in enumerate(specs):
            parts = []
            for tail in _directions(spec):
                name = suffixes[k] + tail
                mask = recurrent_masks.get("h0" + name)
                rmask = None if mask is None else _const(mask)
                ordered = inp if not tail else inp[rev, cols]  # reverse direction: steps lengths[b]-1 .. 0
                out, states = _loop_direction(
                    spec["kind"], spec.get("activation", "tanh"), ordered, valid, P, S, name, rmask
                )
                parts.append(out if not tail else out[rev, cols])  # back to the original time order
                finals.update(states)
            inp = torch.cat(parts, dim=-1)
            hidden[k] = inp
            if k < len(specs) - 1 and k < len(output_masks):
                inp = inp * _const(output_masks[k])  # dropout between layers
    else:
        raise ValueError(f"reference: unknown engine {engine!r}")

    top = specs[-1]
    top_s = suffixes[-1]
    y = np.asarray(y)
    per_step = y.ndim == (2 if config["output"] == "softmax" else 3)
    if per_step:
        Z = hidden[len(specs) - 1] @ P["U"].T + P["b_y"]  # (T, B, O)
        per = _loss(config["output"], Z, y) * valid.to(DTYPE)
    else:
        h_last = torch.cat([finals["h0" + top_s + tail] for tail in _directions(top)], dim=-1)  # torch's h_n
        Z = h_last @ P["U"].T + P["b_y"]  # (B, O)
        per = _loss(config["output"], Z, y)
    J = per.sum() / B
    J.backward()

    grads = {name: (torch.zeros_like(p) if p.grad is None else p.grad).numpy().copy() for name, p in P.items()}
    for name, s in S.items():
        grads[name] = (torch.zeros_like(s) if s.grad is None else s.grad).numpy().copy()
    if dense:
        grads["x"] = X.grad.numpy().copy()
    return Reference(
        loss=float(J.detach()),
        grads=grads,
        outputs=_f_y(config["output"], Z).detach().numpy().copy(),
        state={name: finals[name].detach().numpy().copy() for name in h0},
        hidden={k: v.detach().numpy().copy() for k, v in hidden.items()},
    )
