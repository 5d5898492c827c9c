"""What a training step holds: peak allocations counted in window-sized arrays, and the
memory-saving paths of the backward loops giving the same numbers as the complete ones.

One "window array" is ``T·B·H`` values, the size of a layer's hidden states over the window.
The bounds below are what the layers need by design (forward values kept for the backward
pass, one gradient buffer, ``∂J/∂W``), with about 5% to spare: an extra window-sized copy in
any layer's backward pass takes a step over its bound.
"""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest

import bptt
import bptt.layers.elman as elman_module

T, B, H, V = 32, 16, 256, 8  # V ≪ H: the output layer's (T, B, V) arrays are small beside the states
MODELS = {"elman": bptt.Elman, "gru": bptt.GRU, "lstm": bptt.LSTM}

# Peak of one loss_and_grad, in window arrays, for (cell, layers). Measured: Elman 2.71 / 5.26,
# GRU 10.75 / 18.86, LSTM 14.36 / 25.56 (before the lean backward: 4.77 / 8.87, 14.8 / 29.91,
# 18.53 / 34.73).
BOUNDS = {
    ("elman", 1): 2.85,
    ("elman", 2): 5.5,
    ("gru", 1): 11.3,
    ("gru", 2): 19.8,
    ("lstm", 1): 15.1,
    ("lstm", 2): 26.8,
}


def _window(seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))


@pytest.mark.parametrize(("cell", "layers"), list(BOUNDS))
def test_training_step_peak_memory(cell: str, layers: int) -> None:
    m = MODELS[cell](V, H, V, num_layers=layers, dtype="float32", seed=0)
    x, y = _window()
    m.loss_and_grad(x, y)  # first call: anything cached on first use is not counted below
    gc.collect()
    tracemalloc.start()
    try:
        m.loss_and_grad(x, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    window = T * B * H * np.dtype(np.float32).itemsize
    assert peak / window <= BOUNDS[cell, layers], f"{cell} × {layers}: peak {peak / window:.2f} window arrays"


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu", "identity"])
def test_elman_step_by_step_derivative_equals_whole_window(activation: str, monkeypatch) -> None:
    """Large windows compute f_h' one step at a time (no window-sized array): same bits."""
    m = bptt.RNN(5, [bptt.LayerSpec("elman", 6, activation)] * 2, 4, seed=1)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((7, 3, 5))
    y = rng.integers(0, 4, (7, 3))
    h0 = {name: rng.standard_normal((3, *shape)) for name, shape in m.state_shapes.items()}
    whole = m.loss_and_grad(x, y, h0).grads
    monkeypatch.setattr(elman_module, "_WHOLE_WINDOW_DF", 0)
    step_by_step = m.loss_and_grad(x, y, h0).grads
    assert list(step_by_step) == list(whole)
    for name, g in whole.items():
        np.testing.assert_array_equal(step_by_step[name], g, err_msg=name)


def _lean_cases():
    yield "elman-tokens", bptt.Elman(V, 6, V, num_layers=2, seed=3), True
    yield "gru-tokens", bptt.GRU(V, 6, V, num_layers=2, seed=4), True
    yield "lstm-tokens", bptt.LSTM(V, 6, V, num_layers=2, seed=5), True
    yield "gru-dense-no-bias", bptt.GRU(V, 6, V, num_layers=2, bias=False, seed=6), False
    yield "lstm-dense", bptt.LSTM(V, 6, V, seed=7), False
    yield "rnn-b-dense", bptt.Elman(V, 6, V, notation="concat", output_reads_input=True, seed=8), False
    yield "gru-embedded", bptt.GRU(V, 6, V, embedding_size=3, num_layers=2, seed=9), True
    stack = [bptt.LayerSpec("gru", 5), bptt.LayerSpec("lstm", 4), bptt.LayerSpec("elman", 6, "relu")]
    yield "mixed-dense", bptt.RNN(V, stack, V, seed=10), False


LEAN_CASES = {name: (m, tokens) for name, m, tokens in _lean_cases()}


@pytest.mark.parametrize("name", list(LEAN_CASES))
def test_lean_backward_equals_traced_backward(name: str) -> None:
    """Training's backward (dH reused, adjoints not kept) and a trace's agree bit for bit,
    and neither changes the arrays it is given."""
    m, tokens = LEAN_CASES[name]
    rng = np.random.default_rng(11)
    x = rng.integers(0, V, (9, 4)) if tokens else rng.standard_normal((9, 4, V))
    fwd = m.forward(x)
    d_logits = rng.standard_normal(fwd.logits.shape)
    d_state = {k: rng.standard_normal(v.shape) for k, v in fwd.state.items()}
    given = (d_logits.copy(), {k: v.copy() for k, v in d_state.items()})
    lean = m.backward(fwd, d_logits, d_state)
    traced = m.trace(fwd, d_logits, d_state).grads
    assert list(lean) == list(traced)
    for k, g in lean.items():
        np.testing.assert_array_equal(traced[k], g, err_msg=k)
    np.testing.assert_array_equal(d_logits, given[0])
    for k, v in d_state.items():
        np.testing.assert_array_equal(v, given[1][k], err_msg=k)
