"""``bptt.jacobians.jacobian_map``: per-step Jacobians and the norms of their products.

Oracles, none of which use the engine's backward pass:

1. Central finite differences of one step ``s_{t-1} → s_t`` (the engine's forward pass
   from a perturbed state), column by column, at 1e-6 relative; states along the
   sequence re-computed with ``model.step``.
2. PyTorch autograd (``torch.autograd.functional.jacobian``) of the same step written in
   torch: explicit Elman equations in each notation, ``torch.nn.LSTM`` / ``torch.nn.GRU``
   with copied weights, at 1e-9.
3. For the products: the norms of explicit products of the checked ``J_t``, the finite-difference
   Jacobian of the multi-step map ``s_k → s_t``, and the lecture's linear Elman network,
   where ``J_t = W`` and ``N[t, k] = ‖W^{t-k}‖``.

The error of a matrix is ``max|a - n| / max(max|a|, max|n|, 1e-10)``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import bptt
from bptt.jacobians import JacobianMap, jacobian_map

torch.set_num_threads(1)

D, H, O, T, B = 3, 4, 5, 5, 3
D_TOKENS = 6
BATCH_INDEX = 1
FD_EPS = 1e-5
FD_TOL = 1e-6
TORCH_TOL = 1e-9
ACTIVATIONS = ("tanh", "relu", "sigmoid", "identity")

# label -> (layers as (kind, hidden_size, activation), notation, embedding_size)
NETS: dict[str, tuple[tuple[tuple[str, int, str], ...], str, int | None]] = {
    **{
        f"elman-{notation}-{act}": ((("elman", H, act),), notation, None)
        for notation in ("lecture", "mit", "concat")
        for act in ACTIVATIONS
    },
    "lstm": ((("lstm", H, "tanh"),), "lecture", None),
    "gru": ((("gru", H, "tanh"),), "lecture", None),
    "elman2-tanh": ((("elman", H, "tanh"), ("elman", 3, "tanh")), "mit", None),
    "lstm2": ((("lstm", H, "tanh"), ("lstm", 3, "tanh")), "lecture", None),
    "mixed-lstm-elmanrelu-gru": ((("lstm", 3, "tanh"), ("elman", H, "relu"), ("gru", 2, "tanh")), "concat", None),
    "gru-embedded": ((("gru", H, "tanh"),), "lecture", 2),
}


def build(label: str, tokens: bool = False, *, scale: float = 0.7, bias: bool = True, seed: int = 0) -> bptt.RNN:
    """Network ``label`` with N(0, scale²) parameters (large enough to leave the linear regime)."""
    layers, notation, embed = NETS[label]
    specs = [bptt.LayerSpec(k, h, a) for k, h, a in layers]
    m = bptt.RNN(D_TOKENS if tokens else D, specs, O, notation=notation, bias=bias, embedding_size=embed, seed=seed)
    rng = np.random.default_rng(seed + 1)
    for p in m.params.values():
        p[...] = scale * rng.standard_normal(p.shape)
    return m


def data(m: bptt.RNN, tokens: bool, seed: int = 2) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Inputs ``(T, B, D)`` or token ids ``(T, B)`` and a random initial state for every sequence."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, m.input_size, size=(T, B)) if tokens else rng.standard_normal((T, B, m.input_size))
    h0 = {name: 0.5 * rng.standard_normal((B, size)) for name, (size,) in m.state_shapes.items()}
    return x, h0


def rel_error(a: np.ndarray, n: np.ndarray) -> float:
    return float(np.abs(a - n).max() / max(np.abs(a).max(), np.abs(n).max(), 1e-10))


def report(what: str, a: np.ndarray, n: np.ndarray) -> str:
    idx = np.unravel_index(int(np.argmax(np.abs(a - n))), a.shape)
    return f"{what}: rel error {rel_error(a, n):.2e}; worst {tuple(int(i) for i in idx)} analytic {a[idx]} vs {n[idx]}"


# -- the one-step map, two ways ----------------------------------------------------------------------
def step_map(m: bptt.RNN, x_t: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``s_t`` (S,) from ``s_{t-1}`` (S,) and one input, through the engine's forward pass."""
    names = list(m.state_shapes)
    parts = np.split(s, np.cumsum([m.state_shapes[n][0] for n in names])[:-1])
    fwd = m.forward(np.asarray(x_t)[None, None], {n: p[None] for n, p in zip(names, parts, strict=True)})
    return np.concatenate([fwd.state[n][0] for n in names])


def sequence_states(m: bptt.RNN, x: np.ndarray, h0: dict[str, np.ndarray], b: int) -> np.ndarray:
    """``s_0 .. s_T`` of sequence ``b`` by ``model.step`` (the generation path), ``(T+1, S)``."""
    state = {n: v[b : b + 1] for n, v in h0.items()}
    out = [np.concatenate([state[n][0] for n in m.state_shapes])]
    for t in range(x.shape[0]):
        _, state = m.step(x[t, b : b + 1], state)
        out.append(np.concatenate([state[n][0] for n in m.state_shapes]))
    return np.stack(out)


def fd_jacobian(f, s: np.ndarray, eps: float = FD_EPS) -> np.ndarray:
    """``∂f/∂s`` by central differences, one column per element of ``s``."""
    cols = []
    for j in range(s.size):
        e = np.zeros_like(s)
        e[j] = eps
        cols.append((f(s + e) - f(s - e)) / (2 * eps))
    return np.stack(cols, axis=1)


def torch_step(m: bptt.RNN, x_t: np.ndarray, s: torch.Tensor) -> torch.Tensor:
    """The same one-step map written in torch from the documented equations and weight layouts."""
    cfg = m.config()
    P = {k: torch.tensor(v, dtype=torch.float64) for k, v in m.params.items()}
    if np.asarray(x_t).dtype.kind in "iu":
        inp = torch.nn.functional.one_hot(torch.tensor(int(x_t)), cfg["input_size"]).to(torch.float64)
    else:
        inp = torch.tensor(x_t, dtype=torch.float64)
    if cfg["embedding_size"]:
        inp = P["E"] @ inp
    many = len(cfg["layers"]) > 1
    out, at = [], 0
    for k, spec in enumerate(cfg["layers"]):
        sfx, Hk = (f"_l{k}" if many else ""), spec["hidden_size"]
        h = s[at : at + Hk]
        at += Hk
        if spec["kind"] == "elman":
            if cfg["notation"] == "concat":
                a = P["W_ssx" + sfx] @ torch.cat([h, inp])  # W_ssx [s_{t-1}; x_t]
                b_name = "b_s"
            else:
                n_in, n_rec, b_name = {"lecture": ("V", "W", "b_h"), "mit": ("W_sx", "W_ss", "b_s")}[cfg["notation"]]
                a = P[n_in + sfx] @ inp + P[n_rec + sfx] @ h
            if cfg["bias"]:
                a = a + P[b_name + sfx]
            f = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid, "identity": lambda z: z}
            h = f[spec["activation"]](a)
            out.append(h)
        else:
            cls = torch.nn.LSTM if spec["kind"] == "lstm" else torch.nn.GRU
            mod = cls(inp.shape[0], Hk, bias=cfg["bias"], dtype=torch.float64)
            with torch.no_grad():
                mod.weight_ih_l0.copy_(P["V" + sfx])
                mod.weight_hh_l0.copy_(P["W" + sfx])
                if cfg["bias"]:
                    mod.bias_ih_l0.copy_(P["b" + sfx])
                    mod.bias_hh_l0.zero_()
                    if spec["kind"] == "gru":
                        mod.bias_hh_l0[2 * Hk :] = P["b_hn" + sfx]
            if spec["kind"] == "lstm":
                c = s[at : at + Hk]
                at += Hk
                _, (h_n, c_n) = mod(inp[None, None], (h[None, None], c[None, None]))
                h = h_n[0, 0]
                out += [h, c_n[0, 0]]
            else:
                _, h_n = mod(inp[None, None], h[None, None])
                h = h_n[0, 0]
                out.append(h)
        inp = h
    return torch.cat(out)


# -- per-step Jacobians ------------------------------------------------------------------------------
@pytest.mark.parametrize("tokens", [False, True], ids=["dense", "tokens"])
@pytest.mark.parametrize("label", list(NETS))
def test_step_jacobians_match_finite_differences(label, tokens):
    m = build(label, tokens)
    x, h0 = data(m, tokens)
    jm = jacobian_map(m, x, h0, batch_index=BATCH_INDEX)
    states = sequence_states(m, x, h0, BATCH_INDEX)
    assert jm.exact and jm.jacobians.shape == (T, states.shape[1], states.shape[1])
    assert rel_error(jm.states, states) < 1e-13, report("states", jm.states, states)
    for t in range(1, T + 1):
        numeric = fd_jacobian(lambda s, t=t: step_map(m, x[t - 1, BATCH_INDEX], s), states[t - 1])
        J = jm.jacobians[t - 1]
        assert rel_error(J, numeric) < FD_TOL, report(f"{label} J_{t}", J, numeric)
        for name, sl in jm.state_slices.items():  # each block on its own scale (h and c of an LSTM)
            block, nblock = J[sl], numeric[sl]
            assert rel_error(block, nblock) < FD_TOL, report(f"{label} J_{t} rows {name}", block, nblock)


@pytest.mark.parametrize("tokens", [False, True], ids=["dense", "tokens"])
@pytest.mark.parametrize("label", list(NETS))
def test_step_jacobians_match_torch(label, tokens):
    m = build(label, tokens, seed=3)
    x, h0 = data(m, tokens, seed=4)
    jm = jacobian_map(m, x, h0, batch_index=BATCH_INDEX)
    for t in range(1, T + 1):
        s = torch.tensor(jm.states[t - 1], dtype=torch.float64)
        J_torch = torch.autograd.functional.jacobian(lambda s, t=t: torch_step(m, x[t - 1, BATCH_INDEX], s), s)
        J_torch = J_torch.numpy()
        s_next = torch_step(m, x[t - 1, BATCH_INDEX], s).detach().numpy()
        assert rel_error(jm.states[t], s_next) < TORCH_TOL, report(f"{label} s_{t}", jm.states[t], s_next)
        J = jm.jacobians[t - 1]
        assert rel_error(J, J_torch) < TORCH_TOL, report(f"{label} J_{t} vs torch", J, J_torch)


def test_state_layout_follows_state_shapes():
    m = build("mixed-lstm-elmanrelu-gru")
    jm = jacobian_map(m, *data(m, False))
    assert jm.state_names == ("h0_l0", "c0_l0", "h0_l1", "h0_l2")
    assert jm.state_slices == {
        "h0_l0": slice(0, 3),
        "c0_l0": slice(3, 6),
        "h0_l1": slice(6, 10),
        "h0_l2": slice(10, 12),
    }


# -- the products -----------------------------------------------------------------------------------
@pytest.mark.parametrize("norm", ["spectral", "fro"])
@pytest.mark.parametrize("label", ["lstm", "mixed-lstm-elmanrelu-gru", "elman-mit-tanh"])
def test_norms_are_norms_of_the_products(label, norm):
    m = build(label)
    jm = jacobian_map(m, *data(m, False), norm=norm)
    S = jm.states.shape[1]
    ord_ = 2 if norm == "spectral" else "fro"
    reversed_differs = False
    for t in range(T + 1):
        assert np.isnan(jm.norms[t, t + 1 :]).all()
        for k in range(t + 1):
            P, R = np.eye(S), np.eye(S)
            for i in range(k + 1, t + 1):
                P = jm.jacobians[i - 1] @ P  # J_t ⋯ J_{k+1}
                R = R @ jm.jacobians[i - 1]  # J_{k+1} ⋯ J_t: the wrong order
            expected = np.linalg.norm(P, ord_)
            assert abs(jm.norms[t, k] - expected) <= 1e-12 * expected, (t, k, jm.norms[t, k], expected)
            reversed_differs |= abs(np.linalg.norm(R, ord_) - expected) > 1e-6 * expected
    assert reversed_differs  # the order of the factors is visible to this test
    assert np.allclose(np.diag(jm.norms), 1.0 if norm == "spectral" else np.sqrt(S), rtol=1e-14)


@pytest.mark.parametrize("label", ["elman-lecture-tanh", "lstm", "elman2-tanh"])
def test_norms_match_finite_differences_of_the_multistep_map(label):
    m = build(label)
    x, h0 = data(m, False)
    jm = jacobian_map(m, x, h0, batch_index=BATCH_INDEX)
    names = list(m.state_shapes)
    sizes = np.cumsum([m.state_shapes[n][0] for n in names])[:-1]

    def run(k: int, t: int, s: np.ndarray) -> np.ndarray:  # s_k → s_t through x_{k+1} .. x_t
        state = {n: p[None] for n, p in zip(names, np.split(s, sizes), strict=True)}
        fwd = m.forward(x[k:t, BATCH_INDEX : BATCH_INDEX + 1], state)
        return np.concatenate([fwd.state[n][0] for n in names])

    for t in range(1, T + 1):
        for k in range(t):
            P = fd_jacobian(lambda s, k=k, t=t: run(k, t, s), jm.states[k])
            expected = np.linalg.norm(P, 2)
            assert abs(jm.norms[t, k] - expected) <= FD_TOL * expected, (t, k, jm.norms[t, k], expected)


@pytest.mark.parametrize("notation", ["lecture", "mit", "concat"])
def test_linear_elman_jacobian_is_W(notation):
    m = bptt.Elman(D, H, O, activation="identity", notation=notation, seed=5)
    x, h0 = data(m, False)
    # The recurrent weight read straight from params (concat: the state block of W_ssx = [W_ss | W_sx]).
    W = m.params["W_ssx"][:, :H] if notation == "concat" else m.params[{"lecture": "W", "mit": "W_ss"}[notation]]
    jm = jacobian_map(m, x, h0)
    fro = jacobian_map(m, x, h0, norm="fro")
    for t in range(T):
        np.testing.assert_allclose(jm.jacobians[t], W, rtol=0, atol=1e-14)
    for t in range(T + 1):
        assert jm.norms[t, t] == 1.0
        assert np.isnan(jm.norms[t, t + 1 :]).all()
        for k in range(t + 1):
            Wp = np.linalg.matrix_power(W, t - k)
            assert jm.norms[t, k] == pytest.approx(np.linalg.norm(Wp, 2), rel=1e-12)
            assert fro.norms[t, k] == pytest.approx(np.linalg.norm(Wp, "fro"), rel=1e-12)


# -- the estimate for large states ------------------------------------------------------------------
@pytest.mark.parametrize("label", ["elman-lecture-tanh", "lstm", "gru", "mixed-lstm-elmanrelu-gru"])
def test_estimate_agrees_with_exact(label):
    m = build(label)
    x, h0 = data(m, False)
    exact = jacobian_map(m, x, h0, batch_index=2)
    est = jacobian_map(m, x, h0, batch_index=2, exact_up_to=1, seed=7)
    assert exact.exact and not est.exact and est.jacobians is None
    lower = np.tril_indices(T + 1)
    a, e = est.norms[lower], exact.norms[lower]
    assert rel_error(a, e) < 1e-8, report(f"{label} estimated N", a, e)
    assert (a <= e * (1 + 1e-9)).all()  # ‖Pᵀu‖ never exceeds ‖P‖₂
    assert np.isnan(est.norms[np.triu_indices(T + 1, 1)]).all()
    np.testing.assert_array_equal(est.states, exact.states)
    np.testing.assert_array_equal(est.saturation, exact.saturation)


@pytest.mark.parametrize("cls, hidden", [(bptt.Elman, 32), (bptt.LSTM, 16), (bptt.GRU, 32)])
def test_estimate_converges_before_spanning_the_space(cls, hidden):
    # S = 32 > 24 Lanczos steps: agreement comes from convergence, not from exhausting the space.
    m = cls(D, hidden, O, seed=0)
    rng = np.random.default_rng(1)
    for p in m.params.values():
        p[...] = rng.standard_normal(p.shape) * (1.2 / np.sqrt(hidden) if p.ndim == 2 else 0.3)
    x = rng.standard_normal((T, 1, D))
    exact = jacobian_map(m, x)
    est = jacobian_map(m, x, exact_up_to=31, iterations=24)
    assert not est.exact
    lower = np.tril_indices(T + 1)
    assert rel_error(est.norms[lower], exact.norms[lower]) < 1e-8, report("N", est.norms[lower], exact.norms[lower])


def test_dead_relu_units_pass_no_gradient():
    m = bptt.Elman(D, H, O, activation="relu", seed=0)
    m.params["b_h"][:] = -100.0  # every unit off at every step: J_t = 0
    x, h0 = data(m, False)
    for jm in (jacobian_map(m, x, h0), jacobian_map(m, x, h0, exact_up_to=0)):
        lower = np.tril_indices(T + 1, -1)
        np.testing.assert_array_equal(jm.norms[lower], 0.0)
        np.testing.assert_array_equal(np.diag(jm.norms), 1.0)
        np.testing.assert_array_equal(jm.saturation, 1.0)


def test_estimate_is_seeded():
    m = build("lstm")
    x, h0 = data(m, False)
    a = jacobian_map(m, x, h0, exact_up_to=0, seed=11, iterations=2)
    b = jacobian_map(m, x, h0, exact_up_to=0, seed=11, iterations=2)
    c = jacobian_map(m, x, h0, exact_up_to=0, seed=12, iterations=2)
    np.testing.assert_array_equal(a.norms, b.norms)
    assert not np.array_equal(a.norms, c.norms)  # two Lanczos steps of eight do not converge: the start shows


# -- weights and saturation -------------------------------------------------------------------------
def test_recurrent_weight_norms_and_radii():
    m = build("mixed-lstm-elmanrelu-gru")
    jm = jacobian_map(m, *data(m, False))
    assert jm.recurrent_weights == ("W_l0", "W_ssx_l1[:, :4]", "W_l2")
    W_lstm, W_elman, W_gru = m.params["W_l0"], m.params["W_ssx_l1"][:, :H], m.params["W_l2"]

    def radius(A):
        return float(np.abs(np.linalg.eigvals(A)).max())

    for k, W in enumerate((W_lstm, W_elman, W_gru)):
        assert jm.recurrent_spectral_norm[k] == pytest.approx(np.linalg.svd(W, compute_uv=False)[0], rel=1e-12)
    assert jm.recurrent_spectral_radius[1] == pytest.approx(radius(W_elman), rel=1e-12)
    lstm_gates = {g: radius(W_lstm[i * 3 : (i + 1) * 3]) for i, g in enumerate("ifgo")}
    gru_gates = {g: radius(W_gru[i * 2 : (i + 1) * 2]) for i, g in enumerate("rzn")}
    assert jm.gate_spectral_radius[0] == pytest.approx(lstm_gates, rel=1e-12)
    assert jm.gate_spectral_radius[2] == pytest.approx(gru_gates, rel=1e-12)
    assert jm.recurrent_spectral_radius[0] == max(jm.gate_spectral_radius[0].values())
    assert set(jm.gate_spectral_radius) == {0, 2}


@pytest.mark.parametrize("label", ["elman-lecture-tanh", "elman-mit-sigmoid", "lstm", "gru", "lstm2"])
def test_saturation_huge_and_tiny_weights(label):
    x, h0 = data(build(label), False)
    huge = jacobian_map(build(label, scale=100.0), x, h0)
    tiny = jacobian_map(build(label, scale=1e-3), x, h0)
    assert huge.saturation.shape == tiny.saturation.shape == (T, len(NETS[label][0]))
    assert huge.saturation.min() >= 0.5 and huge.saturation.mean() > 0.9, huge.saturation
    assert (tiny.saturation == 0).all(), tiny.saturation


def test_saturation_counts_the_right_units():
    m = build("mixed-lstm-elmanrelu-gru")
    x, h0 = data(m, False)
    jm = jacobian_map(m, x, h0, batch_index=BATCH_INDEX)
    fwd = m.forward(x, h0)
    relu_h = fwd.hidden[1][:, BATCH_INDEX]  # (T, H)
    np.testing.assert_array_equal(jm.saturation[:, 1], (relu_h == 0).mean(axis=1))
    assert 0 < jm.saturation[:, 1].mean() < 1  # some units on, some off: the count is informative
    G = fwd.caches[0].G[:, BATCH_INDEX]  # (T, 4·3) LSTM gates [i, f, g, o]
    g = G[:, 6:9]
    sig = np.concatenate((G[:, :6], G[:, 9:]), axis=1)
    expected = ((np.abs(g) > 0.99).sum(axis=1) + ((sig < 0.01) | (sig > 0.99)).sum(axis=1)) / 12
    np.testing.assert_array_equal(jm.saturation[:, 0], expected)


@pytest.mark.parametrize(
    "activation, h, expected",
    [
        ("tanh", [0.995, -0.995, 0.98, 0.0], 0.5),  # |h| > 0.99
        ("sigmoid", [0.995, 0.005, 0.98, 0.02], 0.5),  # outside [0.01, 0.99]
        ("relu", [0.0, 0.005, 1.0, 0.0], 0.5),  # exactly 0: inactive (0.005 still passes gradient)
        ("identity", [100.0, -100.0, 0.0, 1.0], 0.0),
    ],
)
def test_saturation_thresholds(activation, h, expected):
    m = bptt.Elman(D, H, O, activation=activation, seed=0)
    m.params["V"][:] = 0.0
    m.params["W"][:] = 0.0
    inverse = {
        "tanh": np.arctanh,
        "sigmoid": lambda p: np.log(p / (1 - p)),
        "relu": lambda a: a,
        "identity": lambda a: a,
    }
    m.params["b_h"][:] = inverse[activation](np.array(h))  # h_t = f_h(b_h) at every step
    jm = jacobian_map(m, *data(m, False))
    np.testing.assert_allclose(jm.states[1:], np.tile(h, (T, 1)), atol=1e-12)
    np.testing.assert_array_equal(jm.saturation, expected)


def test_identity_never_saturates():
    m = build("elman-lecture-identity", scale=100.0)
    jm = jacobian_map(m, *data(m, False))
    assert (jm.saturation == 0).all()


# -- dtypes, immutability, errors -------------------------------------------------------------------
def test_float32_model_is_analysed_in_float64():
    m = build("gru")
    x, h0 = data(m, False)
    m32 = m.astype("float32")
    x32 = x.astype("float32")
    h32 = {k: v.astype("float32") for k, v in h0.items()}
    a = jacobian_map(m32, x32, h32)
    b = jacobian_map(m32.astype("float64"), x32.astype("float64"), {k: v.astype("float64") for k, v in h32.items()})
    assert a.jacobians.dtype == np.float64
    np.testing.assert_array_equal(a.jacobians, b.jacobians)
    np.testing.assert_array_equal(a.norms, b.norms)
    assert m32.dtype == np.float32  # the model is left unchanged


def test_result_is_read_only():
    m = build("lstm")
    jm = jacobian_map(m, *data(m, False))
    assert isinstance(jm, JacobianMap)
    for arr in (jm.norms, jm.jacobians, jm.states, jm.saturation):
        with pytest.raises(ValueError):
            arr[0] = 0.0


@pytest.mark.parametrize(
    "kwargs, exc, pattern",
    [
        (dict(batch_index=3), ValueError, r"jacobian_map: batch_index must be in \[0, 3\) .*got 3"),
        (dict(batch_index=-1), ValueError, r"jacobian_map: batch_index must be in \[0, 3\)"),
        (dict(batch_index=1.0), TypeError, r"jacobian_map: batch_index must be an integer, got 1.0"),
        (dict(batch_index=True), TypeError, r"jacobian_map: batch_index must be an integer, got True"),
        (dict(norm="nuclear"), ValueError, r"jacobian_map: norm must be one of \['spectral', 'fro'\], got 'nuclear'"),
        (dict(exact_up_to=-1), ValueError, r"jacobian_map: exact_up_to must be a non-negative integer, got -1"),
        (dict(exact_up_to=2.5), TypeError, r"jacobian_map: exact_up_to must be a non-negative integer"),
        (dict(iterations=0), ValueError, r"jacobian_map: iterations must be a positive integer"),
        (dict(seed=-3), ValueError, r"jacobian_map: seed must be"),
        (dict(norm="fro", exact_up_to=2), ValueError, r"jacobian_map: norm='fro' needs explicit Jacobians.*S = 4"),
    ],
)
def test_bad_arguments(kwargs, exc, pattern):
    m = build("elman-lecture-tanh")
    x, h0 = data(m, False)
    with pytest.raises(exc, match=pattern):
        jacobian_map(m, x, h0, **kwargs)


def test_bad_model_and_inputs():
    m = build("lstm")
    x, _ = data(m, False)
    with pytest.raises(TypeError, match=r"jacobian_map: model must be a bptt network .*got dict"):
        jacobian_map({"W": np.eye(2)}, x)
    with pytest.raises(ValueError, match=r"jacobian_map: x must have shape \(T, B, 3\).*got shape \(5, 3, 2\)"):
        jacobian_map(m, x[:, :, :2])
    with pytest.raises(ValueError, match=r"jacobian_map: integer x must be token ids of shape \(T, B\)"):
        jacobian_map(m, np.zeros((T, B, D), int))
    with pytest.raises(ValueError, match=r"jacobian_map: x must hold ids in \[0, 3\)"):
        jacobian_map(m, np.full((T, B), 7))
    with pytest.raises(TypeError, match=r"jacobian_map: x must have dtype float64 like the model"):
        jacobian_map(m, x.astype("float32"))
    with pytest.raises(ValueError, match=r"jacobian_map: h0 must have shape \(3, 4\), got \(2, 4\)"):
        jacobian_map(m, x, {"h0": np.zeros((2, H))})
    with pytest.raises(ValueError, match=r"jacobian_map: h0 has unknown state names \['h1'\]"):
        jacobian_map(m, x, {"h1": np.zeros((B, H))})
