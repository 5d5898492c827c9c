"""Hidden-state activations ``f_h`` (lecture) / ``f1`` (exam).

Each activation is stored with its derivative written *in terms of its output*
``a = f(z)``, so that the backward pass needs only the cached hidden states:

=========  ==================  ============================
name       f(z)                f'(z) from a = f(z)
=========  ==================  ============================
tanh       tanh(z)             1 - a²
sigmoid    1 / (1 + e^{-z})    a (1 - a)
relu       max(z, 0)           1[a > 0]
identity   z                   1
=========  ==================  ============================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["HIDDEN_ACTIVATIONS", "Activation", "get_activation", "sigmoid"]


def sigmoid(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Numerically stable logistic function ``1 / (1 + exp(-z))``.

    Written as ``(1 + tanh(z / 2)) / 2``: exact algebraically, never overflows,
    and costs one transcendental per element.
    """
    out = np.multiply(z, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1.0
    out *= 0.5
    return out


def _tanh(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    return np.tanh(z, out=out)


def _relu(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    return np.maximum(z, 0.0, out=out)


def _identity(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    if out is None:
        return z.copy()
    out[...] = z
    return out


def _dtanh(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    out = np.multiply(a, a, out=out)
    return np.subtract(1.0, out, out=out)


def _dsigmoid(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    out = np.subtract(1.0, a, out=out)
    out *= a
    return out


def _drelu(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    if out is None:
        return (a > 0).astype(a.dtype)
    np.copyto(out, a > 0)
    return out


def _didentity(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    if out is None:
        return np.ones_like(a)
    out.fill(1.0)
    return out


@dataclass(frozen=True)
class Activation:
    """An elementwise activation and its derivative expressed through its output.

    Attributes
    ----------
    name : str
        One of ``HIDDEN_ACTIVATIONS``.
    f : callable
        ``f(z, out=None) -> a``, elementwise.
    df : callable
        ``df(a, out=None) -> f'(z)`` where ``a = f(z)``; same shape as ``a``
        (``out`` must not be ``a`` itself).
    """

    name: str
    f: Callable[..., np.ndarray]
    df: Callable[..., np.ndarray]


HIDDEN_ACTIVATIONS: dict[str, Activation] = {
    "tanh": Activation("tanh", _tanh, _dtanh),
    "sigmoid": Activation("sigmoid", sigmoid, _dsigmoid),
    "relu": Activation("relu", _relu, _drelu),
    "identity": Activation("identity", _identity, _didentity),
}


def get_activation(name: object, where: str) -> Activation:
    """Look up a hidden activation by name, with an error that names the caller."""
    if not isinstance(name, str) or name not in HIDDEN_ACTIVATIONS:
        raise ValueError(f"{where}: activation must be one of {sorted(HIDDEN_ACTIVATIONS)}, got {name!r}")
    return HIDDEN_ACTIVATIONS[name]
