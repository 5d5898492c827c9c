"""Checkpoints: weights in a safetensors file, everything else as JSON in its metadata.

Loading never executes code: safetensors holds raw arrays and a JSON header,
and bptt reads the header with ``json.loads`` after bounding its size and
nesting (:func:`bptt.files.untrusted.parse_json`). A SHA-256 of every tensor and
the metadata is stored beside them, so a truncated or corrupted file is refused
with one error type, :class:`CheckpointError`. The SHA-256 is a checksum, not a
signature: whoever edits a file can recompute it. So everything behind it is
checked too (parameters against the model description, every value finite, every
field of the training record on resume), and an edited file is refused unless it is
a consistent checkpoint; its messages quote at most a few hundred characters of it.

Layout of a file::

    tensors   params/<name>            model parameters
              optim/<slot>/<name>      optimizer state (momenta, moments)
              state/<name>             hidden state carried between windows
    metadata  format   = "bptt-checkpoint"
              version  = "1"
              model    = JSON: the network's config (architecture, dtype)
              vocab    = JSON: the vocabulary (absent for non-text models)
              train    = JSON: step, data position, RNG state, settings, metrics
              optim    = JSON: optimizer name and step count
              sha256   = digest of all the above

Files are written atomically (:func:`bptt.atomic.write_atomic`).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.network import RNN
from ..text.vocab import Vocabulary
from .atomic import write_atomic
from .untrusted import elide, parse_json

__all__ = ["FORMAT", "Checkpoint", "CheckpointError", "load_checkpoint", "save_checkpoint"]

FORMAT = "bptt-checkpoint"
VERSION = "1"
MAX_HEADER = 100_000_000  # bytes of JSON header: safetensors' own limit


class CheckpointError(ValueError):
    """A file is not a usable bptt checkpoint (missing, truncated, corrupted, foreign or edited)."""


@dataclass(frozen=True)
class Checkpoint:
    """Everything needed to use a model or resume its training exactly.

    Attributes
    ----------
    model : RNN
        The network, with its parameters.
    vocab : Vocabulary or None
    train : dict
        JSON-able training record (step, data position, RNG state, settings, metrics).
    optimizer : tuple (arrays, scalars) or None
        As returned by :meth:`bptt.optim.Optimizer.state_dict`.
    state : dict of ndarray
        Carried hidden state (empty, or ``None``, when none).
    """

    model: RNN
    vocab: Vocabulary | None = None
    train: dict[str, Any] = field(default_factory=dict)
    optimizer: tuple[dict[str, np.ndarray], dict[str, Any]] | None = None
    state: dict[str, np.ndarray] = field(default_factory=dict)


def _digest(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    for key in sorted(metadata):
        h.update(f"{key}={metadata[key]}\n".encode())
    return h.hexdigest()


def save_checkpoint(path: str | os.PathLike, ckpt: Checkpoint) -> None:
    """Write ``ckpt`` to ``path`` atomically (a crash leaves any previous file intact).

    Raises
    ------
    CheckpointError
        If a parameter, optimizer or state array is not finite (nothing is written).
    OSError
        If the folder is missing or not writable (nothing is written).
    """
    from safetensors.numpy import save

    tensors: dict[str, np.ndarray] = {f"params/{k}": v for k, v in ckpt.model.params.items()}
    if ckpt.optimizer is not None:
        tensors.update({f"optim/{k}": v for k, v in ckpt.optimizer[0].items()})
    tensors.update({f"state/{k}": v for k, v in (ckpt.state or {}).items()})
    for name, a in tensors.items():
        if not np.isfinite(a).all():
            raise CheckpointError(f"refusing to save {path}: {name} is not finite")
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "model": json.dumps(ckpt.model.config()),
        "train": json.dumps(ckpt.train),
    }
    if ckpt.vocab is not None:
        metadata["vocab"] = json.dumps(ckpt.vocab.to_json(), ensure_ascii=False)
    if ckpt.optimizer is not None:
        metadata["optim"] = json.dumps(ckpt.optimizer[1])
    metadata["sha256"] = _digest(tensors, metadata)
    contiguous = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    write_atomic(path, save(contiguous, metadata=metadata))


def _header(data: bytes, path: Path) -> dict[str, str]:
    if len(data) < 8:
        raise CheckpointError(f"{path}: not a bptt checkpoint (file is {len(data)} bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise CheckpointError(f"{path}: not a bptt checkpoint or truncated (header of {n} bytes does not fit)")
    if n > MAX_HEADER:
        raise CheckpointError(f"{path}: not a bptt checkpoint (header of {n:,} bytes; at most {MAX_HEADER:,})")
    try:
        header = parse_json(data[8 : 8 + n].decode("utf-8"))
    except UnicodeDecodeError:
        raise CheckpointError(f"{path}: not a bptt checkpoint (header is not UTF-8 text)") from None
    except ValueError as exc:
        raise CheckpointError(f"{path}: not a bptt checkpoint (header: {exc})") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a bptt checkpoint (a safetensors file without bptt's metadata?)")
    if meta.get("version") != VERSION:
        version = elide(repr(meta.get("version")), 40)
        raise CheckpointError(f"{path}: checkpoint version {version} is not supported (need {VERSION})")
    return meta


def _field(meta: dict[str, Any], key: str, path: Path) -> Any:
    """Metadata entry ``key``, parsed as bounded JSON."""
    if not isinstance(meta.get(key), str):
        raise CheckpointError(f"{path}: malformed checkpoint metadata (no {key!r} entry)")
    try:
        return parse_json(meta[key])
    except ValueError as exc:
        raise CheckpointError(f"{path}: malformed checkpoint metadata {key!r} ({exc})") from None


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`; nothing in the file is executed.

    Raises
    ------
    CheckpointError
        For a missing, unreadable, truncated, corrupted, foreign or edited file.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load

    path = Path(path)
    if path.exists() and not path.is_file():
        raise CheckpointError(f"{path}: not a checkpoint file (a folder, FIFO or device)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint ({exc.strerror or exc})") from None
    meta = _header(data, path)
    try:
        tensors = load(data)
    except SafetensorError as exc:
        raise CheckpointError(f"{path}: corrupted or truncated checkpoint ({elide(exc)})") from None
    stored = meta.pop("sha256", None)
    if stored != _digest(tensors, meta):
        raise CheckpointError(f"{path}: checksum mismatch: the file was corrupted or edited")
    for name, a in tensors.items():  # save_checkpoint refuses to write NaN or Inf: the file was edited
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise CheckpointError(f"{path}: tensor {elide(name, 80)!r} holds NaN or Inf")
    params = {k[len("params/") :]: v for k, v in tensors.items() if k.startswith("params/")}
    config = _field(meta, "model", path)
    try:
        model = RNN.from_config(config, params=params)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: parameters do not match the model description ({elide(exc)})") from None
    vocab = None
    if "vocab" in meta:
        tokens = _field(meta, "vocab", path)
        try:
            vocab = Vocabulary.from_json(tokens)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: malformed checkpoint metadata 'vocab' ({elide(exc)})") from None
    optim = None
    if "optim" in meta:
        arrays = {k[len("optim/") :]: v for k, v in tensors.items() if k.startswith("optim/")}
        scalars = _field(meta, "optim", path)
        if not isinstance(scalars, dict):
            raise CheckpointError(f"{path}: malformed checkpoint metadata 'optim' (not a JSON object)")
        optim = (arrays, scalars)
    train = _field(meta, "train", path)
    if not isinstance(train, dict):
        raise CheckpointError(f"{path}: malformed checkpoint metadata 'train' (not a JSON object)")
    state = {k[len("state/") :]: v for k, v in tensors.items() if k.startswith("state/")}
    return Checkpoint(model=model, vocab=vocab, train=train, optimizer=optim, state=state)
