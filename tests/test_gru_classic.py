"""The original GRU (``reset_after=False``: ``n = tanh(V_n x + b_n + W_n (r ⊙ h))``), three oracles deep.

1. Its reference step (``ClassicGRULayer.step_forward`` / ``step_backward``) against central
   differences, with and without a recurrent-dropout mask: in ``tests/test_kernels.py``, with every cell.
2. Its fast kernels (whole-window forward, adjoints, block-wise ``∂J/∂W``, per-step terms, the
   one-token kernel) against the reference step to 1e-12, through every feature of the network:
   depth, bias, token inputs, lengths, reverse directions, dropout, many-to-one targets.
3. The whole network against an independent PyTorch autograd implementation (float64), written
   below from the equations alone: an explicit loop over time, no ``torch.nn.GRU`` (whose reset
   is applied after the product) and no code from ``bptt``.

Then the named model (``bptt.GRU(..., reset_after=False)``: its parameters, its config round trip).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import bptt
from bptt.diagnostics.health import saturation
from bptt.engine.layers.gru_classic import ClassicGRUCache, ClassicGRULayer
from bptt.stepper import Stepper

D, H, O, B, T = 5, 4, 3, 3, 6
RTOL = 1e-12  # fast against reference: the same arithmetic, reordered
TORCH_TOL = 1e-9  # against PyTorch: the same equations, independently written
LENGTHS = np.array([6, 1, 4])


def close(got, want, what: str, rtol: float = RTOL) -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    diff = np.abs(got - want)
    err = float(diff.max(initial=0.0))
    if err > rtol * scale:
        i = np.unravel_index(int(diff.argmax()), diff.shape)
        raise AssertionError(f"{what}: worst at {i}: {got[i]!r} vs {want[i]!r} (error {err:.3g}, scale {scale:.3g})")


def model(depth=1, bias=True, bidirectional=False, **kw) -> bptt.RNN:
    specs = [bptt.LayerSpec("gru", H, reset_after=False, bidirectional=bidirectional)] * depth
    m = bptt.RNN(D, specs, O, bias=bias, seed=3, **kw)
    rng = np.random.default_rng(4)
    for p in m.params.values():
        if p.ndim == 1:
            p += 0.3 * rng.standard_normal(p.shape)  # nonzero biases, so every bias path is exercised
    return m


def data(tokens: bool, seed: int = 8):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, D, (T, B)) if tokens else rng.standard_normal((T, B, D))
    return x, rng.integers(0, O, (T, B))


def random_state(m, batch=B, seed=1):
    rng = np.random.default_rng(seed)
    return {name: 0.5 * rng.standard_normal((batch, *shape)) for name, shape in m.state_shapes.items()}


# -- 1. the reference step's central-difference check is tests/test_kernels.py's, for every cell ---------


# -- 2. the fast kernels equal the reference step -----------------------------------------------------
CASES = list(itertools.product((True, False), (False, True), (1, 2), (False, True), (False, True)))


@pytest.mark.parametrize("bias, tokens, depth, bidirectional, ragged", CASES)
def test_fast_kernels_equal_the_reference_step(bias, tokens, depth, bidirectional, ragged):
    fast = model(depth, bias, bidirectional, dropout=0.3 if depth > 1 else 0.0, recurrent_dropout=0.4)
    ref = fast.with_kernels("reference")
    assert all(isinstance(layer, ClassicGRULayer) and layer.kernels == "reference" for layer in ref.layers)
    x, y = data(tokens)
    lengths = LENGTHS if ragged else None
    h0 = random_state(fast)

    # forward: outputs, every layer's hidden states, the final state, every cache field
    f, r = fast.forward(x, h0, lengths=lengths), ref.forward(x, h0, lengths=lengths)
    close(f.outputs, r.outputs, "outputs")
    for k, (a, b) in enumerate(zip(f.hidden, r.hidden, strict=True)):
        close(a, b, f"hidden[{k}]")
    for name in f.state:
        close(f.state[name], r.state[name], f"state {name}")
    for k, (ca, cb) in enumerate(zip(f.caches, r.caches, strict=True)):
        assert type(ca) is type(cb) is ClassicGRUCache
        for field in ca.__dataclass_fields__:
            close(getattr(ca, field), getattr(cb, field), f"cache[{k}].{field}")
    if not bidirectional:
        for t in (0, T - 1):
            for name, s in fast.state_at(f, t).items():
                close(s, ref.state_at(r, t)[name], f"state_at({t}) {name}")

    # backward with gradients arriving at the final state, and the trace's per-step terms
    rng = np.random.default_rng(9)
    d_logits = rng.standard_normal(f.logits.shape)
    d_state = {name: rng.standard_normal(s.shape) for name, s in f.state.items()}
    bf, br = fast.backward(f, d_logits, d_state), ref.backward(r, d_logits, d_state)
    for name in bf:
        close(bf[name], br[name], f"backward {name}")
    tf, tr = fast.trace(f, d_logits, d_state), ref.trace(r, d_logits, d_state)
    for name in tf.terms:
        close(tf.terms[name], tr.terms[name], f"terms {name}")
        close(tf.terms[name].sum(axis=0), tf.grads[name], f"terms {name} sum to the gradient")
    for k in range(len(fast.layers)):
        close(tf.dh_total[k], tr.dh_total[k], f"dh_total[{k}]")
    W_name = fast.layers[-1].weight_names[1]
    part = fast.trace(f, d_logits, d_state, params=[W_name])  # one parameter's terms only
    assert list(part.terms) == [W_name]
    close(part.terms[W_name], tr.terms[W_name], f"terms {W_name} alone")

    # loss and every gradient: per-step and many-to-one targets, with and without replayed dropout
    w = np.random.default_rng(5).uniform(0.0, 1.0, (T, B))
    gf, gr = fast.loss_and_grad(x, y, h0, loss_weights=w), ref.loss_and_grad(x, y, h0, loss_weights=w)
    for name in gf.grads:
        close(gf.grads[name], gr.grads[name], f"grad {name} (loss weights)")
    masks = fast.loss_and_grad(x, y, h0, lengths=lengths, dropout_rng=np.random.default_rng(5)).dropout_masks
    assert masks is not None and len(masks.recurrent) == len(fast.layers)
    for target, replay in itertools.product((y, y[0]), (None, masks)):
        gf = fast.loss_and_grad(x, target, h0, lengths=lengths, dropout_masks=replay)
        gr = ref.loss_and_grad(x, target, h0, lengths=lengths, dropout_masks=replay)
        assert gf.loss == pytest.approx(gr.loss, rel=RTOL)
        assert gf.grads.keys() == gr.grads.keys()
        for name in gf.grads:
            close(gf.grads[name], gr.grads[name], f"grad {name} ({target.shape=}, dropout={replay is not None})")


@pytest.mark.parametrize(
    "bias, depth, embedding, reads_input", list(itertools.product((True, False), (1, 2), (None, 3), (False, True)))
)
def test_one_token_kernel_equals_the_reference_step(bias, depth, embedding, reads_input):
    fast = model(depth, bias, embedding_size=embedding, output_reads_input=reads_input)
    ref = fast.with_kernels("reference")
    ids = np.random.default_rng(2).integers(0, D, 9)
    h0 = random_state(fast, batch=1)
    stepper = Stepper(fast, h0)
    states = ref.layer_states(h0, 1, "test")
    for k in ids:
        z = stepper.step(int(k))
        logits, states = ref.run_step(np.array([k]), states)  # the reference step, one token
        close(z, logits[0], "one-token logits")
        state = ref.name_states(states)
        for name, s in stepper.state.items():
            close(s, state[name], f"stepper state {name}")
    s2 = Stepper(fast, h0)
    s2.feed(ids)  # a whole-window pass lands in the same state
    for name, s in s2.state.items():
        close(s, state[name], f"feed state {name}")


# -- 3. an independent PyTorch implementation -------------------------------------------------------
def torch_cell(x_t, h, V, W, b, rmask):
    """One step of the equations: gates r, z, n; W_n reads r ⊙ h̃; z ⊙ h reads the unmasked h."""
    n_h = h.shape[1]
    h_rec = h if rmask is None else h * rmask
    zx = x_t @ V.T if b is None else x_t @ V.T + b
    r = torch.sigmoid(zx[:, :n_h] + h_rec @ W[:n_h].T)
    z = torch.sigmoid(zx[:, n_h : 2 * n_h] + h_rec @ W[n_h : 2 * n_h].T)
    n = torch.tanh(zx[:, 2 * n_h :] + (r * h_rec) @ W[2 * n_h :].T)
    return (1 - z) * n + z * h


def torch_loss_and_grads(m, x, y, h0, lengths=None, masks=None):
    """``J`` and ``∂J/∂`` every parameter, initial state and (dense) input, by autograd."""
    config = m.config()
    specs, bias = config["layers"], config["bias"]
    leaves = {name: torch.tensor(v, requires_grad=True) for name, v in {**m.params, **h0}.items()}
    steps, batch = x.shape[:2]
    lengths = np.full(batch, steps) if lengths is None else np.asarray(lengths)
    if x.dtype.kind in "iu":
        X = F.one_hot(torch.tensor(x), D).double()
    else:
        X = leaves["x"] = torch.tensor(x, requires_grad=True)
    valid = torch.tensor(np.arange(steps)[:, None] < lengths[None, :])[:, :, None]  # (T, B, 1)
    # Step s of a reverse pass reads step lengths[b] − 1 − s of sequence b (its real steps backwards);
    # padding steps stay where they are. The same gather puts the reverse outputs back in time order.
    back = np.array([[lengths[b] - 1 - s if s < lengths[b] else s for b in range(batch)] for s in range(steps)])
    back = torch.tensor(back)[:, :, None]

    def reorder(a):
        return torch.gather(a, 0, back.expand(-1, -1, a.shape[2]))

    inp = X
    for k, spec in enumerate(specs):
        outs, finals = [], []
        for direction in ("", "_reverse") if spec.get("bidirectional") else ("",):
            s = (f"_l{k}" if len(specs) > 1 else "") + direction
            V, W = leaves["V" + s], leaves["W" + s]
            b = leaves["b" + s] if bias else None
            rmask = None if masks is None else torch.tensor(masks.recurrent["h0" + s])
            seq = reorder(inp) if direction else inp
            h, hs = leaves["h0" + s], []
            for t in range(steps):
                h = torch.where(valid[t], torch_cell(seq[t], h, V, W, b, rmask), h)  # padding: h stays
                hs.append(torch.where(valid[t], h, 0.0))  # ... and outputs 0
            out = torch.stack(hs)
            outs.append(reorder(out) if direction else out)
            finals.append(h)
        inp = torch.cat(outs, dim=-1)
        if masks is not None and k < len(masks.outputs):
            inp = inp * torch.tensor(masks.outputs[k])
    U, b_y = leaves["U"], leaves.get("b_y")
    if y.ndim == 1:  # many-to-one: one loss per sequence, on the top layer's final states
        Z = torch.cat(finals, dim=-1) @ U.T + (0.0 if b_y is None else b_y)
        J = F.cross_entropy(Z, torch.tensor(y), reduction="sum") / batch
    else:
        Z = inp @ U.T + (0.0 if b_y is None else b_y)
        losses = F.cross_entropy(Z.reshape(-1, O), torch.tensor(y).reshape(-1), reduction="none")
        J = (losses * valid.reshape(-1)).sum() / batch
    J.backward()
    return float(J.detach()), {name: leaf.grad.numpy() for name, leaf in leaves.items()}


TORCH_CASES = list(itertools.product((1, 2), (True, False), (False, True), (False, True), (False, True)))


@pytest.mark.parametrize("depth, bias, tokens, bidirectional, ragged", TORCH_CASES)
def test_loss_and_every_gradient_match_pytorch(depth, bias, tokens, bidirectional, ragged):
    m = model(depth, bias, bidirectional, dropout=0.3 if depth > 1 else 0.0, recurrent_dropout=0.4)
    x, y = data(tokens, seed=6)
    h0 = random_state(m)
    lengths = LENGTHS if ragged else None
    masks = m.loss_and_grad(x, y, h0, lengths=lengths, dropout_rng=np.random.default_rng(7)).dropout_masks
    for target, replay in itertools.product((y, y[0]), (None, masks)):
        got = m.loss_and_grad(x, target, h0, lengths=lengths, dropout_masks=replay)
        J, want = torch_loss_and_grads(m, x, target, h0, lengths, replay)
        what = f"({target.shape=}, dropout={replay is not None})"
        assert got.loss == pytest.approx(J, rel=TORCH_TOL), what
        assert got.grads.keys() == want.keys(), what
        for name in want:
            close(got.grads[name], want[name], f"grad {name} {what}", rtol=TORCH_TOL)


# -- 4. the named model ---------------------------------------------------------------------------
def test_named_model_parameters_and_config_round_trip():
    m = bptt.GRU(D, H, O, reset_after=False, seed=0)
    assert list(m.params) == ["V", "W", "b", "U", "b_y"]  # no b_hn: the reset acts before the product
    assert {k: v.shape for k, v in m.params.items()} == {
        "V": (3 * H, D), "W": (3 * H, H), "b": (3 * H,), "U": (O, H), "b_y": (O,)
    }  # fmt: skip
    bound = 1.0 / np.sqrt(H)
    assert np.abs(m.params["V"]).max() <= bound and np.abs(m.params["W"]).max() <= bound
    assert not m.params["b"].any()
    assert isinstance(m.layers[0], ClassicGRULayer)
    back = bptt.RNN.from_config(m.config(), params=m.params)
    assert type(back) is bptt.GRU and back.config() == m.config()
    assert back.config()["layers"][0]["reset_after"] is False
    assert isinstance(back.layers[0], ClassicGRULayer)
    for name in m.params:
        np.testing.assert_array_equal(back.params[name], m.params[name])
    two = bptt.GRU(D, H, O, reset_after=False, num_layers=2, bidirectional=True, bias=False, seed=0)
    names = ["V_l0", "W_l0", "V_l0_reverse", "W_l0_reverse", "V_l1", "W_l1", "V_l1_reverse", "W_l1_reverse"]
    assert list(two.params) == [*names, "U"]  # bias=False: no b_y either
    assert two.params["V_l1"].shape == (3 * H, 2 * H) and two.params["U"].shape == (O, 2 * H)

    # what training logs reads the caches' gate activations
    x, _ = data(False)
    sat = saturation(m, m.forward(x))
    assert sat.shape == (T, 1) and np.all((sat >= 0) & (sat <= 1))
