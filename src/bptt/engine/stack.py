"""The engine of a recurrent network: a stack of recurrent layers and an output layer.

:class:`Stack` builds the layers and holds the parameters; it runs validated inputs
forward (:meth:`Stack.run`, :meth:`Stack.run_step`) and backward
(:meth:`Stack.backprop`). These public functions are the seam every other part of bptt
uses (the diagnostics, generation, gradcheck, the :class:`~bptt.stepper.Stepper`,
training); :class:`bptt.RNN` adds the user-facing API on top: argument checking,
losses and targets, traces, configs.

Equations for a stack of L layers (layer k's hidden states are layer k+1's inputs)::

    e_t     = E x_t                                   (optional embedding)
    h^(1)_t = cell_1(e_t,        h^(1)_{t-1})
    h^(k)_t = cell_k(h^(k-1)_t,  h^(k)_{t-1})          k = 2 .. L
    z2_t    = U h^(L)_t [+ U_x x_t] + b_y,   ŷ_t = f_y(z2_t)

Arrays are time-major: ``x`` is ``(T, B, D)`` floats or ``(T, B)`` token ids.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from .. import _checks
from .activations import get_activation
from .inputs import project, project_backward
from .layers import CELLS, ELMAN_NOTATIONS, KERNELS, ClassicGRULayer, ElmanLayer, Layer
from .layers.base import Padding, flip
from .losses import get_output
from .passes import Backprop, DropoutMasks, Forward, LayerBackprop, LayerSpec, States, draw_masks, longest_first
from .readout import Readout

__all__ = ["Backprop", "DropoutMasks", "Forward", "LayerBackprop", "LayerSpec", "Stack", "draw_masks"]


def _is_array(value: object) -> bool:
    return isinstance(value, np.ndarray) and value.ndim >= 1


def _take_rows(states, rows: np.ndarray | None):
    """Per-layer states (tuples of (B, H) arrays, or ``None``) with their rows taken in the order ``rows``."""
    if rows is None:
        return states
    return tuple(None if st is None else tuple(s[rows] for s in st) for st in states)


class Stack:
    """Recurrent layers and an output layer with their parameters; see the module docstring.

    Parameters as :class:`bptt.RNN` (which is the class to use).
    """

    _name = "Stack"

    def __init__(
        self,
        input_size: int,
        layers: Sequence[LayerSpec],
        output_size: int,
        *,
        output: str = "softmax",
        bias: bool = True,
        output_bias: bool | None = None,
        notation: str = "lecture",
        output_reads_input: bool = False,
        embedding_size: int | None = None,
        dtype: str | np.dtype = "float64",
        seed: int | np.random.Generator | None = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        kernels: str = "fast",
        _params: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        where = self._name
        self.dropout = _checks.real(dropout, "dropout", where, strict=False, high=1.0)
        self.recurrent_dropout = _checks.real(recurrent_dropout, "recurrent_dropout", where, strict=False, high=1.0)
        self.input_size = _checks.positive_int(input_size, "input_size", where)
        self.output_size = _checks.positive_int(output_size, "output_size", where)
        self.dtype = _checks.float_dtype(dtype, where)
        self.output = get_output(output, where)
        if not isinstance(notation, str) or notation not in ELMAN_NOTATIONS:
            raise ValueError(f"{where}: notation must be one of {sorted(ELMAN_NOTATIONS)}, got {notation!r}")
        output_bias = bias if output_bias is None else output_bias
        for flag, value in (("bias", bias), ("output_bias", output_bias), ("output_reads_input", output_reads_input)):
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"{where}: {flag} must be True or False, got {value!r}")
        self.notation = notation
        self.bias = bool(bias)  # the recurrent layers' biases
        self.output_bias = bool(output_bias)  # the readout's b_y
        self.embedding_size = (
            None if embedding_size is None else _checks.positive_int(embedding_size, "embedding_size", where)
        )
        if not isinstance(kernels, str) or kernels not in KERNELS:
            raise ValueError(f"{where}: kernels must be one of {list(KERNELS)}, got {kernels!r}")
        self.kernels = kernels
        self.specs = tuple(self._check_specs(layers, where))
        if self.dropout > 0 and len(self.specs) == 1:
            raise ValueError(
                f"{where}: dropout applies between stacked layers (as torch.nn.LSTM's), and this network has "
                f"one layer; use recurrent_dropout, or num_layers ≥ 2"
            )
        self.layers: tuple[Layer, ...] = tuple(self._build_layers())
        self.readout = Readout(
            hidden_size=self.specs[-1].width,
            input_size=self.input_size,
            output_size=self.output_size,
            bias=self.output_bias,
            reads_input=bool(output_reads_input),
            notation=notation,
        )
        self._shapes = {"E": (self.embedding_size, self.input_size)} if self.embedding_size else {}
        self._shapes.update({n: s for part in (*self.layers, self.readout) for n, s in part.param_shapes().items()})
        self.params: dict[str, np.ndarray] = {}
        if _params is not None:  # known weights (a checkpoint): check them before allocating anything
            self.params = {k: np.asarray(v) for k, v in _params.items()}
            self.check_params(where)
            self.params = {k: self.params[k].copy() for k in self._shapes}
            return
        rng = _checks.generator(seed, where)
        if self.embedding_size is not None:
            # Like torch.nn.Embedding: N(0, 1) entries; E is oriented (out, in) like every weight.
            self.params["E"] = rng.standard_normal((self.embedding_size, self.input_size)).astype(self.dtype)
        for part in (*self.layers, self.readout):
            self.params.update(part.init_params(rng, self.dtype))

    # -- construction ------------------------------------------------------------
    @staticmethod
    def _check_specs(layers: object, where: str) -> list[LayerSpec]:
        if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence) or len(layers) == 0:
            raise ValueError(f"{where}: layers must be a non-empty sequence of LayerSpec, got {layers!r}")
        specs = []
        for k, spec in enumerate(layers):
            if isinstance(spec, Mapping):
                spec = LayerSpec(**spec)
            if not isinstance(spec, LayerSpec):
                raise TypeError(f"{where}: layers[{k}] must be a LayerSpec, got {spec!r}")
            if spec.kind not in CELLS:
                raise ValueError(f"{where}: layers[{k}].kind must be one of {list(CELLS)}, got {spec.kind!r}")
            _checks.positive_int(spec.hidden_size, f"layers[{k}].hidden_size", where)
            for flag in ("bidirectional", "reset_after"):
                if not isinstance(getattr(spec, flag), (bool, np.bool_)):
                    raise TypeError(f"{where}: layers[{k}].{flag} must be True or False, got {getattr(spec, flag)!r}")
            if not spec.reset_after and spec.kind != "gru":
                raise ValueError(f"{where}: layers[{k}].reset_after applies to gru layers only, got kind {spec.kind!r}")
            if spec.kind == "elman":
                get_activation(spec.activation, f"{where}: layers[{k}]")
            elif spec.activation != "tanh":
                raise ValueError(
                    f"{where}: layers[{k}].activation applies to elman layers only; "
                    f"{spec.kind} gates have fixed activations, got {spec.activation!r}"
                )
            specs.append(spec)
        return specs

    def _build_layers(self) -> list[Layer]:
        """One layer per spec, then its reverse twin if bidirectional (the order of the parameters)."""
        layers: list[Layer] = []
        levels: list[tuple[int, ...]] = []
        d = self.input_size if self.embedding_size is None else self.embedding_size
        many = len(self.specs) > 1
        for k, spec in enumerate(self.specs):
            here = []
            for direction in ("", "_reverse") if spec.bidirectional else ("",):
                common = dict(bias=self.bias, suffix=(f"_l{k}" if many else "") + direction, kernels=self.kernels)
                if spec.kind == "elman":
                    activation = get_activation(spec.activation, self._name)
                    layer: Layer = ElmanLayer(d, spec.hidden_size, activation, notation=self.notation, **common)
                else:
                    cell = ClassicGRULayer if spec.kind == "gru" and not spec.reset_after else CELLS[spec.kind]
                    layer = cell(d, spec.hidden_size, **common)
                here.append(len(layers))
                layers.append(layer)
            levels.append(tuple(here))
            d = spec.width
        self.levels = tuple(levels)  # per spec, the indices of its layers in self.layers (forward first)
        self._reverse = tuple(j != level[0] for level in levels for j in level)
        return layers

    def is_reverse(self, j: int) -> bool:
        """Whether ``self.layers[j]`` is a reverse direction."""
        return self._reverse[j]

    @property
    def bidirectional(self) -> bool:
        return any(self._reverse)

    # -- description ---------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return len(self.specs)

    @property
    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        """Initial-state names mapped to ``(H_k,)`` (add the batch dimension in front)."""
        return {name: (layer.hidden_size,) for layer in self.layers for name in layer.state_names}

    @property
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter names mapped to their shapes, in model order."""
        return dict(self._shapes)

    @property
    def num_parameters(self) -> int:
        return int(sum(np.prod(s) for s in self._shapes.values()))

    def copy(self) -> Stack:
        """A deep copy: same architecture, parameters copied (C-contiguous)."""
        return self.astype(self.dtype)

    def astype(self, dtype: str | np.dtype) -> Stack:
        """A copy with parameters in ``dtype`` (``"float32"`` or ``"float64"``), C-contiguous."""
        new = copy.copy(self)
        new.dtype = _checks.float_dtype(dtype, f"{self._name}.astype")
        new.params = {k: np.array(v, dtype=new.dtype, order="C") for k, v in self.params.items()}
        return new

    def with_kernels(self, kernels: str) -> Stack:
        """A copy that runs ``kernels``: ``"fast"`` (the optimised loops) or ``"reference"``
        (each cell's reference step, looped: slow, for reading and for checking a suspect fast path)."""
        where = f"{self._name}.with_kernels"
        if not isinstance(kernels, str) or kernels not in KERNELS:
            raise ValueError(f"{where}: kernels must be one of {list(KERNELS)}, got {kernels!r}")
        new = self.copy()
        new.kernels = kernels
        new.layers = tuple(replace(layer, kernels=kernels) for layer in self.layers)
        return new

    # -- validation ------------------------------------------------------------------
    def check_params(self, where: str) -> None:
        """Raise a clear error (naming ``where``) unless ``params`` has exactly the network's names,
        shapes and dtype, all finite."""
        params = self.params
        if params.keys() != self._shapes.keys():
            missing = sorted(self._shapes.keys() - params.keys())
            extra = sorted(params.keys() - self._shapes.keys())
            raise ValueError(
                f"{where}: params must have keys {list(self._shapes)}, missing {missing}, unexpected {extra}"
            )
        for name, shape in self._shapes.items():
            p = params[name]
            if not isinstance(p, np.ndarray) or p.shape != shape:
                got = f"shape {p.shape}" if isinstance(p, np.ndarray) else type(p).__name__
                raise ValueError(f"{where}: params[{name!r}] must be an array of shape {shape}, got {got}")
            if p.dtype != self.dtype:
                raise TypeError(f"{where}: params[{name!r}] must have dtype {self.dtype}, got {p.dtype}")
            _checks.finite(p, f"params[{name!r}]", where)

    def layer_states(self, h0: object, B: int, where: str) -> States:
        """Validated private copies of an initial state, per layer, for batch size ``B``.

        ``h0`` is ``None`` (zeros), an array (one state variable), a tuple in state-name order,
        or a dict keyed by state name (missing names are zeros). Errors name ``where``.
        """
        names = [name for layer in self.layers for name in layer.state_names]
        if h0 is None:
            given: dict[str, object] = {}
        elif isinstance(h0, Mapping):
            unknown = sorted(set(h0) - set(names))
            if unknown:
                raise ValueError(f"{where}: h0 has unknown state names {unknown}; expected {names}")
            given = dict(h0)
        elif isinstance(h0, (tuple, list)) and (len(names) > 1 or (len(h0) == 1 and _is_array(h0[0]))):
            # A sequence of state arrays, in state-name order (a nested list of numbers is one array).
            if len(h0) != len(names):
                raise ValueError(f"{where}: h0 as a sequence must have {len(names)} arrays {names}, got {len(h0)}")
            given = dict(zip(names, h0, strict=True))
        else:
            if len(names) != 1:
                raise ValueError(f"{where}: this network has state variables {names}; pass h0 as a dict keyed by them")
            given = {names[0]: h0}
        states = []
        for layer in self.layers:
            per_layer = []
            for name in layer.state_names:
                shape = (B, layer.hidden_size)
                if name not in given or given[name] is None:
                    per_layer.append(np.zeros(shape, self.dtype))
                    continue
                arr = _checks.as_array(given[name], name, where, self.dtype)
                if arr.shape != shape:
                    raise ValueError(f"{where}: {name} must have shape {shape}, got {arr.shape}")
                # A private copy: caches must not change when the caller reuses its array.
                per_layer.append(_checks.float_array(arr, name, self.dtype, where).copy())
            states.append(tuple(per_layer))
        return tuple(states)

    def name_states(self, states: States) -> dict[str, np.ndarray]:
        """Per-layer states (as :meth:`layer_states` returns) keyed by state name (``"h0"``, ``"c0_l1"``, …)."""
        return {
            name: s
            for layer, st in zip(self.layers, states, strict=True)
            for name, s in zip(layer.state_names, st, strict=True)
        }

    # -- the seam: passes on validated arguments -----------------------------------------------
    def initial_state(self, batch_size: int) -> dict[str, np.ndarray]:
        """Zero initial state for ``batch_size`` sequences, keyed by state name."""
        B = _checks.positive_int(batch_size, "batch_size", f"{self._name}.initial_state")
        return {name: np.zeros((B, size[0]), self.dtype) for name, size in self.state_shapes.items()}

    def prepare(self, x: object, h0: object, where: str) -> tuple[np.ndarray, States]:
        """Validated ``(x, per-layer initial states)`` for :meth:`run`; errors name ``where``.

        Checks the parameters too. ``x`` comes back as a private read-only copy in the
        network's dtype (token ids stay integers), the states as private copies.
        """
        self.check_params(where)
        x = _checks.sequence_input(x, self.input_size, self.dtype, where).copy()
        x.flags.writeable = False  # the caches keep x: a private, read-only copy
        return x, self.layer_states(h0, x.shape[1], where)

    def run(
        self,
        x: np.ndarray,
        states: States,
        *,
        lengths: np.ndarray | None = None,
        dropout: DropoutMasks | None = None,
        final: bool = False,
    ) -> Forward:
        """The forward pass on arguments from :meth:`prepare` (and :meth:`check_lengths`).

        ``lengths`` marks padding; ``dropout`` applies those masks; ``final`` reads the output
        from the top layer's final states only (many-to-one) instead of at every step.
        """
        # A padded batch runs longest first: each layer's step t then works on its first n_t rows only.
        rows = longest_first(lengths)
        back = None if rows is None else np.argsort(rows)  # layer row order → the batch's
        x_l, states, masks = x, _take_rows(states, rows), None if dropout is None else dropout.take_rows(rows)
        if rows is not None:
            x_l = np.take(x, rows, axis=1)  # np.take, not x[:, rows]: its result is C-contiguous
            x_l.flags.writeable = False  # kept by the first layer's cache
        pad = None if lengths is None else Padding.of(lengths if rows is None else lengths[rows], x.shape[0])
        hidden, caches, finals = [], [None] * len(self.layers), [None] * len(self.layers)
        # The embedding e_t = E x_t is a linear map of the input (a column gather for token ids).
        inp = x_l if self.embedding_size is None else project(x_l, self.params["E"])
        for k, level in enumerate(self.levels):
            outs = []
            for j in level:
                layer, reverse = self.layers[j], self.is_reverse(j)
                rmask = None if masks is None else masks.recurrent.get(layer.state_names[0])
                H, state_T, cache = layer.forward(
                    self.params, flip(inp, pad) if reverse else inp, states[j], pad=pad, rmask=rmask
                )
                caches[j], finals[j] = cache, state_T
                out = H if pad is None else H * pad.valid[:, :, None]  # padding steps output 0
                outs.append(flip(out, pad) if reverse else out)
            inp = outs[0] if len(outs) == 1 else np.concatenate(outs, axis=-1)
            if masks is not None and k < len(masks.outputs):
                inp = inp * masks.outputs[k]
            hidden.append(inp if back is None else np.take(inp, back, axis=1))
        finals = _take_rows(finals, back)
        if final:  # many-to-one: [h at the last real step; h^reverse after step 0], the top layer's final h
            top = [finals[j][0] for j in self.levels[-1]]
            logits = self.readout.forward(self.params, np.concatenate(top, axis=-1)[None], x[:1])[0]
        else:
            logits = self.readout.forward(self.params, hidden[-1], x)
        return Forward(
            outputs=self.output.f(logits),
            logits=logits,
            hidden=tuple(hidden),
            state=self.name_states(finals),
            x=x,
            caches=tuple(caches),
            lengths=lengths,
            dropout=dropout,
            final=final,
            rows=rows,
        )

    def run_step(self, x_t: np.ndarray, states: States) -> tuple[np.ndarray, States]:
        """Logits ``z2_t`` (B, O) and the new per-layer states after one step, on validated
        ``x_t`` ((B, D) or ids (B,)) and states (the generation hot path)."""
        inp = x_t if self.embedding_size is None else project(x_t[None], self.params["E"])[0]
        finals = []
        for layer, st in zip(self.layers, states, strict=True):
            st = layer.step(self.params, inp, st)
            finals.append(st)
            inp = st[0]
        return self.readout.step(self.params, inp, x_t), tuple(finals)

    def backprop(
        self, fwd: Forward, d_logits: np.ndarray, d_final: States | None = None, *, keep: bool = False
    ) -> Backprop:
        """BPTT from ``∂J/∂z2`` ((T, B, O), or (B, O) for a many-to-one pass) and, optionally,
        per-layer gradients at the final state.

        On checked arguments (:meth:`bptt.RNN.backward` checks them). ``keep=True`` keeps every
        layer's direct ``∂J/∂h_t`` and adjoints in the result (for traces and diagnostics);
        otherwise layers may overwrite the gradient arrays they receive to save memory.
        """
        x = fwd.x
        dense = x.dtype.kind == "f"
        pad, rows = fwd.layer_padding, fwd.rows  # the layers ran the batch in this row order
        masks = None if fwd.dropout is None else fwd.dropout.take_rows(rows)
        d_final = list(_take_rows(d_final, rows)) if d_final is not None else [None] * len(self.layers)
        if fwd.final:  # the readout read the top layer's final h: its gradient arrives there
            top = [fwd.state[self.layers[j].state_names[0]] for j in self.levels[-1]]
            H_top = np.concatenate(top, axis=-1)[None]
            grads, dH, dx_skip = self.readout.backward(self.params, d_logits[None], H_top, x[:1], False)
            dH = self._add_to_final(dH[0] if rows is None else dH[0, rows], d_final)
        else:
            grads, dH, dx_skip = self.readout.backward(self.params, d_logits, fwd.hidden[-1], x, dense)
            dH = dH if rows is None else np.take(dH, rows, axis=1)
        del d_logits  # freed here if nothing else holds it (loss_and_grad on CPython 3.11+; not a kept pass)
        state_grads: dict[str, np.ndarray] = {}
        kept: dict[int, LayerBackprop] = {}
        dx = None
        for k in range(self.num_layers - 1, -1, -1):
            level = self.levels[k]
            need_dx = k > 0 or dense or self.embedding_size is not None
            if dH is not None and masks is not None and k < len(masks.outputs):
                dH = dH * masks.outputs[k]
            dx = None
            for i, j in enumerate(level):
                layer, reverse = self.layers[j], self.is_reverse(j)
                H = layer.hidden_size
                if dH is None:
                    dH_j = np.zeros((x.shape[0], x.shape[1], H), self.dtype)
                else:
                    dH_j = dH if len(level) == 1 else np.ascontiguousarray(dH[..., i * H : (i + 1) * H])
                    if pad is not None:
                        dH_j = dH_j * pad.valid[:, :, None]  # the padding steps' outputs are constants
                    if reverse:
                        dH_j = np.ascontiguousarray(flip(dH_j, pad))
                rmask = None if masks is None else masks.recurrent.get(layer.state_names[0])
                layer_grads, dx_j, dstate0, adj = layer.backward(
                    self.params, fwd.caches[j], dH_j, d_final[j], need_dx,
                    overwrite_dH=not keep, keep=keep, pad=pad, rmask=rmask,
                )  # fmt: skip
                if keep:
                    kept[j] = LayerBackprop(dh_direct=dH_j, adjoints=adj)
                grads.update(layer_grads)
                state_grads.update(zip(layer.state_names, dstate0, strict=True))
                if dx_j is not None:
                    dx_j = flip(dx_j, pad) if reverse else dx_j
                    dx = dx_j if dx is None else dx + dx_j
            dH = dx
        if rows is not None:  # back to the batch's row order
            back = np.argsort(rows)
            state_grads = {name: g[back] for name, g in state_grads.items()}
            dx = None if dx is None else np.take(dx, back, axis=1)
        d_first = dx
        if self.embedding_size is not None:
            grads["E"], dx = project_backward(dx, x, self.params["E"], dense)  # ∂J/∂E = Σ_t de_t x_tᵀ
        ordered = {name: grads[name] for name in self._shapes}
        ordered.update({name: state_grads[name] for name in self.state_shapes})
        if dense:
            ordered["x"] = dx if dx_skip is None else dx + dx_skip
        if not keep:
            return Backprop(grads=ordered)
        return Backprop(grads=ordered, layers=tuple(kept[j] for j in range(len(self.layers))), d_first_input=d_first)

    def _add_to_final(self, dH_top: np.ndarray, d_final: list) -> None:
        """Add ``∂J/∂[h; h^reverse]`` of the top layer's final states (B, width) into ``d_final``; returns
        ``None``, the direct gradient at every step (there is none)."""
        start = 0
        for j in self.levels[-1]:
            layer = self.layers[j]
            dh = dH_top[:, start : start + layer.hidden_size]
            start += layer.hidden_size
            if d_final[j] is None:
                d_final[j] = (dh.copy(), *(np.zeros_like(dh) for _ in layer.state_names[1:]))
            else:
                d_final[j] = (d_final[j][0] + dh, *d_final[j][1:])
        return None
