"""``bptt.decompose.gradient_by_gap``: ∂J/∂θ split by the gap t − k between loss step and action step.

Oracles:

1. ``loss_and_grad``'s gradient: each of the three regroupings sums to it (1e-12).
2. ``RNN.trace``'s per-step terms: ``by_step`` equals them.
3. ``loss_and_grad`` with loss weights kept at one step only: ``by_loss_step[t]``.
4. The lecture's linear Elman network, built by hand:
   ``C[t, k] = (W^{t−k})ᵀ Uᵀ δ_t h_{k−1}ᵀ`` for θ = W, ``δ_t = ŷ_t − y_t``.
"""

from __future__ import annotations

import numpy as np
import pytest

import bptt
from bptt.decompose import GapDecomposition, gradient_by_gap

D, H, O, T, B = 3, 4, 5, 6, 2
TOL = dict(rtol=1e-12, atol=1e-14)


def _models():
    yield "elman", bptt.Elman(D, H, O, seed=0)
    yield "rnn-b", bptt.Elman(D, H, O, bias=False, notation="concat", output_reads_input=True, seed=1)
    yield "lstm", bptt.LSTM(D, H, O, seed=2)
    yield "gru", bptt.GRU(D, H, O, seed=3)
    yield "stack", bptt.RNN(D, [bptt.LayerSpec("gru", 4), bptt.LayerSpec("elman", 3, "sigmoid")], O, seed=4)
    yield "embedded", bptt.LSTM(D, H, O, embedding_size=2, num_layers=2, seed=5)


MODELS = dict(_models())
OUTPUT_PARAMS = {"U", "b_y", "U_x", "W_o", "W_ox", "b_o"}


def _randomise(m, seed, scale=0.5):
    rng = np.random.default_rng(seed)
    for p in m.params.values():
        p[...] = rng.standard_normal(p.shape) * scale
    return m


def _data(seed, tokens=False):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, D, (T, B)) if tokens else rng.standard_normal((T, B, D))
    return x, rng.integers(0, O, (T, B))


def _close(a, b, what):
    err = np.abs(a - b).max()
    worst = np.unravel_index(np.abs(a - b).argmax(), a.shape) if a.ndim else ()
    np.testing.assert_allclose(a, b, **TOL, err_msg=f"{what}: worst index {worst}, max error {err:.3g}")


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("tokens", [False, True], ids=["dense", "tokens"])
def test_every_regrouping_sums_to_the_gradient(name, tokens):
    m = _randomise(MODELS[name].copy(), 7)
    x, y = _data(8, tokens)
    h0 = {k: np.random.default_rng(9).standard_normal((B, *s)) * 0.5 for k, s in m.state_shapes.items()}
    ref = m.loss_and_grad(x, y, h0)
    fwd = ref.forward
    trace = m.trace(fwd, _residual(fwd, y))
    for p in m.params:
        d = gradient_by_gap(m, x, y, p, h0)
        assert isinstance(d, GapDecomposition) and d.param == p
        assert d.by_gap.shape == d.by_step.shape == d.by_loss_step.shape == (T, *m.params[p].shape)
        assert d.norms_by_gap.shape == (T,) and d.by_gap.dtype == np.float64
        assert d.loss == pytest.approx(ref.loss, rel=1e-12)
        _close(d.total, ref.grads[p], f"{p} total")
        _close(d.by_gap.sum(0), ref.grads[p], f"{p} Σ_g by_gap")
        _close(d.by_step.sum(0), ref.grads[p], f"{p} Σ_k by_step")
        _close(d.by_loss_step.sum(0), ref.grads[p], f"{p} Σ_t by_loss_step")
        _close(d.by_step, trace.terms[p], f"{p} by_step vs trace terms")
        np.testing.assert_allclose(d.norms_by_gap, np.linalg.norm(d.by_gap.reshape(T, -1), axis=1), rtol=1e-15)
        if p in OUTPUT_PARAMS:  # the output layer acts on h_t only for ŷ_t: all at gap 0, exactly
            assert np.all(d.by_gap[1:] == 0), p
            _close(d.by_gap[0], ref.grads[p], f"{p} gap 0")
        else:  # a recurrent or input weight reaches back: some gradient at gap ≥ 1
            assert d.norms_by_gap[1:].max() > 1e-6 * d.norms_by_gap.max(), p


def _residual(fwd, y):
    d = fwd.outputs.copy()
    np.put_along_axis(d, y[..., None], np.take_along_axis(d, y[..., None], -1) - 1.0, -1)
    return d / y.shape[1]


@pytest.mark.parametrize("name", ["elman", "lstm", "stack"])
def test_by_loss_step_is_the_gradient_of_one_steps_loss(name):
    m = _randomise(MODELS[name].copy(), 11)
    x, y = _data(12)
    w = np.random.default_rng(13).uniform(0.2, 1.5, (T, B))
    for p in ("V", "W") if "V" in m.params else ("V_l0", "W_l1"):
        d = gradient_by_gap(m, x, y, p, loss_weights=w)
        _close(d.total, m.loss_and_grad(x, y, loss_weights=w).grads[p], f"{p} weighted total")
        for t in range(T):
            only_t = np.zeros((T, B))
            only_t[t] = w[t]
            _close(d.by_loss_step[t], m.loss_and_grad(x, y, loss_weights=only_t).grads[p], f"{p} by_loss_step[{t}]")


def test_linear_elman_matches_the_lecture_formula():
    """h_t = V x_t + W h_{t−1}, ŷ_t = U h_t, J = Σ_t ½‖ŷ_t − y_t‖²: C[t, k] = (W^{t−k})ᵀ Uᵀ δ_t h_{k−1}ᵀ."""
    m = bptt.Elman(D, H, O, activation="identity", output="identity", bias=False, seed=20)
    _randomise(m, 21, scale=0.6)
    rng = np.random.default_rng(22)
    x, y = rng.standard_normal((T, 1, D)), rng.standard_normal((T, 1, O))
    h0 = rng.standard_normal((1, H))
    V, W, U = m.params["V"], m.params["W"], m.params["U"]
    h = [h0[0]]  # h[k + 1] = h_k; h[0] = h_{−1}, the initial state
    for t in range(T):
        h.append(V @ x[t, 0] + W @ h[-1])
    delta = [U @ h[t + 1] - y[t, 0] for t in range(T)]
    expected = np.zeros((T, H, H))
    for t in range(T):
        for k in range(t + 1):
            dh_k = np.linalg.matrix_power(W, t - k).T @ U.T @ delta[t]  # ∂J_t/∂h_k
            expected[t - k] += np.outer(dh_k, h[k])  # ⊗ h_{k−1}
    d = gradient_by_gap(m, x, y, "W", h0)
    for g in range(T):
        np.testing.assert_allclose(d.by_gap[g], expected[g], rtol=1e-12, atol=1e-13, err_msg=f"gap {g}")
    # The output weight U: ∂J_t/∂U = δ_t h_tᵀ, all at gap 0; by_loss_step[t] is that term.
    dU = gradient_by_gap(m, x, y, "U", h0)
    for t in range(T):
        np.testing.assert_allclose(dU.by_loss_step[t], np.outer(delta[t], h[t + 1]), rtol=1e-12, atol=1e-14)
    assert np.all(dU.by_gap[1:] == 0)


def test_float32_model_is_analysed_in_float64():
    m32 = _randomise(bptt.GRU(D, H, O, seed=30, dtype="float32"), 31)
    x, y = _data(32)
    d = gradient_by_gap(m32, x.astype(np.float32), y, "W")
    ref = m32.astype("float64").loss_and_grad(x.astype(np.float32).astype(np.float64), y).grads["W"]
    assert d.by_gap.dtype == np.float64
    _close(d.by_gap.sum(0), ref, "float32 model, W")
    assert m32.params["W"].dtype == np.float32  # the model itself is untouched


def test_steps_with_zero_loss_weight_contribute_nothing():
    """Many-to-one: only the last step is scored, so by_loss_step is zero before it."""
    m = _randomise(bptt.Elman(D, H, O, seed=40), 41)
    x, y = _data(42)
    w = np.zeros((T, B))
    w[-1] = 1.0
    d = gradient_by_gap(m, x, y, "W", loss_weights=w)
    assert np.all(d.by_loss_step[:-1] == 0)
    _close(d.by_gap[::-1], d.by_step, "last step only: gap T−1−k is step k")


def test_results_are_read_only():
    m = bptt.Elman(D, H, O, seed=50)
    x, y = _data(51)
    d = gradient_by_gap(m, x, y, "W")
    for arr in (d.by_gap, d.by_step, d.by_loss_step, d.total, d.norms_by_gap):
        with pytest.raises(ValueError, match="read-only"):
            arr[...] = 0.0


def test_bad_arguments_say_what_is_wrong():
    m = bptt.Elman(D, H, O, seed=60)
    x, y = _data(61)
    names = r"\['V', 'W', 'b_h', 'U', 'b_y'\]"
    with pytest.raises(ValueError, match=rf"gradient_by_gap: param must be one of {names}, got 'Q'"):
        gradient_by_gap(m, x, y, "Q")
    with pytest.raises(ValueError, match=r"param must be one of .*got 'h0'"):
        gradient_by_gap(m, x, y, "h0")  # an initial state is not a parameter
    with pytest.raises(TypeError, match=r"gradient_by_gap: param must be a parameter name \(str\), got 3"):
        gradient_by_gap(m, x, y, 3)
    with pytest.raises(TypeError, match=r"gradient_by_gap: model must be a bptt network"):
        gradient_by_gap("Elman", x, y, "W")
    with pytest.raises(ValueError, match=r"gradient_by_gap: x must have shape \(T, B, 3\)"):
        gradient_by_gap(m, x[..., :2], y, "W")
    with pytest.raises(ValueError, match=r"gradient_by_gap: y for output='softmax' must be integer class ids"):
        gradient_by_gap(m, x, y[:-1], "W")
    with pytest.raises(ValueError, match=r"gradient_by_gap: loss_weights must have shape \(6, 2\)"):
        gradient_by_gap(m, x, y, "W", loss_weights=np.ones((T, 1)))
    with pytest.raises(ValueError, match=r"gradient_by_gap: h0 must have shape \(2, 4\)"):
        gradient_by_gap(m, x, y, "W", np.zeros((1, H)))
