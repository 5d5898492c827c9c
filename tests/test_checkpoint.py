"""Checkpoints: exact round trips, one error type for every bad file, atomic writes, no code execution."""

from __future__ import annotations

import ast
import json
import os
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

import bptt
import bptt.atomic
from bptt.checkpoint import Checkpoint, CheckpointError, _digest, load_checkpoint, save_checkpoint
from bptt.optim import Adam
from bptt.vocab import Vocabulary

SRC = Path(bptt.__file__).resolve().parent
ARCHS = {"elman": bptt.Elman, "lstm": bptt.LSTM, "gru": bptt.GRU}
TEXT = "hello, wörld — ünïcode ✓\n"


def _x_y(vocab_size, T=7, B=2, seed=3):
    rng = np.random.default_rng(seed)
    return rng.integers(0, vocab_size, (T, B)), rng.integers(0, vocab_size, (T, B))


def _trained(arch="lstm", dtype="float64"):
    """A model, its vocabulary and an Adam optimizer after a few real steps."""
    vocab = Vocabulary.build([TEXT])
    V = len(vocab)
    m = ARCHS[arch](V, 5, V, seed=0, dtype=dtype)
    opt = Adam(m.params, lr=0.01)
    x, y = _x_y(V)
    for _ in range(3):
        r = m.loss_and_grad(x, y)
        opt.step(r.grads)
    return m, vocab, opt, r.state


def _full_checkpoint(arch="lstm", dtype="float64"):
    m, vocab, opt, state = _trained(arch, dtype)
    rng = np.random.default_rng(123)
    rng.random(5)
    train = {
        "step": 3,
        "position": [17, 42],
        "rng": rng.bit_generator.state,  # big integers
        "settings": {"lr": 0.01, "optimizer": "adam", "clip": None, "note": "ünï ✓"},
        "metrics": {"loss": [3.1, 2.9, 2.75]},
    }
    return Checkpoint(model=m, vocab=vocab, train=train, optimizer=opt.state_dict(), state=state), opt


@pytest.fixture
def saved(tmp_path):
    ckpt, _ = _full_checkpoint("gru")
    path = tmp_path / "model.bptt"
    save_checkpoint(path, ckpt)
    return path, ckpt


# -- round trips ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("arch", list(ARCHS))
def test_round_trip_is_exact(tmp_path, arch, dtype):
    ckpt, opt = _full_checkpoint(arch, dtype)
    path = tmp_path / "c.bptt"
    save_checkpoint(path, ckpt)
    back = load_checkpoint(path)

    m, m2 = ckpt.model, back.model
    assert type(m2) is type(m)  # Elman, LSTM, GRU or a mixed RNN: the class it was saved as
    assert m2.config() == m.config()
    assert m2.dtype == np.dtype(dtype)
    assert m2.params.keys() == m.params.keys()
    for k in m.params:
        assert m2.params[k].dtype == m.params[k].dtype, k
        assert m2.params[k].tobytes() == m.params[k].tobytes(), k  # bitwise
        assert not np.shares_memory(m2.params[k], m.params[k])

    assert back.vocab == ckpt.vocab and back.vocab.tokens == ckpt.vocab.tokens
    assert back.train == ckpt.train
    arrays, scalars = ckpt.optimizer
    arrays2, scalars2 = back.optimizer
    assert scalars2 == scalars == {"name": "adam", "steps": 3}
    assert arrays2.keys() == arrays.keys()
    for k in arrays:
        assert arrays2[k].dtype == arrays[k].dtype and arrays2[k].tobytes() == arrays[k].tobytes(), k
    assert back.state.keys() == ckpt.state.keys() == set(m.state_shapes)
    for k in ckpt.state:
        assert back.state[k].tobytes() == ckpt.state[k].tobytes(), k

    # the loaded model computes bit for bit the same thing ...
    x, y = _x_y(m.input_size, seed=9)
    assert m2.loss(x, y, h0=back.state) == m.loss(x, y, h0=ckpt.state)
    # ... and training resumes exactly: same optimizer step on both sides
    opt2 = Adam(m2.params, lr=0.01)
    opt2.load_state_dict(arrays2, scalars2)
    for _ in range(2):
        opt.step(m.loss_and_grad(x, y).grads)
        opt2.step(m2.loss_and_grad(x, y).grads)
    for k in m.params:
        assert m2.params[k].tobytes() == m.params[k].tobytes(), k


def test_minimal_checkpoint_round_trip(tmp_path):
    m = bptt.Elman(3, 4, 2, seed=1, notation="mit", bias=False, output="sigmoid")
    path = tmp_path / "m.bptt"
    save_checkpoint(path, Checkpoint(model=m))
    back = load_checkpoint(str(path))  # str paths work too
    assert back.vocab is None and back.optimizer is None and back.state == {} and back.train == {}
    assert back.model.config() == m.config()
    for k in m.params:
        np.testing.assert_array_equal(back.model.params[k], m.params[k])


def test_word_vocabulary_round_trip(tmp_path):
    vocab = Vocabulary.build(["the cat sat on the mat, the end — fin"], level="word", max_size=6)
    m = bptt.Elman(len(vocab), 3, len(vocab), seed=0)
    save_checkpoint(tmp_path / "w.bptt", Checkpoint(model=m, vocab=vocab))
    back = load_checkpoint(tmp_path / "w.bptt").vocab
    assert back == vocab and back.level == "word"


def test_saving_twice_overwrites(tmp_path):
    path = tmp_path / "c.bptt"
    m = bptt.Elman(3, 4, 3, seed=0)
    save_checkpoint(path, Checkpoint(model=m, train={"step": 1}))
    m.params["W"] += 1.0
    save_checkpoint(path, Checkpoint(model=m, train={"step": 2}))
    back = load_checkpoint(path)
    assert back.train == {"step": 2}
    np.testing.assert_array_equal(back.model.params["W"], m.params["W"])
    assert sorted(os.listdir(tmp_path)) == ["c.bptt"]


# -- bad files: always CheckpointError ---------------------------------------------------


def _split(data: bytes):
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def _join(header: dict, body: bytes) -> bytes:
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + body


def _edit(path: Path, change) -> None:
    header, body = _split(path.read_bytes())
    change(header["__metadata__"], header)
    path.write_bytes(_join(header, body))


def _reseal(path: Path, change) -> None:
    """Edit the metadata and tensors, then recompute the checksum, as a deliberate forger could."""
    header, _ = _split(path.read_bytes())
    meta = header["__metadata__"]
    tensors = dict(st_load(path.read_bytes()))
    change(meta, tensors)
    meta.pop("sha256", None)
    meta["sha256"] = _digest(tensors, meta)
    path.write_bytes(st_save(tensors, metadata=meta))


def test_header_helpers_are_faithful(saved):
    # rewriting without change must still load: the tests below fail for the edit, not the helper
    path, ckpt = saved
    _edit(path, lambda meta, header: None)
    assert load_checkpoint(path).train == ckpt.train
    _reseal(path, lambda meta, tensors: None)
    assert load_checkpoint(path).train == ckpt.train


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"nope\.bptt: cannot read checkpoint"):
        load_checkpoint(tmp_path / "nope.bptt")
    with pytest.raises(CheckpointError, match=r"not a checkpoint file \(a folder, FIFO or device\)"):
        load_checkpoint(tmp_path)  # a folder


def test_empty_file(tmp_path):
    (tmp_path / "e.bptt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"e\.bptt: not a bptt checkpoint \(file is 0 bytes\)"):
        load_checkpoint(tmp_path / "e.bptt")


@pytest.mark.parametrize(
    "data",
    [
        b"abc",
        b"hello world, this is just text\n" * 5,
        np.random.default_rng(0).bytes(64),
        np.random.default_rng(1).bytes(5000),
        struct.pack("<Q", 12) + b"not json!!!!" + b"\x00" * 16,
        struct.pack("<Q", 4) + b"\xff\xfe\xfd\xfc",
        struct.pack("<Q", 8) + b"[1, 2]  ",
        struct.pack("<Q", 2) + b"{}",
        struct.pack("<Q", 24) + b'{"__metadata__": "x"}   ',
    ],
    ids=["short", "text", "random64", "random5000", "not-json", "not-utf8", "json-list", "json-empty", "meta-str"],
)
def test_garbage(tmp_path, data):
    path = tmp_path / "g.bptt"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match=r"g\.bptt: not a bptt checkpoint"):
        load_checkpoint(path)


def test_truncated_everywhere(saved):
    path, _ = saved
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    cuts = sorted({1, 7, 8, 9, 8 + n // 2, 8 + n - 1, 8 + n, 8 + n + 1, (8 + n + len(data)) // 2, len(data) - 1})
    for cut in cuts:
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError):
            load_checkpoint(path)
    path.write_bytes(data + b"\x00" * 8)  # trailing junk is refused as well
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


@pytest.mark.parametrize("metadata", [None, {"format": "pt"}, {"format": "bptt"}])
def test_foreign_safetensors_file(tmp_path, metadata):
    path = tmp_path / "foreign.safetensors"
    path.write_bytes(st_save({"params/W": np.ones((3, 3))}, metadata=metadata))
    with pytest.raises(CheckpointError, match=r"not a bptt checkpoint \(a safetensors file without bptt's metadata"):
        load_checkpoint(path)


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_tampered_tensor_bytes(saved, where):
    path, _ = saved
    data = bytearray(path.read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    start = 8 + n
    i = {"first": start, "middle": (start + len(data)) // 2, "last": len(data) - 1}[where]
    data[i] ^= 0x01  # a single bit: still a perfectly valid float
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"checksum mismatch"):
        load_checkpoint(path)


def _set(key, value):
    def change(meta, header):
        meta[key] = value

    return change


def _set_json(key, fn):
    def change(meta, header):
        obj = json.loads(meta[key])
        fn(obj)
        meta[key] = json.dumps(obj)

    return change


def _swap_two_tokens(v):
    v["tokens"][0], v["tokens"][1] = v["tokens"][1], v["tokens"][0]


def _relu(c):
    c["layers"][0]["kind"] = "elman"
    c["layers"][0]["activation"] = "relu"


EDITS = {
    "train-step": _set_json("train", lambda t: t.update(step=4)),
    "train-lr": _set_json("train", lambda t: t["settings"].update(lr=0.02)),
    "vocab-swap": _set_json("vocab", _swap_two_tokens),  # same size: would silently scramble text
    "optim-steps": _set_json("optim", lambda o: o.update(steps=30)),
    "model-activation": _set_json("model", _relu),  # same parameter shapes for an Elman
    "drop-sha": lambda meta, header: meta.pop("sha256"),
    "bad-sha": _set("sha256", "0" * 64),
    "drop-vocab": lambda meta, header: meta.pop("vocab"),
    "tensor-rename": lambda meta, header: header.update({"state/h1": header.pop("state/h0")}),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_edited_metadata(tmp_path, edit):
    ckpt, _ = _full_checkpoint("gru" if edit != "model-activation" else "elman")
    path = tmp_path / "c.bptt"
    save_checkpoint(path, ckpt)
    _edit(path, EDITS[edit])
    with pytest.raises(CheckpointError, match=r"checksum mismatch: the file was corrupted or edited"):
        load_checkpoint(path)


def test_edited_format_and_version(saved):
    path, _ = saved
    data = path.read_bytes()
    _edit(path, _set("version", "2"))
    with pytest.raises(CheckpointError, match=r"checkpoint version '2' is not supported \(need 1\)"):
        load_checkpoint(path)
    path.write_bytes(data)
    _edit(path, _set("format", "something-else"))
    with pytest.raises(CheckpointError, match=r"not a bptt checkpoint"):
        load_checkpoint(path)


def _hidden(n):
    def fn(c):
        c["layers"][0]["hidden_size"] = n

    return fn


RESEALED = {
    "model-not-object": _set("model", "[]"),
    "model-not-json": _set("model", "{oops"),
    "model-unknown-key": _set_json("model", lambda c: c["layers"][0].update(colour="red")),
    "model-bad-kind": _set_json("model", lambda c: c["layers"][0].update(kind="transformer")),
    "model-wrong-shape": _set_json("model", _hidden(6)),
    "model-wrong-dtype": _set_json("model", lambda c: c.update(dtype="float32")),
    "vocab-null": _set("vocab", "null"),
    "vocab-duplicates": _set_json("vocab", lambda v: v["tokens"].__setitem__(1, v["tokens"][0])),
    "train-missing": lambda meta, tensors: meta.pop("train"),
    "param-missing": lambda meta, tensors: tensors.pop("params/U"),
    "param-extra": lambda meta, tensors: tensors.update({"params/Q": np.zeros(3)}),
    "param-wrong-dtype": lambda meta, tensors: tensors.update({"params/U": tensors["params/U"].astype(np.float32)}),
    "param-wrong-shape": lambda meta, tensors: tensors.update({"params/U": tensors["params/U"].T.copy()}),
}


@pytest.mark.parametrize("edit", list(RESEALED))
def test_consistent_but_malformed_metadata(saved, edit):
    # checksum recomputed: the checks behind it must still answer with CheckpointError
    path, _ = saved
    _reseal(path, RESEALED[edit])
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_checkpoint_error_is_one_type():
    assert issubclass(CheckpointError, ValueError)


# -- saving --------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["params", "optim", "state"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_saving_non_finite_refuses_and_keeps_the_old_file(tmp_path, where, bad):
    path = tmp_path / "c.bptt"
    ckpt, _ = _full_checkpoint("lstm")
    save_checkpoint(path, ckpt)
    before = path.read_bytes()
    if where == "params":
        ckpt.model.params["W"][1, 2] = bad
        name = "params/W"
    elif where == "optim":
        ckpt.optimizer[0]["v/b"][0] = bad
        name = "optim/v/b"
    else:
        ckpt.state["c0"][0, 0] = bad
        name = "state/c0"
    with pytest.raises(CheckpointError, match=rf"refusing to save .*c\.bptt: {re.escape(name)} is not finite"):
        save_checkpoint(path, ckpt)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["c.bptt"]
    # nothing at a fresh path either
    with pytest.raises(CheckpointError):
        save_checkpoint(tmp_path / "new.bptt", ckpt)
    assert os.listdir(tmp_path) == ["c.bptt"]


@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()])
def test_crash_during_replace_keeps_the_old_file(tmp_path, monkeypatch, exc):
    path = tmp_path / "c.bptt"
    m = bptt.Elman(3, 4, 3, seed=0)
    save_checkpoint(path, Checkpoint(model=m, train={"step": 1}))
    before = path.read_bytes()

    calls = []

    def failing_replace(src, dst):
        calls.append((src, dst))
        assert Path(src).exists() and Path(src).parent == tmp_path  # the temporary file was fully written
        raise exc

    monkeypatch.setattr(bptt.atomic.os, "replace", failing_replace)
    m.params["W"] *= 2
    with pytest.raises(type(exc)):
        save_checkpoint(path, Checkpoint(model=m, train={"step": 2}))
    assert len(calls) == 1
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["c.bptt"]  # the temporary file was removed
    monkeypatch.undo()
    assert load_checkpoint(path).train == {"step": 1}


def test_crash_while_writing_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "c.bptt"
    m = bptt.Elman(3, 4, 3, seed=0)
    save_checkpoint(path, Checkpoint(model=m))
    before = path.read_bytes()

    def failing_fsync(fd):
        raise OSError("I/O error")

    monkeypatch.setattr(bptt.atomic.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="I/O error"):
        save_checkpoint(path, Checkpoint(model=m, train={"step": 2}))
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["c.bptt"]


def test_saving_into_a_missing_folder(tmp_path):
    m = bptt.Elman(3, 4, 3, seed=0)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "missing" / "c.bptt", Checkpoint(model=m))
    assert os.listdir(tmp_path) == []


def test_write_atomic_text_and_bytes(tmp_path):
    bptt.atomic.write_atomic(tmp_path / "a.txt", "ünï ✓\n")
    assert (tmp_path / "a.txt").read_bytes() == "ünï ✓\n".encode()
    bptt.atomic.write_atomic(tmp_path / "a.txt", b"\x00\x01")
    assert (tmp_path / "a.txt").read_bytes() == b"\x00\x01"
    assert os.listdir(tmp_path) == ["a.txt"]


# -- loading executes nothing --------------------------------------------------------------


def _sources():
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 10 and SRC / "files" / "checkpoint.py" in files
    return files


def test_source_never_uses_pickle():
    """No pickle-like module is imported or named in code, and nothing calls torch.load (messages and
    docs may say the words: `bptt import` tells users how to convert a .pt file on their side)."""
    banned = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "marshal", "shelve", "joblib"}
    hits = []
    for f in _sources():
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"), filename=str(f))):
            where = f"{f.relative_to(SRC)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Import):
                hits += [f"{where}: import {a.name}" for a in node.names if a.name.split(".")[0] in banned]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in banned:
                hits.append(f"{where}: from {node.module} import …")
            elif isinstance(node, ast.Name) and node.id in banned:
                hits.append(f"{where}: {node.id}")
            elif isinstance(node, ast.Attribute) and node.attr == "load" and getattr(node.value, "id", "") == "torch":
                hits.append(f"{where}: torch.load")
    assert hits == []


def test_source_never_calls_eval_or_exec():
    banned = {"eval", "exec", "compile", "__import__"}
    hits = []
    for f in _sources():
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"), filename=str(f))):
            if isinstance(node, ast.Call):
                fn = node.func
                name = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else None
                if name in banned and not (isinstance(fn, ast.Attribute) and name == "compile"):
                    hits.append(f"{f.relative_to(SRC)}:{node.lineno}: {name}(...)")
                for kw in node.keywords:
                    if kw.arg == "allow_pickle":
                        hits.append(f"{f.relative_to(SRC)}:{node.lineno}: allow_pickle=")
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                hits += [
                    f"{f.relative_to(SRC)}:{node.lineno}: import {m}"
                    for m in mods
                    if m.split(".")[0] in {"pickle", "marshal", "shelve", "dill", "cloudpickle", "joblib"}
                ]
    assert hits == []


def test_a_checkpoint_without_carried_state_or_optimizer_saves(tmp_path):
    m = bptt.GRU(5, 4, 5, bidirectional=True, seed=0)
    path = tmp_path / "bare.safetensors"
    save_checkpoint(path, Checkpoint(model=m, state=None))
    back = load_checkpoint(path)
    assert type(back.model) is bptt.GRU and back.model.config() == m.config() and back.state == {}
    assert all(np.array_equal(back.model.params[k], m.params[k]) for k in m.params)
