"""What every recurrent layer provides, and helpers they share.

A layer is an immutable description (sizes, activation, parameter names). It
owns no arrays: parameters come in as a dict, and ``forward`` returns the
values ``backward`` needs as a frozen cache object, so nothing about a pass is
stored on the layer or the model.

Each cell (``elman.py``, ``lstm.py``, ``gru.py``) is defined once, by its
*reference step*: ``step_forward`` (one step of the equations) and
``step_backward`` (the chain rule through that step, one line per factor),
plain NumPy with no buffers. Everything else is an optimisation of those two
functions, tested equal to them (``tests/test_kernels.py``):

==================  =========================================================
kernel              what it optimises
==================  =========================================================
``fast_forward``    the time loop of ``step_forward``: input terms of every step
                    in one product, gates in place in preallocated buffers
``fast_adjoints``   the time loop of ``step_backward``: the local derivatives of
                    every step at once; only ``d_rec_t W`` stays in the loop
``backward``        the sums over time of ``step_backward``'s weight gradients,
                    as one matrix product each over all ``T·B`` rows
``token_kernel``    one token at batch size 1, for generation (:class:`TokenKernel`)
==================  =========================================================

A layer built with ``kernels="reference"`` runs the reference loops instead
(:meth:`Layer.reference_forward`, :meth:`Layer.reference_backward`): slow, for
reading and for checking a suspect fast path; same results to rounding.

Shapes are time-major: inputs ``(T, B, D)`` (or token ids ``(T, B)``), hidden
states ``(T, B, H)``, and each state variable of a layer (``h``, and ``c`` for
the LSTM) is ``(B, H)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..inputs import is_tokens, project_backward, step_terms
from .tokens import TokenKernel as TokenKernel
from .tokens import augmented as augmented

__all__ = [
    "KERNELS",
    "Adjoints",
    "Layer",
    "Padding",
    "StepGrads",
    "TokenKernel",
    "augmented",
    "flip",
    "freeze",
    "pass_through",
    "segments",
    "stacked_states",
    "state_buffer",
    "uniform",
]

State = tuple[np.ndarray, ...]
KERNELS = ("fast", "reference")


@dataclass(frozen=True)
class Adjoints:
    """Per-step gradients from a layer's backward loop (the quantities BPTT carries).

    Every parameter gradient is a sum over steps of one of the first two times an
    input of that step: ``∂J/∂V = Σ_t d_in_tᵀ x_t``, ``∂J/∂W = Σ_t d_rec_tᵀ h_{t-1}``.

    ======  ===========  ===================================================================
    field   shape        meaning
    ======  ===========  ===================================================================
    d_in    (T, B, G·H)  ∂J/∂ of the input-side pre-activations ``V x_t + b`` (G gates)
    d_rec   (T, B, G·H)  ∂J/∂ of the recurrent-side pre-activations ``W h_{t-1}``; ``None`` when
                         not kept (a layer whose two sides differ then derives it in ``d_rec_from``)
    dh      (T, B, H)    total ∂J/∂h_t: direct term plus everything through later steps;
                         ``None`` when not kept
    dstate0 tuple        ∂J/∂ of the initial state variables, each (B, H)
    terms   tuple        the reference loop's per-step weight terms, in the order of
                         :meth:`Layer.weights`, each (T, *shape); ``None`` from the fast kernels
    ======  ===========  ===================================================================
    """

    d_in: np.ndarray
    d_rec: np.ndarray | None
    dh: np.ndarray | None
    dstate0: State
    terms: tuple[np.ndarray | None, ...] | None = None


@dataclass(frozen=True)
class Padding:
    """Which steps of a batch are real: sequence ``b`` has ``lengths[b]`` steps, the rest is padding.

    At a padding step a layer's state does not change (``state_t = state_{t-1}``) and the
    step's local gradients are zero: the state after the last real step is the final state, and
    a padded batch computes exactly what its sequences compute one by one. A cache holds 0 for
    the values a padding step would have kept (gates and the like).

    ======  =========  ==========================================================
    field   shape      meaning
    ======  =========  ==========================================================
    lengths (B,)       steps of each sequence, ``1 ≤ lengths[b] ≤ T``
    valid   (T, B)     ``t < lengths[b]``
    pad     (T, B, 1)  ``t ≥ lengths[b]``, shaped to select rows of a (B, ·) step
    first   int        ``min(lengths)``: no step before it is padding anywhere
    order   (T, B)     step of the time-reversed sequence: ``lengths[b] − 1 − t`` for real steps,
                       ``t`` for padding (a reverse layer reads the real steps backwards)
    sizes   T ints     ``n_t``, how many sequences are still running at step ``t`` (PyTorch's
                       ``batch_sizes``): when ``descending``, they are rows ``0 .. n_t − 1``
    ======  =========  ==========================================================

    The fast kernels need ``descending`` (the longest sequence first, as :meth:`Stack.run
    <bptt.engine.stack.Stack.run>` sorts every batch): a step then runs on the first ``n_t``
    rows only, contiguous slices, and the padding costs nothing but a copy of the stopped rows.
    """

    lengths: np.ndarray
    valid: np.ndarray
    pad: np.ndarray
    first: int
    order: np.ndarray
    sizes: tuple[int, ...]
    descending: bool

    @classmethod
    def of(cls, lengths: np.ndarray, T: int) -> Padding:
        t = np.arange(T)[:, None]
        valid = t < lengths[None, :]
        order = np.where(valid, lengths[None, :] - 1 - t, t)
        return cls(
            lengths=lengths,
            valid=valid,
            pad=~valid[:, :, None],
            first=int(lengths.min()),
            order=order,
            sizes=tuple(int(n) for n in valid.sum(axis=1)),
            descending=bool(np.all(lengths[:-1] >= lengths[1:])),
        )

    def loss_weights(self, w: np.ndarray | None, dtype) -> np.ndarray:
        """``w`` (T, B) with the padding steps' weights set to 0 (all ones when ``w`` is ``None``)."""
        valid = self.valid.astype(dtype)
        return valid if w is None else w * valid

    def at(self, t: int) -> np.ndarray | None:
        """``(B, 1)`` rows of step ``t`` that are padding, or ``None`` when there are none."""
        return self.pad[t] if t >= self.first else None


def segments(pad: Padding | None, T: int, B: int) -> list[tuple[int, int, int]]:
    """For a fast kernel's loop: runs ``(t0, t1, n)`` of steps ``t0 .. t1 − 1`` whose real rows are ``0 .. n − 1``.

    Rows ``n .. B − 1`` of those steps are padding (the sequences come longest first, so ``n``
    only shrinks). A kernel takes views of its arrays' first ``n`` rows once per run, and the
    steps inside index them by ``t`` alone. Without padding: one run of all ``T`` steps and ``B`` rows.
    """
    if pad is None:
        return [(0, T, B)]
    if not pad.descending:
        raise ValueError(
            "fast kernels run the sequences of a padded batch longest first; sort the batch by length "
            "(Stack.run does), or use kernels='reference'"
        )
    runs, t0 = [], 0
    for t in range(1, T + 1):
        if t == T or pad.sizes[t] != pad.sizes[t0]:
            runs.append((t0, t, pad.sizes[t0]))
            t0 = t
    return runs


def pass_through(d: np.ndarray, direct: np.ndarray, total: np.ndarray | None) -> None:
    """Backward through padding steps, which copied the state: rows of ``d`` (∂J/∂state, (b, H)) take in
    the steps' direct gradients ``direct`` ((k, b, H), last step last) and pass on; ``total`` ((k, b, H) or
    ``None``) receives the running totals, ∂J/∂h at each of those steps."""
    if total is not None:
        np.cumsum(direct[::-1], axis=0, out=total[::-1])
        total += d
    d += direct.sum(axis=0)


def flip(a: np.ndarray, pad: Padding | None) -> np.ndarray:
    """Each sequence of ``a`` (T, B, …) with its real steps in reverse order, padding left in place.

    Its own inverse. Without padding, a view ``a[::-1]``; with it, one gather.
    """
    if pad is None:
        return a[::-1]
    index = pad.order if a.ndim == 2 else pad.order.reshape(pad.order.shape + (1,) * (a.ndim - 2))
    return np.take_along_axis(a, index, axis=0)


def freeze(*arrays: np.ndarray | None) -> None:
    """Mark arrays read-only so a cache cannot be changed after the forward pass."""
    for a in arrays:
        if a is not None:
            a.flags.writeable = False


def uniform(rng: np.random.Generator, shape: tuple[int, ...], scale: float, dtype) -> np.ndarray:
    """Draw ``U(-scale, scale)`` in the requested dtype (PyTorch's RNN initialisation)."""
    return rng.uniform(-scale, scale, size=shape).astype(dtype)


@dataclass(frozen=True)
class StepGrads:
    """What :meth:`Layer.step_backward` returns for one step ``t``.

    ========  ==============  ==========================================================
    field     shape           meaning
    ========  ==============  ==========================================================
    dstate    tuple, (B, H)   ∂J/∂state_{t-1} through this step (``dh_prev``, ``dc_prev``)
    dweights  tuple           this step's term of each weight's gradient, in the order of
                              :meth:`Layer.weights` (``None`` for a missing bias)
    dx        (B, D) or None  ∂J/∂x_t (``None`` for token ids)
    d_in      (B, G·H)        ∂J/∂ of the input-side pre-activations ``V x_t + b``
    d_rec     (B, G·H)        ∂J/∂ of the recurrent-side pre-activations ``W h_{t-1}``
    ========  ==============  ==========================================================
    """

    dstate: State
    dweights: tuple[np.ndarray | None, ...]
    dx: np.ndarray | None
    d_in: np.ndarray
    d_rec: np.ndarray


def _without_rows(values: Any, rows: np.ndarray) -> Any:
    """A step's kept values (an array or a tuple of arrays) with the padding ``rows`` set to 0."""
    if isinstance(values, np.ndarray):
        return np.where(rows, 0.0, values)
    return type(values)(*(np.where(rows, 0.0, v) for v in values))


def _add(total: np.ndarray | None, term: np.ndarray | None) -> np.ndarray | None:
    return term if total is None else total + term


class Layer(ABC):
    """A recurrent layer: ``state_t = cell(x_t, state_{t-1})``, output ``h_t``.

    Subclasses are frozen dataclasses with at least ``input_size``,
    ``hidden_size``, ``bias``, ``suffix`` (appended to every parameter and state name,
    ``""`` for a single-layer network, ``"_l{k}"`` in a stack) and ``kernels``
    (``"fast"`` or ``"reference"``, which loops run).
    """

    input_size: int
    hidden_size: int
    bias: bool
    suffix: str
    kind: str = "layer"
    kernels: str = "fast"
    same_sides: bool = True  # d_in = d_rec: every pre-activation sums its input and recurrent sides

    # -- description ---------------------------------------------------------------------------
    @property
    @abstractmethod
    def state_names(self) -> tuple[str, ...]:
        """Names of the initial-state variables, e.g. ``("h0",)`` or ``("h0", "c0")``."""

    @abstractmethod
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter names mapped to shapes, in a fixed order."""

    def init_params(self, rng: np.random.Generator, dtype: np.dtype) -> dict[str, np.ndarray]:
        """Fresh parameters drawn from ``rng`` in the order of :meth:`param_shapes`: every matrix
        ``U(−1/√H, 1/√H)`` (PyTorch's RNN initialisation), every bias 0."""
        scale = 1.0 / np.sqrt(self.hidden_size)
        return {
            name: np.zeros(shape, dtype) if len(shape) == 1 else uniform(rng, shape, scale, dtype)
            for name, shape in self.param_shapes().items()
        }

    def weights(self, params: dict[str, np.ndarray]) -> tuple[np.ndarray | None, ...]:
        """The cell's weights in lecture order: ``(V, W, b)`` here (``None`` for a missing bias);
        cells with other names or more weights override this and :meth:`named`."""
        s = self.suffix
        return params["V" + s], params["W" + s], params["b" + s] if self.bias else None

    def named(self, grads: tuple[np.ndarray | None, ...]) -> dict[str, np.ndarray]:
        """Gradients (or per-step terms) in the order of :meth:`weights`, keyed by parameter name."""
        dV, dW, db = grads
        s = self.suffix
        named = {"V" + s: dV, "W" + s: dW}
        if self.bias:
            named["b" + s] = db
        return named

    def bias_grads(self, in_total: np.ndarray | None, rec_total: np.ndarray | None) -> tuple[np.ndarray | None, ...]:
        """The bias entries of :meth:`weights`' gradient from the sums of ``d_in`` and ``d_rec``."""
        return (in_total,)

    @property
    def weight_names(self) -> tuple[str, str]:
        """Names of the input weight and the recurrent weight (the same name when they are fused)."""
        return "V" + self.suffix, "W" + self.suffix

    def input_weight(self, params: dict[str, np.ndarray]) -> np.ndarray:
        """``V`` of shape ``(G·H, D)``, the matrix applied to ``x_t`` (a view for fused notations)."""
        return self.weights(params)[0]

    @abstractmethod
    def state_at(self, cache: Any, t: int) -> State:
        """The state after step ``t`` (0-based) of the pass that produced ``cache``."""

    # -- the reference step: the definition of the cell ----------------------------------------
    @abstractmethod
    def step_forward(
        self, w: tuple, x_t: np.ndarray, state: State, rmask: np.ndarray | None = None
    ) -> tuple[State, Any]:
        """One step of the equations: ``(state_t, kept)`` from ``x_t`` (B, D) or ids (B,) and ``state_{t-1}``.

        ``kept`` holds the step's intermediate values that :meth:`step_backward` reads. ``rmask``
        (B, H), recurrent dropout, multiplies ``h_{t-1}`` where it enters the product ``W h_{t-1}``.
        """

    @abstractmethod
    def step_backward(
        self, w: tuple, x_t: np.ndarray, state_prev: State, kept: Any, dstate: State, rmask: np.ndarray | None = None
    ) -> StepGrads:
        """The chain rule through one step, from ``dstate`` = total ∂J/∂state_t (``dh`` includes the direct term)."""

    @abstractmethod
    def step_values(self, cache: Any, t: int) -> tuple[State, Any]:
        """``(state_{t-1}, kept)`` of step ``t`` read back from a cache."""

    @abstractmethod
    def cache_from_steps(self, x: np.ndarray, state0: State, states: list[State], kept: list[Any]) -> Any:
        """The cache of a whole pass from the reference steps' states and kept values (the same type as
        :meth:`fast_forward`'s, so every consumer of caches reads both)."""

    def step(self, params: dict[str, np.ndarray], x_t: np.ndarray, state: State) -> State:
        """One step: ``x_t`` of shape ``(B, D)`` (or ``(B,)`` token ids) → new state (the reference step)."""
        return self.step_forward(self.weights(params), x_t, state)[0]

    # -- whole sequences -----------------------------------------------------------------------
    def forward(
        self,
        params: dict[str, np.ndarray],
        x: np.ndarray,
        state0: State,
        *,
        pad: Padding | None = None,
        rmask: np.ndarray | None = None,
    ) -> tuple[np.ndarray, State, Any]:
        """Run the whole sequence.

        Returns ``(H, state_T, cache)`` with ``H`` of shape ``(T, B, hidden_size)``: the state
        after every step (at padding steps, the state of the last real one). ``pad`` marks the
        padding steps (:class:`Padding`); ``rmask`` (B, H) is a recurrent-dropout mask.
        """
        if self.kernels == "reference":
            return self.reference_forward(params, x, state0, pad=pad, rmask=rmask)
        return self.fast_forward(params, x, state0, pad=pad, rmask=rmask)

    def reference_forward(self, params, x: np.ndarray, state0: State, *, pad=None, rmask=None):
        """:meth:`forward` by looping :meth:`step_forward` over the steps."""
        w = self.weights(params)
        state, states, kept = state0, [], []
        for t in range(x.shape[0]):
            new, values = self.step_forward(w, x[t], state, rmask)
            rows = None if pad is None else pad.at(t)
            if rows is not None:  # padding: the state stays as it was, and the step keeps nothing
                new = tuple(np.where(rows, old, n) for old, n in zip(state, new, strict=True))
                values = _without_rows(values, rows)
            state = new
            states.append(state)
            kept.append(values)
        cache = self.cache_from_steps(x, state0, states, kept)
        return cache.H, tuple(s.copy() for s in state), cache

    def reference_backward(
        self,
        params,
        cache: Any,
        dH: np.ndarray,
        dstate_T: State | None,
        need_dx: bool,
        keep: bool,
        pad=None,
        rmask=None,
    ) -> tuple[dict[str, np.ndarray], np.ndarray | None, State, Adjoints | None]:
        """:meth:`backward` by looping :meth:`step_backward` from the last step to the first.

        Each weight's gradient is the sum of the steps' terms (min-char-rnn's ``dWhh += …``). At a
        padding step the state was copied, so its gradient passes through unchanged and the step
        itself (seeded with zeros for those rows) adds nothing.
        """
        w = self.weights(params)
        T = dH.shape[0]
        if dstate_T is None:
            carry = tuple(np.zeros_like(s) for s in self.step_values(cache, T - 1)[0])
        else:
            carry = dstate_T
        totals: list[np.ndarray | None] = [None] * len(w)
        dx, d_in, d_rec, dh_total, steps = [], [], [], [], []
        for t in range(T - 1, -1, -1):
            state_prev, kept = self.step_values(cache, t)
            dh = dH[t] + carry[0]  # total ∂J/∂h_t: its own consumers plus everything through step t + 1
            through = (dh, *carry[1:])  # total ∂J/∂state_t
            rows = None if pad is None else pad.at(t)
            dstate = through if rows is None else tuple(np.where(rows, 0.0, d) for d in through)
            g = self.step_backward(w, cache.x[t], state_prev, kept, dstate, rmask)  # padding rows: zeros in, zeros out
            totals = [_add(total, term) for total, term in zip(totals, g.dweights, strict=True)]
            carry = g.dstate  # into step t - 1
            if rows is not None:  # a padding step copied the state: its gradient passes through unchanged
                carry = tuple(np.where(rows, d, c) for d, c in zip(through, carry, strict=True))
            dx.append(g.dx)
            d_in.append(g.d_in)
            d_rec.append(g.d_rec)
            dh_total.append(dh)
            steps.append(g.dweights)
        grads = self.named(tuple(totals))
        dX = np.stack(dx[::-1]) if need_dx and not is_tokens(cache.x) else None
        if not keep:
            return grads, dX, carry, None
        D_in = np.stack(d_in[::-1])
        D_rec = D_in if self.same_sides else np.stack(d_rec[::-1])
        # Each weight's term of every step, first step first (None for a missing bias).
        terms = tuple(None if k[0] is None else np.stack(k[::-1]) for k in zip(*steps, strict=True))
        adj = Adjoints(d_in=D_in, d_rec=D_rec, dh=np.stack(dh_total[::-1]), dstate0=carry, terms=terms)
        return grads, dX, carry, adj

    @abstractmethod
    def fast_forward(self, params, x: np.ndarray, state0: State, *, pad=None, rmask=None):
        """:meth:`forward` optimised: the input terms of all steps in one product, buffers reused."""

    @abstractmethod
    def fast_adjoints(
        self, params, cache: Any, dH: np.ndarray, dstate_T: State | None, *, overwrite_dH, keep, pad=None, rmask=None
    ) -> Adjoints:
        """The backward loop, optimised: from ``dH = ∂J/∂h_t`` (direct terms only, ``(T, B, H)``) to
        :class:`Adjoints`, with the local derivatives of all steps computed before the loop.

        ``dstate_T`` is the gradient arriving at the final state from beyond the
        window (``None`` for zero). ``overwrite_dH`` lets the loop use ``dH``'s memory
        (the caller owns it and will not read it again). ``keep=False`` asks for only
        what :meth:`backward` needs: ``dh`` is not stored (one ``(T, B, H)`` array less)
        and ``d_rec`` may be ``None``.
        """

    def d_rec_from(self, cache: Any, adj: Adjoints) -> np.ndarray:
        """``d_rec`` when ``adj`` did not keep it; may reuse ``adj.d_in``'s memory (read ``d_in`` first)."""
        raise NotImplementedError(f"{type(self).__name__} always keeps d_rec")

    def backward(
        self,
        params: dict[str, np.ndarray],
        cache: Any,
        dH: np.ndarray,
        dstate_T: State | None,
        need_dx: bool,
        *,
        overwrite_dH: bool = False,
        keep: bool = True,
        pad: Padding | None = None,
        rmask: np.ndarray | None = None,
    ) -> tuple[dict[str, np.ndarray], np.ndarray | None, State, Adjoints | None]:
        """BPTT through the layer; returns ``(grads, dx, dstate0, adjoints)``.

        The sums over time are single matrix products over all ``T·B`` rows. ``adjoints`` is
        ``None`` unless ``keep`` (see :meth:`fast_adjoints` for both flags); ``pad`` and ``rmask``
        as given to :meth:`forward`.
        """
        if self.kernels == "reference":
            return self.reference_backward(params, cache, dH, dstate_T, need_dx, keep, pad, rmask)
        adj = self.fast_adjoints(
            params, cache, dH, dstate_T, overwrite_dH=overwrite_dH, keep=keep, pad=pad, rmask=rmask
        )
        T, B, G = adj.d_in.shape
        # Everything that reads d_in comes first: d_rec_from may turn d_in into d_rec in place.
        dV, dx = project_backward(adj.d_in, cache.x, self.input_weight(params), need_dx and not is_tokens(cache.x))
        in_total = adj.d_in.sum(axis=(0, 1)) if self.bias else None
        if adj.d_rec is adj.d_in:  # one pre-activation per gate (Elman, LSTM): the two sides agree
            d_rec, rec_total = adj.d_in, in_total
        else:
            d_rec = self.d_rec_from(cache, adj) if adj.d_rec is None else adj.d_rec
            rec_total = d_rec.sum(axis=(0, 1)) if self.bias else None
        H_prev = recurrent_input(cache, rmask).reshape(T * B, self.hidden_size)
        dW = d_rec.reshape(T * B, G).T @ H_prev  # Σ_t d_rec_tᵀ h_{t-1} (masked as it entered W h_{t-1})
        grads = self.named((dV, dW, *self.bias_grads(in_total, rec_total)))
        return grads, dx, adj.dstate0, adj if keep else None

    def param_terms(
        self,
        params: dict[str, np.ndarray],
        cache: Any,
        adj: Adjoints,
        wanted: set[str] | None = None,
        rmask: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """The terms of the sums over time: ``{name: (T, *shape)}``, summing to the gradients.

        ``wanted`` limits the work to those names (others may be returned as zero views).
        After the reference loop they are the steps' own terms (``adj.terms``), not recomputed.
        """
        if adj.terms is not None:
            return self.named(adj.terms)
        in_name, rec_name = self.weight_names

        def need(name: str) -> bool:
            return wanted is None or name in wanted

        T, _, G = adj.d_in.shape
        dW = (
            step_terms(adj.d_rec, recurrent_input(cache, rmask), self.hidden_size)
            if need(rec_name)
            else np.broadcast_to(np.zeros((), adj.d_rec.dtype), (T, G, self.hidden_size))
        )
        dV = (
            step_terms(adj.d_in, cache.x, self.input_size)
            if need(in_name)
            else np.broadcast_to(np.zeros((), adj.d_in.dtype), (T, G, self.input_size))
        )
        in_terms = adj.d_in.sum(axis=1) if self.bias else None
        rec_terms = in_terms if adj.d_rec is adj.d_in or not self.bias else adj.d_rec.sum(axis=1)
        return self.named((dV, dW, *self.bias_grads(in_terms, rec_terms)))

    # -- generation ----------------------------------------------------------------------------
    @abstractmethod
    def token_kernel(self, params: dict[str, np.ndarray], dtype: np.dtype) -> TokenKernel:
        """This layer prepared for one token at a time at batch size 1 (see :class:`TokenKernel`)."""


def recurrent_input(cache: Any, rmask: np.ndarray | None) -> np.ndarray:
    """``h_0 .. h_{T-1}`` as they entered the recurrent product ``W h_{t-1}``: masked by ``rmask`` (B, H)."""
    return cache.H_prev if rmask is None else cache.H_prev * rmask


def state_buffer(h0: np.ndarray, T: int) -> np.ndarray:
    """``(T + 1, B, H)`` buffer for ``h_0 .. h_T`` with ``h_0`` written in.

    A layer's loop fills ``buf[1:]`` (its ``H``), so ``buf[:-1]``, the state each step
    starts from, is a view: ``∂J/∂W = Σ_t d_tᵀ h_{t-1}`` needs no copy of the states.
    """
    buf = np.empty((T + 1, *h0.shape), h0.dtype)
    buf[0] = h0
    return buf


def stacked_states(state0: np.ndarray, states: list[np.ndarray]) -> np.ndarray:
    """``(T + 1, B, H)`` array of ``s_0 .. s_T`` (read-only), as :func:`state_buffer` after a loop."""
    S = np.stack([state0, *states])
    S.flags.writeable = False
    return S
