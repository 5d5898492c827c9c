"""The prepared generation path (Stepper) against the whole-sequence forward pass."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import bptt
from bptt import RNN, LayerSpec, Stepper
from bptt.sampling import sample_text
from bptt.vocab import Vocabulary

N = 7  # vocabulary size
STACKS = (("elman",), ("lstm",), ("gru",), ("gru", "lstm"), ("lstm", "elman", "gru"))
VARIANTS = (("lecture", False), ("mit", True), ("concat", True))


def _model(cells, *, notation="lecture", reads_input=False, embedding=None, bias=True, dtype="float64", act="tanh"):
    specs = [LayerSpec(c, 5 + k, activation=act) if c == "elman" else LayerSpec(c, 5 + k) for k, c in enumerate(cells)]
    m = RNN(
        N,
        specs,
        N,
        notation=notation,
        output_reads_input=reads_input,
        embedding_size=embedding,
        bias=bias,
        dtype=dtype,
        seed=3,
    )
    rng = np.random.default_rng(11)
    for v in m.params.values():  # every bias non-zero, so a dropped or misplaced one shows
        v[...] = rng.uniform(-0.8, 0.8, v.shape)
    return m


def _states_equal(got, want, tol):
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=tol, err_msg=k)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("embedding", [None, 4])
@pytest.mark.parametrize(("notation", "reads_input"), VARIANTS)
@pytest.mark.parametrize("cells", STACKS)
def test_steps_match_the_forward_pass(cells, notation, reads_input, embedding, bias, dtype):
    m = _model(cells, notation=notation, reads_input=reads_input, embedding=embedding, bias=bias, dtype=dtype)
    ids = np.array([3, 0, 6, 6, 1, 5, 2, 4])
    h0 = {k: np.random.default_rng(5).uniform(-1, 1, v.shape).astype(dtype) for k, v in m.initial_state(1).items()}
    fwd = m.forward(ids[:, None], h0)
    tol = 1e-12 if dtype == "float64" else 2e-5
    s = Stepper(m, h0, temperature=0.6)
    for t, k in enumerate(ids):
        z = s.step(int(k))
        assert z.shape == (N,) and z.dtype == m.dtype
        np.testing.assert_allclose(z, fwd.logits[t, 0] / 0.6, rtol=0, atol=tol / 0.6 * 10, err_msg=f"step {t}")
    _states_equal(s.state, fwd.state, tol)


@pytest.mark.parametrize("act", ["relu", "sigmoid", "identity"])
def test_elman_activations(act):
    m = _model(("elman",), act=act)
    ids = np.array([1, 2, 3, 4, 5])
    fwd = m.forward(ids[:, None])
    s = Stepper(m)
    got = np.stack([s.step(int(k)).copy() for k in ids])
    np.testing.assert_allclose(got, fwd.logits[:, 0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("cells", STACKS)
def test_feed_equals_stepping_and_continues_the_state(cells):
    m = _model(cells)
    a, b = Stepper(m), Stepper(m)
    prime = [4, 1, 1, 0, 3]
    za = a.feed(prime).copy()
    for k in prime:
        zb = b.step(k)
    np.testing.assert_allclose(za, zb, rtol=0, atol=1e-12)
    _states_equal(a.state, b.state, 1e-12)
    np.testing.assert_allclose(a.step(2), b.step(2), rtol=0, atol=1e-12)
    # reset goes back to zeros, or to any given state
    a.reset()
    _states_equal(a.state, m.initial_state(1), 0)
    a.reset(b.state)
    _states_equal(a.state, b.state, 0)


def test_the_stepper_keeps_its_own_copy_of_the_weights():
    m = _model(("gru",))
    s = Stepper(m)
    before = s.step(1).copy()
    s.reset()
    for v in m.params.values():
        v += 1.0
    np.testing.assert_array_equal(s.step(1), before)


def test_sampling_a_longer_text_continues_a_shorter_one():
    m = _model(("lstm",))
    vocab = Vocabulary(tuple("abcdefg"))
    short = "".join(sample_text(m, vocab, "ab", 20, seed=4))
    long = "".join(sample_text(m, vocab, "ab", 1500, seed=4))  # crosses two refills of the Gumbel noise block
    assert long.startswith(short)


def test_sampled_tokens_follow_the_tempered_distribution():
    # Frequencies of the first draw after a prime, over many seeds, match softmax(z/τ).
    m = _model(("gru",))
    vocab = Vocabulary(tuple("abcdefg"))
    z = m.forward(vocab.encode("cab")[:, None]).logits[-1, 0] / 0.7
    p = np.exp(z - z.max())
    p /= p.sum()
    draws = [vocab.tokens.index(next(sample_text(m, vocab, "cab", 1, temperature=0.7, seed=s))) for s in range(4000)]
    freq = np.bincount(draws, minlength=N) / len(draws)
    assert np.abs(freq - p).max() < 4 * np.sqrt(p.max() / len(draws))


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda m: Stepper("model"), r"Stepper: model must be a bptt RNN, got str"),
        (lambda m: Stepper(RNN(3, [LayerSpec("gru", 2)], 3, output="identity")), r"softmax output, got 'identity'"),
        (lambda m: Stepper(m, temperature=0), r"temperature must be a finite number > 0, got 0"),
        (lambda m: Stepper(m, temperature=float("inf")), r"temperature must be a finite number > 0, got inf"),
        (lambda m: Stepper(m, temperature=True), r"temperature must be a finite number > 0, got True"),
        (lambda m: Stepper(m, temperature=1e-320), r"temperature 1e-320 is too small"),
        (lambda m: Stepper(m).step(N), r"Stepper.step: token must be an integer in \[0, 7\), got 7"),
        (lambda m: Stepper(m).step(-1), r"token must be an integer in \[0, 7\), got -1"),
        (lambda m: Stepper(m).step(1.0), r"token must be an integer in \[0, 7\), got 1.0"),
        (lambda m: Stepper(m).feed([]), r"Stepper.feed: tokens must be a non-empty 1-D sequence of ints"),
        (lambda m: Stepper(m).feed([[1, 2]]), r"Stepper.feed: tokens must be a non-empty 1-D sequence of ints"),
        (lambda m: Stepper(m).feed([1, 9]), r"Stepper.feed"),
        (lambda m: Stepper(m, np.zeros((2, 5))), r"Stepper.reset: h0 must have shape \(1, 5\), got \(2, 5\)"),
    ],
)
def test_errors_name_the_argument(build, match):
    m = _model(("gru",))
    with pytest.raises((ValueError, TypeError), match=match):
        build(m)


def test_stepper_is_public():
    assert bptt.Stepper is Stepper
    # every combination the public constructors make builds a stepper
    for cls, kw in itertools.product((bptt.Elman, bptt.LSTM, bptt.GRU), ({}, {"embedding_size": 3})):
        Stepper(cls(input_size=N, hidden_size=4, output_size=N, seed=0, **kw)).feed([1, 2])
