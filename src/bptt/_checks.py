"""Argument validation with messages that name the argument, the expectation and what came in.

Every public entry point validates its inputs here before any NumPy work, so
users see ``ValueError("Elman.loss_and_grad: x must have shape (T, B, 3), got
(5, 2, 4)")`` rather than a broadcasting error from deep inside a kernel.
Never ``assert`` (stripped by ``python -O``).
"""

from __future__ import annotations

import numbers

import numpy as np

FLOAT_DTYPES = ("float32", "float64")


def positive_int(value: object, name: str, where: str) -> int:
    """``value`` as an int ≥ 1 (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{where}: {name} must be a positive integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{where}: {name} must be a positive integer, got {value!r}")
    return int(value)


def float_dtype(value: object, where: str) -> np.dtype:
    """``value`` as ``float32`` or ``float64``."""
    try:
        dtype = None if value is None else np.dtype(value)  # type: ignore[arg-type]
    except TypeError:
        dtype = None
    if dtype is None or dtype.name not in FLOAT_DTYPES:
        raise ValueError(f"{where}: dtype must be 'float32' or 'float64', got {value!r}")
    return dtype


def as_array(value: object, name: str, where: str, float_dtype: np.dtype | None = None) -> np.ndarray:
    """``np.asarray(value)`` refusing objects, strings and ragged input.

    Python lists and numbers have no dtype of their own: floats among them take
    ``float_dtype`` (the model's) when given.
    """
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"{where}: {name} must be an array of numbers, got {type(value).__name__} ({exc})") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{where}: {name} must be an array of numbers, got dtype {arr.dtype}")
    if float_dtype is not None and arr.dtype.kind == "f" and not isinstance(value, np.ndarray):
        arr = arr.astype(float_dtype)
    return arr


def finite(arr: np.ndarray, name: str, where: str) -> None:
    """Refuse NaN or Inf, naming the first offending index."""
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise ValueError(f"{where}: {name} must be finite, found {arr[bad]} at index {bad}")


def float_array(arr: np.ndarray, name: str, dtype: np.dtype, where: str) -> np.ndarray:
    """A float array of exactly ``dtype`` (mismatches are a ``TypeError``, as in PyTorch)."""
    if arr.dtype.kind != "f":
        raise TypeError(f"{where}: {name} must have dtype {dtype}, got {arr.dtype}")
    if arr.dtype != dtype:
        hint = f" or build the model with dtype='{arr.dtype}'" if arr.dtype.name in FLOAT_DTYPES else ""
        raise TypeError(
            f"{where}: {name} must have dtype {dtype} like the model, got {arr.dtype} "
            f"(convert with .astype('{dtype}'){hint})"
        )
    finite(arr, name, where)
    return arr


def token_ids(arr: np.ndarray, name: str, n: int, where: str) -> np.ndarray:
    """Integer ids in ``[0, n)``, as ``intp`` for fast indexing."""
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= n:
            bad = lo if lo < 0 else hi
            idx = tuple(int(i) for i in np.argwhere(arr == bad)[0])
            raise ValueError(f"{where}: {name} must hold ids in [0, {n}), got {bad} at index {idx}")
    return arr.astype(np.intp, copy=False)


def sequence_input(x: object, input_size: int, dtype: np.dtype, where: str, name: str = "x") -> np.ndarray:
    """Validate a network input: float ``(T, B, D)`` or integer token ids ``(T, B)``."""
    arr = as_array(x, name, where, dtype)
    D = input_size
    if arr.dtype.kind == "b":
        raise TypeError(f"{where}: {name} must be float (T, B, {D}) or integer token ids (T, B), got dtype bool")
    if arr.dtype.kind in "iu":
        if arr.ndim != 2:
            raise ValueError(
                f"{where}: integer {name} must be token ids of shape (T, B), got shape {arr.shape} "
                f"(for vectors pass floats of shape (T, B, {D}))"
            )
        _nonempty(arr.shape, name, where)
        return token_ids(arr, name, D, where)
    if arr.ndim != 3 or arr.shape[2] != D:
        raise ValueError(f"{where}: {name} must have shape (T, B, {D}) or be token ids (T, B), got shape {arr.shape}")
    _nonempty(arr.shape, name, where)
    return float_array(arr, name, dtype, where)


def _nonempty(shape: tuple[int, ...], name: str, where: str) -> None:
    if shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"{where}: {name} needs at least one step and one sequence, got shape {shape}")


def step_input(x_t: object, input_size: int, dtype: np.dtype, where: str, name: str = "x_t") -> np.ndarray:
    """Validate one step's input: float ``(B, D)`` or integer ids ``(B,)``."""
    arr = as_array(x_t, name, where, dtype)
    D = input_size
    if arr.dtype.kind in "iu" and arr.ndim == 1 and arr.shape[0] >= 1:
        return token_ids(arr, name, D, where)
    if arr.dtype.kind == "f" and arr.ndim == 2 and arr.shape[1] == D and arr.shape[0] >= 1:
        return float_array(arr, name, dtype, where)
    raise ValueError(
        f"{where}: {name} must be float of shape (B, {D}) or token ids of shape (B,), "
        f"got {arr.dtype} of shape {arr.shape}"
    )


def is_final_target(y: object, B: int, O: int, class_targets: bool, where: str) -> bool:
    """Whether ``y`` has the many-to-one form: class ids ``(B,)`` or floats ``(B, O)``, one target
    per sequence (read from its final state). Anything else is checked as one target per step."""
    return as_array(y, "y", where).shape == ((B,) if class_targets else (B, O))


def targets(
    y: object, T: int, B: int, O: int, class_targets: bool, dtype: np.dtype, output: str, where: str, *, final=False
) -> np.ndarray:
    """Validate targets: class ids ``(T, B)`` for softmax, floats ``(T, B, O)`` otherwise; with
    ``final``, one per sequence: ``(B,)`` or ``(B, O)``."""
    arr = as_array(y, "y", where)
    lead = (B,) if final else (T, B)
    other = f" (or of shape ({T}, {B}{'' if class_targets else f', {O}'}) for a target at every step)" if final else ""
    if class_targets:
        if arr.dtype.kind not in "iu" or arr.shape != lead:
            raise ValueError(
                f"{where}: y for output='{output}' must be integer class ids of shape {lead}, "
                f"got {arr.dtype} of shape {arr.shape}{other or f' (or ({B},) for one target per sequence)'}"
            )
        return token_ids(arr, "y", O, where)
    if arr.shape != (*lead, O):
        hint = other or f" (or ({B}, {O}) for one target per sequence)"
        raise ValueError(f"{where}: y for output='{output}' must have shape {(*lead, O)}, got {arr.shape}{hint}")
    arr = float_array(arr, "y", dtype, where)
    if output == "sigmoid" and ((arr < 0).any() or (arr > 1).any()):
        raise ValueError(
            f"{where}: y for output='sigmoid' must lie in [0, 1], got values in [{arr.min()}, {arr.max()}]"
        )
    return arr


def lengths(value: object, T: int, B: int, where: str) -> np.ndarray | None:
    """Validate sequence lengths: ``None`` (all T), or integers ``(B,)`` with ``1 ≤ lengths[b] ≤ T``.

    Returns ``None`` when every length is T (no padding), else a private int64 copy.
    """
    if value is None:
        return None
    arr = as_array(value, "lengths", where)
    if arr.shape != (B,):
        raise ValueError(f"{where}: lengths must have shape ({B},), one per sequence, got {arr.shape}")
    if arr.dtype.kind not in "iu":  # as torch's pack_padded_sequence: integers, not 3.0
        raise ValueError(f"{where}: lengths must be integers, got {arr.dtype} values {arr.tolist()[:8]}")
    if arr.min() < 1 or arr.max() > T:
        bad = int(np.argmax((arr < 1) | (arr > T)))
        raise ValueError(f"{where}: lengths must lie in [1, {T}] (T = {T}), got lengths[{bad}] = {arr[bad]}")
    arr = arr.astype(np.int64)
    return None if (arr == T).all() else arr


def loss_weights(w: object, T: int, B: int, dtype: np.dtype, where: str, *, final=False) -> np.ndarray | None:
    """Validate optional per-(t, b) loss weights of shape ``(T, B)`` (``(B,)`` with ``final``)."""
    if w is None:
        return None
    arr = as_array(w, "loss_weights", where)
    shape = (B,) if final else (T, B)
    if arr.shape != shape:
        raise ValueError(f"{where}: loss_weights must have shape {shape}, got {arr.shape}")
    finite(arr, "loss_weights", where)
    if (arr < 0).any():
        bad = tuple(int(i) for i in np.argwhere(arr < 0)[0])
        raise ValueError(f"{where}: loss_weights must be ≥ 0, found {arr[bad]} at index {bad}")
    return arr.astype(dtype, copy=False)


def generator(seed: object, where: str) -> np.random.Generator:
    """A ``numpy.random.Generator`` from a seed (int ≥ 0, sequence of them, ``None``) or a Generator."""
    if isinstance(seed, np.random.Generator):
        return seed
    try:
        if isinstance(seed, (bool, float)):
            raise TypeError
        return np.random.default_rng(seed)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(
            f"{where}: seed must be a non-negative integer, None or a numpy.random.Generator, got {seed!r}"
        ) from None


def batch_index(value: object, B: int, where: str) -> int:
    """An index into the batch of ``B`` sequences."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{where}: batch_index must be an integer, got {value!r}")
    if not 0 <= value < B:
        raise ValueError(f"{where}: batch_index must be in [0, {B}) for x with B = {B}, got {value}")
    return int(value)


def real(
    value: object,
    name: str,
    where: str,
    *,
    low: float = 0.0,
    strict: bool = True,
    high: float | None = None,
    high_strict: bool = True,
    hint: str = "",
) -> float:
    """``value`` as a float, finite and above ``low`` (``≥ low`` unless ``strict``), below ``high`` if given.

    The one check behind every "must be a finite number > 0" in bptt (temperatures,
    learning rates, thresholds, finite-difference steps, decay factors). Messages read
    ``"{where}: {name} must be a finite number > 0, got -1"`` (or ``≥ 0``, ``in [0, 1)``,
    ``in (0, 1]``; ``hint`` in brackets after the bound); anything but a finite real raises
    :class:`NotANumberError`, a ``ValueError`` that is also a ``TypeError``. ``where`` may be
    ``""`` for messages without a caller prefix (the command line's argument parser).
    """
    number = not isinstance(value, bool) and isinstance(value, numbers.Real) and bool(np.isfinite(value))
    above = number and (value > low if strict else value >= low)
    if above and (high is None or (value < high if high_strict else value <= high)):
        return float(value)
    if high is None:
        bound = f"{'>' if strict else '≥'} {low:g}"
    else:
        bound = f"in {'(' if strict else '['}{low:g}, {high:g}{')' if high_strict else ']'}"
    prefix = f"{where}: " if where else ""
    message = f"{prefix}{name} must be a finite number {bound}{f' ({hint})' if hint else ''}, got {value!r}"
    raise ValueError(message) if number else NotANumberError(message)


class NotANumberError(ValueError, TypeError):
    """:func:`real` got no finite real number at all (a string, ``None``, ``True``, NaN, ∞).

    Both a ``ValueError`` and a ``TypeError`` (as NumPy's ``AxisError`` is both), so code
    that catches either for a bad setting keeps working.
    """
