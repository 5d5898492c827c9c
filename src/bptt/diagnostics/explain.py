"""Explain a language model on a text: the diagnostics of one sequence, as JSON and pictures.

For a text ``c_0 c_1 … c_T`` the model reads ``x = c_0 … c_{T-1}`` and predicts
``y = c_1 … c_T``; :func:`explain_text` gathers, for that one sequence,

* the Jacobian-product map ``‖∂s_t/∂s_k‖`` and saturation (:func:`bptt.jacobian_map`),
* the "how far back" decomposition of the recurrent weight's gradient
  (:func:`bptt.gradient_by_gap`),
* the input sensitivity ``‖∂Loss_t/∂x_s‖`` with outlier steps (:func:`bptt.input_sensitivity`),

and :func:`write_explanation` saves them as ``explain.json`` plus three PNGs.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import _checks
from ..engine.layers import ElmanLayer
from ..engine.network import RNN
from ..files.atomic import write_atomic
from ..text.vocab import Vocabulary
from .decompose import GapDecomposition, gradient_by_gap
from .jacobians import JacobianMap, jacobian_map
from .sensitivity import InputSensitivity, input_sensitivity

__all__ = [
    "MAX_EXPLAIN_TOKENS",
    "Explanation",
    "explain_random",
    "explain_text",
    "recurrent_weight_name",
    "write_explanation",
]

# Costs grow fast with the length T and the state size S: the Jacobian map takes T²/2 products and
# norms of S×S matrices (about 30 s at T = 100 for a 256-unit GRU), the gap decomposition T
# backward passes. 120 steps keep a default model within about a minute.
MAX_EXPLAIN_TOKENS = 120


@dataclass(frozen=True)
class Explanation:
    """The diagnostics of one text (see the module docstring)."""

    text: str
    units: tuple[str, ...]
    param: str
    jacobians: JacobianMap
    gaps: GapDecomposition
    sensitivity: InputSensitivity


def recurrent_weight_name(model: RNN) -> str:
    """The first layer's recurrent weight: ``W``, ``W_ss``, ``W_ssx`` (its state block acts) or ``W_l0``…"""
    layer = model.layers[0]
    return layer.names[1] if isinstance(layer, ElmanLayer) else "W" + layer.suffix


def explain_text(model: RNN, vocab: Vocabulary, text: str, param: str | None = None) -> Explanation:
    """Diagnostics of ``model`` reading ``text`` (at least two units, at most ``MAX_EXPLAIN_TOKENS``).

    Raises
    ------
    ValueError
        For text outside the vocabulary (the units are named), too short or too long, or an
        unknown ``param``.
    """
    if not isinstance(text, str) or not text:
        raise ValueError("text must be a non-empty string")
    ids = vocab.encode_input(text, "text")[0].astype(np.intp)
    if len(ids) < 2:
        raise ValueError(f"text must have at least 2 {vocab.level}s (one input and one target), got {len(ids)}")
    if len(ids) > MAX_EXPLAIN_TOKENS + 1:
        raise ValueError(f"text has {len(ids)} {vocab.level}s; explain reads at most {MAX_EXPLAIN_TOKENS + 1}")
    return _explain(model, ids, text, tuple(vocab.tokens[i] for i in ids), param)


def explain_random(model: RNN, length: int, param: str | None = None, seed: int = 0) -> Explanation:
    """Diagnostics of ``model`` (token inputs, softmax output) reading ``length + 1`` random tokens.

    For looking inside an untrained architecture: the units are shown as their ids.
    """
    length = _checks.positive_int(length, "length", "explain_random")
    if length > MAX_EXPLAIN_TOKENS:
        raise ValueError(f"explain_random: length must be at most {MAX_EXPLAIN_TOKENS}, got {length}")
    if model.output.name != "softmax" or model.output_size != model.input_size:
        raise ValueError("explain_random: the model must map token ids to a softmax over the same vocabulary")
    ids = _checks.generator(seed, "explain_random").integers(0, model.input_size, length + 1).astype(np.intp)
    units = tuple(str(i) for i in ids)
    return _explain(model, ids, " ".join(units), units, param)


def _explain(model: RNN, ids: np.ndarray, text: str, units: tuple[str, ...], param: str | None) -> Explanation:
    param = recurrent_weight_name(model) if param is None else param
    if param not in model.params:
        raise ValueError(f"param must be one of the model's parameters {list(model.params)}, got {param!r}")
    x, y = ids[:-1, None], ids[1:, None]
    return Explanation(
        text=text,
        units=units,
        param=param,
        jacobians=jacobian_map(model, x),
        gaps=gradient_by_gap(model, x, y, param),
        sensitivity=input_sensitivity(model, x, y),
    )


def _json_array(a: np.ndarray) -> Any:
    """Nested lists with NaN/Inf as ``null`` (JSON has no NaN)."""
    arr = np.asarray(a, dtype=float)
    return [_json_array(row) for row in arr] if arr.ndim > 1 else [None if not math.isfinite(v) else v for v in arr]


def write_explanation(ex: Explanation, folder: str | os.PathLike, plots: bool = True) -> list[Path]:
    """Write ``explain.json`` (and, with ``plots``, three PNGs) into ``folder``; returns the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    jm, gaps, sens = ex.jacobians, ex.gaps, ex.sensitivity
    numbers = {
        "indexing": (
            "N[t][k]: rows and columns 0 = the initial state, i = after input i-1; "
            "saturation[t], M[t][s], per_step[t], z_scores[t]: 0-based steps (input t, target t+1)"
        ),
        "text": ex.text,
        "inputs": list(ex.units[:-1]),
        "targets": list(ex.units[1:]),
        "jacobian_norms": {"norm": jm.norm, "exact": jm.exact, "N[t][k]": _json_array(jm.norms)},
        "recurrent_spectral_norm": dict(jm.recurrent_spectral_norm),
        "recurrent_spectral_radius": dict(jm.recurrent_spectral_radius),
        "saturation[t][layer]": _json_array(jm.saturation),
        "gradient_by_gap": {"param": ex.param, "norms": _json_array(gaps.norms_by_gap)},
        "input_sensitivity": {
            "wrt": sens.wrt,
            "M[t][s]": _json_array(sens.matrix),
            "per_step": _json_array(sens.per_step),
            "z_scores": _json_array(sens.z_scores),
            "outliers": [int(i) for i in sens.outliers],
        },
    }
    written = [folder / "explain.json"]
    write_atomic(written[0], json.dumps(numbers, indent=1, ensure_ascii=False))
    if plots:
        from .plots import plot_gradient_by_gap, plot_input_sensitivity, plot_jacobian_map

        labels = ex.units[:-1]
        written.append(plot_jacobian_map(jm, folder / "jacobian_map.png", labels))
        written.append(plot_gradient_by_gap(gaps, folder / "gradient_by_gap.png", ex.param))
        written.append(plot_input_sensitivity(sens, folder / "input_sensitivity.png", labels))
    return written
