"""``bptt.dependence.gradient_dependence``: which elements of a weight move a gradient (exam question (f)).

Oracles:

1. The exam's RNN-B answers, derived by hand and computed by perturbing whole copies of the
   model in ``examples/seed_questions.py`` (``exam_f``, ``exam_f_expected_masks``), on the
   same weights and data.
2. Brute-force mixed second differences of the loss alone (forward passes only)::

       ∂²Loss/∂φ_i∂θ_j ≈ (L(+,+) − L(+,−) − L(−,+) + L(−,−)) / 4h²

   whose norm over i is the reported ``‖∂G/∂θ_j‖`` for ``G = ∂Loss/∂φ``.
3. Polynomial cases: for the linear network with squared error, G is at most quadratic in
   each weight at the early steps, so any ε gives the same central difference.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import bptt
from bptt.dependence import Dependence, gradient_dependence

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "seed_questions.py"
STATEMENTS = (
    "depends on W_ox",
    "depends on all elements of W_ox",
    "depends on W_ssx",
    "depends on all elements of W_ssx",
)


@pytest.fixture(scope="module")
def sq():
    spec = importlib.util.spec_from_file_location("seed_questions", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def _exam_problem(sq, setting: str, s0_zero: bool, T: int = 3, seed: int = 5):
    """The model and data ``exam_f(setting, t, T, s0_zero, seed)`` builds (same generator calls)."""
    f1, f2, _, _ = sq.EXAM_F_SETTINGS[setting]
    rng = np.random.default_rng(seed)
    m = sq.rnn_b(activation=f1, output=f2, seed=seed)
    x = rng.standard_normal((T, 1, 2))
    y = rng.integers(0, 2, size=(T, 1)) if f2 == "softmax" else rng.standard_normal((T, 1, 2))
    h0 = None if s0_zero else rng.standard_normal((1, 2))
    return m, x, y, h0


def _exam_statements(d_ox: Dependence, d_ssx: Dependence) -> dict[str, bool]:
    return {**d_ox.statements, **d_ssx.statements}


# -- the exam's RNN-B ---------------------------------------------------------------------------------
@pytest.mark.parametrize("s0_zero", [True, False], ids=["s0=0", "s0!=0"])
@pytest.mark.parametrize("t", [1, 2])
@pytest.mark.parametrize("setting", ["linear, squared error", "tanh, softmax + CE"])
def test_reproduces_the_exam_answers_of_seed_questions(sq, setting, t, s0_zero):
    a = sq.exam_f(setting, t, T=3, s0_zero=s0_zero)
    m, x, y, h0 = _exam_problem(sq, setting, s0_zero)
    d_ox = gradient_dependence(m, x, y, of="x", wrt="W_ox", step=t - 1, h0=h0)
    d_ssx = gradient_dependence(m, x, y, of="x", wrt="W_ssx", step=t - 1, h0=h0)
    np.testing.assert_allclose(d_ox.gradient[0], a.grad_x_t, rtol=1e-13)  # the same ∂Loss_t/∂x_t
    np.testing.assert_array_equal(d_ox.mask, a.mask_W_ox)
    np.testing.assert_array_equal(d_ssx.mask, a.mask_W_ssx)
    assert _exam_statements(d_ox, d_ssx) == a.statements
    # the rule derived by hand: W_ox and the input block of W_ssx always enter; the state block
    # W_ss only through s_{t-1}, which is 0 at t = 1 when s_0 = 0
    state_block = t >= 2 or not s0_zero
    assert d_ox.mask.all() and d_ssx.mask[:, 2:].all()
    assert np.all(d_ssx.mask[:, :2] == state_block)
    assert d_ssx.blocks == {"W_ssx[:, :2]": state_block, "W_ssx[:, 2:]": True}
    assert d_ox.blocks == {"W_ox[:, :2]": True, "W_ox[:, 2:]": True}
    if setting.startswith("linear"):
        expected_ox, expected_ssx = sq.exam_f_expected_masks("squared", t, s0_zero)
        np.testing.assert_array_equal(d_ox.mask, expected_ox)
        np.testing.assert_array_equal(d_ssx.mask, expected_ssx)


def test_exam_statements_linear_network(sq):
    """f1 = f2 = identity, squared error: at t = 1 (s_0 = 0) three statements hold, at t = 2 all four."""
    m, x, y, _ = _exam_problem(sq, "linear, squared error", s0_zero=True)
    first = [gradient_dependence(m, x, y, wrt=w, step=0) for w in ("W_ox", "W_ssx")]
    second = [gradient_dependence(m, x, y, wrt=w, step=1) for w in ("W_ox", "W_ssx")]
    assert _exam_statements(*first) == dict(zip(STATEMENTS, (True, True, True, False), strict=True))
    assert _exam_statements(*second) == dict(zip(STATEMENTS, (True, True, True, True), strict=True))
    # the state block does not enter at all at t = 1: its perturbations leave G bit for bit unchanged
    assert np.all(first[1].magnitude[:, :2] == 0.0)
    assert first[1].step == 0 and first[1].of == "x" and first[1].wrt == "W_ssx"


@pytest.mark.parametrize("s0_zero, steps", [(True, (0, 1, 2)), (False, (0, 1))], ids=["s0=0", "s0!=0"])
def test_linear_network_central_difference_is_exact(sq, s0_zero, steps):
    """Linear RNN-B: G = (W_o W_sx + U_x)ᵀ (p_t − y_t) is quadratic in each element of W_ox and of
    the input block, and of degree t − 1 (s_0 = 0) or t (s_0 ≠ 0) in the state block W_ss: up to
    quadratic, the central difference is exact whatever ε."""
    m, x, y, h0 = _exam_problem(sq, "linear, squared error", s0_zero=s0_zero)
    for step in steps:
        for wrt in ("W_ox", "W_ssx"):
            small = gradient_dependence(m, x, y, wrt=wrt, step=step, h0=h0, eps=1e-4)
            large = gradient_dependence(m, x, y, wrt=wrt, step=step, h0=h0, eps=0.5)
            np.testing.assert_allclose(small.magnitude, large.magnitude, rtol=1e-9, atol=1e-12, err_msg=wrt)
    # past that degree the truncation error O(ε²) shows, and only there
    if not s0_zero:
        small = gradient_dependence(m, x, y, wrt="W_ssx", step=2, h0=h0, eps=1e-4)
        large = gradient_dependence(m, x, y, wrt="W_ssx", step=2, h0=h0, eps=0.5)
        assert not np.allclose(small.magnitude[:, :2], large.magnitude[:, :2], rtol=1e-3)
        np.testing.assert_allclose(small.magnitude[:, 2:], large.magnitude[:, 2:], rtol=1e-9)


# -- brute force: second differences of the loss ---------------------------------------------------
D, H, O, T, B = 2, 3, 2, 3, 2
BF_STEP = 1e-3


def _lecture(seed: int = 0, kind: str = "elman") -> bptt.RNN:
    m = bptt.Elman(D, H, O, seed=seed) if kind == "elman" else bptt.LSTM(D, H, O, seed=seed)
    rng = np.random.default_rng(seed + 1)
    for p in m.params.values():
        p[...] = 0.7 * rng.standard_normal(p.shape)
    return m


def _data(m: bptt.RNN, seed: int = 2):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, D))
    y = rng.integers(0, O, (T, B))
    h0 = {name: 0.5 * rng.standard_normal((B, size)) for name, (size,) in m.state_shapes.items()}
    w = rng.uniform(0.5, 1.5, (T, B))
    return x, y, h0, w


def _brute_force(m, x, y, h0, w, of, wrt, step):
    """``‖∂²Loss/∂(of)∂θ_j‖`` for every element j of ``wrt`` from four-point second differences."""
    if step is not None:
        only = np.zeros(T)
        only[step] = 1.0
        w = w * only[:, None]

    def arrays(mm, xx, hh):
        named = {"x": xx, **hh, **mm.params}
        phi = named[of][step] if of == "x" and step is not None else named[of]
        return phi, named[wrt]

    def loss(si, i, sj, j):
        mm, xx, hh = m.copy(), x.copy(), {k: v.copy() for k, v in h0.items()}
        phi, theta = arrays(mm, xx, hh)
        phi[i] += si * BF_STEP  # φ and θ are distinct arrays unless of == wrt
        theta[j] += sj * BF_STEP
        return mm.loss(xx, y, hh, loss_weights=w)

    phi0, theta0 = arrays(m, x, h0)
    out = np.zeros(theta0.shape)
    for j in np.ndindex(theta0.shape):
        col = [
            (loss(1, i, 1, j) - loss(1, i, -1, j) - loss(-1, i, 1, j) + loss(-1, i, -1, j)) / (4 * BF_STEP**2)
            for i in np.ndindex(phi0.shape)
        ]
        out[j] = np.linalg.norm(col)
    return out


@pytest.mark.parametrize(
    "kind, of, wrt, step",
    [
        ("elman", "x", "W", 1),  # ∂Loss_2/∂x_2 and the recurrence
        ("elman", "x", "W", 0),  # ... at the first step with s_0 ≠ 0
        ("elman", "x", "b_y", None),  # ∂J/∂x (T, B, D) and the output bias
        ("elman", "U", "W", 2),  # a parameter's gradient
        ("elman", "h0", "V", None),  # the initial state's gradient
        ("elman", "b_h", "h0", 1),  # an initial state as wrt
        ("lstm", "x", "W", 2),
        ("lstm", "c0", "b", 0),
    ],
)
def test_magnitudes_match_second_differences_of_the_loss(kind, of, wrt, step):
    m = _lecture(kind=kind)
    x, y, h0, w = _data(m)
    d = gradient_dependence(m, x, y, of=of, wrt=wrt, step=step, h0=h0, loss_weights=w)
    numeric = _brute_force(m, x, y, h0, w, of, wrt, step)
    assert d.magnitude.shape == numeric.shape == d.mask.shape
    err = np.abs(d.magnitude - numeric).max()
    assert err < 1e-5 * max(1.0, numeric.max()), f"{of} vs {wrt}: max error {err:.2e}\n{d.magnitude}\n{numeric}"
    # every element found to matter matters to brute force, and (generic weights) every element matters
    assert np.all(numeric[d.mask] > 1e-4) and d.mask.all()


def test_no_dependence_reads_as_exact_zeros():
    """With s_0 = 0, a_1 = V x_1 + b_h: ∂Loss_1/∂x_1 does not involve W; it does at step 2."""
    m = _lecture()
    x, y, _, w = _data(m)
    d = gradient_dependence(m, x, y, wrt="W", step=0, loss_weights=w)
    assert not d.mask.any() and np.all(d.magnitude == 0.0)
    assert d.statements == {"depends on W": False, "depends on all elements of W": False}
    numeric = _brute_force(m, x, y, m.initial_state(B), w, "x", "W", 0)
    assert numeric.max() < 1e-6
    assert gradient_dependence(m, x, y, wrt="W", step=1, loss_weights=w).mask.all()
    assert d.blocks == {}  # no fused weight in the lecture notation


# -- what G is ----------------------------------------------------------------------------------------
def test_gradient_is_the_library_gradient_of_the_chosen_loss():
    m = _lecture()
    x, y, h0, w = _data(m)
    for step in (None, 0, 2):
        weights = w.copy()
        if step is not None:
            weights[np.arange(T) != step] = 0.0
        grads = m.loss_and_grad(x, y, h0, loss_weights=weights).grads
        for of in ("x", "V", "h0"):
            d = gradient_dependence(m, x, y, of=of, wrt="b_y", step=step, h0=h0, loss_weights=w)
            expected = grads[of][step] if of == "x" and step is not None else grads[of]
            assert d.gradient.shape == expected.shape
            np.testing.assert_allclose(d.gradient, expected, rtol=1e-13, atol=1e-16)
            assert d.scale == max(1.0, float(np.linalg.norm(expected)))


def test_token_inputs_work_for_parameters():
    m = _lecture()
    rng = np.random.default_rng(3)
    x = rng.integers(0, D, (T, B))
    y = rng.integers(0, O, (T, B))
    d = gradient_dependence(m, x, y, of="V", wrt="W", step=2)
    assert d.mask.all() and d.gradient.shape == (H, D)


def test_the_model_is_never_changed():
    m = _lecture().astype("float32")
    x, y, h0, w = _data(m)
    x32, h32 = x.astype(np.float32), {k: v.astype(np.float32) for k, v in h0.items()}
    params = {k: v for k, v in m.params.items()}
    before = {k: v.copy() for k, v in m.params.items()}
    h_before = {k: v.copy() for k, v in h32.items()}
    d = gradient_dependence(m, x32, y, of="h0", wrt="W", step=1, h0=h32, loss_weights=w)
    d2 = gradient_dependence(m, x32, y, of="x", wrt="h0", step=1, h0=h32, loss_weights=w)
    assert d.magnitude.dtype == d2.magnitude.dtype == np.float64 and d.mask.all() and d2.mask.all()
    assert all(m.params[k] is params[k] and np.array_equal(m.params[k], before[k]) for k in before)
    assert all(m.params[k].dtype == np.float32 for k in before)
    assert all(np.array_equal(h32[k], h_before[k]) for k in h32)
    with pytest.raises(ValueError):
        d.mask[0, 0] = False  # results are read-only


def test_errors_name_the_function_and_the_argument():
    m = _lecture()
    x, y, _, w = _data(m)
    with pytest.raises(TypeError, match="gradient_dependence: model"):
        gradient_dependence(None, x, y, wrt="W")
    with pytest.raises(ValueError, match=r"gradient_dependence: of must be 'x', a parameter \['V'"):
        gradient_dependence(m, x, y, of="W_ox", wrt="W")
    with pytest.raises(ValueError, match=r"gradient_dependence: wrt must be a parameter \['V'"):
        gradient_dependence(m, x, y, wrt="x")
    with pytest.raises(ValueError, match="gradient_dependence: wrt"):
        gradient_dependence(m, x, y, wrt="W_ssx")
    tokens = np.zeros((T, B), dtype=int)
    with pytest.raises(ValueError, match="gradient_dependence: of='x' needs float inputs"):
        gradient_dependence(m, tokens, y, of="x", wrt="W")
    for bad in (T, -1):
        with pytest.raises(ValueError, match=rf"gradient_dependence: step must be in \[0, {T}\)"):
            gradient_dependence(m, x, y, wrt="W", step=bad)
    for bad in (True, 1.0):
        with pytest.raises(TypeError, match="gradient_dependence: step"):
            gradient_dependence(m, x, y, wrt="W", step=bad)
    for name, bad in (("eps", 0.0), ("eps", -1e-4), ("rtol", -1e-8)):
        with pytest.raises(ValueError, match=f"gradient_dependence: {name}"):
            gradient_dependence(m, x, y, wrt="W", **{name: bad})
    with pytest.raises(TypeError, match="gradient_dependence: eps"):
        gradient_dependence(m, x, y, wrt="W", eps=float("inf"))
    with pytest.raises(TypeError):
        gradient_dependence(m, x, y)  # wrt is required
    with pytest.raises(ValueError, match="gradient_dependence: x must have shape"):
        gradient_dependence(m, x[..., :1], y, wrt="W")
    with pytest.raises(ValueError, match="gradient_dependence: loss_weights"):
        gradient_dependence(m, x, y, wrt="W", loss_weights=w[:1])
