"""Optimizers that update a parameter dict in place from a gradient dict.

Every optimizer keeps its per-parameter state (momenta, second moments) as
arrays in :meth:`Optimizer.state_dict`, so a checkpoint can save it and a
resumed run continues bit for bit. Conventions follow PyTorch's so that the
same hyper-parameters mean the same thing:

==========  =====================================================================
name        update for each parameter θ with gradient g (lr = learning rate)
==========  =====================================================================
sgd         v ← μ v + g;  θ ← θ − lr·(g + μ v if nesterov else v)
adagrad     G ← G + g²;   θ ← θ − lr·g / (√G + ε)   (PyTorch; min-char-rnn: √(G + ε))
rmsprop     s ← α s + (1−α) g²;  θ ← θ − lr·g / (√s + ε)
adam        m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²;
            θ ← θ − lr·m̂ / (√v̂ + ε),  m̂ = m/(1−β1ᵗ), v̂ = v/(1−β2ᵗ)
adamw       adam, plus decoupled decay θ ← θ − lr·λ·θ
==========  =====================================================================

``weight_decay`` for sgd / adagrad / rmsprop / adam is the classic L2 term
(``g ← g + λ θ``); adamw decouples it.

Two clips act on the gradients before a step: :func:`clip_grad_norm` rescales all of
them together to a global L2 norm (``torch.nn.utils.clip_grad_norm_``), and
:func:`clip_grad_value` clamps each entry to ``[−c, c]`` (``torch.nn.utils.clip_grad_value_``;
min-char-rnn's ``np.clip(dparam, -5, 5, out=dparam)``).
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping

import numpy as np

from .. import _checks
from ..files.untrusted import elide

__all__ = [
    "OPTIMIZERS",
    "SGD",
    "Adagrad",
    "Adam",
    "AdamW",
    "Optimizer",
    "RMSprop",
    "clip_grad_norm",
    "clip_grad_value",
    "make_optimizer",
]


class _Flat:
    """The parameters of one dtype laid end to end: every update runs once over all of them.

    ``gather`` copies the gradients into one preallocated vector; the update is
    computed there in a few whole-vector operations into a second preallocated
    vector; ``apply`` subtracts each parameter's slice of it in place. Per-parameter
    optimizer state lives in flat vectors too, exposed as views shaped like each
    parameter. Nothing is allocated per step.
    """

    def __init__(self, params: Mapping[str, np.ndarray], keys: list[str]) -> None:
        self.params = [params[k] for k in keys]
        self.keys = keys
        self.sizes = [p.size for p in self.params]
        self.offsets = np.cumsum([0, *self.sizes])
        dtype = self.params[0].dtype
        self.g = np.empty(int(self.offsets[-1]), dtype)  # the gradient, then the L2-decayed gradient
        self.u = np.empty_like(self.g)  # scratch, ends as the update to subtract
        self.p: np.ndarray | None = None  # the parameters, gathered only for L2 decay

    def views(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """Each parameter's slice of ``flat``, shaped like the parameter."""
        return {
            k: flat[a:b].reshape(p.shape)
            for k, p, a, b in zip(self.keys, self.params, self.offsets[:-1], self.offsets[1:], strict=True)
        }

    def gather(self, grads: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([np.ravel(grads[k]) for k in self.keys], out=self.g)

    def gather_params(self) -> np.ndarray:
        if self.p is None:
            self.p = np.empty_like(self.g)
        return np.concatenate([p.reshape(-1) for p in self.params], out=self.p)

    def apply(self, update: np.ndarray) -> None:
        """``θ ← θ − update`` for every parameter, in place."""
        for p, a, b in zip(self.params, self.offsets[:-1], self.offsets[1:], strict=True):
            p -= update[a:b].reshape(p.shape)


def _rms_step(g: np.ndarray, s: np.ndarray, eps: float, lr: float, u: np.ndarray) -> np.ndarray:
    """``lr · g / (√s + ε)`` into ``u`` (Adagrad's and RMSprop's step)."""
    np.sqrt(s, out=u)
    u += eps
    np.divide(g, u, out=u)
    u *= lr
    return u


class Optimizer(ABC):
    """Base class: validates the hyper-parameters and owns the step counter.

    Parameters
    ----------
    params : dict of ndarray
        Updated in place by :meth:`step`.
    lr : float or callable
        Learning rate, or a schedule ``lr(step) -> float`` (``step`` counts from 0).
    weight_decay : float
        L2 coefficient λ (decoupled for :class:`AdamW`).

    Each update runs over all parameters of one dtype at once (see ``_Flat``), so a
    step costs a dozen NumPy calls whatever the number of parameters, and allocates
    nothing.
    """

    name = "optimizer"
    _slots: tuple[str, ...] = ()
    _decoupled = False

    def __init__(self, params: Mapping[str, np.ndarray], lr: float | Callable[[int], float], weight_decay: float = 0.0):
        where = type(self).__name__
        if not isinstance(params, Mapping) or not params:
            raise ValueError(f"{where}: params must be a non-empty dict of arrays")
        for k, v in params.items():
            if not isinstance(v, np.ndarray) or v.dtype.kind != "f" or not v.flags.writeable:
                raise TypeError(f"{where}: params[{k!r}] must be a writeable float array, got {type(v).__name__}")
        self.params = params
        self.schedule = lr if callable(lr) else None
        self.lr = None if callable(lr) else _checks.real(lr, "lr", where)
        self.weight_decay = _checks.real(weight_decay, "weight_decay", where, strict=False)
        self.steps = 0
        by_dtype: dict[np.dtype, list[str]] = {}
        for k, v in params.items():
            by_dtype.setdefault(v.dtype, []).append(k)
        self._groups = [_Flat(params, keys) for keys in by_dtype.values()]
        # Flat state per group and slot; self.state[slot][name] are views shaped like the parameter.
        self._flat_state = [{slot: np.zeros_like(g.g) for slot in self._slots} for g in self._groups]
        self.state: dict[str, dict[str, np.ndarray]] = {slot: {} for slot in self._slots}
        for group, flat in zip(self._groups, self._flat_state, strict=True):
            for slot in self._slots:
                self.state[slot].update(group.views(flat[slot]))

    def current_lr(self) -> float:
        """The learning rate the next :meth:`step` will use."""
        if self.schedule is None:
            return float(self.lr)
        lr = self.schedule(self.steps)
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not math.isfinite(lr) or lr < 0:
            raise ValueError(f"{type(self).__name__}: schedule gave learning rate {lr!r} at step {self.steps}")
        return float(lr)

    def step(self, grads: Mapping[str, np.ndarray]) -> None:
        """Update every parameter from its gradient (extra keys such as ``"h0"`` are ignored)."""
        where = f"{type(self).__name__}.step"
        for k, p in self.params.items():
            if k not in grads:
                raise ValueError(f"{where}: grads has no entry for parameter {k!r}")
            if np.shape(grads[k]) != p.shape:
                raise ValueError(f"{where}: grads[{k!r}] must have shape {p.shape}, got {np.shape(grads[k])}")
        for group in self._groups:
            for k, p in zip(group.keys, group.params, strict=True):
                if self.params[k] is not p:
                    raise ValueError(
                        f"{where}: params[{k!r}] was replaced by another array after the optimizer was built; "
                        "update parameters in place (p[...] = new) or build a new optimizer"
                    )
        lr = self.current_lr()
        self.steps += 1
        for group, state in zip(self._groups, self._flat_state, strict=True):
            g = group.gather(grads)
            if self.weight_decay and not self._decoupled:
                p = group.gather_params()
                p *= self.weight_decay
                g += p  # classic L2: g ← g + λ θ
            group.apply(self._update(g, group.u, state, lr, group))

    @abstractmethod
    def _update(self, g: np.ndarray, u: np.ndarray, state: dict[str, np.ndarray], lr: float, group: _Flat):
        """The update to subtract from the flat parameters, computed into ``u`` (``g`` may be overwritten)."""

    def state_dict(self) -> tuple[dict[str, np.ndarray], dict[str, object]]:
        """``(arrays, scalars)``: per-parameter state named ``"slot/param"`` and JSON-able scalars."""
        arrays = {f"{slot}/{k}": v for slot, d in self.state.items() for k, v in d.items()}
        return arrays, {"name": self.name, "steps": self.steps}

    def non_finite_state(self) -> str | None:
        """The first state array (``"slot/param"``) holding NaN or Inf, or None when all are finite.

        One sum per slot and dtype; only a non-finite sum (or one that overflowed) looks closer.
        """
        for group, flat in zip(self._groups, self._flat_state, strict=True):
            for slot, v in flat.items():
                with np.errstate(over="ignore", invalid="ignore"):
                    total = float(np.sum(v))
                if math.isfinite(total) or np.isfinite(v).all():
                    continue
                return next(f"{slot}/{k}" for k, a in group.views(v).items() if not np.isfinite(a).all())
        return None

    def load_state_dict(self, arrays: Mapping[str, np.ndarray], scalars: Mapping[str, object]) -> None:
        """Restore what :meth:`state_dict` returned: the same names, shapes and dtypes, finite values.

        Everything is checked before anything is restored. Raises ``ValueError`` naming the
        first array or scalar that does not fit (quoting at most a few dozen characters of it).
        """
        where = f"{type(self).__name__}.load_state_dict"
        name, steps = scalars.get("name"), scalars.get("steps")
        if name != self.name:
            raise ValueError(f"{where}: state is for optimizer {elide(repr(name), 40)}, not {self.name!r}")
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or not 0 <= steps <= 2**62:
            raise ValueError(f"{where}: steps must be an integer in [0, 2**62], got {elide(repr(steps), 40)}")
        expected = {f"{slot}/{k}": v for slot, d in self.state.items() for k, v in d.items()}
        for key in arrays:
            if key not in expected:
                have = ", ".join(expected) or "none"
                raise ValueError(f"{where}: unexpected state array {elide(repr(key), 60)} ({self.name} has {have})")
        for key, v in expected.items():
            a = arrays.get(key)
            if not isinstance(a, np.ndarray) or a.shape != v.shape:
                got = a.shape if isinstance(a, np.ndarray) else "nothing" if a is None else type(a).__name__
                raise ValueError(f"{where}: {key} must have shape {v.shape}, got {got}")
            if a.dtype != v.dtype:
                raise ValueError(f"{where}: {key} must have dtype {v.dtype} like its parameter, got {a.dtype}")
            if not np.isfinite(a).all():
                raise ValueError(f"{where}: {key} must be finite, holds NaN or Inf")
        for key, v in expected.items():
            v[...] = arrays[key]
        self.steps = int(steps)


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum."""

    name = "sgd"

    def __init__(self, params, lr, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0):
        self.momentum = _checks.real(momentum, "momentum", "SGD", strict=False, high=1.0)
        if nesterov and self.momentum == 0:
            raise ValueError("SGD: nesterov=True needs momentum > 0")
        self.nesterov = bool(nesterov)
        self._slots = ("velocity",) if self.momentum else ()
        super().__init__(params, lr, weight_decay)

    def _update(self, g, u, state, lr, group):
        if self.momentum:
            v = state["velocity"]
            v *= self.momentum
            v += g  # v ← μ v + g
            if self.nesterov:
                np.multiply(v, self.momentum, out=u)
                u += g  # g + μ v
            else:
                u[...] = v
        else:
            u[...] = g
        u *= lr
        return u


class Adagrad(Optimizer):
    """Adagrad: per-element rates shrinking with the accumulated squared gradient.

    ``G ← G + g²;  θ ← θ − lr·g / (√G + ε)``: ε is added after the square root, as in
    ``torch.optim.Adagrad``. min-char-rnn adds it inside (``dparam / np.sqrt(mem + 1e-8)``,
    i.e. ``√(G + ε)``); the two differ noticeably only while ``G`` is tiny (at ``G = 0``
    min-char-rnn divides by √ε = 1e-4, bptt and PyTorch by ε = 1e-8).
    """

    name = "adagrad"
    _slots = ("sum_sq",)

    def __init__(self, params, lr, eps: float = 1e-8, weight_decay: float = 0.0):
        self.eps = _checks.real(eps, "eps", "Adagrad")
        super().__init__(params, lr, weight_decay)

    def _update(self, g, u, state, lr, group):
        G = state["sum_sq"]
        G += np.multiply(g, g, out=u)  # G ← G + g²
        return _rms_step(g, G, self.eps, lr, u)


class RMSprop(Optimizer):
    """RMSprop: gradient scaled by a running root mean square."""

    name = "rmsprop"
    _slots = ("mean_sq",)

    def __init__(self, params, lr, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0):
        self.alpha = _checks.real(alpha, "alpha", "RMSprop", high=1.0)
        self.eps = _checks.real(eps, "eps", "RMSprop")
        super().__init__(params, lr, weight_decay)

    def _update(self, g, u, state, lr, group):
        s = state["mean_sq"]
        s *= self.alpha
        np.multiply(g, g, out=u)
        u *= 1 - self.alpha
        s += u  # s ← α s + (1 − α) g²
        return _rms_step(g, s, self.eps, lr, u)


class Adam(Optimizer):
    """Adam with bias-corrected first and second moments."""

    name = "adam"
    _slots = ("m", "v")

    def __init__(self, params, lr, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay=0.0):
        where = type(self).__name__
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{where}: betas must be a pair (beta1, beta2), got {betas!r}")
        self.beta1 = _checks.real(betas[0], "betas[0]", where, strict=False, high=1.0)
        self.beta2 = _checks.real(betas[1], "betas[1]", where, strict=False, high=1.0)
        self.eps = _checks.real(eps, "eps", where)
        super().__init__(params, lr, weight_decay)

    def _update(self, g, u, state, lr, group):
        m, v = state["m"], state["v"]
        t = self.steps
        np.subtract(g, m, out=u)
        u *= 1 - self.beta1
        m += u  # m ← β1 m + (1 − β1) g
        v *= self.beta2
        g *= g
        g *= 1 - self.beta2
        v += g  # v ← β2 v + (1 − β2) g²
        # lr · m̂ / (√v̂ + ε) with m̂ = m / (1 − β1ᵗ), √v̂ = √v / √(1 − β2ᵗ)
        np.sqrt(v, out=u)
        u *= 1.0 / math.sqrt(1 - self.beta2**t)
        u += self.eps
        np.divide(m, u, out=u)
        u *= lr / (1 - self.beta1**t)
        return u


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter)."""

    name = "adamw"
    _decoupled = True

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay: float = 0.01):
        super().__init__(params, lr, betas, eps, weight_decay)

    def _update(self, g, u, state, lr, group):
        if self.weight_decay:
            for p in group.params:
                p *= 1 - lr * self.weight_decay  # θ ← θ − lr·λ·θ, before the Adam step
        return super()._update(g, u, state, lr, group)


OPTIMIZERS: dict[str, type[Optimizer]] = {c.name: c for c in (SGD, Adagrad, RMSprop, Adam, AdamW)}


def make_optimizer(name: str, params, lr, **options) -> Optimizer:
    """Build an optimizer by name (``"sgd"``, ``"adagrad"``, ``"rmsprop"``, ``"adam"``, ``"adamw"``)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {name!r}")
    return OPTIMIZERS[name](params, lr, **options)


def _float_grads(grads: Mapping[str, np.ndarray], names, where: str) -> list[str]:
    """The keys to clip (``names``, or all of ``grads``), each holding a float array."""
    keys = list(grads) if names is None else list(names)
    for k in keys:
        g = grads[k]
        if not isinstance(g, np.ndarray) or g.dtype.kind != "f":
            got = f"dtype {g.dtype}" if isinstance(g, np.ndarray) else type(g).__name__
            raise TypeError(f"{where}: gradient of {k!r} must be a float array, got {got}")
    return keys


def clip_grad_norm(grads: dict[str, np.ndarray], max_norm: float | None, names=None) -> float:
    """Scale ``grads`` in place so their global L2 norm is at most ``max_norm``; return the norm before.

    Raises
    ------
    FloatingPointError
        When a gradient holds NaN or Inf, naming it: a step with it would destroy
        the parameters.
    TypeError
        When a gradient is not a float array.
    """
    keys = _float_grads(grads, names, "clip_grad_norm")
    # Fast path: Σ g_i² by one BLAS dot per gradient. A NaN or Inf anywhere makes it non-finite,
    # so the element-wise finiteness check only runs when the sum is not finite. ravel(order="K")
    # is a view for any contiguous layout (np.vdot walks e.g. a transposed ∂J/∂V ≈ 25× slower).
    flat = [grads[k].ravel(order="K") for k in keys]
    squares = [float(np.vdot(g, g)) for g in flat]
    for k, g, sq in zip(keys, flat, squares, strict=True):
        if not math.isfinite(sq) and not np.isfinite(g).all():
            raise FloatingPointError(f"gradient of {k!r} is not finite (NaN or Inf)")
    total_sq = sum(squares)
    n = sum(g.size for g in flat)
    floor = max((np.finfo(g.dtype).tiny / np.finfo(g.dtype).eps for g in flat), default=0.0)
    if math.isfinite(total_sq) and total_sq >= n * floor:
        # No square overflowed, and squares lost to underflow (each below ``tiny``) change the
        # sum by less than one part in 1/eps.
        total = math.sqrt(total_sq)
    else:
        # ‖g‖ = M ‖g / M‖ with M the largest |g_i|: finite even when Σ g_i² overflows or underflows.
        M = max((float(np.abs(g).max(initial=0.0)) for g in flat), default=0.0)
        if M == 0.0:
            return 0.0
        M64 = np.float64(M)  # a NumPy float64 scalar: float32 gradients are rescaled in float64, where M fits
        total = M * math.sqrt(sum(float(np.vdot(g / M64, g / M64)) for g in flat))
    if max_norm is not None and total > max_norm:
        scale = max_norm / (total + 1e-12)
        for k in keys:
            grads[k] *= scale
    return total


def clip_grad_value(grads: dict[str, np.ndarray], clip_value: float, names=None) -> float:
    """Clamp every entry of ``grads`` in place to ``[−clip_value, clip_value]``; return the largest |g| before.

    min-char-rnn's ``np.clip(dparam, -5, 5, out=dparam)`` and ``torch.nn.utils.clip_grad_value_``.
    Unlike :func:`clip_grad_norm`, which rescales all gradients together and keeps their
    direction, this clips each entry on its own: the direction changes whenever anything
    is clipped.

    Parameters
    ----------
    grads : dict of ndarray
        Gradients, clamped in place (dtypes and shapes are kept).
    clip_value : float
        ``c > 0``.
    names : iterable of str, optional
        The keys to clip (default: all); others (e.g. ``"h0"``) are neither measured nor changed.

    Returns
    -------
    float
        ``max |g_i|`` over the named gradients before clipping (their ∞-norm; 0.0 when
        all are empty), so ``result > clip_value`` tells whether anything was clipped, as
        ``clip_grad_norm(...) > max_norm`` does for the norm.

    Raises
    ------
    FloatingPointError
        When a gradient holds NaN or Inf, naming it, before any gradient is changed:
        clamping would turn ±Inf into ±c and hide the failure (NaN would pass unchanged).
    TypeError
        When a gradient is not a float array.
    ValueError
        When ``clip_value`` is not a finite number > 0.
    """
    c = _checks.real(clip_value, "clip_value", "clip_grad_value")
    keys = _float_grads(grads, names, "clip_grad_value")
    peaks = []
    for k in keys:
        g = grads[k]
        peak = max(float(g.max(initial=0.0)), -float(g.min(initial=0.0)))  # max |g_i| without an |g| copy
        if not math.isfinite(peak):  # max and min propagate NaN; ±Inf is its own extreme
            raise FloatingPointError(f"gradient of {k!r} is not finite (NaN or Inf)")
        peaks.append(peak)
    for k, peak in zip(keys, peaks, strict=True):
        if peak > c:
            np.clip(grads[k], -c, c, out=grads[k])
    return max(peaks, default=0.0)
