"""bptt export / bptt import: PyTorch state dicts as safetensors (no pickle, no torch in bptt), end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import safetensors.torch
import torch

import bptt
from bptt.cli import main
from bptt.files.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from bptt.text.vocab import Vocabulary

VOCAB = Vocabulary(tuple("abcdefgh "), "char")
V, E, H = len(VOCAB.tokens), 5, 6


def _lm_checkpoint(tmp_path, cell="lstm", **kw):
    m = {"elman": bptt.Elman, "lstm": bptt.LSTM, "gru": bptt.GRU}[cell](V, H, V, embedding_size=E, seed=0, **kw)
    rng = np.random.default_rng(0)
    for k in m.params:
        m.params[k] += 0.2 * rng.standard_normal(m.params[k].shape)
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, Checkpoint(model=m, vocab=VOCAB))
    return m, path


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


class Container(torch.nn.Module):
    """A user's model: any module names; bptt import finds the parts by their keys and shapes."""

    def __init__(self, cell, bidirectional=False, layers=2, bias=True, embedding=True, dtype=torch.float32):
        super().__init__()
        self.emb = torch.nn.Embedding(V, E) if embedding else None
        rnn = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
        self.encoder = rnn(E if embedding else V, H, num_layers=layers, bidirectional=bidirectional, bias=bias)
        self.head = torch.nn.Linear(H * (2 if bidirectional else 1), V)
        self.to(dtype)

    def forward(self, x):
        return self.head(self.encoder(self.emb(x) if self.emb is not None else x)[0])


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_export_torch_loads_into_the_modules_it_describes(tmp_path, capsys, cell):
    m, ckpt = _lm_checkpoint(tmp_path, cell, num_layers=2, bidirectional=True)
    out = tmp_path / "torch.safetensors"
    code, printed, err = _run(capsys, "export", ckpt, "--format", "torch", "-o", out)
    assert code == 0, err
    assert printed.strip() == str(out)
    state = safetensors.torch.load_file(out)  # the user's side: no pickle anywhere
    with open(out, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))["__metadata__"]
    modules = json.loads(header["modules"])
    (rnn_cls, rnn_kw), (_, lin_kw), (_, emb_kw) = (
        next(iter(modules[k].items())) for k in ("rnn", "linear", "embedding")
    )
    make = {"torch.nn.RNN": torch.nn.RNN, "torch.nn.LSTM": torch.nn.LSTM, "torch.nn.GRU": torch.nn.GRU}
    net = torch.nn.ModuleDict(
        {"rnn": make[rnn_cls](**rnn_kw), "linear": torch.nn.Linear(**lin_kw), "embedding": torch.nn.Embedding(**emb_kw)}
    ).double()
    net.load_state_dict(state)  # strict: every key, every shape
    x = np.random.default_rng(1).integers(0, V, (7, 3))
    with torch.no_grad():
        want = net["linear"](net["rnn"](net["embedding"](torch.from_numpy(x)))[0]).softmax(-1).numpy()
    np.testing.assert_allclose(m.forward(x).outputs, want, rtol=1e-12, atol=1e-13)
    # and back: bptt import of bptt's own export gives the checkpoint's parameters and vocabulary exactly
    back = tmp_path / "back.safetensors"
    assert _run(capsys, "import", out, "-o", back)[0] == 0
    loaded = load_checkpoint(back)
    assert loaded.vocab == VOCAB and type(loaded.model) is type(m)
    for k in m.params:
        assert np.array_equal(loaded.model.params[k], m.params[k]), k


@pytest.mark.parametrize(
    "cell, bidirectional, bias", [("lstm", True, True), ("gru", False, False), ("rnn", True, True)]
)
def test_import_a_users_state_dict_then_info_sample_explain(tmp_path, capsys, cell, bidirectional, bias):
    torch.manual_seed(0)
    user = Container(cell, bidirectional, bias=bias)
    state_file = tmp_path / "user.safetensors"
    safetensors.torch.save_file(user.state_dict(), state_file)
    vocab_file = tmp_path / "vocab.json"
    vocab_file.write_text(json.dumps(list(VOCAB.tokens)))
    ckpt = tmp_path / "imported.safetensors"
    flags = ["--cell", cell, "--layers", 2, "--hidden-size", H] + (["--bidirectional"] if bidirectional else [])
    code, _, err = _run(capsys, "import", state_file, *flags, "--vocab", vocab_file, "-o", ckpt)
    assert code == 0, err
    m = load_checkpoint(ckpt).model
    x = np.random.default_rng(2).integers(0, V, (5, 2))
    with torch.no_grad():
        want = user(torch.from_numpy(x)).softmax(-1).numpy()
    np.testing.assert_allclose(m.forward(x).outputs, want, rtol=1e-5, atol=1e-6)
    code, info, err = _run(capsys, "info", ckpt)
    assert code == 0 and "vocabulary  9 chars" in info, err
    if not bidirectional:  # one-step generation needs a one-way network
        code, text, err = _run(capsys, "sample", ckpt, "--prime", "ab", "-n", 20, "--seed", 0)
        assert code == 0 and text.startswith("ab") and len(text.rstrip("\n")) == 22, err


def test_import_infers_what_the_flags_leave_out_and_checks_what_they_say(tmp_path, capsys):
    torch.manual_seed(0)
    user = Container("gru", bidirectional=True, layers=2, dtype=torch.float64)
    state_file = tmp_path / "user.safetensors"
    safetensors.torch.save_file(user.state_dict(), state_file)
    ckpt = tmp_path / "m.safetensors"
    assert _run(capsys, "import", state_file, "-o", ckpt)[0] == 0
    m = load_checkpoint(ckpt).model
    assert m.specs == (bptt.LayerSpec("gru", H, bidirectional=True),) * 2 and m.dtype == np.float64
    code, _, err = _run(capsys, "import", state_file, "--cell", "lstm", "-o", tmp_path / "x.safetensors")
    assert code == 2
    assert err.strip() == (
        f"bptt: error: {state_file}: encoder.weight_ih_l0 has shape (18, 5), expected (24, 5) for "
        f"--cell lstm --layers 2 --hidden-size {H} --bidirectional"
    )
    code, _, err = _run(capsys, "import", state_file, "--layers", 3, "-o", tmp_path / "x.safetensors")
    assert code == 2 and "missing encoder.weight_ih_l2, encoder.weight_hh_l2 and 6 more" in err and err.count("\n") == 1


def _bad_state(tmp_path, name, state):
    path = tmp_path / name
    safetensors.torch.save_file(state, path)
    return path


def test_bad_state_dicts_are_one_line_errors(tmp_path, capsys):
    torch.manual_seed(0)
    good = Container("lstm", layers=1).state_dict()
    cases = {
        "pickle": (tmp_path / "model.pt", "a .pt/.pth file is a pickle"),
        "proj": (
            _bad_state(
                tmp_path,
                "proj.safetensors",
                {
                    **{f"rnn.{k}": v for k, v in torch.nn.LSTM(V, H, proj_size=2).state_dict().items()},
                    "fc.weight": torch.zeros(V, 2),
                },
            ),
            "weight_hr_l0 is an LSTM projection (proj_size > 0)",
        ),
        "no rnn": (
            _bad_state(tmp_path, "norrn.safetensors", {"fc.weight": torch.zeros(3, 3)}),
            "expected one recurrent module",
        ),
        "extra": (
            _bad_state(tmp_path, "extra.safetensors", {**good, "other.weight": torch.zeros(2, 2)}),
            "unexpected keys ['other.weight']",
        ),
        "no readout": (
            _bad_state(tmp_path, "nohead.safetensors", {k: v for k, v in good.items() if not k.startswith("head")}),
            "no readout (nn.Linear) weight of shape (O, 6)",
        ),
        "ints": (
            _bad_state(tmp_path, "ints.safetensors", {**good, "head.bias": torch.zeros(V, dtype=torch.int64)}),
            "head.bias is int64",
        ),
        "not safetensors": (tmp_path / "junk.safetensors", "not a safetensors state dict"),
    }
    (tmp_path / "model.pt").write_bytes(b"\x80\x04 pickle")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    for what, (path, message) in cases.items():
        code, _, err = _run(capsys, "import", path, "-o", tmp_path / "out.safetensors")
        assert code == 2 and message in err and err.count("\n") == 1, (what, err)
        assert not (tmp_path / "out.safetensors").exists()
    code, _, err = _run(capsys, "import", tmp_path / "model.pt", "-o", tmp_path / "o.safetensors")
    assert 'torch.load("' in err and "weights_only=True" in err and "safetensors.torch.save_file(state" in err


def test_export_refuses_what_torch_cannot_hold(tmp_path, capsys):
    m = bptt.Elman(V, H, V, activation="identity", seed=0)
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, Checkpoint(model=m))
    code, _, err = _run(capsys, "export", path, "--format", "torch", "-o", tmp_path / "t.safetensors")
    assert code == 2 and "nonlinearity 'tanh' or 'relu'" in err and not (tmp_path / "t.safetensors").exists()


def test_export_onnx_runs_in_onnxruntime(tmp_path, capsys):
    import onnxruntime as ort

    m, ckpt = _lm_checkpoint(tmp_path, "gru", num_layers=2, bidirectional=True)
    out = tmp_path / "model.onnx"
    code, printed, err = _run(capsys, "export", ckpt, "--format", "onnx", "-o", out)
    assert code == 0 and printed.strip() == str(out), err
    x = np.random.default_rng(3).integers(0, V, (7, 3))
    lengths = np.array([7, 2, 5])
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    y = session.run(["y"], {"x": x.astype(np.int64), "sequence_lens": lengths.astype(np.int32)})[0]
    np.testing.assert_allclose(y, m.forward(x, lengths=lengths).outputs, rtol=1e-5, atol=1e-5)


def test_import_tells_the_readout_from_an_embedding_of_the_same_width(tmp_path, capsys):
    """embedding_dim == hidden_size (PyTorch's word_language_model, weight tying): the readout is the
    weight with a bias beside it; without one, --readout names it."""
    torch.manual_seed(0)
    emb, rnn, head = torch.nn.Embedding(V, H), torch.nn.LSTM(H, H), torch.nn.Linear(H, V)
    state = {"emb.weight": emb.weight, **{f"rnn.{k}": v for k, v in rnn.state_dict().items()}}
    path = _bad_state(tmp_path, "tied.safetensors", {**state, "head.weight": head.weight, "head.bias": head.bias})
    assert _run(capsys, "import", path, "-o", tmp_path / "a.safetensors")[0] == 0
    m = load_checkpoint(tmp_path / "a.safetensors").model
    assert m.embedding_size == H and np.array_equal(m.params["U"], head.weight.detach().numpy())
    no_bias = _bad_state(tmp_path, "nobias.safetensors", {**state, "head.weight": head.weight})
    code, _, err = _run(capsys, "import", no_bias, "-o", tmp_path / "b.safetensors")
    assert code == 2 and "several weights could be the readout" in err and "--readout KEY" in err
    flags = ["--readout", "head.weight", "--embedding", "emb.weight"]
    assert _run(capsys, "import", no_bias, *flags, "-o", tmp_path / "b.safetensors")[0] == 0
    code, _, err = _run(capsys, "import", no_bias, "--readout", "nope.weight", "-o", tmp_path / "c.safetensors")
    assert code == 2 and "--readout nope.weight must be a 2-D weight of 6 columns, got no such key" in err


def test_import_refuses_malformed_recurrent_weights_and_hostile_json_in_one_line(tmp_path, capsys):
    torch.manual_seed(0)
    good = Container("gru", layers=1).state_dict()
    bad = {
        "missing": {k: v for k, v in good.items() if k != "encoder.weight_hh_l0"},
        "1-D": {**good, "encoder.weight_hh_l0": torch.zeros(3 * H)},
        "empty": {**good, "encoder.weight_hh_l0": torch.zeros(0, 0)},
        "1-D ih": {**good, "encoder.weight_ih_l0": torch.zeros(3 * H)},
    }
    for what, state in bad.items():
        code, _, err = _run(capsys, "import", _bad_state(tmp_path, "x.safetensors", state), "-o", tmp_path / "o")
        assert code == 2 and "must be a non-empty matrix" in err and err.count("\n") == 1, (what, err)
    ok = _bad_state(tmp_path, "ok.safetensors", good)
    nested = tmp_path / "nested.json"
    nested.write_text("[" * 100_000)
    code, _, err = _run(capsys, "import", ok, "--vocab", nested, "-o", tmp_path / "o.safetensors")
    assert code == 2 and "nested" in err and err.count("\n") == 1
    _, ckpt = _lm_checkpoint(tmp_path, "gru")
    exported = tmp_path / "exported.safetensors"
    assert _run(capsys, "export", ckpt, "--format", "torch", "-o", exported)[0] == 0
    arrays = safetensors.torch.load_file(exported)
    with open(exported, "rb") as f:
        meta = json.loads(f.read(int.from_bytes(f.read(8), "little")))["__metadata__"]
    safetensors.torch.save_file(arrays, exported, metadata={**meta, "vocab": "[" * 100_000})
    code, _, err = _run(capsys, "import", exported, "-o", tmp_path / "o.safetensors")
    assert code == 2 and "its vocabulary is unreadable" in err and err.count("\n") == 1


def test_export_then_import_keeps_the_nonlinearity_and_output(tmp_path, capsys):
    m = bptt.Elman(V, H, V, activation="relu", output="identity", num_layers=2, seed=0)
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, Checkpoint(model=m))
    exported, back = tmp_path / "t.safetensors", tmp_path / "back.safetensors"
    assert _run(capsys, "export", path, "--format", "torch", "-o", exported)[0] == 0
    assert _run(capsys, "import", exported, "-o", back)[0] == 0
    loaded = load_checkpoint(back).model
    assert loaded.config() == m.config()
    code, _, err = _run(capsys, "import", exported, "--output", "softmax", "-o", tmp_path / "x.safetensors")
    assert code == 2 and "--output softmax contradicts the file's own output identity" in err


def test_import_flags_that_do_not_fit_name_the_recurrent_key(tmp_path, capsys):
    torch.manual_seed(0)
    path = _bad_state(tmp_path, "u.safetensors", Container("lstm", layers=1).state_dict())
    code, _, err = _run(capsys, "import", path, "--cell", "lstm", "--hidden-size", 5, "-o", tmp_path / "o.safetensors")
    assert code == 2 and f"encoder.weight_ih_l0 has shape (24, {E}), expected (20, {E})" in err
    code, _, err = _run(capsys, "import", path, "--bidirectional", "-o", tmp_path / "o.safetensors")
    assert code == 2 and "encoder.* does not fit --cell lstm --layers 1 --hidden-size 6 --bidirectional" in err
    assert "missing encoder.weight_ih_l0_reverse, encoder.weight_hh_l0_reverse and 2 more" in err
