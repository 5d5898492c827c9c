"""The ``bptt`` command line: a thin layer over the Python API.

::

    bptt train [FILE_OR_DIR ...] [options]     train a language model (default corpus: Python's stdlib)
    bptt train --resume RUN/latest.safetensors  continue a run exactly where it stopped
    bptt sample CKPT --prime "def " -n 500      stream text from a trained model
    bptt info CKPT                              architecture, equations and parameter table
    bptt explain CKPT --text "def f(x):"        inside BPTT on a text: JSON and PNG pictures
    bptt report RUN_DIR                         one self-contained HTML page for a run
    bptt export CKPT --format torch -o M.safetensors   a PyTorch state dict (or --format onnx)
    bptt import STATE.safetensors -o CKPT       a PyTorch state dict as a checkpoint

Every error is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import NoReturn

import numpy as np

from . import _checks
from .cli_parser import UsageError
from .cli_parser import _Parser as _Parser
from .cli_parser import parser as _parser
from .diagnostics.plots import PlotError, require_matplotlib
from .engine.models import MODELS
from .files.checkpoint import CheckpointError, load_checkpoint
from .files.untrusted import MAX_MESSAGE, elide
from .interop.commands import COMMANDS as INTEROP_COMMANDS
from .text.corpus import CorpusError
from .text.sampling import default_prime, sample_text
from .training.evaluation import bits_per_token, score, score_unit
from .training.records import check_record
from .training.train import TrainConfig, Trainer, TrainingError, checkpoint_config, prepare_data

__all__ = ["main"]

# "{x}" is the layer's input (x_t, e_t or the layer below's h_t), "{f}" Elman's activation.
EQUATIONS = {
    "elman": ["h_t = {f}(V {x} + W h_{{t-1}} + b_h)"],
    "lstm": [
        "[i; f; g; o] = [σ; σ; tanh; σ](V {x} + W h_{{t-1}} + b)",
        "c_t = f ⊙ c_{{t-1}} + i ⊙ g,   h_t = o ⊙ tanh(c_t)",
    ],
    "gru": [
        "[r; u] = σ(V_[r;u] {x} + W_[r;u] h_{{t-1}} + b_[r;u])   (u is PyTorch's z)",
        "n_t = tanh(V_n {x} + b_n + r ⊙ (W_n h_{{t-1}} + b_hn)),   h_t = (1 − u) ⊙ n_t + u ⊙ h_{{t-1}}",
    ],
}


def _config(args: argparse.Namespace) -> TrainConfig:
    keys = set(TrainConfig.__dataclass_fields__) & set(vars(args))
    values = {k: getattr(args, k) for k in keys}
    for name in ("clip", "clip_value"):
        if values.get(name) == 0:
            values[name] = None
    if values.get("eval_tokens") == 0:
        values["eval_tokens"] = None
    return TrainConfig(**values)


class _StopFlag:
    """First Ctrl-C asks the trainer to stop after the current step; a second one aborts."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after this step (Ctrl-C again to abort)", file=sys.stderr)


RUN_FILES = ("latest.safetensors", "best.safetensors", "metrics.jsonl")


def _run_files(folder: Path) -> list[str]:
    return [name for name in RUN_FILES if (folder / name).exists()]


def _refuse_to_replace(out: Path, why: str, resume_hint: bool) -> NoReturn:
    latest = out / "latest.safetensors"
    if resume_hint and latest.exists():
        raise UsageError(f"{out} {why}: resume it with --resume {latest}, choose another --out, or pass --overwrite")
    if resume_hint:  # stopped before its first checkpoint: there is nothing to resume
        raise UsageError(
            f"{out} {why} but no latest.safetensors to resume from: choose another --out, "
            "or pass --overwrite (or delete the folder) to start afresh"
        )
    raise UsageError(f"{out} {why}: choose another --out, or pass --overwrite")


def _resume(args: argparse.Namespace) -> tuple[Trainer, Path]:
    ckpt_path = Path(args.resume)
    ckpt = load_checkpoint(ckpt_path)
    config = checkpoint_config(ckpt, ckpt_path)
    out = Path(args.out) if args.out else ckpt_path.parent
    if not args.overwrite:
        same_run = out.resolve() == ckpt_path.parent.resolve()
        if not same_run and _run_files(out):
            _refuse_to_replace(out, f"holds another run ({', '.join(_run_files(out))})", resume_hint=False)
        latest = out / "latest.safetensors"
        if same_run and latest.exists() and latest.resolve() != ckpt_path.resolve():
            newer = load_checkpoint(latest).train.get("step", 0)
            here = ckpt.train.get("step", 0)
            if isinstance(newer, int) and isinstance(here, int) and newer > here:
                raise UsageError(
                    f"{latest} is at step {newer}, past {ckpt_path.name} (step {here}): resuming would discard "
                    f"steps {here + 1}-{newer}; pass --overwrite to do so, or --out another folder"
                )
    try:
        data = prepare_data(args.paths, config, vocab=ckpt.vocab)
    except ValueError as exc:  # text the run's vocabulary cannot encode: not the run's text
        raise TrainingError(
            f"{ckpt_path}: the training text differs from the text this run was started on ({exc})"
        ) from None
    trainer = Trainer.resume(ckpt_path, data, out, steps=args.steps, ckpt=ckpt)
    return trainer, out


def cmd_train(args: argparse.Namespace) -> int:
    if args.resume:
        trainer, out = _resume(args)
        config, data = trainer.config, trainer.data
        if trainer.state.stopped:
            print(f"nothing to do: {trainer.state.stopped}", file=sys.stderr)
            return 0
        if trainer.state.step >= config.steps:
            print(
                f"nothing to do: the run is complete at step {trainer.state.step} of {config.steps} "
                f"(pass --steps N > {trainer.state.step} to train longer)",
                file=sys.stderr,
            )
            return 0
        print(f"resuming {args.resume} at step {trainer.state.step} of {config.steps}", file=sys.stderr)
    else:
        if args.steps is None:
            args.steps = TrainConfig.steps
        config = _config(args)
        out = Path(args.out or "runs/default")
        if _run_files(out) and not args.overwrite:
            _refuse_to_replace(out, f"already holds a run ({', '.join(_run_files(out))})", resume_hint=True)
        data = prepare_data(args.paths, config)
        trainer = Trainer(config, data, out)
    _check_writable(out)
    n = len(data.files)
    files = f"{n} file{'s' if n != 1 else ''}"
    source = files if args.paths or args.resume else f"the Python standard library ({files})"
    print(
        f"training {trainer.model!r}\n  on {source}: {len(data.train):,} training / {len(data.val):,} validation "
        f"tokens, vocabulary {len(data.vocab)} ({data.vocab.level})",
        file=sys.stderr,
    )
    flag = _StopFlag()
    previous = signal.signal(signal.SIGINT, flag)
    trainer.should_stop = lambda: flag.requested
    try:
        final = trainer.run(on_sample=lambda step, text: print(f"--- sample at step {step} ---\n{text}\n---"))
    finally:
        signal.signal(signal.SIGINT, previous)
    if flag.requested and trainer.state.step < config.steps and not trainer.state.stopped:
        path = trainer.save("latest.safetensors")
        print(f"interrupted at step {trainer.state.step}; resume with: bptt train --resume {path}", file=sys.stderr)
        return 130
    unit = score_unit(data.vocab.level)
    if final:
        best = score(trainer.state.best_val, unit)
        print(
            f"done: step {final['step']}, validation {unit} {final[f'val_{unit}']:.3f} "
            f"(best {best:.3f}); checkpoints in {out}/"
        )
    return 0


def _check_writable(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"output folder {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".bptt-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"output folder {folder} is not writable ({exc.strerror or exc})") from None


def cmd_sample(args: argparse.Namespace) -> int:
    ckpt = load_checkpoint(args.checkpoint)
    if ckpt.vocab is None:
        raise UsageError(f"{args.checkpoint}: checkpoint has no vocabulary (not a language model)")
    prime = args.prime if args.prime is not None else default_prime(ckpt.vocab)
    stream = sample_text(
        ckpt.model,
        ckpt.vocab,
        prime,
        args.length,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        greedy=args.greedy,
        seed=_checks.generator(args.seed, "sample --seed"),
    )
    first = next(stream)  # validate everything before printing anything
    sys.stdout.write(prime + first)
    for piece in stream:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    ckpt = load_checkpoint(args.checkpoint)
    m = ckpt.model
    cfg = m.config()
    lines = [f"checkpoint  {args.checkpoint}", f"model       {m!r}"]
    if ckpt.vocab is not None:
        lines.append(f"vocabulary  {len(ckpt.vocab)} {ckpt.vocab.level}s")
    rec = ckpt.train
    check_record(rec, args.checkpoint, partial=True)  # an edited record: one line naming the field
    if "step" in rec:
        best = rec.get("best_val")
        lines.append(f"training    step {rec['step']}, epoch {rec.get('epoch', 0)}, tokens {rec.get('tokens', 0):,}")
        if best is not None:
            lines.append(f"            best validation loss {best:.4f} nats/token ({bits_per_token(best):.3f} bits)")
    lines.append("equations")
    layer_input = "x_t"
    if cfg.get("embedding_size"):
        lines.append("  e_t = E x_t   (x_t one-hot; a column of E)")
        layer_input = "e_t"
    for k, spec in enumerate(cfg["layers"]):
        lines.append(f"  layer {k} ({spec['kind']}, H = {spec['hidden_size']}):")
        lines.extend(f"    {eq.format(x=layer_input, f=spec['activation'])}" for eq in EQUATIONS[spec["kind"]])
        layer_input = f"h^({k})_t"  # the next layer reads this one's hidden state
    lines.append(f"  ŷ_t = {cfg['output']}(U h_t + b_y)   loss: {m.output.loss_name}")
    lines.append("parameters")
    lines.append(f"  {'name':<10} {'shape':<16} {'count':>12}")
    for name, shape in m.param_shapes.items():
        lines.append(f"  {name:<10} {shape!s:<16} {int(np.prod(shape)):>12,}")
    lines.append(f"  {'total':<10} {'':<16} {m.num_parameters:>12,}")
    print("\n".join(lines))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from .diagnostics.explain import explain_random, explain_text, write_explanation

    if (args.checkpoint is None) == (args.cell is None):
        raise UsageError("explain: give a checkpoint with --text, or a model with --cell (and no checkpoint)")
    if args.checkpoint is not None and args.text is None:
        raise UsageError("explain: --text is required with a checkpoint")
    model_options = ("hidden_size", "num_layers", "activation", "vocab_size", "length", "seed")
    given = [f"--{o.replace('_', '-')}" for o in model_options if getattr(args, o) is not None]
    if args.checkpoint is not None and given:
        raise UsageError(f"explain: {', '.join(given)} describe a fresh model; a checkpoint has its own")
    if args.checkpoint is None and args.text is not None:
        raise UsageError("explain: --text needs a checkpoint (a fresh model reads random tokens: use --length)")
    if not args.no_plots:
        require_matplotlib()  # fail before any work when matplotlib is missing
    if args.checkpoint is None:
        defaults = {"hidden_size": 32, "num_layers": 1, "activation": "tanh", "vocab_size": 32, "length": 40, "seed": 0}
        o = {k: v if (v := getattr(args, k)) is not None else d for k, d in defaults.items()}
        if args.cell != "elman" and args.activation is not None:
            raise UsageError(f"explain: --activation is for --cell elman; {args.cell} gates have fixed activations")
        kwargs = {"activation": o["activation"]} if args.cell == "elman" else {}
        model = MODELS[args.cell](
            o["vocab_size"], o["hidden_size"], o["vocab_size"], num_layers=o["num_layers"], seed=o["seed"], **kwargs
        )
        out = Path(args.out or "explain")
        _check_writable(out)
        ex = explain_random(model, o["length"], args.param, seed=o["seed"])
    else:
        ckpt = load_checkpoint(args.checkpoint)
        if ckpt.vocab is None:
            raise UsageError(f"{args.checkpoint}: checkpoint has no vocabulary (not a language model)")
        out = Path(args.out) if args.out else Path(args.checkpoint).parent / "explain"
        _check_writable(out)
        ex = explain_text(ckpt.model, ckpt.vocab, args.text, args.param)
    for path in write_explanation(ex, out, plots=not args.no_plots):
        print(path)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .diagnostics.report import write_report

    require_matplotlib()
    _checks.generator(args.seed, "report --seed")
    print(write_report(args.run_dir, text=args.text, seed=args.seed))
    return 0


COMMANDS = {
    "train": cmd_train,
    "sample": cmd_sample,
    "info": cmd_info,
    "explain": cmd_explain,
    "report": cmd_report,
    **INTEROP_COMMANDS,  # export, import (bptt/interop/commands.py)
}


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except BrokenPipeError:  # the reader went away (`bptt sample … | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # silence the flush at exit
        return 0
    except (UsageError, CorpusError, CheckpointError, TrainingError, PlotError, ValueError, TypeError, OSError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"bptt: error: {elide(message, 2 * MAX_MESSAGE)}", file=sys.stderr)  # a backstop: one short line
        return 2
    except MemoryError:
        print(
            "bptt: error: out of memory (try a smaller --hidden-size, --embedding-size or --batch-size)",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("bptt: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
