"""The settings of a training run (:class:`TrainConfig`), as stored in every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from .. import _checks
from ..engine.models import MODELS
from ..files.checkpoint import Checkpoint
from ..files.untrusted import elide
from .optim import OPTIMIZERS
from .records import check_record, check_settings
from .schedules import SCHEDULES

__all__ = ["DEFAULT_WORD_VOCAB", "TrainConfig", "TrainingError", "checkpoint_config"]

DEFAULT_WORD_VOCAB = 10_000  # word level without max_vocab: the most frequent 9,999 words and <unk>


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss or gradient, unusable data)."""


@dataclass(frozen=True)
class TrainConfig:
    """Settings of a training run (all JSON-able; stored in every checkpoint).

    Model
        ``cell`` ("elman", "lstm", "gru"), ``hidden_size``, ``num_layers``,
        ``activation`` (Elman's f_h), ``embedding_size`` (None: one-hot inputs),
        ``dtype``, ``dropout`` (probability of dropping a unit of every layer's output but
        the last, as ``torch.nn.LSTM``; needs ``num_layers`` ≥ 2), ``recurrent_dropout``
        (probability of dropping a unit of ``h_{t-1}`` where it enters ``W h_{t-1}``, one mask
        per stream and window). Both in [0, 1), 0: off; training steps only, never
        evaluation or sampling.
    Text
        ``level`` ("char" or "word"), ``max_vocab`` (word level: keep the most
        frequent, the rest become ``<unk>``; default 10,000), ``val_fraction`` (the last part of the
        stream is held out).
    Truncated BPTT
        ``seq_len`` = k1 (steps per update), ``bptt_len`` = k2 ≥ k1 (steps
        backpropagated; None means k1), ``batch_size`` B.
    Optimisation
        ``optimizer`` ("sgd", "adagrad", "rmsprop", "adam", "adamw"), ``lr``,
        ``momentum`` / ``nesterov`` (sgd), ``weight_decay`` (None: 0.01 for adamw, 0
        otherwise), ``schedule``
        ("constant", "cosine", "step"), ``warmup``, ``step_size`` / ``gamma``
        (step schedule), ``min_lr`` (cosine), ``clip`` (global gradient norm; None: off),
        ``clip_value`` (clamp every gradient entry to [−v, v] after the norm clip; None: off).
    Run
        ``steps`` (updates), ``eval_every``, ``eval_tokens`` (validation tokens per
        evaluation; None: all), ``patience`` (evaluations without improvement before
        stopping; None: never), ``sample_every`` / ``sample_length`` (periodic samples;
        0: off), ``checkpoint_every`` (0: at evaluations), ``seed``.
    """

    cell: str = "gru"
    hidden_size: int = 256
    num_layers: int = 1
    activation: str = "tanh"
    embedding_size: int | None = None
    dtype: str = "float32"
    dropout: float = 0.0  # P(drop) of a unit of each layer's output but the last (training steps only)
    recurrent_dropout: float = 0.0  # P(drop) of a unit of h_{t-1} where it enters W h_{t-1} (ditto)
    level: str = "char"
    max_vocab: int | None = None
    val_fraction: float = 0.05
    seq_len: int = 64
    bptt_len: int | None = None
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 2e-3
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float | None = None  # None: the optimizer's default (0.01 for adamw, else 0)
    schedule: str = "constant"
    warmup: int = 0
    step_size: int = 1000
    gamma: float = 0.5
    min_lr: float = 0.0
    clip: float | None = 5.0
    clip_value: float | None = None  # applied after clip: the norm first, then each entry to [-v, v]
    steps: int = 1000
    eval_every: int = 100
    eval_tokens: int | None = 20000
    patience: int | None = None
    sample_every: int = 0
    sample_length: int = 200
    checkpoint_every: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        def fail(name: str, expected: str) -> None:
            raise ValueError(f"{name} must be {expected}, got {elide(repr(getattr(self, name)), 80)}")

        def integer(name: str, low: int, optional: bool = False) -> None:
            v = getattr(self, name)
            if optional and v is None:
                return
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                fail(name, f"an integer ≥ {low}" + (" or None" if optional else ""))

        def number(name: str, strict: bool = True, high: float | None = None, optional: bool = False, **kw) -> None:
            v = getattr(self, name)
            if not (optional and v is None):
                if isinstance(v, int) and not isinstance(v, bool) and abs(v) > 2**62:  # NumPy cannot take it
                    fail(name, "a finite number")
                x = _checks.real(v, name, "", strict=strict, high=high, **kw)
                if type(v) not in (int, float):  # e.g. a NumPy scalar: stored as a float, JSON-able
                    object.__setattr__(self, name, x)

        for name in ("cell", "activation", "dtype", "level", "optimizer", "schedule"):
            if not isinstance(getattr(self, name), str):
                fail(name, "a string")
        if not isinstance(self.nesterov, bool):
            fail("nesterov", "true or false")
        if self.cell not in MODELS:
            fail("cell", f"one of {sorted(MODELS)}")
        if self.optimizer not in OPTIMIZERS:
            fail("optimizer", f"one of {sorted(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            fail("schedule", f"one of {list(SCHEDULES)}")
        if self.level not in ("char", "word"):
            fail("level", "'char' or 'word'")
        if self.dtype not in ("float32", "float64"):
            fail("dtype", "'float32' or 'float64'")
        for name in ("hidden_size", "num_layers", "seq_len", "batch_size", "steps", "eval_every", "sample_length"):
            integer(name, 1)
        for name in ("embedding_size", "bptt_len", "patience", "eval_tokens"):
            integer(name, 1, optional=True)
        integer("max_vocab", 2, optional=True)
        for name in ("warmup", "sample_every", "checkpoint_every", "seed"):
            integer(name, 0)
        integer("step_size", 1)
        number("lr")
        number("val_fraction", high=0.5)
        number("momentum", strict=False, high=1.0)
        number("gamma", high=1.0, high_strict=False)  # a decay factor
        number("min_lr", strict=False)
        number("clip", optional=True)
        number("clip_value", optional=True)
        number("dropout", strict=False, high=1.0)
        number("recurrent_dropout", strict=False, high=1.0)
        if self.bptt_len is not None and self.bptt_len < self.seq_len:
            raise ValueError(f"bptt_len (k2) must be ≥ seq_len (k1) = {self.seq_len}, got {self.bptt_len}")
        number("weight_decay", strict=False, optional=True)
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr must be ≤ lr = {self.lr:g}, got {self.min_lr!r}")
        if self.schedule == "cosine" and self.warmup >= self.steps:
            raise ValueError(f"warmup must be shorter than the run (steps = {self.steps}) for a cosine schedule")
        if self.cell != "elman" and self.activation != "tanh":
            raise ValueError(f"activation applies to the elman cell only; {self.cell} gates have fixed activations")
        if self.optimizer != "sgd" and (self.momentum or self.nesterov):
            raise ValueError(f"momentum and nesterov apply to the sgd optimizer only, not {self.optimizer}")
        if self.dropout and self.num_layers == 1:
            raise ValueError(
                "dropout acts between stacked layers (on every layer's output but the last), so it needs "
                "num_layers ≥ 2; for one layer use recurrent_dropout"
            )
        if self.level == "char" and self.max_vocab is not None:
            raise ValueError("max_vocab applies to level 'word' only (character level keeps every character)")

    @property
    def k1(self) -> int:
        return self.seq_len

    @property
    def k2(self) -> int:
        return self.seq_len if self.bptt_len is None else self.bptt_len

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainConfig:
        """The settings :meth:`to_json` wrote; those it lacks (older checkpoints) take their defaults."""
        if not isinstance(data, dict):
            raise TypeError(f"training settings must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in set(data) - known)
        if unknown:
            raise ValueError(f"unknown training settings {elide(unknown, 80)}")
        return cls(**data)


def checkpoint_config(ckpt: Checkpoint, path: object = "checkpoint") -> TrainConfig:
    """The training settings stored in a checkpoint, checked with all of it that needs no corpus.

    That is the settings, every field of the training record (:func:`bptt.training.records.check_record`),
    and the model, carried state and token count against the settings
    (:func:`bptt.training.records.check_settings`).

    Raises
    ------
    TrainingError
        Naming ``path`` and the first bad setting or field.
    """
    if "config" not in ckpt.train:
        raise TrainingError(f"{path}: checkpoint has no training settings (no 'config' in its training record)")
    try:
        config = TrainConfig.from_json(ckpt.train["config"])
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"{path}: malformed training record: config: {elide(exc)}") from None
    try:
        check_record(ckpt.train, path)
        check_settings(config, ckpt, path)
    except ValueError as exc:
        raise TrainingError(str(exc)) from None
    return config
