"""PyTorch's recurrent modules in and out: ``from_torch``, ``to_torch`` and their state dicts.

A PyTorch model ``Embedding? → RNN / LSTM / GRU → Linear`` is the same network as a bptt
model; only the names, the bias split and the layout differ::

    PyTorch (layer k, "_reverse" for the reverse direction)   bptt (suffix "_l{k}" in a stack)
    embedding.weight            (num, E)                       E = weightᵀ          (E, num)
    weight_ih_l{k}              (G·H, D_k)                     V                    (G·H, D_k)
    weight_hh_l{k}              (G·H, H)                       W                    (G·H, H)
    bias_ih_l{k} + bias_hh_l{k} (G·H,)                         b (b_h for Elman)    (G·H,)
      GRU: bias_ih + [bias_hh_r; bias_hh_z; 0]                 b                    (3H,)
           bias_hh_n                                           b_hn                 (H,)
    linear.weight, linear.bias  (O, dirs·H), (O,)              U, b_y

Gate orders agree (LSTM ``i, f, g, o``; GRU ``r, z, n``, with the reset applied after
``W_n h + b_hn`` as bptt's default GRU). PyTorch keeps two biases where each pre-activation
needs one: ``from_torch`` adds them (so the converted network computes the same numbers to
float rounding), and ``to_torch`` puts bptt's into ``bias_ih`` and zeros into ``bias_hh`` (GRU:
``bias_hh = [0; 0; b_hn]``), so ``from_torch(*to_torch(m))`` gives ``m``'s parameters exactly.

bptt is time-major: a ``batch_first=True`` module converts all the same (the weights do not
depend on the layout), and bptt's arrays stay ``(T, B, ·)``; ``to_torch`` returns
``batch_first=False`` modules. The state dict functions (:func:`torch_state`,
:func:`from_torch_state`) work on NumPy arrays and need no torch (``bptt export`` / ``bptt import``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..engine.network import RNN
from ..engine.readout import READOUT_NOTATIONS
from . import require

__all__ = ["TorchSpec", "from_torch", "from_torch_state", "to_torch", "torch_spec", "torch_state"]

CELL_OF_MODE = {
    "RNN_TANH": ("elman", "tanh"),
    "RNN_RELU": ("elman", "relu"),
    "LSTM": ("lstm", "tanh"),
    "GRU": ("gru", "tanh"),
}
GATES = {"elman": 1, "lstm": 4, "gru": 3}


@dataclass(frozen=True)
class TorchSpec:
    """The PyTorch modules of a network: ``nn.<cell>(input_size, hidden_size, num_layers, bias,
    bidirectional, dropout)``, ``nn.Linear(dirs·hidden_size, output_size, bias=linear_bias)`` and,
    with ``embedding = (num_embeddings, embedding_dim)``, an ``nn.Embedding`` in front."""

    cell: str  # "elman", "lstm" or "gru"
    input_size: int
    hidden_size: int
    output_size: int
    num_layers: int = 1
    bias: bool = True
    bidirectional: bool = False
    nonlinearity: str = "tanh"  # Elman only: "tanh" or "relu"
    linear_bias: bool = True
    dropout: float = 0.0
    embedding: tuple[int, int] | None = None

    @property
    def directions(self) -> tuple[str, ...]:
        return ("", "_reverse") if self.bidirectional else ("",)

    def rnn_shapes(self) -> dict[str, tuple[int, ...]]:
        """PyTorch's names and shapes of the recurrent module's parameters, in its order."""
        G, H = GATES[self.cell] * self.hidden_size, self.hidden_size
        shapes = {}
        for k in range(self.num_layers):
            D = self.input_size if k == 0 else H * len(self.directions)
            for d in self.directions:
                shapes[f"weight_ih_l{k}{d}"] = (G, D)
                shapes[f"weight_hh_l{k}{d}"] = (G, H)
                if self.bias:
                    shapes[f"bias_ih_l{k}{d}"] = (G,)
                    shapes[f"bias_hh_l{k}{d}"] = (G,)
        return shapes

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Every parameter as one state dict: ``embedding.``, ``rnn.`` and ``linear.`` prefixes."""
        shapes = {} if self.embedding is None else {"embedding.weight": tuple(self.embedding)}
        shapes.update({f"rnn.{k}": s for k, s in self.rnn_shapes().items()})
        shapes["linear.weight"] = (self.output_size, self.hidden_size * len(self.directions))
        if self.linear_bias:
            shapes["linear.bias"] = (self.output_size,)
        return shapes

    def config(self, output: str, dtype: str) -> dict[str, Any]:
        """The bptt network these modules are, as an :meth:`RNN.config`."""
        layer = {"kind": self.cell, "hidden_size": self.hidden_size, "activation": self.nonlinearity}
        if self.bidirectional:
            layer["bidirectional"] = True
        config = {
            "input_size": self.input_size if self.embedding is None else self.embedding[0],
            "layers": [dict(layer) for _ in range(self.num_layers)],
            "output_size": self.output_size,
            "output": output,
            "bias": self.bias,
            "notation": "lecture",
            "output_reads_input": False,
            "embedding_size": None if self.embedding is None else self.embedding[1],
            "dtype": dtype,
        }
        if self.linear_bias != self.bias:
            config["output_bias"] = self.linear_bias
        if self.dropout and self.num_layers > 1:  # PyTorch allows dropout on one layer, where it does nothing
            config["dropout"] = self.dropout
        return config


def from_torch_state(spec: TorchSpec, state: Mapping[str, np.ndarray], output: str = "softmax") -> RNN:
    """The bptt network of PyTorch modules described by ``spec`` with the parameters ``state``
    (NumPy arrays keyed as :meth:`TorchSpec.shapes`: ``rnn.weight_ih_l0``, ``linear.weight``, …)."""
    where = "bptt.from_torch"
    want = spec.shapes()
    missing, extra = sorted(set(want) - set(state)), sorted(set(state) - set(want))
    if missing or extra:
        raise ValueError(f"{where}: state dict does not fit {_describe(spec)}: missing {missing}, unexpected {extra}")
    dtypes = {np.asarray(state[k]).dtype for k in want}
    if len(dtypes) != 1 or next(iter(dtypes)) not in (np.float32, np.float64):
        raise ValueError(f"{where}: parameters must all be float32 or all float64, got {sorted(map(str, dtypes))}")
    for key, shape in want.items():
        if np.shape(state[key]) != shape:
            raise ValueError(f"{where}: {key} must have shape {shape}, got {np.shape(state[key])}")
    dtype = next(iter(dtypes))
    config = spec.config(output, dtype.name)
    skeleton = RNN.from_config(config, seed=0)  # the layers and their parameter names
    params: dict[str, np.ndarray] = {}
    if spec.embedding is not None:
        params["E"] = np.ascontiguousarray(np.asarray(state["embedding.weight"]).T)
    for layer, (k, d) in zip(skeleton.layers, _layer_keys(spec), strict=True):
        V, W = (np.asarray(state[f"rnn.weight_{p}_l{k}{d}"]) for p in ("ih", "hh"))
        weights: tuple = (V, W)
        if spec.bias:
            b_ih, b_hh = (np.asarray(state[f"rnn.bias_{p}_l{k}{d}"]) for p in ("ih", "hh"))
            if spec.cell == "gru":  # b_hn stays inside the reset product: r ⊙ (W_n h + b_hn)
                H = spec.hidden_size
                b = b_ih.copy()
                b[: 2 * H] += b_hh[: 2 * H]
                weights += (b, b_hh[2 * H :])
            else:
                weights += (b_ih + b_hh,)
        else:
            weights += (None, None) if spec.cell == "gru" else (None,)
        params.update({name: np.array(value, dtype) for name, value in layer.named(weights).items()})
    U, _, b_y, _ = READOUT_NOTATIONS["lecture"]
    params[U] = np.array(state["linear.weight"], dtype)
    if spec.linear_bias:
        params[b_y] = np.array(state["linear.bias"], dtype)
    return RNN.from_config(config, params=params)


def torch_spec(model: RNN, where: str = "bptt.to_torch") -> TorchSpec:
    """The PyTorch modules that compute ``model``, or a one-line refusal naming what they cannot hold."""
    specs = model.specs
    first = specs[0]
    if len(set(specs)) > 1:
        raise ValueError(
            f"{where}: PyTorch's modules hold one cell kind, size and direction for all layers, got {model}"
        )
    if first.kind == "gru" and not first.reset_after:
        raise ValueError(
            f"{where}: torch.nn.GRU resets after the product (reset_after=True); this GRU has reset_after=False"
        )
    if first.kind == "elman" and first.activation not in ("tanh", "relu"):
        raise ValueError(f"{where}: torch.nn.RNN has nonlinearity 'tanh' or 'relu', this network {first.activation!r}")
    if model.readout.reads_input:
        raise ValueError(
            f"{where}: the output reads the input (RNN-B's W_ox skip); nn.Linear reads only the RNN output"
        )
    if model.recurrent_dropout:
        warnings.warn(
            f"{where}: PyTorch has no recurrent dropout; the modules train without it "
            f"(recurrent_dropout={model.recurrent_dropout} is not carried over)",
            stacklevel=3,
        )
    return TorchSpec(
        cell=first.kind,
        input_size=model.input_size if model.embedding_size is None else model.embedding_size,
        hidden_size=first.hidden_size,
        output_size=model.output_size,
        num_layers=len(specs),
        bias=model.bias,
        bidirectional=first.bidirectional,
        nonlinearity=first.activation if first.kind == "elman" else "tanh",
        linear_bias=model.output_bias,
        dropout=model.dropout,
        embedding=None if model.embedding_size is None else (model.input_size, model.embedding_size),
    )


def torch_state(model: RNN, where: str = "bptt.to_torch") -> tuple[TorchSpec, dict[str, np.ndarray]]:
    """``model`` as PyTorch modules' description and one state dict of NumPy arrays (keys of
    :meth:`TorchSpec.shapes`), bptt's bias in ``bias_ih`` and zeros in ``bias_hh`` (GRU: ``b_hn``)."""
    spec = torch_spec(model, where)
    p = model.params
    state: dict[str, np.ndarray] = {}
    if spec.embedding is not None:
        state["embedding.weight"] = np.ascontiguousarray(p["E"].T)
    for layer, (k, d) in zip(model.layers, _layer_keys(spec), strict=True):
        V, W, b, *rest = layer.weights(p)
        state[f"rnn.weight_ih_l{k}{d}"] = np.ascontiguousarray(V)
        state[f"rnn.weight_hh_l{k}{d}"] = np.ascontiguousarray(W)
        if spec.bias:
            b_hh = np.zeros_like(b)
            if spec.cell == "gru":
                b_hh[2 * spec.hidden_size :] = rest[0]  # b_hn
            state[f"rnn.bias_ih_l{k}{d}"] = b.copy()
            state[f"rnn.bias_hh_l{k}{d}"] = b_hh
    U, _, b_y = model.readout.weights(p)
    state["linear.weight"] = np.ascontiguousarray(U)
    if b_y is not None:
        state["linear.bias"] = b_y.copy()
    return spec, state


def from_torch(rnn: Any, linear: Any, output: str = "softmax", *, embedding: Any = None) -> RNN:
    """The bptt network computing ``linear(rnn(embedding(x)))`` followed by ``f_y = output``.

    Parameters
    ----------
    rnn : torch.nn.RNN (tanh or relu), torch.nn.LSTM or torch.nn.GRU
        Any ``num_layers``, ``bidirectional``, ``bias``, ``dropout``; ``batch_first`` is accepted
        (bptt stays time-major: feed it ``(T, B, ·)``). ``proj_size > 0`` is refused.
    linear : torch.nn.Linear
        The readout on the RNN's outputs, ``in_features = dirs · hidden_size``, with or without a bias.
    output : str
        ``f_y`` after the readout: ``"softmax"``, ``"sigmoid"`` or ``"identity"``.
    embedding : torch.nn.Embedding, optional
        In front of the RNN (its inputs are then token ids); bptt's ``E`` is its weight transposed.
        (``padding_idx`` only stops PyTorch's training of that row; bptt computes its true gradient.)

    The parameters keep the modules' dtype (float32 or float64) and are copied.
    """
    where = "bptt.from_torch"
    torch = require("torch", "torch", where)
    nn = torch.nn
    if not isinstance(rnn, (nn.RNN, nn.LSTM, nn.GRU)):
        raise TypeError(f"{where}: rnn must be a torch.nn.RNN, LSTM or GRU, got {type(rnn).__name__}")
    if getattr(rnn, "proj_size", 0):
        raise ValueError(f"{where}: rnn has proj_size={rnn.proj_size} (LSTM projections), which bptt does not have")
    if rnn.mode not in CELL_OF_MODE:
        raise ValueError(f"{where}: rnn mode {rnn.mode!r} has no bptt cell")
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"{where}: linear must be a torch.nn.Linear, got {type(linear).__name__}")
    width = rnn.hidden_size * (2 if rnn.bidirectional else 1)
    if linear.in_features != width:
        raise ValueError(
            f"{where}: linear.in_features must be {width} (the rnn's output size), got {linear.in_features}"
        )
    state = {f"rnn.{k}": v for k, v in rnn.state_dict().items()}
    state.update({f"linear.{k}": v for k, v in linear.state_dict().items()})
    emb = None
    if embedding is not None:
        if not isinstance(embedding, nn.Embedding):
            raise TypeError(f"{where}: embedding must be a torch.nn.Embedding, got {type(embedding).__name__}")
        if embedding.max_norm is not None or embedding.scale_grad_by_freq:
            feature = "max_norm" if embedding.max_norm is not None else "scale_grad_by_freq"
            raise ValueError(f"{where}: embedding has {feature}, which bptt's embedding does not have")
        if embedding.embedding_dim != rnn.input_size:
            raise ValueError(
                f"{where}: embedding.embedding_dim must be rnn.input_size = {rnn.input_size}, "
                f"got {embedding.embedding_dim}"
            )
        emb = (embedding.num_embeddings, embedding.embedding_dim)
        state["embedding.weight"] = embedding.weight
    cell, nonlinearity = CELL_OF_MODE[rnn.mode]
    spec = TorchSpec(
        cell=cell,
        input_size=rnn.input_size,
        hidden_size=rnn.hidden_size,
        output_size=linear.out_features,
        num_layers=rnn.num_layers,
        bias=rnn.bias,
        bidirectional=rnn.bidirectional,
        nonlinearity=nonlinearity,
        linear_bias=linear.bias is not None,
        dropout=float(rnn.dropout),
        embedding=emb,
    )
    arrays = {k: v.detach().cpu().numpy() for k, v in state.items()}
    return from_torch_state(spec, arrays, output)


def to_torch(model: RNN) -> tuple[Any, ...]:
    """PyTorch modules computing ``model``: ``(rnn, linear)``, plus the ``nn.Embedding`` when it has one.

    ``f_y`` is not a module: apply ``softmax`` / ``sigmoid`` to ``linear``'s output as ``model.output``
    says. The modules are time-major (``batch_first=False``), in the model's dtype, in training mode
    as any new module; ``from_torch(*to_torch(m))`` gives back ``m``'s parameters exactly.
    Refused, in one line: mixed stacks, ``reset_after=False``, Elman activations other than tanh and
    relu, and RNN-B's input-to-output skip. Recurrent dropout (training only) is not carried over.
    """
    where = "bptt.to_torch"
    torch = require("torch", "torch", where)
    spec, state = torch_state(model, where)
    nn = torch.nn
    dtype = torch.float64 if model.dtype == np.float64 else torch.float32
    common = dict(num_layers=spec.num_layers, bias=spec.bias, bidirectional=spec.bidirectional, dropout=spec.dropout)
    if spec.cell == "elman":
        rnn = nn.RNN(spec.input_size, spec.hidden_size, nonlinearity=spec.nonlinearity, **common)
    else:
        rnn = (nn.LSTM if spec.cell == "lstm" else nn.GRU)(spec.input_size, spec.hidden_size, **common)
    linear = nn.Linear(spec.hidden_size * len(spec.directions), spec.output_size, bias=spec.linear_bias)
    modules = {"rnn": rnn, "linear": linear}
    if spec.embedding is not None:
        modules["embedding"] = nn.Embedding(*spec.embedding)
    for prefix, module in modules.items():
        module.to(dtype)
        own = {k[len(prefix) + 1 :]: torch.from_numpy(v.copy()) for k, v in state.items() if k.startswith(prefix + ".")}
        module.load_state_dict(own)
    return tuple(modules.values())


def _layer_keys(spec: TorchSpec) -> list[tuple[int, str]]:
    """``(k, direction)`` of every recurrent layer, in bptt's layer order (each level forward first)."""
    return [(k, d) for k in range(spec.num_layers) for d in spec.directions]


def _describe(spec: TorchSpec) -> str:
    name = {"elman": "RNN", "lstm": "LSTM", "gru": "GRU"}[spec.cell]
    return (
        f"nn.{name}({spec.input_size}, {spec.hidden_size}, num_layers={spec.num_layers}, bias={spec.bias}, "
        f"bidirectional={spec.bidirectional}) + nn.Linear(…, {spec.output_size}, bias={spec.linear_bias})"
        + ("" if spec.embedding is None else f" after nn.Embedding{tuple(spec.embedding)}")
    )
