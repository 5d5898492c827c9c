"""Sampling text from a language model, one token at a time (streaming).

The prime text runs through the network as one whole sequence to set the
state; then each step turns the output distribution ``p_t`` into the next
token, which is fed back as the next input (one-to-many generation)::

    logits  = log p_t / temperature
    top-k   keep the k most likely tokens
    top-p   keep the smallest set whose probability reaches p (nucleus)
    draw    k ~ softmax(kept logits)        (greedy: k = argmax p_t)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator

import numpy as np

from .network import RNN
from .vocab import UNK, Vocabulary

__all__ = ["next_token", "sample_text"]


def _check(n, temperature, top_k, top_p, vocab_size) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"length must be a positive integer, got {n!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not math.isfinite(temperature):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 (use greedy for the most likely token), got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= vocab_size):
        raise ValueError(f"top_k must be an integer in [1, {vocab_size}] (the vocabulary size), got {top_k!r}")
    if top_p is not None and (
        isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not math.isfinite(top_p) or not 0 < top_p <= 1
    ):
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")


def next_token(
    p: np.ndarray,
    rng: np.random.Generator,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
) -> int:
    """Choose the next token from one distribution ``p`` of shape (N,)."""
    if greedy:
        return int(np.argmax(p))
    with np.errstate(divide="ignore"):
        logits = np.log(p.astype(np.float64)) / temperature
    if top_k is not None and top_k < logits.size:
        kth = np.partition(logits, -top_k)[-top_k]
        logits[logits < kth] = -np.inf
    q = np.exp(logits - logits.max())
    q /= q.sum()
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-q, kind="stable")
        cum = np.cumsum(q[order])
        keep = order[: int(np.searchsorted(cum, top_p)) + 1]  # smallest prefix reaching top_p
        mask = np.zeros_like(q)
        mask[keep] = q[keep]
        q = mask / mask.sum()
    return int(rng.choice(q.size, p=q))


def sample_text(
    model: RNN,
    vocab: Vocabulary,
    prime: str,
    n: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    seed: int | np.random.Generator | None = None,
) -> Iterator[str]:
    """Yield ``n`` tokens' text, one at a time, continuing ``prime``.

    Raises
    ------
    ValueError
        For an empty prime, a character-level prime with characters outside the
        vocabulary (all of them are named), or invalid sampling settings. A
        word-level prime maps unknown words to ``<unk>`` with a warning.
    """
    if model.input_size != len(vocab) or model.output_size != len(vocab):
        raise ValueError(
            f"model has {model.input_size} inputs / {model.output_size} outputs, "
            f"but the vocabulary has {len(vocab)} tokens"
        )
    _check(n, temperature, top_k, top_p, len(vocab))
    if not isinstance(prime, str) or not prime:
        raise ValueError("prime must be a non-empty string")
    missing = vocab.unknown(prime)
    if missing and (vocab.level == "char" or UNK not in vocab.tokens):
        shown = ", ".join(repr(c) for c in missing[:10]) + (" …" if len(missing) > 10 else "")
        raise ValueError(f"prime has {len(missing)} {vocab.level}s outside the model's vocabulary: {shown}")
    if missing:
        warnings.warn(f"prime words not in the vocabulary are read as {UNK}: {missing[:10]}", stacklevel=2)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    ids = vocab.encode(prime, strict=False)
    fwd = model.forward(ids[:, None].astype(np.intp))  # the whole prime in one pass: (T, 1)
    p, states = fwd.outputs[-1, 0], model._state(fwd.state, 1, "sample_text")
    x = np.empty(1, np.intp)
    for i in range(n):
        tok = next_token(p, rng, temperature, top_k, top_p, greedy)
        yield vocab.tokens[tok]
        if i + 1 < n:
            x[0] = tok
            out, states = model._step(x, states)  # inputs are valid by construction
            p = out[0]
