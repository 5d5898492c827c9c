"""bptt.export_onnx: the exported graph, run by onnxruntime, computes what bptt computes.

The oracle is onnxruntime (not ``onnx.reference``, which ignores ``sequence_lens``): outputs ŷ and
every final state agree with ``model.forward`` to 1e-5 in float32, for every cell, depth, direction,
notation, input kind, with ragged unsorted lengths (one of them 1) and random initial states.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import bptt
from bptt.interop.onnx_export import DEFAULT_OPSET, export_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

S = bptt.LayerSpec
T, B = 6, 4
LENGTHS = np.array([3, 6, 1, 5])  # unsorted, one of length 1, one full


def _randomise_biases(m: bptt.RNN, rng: np.random.Generator) -> None:
    for p in m.params.values():
        if p.ndim == 1:  # biases start at zero, which would hide a misplaced bias
            p[...] = 0.5 * rng.standard_normal(p.shape)


def _inputs(m: bptt.RNN, tokens: bool, rng: np.random.Generator, T: int = T, B: int = B) -> np.ndarray:
    if tokens:
        return rng.integers(0, m.input_size, size=(T, B))
    return rng.standard_normal((T, B, m.input_size)).astype(m.dtype)


def _session(path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # shared machine
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _run(session, x, lengths=None, h0=None) -> dict[str, np.ndarray]:
    feed = {"x": x.astype(np.int64) if x.dtype.kind in "iu" else x.astype(np.float32)}
    if lengths is not None:
        feed["sequence_lens"] = lengths.astype(np.int32)
    feed.update({name: s.astype(np.float32) for name, s in (h0 or {}).items()})
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feed), strict=True))


def _assert_close(name: str, got: np.ndarray, want: np.ndarray, tol: float = 1e-5) -> None:
    assert got.shape == want.shape, f"{name}: onnxruntime shape {got.shape}, bptt {want.shape}"
    err = np.abs(got.astype(np.float64) - want)
    i = np.unravel_index(np.argmax(err), err.shape)
    assert err[i] <= tol, f"{name}: worst at {i}: onnxruntime {got[i]!r} vs bptt {want[i]!r} (|Δ| = {err[i]:.2e})"


def _assert_same(m: bptt.RNN, out: dict[str, np.ndarray], fwd: bptt.Forward) -> None:
    assert list(out) == ["y"] + [f"state_{name}" for name in fwd.state]
    _assert_close("y", out["y"], fwd.outputs)
    for name, state in fwd.state.items():
        _assert_close(f"state_{name}", out[f"state_{name}"], state)


def _case(name, layers, *, tokens=False, lengths=True, initial=True, **options):
    """A parity case: the layers, the model's options, the graph's input kind and optional inputs."""
    return pytest.param(layers, options, tokens, lengths, initial, id=name)


BI = {"bidirectional": True}
CLASSIC = {"reset_after": False}
RNN_B = {"notation": "concat", "output_reads_input": True}  # the exam's W_ssx, W_ox with the input skip
CASES = [
    _case("elman-tanh", [S("elman", 5)]),
    _case("elman-relu-bi", [S("elman", 5, "relu", **BI)], initial=False),
    _case("elman-sigmoid-2", [S("elman", 5, "sigmoid"), S("elman", 4, "sigmoid")], lengths=False),
    _case("elman-identity-bi", [S("elman", 5, "identity", **BI)]),
    _case("lstm", [S("lstm", 5)]),
    _case("lstm-bi-2", [S("lstm", 5, **BI), S("lstm", 4, **BI)]),
    _case("gru", [S("gru", 5)], lengths=False, initial=False, output="identity"),
    _case("gru-bi", [S("gru", 5, **BI)]),
    _case("gru-classic-bi", [S("gru", 5, **BI, **CLASSIC)]),
    _case("gru-classic-2-nobias", [S("gru", 5, **CLASSIC), S("gru", 4, **CLASSIC)], initial=False, bias=False),
    _case("lstm-bi+gru", [S("lstm", 5, **BI), S("gru", 4)], output="sigmoid"),
    _case(
        "gru-classic+elman-bi+lstm", [S("gru", 5, **CLASSIC), S("elman", 4, "relu", **BI), S("lstm", 3)], tokens=True
    ),
    _case("tokens-onehot", [S("gru", 5)], tokens=True, initial=False),
    _case("tokens-embedding-bi", [S("lstm", 5, **BI)], tokens=True, embedding_size=4),
    _case("dense-embedding", [S("elman", 5)], initial=False, embedding_size=4),
    _case("mit", [S("elman", 5)], notation="mit", bias=False),
    _case("concat-rnn-b", [S("elman", 5)], bias=False, **RNN_B),
    _case("concat-rnn-b-tokens-2", [S("elman", 5), S("elman", 4, **BI)], tokens=True, **RNN_B),
    _case("skip-embedding-tokens", [S("gru", 5)], tokens=True, output_reads_input=True, embedding_size=3),
    _case("mit-skip-dense-lstm", [S("lstm", 5)], lengths=False, notation="mit", output_reads_input=True),
    _case("bias-off-output-bias-on", [S("lstm", 5)], bias=False, output_bias=True),
    _case("bias-on-output-bias-off", [S("gru", 5, **BI)], output_bias=False, output="identity"),
]


@pytest.mark.parametrize(("layers", "options", "tokens", "lengths", "initial"), CASES)
def test_onnxruntime_matches_bptt(tmp_path, layers, options, tokens, lengths, initial):
    rng = np.random.default_rng(0)
    m = bptt.RNN(3 if not tokens else 7, layers, 4, dtype="float32", seed=1, **options)
    _randomise_biases(m, rng)
    x = _inputs(m, tokens, rng)
    L = LENGTHS if lengths else None
    h0 = {n: (0.5 * rng.standard_normal((B, *s))).astype(np.float32) for n, s in m.state_shapes.items()}
    h0 = h0 if initial else None
    kind = "tokens" if tokens else "dense"
    path = export_onnx(m, tmp_path / "m.onnx", inputs=kind, with_lengths=lengths, with_initial_state=initial)
    out = _run(_session(path), x, L, h0)
    _assert_same(m, out, m.forward(x, h0, lengths=L))


@pytest.mark.parametrize("cls", [bptt.Elman, bptt.LSTM, bptt.GRU])
def test_named_models(tmp_path, cls):
    rng = np.random.default_rng(1)
    m = cls(3, 5, 4, num_layers=2, bidirectional=True, dtype="float32", seed=2)
    _randomise_biases(m, rng)
    x = _inputs(m, False, rng)
    out = _run(_session(export_onnx(m, tmp_path / "m.onnx")), x, LENGTHS)
    _assert_same(m, out, m.forward(x, lengths=LENGTHS))


def test_one_file_runs_at_any_length_and_batch_size(tmp_path):
    rng = np.random.default_rng(2)
    m = bptt.RNN(3, [S("lstm", 5, bidirectional=True), S("gru", 4)], 2, dtype="float32", seed=3)
    _randomise_biases(m, rng)
    session = _session(export_onnx(m, tmp_path / "m.onnx", with_initial_state=True))
    for T_, B_ in ((5, 3), (11, 1)):
        x = _inputs(m, False, rng, T_, B_)
        L = rng.integers(1, T_ + 1, size=B_)
        h0 = {n: rng.standard_normal((B_, *s)).astype(np.float32) for n, s in m.state_shapes.items()}
        _assert_same(m, _run(session, x, L, h0), m.forward(x, h0, lengths=L))


def test_float64_model_exports_a_float32_graph(tmp_path):
    # onnxruntime has float32 kernels only for RNN, LSTM and GRU: the weights are rounded to float32.
    rng = np.random.default_rng(3)
    m = bptt.RNN(3, [S("gru", 5, bidirectional=True), S("elman", 4, "relu")], 4, dtype="float64", seed=4)
    _randomise_biases(m, rng)
    session = _session(export_onnx(m, tmp_path / "m.onnx"))
    assert session.get_inputs()[0].type == "tensor(float)"
    x = _inputs(m, False, rng)
    _assert_same(m, _run(session, x, LENGTHS), m.forward(x, lengths=LENGTHS))


def test_graph_interface_and_checker(tmp_path):
    m = bptt.RNN(7, [S("lstm", 5, bidirectional=True), S("gru", 4)], 3, embedding_size=6, dtype="float32", seed=5)
    path = export_onnx(m, tmp_path / "m.onnx", with_initial_state=True)
    onnx.checker.check_model(str(path), full_check=True)  # includes strict shape inference
    proto = onnx.load(str(path))
    assert proto.opset_import[0].version == DEFAULT_OPSET
    assert bptt.RNN.from_config(json.loads(proto.metadata_props[0].value)).config() == m.config()
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("LSTM") == 1 and ops.count("GRU") == 1 and "OneHot" not in ops  # one node per level
    session = _session(path)
    inputs = {i.name: (i.shape, i.type) for i in session.get_inputs()}
    assert inputs == {
        "x": (["T", "B"], "tensor(int64)"),
        "sequence_lens": (["B"], "tensor(int32)"),
        "h0_l0": (["B", 5], "tensor(float)"),
        "c0_l0": (["B", 5], "tensor(float)"),
        "h0_l0_reverse": (["B", 5], "tensor(float)"),
        "c0_l0_reverse": (["B", 5], "tensor(float)"),
        "h0_l1": (["B", 4], "tensor(float)"),
    }
    outputs = {o.name: o.shape for o in session.get_outputs()}
    assert outputs == {"y": ["T", "B", 3], **{f"state_{n}": ["B", s[0]] for n, s in m.state_shapes.items()}}


def test_dense_input_of_a_model_with_an_embedding(tmp_path):
    rng = np.random.default_rng(4)
    m = bptt.RNN(7, [S("gru", 5)], 3, embedding_size=4, output_reads_input=True, dtype="float32", seed=6)
    _randomise_biases(m, rng)
    session = _session(export_onnx(m, tmp_path / "m.onnx", inputs="dense", with_lengths=False))
    assert [i.name for i in session.get_inputs()] == ["x"]
    x = _inputs(m, False, rng)
    _assert_same(m, _run(session, x), m.forward(x))


@pytest.mark.parametrize("opset", [14, 21, "newest"])
def test_opsets(tmp_path, opset):
    opset = onnx.defs.onnx_opset_version() if opset == "newest" else opset
    rng = np.random.default_rng(5)
    m = bptt.RNN(5, [S("elman", 4, "identity", bidirectional=True)], 3, dtype="float32", seed=7)
    _randomise_biases(m, rng)
    path = export_onnx(m, tmp_path / "m.onnx", inputs="tokens", opset=opset)
    assert onnx.load(str(path)).opset_import[0].version == opset
    x = _inputs(m, True, rng)
    _assert_same(m, _run(_session(path), x, LENGTHS), m.forward(x, lengths=LENGTHS))


def test_refusals(tmp_path):
    m = bptt.Elman(3, 4, 2, dtype="float32", seed=0)
    newest = onnx.defs.onnx_opset_version()
    for opset in (13, newest + 1, True, 17.0):
        with pytest.raises(ValueError, match=r"bptt\.export_onnx: opset must be an int from 14"):
            export_onnx(m, tmp_path / "m.onnx", opset=opset)
    with pytest.raises(ValueError, match="inputs must be 'dense', 'tokens' or None, got 'ids'"):
        export_onnx(m, tmp_path / "m.onnx", inputs="ids")
    with pytest.raises(TypeError, match="with_lengths must be True or False"):
        export_onnx(m, tmp_path / "m.onnx", with_lengths=1)
    with pytest.raises(TypeError, match="model must be a bptt network"):
        export_onnx(object(), tmp_path / "m.onnx")
    m.params["W"][0, 0] = np.nan
    with pytest.raises(ValueError, match=r"params\['W'\] must be finite"):
        export_onnx(m, tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())  # nothing written


def test_written_atomically(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")
    path = export_onnx(bptt.GRU(3, 4, 2, dtype="float32", seed=0), str(target))
    assert path == target and isinstance(path, type(target))
    assert onnx.load(str(path)).graph.node  # replaced by the graph
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # no temporary file left


def test_without_onnx_says_which_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(ImportError, match=r"bptt\.export_onnx needs onnx: pip install 'bptt\[onnx\]'"):
        export_onnx(bptt.Elman(3, 4, 2, seed=0), tmp_path / "m.onnx")


def test_bptt_works_without_onnx():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["onnx"] = sys.modules["onnxruntime"] = None  # as if not installed
        import numpy as np
        import bptt
        from bptt.interop.onnx_export import export_onnx
        m = bptt.LSTM(3, 4, 2, seed=0)
        assert m.forward(np.zeros((2, 1, 3))).outputs.shape == (2, 1, 2)
        try:
            export_onnx(m, "never.onnx")
        except ImportError as exc:
            print(exc)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "pip install 'bptt[onnx]'" in result.stdout


def test_public_name():
    assert bptt.export_onnx is export_onnx
