"""The training record of a checkpoint, checked field by field before anything uses it.

A checkpoint's SHA-256 shows that a file is intact, not who wrote it: anyone can edit
its training record and recompute the sum. A record with ``step = -10⁹`` would train
from step −10⁹, one with ``pos = -1000`` on a window a thousand steps long, one with
``window_n = -2`` divide by zero at the next evaluation. So every field of
:class:`bptt.training.train.TrainState`'s record is checked:

- on load (:func:`check_record`): its type (an ``int``, never a ``bool``, for a count;
  a finite ``float``, never an ``int``, where bptt writes a float), its range, and its
  agreement with the other fields;
- with the run's settings (:func:`check_settings`): the model's shape, the carried
  hidden state, the token count;
- on resume (:func:`check_resume`): with the corpus (stream position and epoch follow
  from the step), the evaluation interval, dropout and the optimizer's step count.

Every refusal is one line naming the file and the field, quoting at most a few dozen
characters of what the file holds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..files.untrusted import elide

if TYPE_CHECKING:  # the settings and the trainer check their records with this module
    from ..files.checkpoint import Checkpoint
    from .config import TrainConfig
    from .train import Trainer

__all__ = ["MAX_COUNT", "check_record", "check_resume", "check_rng_state", "check_settings"]

MAX_COUNT = 2**62  # no count of steps, tokens or epochs comes near it
COUNTS = ("step", "epoch", "pos", "tokens", "bad_evals", "window_n", "clipped_steps")
SUMS = ("window_loss", "grad_norm_max", "grad_norm_sum")  # running sums of finite values ≥ 0
HEALTH = ("grad_norm_max", "grad_norm_sum", "clipped_steps")  # absent from checkpoints older than them
KNOWN = (*COUNTS, *SUMS, "best_val", "stopped", "dropout_rng", "config", "data")
MAX_STOPPED = 300  # characters of the early-stopping note
PCG64_KEYS = {"bit_generator", "state", "has_uint32", "uinteger"}


def _int_below(value: object, end: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < end


def _count(value: object) -> bool:
    return _int_below(value, MAX_COUNT + 1)


def _sum(value: object) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value >= 0


def _refuse(where: object, field: str, expected: str, got: object) -> ValueError:
    return ValueError(f"{where}: malformed training record: {field} must be {expected}, got {elide(repr(got), 80)}")


def check_rng_state(state: object, where: object = "training record", field: str = "dropout_rng") -> None:
    """Refuse anything but a PCG64 state as ``bit_generator.state`` writes it (ints in their ranges).

    NumPy's own setter truncates floats and bools and overflows on big ints.
    """
    inner = state.get("state") if isinstance(state, dict) else None
    ok = (
        isinstance(state, dict)
        and set(state) == PCG64_KEYS
        and state["bit_generator"] == "PCG64"
        and isinstance(inner, dict)
        and set(inner) == {"state", "inc"}
        and all(_int_below(v, 2**128) for v in inner.values())
        and _int_below(state["has_uint32"], 2)
        and _int_below(state["uinteger"], 2**32)
    )
    if not ok:
        raise _refuse(where, field, "a PCG64 state (state, inc < 2**128; has_uint32 0 or 1; uinteger < 2**32)", state)


def check_record(rec: Mapping[str, Any], where: object = "training record", partial: bool = False) -> None:
    """Check every field of a training record on its own and against the others.

    Parameters
    ----------
    rec : dict
        :meth:`TrainState.record`'s fields, as a checkpoint stores them (``config`` and
        ``data`` may be there too; :func:`check_resume` checks them).
    where : str or path
        The file, for the message.
    partial : bool
        Check only the fields present (for showing a record, e.g. ``bptt info``), not
        that the record is complete or consistent.

    Raises
    ------
    ValueError
        Naming ``where`` and the first bad field.
    """
    if not isinstance(rec, Mapping):
        raise _refuse(where, "the record", "a JSON object", rec)
    if not partial:
        unknown = [k for k in rec if k not in KNOWN]
        if unknown:
            raise ValueError(f"{where}: malformed training record: unknown field {elide(repr(unknown[0]), 60)}")
        missing = [k for k in (*COUNTS, *SUMS, "best_val", "stopped") if k not in rec and k not in HEALTH]
        if missing:
            raise ValueError(f"{where}: malformed training record: no {missing[0]!r} field")
    for k in COUNTS:
        if k in rec and not _count(rec[k]):
            raise _refuse(where, k, "an integer in [0, 2**62]", rec[k])
    for k in SUMS:
        if k in rec and not _sum(rec[k]):
            raise _refuse(where, k, "a finite float ≥ 0", rec[k])
    if rec.get("best_val") is not None and not _sum(rec["best_val"]):
        raise _refuse(where, "best_val", "null or a finite float ≥ 0 (a validation loss)", rec["best_val"])
    stopped = rec.get("stopped")
    if stopped is not None and not (isinstance(stopped, str) and len(stopped) <= MAX_STOPPED and stopped.isprintable()):
        raise _refuse(where, "stopped", f"null or a one-line note of at most {MAX_STOPPED} characters", stopped)
    if rec.get("dropout_rng") is not None:
        check_rng_state(rec["dropout_rng"], where)
    if partial:
        return
    r = {"grad_norm_max": 0.0, "grad_norm_sum": 0.0, "clipped_steps": 0, **rec}
    step, n = r["step"], r["window_n"]
    for k in ("epoch", "bad_evals", "window_n"):  # at most one epoch change, evaluation or interval step per step
        if r[k] > step:
            raise _refuse(where, k, f"≤ step = {step}", r[k])
    if r["clipped_steps"] > n:
        raise _refuse(where, "clipped_steps", f"≤ window_n = {n} (steps since the last evaluation)", r["clipped_steps"])
    if n == 0 and any(r[k] != 0 for k in SUMS):
        bad = next(k for k in SUMS if r[k] != 0)
        raise _refuse(where, bad, "0.0 when window_n is 0 (no step since the last evaluation)", r[bad])
    if r["grad_norm_max"] > r["grad_norm_sum"]:
        raise _refuse(where, "grad_norm_max", f"≤ grad_norm_sum = {r['grad_norm_sum']!r}", r["grad_norm_max"])
    if r["best_val"] is None and r["bad_evals"] != 0:
        raise _refuse(where, "bad_evals", "0 before the first evaluation (best_val is null)", r["bad_evals"])


def check_settings(config: TrainConfig, ckpt: Checkpoint, where: object) -> None:
    """Check a checkpoint's model, carried state and token count against its run's settings ``config``.

    Everything :func:`check_resume` would check that needs no corpus, so that a forged
    record is refused before the corpus is read. ``ckpt.train`` must have passed
    :func:`check_record`.

    Raises
    ------
    ValueError
        Naming ``where`` and the first field that does not fit.
    """
    rec, model = ckpt.train, ckpt.model
    if ckpt.vocab is None:
        raise ValueError(f"{where}: malformed training record: the checkpoint of a training run has no vocabulary")
    _check_model(model.config(), config, len(ckpt.vocab), where)
    tokens = rec["step"] * config.k1 * config.batch_size
    if rec["tokens"] != tokens:
        raise _refuse(where, "tokens", f"step × seq_len × batch_size = {tokens}", rec["tokens"])
    expected = model.initial_state(config.batch_size)
    for name in ckpt.state:
        if name not in expected:
            raise _refuse(where, "carried state", f"the model's ({', '.join(expected)})", name)
    for name, e in expected.items():
        a = ckpt.state.get(name)
        if a is None or a.shape != e.shape or a.dtype != e.dtype:
            got = "nothing" if a is None else f"{a.dtype} {a.shape}"
            raise _refuse(where, f"carried state {name!r}", f"{e.dtype} {e.shape} (batch_size × hidden_size)", got)
        if not np.isfinite(a).all():
            raise _refuse(where, f"carried state {name!r}", "finite", "NaN or Inf")


def check_resume(trainer: Trainer, ckpt: Checkpoint, where: object) -> None:
    """Check ``ckpt``'s training record against the corpus and the optimizer of the run ``trainer`` rebuilt from it.

    ``trainer`` holds the settings, the corpus (its token streams) and the model of the
    checkpoint; its optimizer has loaded the checkpoint's state. ``ckpt`` must have passed
    :func:`check_record` and :func:`check_settings`.

    Raises
    ------
    ValueError
        Naming ``where`` and the first field that does not fit.
    """
    cfg, rec = trainer.config, ckpt.train
    data = rec.get("data")
    if not (isinstance(data, dict) and set(data) == {"files", "digest"} and _count(data["files"])):
        raise _refuse(where, "data", "{'files': count, 'digest': SHA-256 of the token ids}", data)
    step = rec["step"]
    # The stream advances k1 columns a step and restarts (next epoch) when a window no longer fits.
    per_epoch = (trainer.streams.shape[1] - 1) // cfg.k1
    epoch, pos = (0, 0) if step == 0 else divmod(step - 1, per_epoch)
    pos = 0 if step == 0 else (pos + 1) * cfg.k1
    corpus = f"at step {step} ({per_epoch} steps per epoch of this corpus and seq_len)"
    if rec["epoch"] != epoch:
        raise _refuse(where, "epoch", f"{epoch} {corpus}", rec["epoch"])
    if rec["pos"] != pos:
        raise _refuse(where, "pos", f"{pos} {corpus}", rec["pos"])
    if rec["window_n"] >= cfg.eval_every:
        raise _refuse(where, "window_n", f"< eval_every = {cfg.eval_every} (an evaluation resets it)", rec["window_n"])
    dropout = bool(cfg.dropout or cfg.recurrent_dropout)
    if rec.get("dropout_rng") is None and dropout:
        raise ValueError(f"{where}: the run uses dropout but its checkpoint has no dropout RNG state")
    if rec.get("dropout_rng") is not None and not dropout:
        raise _refuse(where, "dropout_rng", "null for a run without dropout", "a PCG64 state")
    if trainer.optimizer.steps != step:
        raise _refuse(where, "optimizer steps", f"the training step {step} (one update each)", trainer.optimizer.steps)


def _check_model(got: Mapping[str, Any], cfg: TrainConfig, vocab_size: int, where: object) -> None:
    """The model a checkpoint holds has the shape its run's settings describe."""
    layer = {"kind": cfg.cell, "hidden_size": cfg.hidden_size, "activation": cfg.activation}
    expected = {
        "input_size": vocab_size,
        "output_size": vocab_size,
        "output": "softmax",
        "embedding_size": cfg.embedding_size,
        "dtype": cfg.dtype,
        "layers": cfg.num_layers,  # compared by count, then one by one
        "dropout": cfg.dropout,
        "recurrent_dropout": cfg.recurrent_dropout,
    }
    for key, want in expected.items():
        have = got.get(key, 0.0 if key in ("dropout", "recurrent_dropout") else None)
        if key == "layers":
            have = len(have)
            key = "layers (number of)"
            bad = next((spec for spec in got["layers"] if spec != layer), None)
            if have == want and bad is not None:
                key, want, have = "a layer", layer, bad
        if have != want:
            raise ValueError(
                f"{where}: malformed training record: its config describes a model with {key} "
                f"{elide(repr(want), 80)}, but the checkpoint's model has {elide(repr(have), 80)}"
            )
