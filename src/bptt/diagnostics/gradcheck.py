"""Check a model's BPTT gradients against central finite differences.

Point it at your own model and data::

    report = bptt.gradcheck(model, x, y)
    print(report)            # one row per tensor, worst element first
    assert report.ok

For each tensor (every parameter, every initial state, and ``x`` for float
inputs) it compares the analytic gradient with the central difference::

    ∂J/∂θ_i ≈ (J(θ + ε e_i) − J(θ − ε e_i)) / 2ε

on every element (or a random sample of ``max_elements`` of them), plus one
directional check over the whole tensor with a random unit direction ``v``::

    ⟨∇J, v⟩ ≈ (J(θ + ε v) − J(θ − ε v)) / 2ε

The relative error of a tensor is ``max_i |a_i − n_i| / max(max_i |a_i|, max_i |n_i|, atol)``:
elementwise differences measured against the tensor's own scale, so that tiny
entries do not turn rounding into large ratios (``atol`` defaults to
``1e-4·max(1, |J|)``, above the rounding noise of central differences). The check runs in float64 (a
float32 model is copied to float64 first).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _checks
from ..engine.network import RNN, require_network
from .problem import float64_problem

__all__ = ["GradcheckEntry", "GradcheckReport", "gradcheck"]


@dataclass(frozen=True)
class GradcheckEntry:
    """Result for one tensor.

    Attributes
    ----------
    name : str
        Parameter or state name, or ``"x"``.
    index : tuple of int
        Element with the largest ``|analytic − numeric|``.
    analytic, numeric : float
        The two gradients at ``index``.
    rel_error : float
        Relative error of the tensor (see the module docstring).
    directional_rel_error : float
        ``|⟨∇J, v⟩ − numeric| / max(‖∇J‖, |numeric|, atol)`` for a random unit ``v``
        (``‖∇J‖`` bounds ``|⟨∇J, v⟩|``, so this is on the tensor's own scale).
    checked : int
        Number of elements compared one by one.
    size : int
        Number of elements in the tensor.
    """

    name: str
    index: tuple[int, ...]
    analytic: float
    numeric: float
    rel_error: float
    directional_rel_error: float
    checked: int
    size: int


@dataclass(frozen=True)
class GradcheckReport:
    """All tensors' results; ``ok`` when every error is within ``rtol``."""

    entries: tuple[GradcheckEntry, ...]
    rtol: float
    eps: float
    loss: float

    @property
    def worst(self) -> GradcheckEntry:
        """The entry with the largest relative error (elementwise or directional)."""
        return max(self.entries, key=lambda e: max(e.rel_error, e.directional_rel_error))

    @property
    def max_rel_error(self) -> float:
        w = self.worst
        return max(w.rel_error, w.directional_rel_error)

    @property
    def ok(self) -> bool:
        return self.max_rel_error <= self.rtol

    def __str__(self) -> str:
        rows = [
            f"gradcheck: {'OK' if self.ok else 'FAILED'}  worst {self.worst.name}{list(self.worst.index)} "
            f"rel error {self.max_rel_error:.3e} (rtol {self.rtol:g}, eps {self.eps:g}, J = {self.loss:.6g})",
            f"{'tensor':<10} {'worst index':<16} {'analytic':>14} {'numeric':>14} "
            f"{'rel err':>10} {'dir err':>10} checked",
        ]
        for e in sorted(self.entries, key=lambda e: -max(e.rel_error, e.directional_rel_error)):
            rows.append(
                f"{e.name:<10} {list(e.index)!s:<16} {e.analytic:>14.6e} {e.numeric:>14.6e} "
                f"{e.rel_error:>10.2e} {e.directional_rel_error:>10.2e} {e.checked}/{e.size}"
            )
        return "\n".join(rows)


def gradcheck(
    model: RNN,
    x: object,
    y: object,
    h0: object = None,
    *,
    loss_weights: object = None,
    lengths: object = None,
    eps: float = 1e-5,
    rtol: float = 1e-6,
    atol: float | None = None,
    max_elements: int | None = 64,
    wrt: tuple[str, ...] | None = None,
    seed: int | np.random.Generator | None = 0,
) -> GradcheckReport:
    """Compare ``model.loss_and_grad`` with central finite differences.

    Parameters
    ----------
    model : RNN
        Any bptt network (left unchanged; a float64 copy is checked).
    x, y, h0, loss_weights, lengths
        As for :meth:`RNN.loss_and_grad` (``y`` may be one target per sequence).
    eps : float
        Finite-difference step.
    rtol : float
        Largest relative error that counts as agreement.
    atol : float, optional
        Floor of the error's denominator. Central differences carry rounding noise of
        about ``1e-16·|J| / eps``, so the default ``1e-4·max(1, |J|)`` compares tensors
        whose gradients are all tinier than that at an absolute precision of
        ``rtol·atol`` instead of relative to their own size.
    max_elements : int or None
        Elements compared one by one per tensor (a random sample when the tensor is
        larger); ``None`` compares all of them.
    wrt : tuple of str, optional
        Names to check (default: every parameter, every initial state and ``"x"``).
    seed : int or Generator
        Chooses sampled elements and the directions.

    Returns
    -------
    GradcheckReport
    """
    where = "gradcheck"
    require_network(model, where)
    # Inputs and state are widened to float64 before the checks, so a float32 model is checked in
    # float64 on the caller's values (not rounded to float32 first).
    problem = float64_problem(model.astype("float64"), _to64(x), _state64(h0), where)
    eps, rtol = _checks.real(eps, "eps", where), _checks.real(rtol, "rtol", where)
    atol = None if atol is None else _checks.real(atol, "atol", where)
    if isinstance(wrt, str):
        wrt = (wrt,)
    if wrt is not None and len(wrt) == 0:
        raise ValueError(f"{where}: wrt must name at least one tensor (or be None for all)")
    if max_elements is not None:
        _checks.positive_int(max_elements, "max_elements", where)
    rng = _checks.generator(seed, where)

    # Private float64 copies of the network, the inputs and the state: the check perturbs them in place.
    m, x64, state = problem.model, problem.x, problem.h0
    y64 = _to64(y)
    result = m.loss_and_grad(x64, y64, state, loss_weights=loss_weights, lengths=lengths)
    if atol is None:
        atol = 1e-4 * max(1.0, abs(result.loss))
    inputs = {"x": x64} if x64.dtype.kind == "f" else {}
    tensors = {**m.params, **state, **inputs}
    names = tuple(tensors) if wrt is None else tuple(wrt)
    unknown = [n for n in names if n not in tensors]
    if unknown:
        raise ValueError(f"{where}: wrt names {unknown} are not gradients of this model; choose from {list(tensors)}")

    def J() -> float:
        return m.loss(tensors["x"] if inputs else x64, y64, state, loss_weights=loss_weights, lengths=lengths)

    entries = []
    for name in names:
        target = tensors[name]
        analytic = result.grads[name]
        flat = target.reshape(-1)  # a view: perturbing it perturbs the model or the inputs
        if max_elements is None or flat.size <= max_elements:
            idx = np.arange(flat.size)
        else:
            idx = np.sort(rng.choice(flat.size, size=max_elements, replace=False))
        numeric = np.empty(idx.size)
        for j, i in enumerate(idx):
            orig = flat[i]
            flat[i] = orig + eps
            plus = J()
            flat[i] = orig - eps
            minus = J()
            flat[i] = orig
            numeric[j] = (plus - minus) / (2 * eps)
        a = analytic.reshape(-1)[idx]
        diff = np.abs(a - numeric)
        scale = max(np.abs(a).max(initial=0.0), np.abs(numeric).max(initial=0.0), atol)
        worst = int(np.argmax(diff)) if diff.size else 0

        v = rng.standard_normal(flat.size)
        v /= np.linalg.norm(v)
        orig_all = flat.copy()
        flat += eps * v
        plus = J()
        flat[:] = orig_all - eps * v
        minus = J()
        flat[:] = orig_all
        d_num = (plus - minus) / (2 * eps)
        d_ana = float(analytic.reshape(-1) @ v)
        d_err = abs(d_ana - d_num) / max(float(np.linalg.norm(analytic)), abs(d_num), atol)

        entries.append(
            GradcheckEntry(
                name=name,
                index=tuple(int(i) for i in np.unravel_index(idx[worst], target.shape)) if target.ndim else (),
                analytic=float(a[worst]),
                numeric=float(numeric[worst]),
                rel_error=float(diff[worst] / scale),
                directional_rel_error=float(d_err),
                checked=int(idx.size),
                size=int(flat.size),
            )
        )
    return GradcheckReport(entries=tuple(entries), rtol=float(rtol), eps=float(eps), loss=result.loss)


def _to64(a: object) -> object:
    arr = np.asarray(a) if isinstance(a, (np.ndarray, list, tuple)) else a
    if isinstance(arr, np.ndarray) and arr.dtype.kind == "f":
        return np.array(arr, dtype=np.float64, order="C")  # a C-ordered copy: the check perturbs it in place
    return arr


def _state64(h0: object) -> object:
    if isinstance(h0, dict):
        return {k: _to64(v) for k, v in h0.items()}
    if isinstance(h0, (tuple, list)):
        return type(h0)(_to64(v) for v in h0)
    return _to64(h0)
