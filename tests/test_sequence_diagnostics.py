"""Variable lengths and bidirectional layers in the diagnostics, the one-step APIs and argument checks."""

from __future__ import annotations

import numpy as np
import pytest

import bptt
from bptt.stepper import Stepper

D, H, O, T, B = 4, 3, 5, 6, 3
LENGTHS = np.array([6, 2, 4])


def _data(seed=0, tokens=False):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, D, (T, B)) if tokens else rng.standard_normal((T, B, D))
    return x, rng.integers(0, O, (T, B))


def _model(cell="gru", bidirectional=False, **kw):
    return bptt.RNN(D, [bptt.LayerSpec(cell, H, bidirectional=bidirectional)] * 2, O, seed=1, **kw)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_gradcheck_with_lengths_and_one_target_per_sequence(bidirectional):
    m = _model("lstm", bidirectional)
    x, y = _data(2)
    for target in (y, y[0]):
        report = bptt.gradcheck(m, x, target, lengths=LENGTHS, max_elements=8)
        assert report.ok, str(report)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_input_sensitivity_sees_only_real_steps(bidirectional):
    m = _model("gru", bidirectional)
    x, y = _data(3)
    b = 2
    s = bptt.input_sensitivity(m, x, y, lengths=LENGTHS, batch_index=b)
    L = LENGTHS[b]
    assert np.all(s.per_step[L:] == 0.0) and np.all(s.losses[L:] == 0.0)
    alone = bptt.input_sensitivity(m, x[:L, b : b + 1], y[:L, b : b + 1])
    np.testing.assert_allclose(s.gradients[:L], alone.gradients, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(s.losses[:L], alone.losses, rtol=1e-12)
    # ∂J/∂x of the sequence alone is the engine's gradient (the loss of one sequence, B = 1)
    g = m.loss_and_grad(x[:L, b : b + 1], y[:L, b : b + 1]).grads["x"][:, 0]
    np.testing.assert_allclose(alone.gradients, g, rtol=1e-10, atol=1e-14)
    upper = alone.matrix[np.triu_indices(L, k=1)]
    if bidirectional:  # reverse layers read ahead: later inputs move earlier losses
        assert np.isfinite(upper).all() and (upper > 0).any()
    else:
        assert np.isnan(upper).all()


def test_input_sensitivity_refuses_raw_tokens_of_a_bidirectional_network():
    x, y = _data(4, tokens=True)
    with pytest.raises(ValueError, match=r"input_sensitivity: token inputs of a bidirectional network"):
        bptt.input_sensitivity(_model("gru", True), x, y)
    m = bptt.RNN(D, [bptt.LayerSpec("gru", H, bidirectional=True)], O, embedding_size=3, seed=0)
    assert bptt.input_sensitivity(m, x, y).parts == {"e_t": slice(0, 3)}


def test_gradient_dependence_and_gradient_by_gap_with_lengths():
    m = _model("elman")
    x, y = _data(5)
    b, L = 1, LENGTHS[1]
    dep = bptt.gradient_dependence(m, x, y, of="W_l1", wrt="W_l0", lengths=LENGTHS)
    full = m.loss_and_grad(x, y, lengths=LENGTHS).grads["W_l1"]
    np.testing.assert_allclose(dep.gradient, full, rtol=1e-12)
    gap = bptt.gradient_by_gap(m, x, y, "W_l0", lengths=LENGTHS)
    np.testing.assert_allclose(gap.total, m.loss_and_grad(x, y, lengths=LENGTHS).grads["W_l0"], rtol=1e-12)
    np.testing.assert_allclose(gap.by_gap.sum(axis=0), gap.total, rtol=1e-10, atol=1e-15)
    one = bptt.gradient_by_gap(m, x[:L, b : b + 1], y[:L, b : b + 1], "W_l0")
    assert one.by_gap.shape[0] == L
    with pytest.raises(ValueError, match=r"gradient_by_gap: .*bidirectional layers are not supported"):
        bptt.gradient_by_gap(_model("elman", True), x, y, "W_l0")


def test_jacobian_map_covers_the_real_steps():
    m = _model("lstm")
    x, _ = _data(6)
    b = 1
    got = bptt.jacobian_map(m, x, lengths=LENGTHS, batch_index=b)
    alone = bptt.jacobian_map(m, x[: LENGTHS[b], b : b + 1])
    np.testing.assert_allclose(got.norms, alone.norms, rtol=1e-12, equal_nan=True)
    assert got.direction == "forward"
    with pytest.raises(ValueError, match=r"jacobian_map: direction='reverse' needs a bidirectional network"):
        bptt.jacobian_map(m, x, direction="reverse")
    with pytest.raises(ValueError, match=r"jacobian_map: direction must be one of \['forward', 'reverse'\], got 'up'"):
        bptt.jacobian_map(_model("lstm", True), x, direction="up")


def _one_way_twin(m, reverse):
    """A one-layer network computing one direction of the one-layer bidirectional ``m`` on its own."""
    twin = bptt.RNN(D, [bptt.LayerSpec(m.specs[0].kind, H)], O, seed=0)
    suffix = "_reverse" if reverse else ""
    twin.params.update({k: m.params[k + suffix].copy() for k in twin.layers[0].param_shapes()})
    return twin


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
@pytest.mark.parametrize("tokens", [False, True])
def test_jacobian_map_of_each_direction_is_that_layer_run_alone(cell, tokens):
    """One bidirectional layer: each direction is an ordinary recurrence (the reverse one on the real
    steps read backwards), so its map is that of a one-way layer with its weights."""
    m = bptt.RNN(D, [bptt.LayerSpec(cell, H, bidirectional=True)], O, seed=2)
    x, _ = _data(7, tokens)
    b, L = 2, int(LENGTHS[2])
    seq = x[:L, b : b + 1]
    for direction, reverse in (("forward", False), ("reverse", True)):
        got = bptt.jacobian_map(m, x, lengths=LENGTHS, batch_index=b, direction=direction)
        alone = bptt.jacobian_map(_one_way_twin(m, reverse), seq[::-1] if reverse else seq)
        np.testing.assert_allclose(got.jacobians, alone.jacobians, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(got.norms, alone.norms, rtol=1e-12, equal_nan=True)
        assert got.direction == direction and got.recurrent_weights == (("W_reverse",) if reverse else ("W",))
        assert got.state_names == tuple(name + ("_reverse" if reverse else "") for name in alone.state_names)


@pytest.mark.parametrize("cell", ["elman", "gru"])
@pytest.mark.parametrize("direction", ["forward", "reverse"])
def test_jacobian_map_of_a_deep_direction_against_finite_differences(cell, direction):
    """Two bidirectional levels: a direction's states at step t depend on its own initial states only
    through its own layers (the other direction's level-0 outputs do not read them), so the products
    J_t ⋯ J_1 equal the network's ∂s_t/∂s_0, by central differences of the whole network."""
    m = _model(cell, True)
    x, _ = _data(8)
    b, L = 0, int(LENGTHS[0])
    jm = bptt.jacobian_map(m, x, lengths=LENGTHS, batch_index=b, direction=direction)
    names = jm.state_names
    h0 = {k: 0.3 * np.random.default_rng(1).standard_normal((B, *s)) for k, s in m.state_shapes.items()}
    jm = bptt.jacobian_map(m, x, h0, lengths=LENGTHS, batch_index=b, direction=direction)
    reverse = direction == "reverse"

    def states(h):  # s_1 .. s_L of the direction (Elman and GRU states are the h outputs), (L, S)
        hidden = m.forward(x[:L, b : b + 1], {k: v[b : b + 1] for k, v in h.items()}).hidden
        per_level = [hk[:, 0, H:] if reverse else hk[:, 0, :H] for hk in hidden]
        s = np.concatenate(per_level, axis=1)
        return s[::-1] if reverse else s

    eps, S = 1e-6, len(names) * H
    fd = np.empty((L, S, S))  # [t-1, :, j] = ∂s_t/∂(s_0)_j
    for j in range(S):
        name, unit = names[j // H], j % H
        plus, minus = ({k: v.copy() for k, v in h0.items()} for _ in range(2))
        plus[name][b, unit] += eps
        minus[name][b, unit] -= eps
        fd[:, :, j] = (states(plus) - states(minus)) / (2 * eps)
    P = np.eye(S)
    for t in range(1, L + 1):
        P = jm.jacobians[t - 1] @ P
        np.testing.assert_allclose(P, fd[t - 1], rtol=1e-6, atol=1e-8)
        assert jm.norms[t, 0] == pytest.approx(np.linalg.norm(fd[t - 1], 2), rel=1e-6)


def test_one_step_apis_refuse_bidirectional_networks():
    m = bptt.GRU(D, H, O, bidirectional=True, seed=0)
    for call in (
        lambda: m.step(np.zeros((1, D))),
        lambda: bptt.generate(m, np.zeros(D), steps=2),
        lambda: Stepper(m),
    ):
        with pytest.raises(ValueError, match=r"a bidirectional network has no one-step form"):
            call()


def test_trace_refuses_what_it_cannot_split_by_step():
    m = _model("gru", dropout=0.5)
    x, y = _data(7)
    r = m.loss_and_grad(x, y[0])
    with pytest.raises(ValueError, match=r"trace: per-step terms are not available for many-to-one passes"):
        m.trace(r.forward, np.zeros_like(r.forward.logits))
    r = m.loss_and_grad(x, y, dropout_rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"trace: per-step terms are not available for passes with dropout"):
        m.trace(r.forward, np.zeros_like(r.forward.logits))


@pytest.mark.parametrize(
    "lengths, pattern",
    [
        (np.array([6, 2]), r"lengths must have shape \(3,\), one per sequence, got \(2,\)"),
        (np.array([6, 0, 2]), r"lengths must lie in \[1, 6\] \(T = 6\), got lengths\[1\] = 0"),
        (np.array([6, 7, 2]), r"lengths must lie in \[1, 6\] \(T = 6\), got lengths\[1\] = 7"),
        (np.array([6.0, 2.5, 1.0]), r"lengths must be integers"),
        (np.array([True, True, True]), r"lengths must be integers"),
        ("abc", r"lengths must be an array of numbers, got dtype <U3"),
    ],
)
def test_bad_lengths(lengths, pattern):
    m = _model()
    x, y = _data()
    with pytest.raises((ValueError, TypeError), match=r"RNN.loss_and_grad: " + pattern):
        m.loss_and_grad(x, y, lengths=lengths)


def test_bad_targets_dropout_and_masks():
    m = _model()
    x, y = _data()
    with pytest.raises(ValueError, match=r"y for output='softmax' must be integer class ids of shape \(6, 3\)"):
        m.loss_and_grad(x, np.zeros((2, 2), int))
    with pytest.raises(ValueError, match=r"or \(3,\) for one target per sequence"):
        m.loss_and_grad(x, np.zeros(4, int))
    with pytest.raises(ValueError, match=r"RNN: dropout must be a finite number in \[0, 1\), got 1.0"):
        _model(dropout=1.0)
    with pytest.raises(ValueError, match=r"RNN: recurrent_dropout must be a finite number in \[0, 1\), got -0.1"):
        _model(recurrent_dropout=-0.1)
    with pytest.raises(ValueError, match=r"pass dropout_rng or dropout_masks, not both"):
        m.loss_and_grad(x, y, dropout_rng=np.random.default_rng(0), dropout_masks=bptt.DropoutMasks())
    with pytest.raises(TypeError, match=r"dropout_rng must be a numpy.random.Generator, got int"):
        _model(dropout=0.5).loss_and_grad(x, y, dropout_rng=3)
    skip = bptt.RNN(D, [bptt.LayerSpec("gru", H)], O, output_reads_input=True, seed=0)
    with pytest.raises(ValueError, match=r"one target per sequence .*\(output_reads_input=True\)"):
        skip.loss_and_grad(x, y[0])
    with pytest.raises(ValueError, match=r"layers\[0\].reset_after applies to gru layers only"):
        bptt.RNN(D, [bptt.LayerSpec("lstm", H, reset_after=False)], O)


def test_dropout_is_off_without_a_generator_and_in_forward():
    m = _model("lstm", True, dropout=0.5, recurrent_dropout=0.5)
    x, y = _data(8)
    plain = _model("lstm", True)
    plain.params = {k: v.copy() for k, v in m.params.items()}
    assert m.loss_and_grad(x, y).loss == plain.loss_and_grad(x, y).loss
    np.testing.assert_array_equal(m.forward(x).outputs, plain.forward(x).outputs)
    r = m.loss_and_grad(x, y, dropout_rng=np.random.default_rng(1))
    masks = r.dropout_masks
    assert r.loss != plain.loss_and_grad(x, y).loss
    assert [a.shape for a in masks.outputs] == [(T, B, 2 * H)]
    assert sorted(masks.recurrent) == ["h0_l0", "h0_l0_reverse", "h0_l1", "h0_l1_reverse"]
    assert set(np.unique(masks.outputs[0])) <= {0.0, 2.0}
    again = m.loss_and_grad(x, y, dropout_masks=masks)
    assert again.loss == r.loss and all(np.array_equal(again.grads[k], r.grads[k]) for k in r.grads)


def test_input_sensitivity_scores_only_the_real_steps():
    m = bptt.GRU(D, H, O, seed=0)
    rng = np.random.default_rng(9)
    x, y = rng.standard_normal((30, 2, D)), rng.integers(0, O, (30, 2))
    s = bptt.input_sensitivity(m, x, y, lengths=np.array([6, 30]), batch_index=0)
    alone = bptt.input_sensitivity(m, x[:6, :1], y[:6, :1])
    np.testing.assert_allclose(s.z_scores[:6], alone.z_scores, rtol=1e-10, atol=1e-12)
    assert np.isnan(s.z_scores[6:]).all() and np.array_equal(s.outliers, alone.outliers)


def test_trace_puts_reverse_layers_in_the_steps_order():
    m = bptt.GRU(D, H, O, bidirectional=True, seed=0)
    x, _ = _data(10)
    lengths = np.array([3, 5, 1])
    fwd = m.forward(x, lengths=lengths)
    d = np.zeros_like(fwd.logits)
    d[0] = 1.0  # a loss at step 0 only
    tr = m.trace(fwd, d)
    for direct in tr.dh_direct:  # both directions: the direct gradient sits at step 0 of every sequence
        assert np.abs(direct[0]).sum() > 0 and np.abs(direct[1:]).sum() == 0
    # the reverse layer read x_t at its step lengths−1−t: its V term of step t pairs with x_t
    terms = tr.terms["V_reverse"]
    assert np.abs(terms[5:]).sum() == 0  # no sequence has a step 5
    for name in tr.terms:
        np.testing.assert_allclose(tr.terms[name].sum(axis=0), tr.grads[name], rtol=1e-12, atol=1e-14)


def test_replayed_masks_must_fit():
    m = bptt.LSTM(D, H, O, num_layers=2, dropout=0.5, recurrent_dropout=0.5, seed=0)
    x, y = _data(11)
    masks = m.loss_and_grad(x, y, dropout_rng=np.random.default_rng(0)).dropout_masks
    with pytest.raises(ValueError, match=r"dropout_masks.outputs\[0\] must be a float64 array of shape \(5, 3, 3\)"):
        m.loss_and_grad(x[:5], y[:5], dropout_masks=masks)
    bad = bptt.DropoutMasks(outputs=masks.outputs, recurrent={"h0_l9": masks.recurrent["h0_l0"]})
    with pytest.raises(ValueError, match=r"dropout_masks.recurrent has keys \['h0_l9'\]"):
        m.loss_and_grad(x, y, dropout_masks=bad)
    with pytest.raises(ValueError, match=r"dropout_masks.outputs must have 1 arrays"):
        m.loss_and_grad(x, y, dropout_masks=bptt.DropoutMasks(outputs=masks.outputs * 2))
    with pytest.raises(TypeError, match=r"dropout_masks must be the DropoutMasks of an earlier result"):
        m.loss_and_grad(x, y, dropout_masks={"outputs": ()})
    rng = np.random.default_rng(1)
    before = rng.bit_generator.state
    with pytest.raises(ValueError, match=r"x must have"):
        m.loss_and_grad(x[0], y, dropout_rng=rng)  # refused before any mask is drawn
    assert rng.bit_generator.state == before
    with pytest.raises(ValueError, match=r"RNN: dropout applies between stacked layers .* one layer"):
        bptt.RNN(D, [bptt.LayerSpec("gru", H)], O, dropout=0.2)


def test_d_logits_of_one_target_per_sequence_divides_by_the_batch():
    m = bptt.GRU(D, H, O, seed=0)
    x, y = _data(12)
    r = m.loss_and_grad(x, y[0])
    d = m.output.d_logits(r.forward.outputs, y[0], None)
    g = m.backward(r.forward, d)
    for name in r.grads:
        np.testing.assert_allclose(g[name], r.grads[name], rtol=1e-12)


def test_state_at_and_layer_spec_flags_are_checked():
    m = bptt.GRU(D, H, O, bidirectional=True, seed=0)
    x, _ = _data(13)
    with pytest.raises(ValueError, match=r"GRU.state_at: a bidirectional network has no state after step t"):
        m.state_at(m.forward(x), 0)
    with pytest.raises(TypeError, match=r"layers\[0\].bidirectional must be True or False, got 'yes'"):
        bptt.RNN(D, [bptt.LayerSpec("gru", H, bidirectional="yes")], O)


def test_bptt_sample_refuses_a_bidirectional_checkpoint_in_one_line(tmp_path, capsys):
    from bptt.checkpoint import Checkpoint, save_checkpoint
    from bptt.cli import main
    from bptt.vocab import Vocabulary

    vocab = Vocabulary.build(["hello world"])
    path = tmp_path / "bi.safetensors"
    save_checkpoint(
        path, Checkpoint(model=bptt.GRU(len(vocab), 8, len(vocab), bidirectional=True, seed=0), vocab=vocab)
    )
    code = main(["sample", str(path), "--prime", "he", "-n", "5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("bptt: error: Stepper: a bidirectional network has no one-step form")
