"""The ``bptt`` command line's options: every sub-command's arguments, with what each does and its default.

:func:`parser` builds the argument parser that :func:`bptt.cli.main` runs; :class:`UsageError` is a
command-line mistake, reported in one line with exit status 2.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

from . import _checks
from .engine.models import MODELS
from .interop.commands import add_parsers as add_interop_parsers
from .training.config import DEFAULT_WORD_VOCAB
from .training.train import TrainConfig

__all__ = ["UsageError", "parser"]


class UsageError(Exception):
    """A command-line mistake (reported in one line, exit 2)."""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's "(default: …)" after every option's help, except where there is no value to show.

    A flag (default False) says what it turns on; an option whose default is None says in its own
    help what leaving it out means ("default: never stop early"), never "default: None".
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or isinstance(action.default, bool):
            return action.help or ""
        return super()._get_help_string(action) or ""


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("bptt").strip()  # "train", "sample", … or "" at the top
        raise UsageError(f"{command}: {message}" if command else message)


def _positive_float(text: str) -> float:
    value = float(text)  # not a number: argparse says "invalid _positive_float value"
    try:
        return _checks.real(value, "value", "")
    except ValueError as exc:  # argparse puts "argument --name:" in front; the value is shown as typed
        raise argparse.ArgumentTypeError(str(exc).removeprefix("value ").removesuffix(repr(value)) + text) from None


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="bptt", description="Recurrent networks with exact backpropagation through time.")
    sub = p.add_subparsers(
        dest="command",
        required=True,
        parser_class=_Parser,
        metavar="COMMAND",
        help="one of these (bptt COMMAND --help lists its options)",
    )

    d = TrainConfig()
    t = sub.add_parser("train", help="train a language model on text (default: the Python standard library)")
    t.add_argument(
        "paths",
        nargs="*",
        metavar="FILE_OR_DIR",
        help="UTF-8 text files or folders (default: Python's standard library)",
    )
    t.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="folder for checkpoints and metrics.jsonl (default: runs/default; with --resume: the checkpoint's folder)",
    )
    t.add_argument(
        "--resume",
        metavar="CKPT",
        help="continue the run saved in CKPT with its own settings (default: start a new run)",
    )
    t.add_argument("--overwrite", action="store_true", help="start afresh in an --out folder that holds a run")
    g = t.add_argument_group("model")
    g.add_argument("--cell", choices=list(MODELS), default=d.cell, help="recurrent cell of every layer")
    g.add_argument("--hidden-size", type=int, default=d.hidden_size, metavar="H", help="units per layer")
    g.add_argument("--layers", type=int, default=d.num_layers, dest="num_layers", metavar="N", help="stacked layers")
    g.add_argument("--activation", default=d.activation, help="Elman's f_h: tanh, relu, sigmoid or identity")
    g.add_argument(
        "--embedding-size",
        type=int,
        default=d.embedding_size,
        metavar="E",
        help="learn an embedding e_t = E x_t of this size before the first layer (default: none, one-hot inputs)",
    )
    g.add_argument("--dtype", choices=["float32", "float64"], default=d.dtype, help="precision of weights and math")
    g.add_argument(
        "--dropout",
        type=float,
        default=d.dropout,
        metavar="P",
        help="chance of dropping a unit between layers, in training (needs --layers ≥ 2; 0: off; default: %(default)s)",
    )
    g.add_argument(
        "--recurrent-dropout",
        type=float,
        default=d.recurrent_dropout,
        metavar="P",
        help="chance of dropping a unit of h_{t-1} where it meets W, in training (0: off; default: %(default)s)",
    )
    g = t.add_argument_group("text")
    g.add_argument("--level", choices=["char", "word"], default=d.level, help="model characters or words")
    g.add_argument(
        "--max-vocab",
        type=int,
        default=d.max_vocab,
        metavar="N",
        help=f"keep the N most frequent tokens, the rest become <unk> (default: {DEFAULT_WORD_VOCAB} words, all chars)",
    )
    g.add_argument(
        "--val-fraction", type=float, default=d.val_fraction, metavar="F", help="last part of the text held out"
    )
    g = t.add_argument_group("truncated BPTT")
    g.add_argument("--seq-len", type=int, default=d.seq_len, metavar="K1", help="k1: steps per update")
    g.add_argument(
        "--bptt-len", type=int, default=d.bptt_len, metavar="K2", help="k2 ≥ k1: steps backpropagated (default: k1)"
    )
    g.add_argument("--batch-size", type=int, default=d.batch_size, metavar="B", help="text streams per update")
    g = t.add_argument_group("optimisation")
    g.add_argument(
        "--optimizer", choices=["sgd", "adagrad", "rmsprop", "adam", "adamw"], default=d.optimizer, help="update rule"
    )
    g.add_argument("--lr", type=float, default=d.lr, help="learning rate, the peak of a schedule")
    g.add_argument("--momentum", type=float, default=d.momentum, help="sgd: momentum coefficient")
    g.add_argument("--nesterov", action="store_true", help="sgd: Nesterov momentum")
    g.add_argument(
        "--weight-decay",
        type=float,
        default=d.weight_decay,
        metavar="L",
        help="weight decay: decoupled for adamw, an L2 term otherwise (default: 0.01 for adamw, 0 otherwise)",
    )
    g.add_argument(
        "--schedule", choices=["constant", "cosine", "step"], default=d.schedule, help="learning rate after warmup"
    )
    g.add_argument("--warmup", type=int, default=d.warmup, metavar="N", help="steps of linear ramp up to --lr")
    g.add_argument("--step-size", type=int, default=d.step_size, metavar="N", help="step schedule: decay every N steps")
    g.add_argument("--gamma", type=float, default=d.gamma, help="step schedule: decay factor")
    g.add_argument("--min-lr", type=float, default=d.min_lr, help="cosine schedule: learning rate at the end")
    g.add_argument(
        "--clip", type=float, default=d.clip, help="global gradient-norm clip (0: off; default: %(default)s)"
    )
    g.add_argument(
        "--clip-value",
        type=float,
        default=d.clip_value,
        metavar="V",
        help="after --clip, clamp each gradient entry to [-V, V] (default: off)",
    )
    g = t.add_argument_group("run")
    g.add_argument(
        "--steps",
        type=int,
        default=None,
        metavar="N",
        help=f"updates in all (default: {d.steps}; with --resume: the run's own, or extend it to N)",
    )
    g.add_argument("--eval-every", type=int, default=d.eval_every, metavar="N", help="validate every N steps")
    g.add_argument(
        "--eval-tokens",
        type=int,
        default=d.eval_tokens,
        metavar="N",
        help="validation tokens per evaluation (0: all; default: %(default)s)",
    )
    g.add_argument(
        "--patience",
        type=int,
        default=d.patience,
        metavar="N",
        help="stop after N evaluations without improvement (default: never stop early)",
    )
    g.add_argument(
        "--sample-every",
        type=int,
        default=d.sample_every,
        metavar="N",
        help="print a sample every N steps (0: never; default: %(default)s)",
    )
    g.add_argument("--sample-length", type=int, default=d.sample_length, metavar="N", help="tokens per sample")
    g.add_argument(
        "--checkpoint-every",
        type=int,
        default=d.checkpoint_every,
        metavar="N",
        help="also save latest.safetensors every N steps (0: only at evaluations; default: %(default)s)",
    )
    g.add_argument("--seed", type=int, default=d.seed, help="seed of the initial weights, dropout and samples")

    s = sub.add_parser("sample", help="stream text from a trained model")
    s.add_argument("checkpoint", metavar="CKPT", help="a checkpoint of bptt train (e.g. runs/default/best.safetensors)")
    s.add_argument(
        "--prime", default=None, metavar="TEXT", help="text to start from (default: a newline, or a neutral token)"
    )
    s.add_argument("-n", "--length", type=int, default=500, metavar="N", help="tokens to generate")
    s.add_argument(
        "--temperature",
        type=_positive_float,
        default=1.0,
        metavar="T",
        help="divide the logits by T: below 1 safer, above 1 wilder",
    )
    s.add_argument(
        "--top-k", type=int, default=None, metavar="K", help="draw from the K most likely tokens only (default: all)"
    )
    s.add_argument(
        "--top-p",
        type=float,
        default=None,
        metavar="P",
        help="draw from the fewest most likely tokens whose probabilities reach P (default: all)",
    )
    s.add_argument("--greedy", action="store_true", help="always take the most likely token")
    s.add_argument("--seed", type=int, default=0, help="seed of the random draws")

    i = sub.add_parser("info", help="architecture, equations and parameter table of a checkpoint")
    i.add_argument("checkpoint", metavar="CKPT", help="a checkpoint of bptt train")

    e = sub.add_parser("explain", help="inside BPTT on a text: Jacobian products, gradient by gap, input sensitivity")
    e.add_argument(
        "checkpoint",
        metavar="CKPT",
        nargs="?",
        help="a trained model (default: none; describe a fresh one with --cell …)",
    )
    e.add_argument(
        "--text",
        default=None,
        help="the text the model reads, its units in the vocabulary (required with CKPT; default: none)",
    )
    e.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="folder for explain.json and the PNGs (default: CKPT's folder/explain, or ./explain)",
    )
    g = e.add_argument_group("without a checkpoint: a fresh model reading random tokens")
    g.add_argument(
        "--cell", choices=list(MODELS), default=None, help="cell of the fresh model (default: none, use CKPT)"
    )
    g.add_argument("--hidden-size", type=int, default=None, metavar="H", help="units per layer (default: 32)")
    g.add_argument("--layers", type=int, default=None, dest="num_layers", metavar="N", help="layers (default: 1)")
    g.add_argument("--activation", default=None, help="Elman's f_h (default: tanh)")
    g.add_argument("--vocab-size", type=int, default=None, metavar="N", help="input and output size (default: 32)")
    g.add_argument("--length", type=int, default=None, metavar="T", help="random tokens read (default: 40)")
    g.add_argument("--seed", type=int, default=None, help="seed of the weights and tokens (default: 0)")
    e.add_argument(
        "--param",
        default=None,
        metavar="NAME",
        help="parameter to decompose by gap (default: the recurrent weight)",
    )
    e.add_argument("--no-plots", action="store_true", help="write only explain.json (no matplotlib needed)")

    r = sub.add_parser("report", help="one self-contained HTML page for a training run")
    r.add_argument("run_dir", metavar="RUN_DIR", help="a folder of bptt train (metrics.jsonl, best.safetensors)")
    r.add_argument("--text", default=None, help="text to explain (default: the start of the sample shown)")
    r.add_argument("--seed", type=int, default=0, help="seed of the sample shown")
    add_interop_parsers(sub)
    return p
