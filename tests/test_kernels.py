"""Every fast kernel equals its cell's reference step, in float64 (a torch-free second oracle).

Each cell's ``step_forward`` / ``step_backward`` (``bptt/engine/layers/<cell>.py``) is plain NumPy, one
chain-rule step per line; ``kernels="reference"`` loops them over the sequence. The fast
whole-window forward, the fast backward (adjoints and the sums over time as matrix products),
the trace's per-step terms and the :class:`~bptt.stepper.Stepper`'s one-token kernels must agree
with it to 1e-12 relative, for every cell × notation × bias × dense/token input × depth × T.
Later features (lengths, reverse direction, dropout, compiled kernels) extend this file.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import bptt
from bptt.layers import CELLS, ClassicGRULayer, ElmanLayer, LSTMLayer
from bptt.stepper import Stepper

D, H, O, B = 5, 4, 5, 3
RTOL = 1e-12


def close(fast, ref, what: str) -> None:
    fast, ref = np.asarray(fast), np.asarray(ref)
    assert fast.shape == ref.shape, f"{what}: shape {fast.shape} != {ref.shape}"
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    err = float(np.abs(fast - ref).max(initial=0.0))
    assert err <= RTOL * scale, f"{what}: fast and reference differ by {err:.3g} (scale {scale:.3g})"


def build(cell, notation, bias, depth, *, embedding=None, reads_input=False, activation="tanh", kernels="fast"):
    specs = [bptt.LayerSpec(cell, H, activation if cell == "elman" else "tanh") for _ in range(depth)]
    return bptt.RNN(
        D,
        specs,
        O,
        bias=bias,
        notation=notation,
        output_reads_input=reads_input,
        embedding_size=embedding,
        seed=7,
        kernels=kernels,
    )


def data(tokens: bool, T: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, D, (T, B)) if tokens else rng.standard_normal((T, B, D))
    y = rng.integers(0, O, (T, B))
    h0 = None
    return x, y, h0


def random_state(m, seed=1):
    rng = np.random.default_rng(seed)
    return {name: 0.5 * rng.standard_normal((B, *shape)) for name, shape in m.state_shapes.items()}


def randomise_biases(m, seed=3):
    """Nonzero biases (init draws zeros for most), so every bias path is exercised."""
    rng = np.random.default_rng(seed)
    for p in m.params.values():
        if p.ndim == 1:
            p += 0.3 * rng.standard_normal(p.shape)


CASES = [
    (cell, notation, bias, tokens, depth, T)
    for cell, notation, bias, tokens, depth, T in itertools.product(
        ("elman", "lstm", "gru"), ("lecture", "mit", "concat"), (True, False), (False, True), (1, 2), (1, 6)
    )
]


def _pair(cell, notation, bias, depth, **kw):
    fast = build(cell, notation, bias, depth, **kw)
    randomise_biases(fast)
    ref = fast.with_kernels("reference")
    assert ref.kernels == "reference" and all(layer.kernels == "reference" for layer in ref.layers)
    return fast, ref


@pytest.mark.parametrize("cell, notation, bias, tokens, depth, T", CASES)
def test_fast_kernels_equal_the_reference_step(cell, notation, bias, tokens, depth, T):
    fast, ref = _pair(cell, notation, bias, depth)
    x, y, _ = data(tokens, T)
    h0 = random_state(fast)
    w = np.random.default_rng(5).uniform(0.0, 1.0, (T, B))

    # forward: outputs, every layer's hidden states, the final state, every cache field
    f, r = fast.forward(x, h0), ref.forward(x, h0)
    close(f.outputs, r.outputs, "outputs")
    close(f.logits, r.logits, "logits")
    for k, (a, b) in enumerate(zip(f.hidden, r.hidden, strict=True)):
        close(a, b, f"hidden[{k}]")
    for name in f.state:
        close(f.state[name], r.state[name], f"state {name}")
    for k, (ca, cb) in enumerate(zip(f.caches, r.caches, strict=True)):
        assert type(ca) is type(cb)
        for field in ca.__dataclass_fields__:
            close(getattr(ca, field), getattr(cb, field), f"cache[{k}].{field}")
    for t in (0, T - 1):
        for name, s in fast.state_at(f, t).items():
            close(s, ref.state_at(r, t)[name], f"state_at({t}) {name}")

    # backward: every gradient (parameters, initial state, x), with loss weights
    gf = fast.loss_and_grad(x, y, h0, loss_weights=w)
    gr = ref.loss_and_grad(x, y, h0, loss_weights=w)
    assert gf.loss == pytest.approx(gr.loss, rel=RTOL)
    assert gf.grads.keys() == gr.grads.keys()
    for name in gf.grads:
        close(gf.grads[name], gr.grads[name], f"grad {name}")

    # backward with gradients arriving at the final state (truncated BPTT's carry)
    rng = np.random.default_rng(9)
    d_logits = rng.standard_normal(f.logits.shape)
    d_state = {name: rng.standard_normal(s.shape) for name, s in f.state.items()}
    bf, br = fast.backward(f, d_logits, d_state), ref.backward(r, d_logits, d_state)
    for name in bf:
        close(bf[name], br[name], f"backward {name}")

    # trace: every per-step term, direct and total ∂J/∂h_t
    tf, tr = fast.trace(f, d_logits, d_state), ref.trace(r, d_logits, d_state)
    for name in tf.terms:
        close(tf.terms[name], tr.terms[name], f"terms {name}")
    for k in range(depth):
        close(tf.dh_direct[k], tr.dh_direct[k], f"dh_direct[{k}]")
        close(tf.dh_total[k], tr.dh_total[k], f"dh_total[{k}]")


@pytest.mark.parametrize(
    "cell, notation, bias, depth", list(itertools.product(CELLS, ("lecture", "concat"), (True, False), (1, 2)))
)
@pytest.mark.parametrize("embedding", [None, 3])
def test_one_token_kernels_equal_the_reference_step(cell, notation, bias, depth, embedding):
    fast, ref = _pair(cell, notation, bias, depth, embedding=embedding, reads_input=notation == "concat")
    ids = np.random.default_rng(2).integers(0, D, 9)
    h0 = {name: s[:1] for name, s in random_state(fast).items()}
    stepper = Stepper(fast, h0)
    states = ref.layer_states(h0, 1, "test")
    for k in ids:
        z = stepper.step(int(k))
        logits, states = ref.run_step(np.array([k]), states)  # the reference step, one token
        close(z, logits[0], "one-token logits")
        state = ref.name_states(states)
        for name, s in stepper.state.items():
            close(s, state[name], f"stepper state {name}")
    # feed (a whole-window pass) lands in the same state as the reference steps
    s2 = Stepper(fast, h0)
    s2.feed(ids)
    for name, s in s2.state.items():
        close(s, state[name], f"feed state {name}")


@pytest.mark.parametrize(
    "cell, activation",
    [("elman", a) for a in ("tanh", "relu", "sigmoid", "identity")] + [("lstm", "tanh"), ("gru", "tanh")],
)
def test_activations_embedding_and_skip_paths_match(cell, activation):
    for embedding, reads_input, tokens in itertools.product((None, 3), (False, True), (False, True)):
        fast, ref = _pair(cell, "lecture", True, 2, embedding=embedding, reads_input=reads_input, activation=activation)
        x, y, _ = data(tokens, 4, seed=4)
        gf, gr = fast.loss_and_grad(x, y), ref.loss_and_grad(x, y)
        for name in gf.grads:
            close(gf.grads[name], gr.grads[name], f"grad {name} ({embedding=}, {reads_input=}, {tokens=})")


@pytest.mark.parametrize("layer_cls", [*CELLS.values(), ClassicGRULayer])
@pytest.mark.parametrize("bias, masked, tokens", list(itertools.product((True, False), repeat=3)))
def test_reference_step_backward_is_the_exact_vjp_of_step_forward(layer_cls, bias, masked, tokens):
    """The reference step itself against central differences (the reference is only as good as this),
    with and without a bias, a recurrent-dropout mask and token inputs."""
    rng = np.random.default_rng(11)
    if layer_cls is ElmanLayer:
        layer = layer_cls(D, H, bptt.activations.HIDDEN_ACTIVATIONS["tanh"], bias=bias)
    else:
        layer = layer_cls(D, H, bias=bias)
    params = layer.init_params(rng, np.float64)
    for v in params.values():
        v += 0.2 * rng.standard_normal(v.shape)
    w = layer.weights(params)
    x_t = rng.integers(0, D, B) if tokens else rng.standard_normal((B, D))
    state = tuple(rng.standard_normal((B, H)) for _ in layer.state_names)
    rmask = rng.choice([0.0, 1.0 / 0.6], (B, H)) if masked else None
    new, kept = layer.step_forward(w, x_t, state, rmask)
    seeds = tuple(rng.standard_normal(s.shape) for s in new)  # a random upstream gradient, never ones

    def J() -> float:  # reads x_t, state and the weights, which the loop below perturbs in place
        out = layer.step_forward(w, x_t, state, rmask)[0]
        return sum(float((a * s).sum()) for a, s in zip(out, seeds, strict=True))

    g = layer.step_backward(w, x_t, state, kept, seeds, rmask)
    assert (g.dx is None) == tokens
    pairs = [("state", s, d) for s, d in zip(state, g.dstate, strict=True)] + ([] if tokens else [("x_t", x_t, g.dx)])
    pairs += [(f"weight {k}", p, d) for k, (p, d) in enumerate(zip(w, g.dweights, strict=True)) if p is not None]
    eps = 1e-6
    for what, target, analytic in pairs:
        numeric = np.empty_like(target)
        for i in np.ndindex(target.shape):
            orig = target[i]
            target[i] = orig + eps
            plus = J()
            target[i] = orig - eps
            minus = J()
            target[i] = orig
            numeric[i] = (plus - minus) / (2 * eps)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8, err_msg=what)


def test_reference_mode_never_runs_a_fast_kernel(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("a fast kernel ran in reference mode")

    for cls in CELLS.values():
        monkeypatch.setattr(cls, "fast_forward", boom)
        monkeypatch.setattr(cls, "fast_adjoints", boom)
    m = bptt.RNN(D, [bptt.LayerSpec(kind, H) for kind in CELLS], O, seed=0, kernels="reference")
    x, y, _ = data(False, 3)
    r = m.loss_and_grad(x, y)
    assert np.isfinite(r.loss) and set(r.grads) >= set(m.params)
    with pytest.raises(AssertionError, match="fast kernel"):
        m.with_kernels("fast").loss_and_grad(x, y)


def test_kernels_argument_everywhere():
    for make in (
        lambda k: bptt.Elman(D, H, O, kernels=k),
        lambda k: bptt.LSTM(D, H, O, kernels=k),
        lambda k: bptt.GRU(D, H, O, kernels=k),
        lambda k: bptt.RNN(D, [bptt.LayerSpec("gru", H)], O, kernels=k),
    ):
        assert make("reference").kernels == "reference"
        assert make("fast").layers[0].kernels == "fast"
        with pytest.raises(ValueError, match=r"kernels must be one of \['fast', 'reference'\], got 'slow'"):
            make("slow")
    m = bptt.LSTM(D, H, O, seed=0)
    assert m.kernels == "fast" and "kernels" not in m.config()  # a run-time choice, not part of the model
    back = bptt.RNN.from_config(m.config(), params=m.params, kernels="reference")
    assert type(back) is bptt.LSTM and back.kernels == "reference"
    assert m.with_kernels("reference").copy().kernels == "reference"
    with pytest.raises(ValueError, match="with_kernels: kernels must be one of"):
        m.with_kernels(None)
    assert isinstance(m.layers[0], LSTMLayer)


# -- variable lengths, reverse directions, recurrent dropout, many-to-one --------------------------
SEQ_CELLS = (*CELLS, "gru_classic")  # gru_classic: LayerSpec("gru", H, reset_after=False)
SEQ_CASES = list(
    itertools.product(
        SEQ_CELLS, ("lecture", "concat"), (True, False), (False, True), (1, 2), (False, True), (False, True)
    )
)


@pytest.mark.parametrize("cell, notation, bias, tokens, depth, bidirectional, ragged", SEQ_CASES)
def test_sequence_features_equal_the_reference_step(cell, notation, bias, tokens, depth, bidirectional, ragged):
    kind, variant = ("gru", {"reset_after": False}) if cell == "gru_classic" else (cell, {})
    specs = [bptt.LayerSpec(kind, H, bidirectional=bidirectional, **variant) for _ in range(depth)]
    fast = bptt.RNN(
        D, specs, O, bias=bias, notation=notation, seed=3, dropout=0.3 if depth > 1 else 0.0, recurrent_dropout=0.4
    )
    randomise_biases(fast)
    ref = fast.with_kernels("reference")
    T = 6
    x, y, _ = data(tokens, T, seed=8)
    lengths = np.array([6, 1, 4]) if ragged else None
    h0 = random_state(fast)

    f, r = fast.forward(x, h0, lengths=lengths), ref.forward(x, h0, lengths=lengths)
    close(f.outputs, r.outputs, "outputs")
    for k, (a, b) in enumerate(zip(f.hidden, r.hidden, strict=True)):
        close(a, b, f"hidden[{k}]")
    for name in f.state:
        close(f.state[name], r.state[name], f"state {name}")
    for k, (ca, cb) in enumerate(zip(f.caches, r.caches, strict=True)):
        for fld in ca.__dataclass_fields__:
            close(getattr(ca, fld), getattr(cb, fld), f"cache[{k}].{fld}")

    rng = np.random.default_rng(4)
    d_logits = rng.standard_normal(f.logits.shape)
    tf, tr = fast.trace(f, d_logits), ref.trace(r, d_logits)
    for name in tf.terms:
        close(tf.terms[name], tr.terms[name], f"terms {name}")
        close(tf.terms[name].sum(axis=0), tf.grads[name], f"terms {name} sum to the gradient")

    masks = fast.loss_and_grad(x, y, h0, lengths=lengths, dropout_rng=np.random.default_rng(5)).dropout_masks
    for target in (y, y[0]):  # a loss at every real step; one per sequence
        for replay in (None, masks):
            gf = fast.loss_and_grad(x, target, h0, lengths=lengths, dropout_masks=replay)
            gr = ref.loss_and_grad(x, target, h0, lengths=lengths, dropout_masks=replay)
            assert gf.loss == pytest.approx(gr.loss, rel=RTOL)
            for name in gf.grads:
                close(gf.grads[name], gr.grads[name], f"grad {name} ({target.shape=}, dropout={replay is not None})")


# -- a padded batch runs longest first: step t on the first n_t rows only ---------------------------------
def _taken(d, rows, axis):
    return {k: np.take(v, rows, axis=axis) for k, v in d.items()}


@pytest.mark.parametrize("cell", SEQ_CELLS)
@pytest.mark.parametrize("bidirectional", (False, True))
@pytest.mark.parametrize("lengths", ([2, 6, 4, 6, 1], [3, 1, 4, 2, 2]))  # the second stops before T
def test_a_padded_batch_in_any_order_equals_it_sorted_longest_first(cell, bidirectional, lengths):
    """The stack sorts a padded batch once and puts every result back in the batch's order: running
    the batch as given equals running it already sorted (where nothing is reordered), row for row."""
    kind, variant = ("gru", {"reset_after": False}) if cell == "gru_classic" else (cell, {})
    specs = [bptt.LayerSpec(kind, H, bidirectional=bidirectional, **variant) for _ in range(2)]
    m = bptt.RNN(D, specs, O, seed=5, dropout=0.3, recurrent_dropout=0.2)
    randomise_biases(m)
    T, Bn = 6, len(lengths)
    lengths = np.array(lengths)
    rng = np.random.default_rng(9)
    x = rng.standard_normal((T, Bn, D))
    y = rng.integers(0, O, (T, Bn))
    h0 = {k: 0.5 * rng.standard_normal((Bn, *s)) for k, s in m.state_shapes.items()}
    order = np.argsort(-lengths, kind="stable")
    back = np.argsort(order)
    xs, ys, h0s, ls = x[:, order], y[:, order], _taken(h0, order, 0), lengths[order]

    f, fs = m.forward(x, h0, lengths=lengths), m.forward(xs, h0s, lengths=ls)
    assert fs.rows is None and np.array_equal(f.rows, order)
    close(f.outputs, fs.outputs[:, back], "outputs")
    for k, (a, b) in enumerate(zip(f.hidden, fs.hidden, strict=True)):
        close(a, b[:, back], f"hidden[{k}]")
    for name in f.state:
        close(f.state[name], fs.state[name][back], f"state {name}")
    if not bidirectional:
        for t in range(T):
            s, ss = m.state_at(f, t), m.state_at(fs, t)
            for name in s:
                close(s[name], ss[name][back], f"state_at({t}) {name}")

    d_logits = rng.standard_normal(f.logits.shape)
    d_state = {k: rng.standard_normal(v.shape) for k, v in f.state.items()}
    tr = m.trace(f, d_logits, d_state)
    trs = m.trace(fs, d_logits[:, order], _taken(d_state, order, 0))
    for name in tr.grads:
        g, gs = tr.grads[name], trs.grads[name]
        close(g, gs[back] if name in h0 else gs[:, back] if name == "x" else gs, f"grad {name}")
    for name in tr.terms:
        close(tr.terms[name], trs.terms[name], f"terms {name}")
    for k in range(len(m.layers)):
        close(tr.dh_direct[k], trs.dh_direct[k][:, back], f"dh_direct[{k}]")
        close(tr.dh_total[k], trs.dh_total[k][:, back], f"dh_total[{k}]")

    r = m.loss_and_grad(x, y, h0, lengths=lengths, dropout_rng=np.random.default_rng(2))
    masks = r.dropout_masks
    sorted_masks = bptt.engine.passes.DropoutMasks(
        outputs=tuple(a[:, order] for a in masks.outputs), recurrent=_taken(masks.recurrent, order, 0)
    )
    rs = m.loss_and_grad(xs, ys, h0s, lengths=ls, dropout_masks=sorted_masks)
    assert r.loss == pytest.approx(rs.loss, rel=RTOL)
    for name in r.grads:
        g, gs = r.grads[name], rs.grads[name]
        close(g, gs[back] if name in h0 else gs[:, back] if name == "x" else gs, f"dropout grad {name}")
    last = m.loss_and_grad(x, y[0], h0, lengths=lengths)  # one target per sequence: the final states
    last_s = m.loss_and_grad(xs, y[0][order], h0s, lengths=ls)
    close(last.outputs, last_s.outputs[back], "many-to-one outputs")
    close(last.grads["x"], last_s.grads["x"][:, back], "many-to-one grad x")


@pytest.mark.parametrize("layer_cls", [ElmanLayer, LSTMLayer, ClassicGRULayer])
def test_fast_kernels_refuse_a_padding_that_is_not_longest_first(layer_cls):
    from bptt.engine.activations import get_activation
    from bptt.engine.layers.base import Padding

    extra = {"activation": get_activation("tanh", "test")} if layer_cls is ElmanLayer else {}
    layer = layer_cls(D, H, **extra)
    params = layer.init_params(np.random.default_rng(0), np.float64)
    x = np.zeros((3, 2, D))
    state0 = tuple(np.zeros((2, H)) for _ in layer.state_names)
    with pytest.raises(ValueError, match="longest first"):
        layer.fast_forward(params, x, state0, pad=Padding.of(np.array([1, 3]), 3))
    H_out, _, _ = layer.fast_forward(params, x, state0, pad=Padding.of(np.array([3, 1]), 3))
    assert H_out.shape == (3, 2, H)
