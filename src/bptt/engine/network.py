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
:class:`Forward` value holding everything :meth:`RNN.backward` needs. The engine
underneath (layers, parameters, the passes on validated arguments) is
:class:`bptt.engine.stack.Stack`; this module adds argument checking, losses, targets and traces.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .. import _checks
from .inputs import step_terms
from .layers import CELLS
from .layers.base import Adjoints, Padding, flip
from .passes import check_masks
from .stack import DropoutMasks, Forward, LayerSpec, Stack, draw_masks

__all__ = ["MODELS", "RNN", "Forward", "LayerSpec", "LossAndGrad", "Trace", "require_network"]

# The named network of each cell kind: from_config builds a uniform stack as one of these.
# Filled by bptt.engine.models, which defines them on top of this module (bptt imports both).
MODELS: dict[str, type[RNN]] = {}
LAYER_KINDS = tuple(CELLS)  # its name before layers.CELLS

# Settings of RNN.config() besides the layers and the sizes.
_SETTINGS = {
    "output",
    "bias",
    "output_bias",
    "notation",
    "output_reads_input",
    "embedding_size",
    "dtype",
    "dropout",
    "recurrent_dropout",
}


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
    outputs : ndarray, (T, B, O), or (B, O) for one target per sequence
        ``ŷ_t`` for every step, or ``ŷ`` of each sequence's final state.
    state : dict of ndarray
        Final state (after each sequence's last real step), to carry into the next window.
    forward : Forward
        The forward pass itself (hidden states, caches), e.g. for :meth:`RNN.state_at`.
    dropout_masks : DropoutMasks or None
        The dropout masks of this pass; pass them as ``dropout_masks=`` to replay it.
    """

    loss: float
    grads: dict[str, np.ndarray]
    outputs: np.ndarray
    state: dict[str, np.ndarray]
    forward: Forward
    dropout_masks: DropoutMasks | None = None


class RNN(Stack):
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
        Whether the recurrent layers have biases (and the output, unless ``output_bias`` says otherwise).
    output_bias : bool or None
        Whether the output layer has its bias ``b_y``; ``None``: as ``bias``. (A PyTorch
        ``nn.LSTM(bias=False)`` under an ``nn.Linear`` with a bias is ``bias=False, output_bias=True``.)
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
    kernels : str
        ``"fast"`` (default) or ``"reference"``: run each cell's reference step in a loop
        (slow; for reading and for checking the fast kernels). Same results to rounding.
    """

    _name = "RNN"

    def config(self) -> dict[str, Any]:
        """A JSON-able description from which :meth:`from_config` rebuilds the architecture."""
        config = {
            "input_size": self.input_size,
            "layers": [s.description() for s in self.specs],
            "output_size": self.output_size,
            "output": self.output.name,
            "bias": self.bias,
            "notation": self.notation,
            "output_reads_input": self.readout.reads_input,
            "embedding_size": self.embedding_size,
            "dtype": self.dtype.name,
        }
        if self.output_bias != self.bias:  # written only when it differs: older configs stay as they were
            config["output_bias"] = self.output_bias
        for name in ("dropout", "recurrent_dropout"):  # written only when used: older configs stay as they were
            if getattr(self, name):
                config[name] = getattr(self, name)
        return config

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        seed: int | np.random.Generator | None = None,
        params: Mapping[str, np.ndarray] | None = None,
        *,
        kernels: str = "fast",
    ) -> RNN:
        """Rebuild a network from :meth:`config`, with fresh weights or with ``params``.

        ``params`` must have exactly the network's names, shapes and dtype; they are
        copied, and no random weights are drawn. A stack of one cell kind and size comes back
        as its named class (:class:`bptt.Elman`, :class:`bptt.LSTM`, :class:`bptt.GRU`), built by
        that class's ``build`` factory in :mod:`bptt.engine.models`; ``LSTM.from_config`` and
        the like accept only their own kind.
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
        unknown = sorted(set(cfg) - _SETTINGS)
        if unknown:
            raise ValueError(f"{where}: config has an unknown setting {unknown}")
        layers = Stack._check_specs(layers, where)  # errors as RNN(...) gives them, before any factory
        named = MODELS.get(layers[0].kind) if len(set(layers)) == 1 else None
        if cls is not RNN and cls is not named:
            raise ValueError(f"{where}: config describes layers {_describe(layers)}, not a {cls.__name__}")
        if named is not None:
            return named.build(input_size, layers, output_size, cfg, seed=seed, params=params, kernels=kernels)
        return RNN(input_size, layers, output_size, seed=seed, kernels=kernels, _params=params, **cfg)

    def __repr__(self) -> str:
        layers = _describe(self.specs)[1:-1]
        return (
            f"{type(self).__name__}(input_size={self.input_size}, layers=[{layers}], "
            f"output_size={self.output_size}, output='{self.output.name}', bias={self.bias}, "
            + (f"output_bias={self.output_bias}, " if self.output_bias != self.bias else "")
            + f"notation='{self.notation}', output_reads_input={self.readout.reads_input}, "
            f"embedding_size={self.embedding_size}, "
            + "".join(f"{n}={getattr(self, n)}, " for n in ("dropout", "recurrent_dropout") if getattr(self, n))
            + f"dtype='{self.dtype.name}', parameters={self.num_parameters})"
        )

    # -- public passes ---------------------------------------------------------------------------
    def forward(self, x: object, h0: object = None, *, lengths: object = None) -> Forward:
        """Run the network over whole sequences (inference: never drops).

        Parameters
        ----------
        x : array, (T, B, D) float or (T, B) int token ids
        h0 : None, array (B, H), tuple, or dict of arrays keyed by state name
            Initial state (zeros if ``None``).
        lengths : int array (B,), optional
            Real steps of each sequence, ``1 ≤ lengths[b] ≤ T``; later steps are padding: the
            state does not change there and the hidden outputs are 0 (``None``: all T).

        Returns
        -------
        Forward
            Outputs ``ŷ`` (T, B, O), logits, every layer's hidden states, the final
            state (after each sequence's last real step) and the caches for :meth:`backward`.
        """
        where = f"{self._name}.forward"
        x, states = self.prepare(x, h0, where)
        return self.run(x, states, lengths=_checks.lengths(lengths, *x.shape[:2], where))

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
            The pass to differentiate (its lengths and dropout masks apply).
        d_logits : ndarray, shaped like ``fwd.logits``
            ``∂J/∂z2``, the gradient with respect to the output pre-activations.
        d_state : dict of ndarray, optional
            Gradient arriving at the final state (keyed like ``fwd.state``).

        Returns
        -------
        dict of ndarray
            Gradients for every parameter, every initial state, and ``"x"`` for float inputs.
        """
        where = f"{self._name}.backward"
        return self.backprop(fwd, *self._backward_args(fwd, d_logits, d_state, where)).grads

    def _backward_args(self, fwd: object, d_logits: object, d_state: object, where: str):
        """Checked ``(d_logits, per-layer final-state gradients or None)`` for :meth:`backward` and :meth:`trace`."""
        self.check_params(where)
        foreign = not isinstance(fwd, Forward) or len(fwd.caches) != len(self.layers)
        if foreign or fwd.logits.shape[-1] != self.output_size:
            raise TypeError(f"{where}: fwd must be the Forward that this network's forward() returned")
        d_logits = _checks.as_array(d_logits, "d_logits", where, self.dtype)
        if d_logits.shape != fwd.logits.shape:
            raise ValueError(f"{where}: d_logits must have shape {fwd.logits.shape}, got {d_logits.shape}")
        d_logits = _checks.float_array(d_logits, "d_logits", self.dtype, where)
        if d_state is None:
            return d_logits, None
        if not isinstance(d_state, Mapping):
            raise TypeError(f"{where}: d_state must be a dict keyed like fwd.state {list(fwd.state)}")
        return d_logits, self.layer_states(dict(d_state), fwd.x.shape[1], f"{where}: d_state")

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
        if fwd.final or fwd.dropout is not None:
            feature = "many-to-one passes" if fwd.final else "passes with dropout"
            raise ValueError(f"{where}: per-step terms are not available for {feature}; use backward")
        wanted = set(self._shapes) if params is None else {params} if isinstance(params, str) else set(params)
        unknown = sorted(wanted - set(self._shapes))
        if unknown:
            raise ValueError(f"{where}: params {unknown} are not parameters of this network {list(self._shapes)}")
        bp = self.backprop(fwd, d_logits, d_final, keep=True)
        terms = self.readout.param_terms(d_logits, fwd.hidden[-1], fwd.x, wanted)
        dh_direct, dh_total = [], []
        for j, layer in enumerate(self.layers):
            cache, adj, direct = fwd.caches[j], bp.layers[j].adjoints, bp.layers[j].dh_direct
            if fwd.rows is not None or self.is_reverse(j):  # the layer's own order → the batch's and its steps'
                cache, adj, direct = _in_batch_order(fwd, cache, adj, direct, self.is_reverse(j))
            if wanted & set(layer.param_shapes()):
                terms.update(layer.param_terms(self.params, cache, adj, wanted))
            dh_direct.append(direct)
            dh_total.append(adj.dh)
        if "E" in wanted and self.embedding_size is not None:
            terms["E"] = step_terms(bp.d_first_input, fwd.x, self.input_size)  # de_t x_tᵀ per step
        return Trace(
            grads=bp.grads,
            terms={name: terms[name] for name in self._shapes if name in wanted},
            dh_direct=tuple(dh_direct),
            dh_total=tuple(dh_total),
        )

    def _pass(self, x, y, h0, loss_weights, lengths, where, rng=None, masks=None):
        """Validated inputs, the forward pass the targets ask for (dropping with ``rng`` or ``masks``),
        and ``(J, y, w)``."""
        x, states = self.prepare(x, h0, where)
        T, B = x.shape[:2]
        lengths = _checks.lengths(lengths, T, B, where)
        out = self.output
        final = _checks.is_final_target(y, B, self.output_size, out.class_targets, where)
        if final and self.readout.reads_input:
            raise ValueError(
                f"{where}: one target per sequence (y of shape {np.shape(y)}) reads the final state only; "
                f"this network's output also reads x_t (output_reads_input=True)"
            )
        y = _checks.targets(y, T, B, self.output_size, out.class_targets, self.dtype, out.name, where, final=final)
        w = _checks.loss_weights(loss_weights, T, B, self.dtype, where, final=final)
        if lengths is not None and not final:  # no loss at padding steps
            w = Padding.of(lengths, T).loss_weights(w, self.dtype)
        masks = self._dropout_masks(T, B, rng, masks, where)  # after every check: no draw for a refused call
        fwd = self.run(x, states, lengths=lengths, dropout=masks, final=final)
        per = out.loss_given_outputs(fwd.outputs, fwd.logits, y)  # (T, B) or (B,)
        if w is not None:
            per = per * w
        return fwd, float(per.sum() / B), y, w

    def loss(
        self, x: object, y: object, h0: object = None, *, loss_weights: object = None, lengths: object = None
    ) -> float:
        """``J = (1/B) Σ_b Σ_t w_tb Loss(y_tb, ŷ_tb)`` without gradients (never drops).

        Arguments as in :meth:`loss_and_grad`.
        """
        return self._pass(x, y, h0, loss_weights, lengths, f"{self._name}.loss")[1]

    def loss_and_grad(
        self,
        x: object,
        y: object,
        h0: object = None,
        *,
        loss_weights: object = None,
        lengths: object = None,
        dropout_rng: np.random.Generator | None = None,
        dropout_masks: DropoutMasks | None = None,
    ) -> LossAndGrad:
        """Loss and its exact gradient by backpropagation through time.

        Parameters
        ----------
        x : array, (T, B, D) float or (T, B) int
            Inputs, or token ids meaning one-hot vectors of size D.
        y : array
            Targets, and where the loss is. One per step: ``(T, B)`` int for
            ``output="softmax"``, ``(T, B, O)`` float otherwise (a loss at every real step).
            One per sequence (many-to-one): ``(B,)`` int or ``(B, O)`` float, read from the top
            layer's final states ``[h at the last real step; h^reverse at step 0]``; the readout
            then runs on those B rows only.
        h0 : None, array (B, H), tuple, or dict keyed by state name
            Initial state (zeros if ``None``).
        loss_weights : array (T, B) (or (B,) for one target per sequence), optional
            ``w_tb`` in ``J = (1/B) Σ_b Σ_t w_tb Loss_tb``.
        lengths : int array (B,), optional
            Real steps of each sequence; later steps are padding (no state change, no loss).
        dropout_rng : numpy.random.Generator, optional
            Draw dropout masks for this pass (the model's ``dropout`` and ``recurrent_dropout``);
            without it nothing is dropped.
        dropout_masks : DropoutMasks, optional
            Replay the masks of an earlier pass (``result.dropout_masks``).

        Returns
        -------
        LossAndGrad
            ``loss``, ``grads`` (every parameter, every initial state and, for float ``x``,
            ``"x"``), ``outputs`` ((T, B, O), or (B, O) for one target per sequence), the final
            ``state`` and the ``dropout_masks`` used (``None`` if none).
        """
        where = f"{self._name}.loss_and_grad"
        fwd, J, y, w = self._pass(x, y, h0, loss_weights, lengths, where, dropout_rng, dropout_masks)
        grads = self.backprop(fwd, self.output.d_logits(fwd.outputs, y, w, fwd.x.shape[1])).grads  # frees ∂J/∂z2
        return LossAndGrad(
            loss=J, grads=grads, outputs=fwd.outputs, state=fwd.state, forward=fwd, dropout_masks=fwd.dropout
        )

    def _dropout_masks(self, T: int, B: int, rng, given, where) -> DropoutMasks | None:
        """The masks for this pass: drawn from ``rng``, replayed from ``given`` (checked), or ``None``."""
        if given is not None:
            if rng is not None:
                raise ValueError(f"{where}: pass dropout_rng or dropout_masks, not both")
            return check_masks(self, given, T, B, where)
        if rng is None or (self.dropout == 0 and self.recurrent_dropout == 0):
            return None
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"{where}: dropout_rng must be a numpy.random.Generator, got {type(rng).__name__}")
        return draw_masks(self, T, B, rng)

    def state_at(self, fwd: Forward, t: int) -> dict[str, np.ndarray]:
        """The state after step ``t`` (0-based) of ``fwd``, keyed like ``fwd.state`` (copies).

        Truncated BPTT with overlapping windows starts the next window from here.
        """
        T = fwd.x.shape[0]
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t < T:
            raise ValueError(f"{self._name}.state_at: t must be an integer in [0, {T}), got {t!r}")
        if self.bidirectional:
            raise ValueError(
                f"{self._name}.state_at: a bidirectional network has no state after step t "
                f"(its reverse layers have not read steps ≤ t yet); use fwd.state or fwd.hidden"
            )
        return {
            name: fwd.in_batch_order(s, axis=0).copy()
            for layer, cache in zip(self.layers, fwd.caches, strict=True)
            for name, s in zip(layer.state_names, layer.state_at(cache, int(t)), strict=True)
        }

    def refuse_bidirectional(self, where: str) -> None:
        """One-step APIs cannot run a reverse direction: it reads the sequence from its end."""
        if self.bidirectional:
            raise ValueError(
                f"{where}: a bidirectional network has no one-step form (its reverse layers read each "
                f"sequence from the end); run whole sequences with forward()"
            )

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
        self.refuse_bidirectional(where)
        self.check_params(where)
        x_t = _checks.step_input(x_t, self.input_size, self.dtype, where)
        logits, states = self.run_step(x_t, self.layer_states(state, x_t.shape[0], where))
        return self.output.f(logits), self.name_states(states)


def _in_batch_order(fwd: Forward, cache: Any, adj: Adjoints, direct: np.ndarray, reverse: bool):
    """A layer's cache, adjoints and direct ``∂J/∂h`` re-indexed by the batch's rows and its own steps.

    The layers run a padded batch longest first (``fwd.rows``): its rows go back to the batch's order.
    A reverse layer's k-th step read real step ``lengths − 1 − k``; flipping every per-step array puts
    each term at the step of the input it read, as for a forward layer (the reference loop's stored
    terms are per processing step, so they are recomputed from the flipped arrays).
    """
    pad = fwd.padding

    def steps(a: np.ndarray, axis: int = 1) -> np.ndarray:
        a = fwd.in_batch_order(a, axis)
        return flip(a, pad) if reverse and axis == 1 else a

    fields = {f: steps(getattr(cache, f), 0 if f in ("h0", "c0") else 1) for f in cache.__dataclass_fields__}
    d_in = steps(adj.d_in)
    d_rec = d_in if adj.d_rec is adj.d_in else steps(adj.d_rec)
    dstate0 = tuple(fwd.in_batch_order(d, 0) for d in adj.dstate0)
    terms = adj.terms if not reverse else None  # per-step terms sum over the batch: its order does not matter
    adj = replace(adj, d_in=d_in, d_rec=d_rec, dh=steps(adj.dh), dstate0=dstate0, terms=terms)
    return replace(cache, **fields), adj, steps(direct)


def _describe(specs: Sequence[LayerSpec]) -> str:
    """``[lstm(4), elman(3, relu)]``: the layers as :meth:`RNN.__repr__` shows them."""

    def one(s: LayerSpec) -> str:
        extra = [s.activation] if s.kind == "elman" else []
        extra += ["bidirectional"] * s.bidirectional + ["reset_after=False"] * (not s.reset_after)
        return f"{s.kind}({', '.join([str(s.hidden_size), *extra])})"

    return "[" + ", ".join(one(s) for s in specs) + "]"


def require_network(model: object, where: str) -> None:
    """Refuse anything but a bptt network (Elman, LSTM, GRU or RNN), naming ``where``."""
    if not isinstance(model, RNN):
        raise TypeError(f"{where}: model must be a bptt network (Elman, LSTM, GRU or RNN), got {type(model).__name__}")
