"""One self-contained HTML page for a training run: curves, health, samples, explanations.

``write_report(run_dir)`` reads ``metrics.jsonl`` and ``best.safetensors`` from a
run folder and writes ``report.html`` beside them. Every picture is embedded as a
``data:`` URI and there are no scripts, stylesheets or fonts to fetch, so the page
renders the same offline, attached to an e-mail or opened years later.
"""

from __future__ import annotations

import base64
import html
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from ..files.atomic import write_atomic
from ..files.checkpoint import load_checkpoint
from ..files.untrusted import parse_json
from ..text.sampling import default_prime, sample_text
from .explain import explain_text, write_explanation
from .plots import plot_training

__all__ = ["write_report"]

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 64rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85rem; display: block; overflow-x: auto; }
td, th { padding: 0.2rem 0.6rem; border: 1px solid #ddd; }
th { background: #f4f4f4; } img { max-width: 100%; } pre { background: #f7f7f7; padding: 0.8rem; overflow-x: auto; }
.note { color: #555; font-size: 0.9rem; }
"""


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _rows(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = parse_json(line)  # bounded nesting: a hostile line is skipped, not a crash
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            rows.append(row)
    return rows


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return "–" if not math.isfinite(v) else f"{v:.4g}"
    return html.escape(str(v))


def write_report(run_dir: str | os.PathLike, text: str | None = None, sample_length: int = 400, seed: int = 0) -> Path:
    """Write ``run_dir/report.html`` and return its path.

    Parameters
    ----------
    run_dir : path
        A folder written by ``bptt train`` (``metrics.jsonl``, ``best.safetensors``).
    text : str, optional
        Text to explain (default: the start of a sample from the model).
    sample_length : int
        Length of the sample shown.
    seed : int
        Seed of the sample.

    Raises
    ------
    ValueError
        When the folder holds no run.
    """
    run = Path(run_dir)
    metrics, best = run / "metrics.jsonl", run / "best.safetensors"
    if not run.is_dir() or not metrics.exists() or not best.exists():
        raise ValueError(f"{run} holds no training run (needs metrics.jsonl and best.safetensors from bptt train)")
    rows = _rows(metrics)
    ckpt = load_checkpoint(best)
    if ckpt.vocab is None:
        raise ValueError(f"{best}: checkpoint has no vocabulary (not a language model)")
    prime = default_prime(ckpt.vocab)
    sample = prime + "".join(
        sample_text(ckpt.model, ckpt.vocab, prime, sample_length, temperature=0.8, seed=np.random.default_rng(seed))
    )
    if text is None:
        text = sample[: 48 if ckpt.vocab.level == "char" else 400]
    with tempfile.TemporaryDirectory(dir=run) as tmp:
        pictures = Path(tmp)
        curves = plot_training(rows, pictures / "training.png")
        ex = explain_text(ckpt.model, ckpt.vocab, text)
        paths = write_explanation(ex, pictures)
        body = [
            f"<h1>bptt training run <code>{html.escape(str(run))}</code></h1>",
            f"<p>{html.escape(repr(ckpt.model))}</p>",
            "<h2>Learning curves</h2>",
            _img(curves, "training curves"),
            _metrics_table(rows),
            f"<h2>A sample (temperature 0.8, seed {seed})</h2>",
            f"<pre>{html.escape(sample)}</pre>",
            "<h2>Inside BPTT on a text</h2>",
            f"<p class='note'>Text: <code>{html.escape(text)}</code></p>",
            "<p class='note'>Jacobian products ‖∂s_t/∂s_k‖: how much the state at step t still responds to "
            "the state at step k. Rows fading to blue towards the left are vanishing gradients.</p>",
            _img(paths[1], "Jacobian-product map"),
            f"<p class='note'>The gradient of {html.escape(ex.param)} split by how far back it reaches "
            "(loss step minus the step where the weight acted).</p>",
            _img(paths[2], "gradient by gap"),
            "<p class='note'>Input sensitivity ‖∂Loss_t/∂x_s‖ and per-step ‖∂J/∂x_t‖; red bars are "
            "outlier inputs by robust z-score.</p>",
            _img(paths[3], "input sensitivity"),
        ]
    page = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>bptt report: {html.escape(run.name)}</title><style>{STYLE}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )
    out = run / "report.html"
    write_atomic(out, page)
    return out


def _metrics_table(rows: list[dict]) -> str:
    if not rows:
        return "<p>No evaluations recorded.</p>"
    keys = [k for k in rows[0] if "/" not in k]  # per-parameter and per-layer health: in the pictures
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(k, ''))}</td>" for k in keys) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"
