"""A recurrent network: a stack of recurrent layers and an output layer, with exact BPTT.

Equations for a stack of L layers (layer k's hidden states are layer k+1's inputs)::

    h^(1)_t = cell_1(x_t,        h^(1)_{t-1})
    h^(k)_t = cell_k(h^(k-1)_t,  h^(k)_{t-1})          k = 2 .. L
    ŷ_t     = f_y(U h^(L)_t [+ U_x x_t] + b_y)
    J       = (1/B) Σ_b Σ_t w_tb Loss(y_tb, ŷ_tb)

Arrays are time-major: ``x`` is ``(T, B, D)`` floats or ``(T, B)`` token ids,
outputs are ``(T, B, O)``. Parameters live in one flat dict, ``net.params``,
named as in the course documents (``V, W, b_h, U, b_y`` or the exam's
``W_ss, W_sx, W_o`` / ``W_ssx, W_ox``); in a stack of more than one layer each
layer's names carry ``_l0``, ``_l1``, … as PyTorch's ``weight_hh_l0`` do.
Initial states are named ``h0`` (and ``c0`` for an LSTM), suffixed likewise.

Nothing about a pass is stored on the network: :meth:`RNN.forward` returns a
:class:`Forward` value holding everything :meth:`RNN.backward` needs.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _checks
from .activations import get_activation
from .inputs import project, project_backward, step_terms
from .layers import ELMAN_NOTATIONS, ElmanLayer, GRULayer, Layer, LSTMLayer
from .losses import get_output
from .readout import Readout

__all__ = ["RNN", "Forward", "LayerSpec", "LossAndGrad", "Trace"]

LAYER_KINDS = ("elman", "lstm", "gru")


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
    """

    kind: str
    hidden_size: int
    activation: str = "tanh"


@dataclass(frozen=True)
class Forward:
    """Result of :meth:`RNN.forward`: every hidden state and output, and the backward cache.

    Attributes
    ----------
    outputs : ndarray, (T, B, O)
        ``ŷ_t = f_y(z2_t)`` for every step.
    logits : ndarray, (T, B, O)
        ``z2_t``, the output pre-activations.
    hidden : tuple of ndarray, each (T, B, H_k)
        Hidden states ``h_1 .. h_T`` of every layer, bottom first.
    state : dict of ndarray, each (B, H_k)
        Final state, keyed like the initial state (``"h0"``, ``"c0"``, …): pass
        it as ``h0`` to continue the sequence.
    x : ndarray
        The validated input.
    caches : tuple
        One immutable cache per layer (``ElmanCache``, ``LSTMCache``, ``GRUCache``).
    """

    outputs: np.ndarray
    logits: np.ndarray
    hidden: tuple[np.ndarray, ...]
    state: dict[str, np.ndarray]
    x: np.ndarray
    caches: tuple[Any, ...]


@dataclass(frozen=True)
class Trace:
    """Result of :meth:`RNN.trace`: a backward pass with every term of its sums kept.

    ==========  =====================  ======================================================
    field       shape                  meaning
    ==========  =====================  ======================================================
    grads       as ``backward``        the gradients
    terms       name → (T, *shape)     each parameter's per-step terms; ``terms[n].sum(0)``
                                       equals ``grads[n]`` (e.g. quiz Q3's ``Σ_t`` for b_y)
    dh_direct   per layer (T, B, H_k)  ∂J/∂h_t through step t's consumers only (the output
                                       layer, or the layer above), not through h_{t+1}
    dh_total    per layer (T, B, H_k)  dJ/dh_t including every later step (BPTT's carry)
    ==========  =====================  ======================================================

    For the recurrent layers the step-``k`` term is where the weight *acted* (its
    input at step k), summed over every loss that step reaches.
    """

    grads: dict[str, np.ndarray]
    terms: dict[str, np.ndarray]
    dh_direct: tuple[np.ndarray, ...]
    dh_total: tuple[np.ndarray, ...]


@dataclass(frozen=True)
class LossAndGrad:
    """Result of :meth:`RNN.loss_and_grad`.

    Attributes
    ----------
    loss : float
        ``J = (1/B) Σ_b Σ_t w_tb Loss_tb``.
    grads : dict of ndarray
        ``∂J/∂θ`` for every key of ``params``, for every initial state (``"h0"``, …)
        and, for float inputs, ``"x"`` of shape (T, B, D).
    outputs : ndarray, (T, B, O)
        ``ŷ_t`` for every step.
    state : dict of ndarray
        Final state, to carry into the next window (truncated BPTT).
    forward : Forward
        The forward pass itself (hidden states, caches), e.g. for :meth:`RNN.state_at`.
    """

    loss: float
    grads: dict[str, np.ndarray]
    outputs: np.ndarray
    state: dict[str, np.ndarray]
    forward: Forward


def _is_array(value: object) -> bool:
    return isinstance(value, np.ndarray) and value.ndim >= 1


class RNN:
    """A stack of recurrent layers with an output layer, trained by exact BPTT.

    Parameters
    ----------
    input_size : int
        D, size of ``x_t`` (or the vocabulary size for token-id inputs).
    layers : sequence of LayerSpec
        The recurrent layers, bottom first.
    output_size : int
        O, size of ``ŷ_t``.
    output : str
        ``f_y``: ``"softmax"`` (cross-entropy, integer targets), ``"sigmoid"``
        (binary cross-entropy) or ``"identity"`` (squared error ``½‖ŷ − y‖²``).
    bias : bool
        Whether layers and output have biases.
    notation : str
        Parameter names: ``"lecture"`` (``V, W, b_h, U, b_y``), ``"mit"``
        (``W_sx, W_ss, b_s, W_o, b_o``) or ``"concat"`` (``W_ssx, b_s, W_o | W_ox, b_o``).
        LSTM and GRU layers always use ``V, W, b``.
    output_reads_input : bool
        Whether the output also reads ``x_t`` (RNN-B): ``ŷ_t = f_y(U h_t + U_x x_t + b_y)``.
    embedding_size : int or None
        If set, inputs first pass through an embedding ``e_t = E x_t`` with ``E`` of shape
        ``(embedding_size, D)`` (for token ids: column ``x_t`` of ``E``), and the first layer
        reads ``e_t``.
    dtype : str
        ``"float32"`` or ``"float64"``.
    seed : int, numpy.random.Generator or None
        Source of the initial weights (keyword-only randomness).
    """

    _name = "RNN"

    def __init__(
        self,
        input_size: int,
        layers: Sequence[LayerSpec],
        output_size: int,
        *,
        output: str = "softmax",
        bias: bool = True,
        notation: str = "lecture",
        output_reads_input: bool = False,
        embedding_size: int | None = None,
        dtype: str | np.dtype = "float64",
        seed: int | np.random.Generator | None = None,
        _params: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        where = self._name
        self.input_size = _checks.positive_int(input_size, "input_size", where)
        self.output_size = _checks.positive_int(output_size, "output_size", where)
        self.dtype = _checks.float_dtype(dtype, where)
        self.output = get_output(output, where)
        if not isinstance(notation, str) or notation not in ELMAN_NOTATIONS:
            raise ValueError(f"{where}: notation must be one of {sorted(ELMAN_NOTATIONS)}, got {notation!r}")
        for flag, value in (("bias", bias), ("output_reads_input", output_reads_input)):
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"{where}: {flag} must be True or False, got {value!r}")
        self.notation = notation
        self.bias = bool(bias)
        self.embedding_size = (
            None if embedding_size is None else _checks.positive_int(embedding_size, "embedding_size", where)
        )
        self.specs = tuple(self._check_specs(layers, where))
        self.layers: tuple[Layer, ...] = tuple(self._build_layers())
        self.readout = Readout(
            hidden_size=self.specs[-1].hidden_size,
            input_size=self.input_size,
            output_size=self.output_size,
            bias=self.bias,
            reads_input=bool(output_reads_input),
            notation=notation,
        )
        self._shapes = {"E": (self.embedding_size, self.input_size)} if self.embedding_size else {}
        self._shapes.update({n: s for part in (*self.layers, self.readout) for n, s in part.param_shapes().items()})
        self.params: dict[str, np.ndarray] = {}
        if _params is not None:  # known weights (a checkpoint): check them before allocating anything
            self.params = {k: np.asarray(v) for k, v in _params.items()}
            self._check_params(where)
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
            if spec.kind not in LAYER_KINDS:
                raise ValueError(f"{where}: layers[{k}].kind must be one of {list(LAYER_KINDS)}, got {spec.kind!r}")
            _checks.positive_int(spec.hidden_size, f"layers[{k}].hidden_size", where)
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
        layers: list[Layer] = []
        d = self.input_size if self.embedding_size is None else self.embedding_size
        many = len(self.specs) > 1
        for k, spec in enumerate(self.specs):
            suffix = f"_l{k}" if many else ""
            if spec.kind == "elman":
                layer: Layer = ElmanLayer(
                    d, spec.hidden_size, get_activation(spec.activation, self._name), self.bias, self.notation, suffix
                )
            elif spec.kind == "lstm":
                layer = LSTMLayer(d, spec.hidden_size, self.bias, suffix)
            else:
                layer = GRULayer(d, spec.hidden_size, self.bias, suffix)
            layers.append(layer)
            d = spec.hidden_size
        return layers

    # -- description ---------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return len(self.layers)

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

    def config(self) -> dict[str, Any]:
        """A JSON-able description from which :meth:`from_config` rebuilds the architecture."""
        return {
            "input_size": self.input_size,
            "layers": [dict(kind=s.kind, hidden_size=s.hidden_size, activation=s.activation) for s in self.specs],
            "output_size": self.output_size,
            "output": self.output.name,
            "bias": self.bias,
            "notation": self.notation,
            "output_reads_input": self.readout.reads_input,
            "embedding_size": self.embedding_size,
            "dtype": self.dtype.name,
        }

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        seed: int | np.random.Generator | None = None,
        params: Mapping[str, np.ndarray] | None = None,
    ) -> RNN:
        """Rebuild a network from :meth:`config`, with fresh weights or with ``params``.

        ``params`` must have exactly the network's names, shapes and dtype; they are
        copied, and no random weights are drawn.
        """
        where = f"{cls.__name__}.from_config"
        if not isinstance(config, Mapping):
            raise TypeError(f"{where}: config must be a dict from RNN.config(), got {type(config).__name__}")
        cfg = dict(config)
        try:
            layers = [LayerSpec(**spec) for spec in cfg.pop("layers")]
            input_size, output_size = cfg.pop("input_size"), cfg.pop("output_size")
        except KeyError as exc:
            raise ValueError(f"{where}: config is missing {exc}") from None
        except TypeError as exc:
            raise ValueError(f"{where}: config 'layers' must be a list of layer descriptions ({exc})") from None
        try:
            model = RNN(input_size, layers, output_size, seed=seed, _params=params, **cfg)
        except TypeError as exc:
            if "unexpected keyword" in str(exc):
                raise ValueError(f"{where}: config has an unknown setting ({exc})") from None
            raise
        return model._named() if cls is RNN else model

    def _named(self) -> RNN:
        """This network as an Elman, LSTM or GRU when it is one (a uniform stack), else unchanged."""
        from .models import NAMED  # models builds on this module

        uniform = len({(s.kind, s.hidden_size, s.activation) for s in self.specs}) == 1
        if uniform and type(self) is RNN:
            self.__class__ = NAMED[self.specs[0].kind]  # subclasses add only their name
        return self

    def copy(self) -> RNN:
        """A deep copy: same architecture, parameters copied (C-contiguous)."""
        return self.astype(self.dtype)

    def astype(self, dtype: str | np.dtype) -> RNN:
        """A copy with parameters in ``dtype`` (``"float32"`` or ``"float64"``), C-contiguous."""
        new = copy.copy(self)
        new.dtype = _checks.float_dtype(dtype, f"{self._name}.astype")
        new.params = {k: np.array(v, dtype=new.dtype, order="C") for k, v in self.params.items()}
        return new

    def __repr__(self) -> str:
        layers = ", ".join(
            f"{s.kind}({s.hidden_size}{', ' + s.activation if s.kind == 'elman' else ''})" for s in self.specs
        )
        return (
            f"{type(self).__name__}(input_size={self.input_size}, layers=[{layers}], "
            f"output_size={self.output_size}, output='{self.output.name}', bias={self.bias}, "
            f"notation='{self.notation}', output_reads_input={self.readout.reads_input}, "
            f"embedding_size={self.embedding_size}, "
            f"dtype='{self.dtype.name}', parameters={self.num_parameters})"
        )

    # -- validation ------------------------------------------------------------------
    def _check_params(self, where: str) -> None:
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

    def _state(self, h0: object, B: int, where: str) -> tuple[tuple[np.ndarray, ...], ...]:
        """Initial state per layer from ``None``, an array, a tuple or a dict keyed by state name."""
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

    def _state_dict(self, states) -> dict[str, np.ndarray]:
        return {
            name: s
            for layer, st in zip(self.layers, states, strict=True)
            for name, s in zip(layer.state_names, st, strict=True)
        }

    # -- passes ----------------------------------------------------------------------
    def initial_state(self, batch_size: int) -> dict[str, np.ndarray]:
        """Zero initial state for ``batch_size`` sequences, keyed by state name."""
        B = _checks.positive_int(batch_size, "batch_size", f"{self._name}.initial_state")
        return {name: np.zeros((B, size[0]), self.dtype) for name, size in self.state_shapes.items()}

    def forward(self, x: object, h0: object = None) -> Forward:
        """Run the network over whole sequences (inference, or the first half of training).

        Parameters
        ----------
        x : array, (T, B, D) float or (T, B) int token ids
        h0 : None, array (B, H), tuple, or dict of arrays keyed by state name
            Initial state (zeros if ``None``).

        Returns
        -------
        Forward
            Outputs ``ŷ`` (T, B, O), logits, every layer's hidden states, the final
            state and the caches for :meth:`backward`.
        """
        return self._forward(*self._prepare(x, h0, f"{self._name}.forward"))

    def _prepare(self, x: object, h0: object, where: str):
        """Validated ``(x, per-layer initial states)``; errors name ``where``, the caller's entry point."""
        self._check_params(where)
        x = _checks.sequence_input(x, self.input_size, self.dtype, where).copy()
        x.flags.writeable = False  # the caches keep x: a private, read-only copy
        return x, self._state(h0, x.shape[1], where)

    def _forward(self, x: np.ndarray, states) -> Forward:
        hidden, caches, finals = [], [], []
        # The embedding e_t = E x_t is a linear map of the input (a column gather for token ids).
        inp = x if self.embedding_size is None else project(x, self.params["E"])
        for layer, state0 in zip(self.layers, states, strict=True):
            H, state_T, cache = layer.forward(self.params, inp, state0)
            hidden.append(H)
            caches.append(cache)
            finals.append(state_T)
            inp = H
        logits = self.readout.forward(self.params, inp, x)
        outputs = self.output.f(logits)
        return Forward(
            outputs=outputs,
            logits=logits,
            hidden=tuple(hidden),
            state=self._state_dict(finals),
            x=x,
            caches=tuple(caches),
        )

    def backward(
        self,
        fwd: Forward,
        d_logits: np.ndarray,
        d_state: Mapping[str, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """Backpropagate through time from ``∂J/∂z2_t`` for every step.

        Parameters
        ----------
        fwd : Forward
            The pass to differentiate.
        d_logits : ndarray, (T, B, O)
            ``∂J/∂z2_t``, the gradient with respect to the output pre-activations.
        d_state : dict of ndarray, optional
            Gradient arriving at the final state (keyed like ``fwd.state``).

        Returns
        -------
        dict of ndarray
            Gradients for every parameter, every initial state, and ``"x"`` for float inputs.
        """
        where = f"{self._name}.backward"
        return self._backward(fwd, *self._backward_args(fwd, d_logits, d_state, where))

    def _backward_args(self, fwd: object, d_logits: object, d_state: object, where: str):
        """Checked ``(d_logits, per-layer final-state gradients or None)`` for :meth:`backward` and :meth:`trace`."""
        self._check_params(where)
        foreign = not isinstance(fwd, Forward) or len(fwd.caches) != self.num_layers
        if foreign or fwd.logits.shape[2] != self.output_size:
            raise TypeError(f"{where}: fwd must be the Forward that this network's forward() returned")
        d_logits = _checks.as_array(d_logits, "d_logits", where, self.dtype)
        if d_logits.shape != fwd.logits.shape:
            raise ValueError(f"{where}: d_logits must have shape {fwd.logits.shape}, got {d_logits.shape}")
        d_logits = _checks.float_array(d_logits, "d_logits", self.dtype, where)
        if d_state is None:
            return d_logits, None
        if not isinstance(d_state, Mapping):
            raise TypeError(f"{where}: d_state must be a dict keyed like fwd.state {list(fwd.state)}")
        return d_logits, self._state(dict(d_state), fwd.logits.shape[1], f"{where}: d_state")

    def trace(
        self,
        fwd: Forward,
        d_logits: np.ndarray,
        d_state: Mapping[str, np.ndarray] | None = None,
        *,
        params: Sequence[str] | None = None,
    ) -> Trace:
        """Backpropagate like :meth:`backward`, keeping every term of BPTT's sums over time.

        Returns a :class:`Trace`: the gradients, each parameter's per-step terms (the
        ``Σ_t`` of the lecture's formulas, one entry per step), and for every layer the
        direct ``∂J/∂h_t`` (through step t's own consumers) and the total ``dJ/dh_t``.
        ``params`` limits the per-step terms to those parameters (each is a ``(T, *shape)`` array).
        """
        where = f"{self._name}.trace"
        d_logits, d_final = self._backward_args(fwd, d_logits, d_state, where)
        collected: dict = {}
        wanted = set(self._shapes) if params is None else {params} if isinstance(params, str) else set(params)
        unknown = sorted(wanted - set(self._shapes))
        if unknown:
            raise ValueError(f"{where}: params {unknown} are not parameters of this network {list(self._shapes)}")
        grads = self._backward(fwd, d_logits, d_final, collected)
        terms = self.readout.param_terms(d_logits, fwd.hidden[-1], fwd.x, wanted)
        for k, layer in enumerate(self.layers):
            if wanted & set(layer.param_shapes()):
                terms.update(layer.param_terms(self.params, fwd.caches[k], collected[k][1], wanted))
        if "E" in wanted and self.embedding_size is not None:
            terms["E"] = step_terms(collected["d_embed"], fwd.x, self.input_size)  # de_t x_tᵀ per step
        return Trace(
            grads=grads,
            terms={name: terms[name] for name in self._shapes if name in wanted},
            dh_direct=tuple(collected[k][0] for k in range(self.num_layers)),
            dh_total=tuple(collected[k][1].dh for k in range(self.num_layers)),
        )

    def _backward(
        self, fwd: Forward, d_logits: np.ndarray, d_final: tuple | None = None, collect: dict | None = None
    ) -> dict[str, np.ndarray]:
        """:meth:`backward` on checked arguments; ``d_final`` holds per-layer state gradients (or ``None``).

        ``collect``, when given, receives each layer's direct gradient and adjoints (for :meth:`trace`).
        """
        x = fwd.x
        dense = x.dtype.kind == "f"
        grads, dH, dx_skip = self.readout.backward(self.params, d_logits, fwd.hidden[-1], x, dense)
        del d_logits  # freed here if nothing else holds it (loss_and_grad on CPython 3.11+; not a trace)
        state_grads: dict[str, np.ndarray] = {}
        dx = None
        for k in range(self.num_layers - 1, -1, -1):
            layer = self.layers[k]
            need_dx = k > 0 or dense or self.embedding_size is not None
            dT = None if d_final is None else d_final[k]
            keep = collect is not None  # a trace keeps dH and every adjoint; training lets the layer reuse dH
            layer_grads, dx, dstate0, adj = layer.backward(
                self.params, fwd.caches[k], dH, dT, need_dx, overwrite_dH=not keep, keep=keep
            )
            if keep:
                collect[k] = (dH, adj)
            grads.update(layer_grads)
            state_grads.update(zip(layer.state_names, dstate0, strict=True))
            dH = dx
        if collect is not None:
            collect["d_embed"] = dx
        if self.embedding_size is not None:
            grads["E"], dx = project_backward(dx, x, self.params["E"], dense)  # ∂J/∂E = Σ_t de_t x_tᵀ
        ordered = {name: grads[name] for name in self._shapes}
        ordered.update({name: state_grads[name] for name in self.state_shapes})
        if dense:
            ordered["x"] = dx if dx_skip is None else dx + dx_skip
        return ordered

    def _d_logits(self, fwd: Forward, y: np.ndarray, w: np.ndarray | None) -> np.ndarray:
        """``∂J/∂z2_t = (p_t - y_t) w_tb / B`` for every matched output/loss pair, ``(T, B, O)``."""
        B = fwd.logits.shape[1]
        dZ = self.output.residual(fwd.outputs, y)
        if w is None:
            dZ *= 1.0 / B
        else:
            dZ *= (w / B)[..., None]
        return dZ

    def _loss_terms(self, fwd: Forward, y: object, loss_weights: object, where: str):
        T, B = fwd.logits.shape[:2]
        y = _checks.targets(y, T, B, self.output_size, self.output.class_targets, self.dtype, self.output.name, where)
        w = _checks.loss_weights(loss_weights, T, B, self.dtype, where)
        per_step = self.output.loss_given_outputs(fwd.outputs, fwd.logits, y)  # (T, B)
        if w is not None:
            per_step = per_step * w
        return float(per_step.sum() / B), y, w

    def loss(self, x: object, y: object, h0: object = None, *, loss_weights: object = None) -> float:
        """``J = (1/B) Σ_b Σ_t w_tb Loss(y_tb, ŷ_tb)`` without gradients.

        Arguments as in :meth:`loss_and_grad`.
        """
        where = f"{self._name}.loss"
        fwd = self._forward(*self._prepare(x, h0, where))
        return self._loss_terms(fwd, y, loss_weights, where)[0]

    def loss_and_grad(self, x: object, y: object, h0: object = None, *, loss_weights: object = None) -> LossAndGrad:
        """Loss and its exact gradient by backpropagation through time.

        Parameters
        ----------
        x : array, (T, B, D) float or (T, B) int
            Inputs, or token ids meaning one-hot vectors of size D.
        y : array, (T, B) int for ``output="softmax"``; (T, B, O) float otherwise
            Targets.
        h0 : None, array (B, H), tuple, or dict keyed by state name
            Initial state (zeros if ``None``).
        loss_weights : array (T, B), optional
            ``w_tb`` in ``J = (1/B) Σ_b Σ_t w_tb Loss_tb``: 0/1 weights pick single steps
            (e.g. only the last step for many-to-one).

        Returns
        -------
        LossAndGrad
            ``loss``, ``grads`` (every parameter, ``h0``/``c0`` and, for float ``x``,
            ``"x"``), ``outputs`` and the final ``state``.
        """
        where = f"{self._name}.loss_and_grad"
        fwd = self._forward(*self._prepare(x, h0, where))
        J, y, w = self._loss_terms(fwd, y, loss_weights, where)
        grads = self._backward(fwd, self._d_logits(fwd, y, w))  # no reference kept here: backward frees it
        return LossAndGrad(loss=J, grads=grads, outputs=fwd.outputs, state=fwd.state, forward=fwd)

    def state_at(self, fwd: Forward, t: int) -> dict[str, np.ndarray]:
        """The state after step ``t`` (0-based) of ``fwd``, keyed like ``fwd.state`` (copies).

        Truncated BPTT with overlapping windows starts the next window from here.
        """
        T = fwd.logits.shape[0]
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t < T:
            raise ValueError(f"{self._name}.state_at: t must be an integer in [0, {T}), got {t!r}")
        return {
            name: s.copy()
            for layer, cache in zip(self.layers, fwd.caches, strict=True)
            for name, s in zip(layer.state_names, layer.state_at(cache, int(t)), strict=True)
        }

    def step(self, x_t: object, state: object = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One time step, for generation.

        Parameters
        ----------
        x_t : array, (B, D) float or (B,) int token ids
        state : None, array, tuple or dict keyed by state name
            State after the previous step (zeros if ``None``).

        Returns
        -------
        (p_t, state) : ndarray (B, O) and dict of ndarray (B, H_k)
        """
        where = f"{self._name}.step"
        self._check_params(where)
        x_t = _checks.step_input(x_t, self.input_size, self.dtype, where)
        logits, states = self._step(x_t, self._state(state, x_t.shape[0], where))
        return self.output.f(logits), self._state_dict(states)

    def _step(self, x_t: np.ndarray, states: tuple) -> tuple[np.ndarray, tuple]:
        """Logits ``z2_t`` (B, O) and new per-layer states, on validated input (the generation hot path)."""
        inp = x_t if self.embedding_size is None else project(x_t[None], self.params["E"])[0]
        finals = []
        for layer, st in zip(self.layers, states, strict=True):
            st = layer.step(self.params, inp, st)
            finals.append(st)
            inp = st[0]
        return self.readout.step(self.params, inp, x_t), tuple(finals)
