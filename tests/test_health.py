"""``bptt.diagnostics.health`` and ``bptt.training.evaluation``: the training run's health metrics and scores.

Oracles: each sequence of a batch analysed on its own (for the view that lays a batch end
to end), eigenvalues and singular values from NumPy, and the unit conversions by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import bptt
from bptt.cli import main
from bptt.diagnostics.health import (
    CLIPPED_ALARM,
    SATURATED_ALARM,
    health_note,
    layer_health,
    recurrent_weights,
    saturation,
    steps_as_one_sequence,
)
from bptt.models import MODELS
from bptt.training.evaluation import bits_per_token, score, score_unit, streams

V, H, T, B = 7, 5, 6, 4


def _stack(scale: float = 1.5) -> bptt.RNN:
    """An LSTM, a relu Elman and a GRU layer with weights large enough that some units saturate."""
    specs = [bptt.LayerSpec("lstm", H), bptt.LayerSpec("elman", 3, "relu"), bptt.LayerSpec("gru", 2)]
    m = bptt.RNN(V, specs, V, output="softmax", dtype="float64", seed=0)
    rng = np.random.default_rng(1)
    for p in m.params.values():
        p[...] = scale * rng.standard_normal(p.shape)
    return m


def _tokens(seed: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, V, size=(T, B))  # (T, B) token ids


def test_recurrent_weights_are_the_norms_and_radii_of_each_layers_W():
    m = _stack()
    names, norms, radii, gates = recurrent_weights(m)
    assert names == ("W_l0", "W_l1", "W_l2")
    W_elman = m.layers[1].weights(m.params)[1]  # (3, 3)
    for k, W in enumerate((m.params["W_l0"], W_elman, m.params["W_l2"])):
        assert norms[k] == pytest.approx(np.linalg.svd(W, compute_uv=False)[0], rel=1e-12)
    assert radii[1] == pytest.approx(np.abs(np.linalg.eigvals(W_elman)).max(), rel=1e-12)
    W_gru = m.params["W_l2"]  # (3·2, 2): blocks [r; z; n]
    expected = {g: np.abs(np.linalg.eigvals(W_gru[2 * i : 2 * i + 2])).max() for i, g in enumerate("rzn")}
    assert gates[2] == pytest.approx(expected, rel=1e-12)
    assert radii[0] == max(gates[0].values()) and set(gates) == {0, 2}


def test_a_batch_laid_end_to_end_counts_every_sequence():
    """``saturation`` of the end-to-end view = the mean of each sequence's own saturation."""
    m = _stack()
    x = _tokens()
    fwd = m.forward(x)
    whole = saturation(m, steps_as_one_sequence(fwd))  # (T·B, L)
    assert whole.shape == (T * B, m.num_layers)
    per_sequence = [saturation(m, m.forward(x[:, b : b + 1])) for b in range(B)]  # each (T, L)
    np.testing.assert_allclose(whole.mean(axis=0), np.mean(per_sequence, axis=(0, 1)), rtol=1e-12)
    assert 0.0 < whole[:, 1].mean() < 1.0  # some relu units off, some on: the count is informative
    # the view shares the forward pass's memory (no copy)
    assert np.shares_memory(steps_as_one_sequence(fwd).caches[0].G, fwd.caches[0].G)


def test_layer_health_keys():
    m = _stack()
    fwd = m.forward(_tokens())
    without = layer_health(m)
    kinds = ("spectral_norm", "spectral_radius")
    assert sorted(without) == sorted(f"{kind}/layer{k}" for kind in kinds for k in range(3))
    full = layer_health(m, fwd)
    expected = saturation(m, steps_as_one_sequence(fwd)).mean(axis=0)
    assert [full[f"saturation/layer{k}"] for k in range(3)] == pytest.approx(expected, rel=1e-15)
    assert {k: full[k] for k in without} == without


@pytest.mark.parametrize(
    "clipped, saturated, warned",
    [
        (2, 0.5, []),  # exactly half of 4 steps clipped: not more than CLIPPED_ALARM
        (3, 0.5, ["gradient clipped on 3 of 4 steps (exploding gradients?)"]),
        (0, 0.95, ["95% of layer 1's units saturated (vanishing gradients?)"]),
        (4, 0.95, ["gradient clipped on 4 of 4 steps", "95% of layer 1's units saturated"]),
    ],
)
def test_health_note(clipped, saturated, warned):
    assert CLIPPED_ALARM == 0.5 and SATURATED_ALARM == 0.9
    row = {"clipped_steps": clipped, "saturation/layer0": 0.2, "saturation/layer1": saturated}
    note = health_note(row, steps=4)
    if not warned:
        assert note == ""
    else:
        assert note.startswith("; warning: ") and note.endswith("; try a lower lr")
        assert all(w in note for w in warned), note


def test_scores():
    assert bits_per_token(math.log(2.0)) == 1.0
    assert bits_per_token(math.log(166.0)) == pytest.approx(math.log2(166.0), rel=1e-15)
    assert score(1.7, "bpc") == bits_per_token(1.7)
    assert score(1.7, "ppl") == math.exp(1.7)
    assert score(1e6, "ppl") == math.exp(700.0)  # a diverged run still logs a finite number
    assert (score_unit("char"), score_unit("word")) == ("bpc", "ppl")


def test_streams_lay_the_pieces_side_by_side():
    ids = np.arange(11)
    np.testing.assert_array_equal(streams(ids, 3), [[0, 1, 2], [3, 4, 5], [6, 7, 8]])


def test_cli_cell_choices_are_the_model_table(capsys):
    assert main(["train", "--cell", "transformer"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'transformer'" in err
    offered = err.split("choose from", 1)[1]
    assert [offered.index(k) for k in MODELS] == sorted(offered.index(k) for k in MODELS)  # all, in table order


@pytest.mark.parametrize("cell", ["lstm", "gru", "elman"])
def test_saturation_leaves_padding_out(cell):
    """A padding step is no step: NaN in saturation, and layer_health averages the real steps only
    (the caches hold 0 there, which σ gates would count as saturated)."""
    from bptt.diagnostics.health import layer_health, saturation

    m = {"lstm": bptt.LSTM, "gru": bptt.GRU, "elman": bptt.Elman}[cell](3, 4, 2, num_layers=2, seed=0)
    x = 3.0 * np.random.default_rng(0).standard_normal((6, 3, 3))
    lengths = np.array([2, 6, 4])
    sat = saturation(m, m.forward(x, lengths=lengths))
    alone = saturation(m, m.forward(x[:2, :1]))
    assert np.isnan(sat[2:]).all() and np.array_equal(sat[:2], alone)
    got = layer_health(m, m.forward(x, lengths=lengths))
    pieces = [saturation(m, m.forward(x[: lengths[b], b : b + 1])) for b in range(3)]
    want = np.concatenate(pieces).mean(axis=0)  # every real step of every sequence, weighted alike
    for k in range(2):
        assert got[f"saturation/layer{k}"] == pytest.approx(want[k], abs=1e-12)
