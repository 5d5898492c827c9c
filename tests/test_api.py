"""The public contract and the behaviour around it (shapes, names, state, dtypes, determinism)."""

from __future__ import annotations

import numpy as np
import pytest

import bptt

D, H, O, T, B = 3, 4, 5, 6, 2


def _data(rng, T=T, B=B, D=D, O=O, classes=True, dtype="float64"):
    x = rng.standard_normal((T, B, D)).astype(dtype)
    y = rng.integers(0, O, size=(T, B)) if classes else rng.standard_normal((T, B, O)).astype(dtype)
    return x, y


def test_elman_contract_names_shapes_and_grads():
    m = bptt.Elman(
        input_size=D,
        hidden_size=H,
        output_size=O,
        activation="tanh",
        output="softmax",
        bias=True,
        dtype="float64",
        seed=0,
    )
    assert {k: v.shape for k, v in m.params.items()} == {
        "V": (H, D),
        "W": (H, H),
        "b_h": (H,),
        "U": (O, H),
        "b_y": (O,),
    }
    x, y = _data(np.random.default_rng(1))
    r = m.loss_and_grad(x, y, h0=None)
    assert isinstance(r.loss, float) and np.isfinite(r.loss)
    assert set(r.grads) == {"V", "W", "b_h", "U", "b_y", "h0", "x"}
    for k, v in m.params.items():
        assert r.grads[k].shape == v.shape and r.grads[k].dtype == np.float64
    assert r.grads["h0"].shape == (B, H)
    assert r.grads["x"].shape == (T, B, D)


def test_token_inputs_have_no_x_gradient_and_match_one_hot():
    rng = np.random.default_rng(2)
    m = bptt.Elman(D, H, O, seed=3)
    ids = rng.integers(0, D, size=(T, B))
    y = rng.integers(0, O, size=(T, B))
    r_ids = m.loss_and_grad(ids, y)
    r_hot = m.loss_and_grad(np.eye(D)[ids], y)
    assert "x" not in r_ids.grads
    assert r_ids.loss == pytest.approx(r_hot.loss, rel=1e-14)
    for k in m.params:
        np.testing.assert_allclose(r_ids.grads[k], r_hot.grads[k], rtol=1e-12, atol=1e-15)


def test_rnn_a_and_rnn_b_parameter_names():
    a = bptt.Elman(2, 2, 2, bias=False, notation="mit", activation="identity", output="identity")
    assert {k: v.shape for k, v in a.params.items()} == {"W_sx": (2, 2), "W_ss": (2, 2), "W_o": (2, 2)}
    b = bptt.Elman(2, 2, 2, bias=False, notation="concat", output_reads_input=True)
    assert {k: v.shape for k, v in b.params.items()} == {"W_ssx": (2, 4), "W_ox": (2, 4)}
    x = np.ones((3, 1, 2))
    r = b.loss_and_grad(x, np.zeros((3, 1), int))
    assert set(r.grads) == {"W_ssx", "W_ox", "h0", "x"}


def test_concat_notation_equals_lecture_with_the_same_blocks():
    """W_ssx = [W | V] and W_ox = [U | U_x]: the two notations compute the same function."""
    lec = bptt.Elman(D, H, O, notation="lecture", output_reads_input=True, seed=4)
    cat = bptt.Elman(D, H, O, notation="concat", output_reads_input=True)
    cat.params["W_ssx"][:] = np.concatenate([lec.params["W"], lec.params["V"]], axis=1)
    cat.params["W_ox"][:] = np.concatenate([lec.params["U"], lec.params["U_x"]], axis=1)
    cat.params["b_s"][:] = lec.params["b_h"] + 0.1
    lec.params["b_h"] += 0.1
    cat.params["b_o"][:] = lec.params["b_y"]
    x, y = _data(np.random.default_rng(5))
    r1, r2 = lec.loss_and_grad(x, y), cat.loss_and_grad(x, y)
    assert r1.loss == pytest.approx(r2.loss, rel=1e-14)
    np.testing.assert_allclose(r2.grads["W_ssx"], np.concatenate([r1.grads["W"], r1.grads["V"]], 1), rtol=1e-12)
    np.testing.assert_allclose(r2.grads["W_ox"], np.concatenate([r1.grads["U"], r1.grads["U_x"]], 1), rtol=1e-12)
    np.testing.assert_allclose(r2.grads["x"], r1.grads["x"], rtol=1e-12)


def test_changing_params_in_place_changes_the_model():
    m = bptt.Elman(D, H, O, seed=0)
    x, y = _data(np.random.default_rng(0))
    before = m.loss(x, y)
    m.params["W"] *= 2.0
    assert m.loss(x, y) != before
    m.params["W"] /= 2.0
    assert m.loss(x, y) == before


@pytest.mark.parametrize("make", [bptt.Elman, bptt.LSTM, bptt.GRU])
def test_forward_returns_every_hidden_state_and_matches_step(make):
    m = make(D, H, O, num_layers=2, seed=1)
    x, _ = _data(np.random.default_rng(6))
    fwd = m.forward(x)
    assert fwd.outputs.shape == (T, B, O)
    assert [h.shape for h in fwd.hidden] == [(T, B, H), (T, B, H)]
    np.testing.assert_allclose(fwd.outputs.sum(-1), 1.0, rtol=1e-12)
    state = None
    for t in range(T):
        p, state = m.step(x[t], state)
        np.testing.assert_allclose(p, fwd.outputs[t], rtol=1e-12, atol=1e-15)
    for k in state:
        np.testing.assert_allclose(state[k], fwd.state[k], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("make", [bptt.Elman, bptt.LSTM, bptt.GRU])
def test_carrying_state_across_windows_equals_one_long_sequence(make):
    m = make(D, H, O, seed=2)
    x, y = _data(np.random.default_rng(7), T=8)
    whole = m.forward(x)
    first = m.forward(x[:5])
    second = m.forward(x[5:], h0=first.state)
    np.testing.assert_allclose(np.concatenate([first.outputs, second.outputs]), whole.outputs, rtol=1e-12)
    # Losses add up across windows, and the state is returned ready to pass on.
    r1 = m.loss_and_grad(x[:5], y[:5])
    r2 = m.loss_and_grad(x[5:], y[5:], h0=r1.state)
    assert r1.loss + r2.loss == pytest.approx(m.loss(x, y), rel=1e-12)


def test_lstm_state_has_h0_and_c0_and_accepts_a_tuple():
    m = bptt.LSTM(D, H, O, seed=0)
    x, y = _data(np.random.default_rng(8))
    rng = np.random.default_rng(9)
    h0, c0 = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    r_tuple = m.loss_and_grad(x, y, (h0, c0))
    r_dict = m.loss_and_grad(x, y, {"h0": h0, "c0": c0})
    assert r_tuple.loss == r_dict.loss
    assert r_tuple.grads["c0"].shape == (B, H)
    assert set(r_tuple.state) == {"h0", "c0"}


def test_stack_names_carry_layer_suffixes():
    m = bptt.RNN(D, [bptt.LayerSpec("lstm", 4), bptt.LayerSpec("elman", 3, "relu")], O, seed=0)
    assert list(m.params) == ["V_l0", "W_l0", "b_l0", "V_l1", "W_l1", "b_h_l1", "U", "b_y"]
    assert m.params["V_l1"].shape == (3, 4)
    assert m.state_shapes == {"h0_l0": (4,), "c0_l0": (4,), "h0_l1": (3,)}
    x, y = _data(np.random.default_rng(0))
    assert set(m.loss_and_grad(x, y).grads) >= {"h0_l0", "c0_l0", "h0_l1", "x"}


def test_config_round_trip_rebuilds_the_architecture():
    m = bptt.RNN(D, [bptt.LayerSpec("gru", 4), bptt.LayerSpec("elman", 3, "sigmoid")], O, output="identity", seed=0)
    m2 = bptt.RNN.from_config(m.config(), seed=1)
    assert m2.param_shapes == m.param_shapes and m2.config() == m.config()


def test_loss_weights_select_steps():
    m = bptt.Elman(D, H, O, seed=0)
    x, y = _data(np.random.default_rng(10))
    w = np.zeros((T, B))
    w[-1] = 1.0
    r_last = m.loss_and_grad(x, y, loss_weights=w)
    y2 = y.copy()
    y2[:-1] = (y2[:-1] + 1) % O  # earlier targets no longer matter
    r_last2 = m.loss_and_grad(x, y2, loss_weights=w)
    assert r_last.loss == r_last2.loss
    per_step = sum(m.loss_and_grad(x, y, loss_weights=np.eye(T)[t][:, None] * np.ones((1, B))).loss for t in range(T))
    assert per_step == pytest.approx(m.loss(x, y), rel=1e-12)


def test_loss_is_averaged_over_the_batch_and_summed_over_time():
    m = bptt.Elman(D, H, O, output="identity", activation="identity", seed=0)
    x, y = _data(np.random.default_rng(11), classes=False)
    fwd = m.forward(x)
    expected = 0.5 * ((fwd.outputs - y) ** 2).sum() / B
    assert m.loss(x, y) == pytest.approx(expected, rel=1e-13)


def test_float32_model_and_astype():
    m = bptt.GRU(D, H, O, dtype="float32", seed=0)
    x, y = _data(np.random.default_rng(12), dtype="float32")
    r = m.loss_and_grad(x, y)
    assert all(g.dtype == np.float32 for g in r.grads.values())
    r64 = m.astype("float64").loss_and_grad(x.astype(np.float64), y)
    assert r.loss == pytest.approx(r64.loss, rel=1e-5)
    assert m.params["V"].dtype == np.float32  # astype copies


def test_same_seed_same_weights_and_results():
    a, b = bptt.LSTM(D, H, O, seed=42), bptt.LSTM(D, H, O, seed=42)
    c = bptt.LSTM(D, H, O, seed=43)
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert not np.array_equal(a.params["W"], c.params["W"])
    # A Generator is used as given (keyword-only randomness): two draws differ, reseeding repeats.
    rng = np.random.default_rng(5)
    first, second = bptt.Elman(D, H, O, seed=rng), bptt.Elman(D, H, O, seed=rng)
    assert not np.array_equal(first.params["W"], second.params["W"])
    assert np.array_equal(first.params["W"], bptt.Elman(D, H, O, seed=np.random.default_rng(5)).params["W"])


def test_caches_are_read_only():
    m = bptt.LSTM(D, H, O, seed=0)
    x, _ = _data(np.random.default_rng(0))
    fwd = m.forward(x)
    with pytest.raises(ValueError):
        fwd.caches[0].C[0, 0, 0] = 1.0
    with pytest.raises(AttributeError):
        fwd.caches[0].C = None  # frozen dataclass


def test_gradcheck_reports_agreement_and_catches_a_wrong_gradient(monkeypatch):
    m = bptt.LSTM(D, H, O, seed=0)
    x, y = _data(np.random.default_rng(13))
    report = bptt.gradcheck(m, x, y)
    assert report.ok, str(report)
    assert {e.name for e in report.entries} == set(m.params) | {"h0", "c0", "x"}

    real = bptt.RNN.loss_and_grad

    def wrong(self, *args, **kwargs):
        r = real(self, *args, **kwargs)
        r.grads["W"][1, 2] *= 1.01  # a one-percent error in one element
        return r

    monkeypatch.setattr(bptt.RNN, "loss_and_grad", wrong)
    bad = bptt.gradcheck(m, x, y, max_elements=None)
    assert not bad.ok
    assert bad.worst.name == "W" and bad.worst.index == (1, 2)
    assert "FAILED" in str(bad) and "W" in str(bad)


def test_gradcheck_float32_model_is_checked_in_float64_without_changing_it():
    m = bptt.Elman(D, H, O, dtype="float32", seed=0)
    before = {k: v.copy() for k, v in m.params.items()}
    x, y = _data(np.random.default_rng(14), dtype="float32")
    assert bptt.gradcheck(m, x, y).ok
    assert all(np.array_equal(before[k], m.params[k]) for k in before)


def test_generate_feeds_outputs_back():
    m = bptt.Elman(3, 4, 3, notation="concat", bias=False, output_reads_input=True, seed=0)
    g = bptt.generate(m, np.array([1.0, 0.0, 0.0]), 5, feedback="probs")
    np.testing.assert_array_equal(g.inputs[1:], g.outputs[:-1])
    g = bptt.generate(m, np.array([[1.0, 0.0, 0.0]]), 5, feedback="argmax")
    np.testing.assert_array_equal(g.inputs[1:], np.eye(3)[g.choices[:-1]])
    s1 = bptt.generate(m, np.eye(3)[:2], 6, feedback="sample", seed=7)
    s2 = bptt.generate(m, np.eye(3)[:2], 6, feedback="sample", seed=7)
    np.testing.assert_array_equal(s1.choices, s2.choices)
    tok = bptt.Elman(5, 4, 5, seed=0)
    g = bptt.generate(tok, np.array([1, 2]), 4, feedback="sample", seed=0)
    np.testing.assert_array_equal(g.inputs[1:], g.choices[:-1])


def test_caches_do_not_alias_the_callers_arrays():
    """Changing x or h0 after forward() must not change what backward() computes."""
    m = bptt.LSTM(D, H, O, seed=0)
    rng = np.random.default_rng(20)
    x, h0, c0 = rng.standard_normal((T, B, D)), rng.standard_normal((B, H)), rng.standard_normal((B, H))
    dZ = rng.standard_normal((T, B, O))
    fwd = m.forward(x, (h0, c0))
    before = m.backward(fwd, dZ)
    x[...] = 0.0
    h0[...] = 0.0
    c0[...] = 0.0
    after = m.backward(fwd, dZ)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_non_contiguous_inputs_and_parameters_give_the_same_gradients():
    m = bptt.GRU(D, H, O, seed=0)
    rng = np.random.default_rng(21)
    x = np.ascontiguousarray(rng.standard_normal((B, T, D)).transpose(1, 0, 2))
    y = rng.integers(0, O, (T, B))
    ref = m.loss_and_grad(x, y)
    m.params["W"] = np.asfortranarray(m.params["W"])
    r = m.loss_and_grad(x.transpose(1, 0, 2).copy().transpose(1, 0, 2), y)
    assert all(np.allclose(ref.grads[k], r.grads[k], rtol=1e-13, atol=1e-15) for k in ref.grads)
    assert bptt.gradcheck(m, x.transpose(1, 0, 2).copy().transpose(1, 0, 2), y).ok


def test_single_state_h0_accepts_nested_lists_and_lists_of_numbers_take_the_model_dtype():
    m = bptt.Elman(D, H, O, dtype="float32", seed=0)
    x = np.random.default_rng(22).standard_normal((T, 1, D)).tolist()
    y = np.zeros((T, 1), int)
    r_list = m.loss_and_grad(x, y, np.full((1, H), 0.1).tolist())
    r_arr = m.loss_and_grad(np.asarray(x, np.float32), y, np.full((1, H), 0.1, np.float32))
    assert r_list.loss == r_arr.loss


def test_backward_with_a_final_state_gradient_matches_loss_through_the_next_window():
    """d_state lets a gradient arrive from beyond the window (what TBPTT with k2 > k1 relies on)."""
    m = bptt.Elman(D, H, O, seed=0)
    rng = np.random.default_rng(23)
    x, y = rng.standard_normal((8, B, D)), rng.integers(0, O, (8, B))
    whole = m.loss_and_grad(x, y)
    first = m.forward(x[:5])
    second = m.loss_and_grad(x[5:], y[5:], first.state)
    d_first = first.outputs.copy()
    np.put_along_axis(d_first, y[:5, :, None], np.take_along_axis(d_first, y[:5, :, None], -1) - 1.0, -1)
    g = m.backward(first, d_first / B, d_state={"h0": second.grads["h0"]})
    for k in m.params:
        np.testing.assert_allclose(g[k] + second.grads[k], whole.grads[k], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(g["h0"], whole.grads["h0"], rtol=1e-12, atol=1e-14)


def test_retain_freed_memory():
    import platform
    import sys

    import bptt

    expected = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"  # glibc here and in CI
    assert bptt.retain_freed_memory() is expected
    for bad in (-1, 2**31, 1.5, True, "1"):
        with pytest.raises(
            ValueError, match=r"retain_freed_memory: keep_bytes must be an integer in \[0, 2147483647\]"
        ):
            bptt.retain_freed_memory(bad)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_loss_from_probabilities_equals_log_sum_exp_even_when_p_y_underflows(dtype):
    from bptt.losses import OUTPUTS

    out = OUTPUTS["softmax"]
    rng = np.random.default_rng(0)
    z = rng.normal(scale=3.0, size=(5, 4, 7)).astype(dtype)
    z[0, 0] = [0, 300, 0, 0, 0, 0, 0]  # target 0 is e^-300 below the maximum: p_y is 0 in both dtypes
    z[1, 1] = [0, 80, 0, 0, 0, 0, 0]  # p_y = e^-80: below float32's tiny/eps (recomputed), fine in float64
    y = rng.integers(0, 7, size=(5, 4))
    y[0, 0] = y[1, 1] = 0
    direct = out.loss(z, y)
    given = out.loss_given_outputs(out.f(z), z, y)
    assert np.isfinite(given).all()
    assert given[0, 0] == pytest.approx(300.0, rel=1e-6)
    eps = np.finfo(dtype).eps  # the two formulas round differently: a few ulps of 1 apart
    np.testing.assert_allclose(given, direct, rtol=8 * eps, atol=8 * eps)
    m = bptt.Elman(7, 5, 7, dtype=dtype, seed=0)
    x, y2 = rng.integers(0, 7, size=(6, 3)), rng.integers(0, 7, size=(6, 3))
    expected = float(out.loss(m.forward(x).logits, y2).sum() / 3)  # J = (1/B) Σ_t Σ_b Loss_tb
    assert m.loss(x, y2) == pytest.approx(expected, rel=1e-6)


def test_project_refuses_an_out_buffer_it_cannot_write_in_place():
    from bptt.inputs import project

    V = np.ones((4, 3))
    x = np.zeros((2, 5), dtype=np.int64)
    with pytest.raises(ValueError, match=r"project: out must be a C-contiguous \(2, 5, 4\) array, got \(5, 2, 4\)"):
        project(x, V, out=np.empty((5, 2, 4)))
    with pytest.raises(ValueError, match="C-contiguous"):
        project(x, V, out=np.empty((2, 5, 8))[:, :, ::2])
    out = np.empty((2, 5, 4))
    assert project(x, V, out=out) is out


@pytest.mark.parametrize("ids", [[[0, 1], [2, 3]], [[0, -1], [2, 1]], [[0]], [[-1]], [[3]]])
def test_project_refuses_token_ids_outside_the_table_on_both_paths(ids):
    # The networks validate ids before any layer runs; project itself must not clip or wrap them
    # either (the whole-window gather uses np.take(mode="clip") for speed). [[0]] and [[-1]] take the
    # small-input path, the 2×2 windows the gather-table path.
    from bptt.inputs import project

    V = np.arange(12.0).reshape(4, 3)  # D = 3: ids 0..2
    x = np.array(ids)
    if x.min() >= 0 and x.max() < 3:
        np.testing.assert_array_equal(project(x, V), V.T[x])
        return
    with pytest.raises(ValueError, match=r"project: token ids must lie in \[0, 3\), got \[-?\d+, -?\d+\]"):
        project(x, V)


def test_class_targets_must_match_the_output_rows():
    # A target array of the right size but the wrong shape would otherwise be read row-major
    # against the wrong (t, b).
    from bptt.losses import OUTPUTS

    out = OUTPUTS["softmax"]
    z = np.zeros((2, 3, 4))
    y = np.zeros((3, 2), dtype=np.int64)
    for call in (
        lambda: out.residual(out.f(z), y),
        lambda: out.loss(z, y),
        lambda: out.loss_given_outputs(out.f(z), z, y),
    ):
        with pytest.raises(
            ValueError, match=r"class targets must have shape \(2, 3\) \(one id per output row\), got \(3, 2\)"
        ):
            call()


def test_config_restores_the_named_class_and_mixed_stacks_stay_rnn():
    for m in (bptt.Elman(D, H, O, notation="mit", seed=0), bptt.LSTM(D, H, O, num_layers=2), bptt.GRU(D, H, O)):
        back = bptt.RNN.from_config(m.config(), params=m.params)
        assert type(back) is type(m) and back.config() == m.config()
        assert all(np.array_equal(back.params[k], m.params[k]) for k in m.params)
    mixed = bptt.RNN(D, [bptt.LayerSpec("gru", 4), bptt.LayerSpec("lstm", 4)], O, seed=0)
    assert type(bptt.RNN.from_config(mixed.config())) is bptt.RNN
    sizes = bptt.RNN(D, [bptt.LayerSpec("lstm", 4), bptt.LayerSpec("lstm", 3)], O, seed=0)
    assert type(bptt.RNN.from_config(sizes.config())) is bptt.RNN  # LSTM(...) has one hidden size
    gru = bptt.GRU(D, H, O, seed=0)
    assert type(bptt.GRU.from_config(gru.config())) is bptt.GRU
    with pytest.raises(ValueError, match=r"LSTM.from_config: config describes layers \[gru\(4\)\], not a LSTM"):
        bptt.LSTM.from_config(gru.config())
    bad = {**gru.config(), "layers": [{"kind": "gru", "hidden_size": 4, "activation": "relu"}]}
    with pytest.raises(ValueError, match=r"layers\[0\].activation applies to elman layers only"):
        bptt.RNN.from_config(bad)  # checked as RNN(...) checks it, before any named factory


def test_no_import_cycle_between_modules():
    """Module-level and function-level relative imports form no cycle (typing-only imports aside)."""
    import ast
    from pathlib import Path

    src = Path(bptt.__file__).resolve().parent
    lazy = {("bptt.cli", "bptt.diagnostics.explain"), ("bptt.cli", "bptt.diagnostics.report")}  # optional extras
    lazy |= {("bptt.diagnostics.explain", "bptt.diagnostics.plots")}  # matplotlib, only when plotting
    edges: dict[str, set[str]] = {}
    for f in src.rglob("*.py"):
        parts = f.relative_to(src.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = name if parts[-1] == "__init__" else name.rpartition(".")[0]
        tree = ast.parse(f.read_text(encoding="utf-8"))
        typing_only = {
            id(n)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or node.level == 0 or id(node) in typing_only:
                continue
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                dep = candidate if (src.parent / (candidate.replace(".", "/") + ".py")).exists() else target
                if dep != name and (name, dep) not in lazy and not dep.endswith("bptt"):
                    edges.setdefault(name, set()).add(dep)
    state: dict[str, int] = {}

    def visit(n, path):
        state[n] = 1
        for d in edges.get(n, ()):
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " → ".join([*path, n, d]))
            if d not in state:
                visit(d, [*path, n])
        state[n] = 2

    for n in list(edges):
        if n not in state:
            visit(n, [])
    assert "bptt.engine.network" in edges  # the graph was built
    assert not any(d.startswith("bptt.engine") for d in edges.get("bptt._checks", ()))
