"""``bptt.sensitivity.input_sensitivity``: ‖∂Loss_t/∂x_s‖ for every pair of steps, ∂J/∂x_t and its outliers.

Oracles, none of which use the replicated backward pass under test:

1. Central finite differences of each step's loss ``Loss_t`` with respect to every element
   of every input ``x_s`` (the engine's forward pass only), at 1e-6 relative.
2. PyTorch autograd (``tests/torch_reference.py``: an explicit Elman loop, ``torch.nn.LSTM``)
   of ``Loss_t`` alone (loss weights one-hot on t), at 1e-9.
3. For token ids: the dense one-hot input, through ``∂J/∂x_t = Vᵀ ∂J/∂(V x_t) + U_xᵀ ∂J/∂(U_x x_t)``
   (``Eᵀ ∂J/∂e_t`` with an embedding), and the columns of ``∂J/∂V`` (``∂J/∂E``, ``∂J/∂U_x``)
   picked by tokens that occur once.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import bptt
from bptt.sensitivity import InputSensitivity, input_sensitivity, robust_z_scores
from torch_reference import reference

torch.set_num_threads(1)

D, H, O, T, B = 3, 4, 2, 5, 2
D_TOKENS = 6  # ≥ T: a permutation gives every step its own token
BATCH_INDEX = 1
FD_EPS = 1e-5
FD_TOL = 1e-6
TORCH_TOL = 1e-9


def _models(input_size: int):
    yield "elman", bptt.Elman(input_size, H, O, seed=0)
    yield "rnn-b", bptt.Elman(input_size, H, O, notation="concat", output_reads_input=True, seed=1)
    yield (
        "mit-skip-identity",
        bptt.Elman(input_size, H, O, notation="mit", output_reads_input=True, output="identity", seed=6),
    )
    yield "lstm", bptt.LSTM(input_size, H, O, seed=2)
    yield "gru-embedded", bptt.GRU(input_size, H, O, embedding_size=2, seed=3)
    yield "stack", bptt.RNN(input_size, [bptt.LayerSpec("lstm", 3), bptt.LayerSpec("elman", H, "sigmoid")], O, seed=4)
    yield "elman-embedded-skip", bptt.Elman(input_size, H, O, embedding_size=3, output_reads_input=True, seed=5)


def _build(name: str, input_size: int = D, seed: int = 7) -> bptt.RNN:
    m = dict(_models(input_size))[name]
    rng = np.random.default_rng(seed)
    for p in m.params.values():
        p[...] = 0.6 * rng.standard_normal(p.shape)  # out of the linear regime, generic
    return m


NAMES = [name for name, _ in _models(D)]


def _data(m: bptt.RNN, tokens: bool = False, seed: int = 11):
    rng = np.random.default_rng(seed)
    if tokens:
        x = np.stack([rng.permutation(m.input_size)[:T] for _ in range(B)], axis=1)  # (T, B), distinct per sequence
    else:
        x = rng.standard_normal((T, B, m.input_size))
    y = rng.integers(0, O, (T, B)) if m.output.class_targets else rng.standard_normal((T, B, O))
    h0 = {name: 0.5 * rng.standard_normal((B, size)) for name, (size,) in m.state_shapes.items()}
    w = rng.uniform(0.5, 2.0, (T, B))
    return x, y, h0, w


def _one(x, y, h0, w, b=BATCH_INDEX):
    """Sequence b alone, as a batch of one."""
    return x[:, b : b + 1], y[:, b : b + 1], {k: v[b : b + 1] for k, v in h0.items()}, w[:, b : b + 1]


def _step_losses(m: bptt.RNN, x1, y1, h1, w1) -> np.ndarray:
    """``Loss_t = w_t Loss(y_t, ŷ_t)`` of a batch of one, forward pass only."""
    return m.output.loss(m.forward(x1, h1).logits, y1)[:, 0] * w1[:, 0]


def _rel(a: np.ndarray, n: np.ndarray) -> float:
    return float(np.abs(a - n).max() / max(np.abs(a).max(), np.abs(n).max(), 1e-10))


def _report(what: str, a: np.ndarray, n: np.ndarray) -> str:
    idx = np.unravel_index(int(np.argmax(np.abs(a - n))), a.shape)
    return f"{what}: rel error {_rel(a, n):.2e}; worst [t, s, d] = {idx}: analytic {a[idx]} vs numeric {n[idx]}"


# -- dense inputs: the gradients themselves --------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_step_gradients_match_central_differences(name):
    m = _build(name)
    x, y, h0, w = _data(m)
    r = input_sensitivity(m, x, y, h0, loss_weights=w, batch_index=BATCH_INDEX)
    x1, y1, h1, w1 = _one(x, y, h0, w)
    numeric = np.zeros((T, T, D))  # [t, s, d] = ∂Loss_t/∂x_s[d]
    for s in range(T):
        for d in range(D):
            plus, minus = x1.copy(), x1.copy()
            plus[s, 0, d] += FD_EPS
            minus[s, 0, d] -= FD_EPS
            numeric[:, s, d] = (_step_losses(m, plus, y1, h1, w1) - _step_losses(m, minus, y1, h1, w1)) / (2 * FD_EPS)
    assert r.wrt == "x" and r.parts == {"x": slice(0, D)}
    assert r.step_gradients.shape == (T, T, D) and r.gradients.shape == (T, D)
    assert _rel(r.step_gradients, numeric) < FD_TOL, _report(name, r.step_gradients, numeric)
    np.testing.assert_allclose(r.losses, _step_losses(m, x1, y1, h1, w1), rtol=1e-13)
    # the norms are of these vectors, and J = Σ_t Loss_t
    lower = np.tril_indices(T)
    np.testing.assert_allclose(r.matrix[lower], np.linalg.norm(numeric, axis=2)[lower], rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(r.gradients, r.step_gradients.sum(axis=0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(r.per_step, np.linalg.norm(r.gradients, axis=1), rtol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_step_gradients_match_torch_autograd(name):
    m = _build(name)
    x, y, h0, w = _data(m, seed=12)
    r = input_sensitivity(m, x, y, h0, loss_weights=w, batch_index=BATCH_INDEX)
    x1, y1, h1, w1 = _one(x, y, h0, w)
    expected = np.zeros((T, T, D))
    for t in range(T):
        only_t = np.zeros_like(w1)
        only_t[t] = w1[t]
        expected[t] = reference(m.config(), m.params, x1, y1, h1, loss_weights=only_t).grads["x"][:, 0]
    assert _rel(r.step_gradients, expected) < TORCH_TOL, _report(name, r.step_gradients, expected)
    # per sequence: the library's batch gradient times B, whatever the other sequences hold
    batch = m.loss_and_grad(x, y, h0, loss_weights=w).grads["x"][:, BATCH_INDEX]
    np.testing.assert_allclose(r.gradients, B * batch, rtol=1e-11, atol=1e-14)


def test_no_loss_weights_means_every_step_counts():
    m = _build("elman")
    x, y, h0, _ = _data(m)
    r = input_sensitivity(m, x, y, h0, batch_index=0)
    g = m.loss_and_grad(x[:, :1], y[:, :1], {k: v[:1] for k, v in h0.items()}).grads["x"][:, 0]
    np.testing.assert_allclose(r.gradients, g, rtol=1e-12, atol=1e-15)
    assert r.batch_index == 0 and r.threshold == 3.5


def test_many_replicas_are_split_over_passes(monkeypatch):
    """The chunked path (one replica per pass) gives the same numbers as one pass."""
    m = _build("lstm")
    x, y, h0, w = _data(m)
    whole = input_sensitivity(m, x, y, h0, loss_weights=w)
    monkeypatch.setattr("bptt.sensitivity.MAX_ELEMENTS", 1)
    split = input_sensitivity(m, x, y, h0, loss_weights=w)
    np.testing.assert_allclose(split.step_gradients, whole.step_gradients, rtol=1e-13, atol=1e-16)


# -- token ids: the input terms they select ------------------------------------------------------
def _input_weights(m: bptt.RNN) -> tuple[np.ndarray, np.ndarray | None, str, str | None]:
    """(matrix applied to the one-hot x_t by the first layer or the embedding, the skip's, their names)."""
    p, n = m.params, m.notation
    Hs = m.specs[0].hidden_size
    suffix = "_l0" if len(m.specs) > 1 else ""
    if m.embedding_size:
        first, first_name = p["E"], "E"
    elif m.specs[0].kind != "elman":
        first_name = "V" + suffix
        first = p[first_name]
    else:
        first_name = {"lecture": "V", "mit": "W_sx", "concat": "W_ssx"}[n] + suffix
        first = p[first_name][:, Hs:] if n == "concat" else p[first_name]
    if not m.readout.reads_input:
        return first, None, first_name, None
    skip_name = {"lecture": "U_x", "mit": "W_ox", "concat": "W_ox"}[n]
    Htop = m.specs[-1].hidden_size
    skip = p[skip_name][:, Htop:] if n == "concat" else p[skip_name]
    return first, skip, first_name, skip_name


@pytest.mark.parametrize("name", NAMES)
def test_token_inputs_differentiate_the_selected_input_terms(name):
    m = _build(name, input_size=D_TOKENS)
    x, y, h0, w = _data(m, tokens=True)
    r = input_sensitivity(m, x, y, h0, loss_weights=w, batch_index=BATCH_INDEX)
    first, skip, first_name, skip_name = _input_weights(m)
    n_first = first.shape[0]
    expected_parts = {("e_t" if m.embedding_size else "V x_t"): slice(0, n_first)}
    if skip is not None:
        expected_parts["U_x x_t"] = slice(n_first, n_first + O)
    assert r.parts == expected_parts and r.wrt == ", ".join(expected_parts)
    assert r.step_gradients.shape == (T, T, n_first + (0 if skip is None else O))

    # the dense one-hot input: ∂J/∂x_t = Vᵀ ∂J/∂(V x_t) + U_xᵀ ∂J/∂(U_x x_t)
    onehot = np.eye(D_TOKENS)[x]
    dense = input_sensitivity(m, onehot, y, h0, loss_weights=w, batch_index=BATCH_INDEX)
    pulled = r.step_gradients[..., :n_first] @ first
    if skip is not None:
        pulled = pulled + r.step_gradients[..., n_first:] @ skip
    assert _rel(pulled, dense.step_gradients) < 1e-12, _report(name, pulled, dense.step_gradients)

    # each token occurs once in the sequence: ∂J/∂(V x_t) is column x_t of ∂J/∂V
    x1, y1, h1, w1 = _one(x, y, h0, w)
    grads = m.loss_and_grad(x1, y1, h1, loss_weights=w1).grads
    tok = x1[:, 0]
    Hs = m.specs[0].hidden_size
    dfirst = grads[first_name][:, Hs:] if first_name.startswith("W_ssx") else grads[first_name]
    np.testing.assert_allclose(r.gradients[:, :n_first], dfirst[:, tok].T, rtol=1e-12, atol=1e-15)
    if skip is not None:
        dskip = grads[skip_name][:, m.specs[-1].hidden_size :] if m.notation == "concat" else grads[skip_name]
        np.testing.assert_allclose(r.gradients[:, n_first:], dskip[:, tok].T, rtol=1e-12, atol=1e-15)


# -- causality --------------------------------------------------------------------------------------
@pytest.mark.parametrize("tokens", [False, True], ids=["dense", "tokens"])
def test_later_inputs_do_not_reach_earlier_losses(tokens):
    m = _build("rnn-b", input_size=D_TOKENS if tokens else D)
    x, y, h0, w = _data(m, tokens=tokens)
    r = input_sensitivity(m, x, y, h0, loss_weights=w, batch_index=BATCH_INDEX)
    upper = np.triu_indices(T, k=1)
    assert np.isnan(r.matrix[upper]).all() and not np.isnan(r.matrix[np.tril_indices(T)]).any()
    assert np.all(r.step_gradients[upper] == 0.0)  # exactly, not to rounding
    assert np.all(r.matrix[np.tril_indices(T)] > 0)
    # and the forward pass agrees: changing x_s for s > t leaves Loss_t bit for bit unchanged
    x1, y1, h1, w1 = _one(x, y, h0, w)
    base = _step_losses(m, x1, y1, h1, w1)
    rng = np.random.default_rng(3)
    for s in range(1, T):
        moved = x1.copy()
        moved[s] = (moved[s] + 1) % D_TOKENS if tokens else moved[s] + rng.standard_normal(moved[s].shape)
        after = _step_losses(m, moved, y1, h1, w1)
        assert np.array_equal(after[:s], base[:s]), s
        assert after[s] != base[s]


# -- outliers ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_planted_outlier_is_flagged(seed):
    """Linear RNN-A with squared error: ∂Loss_t/∂x_t = W_sxᵀ W_oᵀ (p_t − y_t) + … grows with x_t."""
    Tn, planted = 16, 9
    m = bptt.Elman(2, 2, 2, activation="identity", output="identity", bias=False, notation="mit", seed=seed)
    m.params["W_ss"] *= 0.2  # a short memory: the planted input barely moves the neighbouring gradients
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((Tn, 1, 2))
    y = rng.standard_normal((Tn, 1, 2))
    clean = input_sensitivity(m, x, y)
    assert planted not in clean.outliers.tolist()
    x[planted] *= 50.0
    r = input_sensitivity(m, x, y)
    assert r.outliers.tolist() == [planted], r.z_scores
    assert r.per_step[planted] > 10 * np.median(r.per_step)
    np.testing.assert_array_equal(r.outliers, np.flatnonzero(np.abs(r.z_scores) > 3.5))
    assert input_sensitivity(m, x, y, threshold=1e6).outliers.size == 0


def test_robust_z_scores():
    v = np.array([1.0, 2.0, 3.0, 4.0, 100.0])
    # median 3, |v - 3| = [2, 1, 0, 1, 97], MAD 1
    np.testing.assert_allclose(robust_z_scores(v), 0.6745 * (v - 3.0), rtol=1e-15)
    # MAD = 0 (most values equal): the mean absolute deviation scales instead (mean |v - 1| = 0.8)
    v = np.array([1.0, 1.0, 1.0, 1.0, 5.0])
    np.testing.assert_allclose(robust_z_scores(v), (v - 1.0) / (1.2533 * 0.8), rtol=1e-4)
    assert robust_z_scores([2.0, 2.0, 2.0]).tolist() == [0.0, 0.0, 0.0]
    assert robust_z_scores([7.0]).tolist() == [0.0]
    with pytest.raises(ValueError, match="1-d"):
        robust_z_scores(np.ones((2, 2)))
    with pytest.raises(ValueError, match="finite"):
        robust_z_scores([1.0, np.nan])


# -- the model and the arguments ----------------------------------------------------------------------
def test_float32_model_is_analysed_in_float64_and_left_unchanged():
    m = _build("rnn-b").astype("float32")
    before = {k: v.copy() for k, v in m.params.items()}
    x, y, h0, w = _data(m)
    x, h0, w = x.astype(np.float32), {k: v.astype(np.float32) for k, v in h0.items()}, w.astype(np.float32)
    r = input_sensitivity(m, x, y, h0, loss_weights=w, batch_index=1)
    assert isinstance(r, InputSensitivity)
    assert r.matrix.dtype == r.gradients.dtype == np.float64
    assert all(np.array_equal(m.params[k], before[k]) and m.params[k].dtype == np.float32 for k in before)
    # the same numbers as the float64 model built from the float32 weights
    m64 = m.astype("float64")
    r64 = input_sensitivity(
        m64, x.astype(np.float64), y, {k: v.astype(np.float64) for k, v in h0.items()}, loss_weights=w, batch_index=1
    )
    np.testing.assert_array_equal(r.step_gradients, r64.step_gradients)
    with pytest.raises(ValueError):
        r.gradients[0, 0] = 1.0  # results are read-only


def test_errors_name_the_function_and_the_argument():
    m = _build("elman")
    x, y, _, w = _data(m)
    with pytest.raises(TypeError, match="input_sensitivity: model"):
        input_sensitivity("model", x, y)
    with pytest.raises(ValueError, match=r"input_sensitivity: batch_index must be in \[0, 2\)"):
        input_sensitivity(m, x, y, batch_index=2)
    with pytest.raises(TypeError, match="input_sensitivity: batch_index"):
        input_sensitivity(m, x, y, batch_index=True)
    for bad in (0, -1.0):
        with pytest.raises(ValueError, match="input_sensitivity: threshold"):
            input_sensitivity(m, x, y, threshold=bad)
    for bad in (float("nan"), "3.5", None):
        with pytest.raises(TypeError, match="input_sensitivity: threshold"):
            input_sensitivity(m, x, y, threshold=bad)
    with pytest.raises(ValueError, match=r"input_sensitivity: x must have shape"):
        input_sensitivity(m, x[..., :2], y)
    with pytest.raises(ValueError, match=r"input_sensitivity: y for output='softmax'"):
        input_sensitivity(m, x, y[:-1])
    with pytest.raises(ValueError, match=r"input_sensitivity: loss_weights must have shape"):
        input_sensitivity(m, x, y, loss_weights=w[:, :1])
    with pytest.raises(ValueError, match=r"input_sensitivity: h0"):
        input_sensitivity(m, x, y, h0={"h9": np.zeros((B, H))})
