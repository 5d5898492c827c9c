"""``bptt export`` and ``bptt import``: PyTorch state dicts as safetensors, and ONNX files.

Neither command runs torch: a PyTorch ``state_dict`` is a dict of named arrays, which
safetensors stores without pickle. ``bptt export CKPT --format torch`` writes one with the
keys of three modules, ``embedding.*`` (when the model has one), ``rnn.*`` and ``linear.*``::

    class Model(torch.nn.Module):             # the modules the file's metadata describes
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.LSTM(D, H, num_layers=L, bidirectional=...)
            self.linear = torch.nn.Linear(H * dirs, O)
    Model().load_state_dict(safetensors.torch.load_file("model.safetensors"))

``bptt import STATE.safetensors -o CKPT`` reads a state dict saved with
``safetensors.torch.save_file`` under any module names: the recurrent module is the prefix of
``weight_ih_l0``, the readout the one other 2-D weight that reads its output, the embedding
the one that feeds it. ``--cell``, ``--layers``, ``--hidden-size`` and ``--bidirectional``, when
given, are checked against the file; a mismatch names the key and the shapes.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

from ..files.atomic import write_atomic
from ..files.checkpoint import Checkpoint, save_checkpoint
from ..files.untrusted import elide, parse_json
from ..text.vocab import Vocabulary
from .pytorch import TorchSpec, from_torch_state, torch_state

__all__ = ["COMMANDS", "add_parsers"]

FORMAT = "bptt-torch-state-dict"
CELLS = {"rnn": "elman", "lstm": "lstm", "gru": "gru"}  # PyTorch's module names → bptt's cells
PICKLE_HINT = (
    "{path}: a .pt/.pth file is a pickle, which can run code when loaded; bptt never loads one. "
    "Convert it on your side: "
    'state = torch.load("{path}", map_location="cpu", weights_only=True); '
    'safetensors.torch.save_file(state, "{stem}.safetensors")'
)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """The ``export`` and ``import`` sub-commands (``sub`` as ``add_subparsers`` returned it)."""
    e = sub.add_parser("export", help="a checkpoint as a PyTorch state dict (safetensors) or an ONNX file")
    e.add_argument("checkpoint", metavar="CKPT", help="a bptt checkpoint (.safetensors)")
    e.add_argument("--format", required=True, choices=("torch", "onnx"), help="what to write")
    e.add_argument("-o", "--out", required=True, metavar="OUT", help="the file to write")
    i = sub.add_parser("import", help="a PyTorch state dict (saved with safetensors) as a bptt checkpoint")
    i.add_argument("state", metavar="STATE", help="a state dict saved with safetensors.torch.save_file")
    i.add_argument("-o", "--out", required=True, metavar="CKPT", help="the checkpoint to write")
    i.add_argument("--cell", choices=tuple(CELLS), help="nn.RNN, nn.LSTM or nn.GRU (default: from the file)")
    i.add_argument("--layers", type=int, metavar="L", help="num_layers (default: from the file)")
    i.add_argument("--hidden-size", type=int, metavar="H", help="hidden_size (default: from the file)")
    i.add_argument(
        "--bidirectional", action="store_true", default=None, help="a bidirectional module (default: from the file)"
    )
    i.add_argument(
        "--nonlinearity",
        choices=("tanh", "relu"),
        help="nn.RNN's nonlinearity (default: from a bptt export's metadata, else tanh)",
    )
    i.add_argument(
        "--output",
        choices=("softmax", "sigmoid", "identity"),
        help="f_y after the readout (default: from a bptt export's metadata, else softmax)",
    )
    i.add_argument("--readout", metavar="KEY", help="the nn.Linear's weight key (default: found by shape and bias)")
    i.add_argument("--embedding", metavar="KEY", help="the nn.Embedding's weight key (default: found by shape)")
    i.add_argument(
        "--vocab",
        metavar="FILE",
        help="for a language model: JSON, a list of the tokens in id order or bptt's "
        '{"level": "char", "tokens": [...]} (default: none; bptt sample needs one)',
    )


def cmd_export(args: argparse.Namespace) -> int:
    from ..files.checkpoint import load_checkpoint

    ckpt = load_checkpoint(args.checkpoint)
    out = Path(args.out)
    if args.format == "onnx":
        from .onnx_export import export_onnx

        print(export_onnx(ckpt.model, out))
        return 0
    from safetensors.numpy import save

    spec, state = torch_state(ckpt.model, "bptt export")
    metadata = {"format": FORMAT, "modules": json.dumps(_modules(spec)), "output": ckpt.model.output.name}
    if ckpt.vocab is not None:
        metadata["vocab"] = json.dumps(ckpt.vocab.to_json(), ensure_ascii=False)
    write_atomic(out, save(state, metadata=metadata))
    print(out)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    path = Path(args.state)
    if path.suffix.lower() in (".pt", ".pth", ".bin", ".pkl"):
        raise ValueError(PICKLE_HINT.format(path=path, stem=path.with_suffix("")))
    state, metadata = _read_state(path)
    _from_metadata(args, metadata, path)
    spec, arrays = infer_spec(state, args, str(path))
    model = from_torch_state(spec, arrays, args.output)
    vocab = _read_vocab(Path(args.vocab)) if args.vocab else _metadata_vocab(metadata, path)
    if vocab is not None and len(vocab) != model.input_size:
        source = args.vocab or f"{path}'s metadata"
        raise ValueError(
            f"{source}: the vocabulary has {len(vocab)} tokens, the model in {path} reads {model.input_size}"
        )
    save_checkpoint(args.out, Checkpoint(model=model, vocab=vocab))
    print(args.out)
    return 0


COMMANDS = {"export": cmd_export, "import": cmd_import}


def infer_spec(state: dict[str, np.ndarray], args: argparse.Namespace, where: str) -> tuple[TorchSpec, dict]:
    """The modules of a state dict, checked against the flags given, and its arrays keyed as
    :meth:`TorchSpec.shapes`."""
    heads = [k for k in state if k.endswith("weight_ih_l0")]
    if len(heads) != 1:
        found = "none" if not heads else ", ".join(heads)
        raise ValueError(f"{where}: expected one recurrent module (a weight_ih_l0 key), found {found}")
    rnn = heads[0][: -len("weight_ih_l0")]
    own = {k[len(rnn) :]: v for k, v in state.items() if k.startswith(rnn) and _RNN_KEY.fullmatch(k[len(rnn) :])}
    if any(k.startswith("weight_hr_") for k in own):
        raise ValueError(f"{where}: {rnn}weight_hr_l0 is an LSTM projection (proj_size > 0), which bptt does not have")
    for name in ("weight_ih_l0", "weight_hh_l0"):
        a = own.get(name)
        if a is None or a.ndim != 2 or 0 in a.shape:
            got = "missing" if a is None else f"shape {a.shape}"
            raise ValueError(f"{where}: {rnn}{name} must be a non-empty matrix, got {got}")
    rows, D = own["weight_ih_l0"].shape
    H = args.hidden_size or own["weight_hh_l0"].shape[1]
    cell = CELLS[args.cell] if args.cell else {1: "elman", 3: "gru", 4: "lstm"}.get(rows // H if rows % H == 0 else 0)
    if cell is None:
        raise ValueError(f"{where}: {heads[0]} has {rows} rows, not 1, 3 or 4 times hidden size {H}")
    layers = args.layers or 1 + max(int(m.group(1)) for k in own if (m := re.search(r"_l(\d+)", k)))
    bidirectional = args.bidirectional if args.bidirectional is not None else any("_reverse" in k for k in own)
    others = {k: v for k, v in state.items() if not (k.startswith(rnn) and k[len(rnn) :] in own)}
    rnn_only = TorchSpec(cell, D, H, 1, layers, f"{rnn}bias_ih_l0" in state, bidirectional)
    want = rnn_only.rnn_shapes()
    missing, extra = [k for k in want if k not in own], [k for k in own if k not in want]
    if missing or extra:
        what = "missing" if missing else "unexpected"
        keys = missing or extra
        more = f" and {len(keys) - 2} more" if len(keys) > 2 else ""
        raise ValueError(
            f"{where}: {rnn}* does not fit {_describe_flags(rnn_only)}: {what} {rnn}{keys[0]}"
            + (f", {rnn}{keys[1]}" if len(keys) > 1 else "")
            + more
        )
    for key, shape in rnn_only.rnn_shapes().items():  # the flags against the recurrent module, key by key
        if key in own and own[key].shape != shape:
            raise ValueError(
                f"{where}: {rnn}{key} has shape {own[key].shape}, expected {shape} for {_describe_flags(rnn_only)}"
            )
    width = H * (2 if bidirectional else 1)
    linear = _pick(others, args.readout, width, "readout (nn.Linear) weight", "--readout", where, prefer_bias=True)
    embedding = _pick(
        {k: v for k, v in others.items() if k != linear}, args.embedding, D, None, "--embedding", where, False
    )
    arrays = {f"rnn.{k}": v for k, v in own.items()}
    arrays["linear.weight"] = state[linear]
    used = {linear}
    bias_key = linear[: -len("weight")] + "bias"
    if bias_key in state:
        arrays["linear.bias"] = state[bias_key]
        used.add(bias_key)
    if embedding is not None:
        arrays["embedding.weight"] = state[embedding]
        used.add(embedding)
    extra = sorted(set(others) - used)
    if extra:
        raise ValueError(f"{where}: unexpected keys {extra} (bptt reads an RNN, a Linear and an optional Embedding)")
    spec = TorchSpec(
        cell=cell,
        input_size=D,
        hidden_size=H,
        output_size=state[linear].shape[0],
        num_layers=layers,
        bias=f"{rnn}bias_ih_l0" in state,
        bidirectional=bidirectional,
        nonlinearity=args.nonlinearity if cell == "elman" else "tanh",
        linear_bias="linear.bias" in arrays,
        embedding=None if embedding is None else tuple(state[embedding].shape),
    )
    for key, shape in spec.shapes().items():  # the flags against the file, key by key
        if key in arrays and arrays[key].shape != shape:
            name = f"{rnn}{key[4:]}" if key.startswith("rnn.") else key
            raise ValueError(
                f"{where}: {name} has shape {arrays[key].shape}, expected {shape} for {_describe_flags(spec)}"
            )
    return spec, arrays


_RNN_KEY = re.compile(r"(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l\d+(_reverse)?")


def _pick(candidates: dict, given: str | None, size: int, what: str | None, flag: str, where: str, prefer_bias: bool):
    """The key of the weight that reads ``size`` features: ``given``, or the one 2-D ``*weight`` of
    ``candidates`` with ``size`` columns (the readout: preferring one with a bias beside it, which an
    embedding never has). ``None`` when optional (``what`` is ``None``) and absent."""
    what_ = what or "embedding (nn.Embedding) weight"
    if given is not None:
        a = candidates.get(given)
        if a is None or a.ndim != 2 or a.shape[1] != size:
            got = "no such key" if a is None else f"shape {a.shape}"
            raise ValueError(f"{where}: {flag} {given} must be a 2-D weight of {size} columns, got {got}")
        return given
    keys = [k for k, v in candidates.items() if k.endswith("weight") and v.ndim == 2 and v.shape[1] == size]
    if len(keys) > 1 and prefer_bias:
        with_bias = [k for k in keys if k[: -len("weight")] + "bias" in candidates]
        keys = with_bias if len(with_bias) == 1 else keys
    if len(keys) > 1:
        raise ValueError(f"{where}: several weights could be the {what_}: {keys}; name it with {flag} KEY")
    if not keys and what is not None:
        shapes = {k: tuple(v.shape) for k, v in candidates.items()}
        raise ValueError(
            f"{where}: no {what} of shape (O, {size}) reads the recurrent module's output; found {elide(str(shapes))}"
        )
    return keys[0] if keys else None


def _from_metadata(args: argparse.Namespace, metadata: dict[str, str], path: Path) -> None:
    """Fill ``--output`` and ``--nonlinearity`` from a file ``bptt export`` wrote (refusing flags that
    contradict it), else with PyTorch's defaults (softmax after the readout, tanh)."""
    recorded: dict[str, str] = {}
    if metadata.get("format") == FORMAT:
        try:
            modules = parse_json(metadata.get("modules", "{}"))
            rnn = next(iter(modules["rnn"].values()))
            recorded["nonlinearity"] = rnn.get("nonlinearity", "tanh")
            recorded["output"] = metadata["output"]
        except (ValueError, KeyError, TypeError, AttributeError, StopIteration):
            raise ValueError(f"{path}: its bptt metadata is unreadable") from None
    for name, default in (("nonlinearity", "tanh"), ("output", "softmax")):
        given, kept = getattr(args, name), recorded.get(name)
        if given is not None and kept is not None and given != kept:
            raise ValueError(f"{path}: --{name} {given} contradicts the file's own {name} {elide(kept)}")
        setattr(args, name, given or kept or default)


def _describe_flags(spec: TorchSpec) -> str:
    name = {"elman": "rnn", "lstm": "lstm", "gru": "gru"}[spec.cell]
    bi = " --bidirectional" if spec.bidirectional else ""
    return f"--cell {name} --layers {spec.num_layers} --hidden-size {spec.hidden_size}{bi}"


def _read_state(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except Exception as exc:  # safetensors' errors carry no file name
        raise ValueError(f"{path}: not a safetensors state dict ({elide(str(exc))})") from None
    bad = sorted(k for k, v in state.items() if v.dtype not in (np.float32, np.float64))
    if bad:
        raise ValueError(f"{path}: bptt reads float32 or float64 parameters; {bad[0]} is {state[bad[0]].dtype}")
    return state, metadata


def _read_vocab(path: Path) -> Vocabulary:
    try:
        data = parse_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read the vocabulary ({elide(str(exc))})") from None
    if isinstance(data, list):
        data = {"level": "char" if all(isinstance(t, str) and len(t) == 1 for t in data) else "word", "tokens": data}
    try:
        return Vocabulary.from_json(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {elide(str(exc))}") from None


def _metadata_vocab(metadata: dict[str, str], path: Path) -> Vocabulary | None:
    """The vocabulary ``bptt export`` stored in the file, if it is one of its files."""
    if metadata.get("format") != FORMAT or "vocab" not in metadata:
        return None
    try:
        return Vocabulary.from_json(parse_json(metadata["vocab"]))
    except ValueError as exc:
        raise ValueError(f"{path}: its vocabulary is unreadable ({elide(str(exc))})") from None


def _modules(spec: TorchSpec) -> dict:
    """The constructor calls of the state dict's modules, for the file's metadata."""
    name = {"elman": "RNN", "lstm": "LSTM", "gru": "GRU"}[spec.cell]
    rnn = dict(
        input_size=spec.input_size,
        hidden_size=spec.hidden_size,
        num_layers=spec.num_layers,
        bias=spec.bias,
        bidirectional=spec.bidirectional,
    )
    if spec.cell == "elman":
        rnn["nonlinearity"] = spec.nonlinearity
    modules = {"rnn": {f"torch.nn.{name}": rnn}}
    out = spec.hidden_size * len(spec.directions)
    modules["linear"] = {"torch.nn.Linear": dict(in_features=out, out_features=spec.output_size, bias=spec.linear_bias)}
    if spec.embedding is not None:
        modules["embedding"] = {
            "torch.nn.Embedding": dict(zip(("num_embeddings", "embedding_dim"), spec.embedding, strict=True))
        }
    return modules
