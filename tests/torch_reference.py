"""An independent PyTorch (float64, autograd) implementation of the networks of ``bptt``.

It shares no code with ``bptt``: it reads only the architecture (``model.config()``),
the parameter arrays and the data, and rebuilds the forward pass from the documented
equations and naming conventions:

* Elman layers are written out as an explicit loop over time, in each notation
  (``lecture``: ``V, W, b_h``; ``mit``: ``W_sx, W_ss, b_s``; ``concat``:
  ``W_ssx = [W_ss | W_sx]`` applied to ``[h_{t-1}; x_t]``, plus ``b_s``).
* LSTM and GRU layers run through ``torch.nn.LSTM`` / ``torch.nn.GRU`` with the
  weights copied in (consecutive layers of the same kind and size share one module
  with ``num_layers > 1``), which checks bptt's gate order against PyTorch's:
  LSTM ``V = weight_ih``, ``W = weight_hh``, ``b = bias_ih``, ``bias_hh = 0``;
  GRU likewise with ``bias_hh = [0; 0; b_hn]``.
* An optional input embedding (``config["embedding_size"]``) is ``e_t = E x_t``; the
  first layer reads ``e_t`` and the output skip still reads ``x_t``.
* The readout is ``z_t = U h_t [+ U_x x_t] + b_y`` (``mit``: ``W_o, W_ox, b_o``;
  ``concat``: ``W_o``, or ``W_ox [h_t; x_t]`` with the skip), and the losses are
  cross-entropy (softmax), binary cross-entropy from logits summed over outputs
  (sigmoid) and ``½‖z - y‖²`` (identity), combined as ``J = (1/B) Σ_{t,b} w_tb Loss_tb``.

Token ids (integer ``x`` of shape ``(T, B)``) are turned into one-hot vectors of size D.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["Reference", "expected_param_shapes", "expected_state_shapes", "reference"]

DTYPE = torch.float64

ACTIVATIONS = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "identity": lambda a: a,
}

# Elman layer names per notation: (input -> hidden, hidden -> hidden, bias); concat fuses both weights.
ELMAN_NAMES = {"lecture": ("V", "W", "b_h"), "mit": ("W_sx", "W_ss", "b_s"), "concat": ("W_ssx", None, "b_s")}
# Readout names per notation: (hidden -> output, input -> output skip, bias).  In concat
# notation the skip is fused: W_ox (O, H + D) reads [h_t; x_t] instead of W_o (O, H).
READOUT_NAMES = {"lecture": ("U", "U_x", "b_y"), "mit": ("W_o", "W_ox", "b_o"), "concat": ("W_o", "W_ox", "b_o")}
GATES = {"lstm": 4, "gru": 3}


@dataclass
class Reference:
    """What the reference computed.

    Attributes
    ----------
    loss : float
    grads : dict of ndarray
        Gradient of the loss for every parameter, every initial state and (float inputs) ``"x"``.
    outputs : ndarray, (T, B, O)
    state : dict of ndarray
        Final state, keyed like the initial state.
    relu_margin : float
        Smallest ``|pre-activation|`` of any ReLU unit (``inf`` without ReLU layers);
        finite differences are only valid when this is well above the step size.
    """

    loss: float
    grads: dict[str, np.ndarray]
    outputs: np.ndarray
    state: dict[str, np.ndarray]
    relu_margin: float


def _suffixes(config: Mapping[str, Any]) -> list[str]:
    n = len(config["layers"])
    return [f"_l{k}" if n > 1 else "" for k in range(n)]


def expected_param_shapes(config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of a network, from the documented conventions alone."""
    shapes: dict[str, tuple[int, ...]] = {}
    d = config["input_size"]
    if config.get("embedding_size"):  # optional input embedding e_t = E x_t, E (embedding_size, D)
        shapes["E"] = (config["embedding_size"], d)
        d = config["embedding_size"]
    bias = config["bias"]
    notation = config["notation"]
    for spec, s in zip(config["layers"], _suffixes(config), strict=True):
        kind, H = spec["kind"], spec["hidden_size"]
        if kind == "elman":
            n_in, n_rec, n_b = ELMAN_NAMES[notation]
            if notation == "concat":
                shapes[n_in + s] = (H, H + d)
            else:
                shapes[n_in + s] = (H, d)
                shapes[n_rec + s] = (H, H)
            if bias:
                shapes[n_b + s] = (H,)
        else:
            g = GATES[kind]
            shapes["V" + s] = (g * H, d)
            shapes["W" + s] = (g * H, H)
            if bias:
                shapes["b" + s] = (g * H,)
                if kind == "gru":
                    shapes["b_hn" + s] = (H,)
        d = H
    D, O = config["input_size"], config["output_size"]
    n_out, n_skip, n_b = READOUT_NAMES[notation]
    if notation == "concat" and config["output_reads_input"]:
        shapes[n_skip] = (O, d + D)
    else:
        shapes[n_out] = (O, d)
        if config["output_reads_input"]:
            shapes[n_skip] = (O, D)
    if bias:
        shapes[n_b] = (O,)
    return shapes


def expected_state_shapes(config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Initial-state names mapped to ``(H_k,)``."""
    shapes = {}
    for spec, s in zip(config["layers"], _suffixes(config), strict=True):
        shapes["h0" + s] = (spec["hidden_size"],)
        if spec["kind"] == "lstm":
            shapes["c0" + s] = (spec["hidden_size"],)
    return shapes


def _leaf(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(np.asarray(a, dtype=np.float64), dtype=DTYPE, requires_grad=True)


def _groups(config: Mapping[str, Any]) -> list[list[int]]:
    """Layer indices grouped into runs that one ``torch.nn`` module (or one Elman loop) computes."""
    groups: list[list[int]] = []
    specs = config["layers"]
    for k, spec in enumerate(specs):
        prev = specs[k - 1] if k else None
        same = (
            prev is not None
            and spec["kind"] in GATES
            and prev["kind"] == spec["kind"]
            and prev["hidden_size"] == spec["hidden_size"]
        )
        if same:
            groups[-1].append(k)
        else:
            groups.append([k])
    return groups


def _elman(
    X: torch.Tensor,
    h: torch.Tensor,
    P: dict[str, torch.Tensor],
    s: str,
    notation: str,
    bias: bool,
    activation: str,
    margins: list[float],
) -> torch.Tensor:
    """One Elman layer as an explicit loop: returns the hidden states (T, B, H)."""
    f = ACTIVATIONS[activation]
    n_in, n_rec, n_b = ELMAN_NAMES[notation]
    hs = []
    for t in range(X.shape[0]):
        if notation == "concat":
            a = torch.cat([h, X[t]], dim=1) @ P[n_in + s].T  # W_ssx [h_{t-1}; x_t]
        else:
            a = X[t] @ P[n_in + s].T + h @ P[n_rec + s].T
        if bias:
            a = a + P[n_b + s]
        if activation == "relu":
            margins.append(float(a.detach().abs().min()))
        h = f(a)
        hs.append(h)
    return torch.stack(hs)


def _gated(
    kind: str,
    X: torch.Tensor,
    states: dict[str, torch.Tensor],
    P: dict[str, torch.Tensor],
    suffixes: list[str],
    bias: bool,
) -> tuple[torch.Tensor, torch.nn.Module, dict[str, torch.Tensor]]:
    """Run ``len(suffixes)`` stacked LSTM/GRU layers through a ``torch.nn`` module with copied weights.

    Returns the top layer's outputs (T, B, H), the module (its parameters hold the
    gradients after ``backward``) and every layer's final state.
    """
    H = P["W" + suffixes[0]].shape[1]
    cls = torch.nn.LSTM if kind == "lstm" else torch.nn.GRU
    mod = cls(X.shape[2], H, num_layers=len(suffixes), bias=bias, dtype=DTYPE)
    with torch.no_grad():
        for j, s in enumerate(suffixes):
            getattr(mod, f"weight_ih_l{j}").copy_(P["V" + s])
            getattr(mod, f"weight_hh_l{j}").copy_(P["W" + s])
            if bias:
                getattr(mod, f"bias_ih_l{j}").copy_(P["b" + s])
                bias_hh = getattr(mod, f"bias_hh_l{j}")
                bias_hh.zero_()
                if kind == "gru":
                    bias_hh[2 * H :] = P["b_hn" + s]
    h0 = torch.stack([states["h0" + s] for s in suffixes])
    finals = {}
    if kind == "lstm":
        c0 = torch.stack([states["c0" + s] for s in suffixes])
        out, (hT, cT) = mod(X, (h0, c0))
        finals.update({"c0" + s: cT[j] for j, s in enumerate(suffixes)})
    else:
        out, hT = mod(X, h0)
    finals.update({"h0" + s: hT[j] for j, s in enumerate(suffixes)})
    return out, mod, finals


def _module_grads(kind: str, mod: torch.nn.Module, suffixes: list[str], bias: bool) -> dict[str, np.ndarray]:
    grads = {}
    for j, s in enumerate(suffixes):

        def g(name: str, j: int = j) -> np.ndarray:
            p = getattr(mod, f"{name}_l{j}")
            return (torch.zeros_like(p) if p.grad is None else p.grad).detach().numpy().copy()

        grads["V" + s] = g("weight_ih")
        grads["W" + s] = g("weight_hh")
        if bias:
            grads["b" + s] = g("bias_ih")
            if kind == "gru":
                H = grads["W" + s].shape[1]
                grads["b_hn" + s] = g("bias_hh")[2 * H :]
    return grads


def _loss(output: str, Z: torch.Tensor, y: np.ndarray) -> torch.Tensor:
    """Per-(t, b) loss from the logits ``Z`` (T, B, O)."""
    T, B, O = Z.shape
    if output == "softmax":
        target = torch.from_numpy(np.asarray(y, dtype=np.int64))
        return F.cross_entropy(Z.reshape(T * B, O), target.reshape(T * B), reduction="none").reshape(T, B)
    Y = torch.tensor(np.asarray(y, dtype=np.float64), dtype=DTYPE)
    if output == "sigmoid":
        return F.binary_cross_entropy_with_logits(Z, Y, reduction="none").sum(dim=-1)
    if output == "identity":
        return 0.5 * ((Z - Y) ** 2).sum(dim=-1)
    raise ValueError(f"unknown output {output!r}")


def _outputs(output: str, Z: torch.Tensor) -> torch.Tensor:
    if output == "softmax":
        return torch.softmax(Z, dim=-1)
    if output == "sigmoid":
        return torch.sigmoid(Z)
    return Z


def reference(
    config: Mapping[str, Any],
    params: Mapping[str, np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    h0: Mapping[str, np.ndarray],
    loss_weights: np.ndarray | None = None,
) -> Reference:
    """Loss, gradients, outputs and final state of the network described by ``config``, by torch autograd.

    Parameters
    ----------
    config : dict
        ``model.config()`` of a ``bptt`` network (architecture only).
    params : dict of ndarray
        The network's parameters (any float dtype; computed in float64).
    x : ndarray, (T, B, D) float or (T, B) int token ids
    y : ndarray, (T, B) int (softmax) or (T, B, O) float
    h0 : dict of ndarray, each (B, H_k)
        Every initial state, keyed ``h0`` / ``c0`` (suffixed ``_l{k}`` in a stack).
    loss_weights : ndarray (T, B) or None
    """
    expected = expected_param_shapes(config)
    if set(params) != set(expected):
        raise ValueError(f"reference: params {sorted(params)} differ from the convention {sorted(expected)}")
    bias = config["bias"]
    notation = config["notation"]
    D = config["input_size"]
    P = {name: _leaf(a) for name, a in params.items()}
    S = {name: _leaf(a) for name, a in h0.items()}
    dense = np.asarray(x).dtype.kind == "f"
    if dense:
        X = _leaf(x)
        X_in = X
    else:
        X = None
        X_in = F.one_hot(torch.from_numpy(np.asarray(x, dtype=np.int64)), D).to(DTYPE)
    B = X_in.shape[1]

    suffixes = _suffixes(config)
    margins: list[float] = []
    modules = []
    inp = X_in @ P["E"].T if config.get("embedding_size") else X_in  # the skip below still reads x_t
    finals: dict[str, torch.Tensor] = {}
    for group in _groups(config):
        spec = config["layers"][group[0]]
        sfx = [suffixes[k] for k in group]
        if spec["kind"] == "elman":
            (s,) = sfx
            inp = _elman(inp, S["h0" + s], P, s, notation, bias, spec["activation"], margins)
            finals["h0" + s] = inp[-1]
        else:
            inp, mod, states_T = _gated(spec["kind"], inp, S, P, sfx, bias)
            modules.append((spec["kind"], mod, sfx))
            finals.update(states_T)
    Htop = inp

    n_out, n_skip, n_b = READOUT_NAMES[notation]
    if config["output_reads_input"] and notation == "concat":
        Z = torch.cat([Htop, X_in], dim=-1) @ P[n_skip].T  # W_ox [h_t; x_t]
    else:
        Z = Htop @ P[n_out].T
        if config["output_reads_input"]:
            Z = Z + X_in @ P[n_skip].T
    if bias:
        Z = Z + P[n_b]

    per = _loss(config["output"], Z, y)
    if loss_weights is not None:
        per = per * torch.tensor(np.asarray(loss_weights, dtype=np.float64), dtype=DTYPE)
    J = per.sum() / B
    J.backward()

    grads: dict[str, np.ndarray] = {}
    for name, p in P.items():
        if p.grad is not None:
            grads[name] = p.grad.numpy().copy()
    for kind, mod, sfx in modules:
        grads.update(_module_grads(kind, mod, sfx, bias))
    for name, p in P.items():
        grads.setdefault(name, np.zeros(p.shape))
    for name, s in S.items():
        grads[name] = np.zeros(s.shape) if s.grad is None else s.grad.numpy().copy()
    if dense:
        grads["x"] = X.grad.numpy().copy()

    return Reference(
        loss=float(J.detach()),
        grads=grads,
        outputs=_outputs(config["output"], Z).detach().numpy().copy(),
        state={name: finals[name].detach().numpy().copy() for name in h0},
        relu_margin=min(margins, default=float("inf")),
    )
