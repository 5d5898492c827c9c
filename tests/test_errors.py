"""Bad input gets a ValueError/TypeError naming the argument, the expectation and what came in."""

from __future__ import annotations

import numpy as np
import pytest

import bptt

D, H, O, T, B = 3, 4, 5, 6, 2


@pytest.fixture
def m():
    return bptt.Elman(D, H, O, seed=0)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((T, B, D)), rng.integers(0, O, size=(T, B))


@pytest.mark.parametrize(
    "kwargs, exc, pattern",
    [
        (dict(input_size=0), ValueError, r"Elman: input_size must be a positive integer, got 0"),
        (dict(hidden_size=-2), ValueError, r"hidden_size must be a positive integer, got -2"),
        (dict(output_size=2.5), TypeError, r"output_size must be a positive integer, got 2.5"),
        (dict(hidden_size=True), TypeError, r"hidden_size must be a positive integer, got True"),
        (dict(num_layers=0), ValueError, r"num_layers must be a positive integer"),
        (dict(activation="softplus"), ValueError, r"activation must be one of .*'tanh'.*got 'softplus'"),
        (dict(output="softmaxx"), ValueError, r"output must be one of .*got 'softmaxx'"),
        (dict(notation="greek"), ValueError, r"notation must be one of \['concat', 'lecture', 'mit'\], got 'greek'"),
        (dict(dtype="float16"), ValueError, r"dtype must be 'float32' or 'float64', got 'float16'"),
        (dict(dtype="banana"), ValueError, r"dtype must be 'float32' or 'float64', got 'banana'"),
        (dict(bias="yes"), TypeError, r"bias must be True or False, got 'yes'"),
    ],
)
def test_constructor_arguments(kwargs, exc, pattern):
    args = dict(input_size=D, hidden_size=H, output_size=O) | kwargs
    with pytest.raises(exc, match=pattern):
        bptt.Elman(**args)


def test_stack_specs():
    with pytest.raises(ValueError, match=r"layers must be a non-empty sequence"):
        bptt.RNN(D, [], O)
    with pytest.raises(
        ValueError, match=r"layers\[1\].kind must be one of \['elman', 'lstm', 'gru'\], got 'transformer'"
    ):
        bptt.RNN(D, [bptt.LayerSpec("lstm", 3), bptt.LayerSpec("transformer", 3)], O)
    with pytest.raises(ValueError, match=r"layers\[0\].hidden_size must be a positive integer, got 0"):
        bptt.RNN(D, [bptt.LayerSpec("gru", 0)], O)
    with pytest.raises(TypeError, match=r"layers\[0\] must be a LayerSpec"):
        bptt.RNN(D, [("gru", 3)], O)


@pytest.mark.parametrize(
    "x, exc, pattern",
    [
        (
            np.zeros((T, B)),
            ValueError,
            r"loss_and_grad: x must have shape \(T, B, 3\) or be token ids \(T, B\), got shape \(6, 2\)",
        ),
        (np.zeros((T, B, D + 1)), ValueError, r"x must have shape \(T, B, 3\).*got shape \(6, 2, 4\)"),
        (np.zeros((0, B, D)), ValueError, r"x needs at least one step and one sequence, got shape \(0, 2, 3\)"),
        (np.zeros((T, B, D), np.float32), TypeError, r"x must have dtype float64 like the model, got float32"),
        (np.full((T, B), D), ValueError, r"x must hold ids in \[0, 3\), got 3 at index \(0, 0\)"),
        (np.full((T, B), -1), ValueError, r"x must hold ids in \[0, 3\), got -1"),
        (np.zeros((T, B, D), int), ValueError, r"integer x must be token ids of shape \(T, B\), got shape \(6, 2, 3\)"),
        (np.zeros((T, B), bool), TypeError, r"got dtype bool"),
        (np.array([["a"]]), TypeError, r"x must be an array of numbers, got dtype <U1"),
        ([[1.0, 2.0], [3.0]], TypeError, r"x must be an array of numbers"),
    ],
)
def test_bad_x(m, data, x, exc, pattern):
    with pytest.raises(exc, match=pattern):
        m.loss_and_grad(x, data[1])


def test_nan_and_inf_are_refused_with_their_index(m, data):
    x, y = data
    x = x.copy()
    x[2, 1, 0] = np.nan
    with pytest.raises(ValueError, match=r"x must be finite, found nan at index \(2, 1, 0\)"):
        m.loss_and_grad(x, y)
    reg = bptt.Elman(D, H, O, output="identity", seed=0)
    y_bad = np.zeros((T, B, O))
    y_bad[0, 0, 4] = np.inf
    with pytest.raises(ValueError, match=r"y must be finite, found inf at index \(0, 0, 4\)"):
        reg.loss_and_grad(data[0], y_bad)
    with pytest.raises(ValueError, match=r"h0 must be finite"):
        m.loss_and_grad(data[0], y, np.full((B, H), np.nan))
    with pytest.raises(ValueError, match=r"loss_weights must be finite"):
        m.loss_and_grad(data[0], y, loss_weights=np.full((T, B), np.inf))


@pytest.mark.parametrize(
    "output, y, pattern",
    [
        (
            "softmax",
            np.zeros((T, B, O)),
            r"y for output='softmax' must be integer class ids of shape \(6, 2\), got float64 of shape \(6, 2, 5\)",
        ),
        (
            "softmax",
            np.zeros((T, B + 1), int),
            r"must be integer class ids of shape \(6, 2\), got int64 of shape \(6, 3\)",
        ),
        ("softmax", np.full((T, B), O), r"y must hold ids in \[0, 5\), got 5"),
        ("identity", np.zeros((T, B), int), r"y for output='identity' must have shape \(6, 2, 5\), got \(6, 2\)"),
        (
            "sigmoid",
            np.full((T, B, O), 2.0),
            r"y for output='sigmoid' must lie in \[0, 1\], got values in \[2.0, 2.0\]",
        ),
        ("identity", np.zeros((T, B, O), np.float32), r"y must have dtype float64 like the model, got float32"),
    ],
)
def test_bad_y(data, output, y, pattern):
    model = bptt.Elman(D, H, O, output=output, seed=0)
    with pytest.raises((ValueError, TypeError), match=pattern):
        model.loss_and_grad(data[0], y)


def test_bad_h0(m, data):
    x, y = data
    with pytest.raises(ValueError, match=r"h0 must have shape \(2, 4\), got \(4,\)"):
        m.loss_and_grad(x, y, np.zeros(H))
    with pytest.raises(TypeError, match=r"h0 must have dtype float64 like the model, got float32"):
        m.loss_and_grad(x, y, np.zeros((B, H), np.float32))
    with pytest.raises(ValueError, match=r"h0 has unknown state names \['c0'\]; expected \['h0'\]"):
        m.loss_and_grad(x, y, {"c0": np.zeros((B, H))})
    lstm = bptt.LSTM(D, H, O, seed=0)
    with pytest.raises(ValueError, match=r"state variables \['h0', 'c0'\]; pass h0 as a dict"):
        lstm.loss_and_grad(x, y, np.zeros((B, H)))
    with pytest.raises(ValueError, match=r"h0 as a sequence must have 2 arrays"):
        lstm.loss_and_grad(x, y, (np.zeros((B, H)),))


def test_bad_loss_weights(m, data):
    with pytest.raises(ValueError, match=r"loss_weights must have shape \(6, 2\), got \(6,\)"):
        m.loss_and_grad(*data, loss_weights=np.ones(T))


def test_replaced_parameter_with_wrong_shape_is_reported(m, data):
    m.params["W"] = np.zeros((H, H + 1))
    with pytest.raises(ValueError, match=r"params\['W'\] must be an array of shape \(4, 4\), got shape \(4, 5\)"):
        m.loss_and_grad(*data)
    m.params["W"] = np.zeros((H, H))
    del m.params["b_h"]
    with pytest.raises(ValueError, match=r"missing \['b_h'\]"):
        m.forward(data[0])


def test_bad_step_input(m):
    with pytest.raises(ValueError, match=r"step: x_t must be float of shape \(B, 3\) or token ids of shape \(B,\)"):
        m.step(np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match=r"x_t must hold ids in \[0, 3\), got 7"):
        m.step(np.array([7]))


def test_bad_generate_arguments():
    m = bptt.Elman(3, 4, 3, seed=0)
    with pytest.raises(ValueError, match=r"feedback must be one of \['probs', 'argmax', 'sample'\], got 'beam'"):
        bptt.generate(m, np.eye(3)[:1], 3, feedback="beam")
    with pytest.raises(ValueError, match=r"steps must be a positive integer, got 0"):
        bptt.generate(m, np.eye(3)[:1], 0)
    with pytest.raises(ValueError, match=r"temperature must be a finite number > 0, got 0"):
        bptt.generate(m, np.eye(3)[:1], 3, feedback="sample", temperature=0)
    wide = bptt.Elman(3, 4, 5, seed=0)
    with pytest.raises(
        ValueError, match=r"output_size must equal input_size \(5 != 3\); pass embedding of shape \(5, 3\)"
    ):
        bptt.generate(wide, np.eye(3)[:1], 3)
    with pytest.raises(ValueError, match=r"embedding must have shape \(5, 3\), got \(3, 3\)"):
        bptt.generate(wide, np.eye(3)[:1], 3, embedding=np.eye(3))
    reg = bptt.Elman(3, 4, 3, output="identity", seed=0)
    with pytest.raises(ValueError, match=r"feedback='sample' draws from p_t, so output must be 'softmax'"):
        bptt.generate(reg, np.eye(3)[:1], 3, feedback="sample")
    with pytest.raises(ValueError, match=r"feedback='probs' needs vector inputs"):
        bptt.generate(m, np.array([0]), 3, feedback="probs")


def test_bad_gradcheck_arguments(m, data):
    with pytest.raises(TypeError, match=r"gradcheck: model must be a bptt network"):
        bptt.gradcheck(object(), *data)
    with pytest.raises(ValueError, match=r"eps must be a finite number > 0, got -1"):
        bptt.gradcheck(m, *data, eps=-1)
    with pytest.raises(ValueError, match=r"wrt names \['Q'\] are not gradients of this model"):
        bptt.gradcheck(m, *data, wrt=("Q",))


def test_backward_checks_its_upstream_gradient(m, data):
    fwd = m.forward(data[0])
    with pytest.raises(ValueError, match=r"backward: d_logits must have shape \(6, 2, 5\), got \(6, 2\)"):
        m.backward(fwd, np.zeros((T, B)))


def test_non_finite_parameters_are_named(data):
    m = bptt.Elman(D, H, O, seed=0)
    m.params["W"][1, 2] = np.nan
    with pytest.raises(ValueError, match=r"loss_and_grad: params\['W'\] must be finite, found nan at index \(1, 2\)"):
        m.loss_and_grad(*data)
    with pytest.raises(ValueError, match=r"generate: params\['W'\] must be finite"):
        bptt.generate(_nan_model(), np.eye(3)[:1], 2)


def _nan_model():
    m = bptt.Elman(3, 4, 3, seed=0)
    m.params["W"][0, 0] = np.inf
    return m


def test_wrong_parameter_dtype_is_a_type_error(m, data):
    m.params["W"] = m.params["W"].astype(np.float32)
    with pytest.raises(TypeError, match=r"params\['W'\] must have dtype float64, got float32"):
        m.loss_and_grad(*data)


def test_backward_checks_fwd_and_d_state(m, data):
    fwd = m.forward(data[0])
    dZ = np.zeros((T, B, O))
    with pytest.raises(TypeError, match=r"backward: fwd must be the Forward"):
        m.backward("not a pass", dZ)
    with pytest.raises(ValueError, match=r"backward: d_state: h0 must have shape \(2, 4\), got \(4,\)"):
        m.backward(fwd, dZ, d_state={"h0": np.zeros(H)})
    with pytest.raises(ValueError, match=r"d_state: h0 has unknown state names \['c0'\]"):
        m.backward(fwd, dZ, d_state={"c0": np.zeros((B, H))})
    with pytest.raises(TypeError, match=r"d_state must be a dict keyed like fwd.state \['h0'\]"):
        m.backward(fwd, dZ, d_state=np.zeros((B, H)))


@pytest.mark.parametrize("seed", ["x", -1, 1.5, True])
def test_bad_seeds_are_named(seed):
    with pytest.raises(
        ValueError, match=r"Elman: seed must be a non-negative integer, None or a numpy.random.Generator"
    ):
        bptt.Elman(D, H, O, seed=seed)


def test_negative_loss_weights_are_refused(m, data):
    w = np.ones((T, B))
    w[3, 1] = -0.5
    with pytest.raises(ValueError, match=r"loss_weights must be ≥ 0, found -0.5 at index \(3, 1\)"):
        m.loss_and_grad(*data, loss_weights=w)


def test_generate_names_x1():
    with pytest.raises(ValueError, match=r"generate: x1 must be float of shape \(B, 3\) or token ids of shape \(B,\)"):
        bptt.generate(bptt.Elman(3, 4, 3, seed=0), 2, 3)


def test_layer_spec_activation_is_for_elman_only():
    with pytest.raises(ValueError, match=r"layers\[0\].activation applies to elman layers only; lstm gates"):
        bptt.RNN(D, [bptt.LayerSpec("lstm", 4, "relu")], O)


def test_state_at_and_from_config_errors(m, data):
    fwd = m.forward(data[0])
    with pytest.raises(ValueError, match=r"state_at: t must be an integer in \[0, 6\), got -1"):
        m.state_at(fwd, -1)
    cfg = m.config()
    del cfg["layers"]
    with pytest.raises(ValueError, match=r"from_config: config is missing 'layers'"):
        bptt.RNN.from_config(cfg)
    with pytest.raises(ValueError, match=r"dtype must be 'float32' or 'float64', got None"):
        bptt.Elman(D, H, O, dtype=None)
