"""Training a recurrent language model with truncated BPTT over a long token stream.

The token stream is cut into ``B`` contiguous streams side by side (a ``(B, L)``
array), so each window is a ``(T, B)`` block and the hidden state at the end of
one window is the true state at the start of the next::

    stream b:  t0 t1 t2 … | window 1 (T steps) | window 2 | …

**TBPTT(k1, k2)** (Williams & Peng): every update advances ``k1`` steps and
backpropagates ``k2 ≥ k1`` steps. The window covers the last ``k2`` steps;
its first ``k2 − k1`` steps repeat the end of the previous window (with the
current weights) and carry loss weight 0, so only the ``k1`` new steps are
scored while gradients flow ``k2`` steps back. ``k1 = k2`` is the usual case.
The loss is the mean per-token cross-entropy of the scored steps (weights
``1/k1`` in bptt's ``J = (1/B) Σ_t Σ_b w_tb Loss_tb``).

Everything that decides the next step lives in :class:`TrainState` (step,
stream position, carried hidden state, optimizer moments, the dropout RNG's state), and a
checkpoint stores all of it: a run stopped and resumed equals the
uninterrupted run bit for bit on the same machine and thread count.

**Gradient clipping.** Each step's gradient is first rescaled to global norm ≤ ``clip``
(:func:`bptt.optim.clip_grad_norm`), then every entry clamped to ``[−clip_value, clip_value]``
(:func:`bptt.optim.clip_grad_value`), each when set.

**Dropout** (``dropout`` between stacked layers, ``recurrent_dropout`` on ``h_{t-1}``) is
drawn in training steps only, new masks every window, from ``TrainState.dropout_rng``;
evaluation and sampling run the whole network.

**Training health.** Every ``metrics.jsonl`` row (one per evaluation) also shows
whether gradients explode or vanish (gradient norms, clipped steps, the recurrent
weights' spectral norms and radii, saturated units; :mod:`bptt.diagnostics.health` lists the
keys), from values the training steps computed anyway. Their running values live in
:class:`TrainState` and are checkpointed, so a resumed run writes the same rows.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

# Names this module had before evaluation.py, health.py and the one cell table.
from ..diagnostics.health import CLIPPED_ALARM as CLIPPED_ALARM
from ..diagnostics.health import SATURATED_ALARM as SATURATED_ALARM
from ..diagnostics.health import health_note, layer_health
from ..engine.models import MODELS
from ..engine.network import RNN, Forward
from ..files.atomic import remove_stale_temps, write_atomic
from ..files.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ..files.untrusted import elide
from ..text.corpus import encode_corpus, read_corpus
from ..text.sampling import default_prime, sample_text
from ..text.vocab import Vocabulary
from .allocator import retain_freed_memory
from .config import DEFAULT_WORD_VOCAB, TrainConfig, TrainingError, checkpoint_config
from .evaluation import LN2 as LN2
from .evaluation import Progress, evaluate_loss, metrics_row, score, score_unit, streams, truncate_metrics
from .optim import Optimizer, clip_grad_norm, clip_grad_value, make_optimizer
from .records import check_record, check_resume
from .schedules import Schedule

CELLS = MODELS  # this module's name for the one cell table, bptt.engine.models.MODELS

__all__ = ["TrainConfig", "Trainer", "TrainingError", "checkpoint_config", "prepare_data"]


@dataclass(frozen=True)
class Data:
    """A tokenised corpus split for training: ``train`` and ``val`` id streams and the vocabulary.

    The streams are views of one id array in the smallest unsigned dtype for the vocabulary
    (``vocab.id_dtype``: one byte per token up to 256 tokens); ``digest`` is the SHA-256 of
    the ids as int32 (:func:`bptt.text.corpus.encode_corpus`).
    """

    vocab: Vocabulary
    train: np.ndarray
    val: np.ndarray
    files: tuple[str, ...]
    digest: str


def prepare_data(paths, config: TrainConfig, vocab: Vocabulary | None = None) -> Data:
    """Read text, build (or reuse) the vocabulary, encode, and split train / validation.

    The last ``val_fraction`` of the token stream is the validation set (a
    contiguous split: deterministic, and no validation text leaks into training).
    """
    corpus = read_corpus(paths)
    if vocab is None:
        cap = config.max_vocab if config.max_vocab is not None or config.level == "char" else DEFAULT_WORD_VOCAB
        vocab = Vocabulary.build_from_chunks(corpus.chunks(), config.level, cap)
    ids, digest = encode_corpus(corpus, vocab, strict=vocab.level == "char")  # compact ids (vocab.id_dtype)
    n_val = int(len(ids) * config.val_fraction)
    need = config.batch_size * (config.k1 + 1)
    train, val = ids[: len(ids) - n_val], ids[len(ids) - n_val :]
    if len(train) < need or len(val) < config.k1 + 1:
        raise TrainingError(
            f"corpus too short: {len(ids)} tokens; batch_size × (seq_len + 1) = {need} are needed for training "
            f"and seq_len + 1 = {config.k1 + 1} for validation (use less batch_size/seq_len or more text)"
        )
    return Data(vocab=vocab, train=train, val=val, files=corpus.files, digest=digest)


def build_model(config: TrainConfig, vocab_size: int) -> RNN:
    """The language model of ``config``: token ids in, a softmax over the vocabulary out."""
    kwargs: dict[str, Any] = dict(
        num_layers=config.num_layers, embedding_size=config.embedding_size, dtype=config.dtype, seed=config.seed
    )
    if config.cell == "elman":
        kwargs["activation"] = config.activation
    if config.dropout or config.recurrent_dropout:  # only then: runs without dropout build the same model as before
        kwargs.update(dropout=config.dropout, recurrent_dropout=config.recurrent_dropout)
    return MODELS[config.cell](vocab_size, config.hidden_size, vocab_size, output="softmax", **kwargs)


HEALTH_FIELDS = ("grad_norm_max", "grad_norm_sum", "clipped_steps")  # TrainState's gradient statistics
DROPOUT_STREAM = 1  # the dropout RNG is the child stream (seed, spawn_key=(1,)) of the run's seed


def dropout_generator(config: TrainConfig) -> np.random.Generator | None:
    """A fresh run's RNG for dropout masks (None when the run has no dropout).

    A child stream of ``config.seed`` (:class:`numpy.random.SeedSequence` spawn key), apart from
    the ``(seed, step)`` streams that samples draw from.
    """
    if not (config.dropout or config.recurrent_dropout):
        return None
    return np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(DROPOUT_STREAM,)))


def generator_from_state(state: object) -> np.random.Generator:
    """The generator whose ``bit_generator.state`` was ``state`` (a JSON-able PCG64 state dict)."""
    if not isinstance(state, dict) or state.get("bit_generator") != "PCG64":
        raise ValueError(f"dropout_rng must be a PCG64 state, got {state!r:.80}")
    bits = np.random.PCG64()
    bits.state = state  # checks the keys and values
    return np.random.Generator(bits)


@dataclass
class TrainState:
    """Everything that decides the rest of a run (saved in checkpoints)."""

    step: int = 0
    epoch: int = 0
    pos: int = 0  # first scored column of the next window
    tokens: int = 0
    best_val: float | None = None
    bad_evals: int = 0
    window_loss: float = 0.0  # sum of training losses since the last evaluation
    window_n: int = 0
    grad_norm_max: float = 0.0  # largest global gradient norm since the last evaluation
    grad_norm_sum: float = 0.0  # their sum (for the mean)
    clipped_steps: int = 0  # steps since the last evaluation whose gradient was clipped
    stopped: str | None = None  # why the run ended early (early stopping), if it did
    dropout_rng: np.random.Generator | None = None  # draws the dropout masks; None: the run has no dropout
    carried: dict[str, np.ndarray] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """Every field but the carried state (saved as tensors), JSON-able.

        ``dropout_rng`` is recorded as its bit generator's state (a dict of ints), and only
        when there is one: a run without dropout writes the same record as before dropout existed.
        """
        rec = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("carried", "dropout_rng")}
        if self.dropout_rng is not None:
            rec["dropout_rng"] = self.dropout_rng.bit_generator.state
        return rec

    @classmethod
    def from_record(
        cls, rec: dict[str, Any], carried: dict[str, np.ndarray], where: object = "training record"
    ) -> TrainState:
        """The state ``rec`` describes, each field checked first (:func:`bptt.training.records.check_record`).

        Raises ``ValueError`` naming ``where`` (the file) and the first bad field.
        """
        check_record(rec, where)
        optional = (*HEALTH_FIELDS, "dropout_rng", "carried")
        names = [f.name for f in fields(cls) if f.name not in optional]
        # Checkpoints written before the health metrics existed resume with an empty interval.
        health = {k: rec[k] for k in HEALTH_FIELDS if k in rec}
        rng = generator_from_state(rec["dropout_rng"]) if rec.get("dropout_rng") is not None else None
        return cls(
            **{k: rec[k] for k in names},
            **health,
            dropout_rng=rng,
            carried={k: v.copy() for k, v in carried.items()},
        )

    def reset_interval(self) -> None:
        """Start a new evaluation interval: clear the running loss and gradient statistics."""
        self.window_loss, self.window_n = 0.0, 0
        self.grad_norm_max, self.grad_norm_sum, self.clipped_steps = 0.0, 0.0, 0


class Trainer:
    """Trains a language model on ``data`` with the settings of ``config``.

    Parameters
    ----------
    config : TrainConfig
    data : Data
        From :func:`prepare_data`.
    out_dir : path
        Where ``latest.safetensors``, ``best.safetensors`` and ``metrics.jsonl`` go.
    model : RNN, optional
        Defaults to :func:`build_model`.
    log : callable, optional
        Receives one-line progress messages (default: print to stderr).

    Building a trainer calls :func:`bptt.allocator.retain_freed_memory` (process-wide):
    every step reuses memory the previous one freed instead of page-faulting it back in.
    """

    def __init__(self, config: TrainConfig, data: Data, out_dir, model: RNN | None = None, log=None) -> None:
        retain_freed_memory()
        self.config = config
        self.data = data
        self.out_dir = Path(out_dir)
        self.model = model if model is not None else build_model(config, len(data.vocab))
        self.schedule = Schedule(
            config.lr,
            config.schedule,
            warmup=config.warmup,
            total_steps=config.steps,
            min_lr=config.min_lr,
            step_size=config.step_size,
            gamma=config.gamma,
        )
        options: dict[str, Any] = {} if config.weight_decay is None else {"weight_decay": config.weight_decay}
        if config.optimizer == "sgd":
            options.update(momentum=config.momentum, nesterov=config.nesterov)
        self.optimizer: Optimizer = make_optimizer(config.optimizer, self.model.params, self.schedule, **options)
        self.streams = streams(data.train, config.batch_size)
        self.state = TrainState(
            carried=self.model.initial_state(config.batch_size), dropout_rng=dropout_generator(config)
        )
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.should_stop: Callable[[], bool] = lambda: False  # polled between steps (e.g. after Ctrl-C)
        # The last train_step's forward pass, for the saturation metric (read at the evaluation
        # that follows it in the same loop iteration, so it never needs to survive a checkpoint).
        self._last_forward: Forward | None = None

    # -- checkpoints -----------------------------------------------------------------
    def _record(self) -> dict[str, Any]:
        # Training draws random numbers only for dropout masks, from state.dropout_rng (recorded
        # below); the stream order is fixed, and samples use an RNG derived from (seed, step). So
        # the state below, the weights and the optimizer decide the rest.
        return {
            "config": self.config.to_json(),
            **self.state.record(),
            "data": {"files": len(self.data.files), "digest": self.data.digest},
        }

    def save(self, name: str) -> Path:
        """Write ``out_dir/name`` atomically with everything needed to resume."""
        path = self.out_dir / name
        save_checkpoint(
            path,
            Checkpoint(
                model=self.model,
                vocab=self.data.vocab,
                train=self._record(),
                optimizer=self.optimizer.state_dict(),
                state=self.state.carried,
            ),
        )
        return path

    @classmethod
    def resume(
        cls, path, data: Data, out_dir, log=None, steps: int | None = None, ckpt: Checkpoint | None = None
    ) -> Trainer:
        """A trainer that continues the run saved in checkpoint ``path`` exactly.

        ``steps`` replaces the run's total number of updates (to train for longer; a cosine
        schedule then stretches to the new length). ``ckpt`` is ``path`` already loaded.

        Every field of the checkpoint's training record and optimizer state is checked
        first (:mod:`bptt.training.records`): a ``TrainingError`` names the file and the
        field. Temporary files that crashed saves left in ``out_dir`` are removed
        (:func:`bptt.files.atomic.remove_stale_temps`).
        """
        ckpt, name = (ckpt if ckpt is not None else load_checkpoint(path)), path
        rec = ckpt.train
        config = checkpoint_config(ckpt, name)
        if steps is not None:
            config = TrainConfig.from_json({**config.to_json(), "steps": steps})
        digest = rec.get("data", {}).get("digest") if isinstance(rec.get("data"), dict) else None
        if digest != data.digest:
            raise TrainingError(f"{name}: the training text differs from the text this run was started on")
        if ckpt.optimizer is None:
            raise TrainingError(f"{name}: checkpoint has no optimizer state to resume from")
        for run_file in ("latest.safetensors", "best.safetensors", "metrics.jsonl"):
            remove_stale_temps(Path(out_dir) / run_file)
        trainer = cls(config, data, out_dir, model=ckpt.model, log=log)
        try:
            trainer.optimizer.load_state_dict(*ckpt.optimizer)
        except (TypeError, ValueError) as exc:
            raise TrainingError(f"{name}: malformed optimizer state ({elide(exc)})") from None
        try:
            check_resume(trainer, ckpt, name)
        except ValueError as exc:
            raise TrainingError(str(exc)) from None
        trainer.state = TrainState.from_record(rec, ckpt.state, name)
        return trainer

    # -- one update ---------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        """One TBPTT(k1, k2) update.

        Returns its ``loss``, global ``grad_norm`` (before clipping), ``lr``, ``clipped``
        (1.0 if the gradient norm was clipped to ``clip``, else 0.0), ``value_clipped`` (1.0 if
        an entry was then clamped to ``±clip_value``, else 0.0) and ``grad_norm/<param>`` for
        every parameter (before clipping).

        With dropout, the masks come from ``state.dropout_rng``; the hidden state carried to the
        next window is the one this (dropped-out) forward pass computed.
        """
        cfg, s, m = self.config, self.state, self.model
        k1, overlap = cfg.k1, cfg.k2 - cfg.k1
        L = self.streams.shape[1]
        if s.pos + k1 + 1 > L:  # stream exhausted: next epoch from a zero state
            s.epoch += 1
            s.pos = 0
            s.carried = m.initial_state(cfg.batch_size)
        start = max(0, s.pos - overlap)  # the window reaches k2 steps back (less at the start)
        end = s.pos + k1
        x = self.streams[:, start:end].T  # (T, B) token ids
        y = self.streams[:, start + 1 : end + 1].T  # next tokens
        w = np.zeros(x.shape, m.dtype)
        w[s.pos - start :] = 1.0 / k1  # score only the k1 new steps; mean per token
        self._last_forward = None  # let the previous pass's caches go before the new pass allocates
        # A run without dropout passes no dropout_rng: its steps are exactly those of before dropout existed.
        dropout = {} if s.dropout_rng is None else {"dropout_rng": s.dropout_rng}
        lr = self.optimizer.current_lr()
        with np.errstate(over="ignore", invalid="ignore"):  # non-finite values are caught just below
            r = m.loss_and_grad(x, y, s.carried, loss_weights=w, **dropout)
        if not math.isfinite(r.loss):
            name, big = max(((k, float(np.abs(p).max(initial=0.0))) for k, p in m.params.items()), key=lambda kv: kv[1])
            raise TrainingError(
                f"step {s.step + 1}: loss is {r.loss} with lr {lr:g}: the forward pass overflowed while every "
                f"parameter is finite (largest: |{name}| = {big:.3g}); stopping before it reaches the weights"
            )
        try:
            # Per-parameter norms before clipping (clip_grad_norm of one array is its overflow-safe norm).
            param_norms = {f"grad_norm/{k}": clip_grad_norm({k: r.grads[k]}, None) for k in m.params}
            norm = clip_grad_norm(r.grads, cfg.clip, names=m.params.keys())
            # Then each entry to [−clip_value, clip_value]: the order the config documents.
            peak = 0.0 if cfg.clip_value is None else clip_grad_value(r.grads, cfg.clip_value, names=m.params.keys())
        except FloatingPointError as exc:
            msg = f"step {s.step + 1}: {exc} with lr {lr:g}; stopping before it reaches the weights"
            raise TrainingError(msg) from None
        with np.errstate(over="ignore", invalid="ignore"):  # checked just below
            self.optimizer.step(r.grads)
        for name, p in m.params.items():
            if not np.isfinite(p).all():
                raise TrainingError(
                    f"step {s.step + 1}: parameter {name!r} became non-finite with lr {lr:g} (too high?)"
                )
        # Huge gradients can overflow an optimizer's running squares (RMSprop's, Adam's) while every weight stays
        # finite: each later update of those entries is then 0, and the run would stall silently.
        slot = self.optimizer.non_finite_state()
        if slot is not None:
            raise TrainingError(
                f"step {s.step + 1}: optimizer state {slot!r} became non-finite with lr {lr:g} while every parameter "
                "stayed finite (gradients too large: set clip, or lower lr)"
            )
        # The next window starts k1 steps later; carry the state from there.
        next_start = max(0, end - overlap)
        if next_start > start:
            s.carried = m.state_at(r.forward, next_start - start - 1)
        s.pos = end
        s.step += 1
        s.tokens += k1 * cfg.batch_size
        self._last_forward = r.forward
        clipped = float(cfg.clip is not None and norm > cfg.clip)
        value_clipped = float(cfg.clip_value is not None and peak > cfg.clip_value)
        return {
            "loss": r.loss,
            "grad_norm": norm,
            "lr": lr,
            "clipped": clipped,
            "value_clipped": value_clipped,
            **param_norms,
        }

    # -- training health -------------------------------------------------------------------
    def health(self) -> dict[str, float]:
        """Recurrent weights' spectral norms and radii, and the last window's saturation, per layer.

        Keys ``spectral_norm/layer<k>``, ``spectral_radius/layer<k>`` (the current weights)
        and ``saturation/layer<k>`` (fraction of saturated units over every step and stream
        of the last :meth:`train_step`'s forward pass; absent before the first step).
        See :func:`bptt.diagnostics.health.layer_health`.
        """
        return layer_health(self.model, self._last_forward)

    # -- evaluation ---------------------------------------------------------------------
    def evaluate(self) -> float:
        """Mean cross-entropy per token (nats) on the validation stream (the first ``eval_tokens``)."""
        cfg = self.config
        with np.errstate(over="ignore", invalid="ignore"):
            val = evaluate_loss(self.model, self.data.val, cfg.batch_size, cfg.k1, cfg.eval_tokens)
        if not math.isfinite(val):
            lr = self.schedule(max(self.state.step - 1, 0))  # the last update's
            raise TrainingError(
                f"step {self.state.step}: validation loss is {val} after an update with lr {lr:g}: the model has "
                "diverged (its parameters are finite; the forward pass overflowed)"
            )
        return val

    # -- the loop ------------------------------------------------------------------------
    def run(self, on_sample: Callable[[int, str], None] | None = None) -> dict[str, Any]:
        """Train until ``config.steps`` updates (or early stopping); return the final metrics."""
        cfg, s = self.config, self.state
        self.out_dir.mkdir(parents=True, exist_ok=True)
        metrics_path = self.out_dir / "metrics.jsonl"
        truncate_metrics(metrics_path, s.step)
        unit = score_unit(self.data.vocab.level)
        t0, tokens0 = time.perf_counter(), s.tokens
        last: dict[str, Any] = {}
        if s.stopped:
            self.log(f"nothing to do: {s.stopped}")
            return last
        progress = Progress(cfg.steps, s.step, self.log)
        with metrics_path.open("a", encoding="utf-8") as metrics:
            while s.step < cfg.steps and not self.should_stop() and not s.stopped:
                out = self.train_step()
                s.window_loss += out["loss"]
                s.window_n += 1
                s.grad_norm_max = max(s.grad_norm_max, out["grad_norm"])
                s.grad_norm_sum += out["grad_norm"]
                s.clipped_steps += int(out["clipped"])
                elapsed = time.perf_counter() - t0
                progress.update(s.step, out["loss"], score(out["loss"], unit), unit, s.tokens - tokens0, elapsed)
                evaluating = s.step % cfg.eval_every == 0 or s.step == cfg.steps
                if evaluating:
                    val = self.evaluate()
                    row = metrics_row(s, out, val, unit, self.health(), elapsed)
                    note = health_note(row, s.window_n)
                    s.reset_interval()
                    improved = s.best_val is None or val < s.best_val
                    if improved:
                        s.best_val, s.bad_evals = val, 0
                    else:
                        s.bad_evals += 1
                    metrics.write(json.dumps(row) + "\n")
                    metrics.flush()
                    progress.note(
                        f"step {s.step}: train {unit} {row[f'train_{unit}']:.3f}, val {unit} {row[f'val_{unit}']:.3f}"
                        + (" (best)" if improved else "")
                        + note
                    )
                    latest = self.save("latest.safetensors")
                    if improved:  # the same bytes: copy rather than serialise again
                        write_atomic(self.out_dir / "best.safetensors", latest.read_bytes())
                    last = row
                    if cfg.patience is not None and s.bad_evals >= cfg.patience:
                        s.stopped = f"early stopping at step {s.step}: no improvement in {cfg.patience} evaluations"
                        self.save("latest.safetensors")  # record that the run has ended
                        break
                elif cfg.checkpoint_every and s.step % cfg.checkpoint_every == 0:
                    self.save("latest.safetensors")
                if cfg.sample_every and s.step % cfg.sample_every == 0 and on_sample is not None:
                    on_sample(s.step, self.sample(cfg.sample_length))
        progress.close()
        if s.stopped:
            self.log(s.stopped)
        return last

    def sample(self, n: int, prime: str | None = None, temperature: float = 0.8) -> str:
        """A sample from the current model, drawn with an RNG derived from (seed, step).

        Sampling never touches the training RNG, so it cannot change the run.
        """
        rng = np.random.default_rng([self.config.seed, self.state.step])
        prime = prime if prime is not None else default_prime(self.data.vocab)
        return prime + "".join(sample_text(self.model, self.data.vocab, prime, n, temperature=temperature, seed=rng))
