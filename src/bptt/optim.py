"""Optimizers that update a parameter dict in place from a gradient dict.

Every optimizer keeps its per-parameter state (momenta, second moments) as
arrays in :meth:`Optimizer.state_dict`, so a checkpoint can save it and a
resumed run continues bit for bit. Conventions follow PyTorch's so that the
same hyper-parameters mean the same thing:

==========  =====================================================================
name        update for each parameter θ with gradient g (lr = learning rate)
==========  =====================================================================
sgd         v ← μ v + g;  θ ← θ − lr·(g + μ v if nesterov else v)
adagrad     G ← G + g²;   θ ← θ − lr·g / (√G + ε)                 (min-char-rnn)
rmsprop     s ← α s + (1−α) g²;  θ ← θ − lr·g / (√s + ε)
adam        m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²;
            θ ← θ − lr·m̂ / (√v̂ + ε),  m̂ = m/(1−β1ᵗ), v̂ = v/(1−β2ᵗ)
adamw       adam, plus decoupled decay θ ← θ − lr·λ·θ
==========  =====================================================================

``weight_decay`` for sgd / adagrad / rmsprop / adam is the classic L2 term
(``g ← g + λ θ``); adamw decouples it.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping

import numpy as np

__all__ = ["OPTIMIZERS", "SGD", "Adagrad", "Adam", "AdamW", "Optimizer", "RMSprop", "clip_grad_norm", "make_optimizer"]


def _rate(value: object, name: str, where: str, *, allow_zero: bool = False, below_one: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{where}: {name} must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero) or (below_one and value >= 1):
        bound = "in [0, 1)" if below_one else ("≥ 0" if allow_zero else "> 0")
        raise ValueError(f"{where}: {name} must be {bound}, got {value!r}")
    return float(value)


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
    """

    name = "optimizer"
    _slots: tuple[str, ...] = ()

    def __init__(self, params: Mapping[str, np.ndarray], lr: float | Callable[[int], float], weight_decay: float = 0.0):
        where = type(self).__name__
        if not isinstance(params, Mapping) or not params:
            raise ValueError(f"{where}: params must be a non-empty dict of arrays")
        self.params = params
        self.schedule = lr if callable(lr) else None
        self.lr = None if callable(lr) else _rate(lr, "lr", where)
        self.weight_decay = _rate(weight_decay, "weight_decay", where, allow_zero=True)
        self.steps = 0
        self.state: dict[str, dict[str, np.ndarray]] = {
            slot: {k: np.zeros_like(v) for k, v in params.items()} for slot in self._slots
        }

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
        lr = self.current_lr()
        self.steps += 1
        for k, p in self.params.items():
            self._update(k, p, grads[k], lr)

    @abstractmethod
    def _update(self, name: str, p: np.ndarray, g: np.ndarray, lr: float) -> None: ...

    def _l2(self, p: np.ndarray, g: np.ndarray) -> np.ndarray:
        return g + self.weight_decay * p if self.weight_decay else g

    def state_dict(self) -> tuple[dict[str, np.ndarray], dict[str, object]]:
        """``(arrays, scalars)``: per-parameter state named ``"slot/param"`` and JSON-able scalars."""
        arrays = {f"{slot}/{k}": v for slot, d in self.state.items() for k, v in d.items()}
        return arrays, {"name": self.name, "steps": self.steps}

    def load_state_dict(self, arrays: Mapping[str, np.ndarray], scalars: Mapping[str, object]) -> None:
        """Restore what :meth:`state_dict` returned (shapes and names must match)."""
        where = f"{type(self).__name__}.load_state_dict"
        if scalars.get("name") != self.name:
            raise ValueError(f"{where}: state is for optimizer {scalars.get('name')!r}, not {self.name!r}")
        for slot, d in self.state.items():
            for k, v in d.items():
                key = f"{slot}/{k}"
                if key not in arrays or arrays[key].shape != v.shape:
                    got = arrays[key].shape if key in arrays else "nothing"
                    raise ValueError(f"{where}: {key} must have shape {v.shape}, got {got}")
                v[...] = arrays[key]
        self.steps = int(scalars["steps"])  # type: ignore[call-overload]


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum."""

    name = "sgd"

    def __init__(self, params, lr, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0):
        self.momentum = _rate(momentum, "momentum", "SGD", allow_zero=True, below_one=True)
        if nesterov and self.momentum == 0:
            raise ValueError("SGD: nesterov=True needs momentum > 0")
        self.nesterov = bool(nesterov)
        self._slots = ("velocity",) if self.momentum else ()
        super().__init__(params, lr, weight_decay)

    def _update(self, name, p, g, lr):
        g = self._l2(p, g)
        if self.momentum:
            v = self.state["velocity"][name]
            v *= self.momentum
            v += g
            g = g + self.momentum * v if self.nesterov else v
        p -= lr * g


class Adagrad(Optimizer):
    """Adagrad: per-element rates shrinking with the accumulated squared gradient."""

    name = "adagrad"
    _slots = ("sum_sq",)

    def __init__(self, params, lr, eps: float = 1e-8, weight_decay: float = 0.0):
        self.eps = _rate(eps, "eps", "Adagrad")
        super().__init__(params, lr, weight_decay)

    def _update(self, name, p, g, lr):
        g = self._l2(p, g)
        G = self.state["sum_sq"][name]
        G += g * g
        p -= lr * g / (np.sqrt(G) + self.eps)


class RMSprop(Optimizer):
    """RMSprop: gradient scaled by a running root mean square."""

    name = "rmsprop"
    _slots = ("mean_sq",)

    def __init__(self, params, lr, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0):
        self.alpha = _rate(alpha, "alpha", "RMSprop", below_one=True)
        self.eps = _rate(eps, "eps", "RMSprop")
        super().__init__(params, lr, weight_decay)

    def _update(self, name, p, g, lr):
        g = self._l2(p, g)
        s = self.state["mean_sq"][name]
        s *= self.alpha
        s += (1 - self.alpha) * g * g
        p -= lr * g / (np.sqrt(s) + self.eps)


class Adam(Optimizer):
    """Adam with bias-corrected first and second moments."""

    name = "adam"
    _slots = ("m", "v")

    def __init__(self, params, lr, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay=0.0):
        where = type(self).__name__
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{where}: betas must be a pair (beta1, beta2), got {betas!r}")
        self.beta1 = _rate(betas[0], "betas[0]", where, allow_zero=True, below_one=True)
        self.beta2 = _rate(betas[1], "betas[1]", where, allow_zero=True, below_one=True)
        self.eps = _rate(eps, "eps", where)
        super().__init__(params, lr, weight_decay)

    def _decay(self, p, g, lr):
        return self._l2(p, g)

    def _update(self, name, p, g, lr):
        g = self._decay(p, g, lr)
        m, v = self.state["m"][name], self.state["v"][name]
        m *= self.beta1
        m += (1 - self.beta1) * g
        v *= self.beta2
        v += (1 - self.beta2) * g * g
        t = self.steps
        m_hat = m / (1 - self.beta1**t)
        v_hat = v / (1 - self.beta2**t)
        p -= lr * m_hat / (np.sqrt(v_hat) + self.eps)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter)."""

    name = "adamw"

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay: float = 0.01):
        super().__init__(params, lr, betas, eps, weight_decay)

    def _decay(self, p, g, lr):
        if self.weight_decay:
            p *= 1 - lr * self.weight_decay
        return g


OPTIMIZERS: dict[str, type[Optimizer]] = {c.name: c for c in (SGD, Adagrad, RMSprop, Adam, AdamW)}


def make_optimizer(name: str, params, lr, **options) -> Optimizer:
    """Build an optimizer by name (``"sgd"``, ``"adagrad"``, ``"rmsprop"``, ``"adam"``, ``"adamw"``)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {name!r}")
    return OPTIMIZERS[name](params, lr, **options)


def clip_grad_norm(grads: dict[str, np.ndarray], max_norm: float | None, names=None) -> float:
    """Scale ``grads`` in place so their global L2 norm is at most ``max_norm``; return the norm before.

    Raises
    ------
    FloatingPointError
        When a gradient holds NaN or Inf, naming it: a step with it would destroy
        the parameters.
    """
    keys = list(grads) if names is None else list(names)
    for k in keys:
        if not np.isfinite(grads[k]).all():
            raise FloatingPointError(f"gradient of {k!r} is not finite (NaN or Inf)")
    # ‖g‖ = M ‖g / M‖ with M the largest |g_i|: finite even when Σ g_i² would overflow.
    M = max((float(np.abs(grads[k]).max(initial=0.0)) for k in keys), default=0.0)
    if M == 0.0:
        return 0.0
    total = M * math.sqrt(sum(float(np.vdot(grads[k] / M, grads[k] / M)) for k in keys))
    if max_norm is not None and total > max_norm:
        scale = max_norm / (total + 1e-12)
        for k in keys:
            grads[k] *= scale
    return total
