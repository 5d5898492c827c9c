"""Exactness of ``loss_and_grad``: float64 gradients against two independent oracles.

1. Central finite differences (written here, not ``bptt.gradcheck``): every element
   of every parameter, of every initial state and of a float ``x`` is moved by
   ``±eps`` and ``J`` re-evaluated with ``model.loss``.
2. PyTorch autograd in float64 on the same weights (``tests/torch_reference.py``:
   explicit loops for Elman layers, ``torch.nn.LSTM`` / ``torch.nn.GRU`` for gated
   layers), for the loss, the gradients, the outputs and the final state.

The error of a tensor is ``max|a - n| / max(max|a|, max|n|, 1e-10)``: at most 1e-6
against finite differences (see ``FD_FLOOR`` for gradients below their resolution) and
1e-9 against torch.

The grid: every network (lecture Elman, lecture with the skip ``U_x``, RNN-A
(``notation="mit"``), RNN-B (``notation="concat"``, ``output_reads_input=True``),
LSTM, GRU, mixed stacks) × hidden activation (Elman) × output × T ∈ {1, 2, 7} ×
B ∈ {1, 3} × bias on/off × depth 1–2, with ``loss_weights`` cycling through
``None``, random weights and the last step only (many-to-one); token-id inputs for
every kind; a few networks with an input embedding ``E``; parameter and state names;
and float32 models against the float64 computation of the same weights.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import zlib
from dataclasses import dataclass

import numpy as np
import pytest
import torch

import bptt
from torch_reference import Reference, expected_param_shapes, expected_state_shapes, reference

torch.set_num_threads(1)  # the tensors are tiny: threads only add overhead

D, H, O = 3, 4, 5  # all different, so that a transposed weight cannot go unnoticed
D_TOKENS = 6  # vocabulary size for token-id inputs
FD_EPS = 1e-5
FD_TOL = 1e-6
# Central differences cannot resolve a gradient much smaller than their rounding noise,
# about 1e-16 |J| / eps = 1e-11 |J| (measured: at most 1.5e-11 |J| over the whole grid).
# A tensor whose whole gradient is that small (h0 after 7 saturating steps of a
# many-to-one loss) would fail on noise alone, so the denominator of its relative error is
# floored at FD_FLOOR * max(1, |J|), i.e. it must match to 1e-10 |J| absolutely.  Tensors
# with larger gradients (all but ~1% of them) are held to the plain 1e-6 relative error,
# and every tensor is also checked against torch at 1e-9 with the 1e-10 floor.
FD_FLOOR = 1e-4
TORCH_TOL = 1e-9
F32_TOL = 1e-4
RELU_MARGIN = 1e-3  # ReLU pre-activations must be this far from the kink for finite differences
PARAM_SCALE = 0.5
WEIGHT_MODES = ("none", "random", "last")

ACTIVATIONS = ("tanh", "relu", "sigmoid", "identity")
OUTPUTS = ("softmax", "sigmoid", "identity")

# Elman networks: label -> (notation, output_reads_input).
ELMAN_NETS = {
    "lecture": ("lecture", False),
    "lecture-skip": ("lecture", True),
    "rnnA-mit": ("mit", False),
    "rnnB-concat-skip": ("concat", True),
}
# The two remaining notation/skip combinations, on a smaller grid.
ELMAN_EXTRA_NETS = {
    "mit-skip": ("mit", True),
    "concat": ("concat", False),
}
ALL_ELMAN_NETS = {**ELMAN_NETS, **ELMAN_EXTRA_NETS}

# Mixed stacks: label -> (layers, notation, output_reads_input).
MIXED_NETS = {
    "lstm4+elman3relu": ((("lstm", 4, "tanh"), ("elman", 3, "relu")), "lecture", False),
    "gru3+lstm4-skip": ((("gru", 3, "tanh"), ("lstm", 4, "tanh")), "lecture", True),
    "elman4tanh+gru2-mit": ((("elman", 4, "tanh"), ("gru", 2, "tanh")), "mit", False),
    "gru4+elman3sigmoid+lstm2-concat-skip": (
        (("gru", 4, "tanh"), ("elman", 3, "sigmoid"), ("lstm", 2, "tanh")),
        "concat",
        True,
    ),
    "lstm3+lstm3+gru2+elman4identity": (
        (("lstm", 3, "tanh"), ("lstm", 3, "tanh"), ("gru", 2, "tanh"), ("elman", 4, "identity")),
        "mit",
        True,
    ),
}


@dataclass(frozen=True)
class Case:
    """One network, data shape and loss weighting."""

    net: str  # "elman-<label>", "lstm", "lstm-skip", "gru", "gru-skip" or "mixed-<label>"
    output: str
    T: int
    B: int
    bias: bool
    activation: str = "tanh"  # Elman networks only
    depth: int = 1  # Elman, LSTM and GRU networks only
    weights: str = "none"  # "none", "random" or "last"
    tokens: bool = False
    embed: int = 0  # embedding_size (0: no input embedding)

    @property
    def id(self) -> str:
        parts = ["tok" if self.tokens else "dense", self.net]
        if self.net.startswith("elman"):
            parts.append(self.activation)
        parts += [self.output, f"T{self.T}", f"B{self.B}", "bias" if self.bias else "nobias"]
        if not self.net.startswith("mixed"):
            parts.append(f"L{self.depth}")
        if self.embed:
            parts.append(f"E{self.embed}")
        parts.append(f"w{self.weights}")
        return "-".join(parts)


def build(case: Case, dtype: str = "float64") -> bptt.RNN:
    """The network of ``case`` (weights not yet randomised)."""
    d = D_TOKENS if case.tokens else D
    common = dict(output=case.output, bias=case.bias, dtype=dtype, seed=0)
    kind, _, label = case.net.partition("-")
    if kind == "elman":
        notation, skip = ALL_ELMAN_NETS[label]
        layers = [("elman", H, case.activation)] * case.depth
    elif kind in ("lstm", "gru"):
        notation, skip = "lecture", label == "skip"
        layers = [(kind, H, "tanh")] * case.depth
    else:
        layers, notation, skip = MIXED_NETS[label]
    if case.embed:
        specs = [bptt.LayerSpec(k, h, a) for k, h, a in layers]
        return bptt.RNN(d, specs, O, notation=notation, output_reads_input=skip, embedding_size=case.embed, **common)
    if kind == "elman":
        return bptt.Elman(
            d,
            H,
            O,
            activation=case.activation,
            notation=notation,
            output_reads_input=skip,
            num_layers=case.depth,
            **common,
        )
    if kind in ("lstm", "gru"):
        cls = bptt.LSTM if kind == "lstm" else bptt.GRU
        return cls(d, H, O, output_reads_input=skip, num_layers=case.depth, **common)
    specs = [bptt.LayerSpec(k, h, a) for k, h, a in layers]
    return bptt.RNN(d, specs, O, notation=notation, output_reads_input=skip, **common)


# -- the grids ---------------------------------------------------------------------------------------


def _with_weights(cases: list[Case]) -> list[Case]:
    """Cycle the loss weighting through the cases (None, random, last step only)."""
    return [dataclasses.replace(c, weights=WEIGHT_MODES[i % len(WEIGHT_MODES)]) for i, c in enumerate(cases)]


def _dense_cases() -> list[Case]:
    cases = []
    TB = list(itertools.product((1, 2, 7), (1, 3)))
    # Full grid for the four named Elman networks.
    for label, act, out, (T, B), bias, depth in itertools.product(
        ELMAN_NETS, ACTIVATIONS, OUTPUTS, TB, (True, False), (1, 2)
    ):
        cases.append(Case(f"elman-{label}", out, T, B, bias, act, depth))
    # Full grid for LSTM and GRU.
    for kind, out, (T, B), bias, depth in itertools.product(("lstm", "gru"), OUTPUTS, TB, (True, False), (1, 2)):
        cases.append(Case(kind, out, T, B, bias, depth=depth))
    # Mixed stacks: every output, length, batch and bias.
    for label, out, (T, B), bias in itertools.product(MIXED_NETS, OUTPUTS, TB, (True, False)):
        cases.append(Case(f"mixed-{label}", out, T, B, bias))
    # The remaining Elman notation/skip pairs and gated networks with the skip, on a smaller grid.
    for i, (label, act, out, bias) in enumerate(
        itertools.product(ELMAN_EXTRA_NETS, ACTIVATIONS, OUTPUTS, (True, False))
    ):
        T, B = ((7, 3), (2, 1), (1, 3))[i % 3]
        cases.append(Case(f"elman-{label}", out, T, B, bias, act, depth=1 + i % 2))
    for kind, out, bias, depth in itertools.product(("lstm-skip", "gru-skip"), OUTPUTS, (True, False), (1, 2)):
        cases.append(Case(kind, out, 7, 3, bias, depth=depth))
    return _with_weights(cases)


def _token_cases() -> list[Case]:
    nets = [f"elman-{label}" for label in ALL_ELMAN_NETS]
    nets += ["lstm", "gru", "lstm-skip", "gru-skip"]
    cases = []
    TB = ((7, 3), (1, 1), (2, 3), (7, 1))
    for i, (net, out, bias, depth) in enumerate(itertools.product(nets, OUTPUTS, (True, False), (1, 2))):
        T, B = TB[i % len(TB)]
        cases.append(Case(net, out, T, B, bias, ACTIVATIONS[i % len(ACTIVATIONS)], depth, tokens=True))
    for i, (label, out, bias) in enumerate(itertools.product(MIXED_NETS, OUTPUTS, (True, False))):
        T, B = TB[i % len(TB)]
        cases.append(Case(f"mixed-{label}", out, T, B, bias, tokens=True))
    return _with_weights(cases)


def _embedding_cases() -> list[Case]:
    """Networks with an input embedding ``E`` (``embedding_size=2``), dense and token inputs."""
    nets = ["elman-lecture", "elman-rnnA-mit", "elman-rnnB-concat-skip", "lstm", "gru-skip", "mixed-lstm4+elman3relu"]
    cases = []
    TB = ((7, 3), (2, 1), (1, 3))
    for i, (net, tokens, bias) in enumerate(itertools.product(nets, (False, True), (True, False))):
        T, B = TB[i % len(TB)]
        act, out = ACTIVATIONS[i % len(ACTIVATIONS)], OUTPUTS[i % len(OUTPUTS)]
        cases.append(Case(net, out, T, B, bias, act, depth=1 + i % 2, tokens=tokens, embed=2))
    return _with_weights(cases)


CASES = _dense_cases() + _token_cases() + _embedding_cases()
CASE_PARAMS = [pytest.param(c, id=c.id) for c in CASES]


# -- data and the two oracles ---------------------------------------------------------------------------


@dataclass
class Result:
    """A private copy of what ``loss_and_grad`` returned."""

    loss: float
    grads: dict[str, np.ndarray]
    outputs: np.ndarray
    state: dict[str, np.ndarray]


@dataclass
class Prepared:
    model: bptt.RNN
    x: np.ndarray
    y: np.ndarray
    h0: dict[str, np.ndarray]
    w: np.ndarray | None
    result: Result
    ref: Reference


def randomise(m: bptt.RNN, rng: np.random.Generator) -> None:
    """Replace every parameter (biases included) by ``N(0, 1) * PARAM_SCALE``."""
    for name, p in m.params.items():
        m.params[name] = (rng.standard_normal(p.shape) * PARAM_SCALE).astype(p.dtype)


def make_data(m: bptt.RNN, case: Case, rng: np.random.Generator):
    """Random ``x, y, h0, loss_weights`` for ``case`` (float64)."""
    T, B, d = case.T, case.B, m.input_size
    x = rng.integers(0, d, size=(T, B)) if case.tokens else rng.standard_normal((T, B, d))
    if case.output == "softmax":
        y = rng.integers(0, O, size=(T, B))
    elif case.output == "sigmoid":
        y = rng.uniform(0.0, 1.0, size=(T, B, O))
    else:
        y = rng.standard_normal((T, B, O))
    h0 = {name: rng.standard_normal((B, *shape)) * 0.5 for name, shape in m.state_shapes.items()}
    if case.weights == "none":
        w = None
    elif case.weights == "random":
        w = rng.uniform(0.1, 2.0, size=(T, B))
    else:  # many-to-one: only the last step counts
        w = np.zeros((T, B))
        w[-1] = 1.0
    return x, y, h0, w


@functools.cache
def prepared(case: Case) -> Prepared:
    """Model, data, ``loss_and_grad`` and the torch reference for ``case`` (deterministic).

    For ReLU networks the seed is advanced until no ReLU pre-activation lies within
    ``RELU_MARGIN`` of the kink, where finite differences would be meaningless.
    """
    seed = zlib.crc32(case.id.encode())
    for attempt in range(100):
        rng = np.random.default_rng([seed, attempt])
        m = build(case)
        randomise(m, rng)
        x, y, h0, w = make_data(m, case, rng)
        ref = reference(m.config(), m.params, x, y, h0, w)
        if ref.relu_margin > RELU_MARGIN:
            break
    else:
        raise RuntimeError(f"{case.id}: no seed keeps ReLU pre-activations away from 0")
    r = m.loss_and_grad(x, y, h0, loss_weights=w)
    result = Result(
        loss=r.loss,
        grads={k: np.array(v, copy=True) for k, v in r.grads.items()},
        outputs=np.array(r.outputs, copy=True),
        state={k: np.array(v, copy=True) for k, v in r.state.items()},
    )
    return Prepared(m, x, y, h0, w, result, ref)


def finite_differences(p: Prepared, eps: float = FD_EPS) -> dict[str, np.ndarray]:
    """Central differences ``(J(θ + eps) - J(θ - eps)) / 2eps`` for every element of every input tensor."""
    m, x, y, h0, w = p.model, p.x, p.y, p.h0, p.w
    tensors = {**m.params, **h0}
    if x.dtype.kind == "f":
        tensors["x"] = x
    numeric = {}
    for name, arr in tensors.items():
        g = np.empty(arr.shape)
        for i in range(arr.size):
            old = arr.flat[i]
            arr.flat[i] = old + eps
            jp = m.loss(x, y, h0, loss_weights=w)
            arr.flat[i] = old - eps
            jm = m.loss(x, y, h0, loss_weights=w)
            arr.flat[i] = old
            g.flat[i] = (jp - jm) / (2 * eps)
        numeric[name] = g
    return numeric


def relative_error(a: np.ndarray, n: np.ndarray, floor: float = 1e-10) -> tuple[float, tuple[int, ...]]:
    """``max|a - n| / max(max|a|, max|n|, floor)`` and the index of the worst element."""
    a = np.asarray(a, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    diff = np.abs(a - n)
    worst = tuple(int(i) for i in np.unravel_index(np.argmax(diff), diff.shape))
    denom = max(float(np.abs(a).max()), float(np.abs(n).max()), floor)
    return float(diff.max()) / denom, worst


def mismatches(got: dict, want: dict, tol: float, got_name: str, want_name: str, floor: float = 1e-10) -> list[str]:
    """A line for every tensor of ``want`` whose relative error exceeds ``tol``."""
    lines = []
    for name, n in want.items():
        a = got[name]
        if a.shape != n.shape:
            lines.append(f"{name}: shape {a.shape} != {want_name} shape {n.shape}")
            continue
        err, idx = relative_error(a, n, floor)
        if not err <= tol:  # also catches NaN
            lines.append(
                f"{name}{list(idx)}: relative error {err:.3e} > {tol:.0e} (max|{got_name}| "
                f"{np.abs(a).max():.3e}, max|{want_name}| {np.abs(n).max():.3e}, floor {floor:.1e}); "
                f"{got_name} {a[idx]!r} vs {want_name} {n[idx]!r}"
            )
    return lines


def expected_grad_keys(m: bptt.RNN, x: np.ndarray) -> set[str]:
    keys = set(m.params) | set(m.state_shapes)
    if x.dtype.kind == "f":
        keys.add("x")
    return keys


# -- tests -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_matches_finite_differences(case: Case) -> None:
    p = prepared(case)
    grads = p.result.grads
    assert set(grads) == expected_grad_keys(p.model, p.x)
    numeric = finite_differences(p)
    # The loss must be unchanged by the perturbations (every element was restored).
    assert p.model.loss(p.x, p.y, p.h0, loss_weights=p.w) == p.result.loss
    floor = FD_FLOOR * max(1.0, abs(p.result.loss))
    bad = mismatches(grads, numeric, FD_TOL, "analytic", "numeric", floor)
    assert not bad, f"{case.id}: gradients differ from finite differences:\n" + "\n".join(bad)


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_matches_torch(case: Case) -> None:
    p = prepared(case)
    r, ref = p.result, p.ref
    assert set(r.grads) == expected_grad_keys(p.model, p.x) == set(ref.grads)
    for name, g in r.grads.items():
        assert g.dtype == np.float64, f"{name}: dtype {g.dtype}"
    bad = []
    loss_err = abs(r.loss - ref.loss) / max(abs(ref.loss), 1e-10)
    if not loss_err <= TORCH_TOL:
        bad.append(f"loss: relative error {loss_err:.3e}; bptt {r.loss!r} vs torch {ref.loss!r}")
    bad += mismatches(r.grads, ref.grads, TORCH_TOL, "bptt", "torch")
    bad += mismatches({"outputs": r.outputs}, {"outputs": ref.outputs}, TORCH_TOL, "bptt", "torch")
    bad += mismatches(r.state, ref.state, TORCH_TOL, "bptt final state", "torch")
    assert not bad, f"{case.id}: bptt differs from torch autograd:\n" + "\n".join(bad)


NAME_CASES = (
    [Case(f"elman-{n}", "softmax", 1, 1, b, depth=d) for n in ALL_ELMAN_NETS for b in (True, False) for d in (1, 2)]
    + [
        Case(n, "softmax", 1, 1, b, depth=d)
        for n in ("lstm", "gru", "lstm-skip", "gru-skip")
        for b in (True, False)
        for d in (1, 3)
    ]
    + [Case(f"mixed-{n}", "softmax", 1, 1, b) for n in MIXED_NETS for b in (True, False)]
)


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=f"{c.net}-{'bias' if c.bias else 'nobias'}-L{c.depth}") for c in NAME_CASES]
)
def test_parameter_and_state_names(case: Case) -> None:
    """Parameter names and shapes follow the documented conventions (which the torch reference relies on)."""
    m = build(case)
    cfg = m.config()
    assert m.param_shapes == expected_param_shapes(cfg)
    assert {k: tuple(v.shape) for k, v in m.params.items()} == expected_param_shapes(cfg)
    assert m.state_shapes == expected_state_shapes(cfg)


# -- float32 -------------------------------------------------------------------------------------------------

F32_NETS = [f"elman-{label}" for label in ALL_ELMAN_NETS] + ["lstm", "gru", "lstm-skip"]
F32_NETS += [f"mixed-{label}" for label in MIXED_NETS]
F32_CASES = _with_weights(
    [
        Case(net, out, 7, 3, True, ACTIVATIONS[i % len(ACTIVATIONS)], depth=1 + i % 2, tokens=i % 5 == 4)
        for i, (net, out) in enumerate(itertools.product(F32_NETS, OUTPUTS))
    ]
)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in F32_CASES])
def test_float32_matches_float64(case: Case) -> None:
    """A float32 model computes what the float64 model with the same (rounded) weights computes, to ~1e-4."""
    rng = np.random.default_rng(zlib.crc32(case.id.encode()))
    m32 = build(case, "float32")
    randomise(m32, rng)
    m64 = m32.astype("float64")
    x, y, h0, w = make_data(m64, case, rng)

    def f32(a):
        return a.astype(np.float32) if a.dtype.kind == "f" else a

    x32, y32 = f32(x), f32(y)
    h0_32 = {k: f32(v) for k, v in h0.items()}
    r32 = m32.loss_and_grad(x32, y32, h0_32, loss_weights=w)
    r64 = m64.loss_and_grad(
        x32.astype(np.float64) if x32.dtype.kind == "f" else x32,
        y32.astype(np.float64) if y32.dtype.kind == "f" else y32,
        {k: v.astype(np.float64) for k, v in h0_32.items()},
        loss_weights=w,
    )
    assert set(r32.grads) == expected_grad_keys(m32, x32)
    for name, g in r32.grads.items():
        assert g.dtype == np.float32, f"{name}: dtype {g.dtype}, expected float32"
    assert r32.outputs.dtype == np.float32
    for name, v in r32.state.items():
        assert v.dtype == np.float32, f"final state {name}: dtype {v.dtype}, expected float32"
    assert isinstance(r32.loss, float)
    loss_err = abs(r32.loss - r64.loss) / max(abs(r64.loss), 1e-10)
    bad = [] if loss_err <= F32_TOL else [f"loss: relative error {loss_err:.3e}; {r32.loss!r} vs {r64.loss!r}"]
    bad += mismatches(r32.grads, r64.grads, F32_TOL, "float32", "float64")
    bad += mismatches({"outputs": r32.outputs}, {"outputs": r64.outputs}, F32_TOL, "float32", "float64")
    assert not bad, f"{case.id}: float32 differs from float64:\n" + "\n".join(bad)


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
@pytest.mark.parametrize(("T", "B", "D"), [(3, 2, 5), (20, 30, 40)])  # one-hot product path / sorted-sum path
def test_token_ids_equal_one_hot_inputs(cell: str, T: int, B: int, D: int) -> None:
    # Token ids are a gather forward and a scatter backward; a one-hot float input is the same
    # function through ordinary products. Sizes on both sides of inputs._ONE_HOT_LIMIT.
    m = bptt.RNN(D, [bptt.LayerSpec(cell, 6)], D, output_reads_input=True, seed=2)
    rng = np.random.default_rng(3)
    ids = rng.integers(0, D, (T, B))
    y = rng.integers(0, D, (T, B))
    tokens = m.loss_and_grad(ids, y)
    dense = m.loss_and_grad(np.eye(D)[ids], y)
    assert abs(tokens.loss - dense.loss) <= 1e-12 * abs(dense.loss)
    for k in m.params:
        np.testing.assert_allclose(tokens.grads[k], dense.grads[k], rtol=0, atol=1e-12, err_msg=k)
