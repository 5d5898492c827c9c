"""Pictures of BPTT's insides, as PNG files (needs the optional ``plot`` extra: matplotlib).

Each function takes a diagnostic result from the Python API and writes one PNG;
the API itself returns arrays and never needs matplotlib.

==========================  ====================================================
function                    picture
==========================  ====================================================
plot_jacobian_map           heatmap of log10 ‖∂s_t/∂s_k‖ (vanishing / exploding)
plot_gradient_by_gap        bars of ‖Σ_{t−k=g} term‖ against the gap g
plot_input_sensitivity      heatmap of ‖∂Loss_t/∂x_s‖ over the input's characters
plot_training               loss / bpc curves and gradient health over training
==========================  ====================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..files.atomic import write_atomic

__all__ = [
    "PlotError",
    "plot_gradient_by_gap",
    "plot_input_sensitivity",
    "plot_jacobian_map",
    "plot_training",
    "require_matplotlib",
]


class PlotError(RuntimeError):
    """A plot was asked for but cannot be drawn (matplotlib missing)."""


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotError("plots need matplotlib: pip install 'bptt[plot]' (the numbers are in the JSON file)") from None
    return plt


def require_matplotlib() -> None:
    """Raise :class:`PlotError` now, before any work, when matplotlib is missing."""
    _pyplot()


def _save(fig, path: str | os.PathLike) -> Path:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    write_atomic(path, buf.getvalue())
    return Path(path)


def _log10_lower(M: np.ndarray) -> np.ndarray:
    """log10 of a lower-triangular map: exact zeros (a vanished gradient) drawn at 1e-16, the
    undefined upper triangle left blank."""
    M = np.asarray(M, dtype=float)
    upper = np.triu(np.ones(M.shape, bool), k=1)
    out = np.log10(np.maximum(np.nan_to_num(M, nan=0.0), 1e-16))
    out[upper] = np.nan
    return out


def _tick_labels(labels: Sequence[str] | None, n: int) -> list[str] | None:
    if labels is None:
        return None
    shown = {"\n": "⏎", " ": "␣", "\t": "⇥"}
    return [shown.get(c, c) for c in list(labels)[:n]]


def plot_jacobian_map(jm: Any, path: str | os.PathLike, labels: Sequence[str] | None = None) -> Path:
    """Heatmap of ``log10 N[t, k]`` from :func:`bptt.jacobian_map` (rows t, columns k; k = 0 is the initial state)."""
    plt = _pyplot()
    N = np.asarray(jm.norms, dtype=float)
    logN = _log10_lower(N)
    span = max(3.0, float(np.nanmax(np.abs(logN))))
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    im = ax.imshow(logN, cmap="coolwarm", vmin=-span, vmax=span)
    fig.colorbar(im, ax=ax, label="log10 ‖∂s_t/∂s_k‖")
    ax.set_xlabel("k (step whose state is perturbed; 0 = initial state)")
    ax.set_ylabel("t (step whose state responds)")
    ax.set_title("Jacobian products: blue vanishes, red explodes" + ("" if jm.exact else " (estimated)"))
    ticks = _tick_labels(labels, N.shape[0] - 1)
    if ticks is not None and len(ticks) <= 80:
        ax.set_xticks(range(1, len(ticks) + 1), ticks, fontsize=7)
        ax.set_yticks(range(1, len(ticks) + 1), ticks, fontsize=7)
    return _save(fig, path)


def plot_gradient_by_gap(gap: Any, path: str | os.PathLike, name: str = "W") -> Path:
    """Bars of ``‖by_gap[g]‖`` from :func:`bptt.gradient_by_gap`: how far back the gradient reaches."""
    plt = _pyplot()
    norms = np.asarray(gap.norms_by_gap, dtype=float)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.bar(np.arange(norms.size), norms, color="#4c72b0")
    ax.set_yscale("log" if norms.max() > 0 and norms.size > 1 else "linear")
    ax.set_xlabel("gap t − k (loss step minus the step where the weight acted)")
    ax.set_ylabel(f"‖∂J/∂{name} terms‖")
    ax.set_title(f"∂J/∂{name} by how far back it reaches")
    return _save(fig, path)


def plot_input_sensitivity(sens: Any, path: str | os.PathLike, labels: Sequence[str] | None = None) -> Path:
    """Heatmap of ``‖∂Loss_t/∂x_s‖`` from :func:`bptt.input_sensitivity`, outliers marked."""
    plt = _pyplot()
    M = np.asarray(sens.matrix, dtype=float)
    wrt = "x" if sens.wrt == "x" else f"({sens.wrt})"
    fig, (ax, bx) = plt.subplots(2, 1, figsize=(7.0, 7.0), height_ratios=[3, 1])
    im = ax.imshow(_log10_lower(M), cmap="viridis")
    fig.colorbar(im, ax=ax, label=f"log10 ‖∂Loss_t/∂{wrt}_s‖")
    ax.set_xlabel("s (input step)")
    ax.set_ylabel("t (loss step)")
    ticks = _tick_labels(labels, M.shape[0])
    if ticks is not None and len(ticks) <= 80:
        ax.set_xticks(range(len(ticks)), ticks, fontsize=7)
        ax.set_yticks(range(len(ticks)), ticks, fontsize=7)
    per_step = np.asarray(sens.per_step, dtype=float)
    colors = ["#c44e52" if i in set(np.asarray(sens.outliers).tolist()) else "#4c72b0" for i in range(per_step.size)]
    bx.bar(np.arange(per_step.size), per_step, color=colors)
    bx.set_xlabel("t (red: outlier by robust z-score)")
    bx.set_ylabel(f"‖∂J/∂{wrt}_t‖")
    if ticks is not None and len(ticks) <= 80:
        bx.set_xticks(range(len(ticks)), ticks, fontsize=7)
    return _save(fig, path)


def plot_training(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Training curves from ``metrics.jsonl`` rows: loss (or bpc) and gradient health."""
    plt = _pyplot()
    if not rows:
        raise PlotError("no metrics to plot (metrics.jsonl is empty)")
    steps = [r["step"] for r in rows]
    unit = "bpc" if "val_bpc" in rows[0] else "ppl" if "val_ppl" in rows[0] else "loss"
    fig, (ax, bx, cx) = plt.subplots(1, 3, figsize=(14.0, 3.8))
    for key, label in ((f"train_{unit}", "train"), (f"val_{unit}", "validation")):
        if key in rows[0]:
            ax.plot(steps, [r[key] for r in rows], marker="o", ms=3, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel(unit)
    ax.legend()
    ax.set_title(f"{unit} during training")

    def series(axis, keys: list[str], title: str, log: bool) -> None:
        styles = ["-", "--", ":", "-."]  # ten colours per style: every line stays distinct
        for i, key in enumerate(keys):
            axis.plot(steps, [r.get(key, np.nan) for r in rows], styles[(i // 10) % 4], label=key)
        axis.set_xlabel("step")
        axis.set_title(title)
        if log:
            axis.set_yscale("log")
        if keys:
            axis.legend(fontsize=6)

    series(bx, [k for k in rows[0] if k.startswith("grad_norm")], "gradient norms (before clipping)", log=True)
    weights = [k for k in rows[0] if k.startswith(("spectral_norm/", "spectral_radius/", "saturation/"))]
    series(cx, weights, "recurrent ‖W‖₂, ρ(W), saturated fraction", log=False)
    return _save(fig, path)
