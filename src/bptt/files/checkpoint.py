"""Checkpoints: weights in a safetensors file, everything else as JSON in its metadata.

Loading never executes code: safetensors holds raw arrays and a JSON header,
and bptt reads the header with ``json.loads``. A SHA-256 of every tensor and
the metadata is stored beside them, so a truncated, corrupted or edited file
is refused with one error type, :class:`CheckpointError`.

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

__all__ = ["FORMAT", "Checkpoint", "CheckpointError", "load_checkpoint", "save_checkpoint"]

FORMAT = "bptt-checkpoint"
VERSION = "1"


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
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{path}: not a bptt checkpoint (header is not JSON)") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a bptt checkpoint (a safetensors file without bptt's metadata?)")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {meta.get('version')!r} is not supported (need {VERSION})")
    return meta


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
        raise CheckpointError(f"{path}: corrupted or truncated checkpoint ({exc})") from None
    stored = meta.pop("sha256", None)
    if stored != _digest(tensors, meta):
        raise CheckpointError(f"{path}: checksum mismatch: the file was corrupted or edited")
    try:
        params = {k[len("params/") :]: v for k, v in tensors.items() if k.startswith("params/")}
        try:
            model = RNN.from_config(json.loads(meta["model"]), params=params)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: parameters do not match the model description ({exc})") from None
        vocab = Vocabulary.from_json(json.loads(meta["vocab"])) if "vocab" in meta else None
        optim = None
        if "optim" in meta:
            arrays = {k[len("optim/") :]: v for k, v in tensors.items() if k.startswith("optim/")}
            scalars = json.loads(meta["optim"])
            if not isinstance(scalars, dict):
                raise CheckpointError(f"{path}: malformed optimizer record")
            optim = (arrays, scalars)
        train = json.loads(meta["train"])
        if not isinstance(train, dict):
            raise CheckpointError(f"{path}: malformed training record")
        state = {k[len("state/") :]: v for k, v in tensors.items() if k.startswith("state/")}
        return Checkpoint(model=model, vocab=vocab, train=train, optimizer=optim, state=state)
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: malformed checkpoint metadata ({exc})") from None
