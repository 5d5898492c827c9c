"""PyTorch modules in and out: bptt.from_torch / bptt.to_torch, against the modules themselves.

Every converted network computes what the PyTorch modules compute (outputs, final states, with
and without packed variable lengths), its gradients equal PyTorch autograd on the original
modules (float64, ≤ 1e-9: every weight, both biases, the embedding, the input and the initial
state), and the round trips are exact.
"""

from __future__ import annotations

import itertools
import sys
import warnings

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import bptt
from bptt.interop.pytorch import from_torch, to_torch

D, H, O, T, B, VOCAB = 4, 3, 5, 6, 3, 7
LENGTHS = np.array([4, 6, 1])
TORCH = {"rnn": torch.nn.RNN, "rnn_relu": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}

# cell × depth × direction × dtype, with the biases and the embedding varied along them.
CASES = [
    (cell, depth, bi, dtype, bias, linear_bias, emb)
    for (cell, depth, bi, dtype), (bias, linear_bias, emb) in zip(
        itertools.product(TORCH, (1, 2), (False, True), ("float64", "float32")),
        itertools.cycle(itertools.product((True, False), (True, False), (False, True))),
    )
]


def _modules(cell, depth, bi, dtype, bias, linear_bias, emb, batch_first=False, seed=0):
    torch.manual_seed(seed)
    kw = {"nonlinearity": "relu"} if cell == "rnn_relu" else {}
    rnn = TORCH[cell](D, H, num_layers=depth, bias=bias, bidirectional=bi, batch_first=batch_first, **kw)
    linear = torch.nn.Linear(H * (2 if bi else 1), O, bias=linear_bias)
    embedding = torch.nn.Embedding(VOCAB, D) if emb else None
    mods = [m for m in (rnn, linear, embedding) if m is not None]
    with torch.no_grad():
        for m in mods:
            m.to(getattr(torch, dtype))
            for p in m.parameters():
                p.uniform_(-0.6, 0.6)  # biases too: PyTorch's two biases must both count
    return rnn, linear, embedding


def _inputs(emb, dtype, seed=1):
    rng = np.random.default_rng(seed)
    if emb:
        return rng.integers(0, VOCAB, (T, B))
    return rng.standard_normal((T, B, D)).astype(dtype)


def _torch_run(rnn, linear, embedding, x, h0=None, lengths=None):
    """PyTorch's outputs (T, B, O) (0 past each length) and final states (layers·dirs, B, H)."""
    xt = torch.from_numpy(x)
    inp = embedding(xt) if embedding is not None else xt
    if rnn.batch_first:
        inp = inp.transpose(0, 1)
    if lengths is not None:
        inp = pack_padded_sequence(inp, torch.from_numpy(lengths), batch_first=rnn.batch_first, enforce_sorted=False)
    out, state = rnn(inp, h0)
    if lengths is not None:
        out, _ = pad_packed_sequence(out, batch_first=rnn.batch_first, total_length=T)
    if rnn.batch_first:
        out = out.transpose(0, 1)
    return linear(out), state


def _state_names(depth, bi):
    return [f"h0{f'_l{k}' if depth > 1 else ''}{d}" for k in range(depth) for d in (("", "_reverse") if bi else ("",))]


def _as_torch_state(m, names, cell, state):
    """bptt's named states → PyTorch's (layers·dirs, B, H) (a pair for the LSTM)."""
    h = torch.from_numpy(np.stack([state[n] for n in names]))
    if cell != "lstm":
        return h
    return h, torch.from_numpy(np.stack([state[n.replace("h0", "c0")] for n in names]))


@pytest.mark.parametrize("cell, depth, bi, dtype, bias, linear_bias, emb", CASES)
def test_from_torch_computes_what_the_modules_compute(cell, depth, bi, dtype, bias, linear_bias, emb):
    rnn, linear, embedding = _modules(cell, depth, bi, dtype, bias, linear_bias, emb)
    m = from_torch(rnn, linear, "identity", embedding=embedding)
    assert m.dtype == np.dtype(dtype) and m.bias == bias and m.output_bias == linear_bias
    tol = 1e-12 if dtype == "float64" else 2e-5
    x = _inputs(emb, dtype)
    names = _state_names(depth, bi)
    rng = np.random.default_rng(2)
    h0 = {n: rng.standard_normal((B, H)).astype(dtype) for n in m.state_shapes}
    for lengths in (None, LENGTHS):
        fwd = m.forward(x, h0, lengths=lengths)
        with torch.no_grad():
            want, state = _torch_run(rnn, linear, embedding, x, _as_torch_state(m, names, cell, h0), lengths)
        np.testing.assert_allclose(fwd.outputs, want.numpy(), rtol=tol, atol=tol)
        h_n = state[0] if cell == "lstm" else state
        for i, n in enumerate(names):
            np.testing.assert_allclose(fwd.state[n], h_n[i].numpy(), rtol=tol, atol=tol, err_msg=n)
            if cell == "lstm":
                c = n.replace("h0", "c0")
                np.testing.assert_allclose(fwd.state[c], state[1][i].numpy(), rtol=tol, atol=tol, err_msg=c)


@pytest.mark.parametrize("cell, depth, bi, dtype, bias, linear_bias, emb", [c for c in CASES if c[3] == "float64"])
def test_gradients_of_an_imported_model_equal_pytorch_autograd(cell, depth, bi, dtype, bias, linear_bias, emb):
    """J = Σ w ⊙ (linear outputs): every PyTorch parameter's gradient, the input's and h0's, against bptt's."""
    rnn, linear, embedding = _modules(cell, depth, bi, dtype, bias, linear_bias, emb)
    m = from_torch(rnn, linear, "identity", embedding=embedding)
    x = _inputs(emb, dtype)
    rng = np.random.default_rng(3)
    w = rng.standard_normal((T, B, O))
    h0 = {n: rng.standard_normal((B, H)) for n in m.state_shapes}
    names = _state_names(depth, bi)
    for lengths in (None, LENGTHS):
        fwd = m.forward(x, h0, lengths=lengths)
        got = m.backward(fwd, w)

        for mod in (rnn, linear, embedding):
            if mod is not None:
                mod.zero_grad()
        ts = _as_torch_state(m, names, cell, h0)
        ts = tuple(t.clone().requires_grad_() for t in ts) if cell == "lstm" else ts.clone().requires_grad_()
        xt = torch.from_numpy(x) if emb else torch.from_numpy(x).requires_grad_()
        inp = embedding(xt) if emb else xt
        if lengths is not None:
            inp = pack_padded_sequence(inp, torch.from_numpy(lengths), enforce_sorted=False)
        seq, _ = rnn(inp, ts)
        if lengths is not None:
            seq, _ = pad_packed_sequence(seq, total_length=T)
        (linear(seq) * torch.from_numpy(w)).sum().backward()

        def close(a, b, what, lengths=lengths):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11, err_msg=f"{what} (lengths={lengths})")

        close(got["U"], linear.weight.grad.numpy(), "U")
        if linear_bias:
            close(got["b_y"], linear.bias.grad.numpy(), "b_y")
        if emb:
            close(got["E"], embedding.weight.grad.numpy().T, "E")
        else:
            close(got["x"], xt.grad.numpy(), "x")
        keys = [(k, d) for k in range(depth) for d in ("", "_reverse")[: 1 + bi]]
        for layer, (k, d) in zip(m.layers, keys, strict=True):
            g = layer.named  # bptt's names for (V, W, b[, b_hn])
            tg = {p: getattr(rnn, f"{p}_l{k}{d}").grad.numpy() for p in ("weight_ih", "weight_hh")}
            bias_names = () if not bias else ("bias_ih", "bias_hh")
            tg.update({p: getattr(rnn, f"{p}_l{k}{d}").grad.numpy() for p in bias_names})
            want = [tg["weight_ih"], tg["weight_hh"]]
            if bias:
                if cell == "gru":  # b = b_ih + [b_hh_r; b_hh_z; 0] and b_hn = b_hh_n: both read the same ∂J
                    close(tg["bias_ih"][: 2 * H], tg["bias_hh"][: 2 * H], "PyTorch's own two biases")
                    want += [tg["bias_ih"], tg["bias_hh"][2 * H :]]
                else:
                    close(tg["bias_ih"], tg["bias_hh"], "PyTorch's own two biases")
                    want += [tg["bias_ih"]]
            else:
                want += [None, None] if cell == "gru" else [None]
            for name, value in g(tuple(want)).items():
                close(got[name], value, name)
        ht = ts[0] if cell == "lstm" else ts
        for i, n in enumerate(names):
            close(got[n], ht.grad[i].numpy(), n)
            if cell == "lstm":
                close(got[n.replace("h0", "c0")], ts[1].grad[i].numpy(), n.replace("h0", "c0"))


@pytest.mark.parametrize("cell, depth, bi, dtype, bias, linear_bias, emb", CASES[::3])
def test_round_trips(cell, depth, bi, dtype, bias, linear_bias, emb):
    rnn, linear, embedding = _modules(cell, depth, bi, dtype, bias, linear_bias, emb)
    m = from_torch(rnn, linear, "softmax", embedding=embedding)
    back = to_torch(m)
    assert len(back) == (3 if emb else 2)
    rnn2, linear2 = back[:2]
    assert type(rnn2) is type(rnn) and rnn2.batch_first is False
    assert getattr(rnn2, "nonlinearity", None) == getattr(rnn, "nonlinearity", None)
    x = _inputs(emb, dtype)
    with torch.no_grad():  # to_torch(from_torch(rnn)) computes what rnn computes
        a, _ = _torch_run(rnn, linear, embedding, x, lengths=LENGTHS)
        b, _ = _torch_run(rnn2, linear2, back[2] if emb else None, x, lengths=LENGTHS)
    tol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=tol, atol=tol)
    again = from_torch(*back[:2], "softmax", embedding=back[2] if emb else None)  # exact, bit for bit
    assert again.params.keys() == m.params.keys()
    for k in m.params:
        assert np.array_equal(again.params[k], m.params[k]) and again.params[k].dtype == m.params[k].dtype, k


@pytest.mark.parametrize("make", ["elman", "lstm", "gru"])
def test_to_torch_of_a_bptt_model(make):
    """A network made in bptt (its one bias in bias_ih) computes the same in PyTorch."""
    m = {"elman": bptt.Elman, "lstm": bptt.LSTM, "gru": bptt.GRU}[make](
        D, H, O, num_layers=2, bidirectional=True, output="identity", dropout=0.25, seed=0
    )
    rng = np.random.default_rng(0)
    for k in m.params:
        m.params[k] += 0.3 * rng.standard_normal(m.params[k].shape)
    rnn, linear = to_torch(m)
    assert rnn.dropout == 0.25 and rnn.training
    rnn.eval()
    x = rng.standard_normal((T, B, D))
    with torch.no_grad():
        want, _ = _torch_run(rnn, linear, None, x, lengths=LENGTHS)
    np.testing.assert_allclose(m.forward(x, lengths=LENGTHS).outputs, want.numpy(), rtol=1e-12, atol=1e-12)


def test_batch_first_modules_are_accepted_and_bptt_stays_time_major():
    rnn, linear, _ = _modules("gru", 2, True, "float64", True, True, False, batch_first=True)
    m = from_torch(rnn, linear, "identity")
    x = _inputs(False, "float64")
    with torch.no_grad():
        want, _ = _torch_run(rnn, linear, None, x, lengths=LENGTHS)  # fed batch-major, compared time-major
    np.testing.assert_allclose(m.forward(x, lengths=LENGTHS).outputs, want.numpy(), rtol=1e-12, atol=1e-12)


def test_refusals_name_the_feature():
    lstm = torch.nn.LSTM(D, H)
    with pytest.raises(ValueError, match=r"from_torch: rnn has proj_size=2 \(LSTM projections\)"):
        from_torch(torch.nn.LSTM(D, H, proj_size=2), torch.nn.Linear(2, O))
    with pytest.raises(TypeError, match=r"from_torch: rnn must be a torch.nn.RNN, LSTM or GRU, got Linear"):
        from_torch(torch.nn.Linear(D, H), torch.nn.Linear(H, O))
    with pytest.raises(TypeError, match=r"from_torch: linear must be a torch.nn.Linear, got LSTM"):
        from_torch(lstm, lstm)
    with pytest.raises(ValueError, match=r"linear.in_features must be 3 \(the rnn's output size\), got 6"):
        from_torch(lstm, torch.nn.Linear(2 * H, O))
    with pytest.raises(ValueError, match=r"embedding has max_norm"):
        from_torch(lstm, torch.nn.Linear(H, O), embedding=torch.nn.Embedding(VOCAB, D, max_norm=1.0))
    with pytest.raises(ValueError, match=r"embedding.embedding_dim must be rnn.input_size = 4, got 5"):
        from_torch(lstm, torch.nn.Linear(H, O), embedding=torch.nn.Embedding(VOCAB, 5))
    with pytest.raises(ValueError, match=r"parameters must all be float32 or all float64, got \['float16'\]"):
        from_torch(torch.nn.GRU(D, H).half(), torch.nn.Linear(H, O).half())
    with pytest.raises(ValueError, match=r"output must be one of"):
        from_torch(lstm, torch.nn.Linear(H, O), "tanh")
    refused = {
        "one cell kind, size and direction": bptt.RNN(D, [bptt.LayerSpec("gru", H), bptt.LayerSpec("lstm", H)], O),
        "reset_after=False": bptt.GRU(D, H, O, reset_after=False),
        "nonlinearity 'tanh' or 'relu'": bptt.Elman(D, H, O, activation="identity"),
        "reads the input": bptt.Elman(D, H, O, output_reads_input=True),
    }
    for what, model in refused.items():
        with pytest.raises(ValueError, match=f"to_torch: .*{what}"):
            to_torch(model)
    with pytest.warns(UserWarning, match="PyTorch has no recurrent dropout"):
        to_torch(bptt.LSTM(D, H, O, recurrent_dropout=0.2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        to_torch(bptt.LSTM(D, H, O))


def test_without_torch_the_calls_name_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(ImportError, match=r"bptt.from_torch needs torch: pip install 'bptt\[torch\]'"):
        from_torch(None, None)
    with pytest.raises(ImportError, match=r"bptt.to_torch needs torch: pip install 'bptt\[torch\]'"):
        to_torch(bptt.LSTM(D, H, O))
