"""A bptt network as an ONNX graph of the standard ``RNN`` / ``LSTM`` / ``GRU`` operators.

One ONNX node per level of the stack (a bidirectional level is one node with
``direction="bidirectional"``), plain ``MatMul`` / ``Add`` / ``Gather`` nodes for the embedding
and the readout, and ``Softmax`` / ``Sigmoid`` / ``Identity`` for ``f_y``. T and B are symbolic.

Where each bptt parameter goes (``G`` gates: 1 Elman, 4 LSTM, 3 GRU; ``dirs`` = 1 or 2)::

    bptt (layer k, each direction)     ONNX (node of level k)                  how
    V       (G·H, D_k)                 W  [dirs, G·H, D_k]   "layer{k}_W"      gate blocks reordered
    W       (G·H, H)                   R  [dirs, G·H, H]     "layer{k}_R"      gate blocks reordered
    b       (G·H,)                     B  [dirs, 2·G·H]      "layer{k}_B"      [Wb; Rb], Wb = b reordered,
                                                                               Rb = 0 ...
    b_hn    (H,)      (GRU)                                                    ... except Rb's h block = b_hn
    h0, c0  (B, H)                     initial_h, initial_c  [dirs, B, H]      Unsqueeze, Concat
    lengths (B,)                       sequence_lens         int32 (B,)
    E       (E, D)                     "E_T" = Eᵀ            Gather (ids) / MatMul (dense)
    U, U_x  (O, H), (O, D)             "U_T", "U_x_T"        MatMul (U_x: Gather for ids)
    b_y     (O,)                       "b_y"                 Add

Gate orders: bptt's LSTM stacks ``i, f, g, o`` and ONNX ``i, o, f, c`` (blocks ``[0, 3, 1, 2]``);
bptt's GRU ``r, z, n`` and ONNX ``z, r, h`` (blocks ``[1, 0, 2]``). bptt's GRU (PyTorch's,
``reset_after=True``) is ONNX's ``linear_before_reset=1``; the classic GRU (``reset_after=False``)
is ``linear_before_reset=0`` with ``Rb = 0``. Elman activations ``tanh``, ``relu``, ``sigmoid``
are ``Tanh``, ``Relu``, ``Sigmoid``; ``identity`` is ``Affine`` with alpha 1, beta 0. The mit and
concat notations (``W_ssx``, ``W_ox``) are the same numbers under other names: they are read through
the layers' and the readout's ``weights``. Dropout is training-only and not exported.

ONNX's ``Y`` is ``[T, dirs, B, H]``: a Transpose and a Reshape make it ``[T, B, dirs·H]``, bptt's
``[h_t; h_t^reverse]``. Like bptt, the operators output 0 after a sequence's length, run the reverse
direction over each sequence's real steps backwards, and return the state after its last real step.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..engine.network import RNN
from ..files.atomic import write_atomic
from . import require

__all__ = ["DEFAULT_OPSET", "export_onnx"]

DEFAULT_OPSET = 17  # run by onnxruntime ≥ 1.13 and most other runtimes; RNN/LSTM/GRU unchanged since 14
MIN_OPSET = 14
_OPS = {"elman": "RNN", "lstm": "LSTM", "gru": "GRU"}
_GATE_ORDER = {"elman": (0,), "lstm": (0, 3, 1, 2), "gru": (1, 0, 2)}  # ONNX's blocks, as bptt's indices
_ELMAN = {"tanh": "Tanh", "relu": "Relu", "sigmoid": "Sigmoid", "identity": "Affine"}
_OUTPUTS = {"softmax": "Softmax", "sigmoid": "Sigmoid", "identity": "Identity"}


def export_onnx(
    model: RNN,
    path: str | os.PathLike,
    *,
    inputs: str | None = None,
    with_lengths: bool = True,
    with_initial_state: bool = False,
    opset: int | None = None,
) -> Path:
    """Write ``model`` as an ONNX graph to ``path`` (atomically) and return the path.

    Parameters
    ----------
    model : bptt.RNN
        Any bptt network (also ``bptt.Elman`` / ``LSTM`` / ``GRU``).
    path : str or PathLike
        The ``.onnx`` file to write.
    inputs : {"dense", "tokens"} or None
        What the graph's first input ``x`` holds: ``"dense"``, float32 vectors (T, B, D), or
        ``"tokens"``, int64 token ids (T, B) (a ``OneHot``, or a ``Gather`` on the embedding).
        ``None``: ``"tokens"`` when the model has an embedding, else ``"dense"``. Ids must lie in
        ``[0, D)``; the graph does not check them.
    with_lengths : bool
        Add the graph input ``sequence_lens``, int32 (B,), as ``lengths`` in ``model.forward``:
        the real steps of each sequence, ``1 ≤ sequence_lens[b] ≤ T``. ONNX graph inputs cannot
        be left out at run time, so a graph without it treats every sequence as T steps long.
    with_initial_state : bool
        Add one graph input per state variable, named as bptt names them (``h0``, ``c0_l1``,
        ``h0_l0_reverse``, …), each float32 (B, H_k). Without them every initial state is zero.
    opset : int or None
        ONNX opset, from 14 to what the installed onnx knows (``None``: :data:`DEFAULT_OPSET`).

    Returns
    -------
    pathlib.Path
        ``path``. The graph's inputs are ``x``, then ``sequence_lens`` and the initial states if
        asked for; its outputs are ``y`` = ŷ (T, B, O) after ``f_y``, then ``state_<name>`` (B, H_k)
        for every state name of ``model.forward(...).state`` (``state_h0``, ``state_c0_l1``, …),
        the state after each sequence's last real step. T and B are symbolic dimensions.

    The graph computes in float32 whatever the model's dtype: onnxruntime implements the RNN,
    LSTM and GRU operators in float32 only (checked with onnxruntime 1.32), so a float64 model's
    weights are rounded to float32. The file carries ``model.config()`` as the metadata
    property ``bptt_config``. Needs the ``onnx`` package (``pip install 'bptt[onnx]'``).
    """
    where = "bptt.export_onnx"
    if not isinstance(model, RNN):
        raise TypeError(f"{where}: model must be a bptt network (bptt.RNN, Elman, LSTM, GRU), got {type(model)!r}")
    inputs = ("tokens" if model.embedding_size is not None else "dense") if inputs is None else inputs
    if inputs not in ("dense", "tokens"):
        raise ValueError(f"{where}: inputs must be 'dense', 'tokens' or None, got {inputs!r}")
    for name, flag in (("with_lengths", with_lengths), ("with_initial_state", with_initial_state)):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{where}: {name} must be True or False, got {flag!r}")
    onnx = require("onnx", "onnx", where)
    newest = onnx.defs.onnx_opset_version()
    opset = DEFAULT_OPSET if opset is None else opset
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or not MIN_OPSET <= opset <= newest:
        raise ValueError(f"{where}: opset must be an int from {MIN_OPSET} to {newest} (this onnx), got {opset!r}")
    model.check_params(where)
    if 4 * model.num_parameters >= 2**31:  # float32 initializers inside one protobuf message
        raise ValueError(f"{where}: {model.num_parameters:,} parameters exceed ONNX's 2 GB limit for one file")

    g = _Graph(onnx)
    helper, FLOAT = onnx.helper, onnx.TensorProto.FLOAT
    tokens = inputs == "tokens"
    D, O = model.input_size, model.output_size
    if tokens:
        graph_inputs = [helper.make_tensor_value_info("x", onnx.TensorProto.INT64, ["T", "B"])]
    else:
        graph_inputs = [helper.make_tensor_value_info("x", FLOAT, ["T", "B", D])]
    lengths = ""
    if with_lengths:
        lengths = "sequence_lens"
        graph_inputs.append(helper.make_tensor_value_info(lengths, onnx.TensorProto.INT32, ["B"]))
    if with_initial_state:
        for name, (H,) in model.state_shapes.items():
            graph_inputs.append(helper.make_tensor_value_info(name, FLOAT, ["B", H]))

    # e_t = E x_t: for ids, row x_t of Eᵀ; without an embedding, ids become one-hot vectors for V.
    if model.embedding_size is not None:
        E_T = g.const("E_T", model.params["E"].T)
        inp = g.op("Gather", [E_T, "x"]) if tokens else g.op("MatMul", ["x", E_T])
    elif tokens:
        depth, values = g.const("vocabulary_size", np.array(D), np.int64), g.const("one_hot_values", [0.0, 1.0])
        inp = g.op("OneHot", ["x", depth, values], axis=-1)  # (T, B, D)
    else:
        inp = "x"

    graph_outputs = []
    for k in range(model.num_layers):
        inp, finals = _level(g, model, k, inp, lengths, with_initial_state)
        for name, value in finals:
            H = model.state_shapes[name][0]
            graph_outputs.append(helper.make_tensor_value_info(value, FLOAT, ["B", H]))

    # z2_t = U h_t + U_x x_t + b_y,  ŷ_t = f_y(z2_t)
    U, U_x, b_y = model.readout.weights(model.params)
    z2 = g.op("MatMul", [inp, g.const("U_T", U.T)])
    if U_x is not None:
        U_x_T = g.const("U_x_T", U_x.T)
        skip = g.op("Gather", [U_x_T, "x"]) if tokens else g.op("MatMul", ["x", U_x_T])
        z2 = g.op("Add", [z2, skip])
    if b_y is not None:
        z2 = g.op("Add", [z2, g.const("b_y", b_y)])
    f_y = _OUTPUTS[model.output.name]
    g.op(f_y, [z2], outputs=["y"], **({"axis": -1} if f_y == "Softmax" else {}))
    graph_outputs.insert(0, helper.make_tensor_value_info("y", FLOAT, ["T", "B", O]))

    graph = helper.make_graph(g.nodes, "bptt", graph_inputs, graph_outputs, g.initializers, doc_string=repr(model))
    opsets = [helper.make_opsetid("", int(opset))]
    proto = helper.make_model(
        graph, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets), producer_name="bptt"
    )
    helper.set_model_props(proto, {"bptt_config": json.dumps(model.config())})
    onnx.checker.check_model(proto)
    write_atomic(path, proto.SerializeToString())
    return Path(path)


class _Graph:
    """The nodes and initializers of the graph being built, with fresh value names."""

    def __init__(self, onnx) -> None:
        self.onnx = onnx
        self.nodes: list = []
        self.initializers: list = []

    def const(self, name: str, value, dtype=np.float32) -> str:
        """An initializer (C-contiguous, float32 unless said otherwise); returns its name."""
        array = np.array(value, dtype=dtype, order="C")  # (np.ascontiguousarray would make a scalar 1-d)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, outputs: list[str] | None = None, **attrs):
        """Append a node; returns its output name, or the list of them when ``n_out > 1``."""
        label = f"{op_type}_{len(self.nodes)}"
        outputs = outputs or [f"{label}_out{i}" for i in range(n_out)]
        self.nodes.append(self.onnx.helper.make_node(op_type, inputs, outputs, name=label, **attrs))
        return outputs[0] if len(outputs) == 1 else outputs


def _gates(a: np.ndarray, kind: str) -> np.ndarray:
    """Rows of ``a`` (G·H, …) with bptt's gate blocks put in ONNX's order."""
    blocks = np.split(a, len(_GATE_ORDER[kind]), axis=0)
    return np.concatenate([blocks[i] for i in _GATE_ORDER[kind]], axis=0)


def _level(g: _Graph, model: RNN, k: int, inp: str, lengths: str, with_initial_state: bool):
    """The ONNX node of level ``k`` reading ``inp`` (T, B, D_k); returns ``(output (T, B, dirs·H),
    [(state name, graph output name), …])``."""
    layers = [model.layers[j] for j in model.levels[k]]  # forward first, then reverse
    first, dirs = layers[0], len(layers)
    kind, H = first.kind, first.hidden_size
    G = len(_GATE_ORDER[kind])
    W, R, B = [], [], []
    for layer in layers:
        V, W_rec, b, *b_hn = layer.weights(model.params)  # (V, W, b) or, for bptt's GRU, (V, W, b, b_hn)
        W.append(_gates(V, kind))  # ONNX's X·Wᵀ is bptt's V x_t
        R.append(_gates(W_rec, kind))  # ONNX's H·Rᵀ is bptt's W h_{t-1}
        if b is not None:
            Rb = np.zeros(G * H, b.dtype)
            if b_hn:  # n_t = tanh(V_n x_t + b_n + r_t ⊙ (W_n h_{t-1} + b_hn)): b_hn is ONNX's Rbh
                Rb[2 * H :] = b_hn[0]
            B.append(np.concatenate([_gates(b, kind), Rb]))
    name = f"layer{k}"
    node_inputs = [inp, g.const(f"{name}_W", W), g.const(f"{name}_R", R), g.const(f"{name}_B", B) if B else ""]
    node_inputs.append(lengths)
    n_vars = len(first.state_names)  # h, and c for the LSTM
    for s in range(n_vars):
        if not with_initial_state:
            node_inputs.append("")
            continue
        # bptt's h0 (B, H) per direction → ONNX's initial_h [dirs, B, H]
        axis0 = g.const(f"{name}_axis0_{s}", [0], np.int64)
        parts = [g.op("Unsqueeze", [layer.state_names[s], axis0]) for layer in layers]
        node_inputs.append(parts[0] if dirs == 1 else g.op("Concat", parts, axis=0))
    while node_inputs[-1] == "":
        node_inputs.pop()

    attrs = dict(hidden_size=H, direction="bidirectional" if dirs == 2 else "forward")
    if kind == "elman":
        act = _ELMAN[first.activation.name]
        attrs["activations"] = [act] * dirs
        if act == "Affine":  # identity: 1·a + 0
            attrs.update(activation_alpha=[1.0] * dirs, activation_beta=[0.0] * dirs)
    elif kind == "gru":
        attrs["linear_before_reset"] = int(model.specs[k].reset_after)
    Y, *finals = g.op(_OPS[kind], node_inputs, n_out=2 + (n_vars - 1), **attrs)  # Y, Y_h (, Y_c)

    states = []
    for d, layer in enumerate(layers):  # ONNX's Y_h [dirs, B, H] → bptt's final h (B, H) per direction
        for s, final in enumerate(finals):
            out = f"state_{layer.state_names[s]}"
            g.op("Gather", [final, g.const(f"{name}_index{d}_{s}", np.array(d), np.int64)], outputs=[out], axis=0)
            states.append((layer.state_names[s], out))
    if dirs == 1:
        return g.op("Squeeze", [Y, g.const(f"{name}_axis1", [1], np.int64)]), states
    # [T, 2, B, H] → [T, B, 2, H] → [T, B, 2H]: bptt's [h_t; h_t^reverse]
    Y = g.op("Transpose", [Y], perm=[0, 2, 1, 3])
    return g.op("Reshape", [Y, g.const(f"{name}_shape", [0, 0, 2 * H], np.int64)]), states
