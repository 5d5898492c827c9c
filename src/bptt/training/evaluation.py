"""Scoring a language model on a token stream, and the training run's log.

The loss is the mean cross-entropy per token in nats,
``ℓ = −(1/N) Σ_t log p(x_{t+1} | x_1 … x_t)``; runs report it in one of two units:

=====  ==========================  ============================================================
unit   from ℓ                      meaning
=====  ==========================  ============================================================
bpc    ``ℓ / ln 2``                bits per token (:func:`bits_per_token`): per character at
                                   character level, where it is the usual score
ppl    ``exp(ℓ)``                  perplexity: the effective number of equally likely next
                                   tokens (word level)
=====  ==========================  ============================================================

A stream of ``N`` token ids is read as ``B`` contiguous streams side by side
(:func:`streams`, a ``(B, N // B)`` array), so each window of ``T`` steps is a
``(T, B)`` block and the hidden state carries from one window into the next.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..engine.network import RNN
from ..files.atomic import write_atomic
from ..files.untrusted import parse_json

if TYPE_CHECKING:  # the trainer builds on this module
    from .train import TrainState

__all__ = [
    "LN2",
    "Progress",
    "bits_per_token",
    "evaluate_loss",
    "metrics_row",
    "score",
    "score_unit",
    "streams",
    "truncate_metrics",
]

LN2 = math.log(2.0)


def bits_per_token(nats: float) -> float:
    """``nats / ln 2``: a cross-entropy per token in bits (bits per character at character level)."""
    return nats / LN2


def score_unit(level: str) -> str:
    """The unit a run reports for vocabulary ``level``: ``"bpc"`` for ``"char"``, ``"ppl"`` otherwise."""
    return "bpc" if level == "char" else "ppl"


def score(loss: float, unit: str) -> float:
    """A loss in nats per token as ``unit``: bits per token (``"bpc"``) or perplexity (``"ppl"``).

    The perplexity ``exp(loss)`` is capped at ``exp(700)`` so that a diverging run still logs
    a finite number.
    """
    return bits_per_token(loss) if unit == "bpc" else math.exp(min(loss, 700.0))


def streams(ids: np.ndarray, batch_size: int) -> np.ndarray:
    """``(B, L)``: ``B = batch_size`` contiguous pieces of the stream ``ids`` side by side.

    ``L = len(ids) // B``; the last ``len(ids) mod B`` tokens are dropped.
    """
    L = len(ids) // batch_size
    return np.ascontiguousarray(ids[: batch_size * L].reshape(batch_size, L))


def evaluate_loss(model: RNN, ids: np.ndarray, batch_size: int, seq_len: int, max_tokens: int | None) -> float:
    """Mean cross-entropy per token (nats) of ``model`` on the stream ``ids``, state carried across windows.

    Parameters
    ----------
    model : RNN
        A language model (softmax output over the vocabulary).
    ids : ndarray, (N,) int
        The token stream; every token but the first is scored once.
    batch_size : int
        Streams read side by side (fewer when ``ids`` is too short for ``batch_size``
        windows of ``seq_len``).
    seq_len : int
        Steps per forward pass.
    max_tokens : int or None
        Read only the first ``max_tokens + 1`` ids (None: all).

    Returns
    -------
    float
        The mean loss, or the first non-finite running total (the model has diverged).
    """
    if max_tokens is not None:
        ids = ids[: max_tokens + 1]
    B = max(1, min(batch_size, (len(ids) - 1) // seq_len))
    blocks = streams(ids, B)
    L = blocks.shape[1]
    state, total, count = None, 0.0, 0
    for start in range(0, L - 1, seq_len):
        end = min(start + seq_len, L - 1)
        x, y = blocks[:, start:end].T, blocks[:, start + 1 : end + 1].T  # (T, B) inputs and next tokens
        fwd = model.forward(x, state)
        total += float(model.output.loss_given_outputs(fwd.outputs, fwd.logits, y).sum())
        count += y.size
        state = fwd.state
        if not math.isfinite(total):
            return total
    return total / count


def metrics_row(
    state: TrainState,
    last: Mapping[str, float],
    val_loss: float,
    unit: str,
    health: Mapping[str, float],
    elapsed: float,
) -> dict[str, Any]:
    """One ``metrics.jsonl`` row, written at an evaluation (its keys in the file's order).

    ``state`` holds the interval's running sums (loss, gradient norms, clipped steps),
    ``last`` is the interval's last :meth:`bptt.train.Trainer.train_step` result,
    ``val_loss`` the validation loss in nats per token, ``unit`` ``"bpc"`` or ``"ppl"``,
    ``health`` the per-layer keys of :func:`bptt.diagnostics.health.layer_health`; the gradient keys
    are described in :mod:`bptt.diagnostics.health`.
    """
    s = state
    return {
        "step": s.step,
        "epoch": s.epoch,
        "tokens": s.tokens,
        "train_loss": s.window_loss / s.window_n,
        f"train_{unit}": score(s.window_loss / s.window_n, unit),
        "val_loss": val_loss,
        f"val_{unit}": score(val_loss, unit),
        "lr": last["lr"],
        "grad_norm": last["grad_norm"],
        "grad_norm_max": s.grad_norm_max,
        "grad_norm_mean": s.grad_norm_sum / s.window_n,
        "clipped_steps": s.clipped_steps,
        **{k: v for k, v in last.items() if k.startswith("grad_norm/")},
        **health,
        "elapsed_s": round(elapsed, 3),
    }


def truncate_metrics(path: Path, step: int) -> None:
    """Drop the ``metrics.jsonl`` rows logged after ``step`` (by a run that stopped after its last checkpoint).

    Lines that are not JSON objects (a torn last line, or anything nested deeper than
    :data:`bptt.files.untrusted.MAX_DEPTH`) are dropped too.
    """
    if not path.exists():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = parse_json(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= step:
            keep.append(line)
    write_atomic(path, "".join(line + "\n" for line in keep))


class Progress:
    """Training progress: a tqdm bar on a terminal; a one-line log every few seconds otherwise.

    Parameters
    ----------
    total : int
        Steps of the whole run.
    done : int
        Steps already done when this run (or resumption) began.
    log : callable
        Receives the one-line messages when stderr is not a terminal.
    """

    def __init__(self, total: int, done: int, log: Callable[[str], None]) -> None:
        self.log = log
        self.total = total
        self.start = done
        self.bar = None
        self.last_line = 0.0
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, unit="step", dynamic_ncols=True, leave=True)

    def update(self, step: int, loss: float, score: float, unit: str, tokens: int, elapsed: float) -> None:
        """Show step ``step``'s training ``loss`` and its ``score`` in ``unit``, and the token rate."""
        rate = tokens / max(elapsed, 1e-9)
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix_str(f"loss {loss:.3f} {unit} {score:.3f} {rate:,.0f} tok/s", refresh=False)
        elif elapsed - self.last_line >= 5.0 or step == self.total:
            self.last_line = elapsed
            eta = elapsed / max(step - self.start, 1) * (self.total - step)
            self.log(
                f"step {step}/{self.total} loss {loss:.4f} {unit} {score:.3f} {rate:,.0f} tok/s "
                f"{elapsed:.0f}s elapsed, ETA {eta:.0f}s"
            )

    def note(self, msg: str) -> None:
        """A line of its own (an evaluation), above the bar on a terminal."""
        if self.bar is not None:
            self.bar.write(msg, file=sys.stderr)
        else:
            self.log(msg)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
