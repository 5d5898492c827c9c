"""RNN.trace: every term of BPTT's sums over time, checked against brute force."""

from __future__ import annotations

import numpy as np
import pytest

import bptt

D, H, O, T, B = 3, 4, 5, 5, 2


def _models():
    yield "elman", bptt.Elman(D, H, O, seed=0)
    yield "rnn-b", bptt.Elman(D, H, O, notation="concat", output_reads_input=True, seed=1)
    yield "lstm", bptt.LSTM(D, H, O, seed=2)
    yield "gru", bptt.GRU(D, H, O, seed=3)
    yield "stack", bptt.RNN(D, [bptt.LayerSpec("gru", 4), bptt.LayerSpec("elman", 3, "sigmoid")], O, seed=4)
    yield "embedded", bptt.LSTM(D, H, O, embedding_size=2, num_layers=2, seed=5)


MODELS = dict(_models())


def _randomise(m, seed):
    rng = np.random.default_rng(seed)
    for p in m.params.values():
        p[...] = rng.standard_normal(p.shape) * 0.5


def _residual(m, fwd, y):
    d = fwd.outputs.copy()
    np.put_along_axis(d, y[..., None], np.take_along_axis(d, y[..., None], -1) - 1.0, -1)
    return d / y.shape[1]


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("tokens", [False, True], ids=["dense", "tokens"])
def test_terms_sum_to_the_gradients(name, tokens):
    m = MODELS[name].copy()
    _randomise(m, 7)
    rng = np.random.default_rng(8)
    x = rng.integers(0, D, (T, B)) if tokens else rng.standard_normal((T, B, D))
    y = rng.integers(0, O, (T, B))
    fwd = m.forward(x)
    tr = m.trace(fwd, _residual(m, fwd, y))
    ref = m.loss_and_grad(x, y).grads
    assert list(tr.terms) == list(m.params)
    for k, terms in tr.terms.items():
        assert terms.shape == (T, *m.params[k].shape)
        np.testing.assert_allclose(terms.sum(axis=0), ref[k], rtol=1e-12, atol=1e-14, err_msg=k)
        np.testing.assert_allclose(tr.grads[k], ref[k], rtol=1e-12, atol=1e-14, err_msg=k)


def _loss_with_param_changed_at_step(m, x, y, name, k, delta):
    """J when parameter `name` is replaced by name + delta at step k only (the weight 'acting' at k)."""
    total, state = 0.0, None
    for lo, hi in ((0, k), (k, k + 1), (k + 1, T)):
        if lo == hi:
            continue
        m2 = m.copy()
        if lo == k:
            m2.params[name] += delta
        fwd = m2.forward(x[lo:hi], state)
        total += float(m2.output.loss(fwd.logits, y[lo:hi]).sum()) / B
        state = fwd.state
    return total


@pytest.mark.parametrize("name", ["elman", "rnn-b", "lstm", "gru", "stack"])
def test_step_k_term_is_the_gradient_of_the_weight_acting_at_step_k(name):
    """Brute force: change a parameter at one step only and difference the loss."""
    m = MODELS[name].copy()
    _randomise(m, 9)
    rng = np.random.default_rng(10)
    x, y = rng.standard_normal((T, B, D)), rng.integers(0, O, (T, B))
    fwd = m.forward(x)
    tr = m.trace(fwd, _residual(m, fwd, y))
    eps = 1e-6
    for pname, p in m.params.items():
        direction = rng.standard_normal(p.shape)
        for k in range(T):
            plus = _loss_with_param_changed_at_step(m, x, y, pname, k, eps * direction)
            minus = _loss_with_param_changed_at_step(m, x, y, pname, k, -eps * direction)
            numeric = (plus - minus) / (2 * eps)
            analytic = float((tr.terms[pname][k] * direction).sum())
            assert abs(analytic - numeric) <= 1e-7 * max(1.0, abs(numeric)), (pname, k, analytic, numeric)


@pytest.mark.parametrize("name", ["elman", "lstm", "gru", "stack"])
def test_total_hidden_gradient_is_direct_plus_everything_later(name):
    m = MODELS[name].copy()
    _randomise(m, 11)
    rng = np.random.default_rng(12)
    x, y = rng.standard_normal((T, B, D)), rng.integers(0, O, (T, B))
    fwd = m.forward(x)
    tr = m.trace(fwd, _residual(m, fwd, y))
    top = len(m.layers) - 1
    U = m.params["U"]
    np.testing.assert_allclose(tr.dh_direct[top], _residual(m, fwd, y) @ U, rtol=1e-12)
    np.testing.assert_allclose(tr.dh_total[top][-1], tr.dh_direct[top][-1], rtol=1e-12)
    # Everything after step t reaches h_t as the gradient of the rest of the sequence w.r.t. its initial state.
    for t in range(T - 1):
        rest = m.loss_and_grad(x[t + 1 :], y[t + 1 :], m.state_at(fwd, t))
        later = rest.grads[m.layers[top].state_names[0]]
        np.testing.assert_allclose(tr.dh_total[top][t] - tr.dh_direct[top][t], later, rtol=1e-10, atol=1e-13)


def test_quiz_q4_double_sum_from_the_terms():
    """∂L/∂b_h's terms: the step-k term sums Σ_{t≥k} of the quiz's products of Jacobians."""
    m = bptt.Elman(D, H, O, seed=13)
    rng = np.random.default_rng(14)
    x, y = rng.standard_normal((T, 1, D)), rng.integers(0, O, (T, 1))
    fwd = m.forward(x)
    tr = m.trace(fwd, _residual(m, fwd, y))
    h = fwd.hidden[0][:, 0]
    dfa = 1.0 - h**2  # tanh'
    W, U = m.params["W"], m.params["U"]
    dz = _residual(m, fwd, y)[:, 0]
    for k in range(T):
        term = np.zeros(H)
        for t in range(k, T):
            P = np.eye(H)
            for i in range(k + 1, t + 1):
                P = np.diag(dfa[i]) @ W @ P  # ∂h_i/∂h_{i-1} ... ∂h_{k+1}/∂h_k
            term += (dz[t] @ U) @ P @ np.diag(dfa[k])
        np.testing.assert_allclose(tr.terms["b_h"][k], term, rtol=1e-12, atol=1e-15)


def test_trace_checks_its_arguments():
    m = bptt.Elman(D, H, O, seed=0)
    fwd = m.forward(np.zeros((T, B, D)))
    with pytest.raises(ValueError, match=r"Elman.trace: d_logits must have shape \(5, 2, 5\), got \(5, 2\)"):
        m.trace(fwd, np.zeros((T, B)))
    with pytest.raises(TypeError, match=r"Elman.trace: fwd must be the Forward"):
        m.trace(None, np.zeros((T, B, O)))


def test_trace_can_limit_the_terms_to_some_parameters():
    m = bptt.GRU(D, H, O, embedding_size=2, seed=15)
    rng = np.random.default_rng(16)
    x, y = rng.integers(0, D, (T, B)), rng.integers(0, O, (T, B))
    fwd = m.forward(x)
    d = _residual(m, fwd, y)
    full = m.trace(fwd, d)
    for names in (["W"], ["E", "b_y"], "V"):
        part = m.trace(fwd, d, params=names)
        wanted = [names] if isinstance(names, str) else names
        assert sorted(part.terms) == sorted(wanted)
        for k in wanted:
            np.testing.assert_array_equal(part.terms[k], full.terms[k])
    with pytest.raises(ValueError, match=r"params \['Q'\] are not parameters of this network"):
        m.trace(fwd, d, params=["Q"])
