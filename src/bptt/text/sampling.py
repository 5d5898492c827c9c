"""Sampling text from a language model, one token at a time (streaming).

The prime text runs through the network as one whole sequence to set the
state; then each step turns the output logits ``z_t`` (``p_t = softmax(z_t)``)
into the next token, which is fed back as the next input (one-to-many generation)::

    z       = z_t / temperature
    top-k   keep the k largest logits
    top-p   keep the smallest set of tokens whose probability reaches p (nucleus)
    draw    k = argmax(z + g), g = −log e, e ~ Exp(1)   (Gumbel noise; greedy: k = argmax z_t)

The Gumbel-max draw is an exact sample from ``softmax(z)`` that needs no
normalisation or cumulative sum: one vector of noise and one ``argmax``. The
network runs as a :class:`~bptt.stepper.Stepper` (token tables, folded biases,
the temperature folded into the output layer, buffers allocated once).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np

from .. import _checks
from ..engine.network import RNN
from ..engine.stepper import Stepper
from ..files.untrusted import elide
from .vocab import UNK, Vocabulary

__all__ = ["default_prime", "next_token", "sample_text"]

_MIN_FOLDED_TEMPERATURE = 1e-4  # below it, z/τ is computed in float64 rather than folded into U


def default_prime(vocab: Vocabulary) -> str:
    """A neutral text to start from: a newline or a space if the vocabulary has one, else its first token.

    Raises
    ------
    ValueError
        If no token encodes as known units (a vocabulary of ``<unk>`` alone, or a character
        vocabulary whose tokens are all longer than one character): pass a prime instead.
    """
    for candidate in ("\n", " ", *vocab.tokens):
        if candidate and candidate != UNK and not vocab.unknown(candidate):  # every unit in the vocabulary
            return candidate
    shown = elide(", ".join(repr(t) for t in vocab.tokens[:5]) + (" …" if len(vocab) > 5 else ""), 120)
    raise ValueError(
        f"default_prime: none of the {len(vocab)} tokens of this {vocab.level} vocabulary ({shown}) can start a "
        "sample on its own; pass a prime (bptt sample --prime TEXT)"
    )


def _check(n, temperature, top_k, top_p, vocab_size) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"length must be a positive integer, got {n!r}")
    _checks.real(temperature, "temperature", "", hint="use greedy for the most likely token")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= vocab_size):
        raise ValueError(f"top_k must be an integer in [1, {vocab_size}] (the vocabulary size), got {top_k!r}")
    if top_p is not None:
        _checks.real(top_p, "top_p", "", high=1.0, high_strict=False)


def next_token(
    logits: np.ndarray,
    rng: np.random.Generator,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
) -> int:
    """Choose the next token from one row of logits ``z`` (N,), ``p = softmax(z)``.

    Log-probabilities work as logits too (``-inf`` for impossible tokens).
    """
    if greedy:
        return int(np.argmax(logits))
    if temperature != 1.0 or top_k is not None or top_p is not None:
        # Shift by the maximum before dividing, in float64: tiny temperatures must not overflow.
        z = logits.astype(np.float64)
        z -= z.max()
        with np.errstate(over="ignore", invalid="ignore"):
            z /= temperature
    else:
        z = logits
    if top_k is not None and top_k < z.size:
        kth = np.partition(z, -top_k)[-top_k]
        z[z < kth] = -np.inf
    if top_p is not None and top_p < 1.0:
        q = np.exp(z - z.max())
        q /= q.sum()
        order = np.argsort(-q, kind="stable")
        cut = int(np.searchsorted(np.cumsum(q[order]), top_p)) + 1  # smallest prefix reaching top_p
        z[order[cut:]] = -np.inf
    # Gumbel noise g = -log(e), e ~ Exp(1): the exponential draw is cheaper than rng.gumbel.
    return int(np.argmax(z - np.log(rng.standard_exponential(z.shape))))


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
    """An iterator over ``n`` tokens' text, generated one at a time, continuing ``prime``.

    Arguments are checked when this is called, before any token is generated.

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
    ids, missing = vocab.encode_input(prime, "prime")
    if missing:
        warnings.warn(f"prime words not in the vocabulary are read as {UNK}: {missing[:10]}", stacklevel=2)
    rng = _checks.generator(seed, "sample_text")
    # z/τ comes out of the output layer, unless τ is so small that U/τ could overflow: then
    # next_token divides in float64 after shifting by the maximum.
    fold = not greedy and temperature >= _MIN_FOLDED_TEMPERATURE
    stepper = Stepper(model, temperature=temperature if fold else 1.0)
    return _stream(stepper, vocab, ids, n, rng, 1.0 if fold else temperature, top_k, top_p, greedy)


class _Gumbel:
    """Gumbel-max draws ``argmax(z + g)`` with the noise ``g`` drawn in blocks of rows.

    One ``(rows, N)`` block of exponential draws replaces one call per token; the
    block size depends only on ``N``, so a longer sample continues a shorter one.
    """

    def __init__(self, rng: np.random.Generator, n: int, dtype) -> None:
        self.rng, self.n, self.dtype = rng, n, dtype
        self.rows = max(1, 2**12 // n)
        self.block = np.empty((0, n), dtype)
        self.i = 0
        self.buf = np.empty(n, dtype)

    def draw(self, z: np.ndarray) -> int:
        if self.i == self.block.shape[0]:
            e = self.rng.standard_exponential((self.rows, self.n))
            self.block = (-np.log(e)).astype(self.dtype)  # g = −log e, e ~ Exp(1)
            self.i = 0
        g = self.block[self.i]
        self.i += 1
        return int(np.add(z, g, out=self.buf).argmax())


def _stream(stepper, vocab, ids, n, rng, temperature, top_k, top_p, greedy) -> Iterator[str]:
    """The generation loop of :func:`sample_text`, on checked arguments (``temperature`` still to apply)."""
    z = stepper.feed(ids)  # the whole prime in one pass
    gumbel = _Gumbel(rng, z.shape[0], z.dtype)
    plain = temperature == 1.0 and top_k is None and top_p is None
    for i in range(n):
        if greedy:
            tok = int(z.argmax())
        elif plain:
            tok = gumbel.draw(z)
        else:
            tok = next_token(z, rng, temperature, top_k, top_p)
        yield vocab.tokens[tok]
        if i + 1 < n:
            z = stepper.step(tok)
